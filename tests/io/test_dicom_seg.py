"""DICOM SEG on real data: the dcmqi liver SEG lands on its 3-slice CT exactly where the NRRD export
of the same mask does; edited copies test placement, FRACTIONAL, OR-ing and every refusal.
Writing: masks written onto the 3-slice CT and IRCADb 1.17 read back voxel for voxel, with the
references checked against the CT files' own headers; empty segments; every refusal."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import pack_bits

import livermets
from livermets.errors import InputError
from livermets.io import Geometry, Volume, read_image, write_image
from livermets.io.dicom import read_dicom_geometry
from livermets.io.dicom_seg import (
    SegmentSpec,
    liver_segment,
    metastases_segment,
    read_dicom_seg,
    read_dicom_seg_for_series,
    write_dicom_seg,
)
from tests.conftest import ellipsoid, shared_path

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


# --- writing --------------------------------------------------------------------------------

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def ct_volume(ct_folder: Path) -> Volume:
    return read_image(ct_folder)


def _ct_headers(folder: Path) -> dict[str, Any]:
    """The CT files' own headers by SOPInstanceUID (read here, not through livermets)."""
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in folder.iterdir()]
    return {str(h.SOPInstanceUID): h for h in headers if h.get("Modality") == "CT"}


def _check_seg_header(seg: Any, folder: Path, expected_frames: int) -> None:
    """SEG attributes, and every reference checked against the CT files' own headers: the
    series, every instance, and each frame's source slice at the frame's own position."""
    headers = _ct_headers(folder)
    ct_series = {str(h.SeriesInstanceUID) for h in headers.values()}
    assert len(ct_series) == 1
    assert seg.SOPClassUID == SEG_SOP_CLASS
    assert seg.SegmentationType == "BINARY"
    assert seg.Manufacturer == "livermets"
    assert seg.SoftwareVersions == livermets.__version__
    assert seg.SeriesNumber == 9901
    assert seg.ContentLabel == "LIVERMETS"
    assert seg.SeriesInstanceUID not in ct_series
    assert {str(h.StudyInstanceUID) for h in headers.values()} == {seg.StudyInstanceUID}
    [referenced] = seg.ReferencedSeriesSequence
    assert {referenced.SeriesInstanceUID} == ct_series
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == set(
        headers
    )
    assert int(seg.NumberOfFrames) == expected_frames
    for item in seg.PerFrameFunctionalGroupsSequence:
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        frame_position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        source_position = [float(v) for v in headers[source_uid].ImagePositionPatient]
        np.testing.assert_allclose(frame_position, source_position, atol=1e-3)


def _expected_frames(*masks: np.ndarray) -> int:
    """Frames of a SEG that omits empty ones: non-empty (slice, segment) pairs."""
    return sum(int(np.count_nonzero(m.any(axis=(1, 2)))) for m in masks)


def _three_slice_masks() -> tuple[np.ndarray, np.ndarray]:
    """A liver on slices 0-1 and two lesions (one on slice 0, one on slices 1-2): a flipped or
    shifted z order changes the masks."""
    liver = np.zeros((3, 512, 512), np.uint8)
    liver[0, 100:300, 80:320] = 1
    liver[1, 120:280, 100:300] = 1
    lesions = np.zeros((3, 512, 512), np.uint8)
    lesions[0, 150:170, 150:175] = 1
    lesions[1:, 200:230, 250:262] = 1
    return liver, lesions


