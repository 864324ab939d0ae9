"""The fast liver post-processing (issue 23) gives the same voxels as the straightforward one.

The reference below is the post-processing as it was before: whole-volume passes,
`ndimage.binary_fill_holes` slice by slice, `ndimage.median` over labels and the closing from two
distance maps. It lives here only, as the yardstick for `livermets.infer.liver` and the helpers
in `livermets.labels` and `livermets.morphology`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from livermets.infer.liver import (
    DARK_BELOW_LIVER_HU,
    FLUID_BELOW_HU,
    LIVER_NOTCH_MM,
    LIVER_THRESHOLD,
    LOCAL_MEAN_MM,
    SURE_LIVER_PROBABILITY,
    _closing,
    postprocess_liver,
)
from livermets.labels import connected_components, fill_holes, label_medians, not_enclosed
from livermets.morphology import ball_rows, dilate_by_ball, within_distance
from livermets.types import Spacing
from tests.conftest import shared_path

# --- the reference: the post-processing before issue 23 ---


def _ref_closing(mask: npt.NDArray[np.bool_], spacing: Spacing, radius_mm: float
                 ) -> npt.NDArray[np.bool_]:
    step = [max(1, int(2.0 // s)) for s in spacing]
    coarse = mask[::step[0], ::step[1], ::step[2]]
    sampling = [s * k for s, k in zip(spacing, step, strict=True)]
    grown = ndimage.distance_transform_edt(~coarse, sampling=sampling) <= radius_mm
    closed = ndimage.distance_transform_edt(grown, sampling=sampling) > radius_mm
    index = np.ix_(*(np.arange(n) // k for n, k in zip(mask.shape, step, strict=True)))
    return np.asarray(closed[index] | mask)


def _ref_fill_liver_holes(liver: npt.NDArray[np.bool_], hu: npt.NDArray[np.generic]
                          ) -> npt.NDArray[np.bool_]:
    sliced = np.array(liver, dtype=bool)
    for z in range(sliced.shape[0]):
        sliced[z] = ndimage.binary_fill_holes(sliced[z])
    filled = np.asarray(ndimage.binary_fill_holes(sliced))
    enclosed = np.asarray(ndimage.binary_fill_holes(liver))
    pockets, count = connected_components(filled & ~enclosed)
    if count == 0:
        return filled
    medians = ndimage.median(np.asarray(hu, dtype=np.float32), pockets, np.arange(1, count + 1))
    fluid = np.flatnonzero(np.asarray(medians) < FLUID_BELOW_HU) + 1
    filled[np.isin(pockets, fluid)] = False
    return filled


def _ref_largest_filled_component(mask: npt.NDArray[np.bool_], *, fill: bool = True,
                                  hu: npt.NDArray[np.generic] | None = None
                                  ) -> npt.NDArray[np.uint8]:
    labels, _ = connected_components(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    if fill:
        assert hu is not None
        largest = _ref_fill_liver_holes(largest, hu)
    return largest.astype(np.uint8)


def _ref_drop_dark_tissue(liver: npt.NDArray[np.uint8], above: npt.NDArray[np.bool_],
                          sure: npt.NDArray[np.bool_], hu: npt.NDArray[np.generic],
                          spacing: Spacing) -> npt.NDArray[np.uint8]:
    inside = liver > 0
    sure_inside = sure & inside
    if not sure_inside.any():
        return liver
    level = float(np.median(np.asarray(hu[sure_inside], dtype=np.float32)))
    margin = [int(np.ceil(LIVER_NOTCH_MM / s)) + 1 for s in spacing]
    found = ndimage.find_objects(liver)[0]
    assert found is not None
    box = tuple(slice(max(0, b.start - m), min(n, b.stop + m))
                for b, m, n in zip(found, margin, liver.shape, strict=True))
    size = [1] + [max(1, round(LOCAL_MEAN_MM / s)) for s in spacing[1:]]
    weight = inside[box].astype(np.float32)
    total = ndimage.uniform_filter(np.asarray(hu[box], dtype=np.float32) * weight, size=size)
    local = total / np.maximum(ndimage.uniform_filter(weight, size=size), 1e-6)
    kept = inside[box] & (local >= level - DARK_BELOW_LIVER_HU)
    if not kept.any():
        return liver
    core = _ref_largest_filled_component(kept, fill=False) > 0
    closed = _ref_closing(core, spacing, LIVER_NOTCH_MM)
    out = np.zeros_like(liver)
    out[box] = _ref_largest_filled_component((closed & above[box]) | core, hu=hu[box])
    return out


def _reference(above: npt.NDArray[np.bool_], sure: npt.NDArray[np.bool_],
               hu: npt.NDArray[np.generic], spacing: Spacing) -> npt.NDArray[np.uint8]:
    liver = _ref_largest_filled_component(above, hu=hu)
    return _ref_drop_dark_tissue(liver, above, sure, hu, spacing)


# --- the helpers against scipy ---


def test_label_medians_equal_scipy_median() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.int16, np.float64):
        values = rng.normal(40, 30, size=(7, 9, 11)).astype(dtype)
        values.flat[::5] = values.flat[1]  # ties
        labels = rng.integers(0, 13, size=values.shape).astype(np.int32)
        labels[(labels == 4) | (labels == 11) | (labels == 12)] = 0  # 4: no voxels
        labels[0, 0, 0] = 12  # one voxel
        labels[0, 0, 1:3] = 11  # two voxels: the mean of both
        ours = label_medians(values, labels, 12)
        present = np.unique(labels[labels > 0])
        theirs = np.asarray(ndimage.median(values, labels, present))
        assert np.array_equal(ours[present - 1], theirs), dtype
        assert np.isnan(ours[3]) and ours[11] == values[0, 0, 0]
        pair = values[0, 0, 1:3].astype(np.float64 if dtype == np.int16 else dtype)
        assert ours[10] == (pair[0] + pair[1]) / 2


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int], level: float
           ) -> npt.NDArray[np.bool_]:
    """Random blobs: smoothed noise above `level` (holes, several pieces, border contact)."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5)
    return np.asarray(noise > level * noise.std())


