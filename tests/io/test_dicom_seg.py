"""DICOM SEG on real data: the dcmqi liver SEG lands on its 3-slice CT exactly where the NRRD export
of the same mask does; edited copies test placement, FRACTIONAL, OR-ing and every refusal."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import pack_bits

from livermets.errors import InputError
from livermets.io import Geometry, read_image
from livermets.io.dicom import read_dicom_geometry
from livermets.io.dicom_seg import read_dicom_seg, read_dicom_seg_for_series
from tests.conftest import shared_path

pytestmark = pytest.mark.shared_data

CT_SERIES_UID = "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"
LIVER_VOXELS = 107098


@pytest.fixture(scope="module")
def seg_path() -> Path:
    return shared_path("fixtures", "dcmqi", "liver.dcm")


@pytest.fixture(scope="module")
def ct_folder() -> Path:
    return shared_path("fixtures", "dcmqi", "ct-3slice")


@pytest.fixture(scope="module")
def ct(ct_folder: Path) -> Geometry:
    return read_dicom_geometry(ct_folder)


@pytest.fixture(scope="module")
def liver(seg_path: Path, ct: Geometry) -> np.ndarray:
    """The unedited liver mask (z, y, x) on the CT grid."""
    [segment] = read_dicom_seg(seg_path, ct)
    return segment.mask.array


def _edited(seg_path: Path, target: Path, edit: Callable[[Any], None]) -> Path:
    """A copy of the SEG at `target` after `edit(dataset)`."""
    ds = pydicom.dcmread(seg_path)
    edit(ds)
    ds.save_as(target)
    return target


def _move_frames(ds: Any, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> None:
    """Shift every frame's ImagePositionPatient by (dx, dy, dz) mm."""
    for item in ds.PerFrameFunctionalGroupsSequence:
        position = item.PlanePositionSequence[0]
        x, y, z = (float(v) for v in position.ImagePositionPatient)
        position.ImagePositionPatient = [x + dx, y + dy, z + dz]


def _frames(ds: Any) -> np.ndarray:
    return np.asarray(ds.pixel_array, dtype=np.uint8)


def test_liver_matches_the_nrrd_export(seg_path: Path, ct: Geometry) -> None:
    segments = read_dicom_seg(seg_path, ct)
    assert [(s.number, s.label, s.category, s.property_type) for s in segments] == [
        (1, "Liver", "Tissue", "Liver")
    ]
    mask = segments[0].mask
    assert mask.geometry == ct
    assert mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) == {0, 1}
    assert int(mask.array.sum()) == LIVER_VOXELS

    nrrd = read_image(shared_path("fixtures", "dcmqi", "liver_seg.nrrd"))
    assert int((nrrd.array > 0).sum()) == LIVER_VOXELS
    for k in range(nrrd.shape[0]):  # map each NRRD slice to the CT by physical position
        index = ct.physical_to_index(nrrd.geometry.index_to_physical([k, 0, 0]))
        np.testing.assert_allclose(index, np.rint(index), atol=1e-3)
        z = int(np.rint(index[0]))
        assert tuple(np.rint(index[1:])) == (0, 0)
        np.testing.assert_array_equal(mask.array[z], (nrrd.array[k] > 0).astype(np.uint8))


def test_for_series_in_folders_holding_the_ct(seg_path: Path, ct_folder: Path) -> None:
    for folder in (ct_folder, ct_folder.parent):  # the parent also holds the SEG and NRRDs
        [segment] = read_dicom_seg_for_series(seg_path, folder)
        assert segment.label == "Liver"
        assert int(segment.mask.array.sum()) == LIVER_VOXELS


def test_for_series_prefers_the_referenced_series(
    seg_path: Path, ct_folder: Path, tmp_path: Path
) -> None:
    """A folder with a bigger CT series too: the one the SEG references is used."""
    crlm = sorted(shared_path("crlm", "CRLM-CT-1004").iterdir())[:10]
    for path in [*crlm, *ct_folder.iterdir()]:
        shutil.copy(path, tmp_path / f"{path.parent.name}-{path.name}")
    [segment] = read_dicom_seg_for_series(seg_path, tmp_path)
    assert segment.mask.shape == (3, 512, 512)
    assert int(segment.mask.array.sum()) == LIVER_VOXELS


