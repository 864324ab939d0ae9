"""Extent recovery on the CT (`infer.extent.recover_extent`) and through `Predictor`.

Phantoms with known answers: a liver of 100 HU holding a sphere of 40 HU (radius 6 mm on a
1 x 0.8 x 0.8 mm grid). The midpoint cut is 70 HU; on a noise-free step edge the smoothed HU
crosses it at the edge itself (a Gaussian's half-maximum) on a flat edge. A sphere's edge is
curved, and smoothing (sigma 1 mm) moves the half-maximum inward by about sigma^2 / r = 0.17 mm:
a shell of 4 pi r^2 * 0.17 / (4/3 pi r^3) = 8.5% of its volume stays out, so the grown lesion
holds about 91.5% of the sphere and nothing outside it. The sphere's volume, worked out by hand:
4/3 pi r^3 / voxel volume = 904.8 / 0.64 = 1414 voxels.
"""

from __future__ import annotations

import numpy as np
import pytest

from livermets.errors import InputError
from livermets.infer.extent import ExtentSettings, grown_from, grown_in_plane, recover_extent
from livermets.infer.predictor import Predictor, PredictSettings

from .rule_models import lesion_rule

SPACING = (1.0, 0.8, 0.8)
SHAPE = (40, 60, 60)


def _ball(centre_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within `radius_mm` of `centre_mm` (z, y, x in mm)."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return ((z * SPACING[0] - centre_mm[0]) ** 2 + (y * SPACING[1] - centre_mm[1]) ** 2
            + (x * SPACING[2] - centre_mm[2]) ** 2) <= radius_mm**2


CENTRE = (20.0, 24.0, 24.0)