def test_fill_holes_equals_binary_fill_holes() -> None:
    rng = np.random.default_rng(1)
    for level in (-0.5, 0.0, 0.8):
        mask = _blobs(rng, (9, 30, 33), level)
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        sliced = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        assert np.array_equal(fill_holes(mask, in_plane=True), sliced)
    ring = np.zeros((3, 7, 7), bool)
    ring[:, 1:6, 1:6] = True
    ring[1, 3, 3] = False  # a 3D hole, also a hole of slice 1
    assert fill_holes(ring).all(axis=0)[3, 3] and fill_holes(ring, in_plane=True)[1, 3, 3]
    open_tube = ring.copy()
    open_tube[:, 3, 3] = False  # open at both z ends: a hole of each slice, not in 3D
    assert not fill_holes(open_tube)[:, 3, 3].any()
    assert fill_holes(open_tube, in_plane=True)[:, 3, 3].all()


def test_slice_filling_leaves_no_3d_hole() -> None:
    """Why `fill_liver_holes` fills in 3D no more: scipy's 3D filling of a slice-filled mask
    changes nothing, also for a hollow ball whose cavity no single slice closes off."""
    rng = np.random.default_rng(4)
    masks = [_blobs(rng, (9, 30, 33), level) for level in (-0.8, -0.5, 0.0, 0.8)]
    z, y, x = np.ogrid[:15, :15, :15]
    radius = np.sqrt((z - 7) ** 2 + (y - 7) ** 2 + (x - 7) ** 2)
    masks.append((radius <= 6) & (radius > 3))  # a 3D hole, also a hole of its middle slices
    for mask in masks:
        sliced = fill_holes(mask, in_plane=True)
        assert np.array_equal(ndimage.binary_fill_holes(sliced), sliced)
    assert fill_holes(masks[-1], in_plane=True)[7, 7, 7]


#: Voxel sizes (z, y, x mm) of the real CTs' 2 mm grids and others: 5 mm slices put offsets
#: exactly on a 15 mm sphere; (0.1, 0.1, 0.1) with 0.3 mm rounds an offset onto it.
_SAMPLINGS = [(1.600000023841856, 1.485999941825866, 1.485999941825866), (5.0, 1.59375, 1.59375),
              (2.3534998893737793,) * 3, (1.0, 1.0, 1.0), (3.0, 1.3, 0.7), (0.1, 0.1, 0.1)]