def test_write_round_trip_on_three_slices(
    ct_folder: Path, ct_volume: Volume, tmp_path: Path
) -> None:
    liver, lesions = _three_slice_masks()
    out = write_dicom_seg(
        tmp_path / "out" / "seg.dcm",
        [liver_segment(liver), metastases_segment(lesions)],
        ct_volume,
        series_description="test SEG",
    )
    assert out == tmp_path / "out" / "seg.dcm"
    assert sorted(p.name for p in out.parent.iterdir()) == ["seg.dcm"]  # no temporary left

    segments = read_dicom_seg_for_series(out, ct_folder)
    assert [(s.number, s.label, s.category, s.property_type) for s in segments] == [
        (1, "Liver", "Tissue", "Liver"),
        (2, "Liver metastases", "Morphologically Altered Structure", "Neoplasm, Metastatic"),
    ]
    np.testing.assert_array_equal(segments[0].mask.array, liver)
    np.testing.assert_array_equal(segments[1].mask.array, lesions)

    seg = pydicom.dcmread(out)
    _check_seg_header(seg, ct_folder, expected_frames=2 + 3)
    assert seg.SeriesDescription == "test SEG"
    codes = [
        (
            item.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            item.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            item.SegmentAlgorithmType,
        )
        for item in seg.SegmentSequence
    ]
    assert codes == [("85756007", "10200004", "AUTOMATIC"), ("49755003", "14799000", "AUTOMATIC")]
    assert seg.SegmentSequence[1].AnatomicRegionSequence[0].CodeValue == "10200004"


@pytest.mark.slow
def test_write_round_trip_on_ircadb(tmp_path: Path) -> None:
    folder = shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM")
    ct = read_image(folder)
    assert ct.shape == (119, 512, 512)
    liver = ellipsoid(ct.shape, (60, 250, 180), (40, 80, 100))
    lesions = ellipsoid(ct.shape, (50, 240, 150), (6, 10, 10)) | ellipsoid(
        ct.shape, (75, 270, 220), (4, 7, 7)
    )
    assert liver.any(axis=(1, 2)).sum() == 81 and lesions.any(axis=(1, 2)).sum() == 13 + 9
    out = write_dicom_seg(
        tmp_path / "seg.dcm", [liver_segment(liver), metastases_segment(lesions)], ct
    )
    liver_back, lesions_back = read_dicom_seg_for_series(out, folder)
    np.testing.assert_array_equal(liver_back.mask.array, liver)
    np.testing.assert_array_equal(lesions_back.mask.array, lesions)
    seg = pydicom.dcmread(out)
    _check_seg_header(seg, folder, expected_frames=81 + 22)
    assert seg.FrameOfReferenceUID  # IRCADb has none; the SEG needs one


def test_write_empty_lesion_segment(ct_folder: Path, ct_volume: Volume, tmp_path: Path) -> None:
    """No lesion found: the segment is defined without frames and reads back as zeros."""
    liver, _ = _three_slice_masks()
    empty = np.zeros_like(liver)
    out = write_dicom_seg(
        tmp_path / "seg.dcm", [liver_segment(liver), metastases_segment(empty)], ct_volume
    )
    seg = pydicom.dcmread(out)
    _check_seg_header(seg, ct_folder, expected_frames=2)
    assert [int(i.SegmentNumber) for i in seg.SegmentSequence] == [1, 2]
    liver_back, lesions_back = read_dicom_seg_for_series(out, ct_folder)
    np.testing.assert_array_equal(liver_back.mask.array, liver)
    assert lesions_back.label == "Liver metastases"
    assert lesions_back.mask.shape == (3, 512, 512) and not lesions_back.mask.array.any()


def test_write_all_segments_empty(ct_folder: Path, ct_volume: Volume, tmp_path: Path) -> None:
    """Nothing at all: a SEG needs frames, so every slice gets an empty one."""
    empty = np.zeros((3, 512, 512), np.uint8)
    out = write_dicom_seg(tmp_path / "seg.dcm", [metastases_segment(empty)], ct_volume)
    _check_seg_header(pydicom.dcmread(out), ct_folder, expected_frames=3)
    [segment] = read_dicom_seg_for_series(out, ct_folder)
    assert segment.mask.shape == (3, 512, 512) and not segment.mask.array.any()


def test_write_accepts_boolean_masks(ct_folder: Path, ct_volume: Volume, tmp_path: Path) -> None:
    liver, _ = _three_slice_masks()
    out = write_dicom_seg(tmp_path / "seg.dcm", [liver_segment(liver.astype(bool))], ct_volume)
    [segment] = read_dicom_seg_for_series(out, ct_folder)
    np.testing.assert_array_equal(segment.mask.array, liver)


