"""Pre-processing: the network grid and back, liver z-score, window, liver z-range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from livermets.errors import InputError
from livermets.io import read_image
from livermets.preprocess import (
    LiverStatistics,
    PlaneMapping,
    lesion_plane_box,
    liver_field_box,
    liver_plane_box,
    liver_statistics,
    liver_z_range,
    liver_zscore,
    plane_overlap,
    take_plane,
    window,
)
from tests.conftest import shared_path


def test_shrinking_a_ramp_samples_pixel_centres() -> None:
    """512 -> 256: network pixel j covers CT pixels 2j and 2j+1, centred at 2j + 0.5."""
    ramp = np.tile(np.arange(512, dtype=np.float32), (1, 512, 1))
    out = PlaneMapping(512, 512, 256).to_network(ramp, kind="image")
    assert out.shape == (1, 256, 256) and out.dtype == np.float32
    # A symmetric filter keeps a linear ramp exact away from the borders.
    np.testing.assert_allclose(out[0, 100, 2:-2], 2 * np.arange(2, 254) + 0.5, atol=1e-3)


def test_constant_image_stays_constant_and_padding_fills_air() -> None:
    image = np.full((2, 40, 60), 55.0, np.float32)
    mapping = PlaneMapping(40, 60, 30)
    assert mapping.padding == (0, 0, 10, 10)  # rows padded to a 60x60 square, centred
    out = mapping.to_network(image, kind="image", pad_value=-1000.0)
    assert out.shape == (2, 30, 30)
    np.testing.assert_allclose(out[:, 8:22, :], 55.0, atol=1e-4)  # inside the CT
    np.testing.assert_allclose(out[:, :4, :], -1000.0, atol=1e-3)  # padding rows


def test_mask_round_trip_on_a_non_square_slice() -> None:
    mask = np.zeros((1, 100, 60), np.uint8)
    mask[0, 30:70, 10:40] = 3
    mapping = PlaneMapping(100, 60, 50)
    small = mapping.to_network(mask, kind="mask")
    assert small.dtype == np.uint8 and set(np.unique(small).tolist()) == {0, 3}  # no new labels
    back = mapping.to_ct(small, kind="mask")
    assert back.shape == mask.shape and back.dtype == np.uint8
    assert np.count_nonzero(back != mask) <= 2 * (40 + 30)  # only boundary pixels may move


def test_probabilities_back_to_ct_are_float() -> None:
    mapping = PlaneMapping(64, 64, 32)
    probability = np.zeros((3, 32, 32), np.float32)
    probability[:, 8:24, 8:24] = 1.0
    back = mapping.to_ct(probability, kind="image")
    assert back.shape == (3, 64, 64) and back.dtype == np.float32
    assert back.min() >= 0.0 and back.max() <= 1.0
    assert back[0, 32, 32] == pytest.approx(1.0) and back[0, 2, 2] == pytest.approx(0.0)


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="expected slices of shape"):
        PlaneMapping(64, 64).to_network(np.zeros((2, 32, 32)), kind="image")


@pytest.mark.shared_data
def test_liver_mask_round_trip_on_ircadb_within_one_voxel(tmp_path: Path) -> None:
    """IRCADb 1.17's liver: 512 -> 256 -> 512 (nearest) moves only voxels on the boundary."""
    import zipfile

    archive = shared_path("ircadb", "3Dircadb1.17", "MASKS_DICOM.zip")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path, [n for n in z.namelist() if n.startswith("MASKS_DICOM/liver/")])
    liver = (read_image(tmp_path / "MASKS_DICOM" / "liver").array > 0).astype(np.uint8)
    mapping = PlaneMapping(512, 512, 256)
    back = mapping.to_ct(mapping.to_network(liver, kind="mask"), kind="mask")
    assert back.shape == liver.shape
    changed = back != liver
    # In-plane boundary: liver voxels with a background neighbour in the slice, or vice versa.
    cross = ndimage.generate_binary_structure(2, 1)[None]
    square = np.ones((1, 3, 3), bool)
    boundary = ndimage.binary_dilation(liver, cross) != ndimage.binary_erosion(liver, cross)
    assert changed.any() and not np.any(changed & ~ndimage.binary_dilation(boundary, square))
    assert abs(int(back.sum()) - int(liver.sum())) / liver.sum() < 0.01


def test_liver_statistics_by_hand() -> None:
    image = np.zeros((1, 10, 10), np.int16)
    image[0, :, :5] = 100
    image[0, :, 5:] = 140
    mask = np.ones((1, 10, 10), np.uint8)
    stats = liver_statistics(image, mask, spacing=(10.0, 10.0, 10.0))  # 100 voxels of 1 mL
    assert (stats.mean_hu, stats.std_hu, stats.volume_ml) == pytest.approx((120.0, 20.0, 100.0))
    z = liver_zscore(image, stats)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.unique(z), [-1.0, 1.0])


@pytest.mark.parametrize(
    ("fill", "values", "message"),
    [(0, 100, "liver mask is empty"), (10, 100, r"only 10\.0 mL"),
     (100, 100, "constant inside the liver")],
)
def test_liver_statistics_refuses_tiny_or_flat_livers(fill: int, values: int,
                                                      message: str) -> None:
    image = np.full((1, 10, 10), values, np.int16)
    mask = np.zeros((1, 10, 10), np.uint8)
    mask.flat[:fill] = 1
    with pytest.raises(InputError, match=message):
        liver_statistics(image, mask, spacing=(10.0, 10.0, 10.0))