def _liver_with_lesion(lesion_hu: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """(hu, lesion) : liver 100 HU everywhere, the sphere at `lesion_hu`."""
    hu = np.full(SHAPE, 100.0, np.float32)
    lesion = _ball(CENTRE, 6.0)
    hu[lesion] = lesion_hu
    return hu, lesion


def test_a_marked_core_grows_to_the_whole_hypodense_sphere() -> None:
    hu, lesion = _liver_with_lesion()
    assert 1380 <= lesion.sum() <= 1450  # the hand count, 1414, up to the voxelisation
    core = _ball(CENTRE, 2.0).astype(np.uint8)
    grown = recover_extent(core, hu, np.ones(SHAPE, bool), SPACING, ExtentSettings())
    overlap = np.count_nonzero((grown == 1) & lesion)
    assert 0.88 < overlap / lesion.sum() < 0.96  # recall, about 0.915
    assert overlap / np.count_nonzero(grown) > 0.99  # precision: it stopped at the edge
    assert grown.dtype == core.dtype and int(grown.max()) == 1


def test_growth_stops_at_the_reach_the_liver_and_other_lesions() -> None:
    """A dark band through the whole liver: the lesion follows it only up to `reach_mm` from
    the marked core, never outside `allowed`, never into another lesion's voxels."""
    hu = np.full(SHAPE, 100.0, np.float32)
    hu[18:23, 20:40, :] = 30.0  # a dark slab the length of the volume (x)
    core = np.zeros(SHAPE, np.uint8)
    core[18:23, 20:40, 28:32] = 1
    core[18:23, 20:40, 50:54] = 2  # another lesion further along the slab
    allowed = np.ones(SHAPE, bool)
    allowed[:, :, :20] = False  # outside the liver
    grown = recover_extent(core, hu, allowed, SPACING, ExtentSettings(reach_mm=8.0))
    columns = np.nonzero((grown == 1).any(axis=(0, 1)))[0]
    # From x 28-31 (22.4-24.8 mm) the reach is 8 mm: voxel centres 14.4-32.8 mm, i.e. x 20-41
    # (the 20 mm edge is allowed from x 20 on).
    assert columns.min() == 20 and columns.max() == 41
    assert not (grown[:, :, :20] > 0).any()
    # Lesion 2 (x 50-53, 40-42.4 mm) reaches x 40-59 (the volume's end), but x 40-41 went to
    # lesion 1, grown first.
    later = np.nonzero((grown == 2).any(axis=(0, 1)))[0]
    assert later.min() == 42 and later.max() == SHAPE[2] - 1


def test_iso_and_hyperdense_lesions_and_fat_do_not_grow() -> None:
    core = _ball(CENTRE, 2.0).astype(np.uint8)
    for lesion_hu in (95.0, 160.0):  # 5 HU darker: under min_contrast_hu; brighter
        hu, _ = _liver_with_lesion(lesion_hu)
        grown = recover_extent(core, hu, np.ones(SHAPE, bool), SPACING, ExtentSettings())
        np.testing.assert_array_equal(grown, core)
    hu, _ = _liver_with_lesion()
    hu[_ball(CENTRE, 6.0) & ~_ball(CENTRE, 2.0)] = -100.0  # fat around the core
    grown = recover_extent(core, hu, np.ones(SHAPE, bool), SPACING, ExtentSettings())
    np.testing.assert_array_equal(grown, core)


def test_grown_from_keeps_the_region_components_touching_a_seed() -> None:
    region = np.zeros((1, 1, 9), bool)
    region[0, 0, [0, 1, 2, 5, 6]] = True
    seeds = np.zeros_like(region)
    seeds[0, 0, [1, 8]] = True
    np.testing.assert_array_equal(grown_from(seeds, region)[0, 0],
                                  [1, 1, 1, 0, 0, 0, 0, 0, 1])


def test_predictor_extent_mm_grows_lesions_and_is_validated() -> None:
    """The network marks a sphere's core (radius 3 mm, 40 HU) and misses its rim (3-6 mm):
    with the rim at 90 HU, above the 70 HU midpoint of core and liver (100 HU), the rim stays
    out but for the blur of the core's own edge (within 1.5 smoothing sigmas of it); with the
    rim at 45 HU the whole sphere joins, up to the curvature shell of the first test."""
    hu, lesion = _liver_with_lesion()
    hu[_ball(CENTRE, 6.0) & ~_ball(CENTRE, 3.0)] = 90.0  # a paler rim the network misses
    rng = np.random.default_rng(0)
    hu += rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    liver = np.ones(SHAPE, np.uint8)
    probability = np.where(_ball(CENTRE, 3.0), 0.9, 0.0).astype(np.float32)
    plain = Predictor(lesion_rule(64), settings=PredictSettings(
        threshold=0.5, candidate_checks=None, min_lesion_mm3=0, extent_mm=None))
    grown = Predictor(lesion_rule(64), settings=PredictSettings(
        threshold=0.5, candidate_checks=None, min_lesion_mm3=0, extent_mm=10.0))
    core = plain.lesion_labels(probability.copy(), liver, SPACING, hu).labels
    whole = grown.lesion_labels(probability.copy(), liver, SPACING, hu).labels
    np.testing.assert_array_equal(core > 0, _ball(CENTRE, 3.0))
    assert not ((whole > 0) & ~_ball(CENTRE, 4.5)).any() and (whole[core > 0] == 1).all()
    hu[_ball(CENTRE, 6.0) & ~_ball(CENTRE, 3.0)] = 45.0 + rng.normal(0.0, 1.0, 1)[0]
    whole = grown.lesion_labels(probability.copy(), liver, SPACING, hu).labels
    overlap = np.count_nonzero((whole > 0) & lesion)
    assert overlap / lesion.sum() > 0.85 and overlap / np.count_nonzero(whole) > 0.99
    assert int(whole.max()) == 1
    assert grown.record()["settings"]["extent_mm"] == 10.0
    with pytest.raises(InputError, match="reach"):
        PredictSettings(extent_mm=0.0)


def test_second_chance_rescues_a_dark_core_and_not_plain_liver() -> None:
    """Candidate 1: the core (radius 3 mm) of a 40 HU sphere of radius 8 mm in 100 HU liver;
    its 5 mm shell lies inside the sphere, so it fails the contrast check (0 HU). Grown, it is
    the sphere and its shell is liver (60 HU darker): kept. Candidate 2: a ball of plain liver
    (100 HU, no contrast): it does not grow and stays rejected."""
    from livermets.infer.candidates import CandidateChecks, check_candidates
    from livermets.infer.extent import second_chance

    hu = np.full(SHAPE, 100.0, np.float32)
    tumour = _ball(CENTRE, 8.0)
    hu[tumour] = 40.0
    labels = np.zeros(SHAPE, np.uint8)
    labels[_ball(CENTRE, 3.0)] = 1
    labels[_ball((20.0, 24.0, 40.0), 3.0)] = 2  # plain liver, 16 mm to the side
    liver = np.ones(SHAPE, np.uint8)
    probability = np.where(labels > 0, 0.9, 0.0).astype(np.float32)
    checks = CandidateChecks()
    checked = check_candidates(labels, hu, liver, SPACING, checks, probability)
    assert int(checked.lesions.max()) == 0 and checked.rejected_reasons == [
        ["contrast"], ["contrast"]]
    rescued = second_chance(checked, hu, liver > 0, SPACING, checks, ExtentSettings(),
                            probability)
    assert int(rescued.lesions.max()) == 1 and rescued.rejected_reasons == [["contrast"]]
    overlap = np.count_nonzero((rescued.lesions == 1) & tumour)
    assert overlap / tumour.sum() > 0.85 and overlap / np.count_nonzero(rescued.lesions) > 0.99
    np.testing.assert_array_equal(rescued.rejected == 1, labels == 2)
    assert len(rescued.lesion_measures) == 1 and len(rescued.rejected_measures) == 1
    assert rescued.lesion_measures[0].contrast_hu is not None
    assert rescued.lesion_measures[0].contrast_hu >= 50
    with pytest.raises(InputError, match="recheck-grown"):
        PredictSettings(recheck_grown=True, extent_mm=None)


def test_growth_in_plane_leaves_noise_that_only_3d_reaches() -> None:
    """Drawn by hand on a 6 x 14 x 14 grid: a core in slice 2 inside a dark 7 x 7 square; an
    island beside the square in slice 2 that joins it only through slice 3; in slice 4 a
    strip of which a quarter lies on slice 3's part; in slice 1 a square on the core."""
    seeds = np.zeros((6, 14, 14), dtype=bool)
    seeds[2, 5:8, 5:8] = True
    region = np.zeros_like(seeds)
    region[2, 3:10, 3:10] = True  # 49 pixels around the core
    region[2, 5, 11:13] = True  # the island: column 10 separates it in slice 2
    region[3, 4:9, 4:9] = True  # 25 pixels, all on slice 2's square
    region[3, 5, 9:13] = True  # a bridge to the island's place: one part with the square
    region[4, 8:10, 0:10] = True  # 20 pixels, 5 on slice 3's part (row 8, x 4-8)
    region[1, 5:8, 5:8] = True
    in_3d = grown_from(seeds, region)
    assert in_3d[2, 5, 11:13].all() and in_3d[4].sum() == 20  # 3D takes all of it
    kept = grown_in_plane(seeds, region)
    expected = region.copy()
    expected[2, 5, 11:13] = False
    expected[4] = False
    np.testing.assert_array_equal(kept, expected)
    assert kept.sum() == 49 + 25 + 4 + 9


def test_small_confident_cores_are_grown_into_lesions_and_others_dropped() -> None:
    """Three cores of 9 voxels (5.8 mm3, under the 10 mm3 minimum): A (probability 0.7) in a
    3 mm sphere at 40 HU, B (0.3, under the 0.5 confidence peak) in another, C (0.7) in plain
    liver. With `grow_small_cores` A is checked, grown to its sphere and kept; B is no
    candidate; C fails the contrast check and is reported. Without it, none is a candidate."""
    hu = np.full(SHAPE, 100.0, np.float32)
    spheres = {"A": (20.0, 16.0, 16.0), "B": (20.0, 16.0, 32.0)}
    for centre in spheres.values():
        hu[_ball(centre, 3.0)] = 40.0
    hu += np.random.default_rng(1).normal(0.0, 1.0, SHAPE).astype(np.float32)
    liver = np.ones(SHAPE, np.uint8)
    probability = np.zeros(SHAPE, np.float32)
    for (z, y, x), peak in (((20, 20, 20), 0.7), ((20, 20, 40), 0.3), ((20, 45, 30), 0.7)):
        probability[z, y - 1 : y + 2, x - 1 : x + 2] = peak  # 9 voxels of 0.64 mm3
    common = {"threshold": 0.25, "flip_tta": False, "extent_mm": 10.0}
    grow = Predictor(lesion_rule(64), settings=PredictSettings(**common, grow_small_cores=True))
    found = grow.lesion_labels(probability.copy(), liver, SPACING, hu)
    a = _ball(spheres["A"], 3.0)
    overlap = np.count_nonzero((found.labels > 0) & a)
    # The 1 mm smoothing moves a 3 mm sphere's midpoint surface inward (its outer voxels
    # blur above 70 HU): 121 of its 163 voxels join, and nothing outside it.
    assert int(found.labels.max()) == 1 and overlap / a.sum() > 0.7
    assert overlap / np.count_nonzero(found.labels) > 0.99
    assert found.rejected is not None and int(found.rejected.max()) == 1
    assert found.rejected[20, 45, 30] == 1 and found.rejected_reasons == [["contrast"]]
    plain = Predictor(lesion_rule(64), settings=PredictSettings(**common, grow_small_cores=False))
    nothing = plain.lesion_labels(probability.copy(), liver, SPACING, hu)
    assert not nothing.labels.any()
    assert nothing.rejected is not None and not nothing.rejected.any()
    assert grow.record()["settings"]["grow_small_cores"] is True
