"""Candidate checks on a noise-free phantom whose measures are worked out by hand.

Grid 12 x 40 x 60 voxels of 2 x 1 x 1 mm. The liver is the block z 0-11, y 5-34, x 5-44 at
100 HU; outside it the body is 0 HU. Candidates (label: what it is):

1. lesion: 10 x 10 x 4 voxels (z 4-7, y 10-19, x 10-19) at 50 HU inside the liver: contrast
   100 - 50 = 50 HU, no fat, nothing outside. Kept.
2. fissure: x 25-29 (5 voxels), y 10-19, z 4-7 at 100 HU around a fat core x 27 at -100 HU:
   1 in 5 voxels is fat (0.2 > 0.05). Its median is 100 HU: contrast 0. Rejected: fat, contrast.
3. vessel-like: 4 x 4 x 4 voxels (z 4-7, y 25-28, x 10-13) at 100 HU: contrast 0. Rejected:
   contrast.
4. outside: 4 x 4 x 4 voxels at 50 HU in the body (x 50-53), no liver within 5 mm. Rejected:
   outside (1.0 > 0.9); contrast has no verdict.
5. edge lesion: z 4-7, y 25-28, x 41-48 at 50 HU: x 41-44 in the liver, x 45-48 outside, so
   outside fraction 0.5 (kept), contrast 50 HU.
6. cyst: z 4-7, y 25-28, x 20-23 at 10 HU inside the liver: contrast 90 HU, but its median
   (10 HU) is below 20 HU. Rejected: fluid.
"""

from __future__ import annotations

import numpy as np
import pytest

from livermets.errors import InputError
from livermets.infer.candidates import (
    CandidateChecks,
    CandidateMeasures,
    check_candidates,
    measure_candidate,
)

SPACING = (2.0, 1.0, 1.0)
NO_SMOOTHING = CandidateChecks(fat_smoothing_mm=0.0)


def _phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (12, 40, 60)
    hu = np.zeros(shape, np.int16)
    liver = np.zeros(shape, np.uint8)
    liver[:, 5:35, 5:45] = 1
    hu[liver > 0] = 100
    labels = np.zeros(shape, np.uint8)
    labels[4:8, 10:20, 10:20] = 1
    hu[4:8, 10:20, 10:20] = 50
    labels[4:8, 10:20, 25:30] = 2
    hu[4:8, 10:20, 27] = -100
    labels[4:8, 25:29, 10:14] = 3
    labels[4:8, 25:29, 50:54] = 4
    hu[4:8, 25:29, 50:54] = 50
    labels[4:8, 25:29, 41:49] = 5
    hu[4:8, 25:29, 41:49] = 50
    labels[4:8, 25:29, 20:24] = 6
    hu[4:8, 25:29, 20:24] = 10
    return hu, liver, labels


def _measures(label: int, checks: CandidateChecks = NO_SMOOTHING) -> CandidateMeasures:
    hu, liver, labels = _phantom()
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(labels == label))
    return measure_candidate(labels, label, box, hu, liver, SPACING, checks)


def test_measures_worked_out_by_hand() -> None:
    lesion = _measures(1)
    assert (lesion.outside_fraction, lesion.fat_fraction, lesion.contrast_hu,
            lesion.median_hu) == (0.0, 0.0, 50.0, 50.0)
    assert lesion.failures(NO_SMOOTHING) == []
    fissure = _measures(2)
    assert fissure.fat_fraction == pytest.approx(0.2) and fissure.contrast_hu == 0.0
    assert fissure.failures(NO_SMOOTHING) == ["fat", "contrast"]
    assert _measures(3).failures(NO_SMOOTHING) == ["contrast"]
    outside = _measures(4)
    assert outside.outside_fraction == 1.0 and outside.contrast_hu is None
    assert outside.failures(NO_SMOOTHING) == ["outside"]
    edge = _measures(5)
    assert edge.outside_fraction == pytest.approx(0.5) and edge.contrast_hu == 50.0
    assert edge.failures(NO_SMOOTHING) == []
    cyst = _measures(6)
    assert (cyst.contrast_hu, cyst.median_hu) == (90.0, 10.0)
    assert cyst.failures(NO_SMOOTHING) == ["fluid"]