def _refused(tmp_path: Path, segments: list[SegmentSpec], source: Volume, match: str) -> None:
    """`write_dicom_seg` raises InputError matching `match` and leaves no file behind."""
    target = tmp_path / "refused" / "seg.dcm"
    with pytest.raises(InputError, match=match) as error:
        write_dicom_seg(target, segments, source)
    assert "\n" not in str(error.value)
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_write_refuses_a_nifti_volume(ct_volume: Volume, tmp_path: Path) -> None:
    nifti = read_image(write_image(ct_volume, tmp_path / "ct.nii.gz"))
    assert nifti.shape == ct_volume.shape
    liver, _ = _three_slice_masks()
    _refused(tmp_path, [liver_segment(liver)], nifti, "not read from a DICOM series")


def test_write_refuses_a_resampled_volume(ct_folder: Path, tmp_path: Path) -> None:
    """Move the middle slice 0.1 mm: gaps 0.9 and 1.1 mm, so the reader resamples z."""
    copy = tmp_path / "ct"
    shutil.copytree(ct_folder, copy)
    middle = copy / "02.dcm"
    ds = pydicom.dcmread(middle)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z - 0.1]
    ds.save_as(middle)
    resampled = read_image(copy)
    assert resampled.metadata.get("resampled_z") == "true"
    liver, _ = _three_slice_masks()
    _refused(tmp_path, [liver_segment(liver)], resampled, "resampled along z")


def test_write_refuses_masks_off_the_grid(ct_volume: Volume, tmp_path: Path) -> None:
    liver, lesions = _three_slice_masks()
    _refused(
        tmp_path,
        [liver_segment(liver), metastases_segment(lesions[:, :, :511])],
        ct_volume,
        r"'Liver metastases': mask shape \(z, y, x\) \[3, 512, 511\] differs from the CT's "
        r"\[3, 512, 512\]",
    )
    _refused(tmp_path, [liver_segment(liver * 2)], ct_volume, "values other than 0 and 1")
    _refused(tmp_path, [], ct_volume, "no segments")


def test_write_refuses_missing_or_replaced_sources(ct_folder: Path, tmp_path: Path) -> None:
    liver, _ = _three_slice_masks()
    removed, replaced = tmp_path / "removed", tmp_path / "replaced"
    shutil.copytree(ct_folder, removed)
    shutil.copytree(ct_folder, replaced)
    ct_removed, ct_replaced = read_image(removed), read_image(replaced)
    (removed / "02.dcm").unlink()
    _refused(tmp_path, [liver_segment(liver)], ct_removed, "1 of the 3 source slices")
    ds = pydicom.dcmread(replaced / "03.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(replaced / "03.dcm")
    _refused(tmp_path, [liver_segment(liver)], ct_replaced, "1 of the 3 source slices")
    shutil.rmtree(removed)
    _refused(tmp_path, [liver_segment(liver)], ct_removed, "no such folder")


def test_write_refuses_a_cropped_volume(ct_volume: Volume, tmp_path: Path) -> None:
    """A grid changed after reading (here shifted 1 mm) no longer lies on the series."""
    geometry = ct_volume.geometry
    moved = Geometry(
        geometry.shape,
        geometry.spacing,
        (geometry.origin[0] + 1.0, geometry.origin[1], geometry.origin[2]),
        geometry.direction,
    )
    shifted = Volume(ct_volume.array, moved, ct_volume.metadata)
    liver, _ = _three_slice_masks()
    _refused(tmp_path, [liver_segment(liver)], shifted, "grid differs from its DICOM series")


@pytest.mark.shared_data
def test_write_refuses_a_series_without_uids(tmp_path: Path) -> None:
    # The TotalSegmentator example's DICOM has no SOPInstanceUID, SeriesInstanceUID or
    # SOPClassUID: nothing a SEG could reference.
    ct = read_image(shared_path("fixtures", "totalsegmentator", "example_ct_dicom"))
    mask = np.zeros(ct.shape, np.uint8)
    with pytest.raises(InputError, match="lacks SOPInstanceUIDs"):
        write_dicom_seg(tmp_path / "seg.dcm", [liver_segment(mask)], ct)
    assert not list(tmp_path.iterdir())