@pytest.mark.parametrize("sampling", _SAMPLINGS)
@pytest.mark.parametrize("radius", [0.0, 0.3, 2.0, 4.5, 15.0])
def test_ball_dilation_equals_thresholded_distance_map(sampling: tuple[float, float, float],
                                                       radius: float) -> None:
    rng = np.random.default_rng(int(radius * 10) + len(sampling))
    mask = _blobs(rng, (14, 23, 29), 1.6)
    mask[0, 0, 0] = mask[-1, 5, -1] = True  # on the faces
    expected = ndimage.distance_transform_edt(~mask, sampling=sampling) <= radius
    assert np.array_equal(within_distance(mask, sampling, radius), expected)
    empty = np.zeros_like(mask)  # a meaningless map, but the same one
    assert np.array_equal(within_distance(empty, sampling, radius),
                          ndimage.distance_transform_edt(~empty, sampling=sampling) <= radius)
    rows = ball_rows(sampling, radius)
    if rows is None:  # rounded onto the sphere: only there may the ball decline
        assert sampling == (0.1, 0.1, 0.1)
        return
    assert np.array_equal(dilate_by_ball(mask, rows), expected)
    # Erosion: the same dilation of the outside, complemented (a distance map of an array
    # without zeros means nothing: `_closing` does not ask for it).
    assert expected.all() or np.array_equal(~dilate_by_ball(~expected, rows),
                          ndimage.distance_transform_edt(expected, sampling=sampling) > radius)
    if radius >= 4.5:  # not the mask itself: a wrong ball would show
        assert expected.sum() > 1.5 * mask.sum()


def test_ball_on_the_sphere_is_inside_and_the_rows_are_runs() -> None:
    rows = ball_rows((5.0, 1.0, 1.0), 15.0)
    assert rows is not None
    assert (3, 0, 0) in rows and (-3, 0, 0) in rows  # exactly 15 mm: inside, as <= says
    assert not any(abs(dz) > 3 for dz, _, _ in rows)
    assert dict(((dz, dy), w) for dz, dy, w in rows)[(0, 0)] == 15
    assert ball_rows((0.1, 0.1, 0.1), 0.3) is None  # 3 x 0.1 rounds to 0.30000000000000004
    assert ball_rows((1.0, 1.0, 1.0), -1.0) is None


@pytest.mark.parametrize("spacing", [(1.6, 0.74, 0.74), (5.0, 0.8, 0.8), (2.35, 2.35, 2.35),
                                     (1.0, 1.0, 1.0)])
@pytest.mark.usefixtures("both_distance_ways")
def test_closing_equals_reference(spacing: Spacing) -> None:
    rng = np.random.default_rng(7)
    shape = (30, 90, 80)
    mask = _blobs(rng, shape, 0.9)
    assert np.array_equal(_closing(mask, spacing, LIVER_NOTCH_MM),
                          _ref_closing(mask, spacing, LIVER_NOTCH_MM))
    tiny = np.zeros(shape, bool)  # nothing left on the coarse grid: the distance maps decide
    tiny[3, 1, 1] = True
    assert np.array_equal(_closing(tiny, spacing, 4.0), _ref_closing(tiny, spacing, 4.0))
    full = np.ones((4, 6, 6), bool)  # the grown mask fills the array
    assert np.array_equal(_closing(full, spacing, 4.0), _ref_closing(full, spacing, 4.0))


def test_not_enclosed_equals_filled_minus_the_3d_filling() -> None:
    rng = np.random.default_rng(11)
    seen_open = 0
    for level in (-0.3, 0.0, 0.4, 0.9):
        for shape in ((9, 30, 33), (4, 12, 40)):
            mask = _blobs(rng, shape, level)
            for filled in (fill_holes(fill_holes(mask, in_plane=True)), fill_holes(mask)):
                expected = filled & ~fill_holes(mask)
                assert np.array_equal(not_enclosed(mask, filled), expected), (level, shape)
                seen_open += int(expected.any())
    assert seen_open
    block = np.zeros((8, 12, 12), bool)  # a cavity (enclosed) and a pocket open above
    block[1:7, 1:11, 1:11] = True
    block[2:4, 3:5, 3:5] = False
    block[3:7, 7:9, 7:9] = False
    filled = fill_holes(fill_holes(block, in_plane=True))
    pocket = np.zeros_like(block)
    pocket[3:7, 7:9, 7:9] = True
    assert np.array_equal(not_enclosed(block, filled), pocket)
    tube = np.zeros((5, 7, 7), bool)
    tube[:, 1:6, 1:6] = True
    tube[1:, 3, 3] = False  # open on the last slice only: a hole of each slice, not in 3D
    filled = fill_holes(fill_holes(tube, in_plane=True))
    assert np.array_equal(not_enclosed(tube, filled), filled & ~tube)
    assert not not_enclosed(tube, tube).any()