def test_smoothing_keeps_a_wide_fat_core_and_drops_a_lone_noisy_voxel() -> None:
    # A 1 mm Gaussian leaves the middle of a 5 mm wide fat band far below -30 HU...
    hu, liver, labels = _phantom()
    hu[4:8, 10:20, 25:30] = -100
    box = (slice(4, 8), slice(10, 20), slice(25, 30))
    band = measure_candidate(labels, 2, box, hu, liver, SPACING, CandidateChecks())
    assert band.fat_fraction > 0.5
    # ...but one noisy voxel at -60 HU in the 50 HU lesion is averaged up to about 40 HU:
    # weight of the centre for sigma 1 mm on a 1 mm grid, in 2D: (0.399)^2 = 0.16;
    # 0.16 * -60 + 0.84 * 50 = 32 HU > -30.
    hu, liver, labels = _phantom()
    hu[5, 14, 14] = -60
    box = (slice(4, 8), slice(10, 20), slice(10, 20))
    raw = measure_candidate(labels, 1, box, hu, liver, SPACING, NO_SMOOTHING)
    smooth = measure_candidate(labels, 1, box, hu, liver, SPACING, CandidateChecks())
    assert raw.fat_fraction == pytest.approx(1 / 400) and smooth.fat_fraction == 0.0


def test_kept_and_rejected_are_renumbered_by_volume() -> None:
    hu, liver, labels = _phantom()
    checked = check_candidates(labels, hu, liver, SPACING, NO_SMOOTHING)
    # Kept: the lesion (400 voxels) then the edge lesion (128).
    np.testing.assert_array_equal(checked.lesions == 1, labels == 1)
    np.testing.assert_array_equal(checked.lesions == 2, labels == 5)
    assert int(checked.lesions.max()) == 2
    # Rejected: the fissure (200), then the vessel, the outside block and the cyst (64 each:
    # ties keep the old order).
    for new, old in ((1, 2), (2, 3), (3, 4), (4, 6)):
        np.testing.assert_array_equal(checked.rejected == new, labels == old)
    assert checked.rejected_reasons == [["fat", "contrast"], ["contrast"], ["outside"],
                                        ["fluid"]]
    assert [m.contrast_hu for m in checked.lesion_measures] == [50.0, 50.0]


def test_thresholds_are_checked() -> None:
    with pytest.raises(InputError, match="max_fat_fraction"):
        CandidateChecks(max_fat_fraction=1.5)
    with pytest.raises(InputError, match="shell_mm"):
        CandidateChecks(shell_mm=0.0)


def test_confidence_needs_one_voxel_at_the_seed_probability() -> None:
    """Hysteresis: the lesion (label 1) is kept when one voxel reaches 0.5, rejected when its
    highest probability is 0.49; without a probability map the check has no verdict."""
    hu, liver, labels = _phantom()
    box = (slice(4, 8), slice(10, 20), slice(10, 20))
    probability = np.where(labels > 0, 0.3, 0.0).astype(np.float32)
    probability[6, 15, 15] = 0.5
    seeded = measure_candidate(labels, 1, box, hu, liver, SPACING, NO_SMOOTHING, probability)
    assert seeded.peak_probability == 0.5 and seeded.failures(NO_SMOOTHING) == []
    probability[6, 15, 15] = 0.49
    probability[6, 15, 27] = 0.9  # the fissure next to it (label 2) does not count
    weak = measure_candidate(labels, 1, box, hu, liver, SPACING, NO_SMOOTHING, probability)
    assert weak.peak_probability == pytest.approx(0.49)
    assert weak.failures(NO_SMOOTHING) == ["confidence"]
    assert weak.to_row()["peak_probability"] == 0.49
    assert _measures(1).peak_probability is None and _measures(1).to_row()[
        "peak_probability"] == ""
    checked = check_candidates(labels, hu, liver, SPACING, NO_SMOOTHING, probability)
    # Every candidate but the fissure (0.9) now peaks at 0.3 or 0.49: none is kept, and the
    # reasons follow the labels 1-6 (the phantom's own failures first).
    assert int(checked.lesions.max()) == 0
    assert checked.rejected_reasons == [["confidence"], ["fat", "contrast"],
                                        ["contrast", "confidence"], ["outside", "confidence"],
                                        ["confidence"], ["fluid", "confidence"]]
    with pytest.raises(InputError, match="min_peak_probability"):
        CandidateChecks(min_peak_probability=1.2)
