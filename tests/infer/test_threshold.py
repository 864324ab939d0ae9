"""Otsu's threshold and the rules that keep it from turning noise into lesions."""

from __future__ import annotations

import numpy as np
import pytest

from livermets.infer.threshold import (
    EMPTY_BELOW,
    OTSU_FLOOR,
    choose_threshold,
    otsu_threshold,
    parse_threshold,
)

BINS = 256


def _centre(k: int) -> float:
    return (k + 0.5) / BINS


def _brute_force_otsu(values: np.ndarray) -> float:
    """Independent Otsu: the bin edges minimising the within-class variance of the raw values
    (the middle of the first run of equally good edges)."""
    scores = {}
    for k in range(1, BINS):
        edge = k / BINS
        low, high = values[values <= edge], values[values > edge]
        if low.size and high.size:
            scores[k] = low.size * low.var() + high.size * high.var()
    best = min(scores.values())
    first = min(k for k, v in scores.items() if v <= best * (1 + 1e-9))
    last = first
    while last + 1 in scores and scores[last + 1] <= best * (1 + 1e-9):
        last += 1
    return (first + last) / 2 / BINS


def test_two_equal_modes_split_right_above_the_lower_one() -> None:
    values = np.array([_centre(25)] * 50 + [_centre(230)] * 50)
    # Every edge from the top of bin 25 to the bottom of bin 230 separates them equally
    # well: the middle of that run is returned.
    assert otsu_threshold(values) == pytest.approx((26 + 230) / 2 / BINS)


def test_matches_an_independent_brute_force_on_uneven_modes() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([
        np.array([_centre(k) for k in rng.integers(10, 60, size=700)]),
        np.array([_centre(k) for k in rng.integers(150, 240, size=300)]),
    ])
    assert otsu_threshold(values) == pytest.approx(_brute_force_otsu(values))


def test_constant_input_leaves_nothing_above() -> None:
    values = np.full(20, _centre(40))
    threshold = otsu_threshold(values)
    assert threshold == pytest.approx(41 / BINS)
    assert not np.any(values > threshold)
    with pytest.raises(ValueError, match="at least one value"):
        otsu_threshold(np.array([]))


def test_all_background_map_gives_no_lesion() -> None:
    # Noise well below 0.5: Otsu alone would cut the noise in two.
    noise = np.random.default_rng(0).uniform(0.0, 0.2, size=10_000)
    result = choose_threshold(noise)
    assert result.empty and result.method == "otsu"
    assert result.otsu is not None and result.otsu < 0.2
    assert result.value == EMPTY_BELOW and not np.any(noise > result.value)


def test_a_tiny_lesion_in_a_large_liver_is_not_drowned_in_background_noise() -> None:
    rng = np.random.default_rng(1)
    # A liver of 500,000 voxels (about 0.5 L at 1 mm^3) and a 200-voxel lesion: the
    # between-class variance of a split inside the background (0.25 * 0.05^2 = 6.3e-4)
    # beats that of the split at the lesion (4e-4 * 0.87^2 = 3.0e-4).
    background = rng.uniform(0.0, 0.1, size=500_000)
    lesion = rng.uniform(0.85, 0.99, size=200)
    result = choose_threshold(np.concatenate([background, lesion]))
    assert result.otsu is not None and result.otsu < OTSU_FLOOR  # Otsu splits the noise
    assert result.value == OTSU_FLOOR and not result.empty  # the floor keeps the lesion only
    assert np.count_nonzero(background > result.value) == 0
    assert np.count_nonzero(lesion > result.value) == 200


def test_a_clear_bimodal_map_uses_otsu_itself() -> None:
    values = np.array([0.02] * 900 + [0.95] * 100)
    result = choose_threshold(values)
    assert not result.empty and result.value == result.otsu
    assert 0.02 < result.value < 0.95


def test_fixed_threshold_and_parsing() -> None:
    assert choose_threshold(np.array([0.1, 0.9]), 0.3).to_json() == {
        "method": "fixed", "value": 0.3, "otsu": None, "empty": False}
    assert parse_threshold("OTSU") == "otsu" and parse_threshold("0.4") == 0.4
    for bad in ("1.5", "0", "half"):
        with pytest.raises(ValueError, match="--threshold"):
            parse_threshold(bad)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        choose_threshold(np.array([0.5]), 1.0)
