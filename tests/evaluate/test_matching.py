"""Lesion matching on hand-built cases with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from livermets.evaluate.matching import LesionPair, LesionScore, match_lesions, paired_lesions

ISO = (1.0, 1.0, 1.0)


def _line(length: int, *segments: tuple[int, int, int]) -> np.ndarray:
    """A (1, 1, length) label map with `label` on x in [start, stop) per (label, start, stop)."""
    out = np.zeros((1, 1, length), np.int32)
    for label, start, stop in segments:
        out[0, 0, start:stop] = label
    return out


def _scores(match: object) -> dict[int, LesionScore]:
    return {s.reference_id: s for s in match.scores}  # type: ignore[attr-defined]


def test_exact_match() -> None:
    ref = np.zeros((4, 6, 6), np.int32)
    ref[1:3, 1:4, 1:4] = 1
    [score] = match_lesions(ref, ref.copy(), ISO).scores
    assert (score.tp, score.fp, score.fn) == (18, 0, 0)
    assert (score.dice, score.precision, score.recall) == (1.0, 1.0, 1.0)
    assert score.detected() and score.predicted_ids == (1,)


def test_shifted_lesion() -> None:
    ref = np.zeros((4, 4, 8), np.int32)
    ref[:, :, 2:6] = 1  # 64 voxels
    pred = np.zeros_like(ref)
    pred[:, :, 3:7] = 7  # shifted by one voxel: 48 shared
    [score] = match_lesions(ref, pred, ISO).scores
    assert (score.tp, score.fp, score.fn) == (48, 16, 16)
    assert score.dice == pytest.approx(0.75)
    assert score.precision == pytest.approx(0.75) and score.recall == pytest.approx(0.75)
    assert score.predicted_ids == (7,)


def test_missed_lesion_scores_zero() -> None:
    ref = _line(10, (1, 2, 5))
    match = match_lesions(ref, np.zeros_like(ref), ISO)
    [score] = match.scores
    assert (score.tp, score.fp, score.fn) == (0, 0, 3)
    assert (score.dice, score.precision, score.recall) == (0.0, 0.0, 0.0)
    assert not score.detected() and score.predicted_ids == () and match.false_positive_ids == ()


@pytest.mark.parametrize(("overlap", "dice", "detected"), [(2, 0.2, False), (3, 0.3, True)])
def test_detection_needs_dice_strictly_above_0_2(overlap: int, dice: float,
                                                 detected: bool) -> None:
    # Reference x 0-9 and prediction x (10 - overlap) to (20 - overlap): both 10 voxels.
    ref = _line(30, (1, 0, 10))
    pred = _line(30, (1, 10 - overlap, 20 - overlap))
    [score] = match_lesions(ref, pred, ISO).scores
    assert (score.tp, score.fp, score.fn) == (overlap, 10 - overlap, 10 - overlap)
    assert score.dice == pytest.approx(dice) and score.detected() is detected
    assert score.detected(detection_dice=0.1)


def test_a_merged_prediction_is_shared_out_to_the_nearest_lesion() -> None:
    # A = x 0-3, B = x 7-10; one predicted lesion x 0-10. x 4 is nearer A (1 vs 3 mm),
    # x 5 ties (2 vs 2 mm: to the lower id, A), x 6 is nearer B (3 vs 1 mm).
    ref = _line(12, (1, 0, 4), (2, 7, 11))
    pred = _line(12, (5, 0, 11))
    match = match_lesions(ref, pred, ISO)
    a, b = _scores(match)[1], _scores(match)[2]
    assert (a.tp, a.fp, a.fn) == (4, 2, 0) and a.dice == pytest.approx(0.8)
    assert (b.tp, b.fp, b.fn) == (4, 1, 0) and b.dice == pytest.approx(8 / 9)
    assert a.predicted_ids == b.predicted_ids == (5,) and match.false_positive_ids == ()


def test_sharing_out_measures_in_mm_with_anisotropic_spacing() -> None:
    # (z, x) voxels, y = 0. A = (0, 3); B = (1, 5); predicted = (0, 3), (1, 3), (1, 4), (1, 5).
    ref = np.zeros((2, 1, 7), np.int32)
    ref[0, 0, 3], ref[1, 0, 5] = 1, 2
    pred = np.zeros_like(ref)
    pred[0, 0, 3] = pred[1, 0, 3] = pred[1, 0, 4] = pred[1, 0, 5] = 9
    # 3 mm slices: (1, 3) is 3 mm from A and 2 mm from B -> B; so is (1, 4) (3.2 vs 1 mm).
    thick = _scores(match_lesions(ref, pred, (3.0, 1.0, 1.0)))
    assert (thick[1].tp, thick[1].fp) == (1, 0) and thick[1].dice == 1.0
    assert (thick[2].tp, thick[2].fp) == (1, 2) and thick[2].dice == pytest.approx(0.5)
    # Isotropic 1 mm: (1, 3) is 1 mm from A and 2 mm from B -> A; (1, 4): 1.41 vs 1 -> B.
    iso = _scores(match_lesions(ref, pred, ISO))
    assert (iso[1].tp, iso[1].fp) == (1, 1) and iso[1].dice == pytest.approx(2 / 3)
    assert (iso[2].tp, iso[2].fp) == (1, 1) and iso[2].dice == pytest.approx(2 / 3)


def test_false_positives_and_an_empty_reference() -> None:
    ref = _line(20, (1, 0, 3))
    pred = _line(20, (1, 0, 3), (2, 10, 12), (3, 15, 16))
    match = match_lesions(ref, pred, ISO)
    assert match.false_positive_ids == (2, 3) and _scores(match)[1].dice == 1.0
    empty = match_lesions(np.zeros_like(ref), pred, ISO)
    assert empty.scores == () and empty.false_positive_ids == (1, 2, 3)


def test_two_predictions_on_one_lesion_form_its_region() -> None:
    ref = _line(12, (1, 0, 10))
    pred = _line(12, (1, 0, 4), (2, 6, 12))  # 4 + 6 voxels, 8 inside the reference
    [score] = match_lesions(ref, pred, ISO).scores
    assert (score.tp, score.fp, score.fn) == (8, 2, 2) and score.predicted_ids == (1, 2)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        match_lesions(np.zeros((1, 1, 3), np.int32), np.zeros((1, 1, 4), np.int32), ISO)
    with pytest.raises(ValueError, match="integer instance map"):
        match_lesions(np.zeros((1, 1, 3)), np.zeros((1, 1, 3), np.int32), ISO)


def test_pairs_take_the_largest_overlap_and_need_a_detection() -> None:
    ref = _line(32, (1, 0, 10), (2, 12, 20), (3, 22, 24))
    # 5 and 6 split lesion 1 (8 and 2 shared voxels); 7 and 8 share 4 voxels each with 2 (7
    # also covers 10-11, outside every lesion); 9 covers 1 of lesion 3's 2 voxels and 7 more.
    pred = _line(32, (6, 0, 2), (5, 2, 10), (7, 10, 16), (8, 16, 20), (9, 23, 31))
    pairs = paired_lesions(ref, pred, ISO)
    # Lesion 1: region 10 voxels, all inside: Dice 1. Lesion 2: region 10, TP 8, FP 2, FN 0:
    # Dice 16 / 18; the tie between 7 and 8 goes to 7. Lesion 3: TP 1, FP 7, FN 1: Dice
    # 2 / 10 = 0.2, not above 0.2: no pair.
    assert pairs == [LesionPair(1, 5, 1.0), LesionPair(2, 7, pytest.approx(16 / 18))]


def test_a_merged_prediction_pairs_with_one_lesion_only() -> None:
    ref = _line(8, (1, 0, 4), (2, 5, 7))
    pred = _line(8, (3, 0, 7))  # 4 voxels shared with lesion 1, 2 with lesion 2
    # Voxel 4 is 1 mm from both lesions: it goes to the lower id, 1 (TP 4, FP 1: Dice 8 / 9).
    # Lesion 2 is detected (Dice 1 on its share) but 3 already went to lesion 1.
    assert _scores(match_lesions(ref, pred, ISO))[2].detected()
    assert paired_lesions(ref, pred, ISO) == [LesionPair(1, 3, pytest.approx(8 / 9))]