def test_for_series_refuses_another_ct(seg_path: Path) -> None:
    crlm = shared_path("crlm", "CRLM-CT-1004")
    crlm_uid = str(pydicom.dcmread(next(crlm.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    with pytest.raises(InputError) as error:
        read_dicom_seg_for_series(seg_path, crlm)
    assert CT_SERIES_UID in str(error.value) and crlm_uid in str(error.value)


def test_frames_between_slices_are_refused(seg_path: Path, ct: Geometry, tmp_path: Path) -> None:
    path = _edited(seg_path, tmp_path / "half.dcm", lambda ds: _move_frames(ds, dz=0.5))
    with pytest.raises(InputError, match="does not lie on that CT's slices") as error:
        read_dicom_seg(path, ct)
    assert "slice index 0.50" in str(error.value)


def test_frames_beyond_the_ct_are_refused(seg_path: Path, ct: Geometry, tmp_path: Path) -> None:
    path = _edited(seg_path, tmp_path / "above.dcm", lambda ds: _move_frames(ds, dz=3.0))
    with pytest.raises(InputError, match="does not lie on that CT's slices"):
        read_dicom_seg(path, ct)


def test_half_pixel_shift_is_refused(seg_path: Path, ct: Geometry, tmp_path: Path) -> None:
    dx = 0.5 * ct.spacing[2]
    path = _edited(seg_path, tmp_path / "shift.dcm", lambda ds: _move_frames(ds, dx=dx))
    with pytest.raises(InputError, match="fraction of a pixel"):
        read_dicom_seg(path, ct)


def test_sub_region_frames_are_placed_at_their_offset(
    seg_path: Path, ct: Geometry, liver: np.ndarray, tmp_path: Path
) -> None:
    y0, y1, x0, x1 = 100, 300, 50, 350

    def crop(ds: Any) -> None:
        frames = _frames(ds)[:, y0:y1, x0:x1]
        ds.Rows, ds.Columns = y1 - y0, x1 - x0
        ds.PixelData = pack_bits(frames.ravel())
        _move_frames(ds, dx=x0 * ct.spacing[2], dy=y0 * ct.spacing[1])

    [segment] = read_dicom_seg(_edited(seg_path, tmp_path / "crop.dcm", crop), ct)
    expected = np.zeros_like(liver)
    expected[:, y0:y1, x0:x1] = liver[:, y0:y1, x0:x1]
    assert 0 < expected.sum() < liver.sum()
    np.testing.assert_array_equal(segment.mask.array, expected)


def test_frames_partly_outside_are_clipped(
    seg_path: Path,
    ct: Geometry,
    liver: np.ndarray,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shift = 300  # columns: frame column 0 lands on CT column 300, columns >= 212 fall outside
    path = _edited(
        seg_path, tmp_path / "right.dcm", lambda ds: _move_frames(ds, dx=shift * ct.spacing[2])
    )
    [segment] = read_dicom_seg(path, ct)
    expected = np.zeros_like(liver)
    expected[:, :, shift:] = liver[:, :, : 512 - shift]
    np.testing.assert_array_equal(segment.mask.array, expected)
    lost = int(liver[:, :, 512 - shift :].sum())
    assert lost > 0
    assert any(f"{lost} foreground pixel(s)" in r.getMessage() for r in caplog.records)


def test_frames_of_one_slice_are_ored(
    seg_path: Path, ct: Geometry, liver: np.ndarray, tmp_path: Path
) -> None:
    def stack_two(ds: Any) -> None:  # frame 2 moved onto frame 1's slice
        first = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
        second = ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
        second.ImagePositionPatient = list(first.ImagePositionPatient)

    [segment] = read_dicom_seg(_edited(seg_path, tmp_path / "or.dcm", stack_two), ct)
    mask = segment.mask.array
    np.testing.assert_array_equal(mask[0], liver[0] | liver[1])
    assert not mask[1].any()
    np.testing.assert_array_equal(mask[2], liver[2])


def test_fractional_thresholded_at_half(
    seg_path: Path, ct: Geometry, liver: np.ndarray, tmp_path: Path
) -> None:
    def fractional(ds: Any) -> None:
        frames = _frames(ds)
        values = np.where(frames > 0, 128, 0).astype(np.uint8)  # 128/255 >= 50%: inside
        values[(frames == 0) & (np.indices(frames.shape).sum(axis=0) % 2 == 0)] = 127  # outside
        ds.SegmentationType = "FRACTIONAL"
        ds.SegmentationFractionalType = "PROBABILITY"
        ds.MaximumFractionalValue = 255
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = values.tobytes()

    [segment] = read_dicom_seg(_edited(seg_path, tmp_path / "frac.dcm", fractional), ct)
    np.testing.assert_array_equal(segment.mask.array, liver)


def test_other_orientation_is_refused(seg_path: Path, ct: Geometry, tmp_path: Path) -> None:
    def coronal(ds: Any) -> None:
        plane = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
        plane.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    with pytest.raises(InputError, match="orientation"):
        read_dicom_seg(_edited(seg_path, tmp_path / "cor.dcm", coronal), ct)


def test_other_pixel_spacing_is_refused(seg_path: Path, ct: Geometry, tmp_path: Path) -> None:
    def finer(ds: Any) -> None:
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [0.7, 0.7]

    with pytest.raises(InputError, match="pixel spacing"):
        read_dicom_seg(_edited(seg_path, tmp_path / "fine.dcm", finer), ct)


def test_not_a_seg(ct_folder: Path, ct: Geometry, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="DICOM CT object, not a DICOM Segmentation"):
        read_dicom_seg(ct_folder / "01.dcm", ct)
    text = tmp_path / "seg.dcm"
    text.write_text("not DICOM\n")
    with pytest.raises(InputError, match="is not a DICOM file"):
        read_dicom_seg(text, ct)
    with pytest.raises(InputError, match="no such file"):
        read_dicom_seg(tmp_path / "missing.dcm", ct)