# --- the whole post-processing against the reference ---


def _synthetic_case(seed: int, shape: tuple[int, int, int]
                    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_],
                               npt.NDArray[np.int16]]:
    """above, sure, hu: a liver of 120 HU with pockets of fluid (15 HU) and lesions (60 HU)
    inside it and at its edge, dark tissue (40 HU) pressing on it, stray pieces, and the
    model's mask running into the volume's border."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    hu = np.full(shape, -100, np.int16)
    liver = np.zeros(shape, bool)
    liver[: z - 2, 4 : y - 8, : x // 2 + 6] = True  # touches the first slice and x = 0
    hu[liver] = 120
    hu[_blobs(rng, shape, 1.2) & liver] = 15  # fluid pockets
    hu[_blobs(rng, shape, 1.4) & liver] = 60  # lesions
    mass = np.zeros(shape, bool)
    mass[2 : z - 4, 10 : y - 12, x // 2 + 6 : x - 3] = True  # dark tissue pressing on it
    hu[mass] = 40
    noise = rng.normal(0, 6, size=shape).astype(np.int16)
    hu = (hu + noise).astype(np.int16)
    above = ((liver & (hu > 90)) | mass | _blobs(rng, shape, 2.0)) & ~_blobs(rng, shape, 1.8)
    sure = above & liver & (hu > 100)
    return above, sure, hu


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_postprocess_equals_reference_on_synthetic_cases(seed: int) -> None:
    spacing = (2.5, 0.8, 0.8) if seed % 2 else (1.0, 1.3, 1.3)
    above, sure, hu = _synthetic_case(seed, (24, 70, 90))
    out = postprocess_liver(above, sure, hu, spacing=spacing)
    assert out.dtype == np.uint8 and out.any()
    assert np.array_equal(out, _reference(above, sure, hu, spacing))
    # The liver box reaches the border: the grown boxes are clipped there.
    assert out[0].any() and out[:, :, 0].any()


def test_postprocess_equals_reference_with_holes_at_the_box_edge() -> None:
    # A liver whose bounding box is its own outline: pockets open onto the box's faces, a
    # hole on the last slice, and a second, smaller piece.
    hu = np.full((12, 40, 40), 120, np.int16)
    above = np.zeros(hu.shape, bool)
    above[2:10, 5:35, 5:35] = True
    above[2:6, 5:12, 15:20] = False  # a notch open at y = 5 (the box's face)
    hu[2:6, 5:12, 15:20] = 10
    above[9, 15:20, 15:20] = False  # a hole of the top slice, open above in 3D
    hu[9, 15:20, 15:20] = 5
    above[3:8, 20:24, 20:24] = False  # enclosed
    above[0, 0:3, 0:3] = True  # a second piece in the volume's corner
    hu[:, 30:, 30:] = 30  # dark tissue in one corner of the liver
    sure = above & (hu > 100)
    for spacing in ((1.0, 1.0, 1.0), (3.0, 0.7, 0.7)):
        out = postprocess_liver(above, sure, hu, spacing=spacing)
        assert np.array_equal(out, _reference(above, sure, hu, spacing))
        without = postprocess_liver(above, sure, hu, spacing=spacing, dark_tissue_rule=False)
        assert np.array_equal(without, _ref_largest_filled_component(above, hu=hu))


@pytest.mark.slow
@pytest.mark.shared_data
def test_postprocess_equals_reference_on_ircadb_1_17() -> None:
    from livermets.infer.slices import slice_probabilities
    from livermets.io import read_image
    from livermets.models.saved import load_model
    from livermets.models.starter import starter_model_path
    from livermets.preprocess import LIVER_WINDOW_HU, window

    ct = read_image(shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM"))
    model = load_model(starter_model_path("liver"), expected_task="liver")
    low, high = model.preprocessing.get("window_hu", LIVER_WINDOW_HU)
    probability = slice_probabilities(model, ct.array, lambda s: window(s, (low, high)))
    above, sure = probability > LIVER_THRESHOLD, probability > SURE_LIVER_PROBABILITY
    del probability
    out = postprocess_liver(above, sure, ct.array, spacing=ct.spacing)
    assert out.sum() > 1_000_000  # a liver of about 2 million voxels
    assert np.array_equal(out, _reference(above, sure, ct.array, ct.spacing))
