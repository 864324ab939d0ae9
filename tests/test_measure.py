"""livermets.measure on shapes whose answers are worked out by hand or by brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from livermets.measure import (
    centroid_index,
    centroid_mm,
    lesion_volume_ml,
    longest_axial_diameter_mm,
    longest_diameter_2d,
    measure_lesions,
)


def _brute_force_diameter(mask2d: np.ndarray, spacing_yx: tuple[float, float]) -> float:
    """Largest distance between any two voxel corners (mm), by checking every pair."""
    corners = set()
    for y, x in zip(*np.nonzero(mask2d), strict=True):
        for dy, dx in itertools.product((-0.5, 0.5), repeat=2):
            corners.add(((y + dy) * spacing_yx[0], (x + dx) * spacing_yx[1]))
    points = np.array(sorted(corners))
    delta = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((delta**2).sum(-1)).max())


def test_single_voxel_measures_its_diagonal() -> None:
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 2, 3] = True
    spacing = (3.0, 0.8, 0.6)
    longest, perpendicular, z = longest_axial_diameter_mm(mask, spacing)
    assert longest == pytest.approx(1.0)  # sqrt(0.6^2 + 0.8^2)
    assert perpendicular == pytest.approx(2 * 0.6 * 0.8 / 1.0)  # rectangle across its diagonal
    assert z == 1
    assert lesion_volume_ml(mask, spacing) == pytest.approx(3.0 * 0.8 * 0.6 / 1000.0)


def test_rectangle_at_anisotropic_spacing() -> None:
    mask = np.zeros((1, 6, 8), dtype=np.uint8)
    mask[0, 1:4, 2:6] = 1  # 3 rows (y) x 4 columns (x)
    spacing = (5.0, 2.0, 0.5)  # 6 mm high, 2 mm wide
    longest, perpendicular, _ = longest_axial_diameter_mm(mask, spacing)
    assert longest == pytest.approx(math.sqrt(6.0**2 + 2.0**2))
    assert perpendicular == pytest.approx(2 * 6.0 * 2.0 / math.sqrt(40.0))


def test_non_convex_l_shape() -> None:
    mask = np.zeros((3, 3), dtype=bool)
    mask[:, 0] = True
    mask[2, :] = True
    longest, perpendicular = longest_diameter_2d(mask, (1.0, 1.0))
    assert longest == pytest.approx(3 * math.sqrt(2))  # corner (-0.5, -0.5) to (2.5, 2.5)
    assert perpendicular == pytest.approx(2 * math.sqrt(2))


@pytest.mark.parametrize("spacing_yx", [(0.5, 1.0), (1.0, 0.5), (0.7, 0.7)])
def test_disc_of_known_radius(spacing_yx: tuple[float, float]) -> None:
    radius = 10.0
    ys = (np.arange(61) - 30) * spacing_yx[0]
    xs = (np.arange(61) - 30) * spacing_yx[1]
    disc = ys[:, None] ** 2 + xs[None, :] ** 2 <= radius**2
    longest, perpendicular = longest_diameter_2d(disc, spacing_yx)
    voxel_diagonal = math.hypot(*spacing_yx)
    # The row and column through the centre alone span 2R plus one voxel; no two corners
    # are further apart than 2R plus a voxel diagonal.
    assert 2 * radius + max(spacing_yx) - 1e-9 <= longest <= 2 * radius + voxel_diagonal
    assert 2 * radius <= perpendicular <= 2 * radius + voxel_diagonal
    assert longest == pytest.approx(_brute_force_diameter(disc, spacing_yx))


def test_random_blob_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    blob = rng.random((12, 15)) < 0.3
    assert longest_diameter_2d(blob, (0.9, 0.4))[0] == pytest.approx(
        _brute_force_diameter(blob, (0.9, 0.4)))


def test_longest_slice_is_chosen_and_ties_take_the_lowest_index() -> None:
    mask = np.zeros((5, 6, 6), dtype=bool)
    mask[0, :2, :2] = True
    mask[1, 0, 0] = True
    mask[2, :3, :3] = True
    mask[4, 2:5, 2:5] = True  # as long as slice 2
    longest, perpendicular, z = longest_axial_diameter_mm(mask, (1.0, 1.0, 1.0))
    assert (longest, z) == (pytest.approx(3 * math.sqrt(2)), 2)
    assert perpendicular == pytest.approx(3 * math.sqrt(2))


def test_centroid() -> None:
    mask = np.zeros((3, 2, 2), dtype=bool)
    mask[0, 0, 0] = mask[2, 0, 0] = True
    assert centroid_index(mask) == (1.0, 0.0, 0.0)
    assert centroid_mm(mask, (2.5, 0.7, 0.7)) == (2.5, 0.0, 0.0)


def test_empty_mask_policy() -> None:
    empty = np.zeros((2, 3, 3), dtype=bool)
    assert lesion_volume_ml(empty, (1.0, 1.0, 1.0)) == 0.0
    with pytest.raises(ValueError, match="empty"):
        longest_axial_diameter_mm(empty, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        centroid_mm(empty, (1.0, 1.0, 1.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -1.0, 1.0)])
def test_bad_spacing(spacing: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="spacing"):
        lesion_volume_ml(np.ones((2, 2, 2)), spacing)  # type: ignore[arg-type]


def test_measure_lesions_of_a_label_map() -> None:
    labels = np.zeros((6, 8, 8), dtype=np.uint16)
    labels[1:3, 1:3, 1:4] = 1  # 2 x 2 x 3 voxels
    labels[4, 5, 6] = 3  # label 2 is absent
    spacing = (2.0, 0.5, 1.0)
    result = measure_lesions(labels, spacing)
    assert list(result) == [1, 3]
    first, third = result[1], result[3]
    assert first.voxels == 12
    assert first.volume_ml == pytest.approx(12 * 1.0 / 1000.0)
    assert first.longest_diameter_mm == pytest.approx(math.hypot(1.0, 3.0))
    assert first.diameter_slice == 1  # first of two equal slices, in whole-volume indices
    assert first.centroid_index == pytest.approx((1.5, 1.5, 2.0))
    assert first.centroid_mm == pytest.approx((3.0, 0.75, 2.0))
    assert (third.diameter_slice, third.centroid_index) == (4, (4.0, 5.0, 6.0))


def test_measure_lesions_refuses_float_labels() -> None:
    with pytest.raises(ValueError, match="integer"):
        measure_lesions(np.zeros((2, 2, 2), dtype=np.float32), (1.0, 1.0, 1.0))