def test_window() -> None:
    out = window(np.array([[[-1000, -150, 50, 250, 3000]]], np.int16))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="high > low"):
        window(np.zeros((1, 1, 1)), (10.0, 10.0))


def test_liver_z_range_with_margin() -> None:
    mask = np.zeros((20, 4, 4), np.uint8)
    mask[8:12, 1, 1] = 1
    assert liver_z_range(mask, (2.5, 1.0, 1.0), margin_mm=5.0) == (6, 14)
    assert liver_z_range(mask, (2.5, 1.0, 1.0), margin_mm=100.0) == (0, 20)
    assert liver_z_range(mask, (2.5, 1.0, 1.0), margin_mm=0.0) == (8, 12)
    with pytest.raises(InputError, match="empty"):
        liver_z_range(np.zeros((3, 2, 2)), (1.0, 1.0, 1.0))


def test_statistics_is_a_plain_value() -> None:
    assert LiverStatistics(1.0, 2.0, 3.0) == LiverStatistics(1.0, 2.0, 3.0)


def test_liver_plane_box_by_hand() -> None:
    mask = np.zeros((6, 40, 60), np.uint8)
    mask[2, 10:20, 30:50] = 1
    mask[4, 12:22, 35:40] = 1  # another slice widens the rows to 10..21
    # 3 mm margin: ceil(3 / 0.5) = 6 rows and ceil(3 / 2) = 2 columns on each side.
    assert liver_plane_box(mask, (5.0, 0.5, 2.0), 3.0) == (slice(4, 28), slice(28, 52))
    # Clipped to the slice; no margin is the bounding box itself; None is the whole slice.
    assert liver_plane_box(mask, (5.0, 0.5, 2.0), 100.0) == (slice(0, 40), slice(0, 60))
    assert liver_plane_box(mask, (5.0, 0.5, 2.0), 0.0) == (slice(10, 22), slice(30, 50))
    assert liver_plane_box(mask, (5.0, 0.5, 2.0), None) == (slice(0, 40), slice(0, 60))
    with pytest.raises(InputError, match="empty"):
        liver_plane_box(np.zeros((2, 4, 4)), (1.0, 1.0, 1.0), 5.0)
    with pytest.raises(InputError, match=">= 0 mm"):
        liver_plane_box(mask, (1.0, 1.0, 1.0), -1.0)


def test_context_steps_and_indices_by_hand() -> None:
    from livermets.preprocess import context_indices, context_steps

    assert context_steps(None, 2.0) == 0
    assert (context_steps(5.0, 2.5), context_steps(5.0, 1.6), context_steps(5.0, 5.0),
            context_steps(1.0, 5.0)) == (2, 3, 1, 1)  # 5/1.6 = 3.1; at least one slice
    np.testing.assert_array_equal(context_indices(np.array([0, 1, 5, 9]), 2, 10),
                                  [[0, 0, 2], [0, 1, 3], [3, 5, 7], [7, 9, 9]])
    np.testing.assert_array_equal(context_indices(np.array([4, 6]), 0, 10), [[4], [6]])


def test_field_box_is_a_square_in_mm_round_the_liver_reaching_past_the_slice() -> None:
    """The liver's in-plane box: rows 100-199, columns 0-59 (pixels of 0.8 mm). A 200 mm field
    is 250 pixels, centred on the box: rows (100 + 200 - 250) // 2 = 25 to 275, columns
    (0 + 60 - 250) // 2 = -95 to 155 (past the slice's left edge). A liver 300 pixels (240 mm)
    tall needs 240 + 2 x 10 mm = 260 mm: the field grows to 325 pixels both ways."""
    liver = np.zeros((3, 512, 512), np.uint8)
    liver[1, 100:200, 0:60] = 1
    assert liver_field_box(liver, (5.0, 0.8, 0.8), 200.0) == (slice(25, 275), slice(-95, 155))
    liver[2, 100:400, 10:20] = 1
    rows, columns = liver_field_box(liver, (5.0, 0.8, 0.8), 200.0)
    assert (rows.stop - rows.start, columns.stop - columns.start) == (325, 325)
    assert rows == slice((100 + 400 - 325) // 2, (100 + 400 - 325) // 2 + 325)
    assert lesion_plane_box(liver, (5.0, 0.8, 0.8), {"field_mm": 200.0}) == (rows, columns)
    assert lesion_plane_box(liver, (5.0, 0.8, 0.8), {}) == (slice(0, 512), slice(0, 512))
    with pytest.raises(InputError, match="empty"):
        liver_field_box(np.zeros((2, 8, 8)), (1.0, 1.0, 1.0), 50.0)
    with pytest.raises(InputError, match="at least 1 mm"):
        liver_field_box(liver, (1.0, 1.0, 1.0), 0.0)


def test_take_plane_pads_what_lies_past_the_slice() -> None:
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    inside = take_plane(volume, slice(1, 3), slice(0, 2), -1000)
    assert np.shares_memory(inside, volume)  # a view: nothing copied when it fits
    np.testing.assert_array_equal(inside, volume[:, 1:3, 0:2])
    out = take_plane(volume, slice(-1, 2), slice(2, 6), -1000)
    assert out.shape == (2, 3, 4) and out.dtype == np.int16
    expected = np.full((2, 3, 4), -1000, np.int16)
    expected[:, 1:3, 0:2] = volume[:, 0:2, 2:4]  # rows 0-1 and columns 2-3 are on the slice
    np.testing.assert_array_equal(out, expected)
    assert plane_overlap(slice(-1, 2), slice(2, 6), (3, 4)) == (
        (slice(0, 2), slice(2, 4)), (slice(1, 3), slice(0, 2)))
