"""DICOM series on real CT: slice order, geometry and HU checked against pydicom directly; broken
series (built from copies of real slices with edited headers) refused with one clear line."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from livermets.errors import InputError
from livermets.io import read_geometry, read_image
from livermets.io.dicom import (
    NO_SERIES_UID,
    geometry_as_read,
    list_dicom_series,
    read_dicom_geometry,
    read_dicom_series,
    referenced_sop_instance_uids,
    source_slices,
)
from livermets.io.volume import IDENTITY_DIRECTION, Volume
from tests.conftest import shared_path

pytestmark = pytest.mark.shared_data


def _headers_by_z(folder: Path) -> list[tuple[Path, Any]]:
    """pydicom headers of a folder's files, sorted by ImagePositionPatient z (axial series)."""
    headers = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in folder.iterdir()]
    return sorted(headers, key=lambda h: float(h[1].ImagePositionPatient[2]))


def _hu(path: Path) -> np.ndarray:
    """HU of one slice decoded by pydicom: pixel_array * RescaleSlope + RescaleIntercept."""
    ds = pydicom.dcmread(path)
    slope = float(ds.get("RescaleSlope", 1))
    intercept = float(ds.get("RescaleIntercept", 0))
    return ds.pixel_array.astype(np.float64) * slope + intercept


@pytest.fixture(scope="module")
def ircadb_folder() -> Path:
    return shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM")


@pytest.fixture(scope="module")
def ircadb(ircadb_folder: Path) -> Volume:
    """IRCADb 1.17, read once for the module (119 slices)."""
    return read_dicom_series(ircadb_folder)


# --- real series ------------------------------------------------------------------------------


def test_ircadb_geometry(ircadb: Volume) -> None:
    assert ircadb.shape == (119, 512, 512)
    np.testing.assert_allclose(ircadb.spacing, (1.6, 0.743, 0.743), atol=1e-6)
    assert ircadb.origin == (0.0, 0.0, 0.0)
    assert ircadb.direction == IDENTITY_DIRECTION


def test_ircadb_values_match_pydicom(ircadb: Volume, ircadb_folder: Path) -> None:
    """HU range over the whole series and three whole slices, decoded by pydicom directly."""
    headers = _headers_by_z(ircadb_folder)
    lows, highs = [], []
    for path, _ in headers:
        hu = _hu(path)
        lows.append(hu.min())
        highs.append(hu.max())
    assert ircadb.array.dtype == np.int16
    assert ircadb.array.min() == min(lows) == -1024
    assert ircadb.array.max() == max(highs) == 1023  # IRCADb clips HU at 1023
    for k in (0, 57, 118):
        path, ds = headers[k]
        index = ircadb.geometry.physical_to_index([float(v) for v in ds.ImagePositionPatient])
        np.testing.assert_allclose(index, (k, 0, 0), atol=1e-6)
        np.testing.assert_array_equal(ircadb.array[k], _hu(path))


def test_ircadb_header_geometry_and_metadata(ircadb: Volume, ircadb_folder: Path) -> None:
    assert read_dicom_geometry(ircadb_folder) == ircadb.geometry
    assert read_geometry(ircadb_folder) == ircadb.geometry  # dispatch from livermets.io
    headers = _headers_by_z(ircadb_folder)
    first = headers[0][1]
    assert ircadb.metadata["format"] == "dicom"
    assert ircadb.metadata["modality"] == "CT"
    assert ircadb.metadata["series_instance_uid"] == first.SeriesInstanceUID
    assert ircadb.metadata["study_instance_uid"] == first.StudyInstanceUID
    expected_uids = [str(ds.SOPInstanceUID) for _, ds in headers]
    assert referenced_sop_instance_uids(ircadb) == expected_uids
    assert json.loads(ircadb.metadata["sop_instance_uids"]) == expected_uids
    assert "resampled_z" not in ircadb.metadata


def test_source_slices_record_the_files_as_read(ircadb: Volume, ircadb_folder: Path) -> None:
    """What a SEG writer needs of each slice, in z order, as the files say it; the grid."""
    headers = _headers_by_z(ircadb_folder)
    slices = source_slices(ircadb)
    assert [s.path for s in slices] == [path for path, _ in headers]
    for s, (path, ds) in zip(slices, headers, strict=True):
        assert (s.size, s.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)
        assert s.sop_class_uid == ds.SOPClassUID and s.sop_instance_uid == ds.SOPInstanceUID
        assert s.frame_of_reference_uid == ""  # IRCADb has none
        assert list(s.position) == [v.original_string for v in ds.ImagePositionPatient]
        assert not s.changed()
    assert geometry_as_read(ircadb) == ircadb.geometry


def test_source_slices_see_rewritten_files(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(shared_path("fixtures", "dcmqi", "ct-3slice"), folder)
    volume = read_image(folder)
    first, second, third = source_slices(volume)
    assert first.frame_of_reference_uid  # this CT has one
    stamp = second.path.stat()
    second.path.write_bytes(second.path.read_bytes())  # same bytes, written again
    assert second.changed()
    os.utime(second.path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # its old time back
    assert not second.changed()
    third.path.unlink()
    assert third.changed() and not first.changed()
    with pytest.raises(InputError, match="no 'dicom_slices' metadata"):
        source_slices(Volume(volume.array, volume.geometry, {"format": "dicom"}))


def test_crlm_1004_sorted_by_position_not_file_name() -> None:
    """Files 1-01..1-41 are in reverse position order: 1-41.dcm is the lowest z."""
    folder = shared_path("crlm", "CRLM-CT-1004")
    volume = read_image(folder)
    headers = _headers_by_z(folder)
    assert headers[0][0].name == "1-41.dcm"  # the data really is named in reverse
    assert volume.shape == (41, 512, 512)
    assert volume.spacing == pytest.approx((5.0, 0.796875, 0.796875))
    assert volume.origin == pytest.approx((-198.2, -204.0, -375.0), abs=1e-5)
    np.testing.assert_array_equal(volume.array[0], _hu(headers[0][0]))
    np.testing.assert_array_equal(volume.array[-1], _hu(headers[-1][0]))
    np.testing.assert_array_equal(volume.array[20], _hu(headers[20][0]))
    # Padding outside the field of view: stored -2000, intercept -1024 -> -3024 HU.
    assert int(headers[0][1].RescaleIntercept) == -1024
    assert volume.array.min() == -3024
    assert volume.metadata["patient_id"] == "CRLM-CT-1004"
    assert volume.metadata["series_description"] == "CT CH/AB/PEL"


def test_crlm_1006() -> None:
    folder = shared_path("crlm", "CRLM-CT-1006")
    volume = read_dicom_series(folder)
    headers = _headers_by_z(folder)
    assert volume.shape == (51, 512, 512)
    assert volume.spacing == pytest.approx((5.0, 0.804688, 0.804688))
    assert volume.origin == pytest.approx([float(v) for v in headers[0][1].ImagePositionPatient])
    np.testing.assert_array_equal(volume.array[25], _hu(headers[25][0]))
    assert read_dicom_geometry(folder) == volume.geometry


def test_totalsegmentator_jpeg2000_without_series_uid() -> None:
    """JPEG 2000 slices with an empty SeriesInstanceUID (and empty SOPInstanceUIDs).

    These 20 slices (z -804.5..-766.5 mm) do not overlap example_ct.nii.gz (z 94..427 mm,
    3 mm grid): not the same data, so only geometry and HU plausibility are checked.
    """
    folder = shared_path("fixtures", "totalsegmentator", "example_ct_dicom")
    first = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # JPEG 2000
    [series] = list_dicom_series(folder)
    assert series.series_instance_uid == ""
    assert series.display_uid == NO_SERIES_UID
    assert (series.num_slices, series.modality, series.orientation) == (20, "CT", "axial")
    volume = read_dicom_series(folder)
    assert volume.shape == (20, 512, 512)
    assert volume.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))  # SliceThickness is 3
    assert volume.origin == pytest.approx((-249.51171875, -437.51171875, -804.5))
    assert volume.metadata["series_instance_uid"] == ""
    assert volume.array.dtype == np.int16
    assert volume.array.min() == -1024  # stored 0 (unsigned) + intercept -1024
    assert -100 < np.median(volume.array[:, 200:300, 200:300]) < 200  # soft tissue centre
    assert read_dicom_geometry(folder) == volume.geometry


def test_dcmqi_three_slices() -> None:
    folder = shared_path("fixtures", "dcmqi", "ct-3slice")
    volume = read_dicom_series(folder)
    assert volume.shape == (3, 512, 512)
    assert volume.spacing == pytest.approx((1.0, 0.810547, 0.810547))
    assert volume.origin == pytest.approx((-235.2, -226.8, -128.69), abs=1e-5)
    headers = _headers_by_z(folder)
    assert headers[0][0].name == "03.dcm"
    np.testing.assert_array_equal(volume.array[0], _hu(headers[0][0]))


def test_info_on_dicom_folder() -> None:
    """What `livermets info FOLDER` prints."""
    from livermets.io.info import image_info

    info = image_info(shared_path("crlm", "CRLM-CT-1004"))
    assert info["shape"] == [41, 512, 512]
    assert info["spacing"] == pytest.approx([5.0, 0.796875, 0.796875])
    assert info["origin"] == pytest.approx([-198.2, -204.0, -375.0], abs=1e-5)
    assert (info["format"], info["dtype"], info["min"]) == ("dicom", "int16", -3024)


# --- broken series built from copies of real slices -------------------------------------------


def _copy_slices(target: Path, n: int = 10) -> list[Path]:
    """Copy the n lowest CRLM-CT-1004 slices (5 mm apart) into target; returns them by z."""
    headers = _headers_by_z(shared_path("crlm", "CRLM-CT-1004"))[:n]
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for k, (path, _) in enumerate(headers):
        copies.append(Path(shutil.copy(path, target / f"slice{k:02d}.dcm")))
    return copies


def _edit(path: Path, **changes: Any) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def _shift_z(path: Path, dz: float) -> None:
    ds = pydicom.dcmread(path)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + dz]
    ds.save_as(path)


def _refused(folder: Path, *fragments: str, series_uid: str | None = None) -> str:
    """Both readers refuse `folder` with one line holding every fragment; returns it."""
    with pytest.raises(InputError) as header_error:
        read_dicom_geometry(folder, series_uid=series_uid)
    with pytest.raises(InputError) as volume_error:
        read_dicom_series(folder, series_uid=series_uid)
    message = str(volume_error.value)
    assert message == str(header_error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_copied_slices_read_fine(tmp_path: Path) -> None:
    """The base of the broken-series tests is itself a valid series."""
    _copy_slices(tmp_path)
    volume = read_dicom_series(tmp_path)
    assert volume.shape == (10, 512, 512)
    assert volume.spacing[0] == pytest.approx(5.0)


def test_missing_slice(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    copies[5].unlink()  # z -350 is gone: gap from -355 to -345
    _refused(tmp_path, "missing slices", "-355.00 and -345.00 mm", "1 slice(s) missing")


def test_three_missing_slices(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    for k in (3, 4, 5):
        copies[k].unlink()
    _refused(tmp_path, "missing slices", "gap of 20.00 mm", "3 slice(s) missing")


def test_mildly_non_uniform_spacing_is_resampled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copies = _copy_slices(tmp_path)
    _shift_z(copies[4], 0.15)  # 3% of the 5 mm spacing: gaps 5.15 and 4.85 mm
    with caplog.at_level(logging.WARNING, logger="livermets.io.dicom"):
        volume = read_dicom_series(tmp_path)
    assert any(
        "not uniform" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    assert volume.metadata["resampled_z"] == "true"
    assert volume.shape == (10, 512, 512)
    assert volume.spacing[0] == pytest.approx(5.0)
    assert volume.origin[2] == pytest.approx(-375.0)
    assert read_dicom_geometry(tmp_path) == volume.geometry
    # Slice 4 sits at -355 mm, between source slices 3 (-360) and 4 (-354.85): weight 5/5.15.
    w = 5.0 / 5.15
    expected = np.rint((1 - w) * _hu(copies[3]) + w * _hu(copies[4]))
    np.testing.assert_array_equal(volume.array[4], expected)
    np.testing.assert_array_equal(volume.array[3], _hu(copies[3]))  # on a source position
    np.testing.assert_array_equal(volume.array[5], _hu(copies[5]))


def test_spacing_within_one_percent_is_not_resampled(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    _shift_z(copies[4], 0.025)  # 0.5%
    volume = read_dicom_series(tmp_path)
    assert "resampled_z" not in volume.metadata
    np.testing.assert_array_equal(volume.array[4], _hu(copies[4]))


def test_gantry_tilt(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    step = 5.0 * math.tan(math.radians(10.0))  # y shift per slice for a 10 degree tilt
    for k, path in enumerate(copies):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + k * step, z]
        ds.save_as(path)
    _refused(tmp_path, "gantry tilt", "10.00 degrees", "dcm2niix")


def test_mixed_orientation(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    for path in copies[:2]:
        _edit(path, ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    message = _refused(tmp_path, "mixes slice orientations", "(8 slices)", "(2 slices)", "split")
    assert "[1, 0, 0, 0, 0, -1]" in message
    [series] = list_dicom_series(tmp_path)
    assert series.orientation == "mixed"


def test_duplicate_positions(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    _shift_z(copies[6], -5.0)  # now at the position of slice 5
    _refused(tmp_path, "duplicate positions", "-350.00 mm")


def test_mixed_pixel_spacing(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    _edit(copies[2], PixelSpacing=[0.7, 0.7])
    _refused(tmp_path, "mixes pixel spacings", "0.7 x 0.7", "0.7969 x 0.7969")


def test_mixed_image_sizes(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path)
    _edit(copies[2], Rows=256, Columns=256)
    _refused(tmp_path, "mixes image sizes", "512x512 (9 slices)", "256x256 (1 slices)")


def test_two_series_in_one_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copies = _copy_slices(tmp_path)
    small_uid = generate_uid()
    for path in copies[:4]:
        _edit(path, SeriesInstanceUID=small_uid, SeriesDescription="small")
    (tmp_path / "notes.txt").write_text("not DICOM\n")
    (tmp_path / "sub").mkdir()
    copies[9].rename(tmp_path / "sub" / copies[9].name)  # subfolders are searched too
    big_uid = str(pydicom.dcmread(copies[5], stop_before_pixels=True).SeriesInstanceUID)

    found = list_dicom_series(tmp_path)
    assert [(s.series_instance_uid, s.num_slices) for s in found] == [(big_uid, 6), (small_uid, 4)]
    with caplog.at_level(logging.INFO, logger="livermets.io.dicom"):
        big = read_dicom_series(tmp_path)
    assert big.shape[0] == 6
    assert big.origin[2] == pytest.approx(-355.0)
    assert big.metadata["series_instance_uid"] == big_uid
    picked = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(f"picked {big_uid}" in m and small_uid in m for m in picked)

    small = read_dicom_series(tmp_path, series_uid=small_uid)
    assert small.shape[0] == 4
    assert small.origin[2] == pytest.approx(-375.0)
    assert small.metadata["series_description"] == "small"
    _refused(tmp_path, "1.2.3.4", big_uid, small_uid, "6 slices", series_uid="1.2.3.4")


def test_missing_folder(tmp_path: Path) -> None:
    _refused(tmp_path / "nope", "no such folder")


def test_empty_folder(tmp_path: Path) -> None:
    _refused(tmp_path, "no DICOM files", "empty")


def test_folder_of_text_files(tmp_path: Path) -> None:
    for k in range(3):
        (tmp_path / f"note{k}.txt").write_text("hello\n" * 100)
    _refused(tmp_path, "no DICOM files", "none of its 3 files is DICOM")


def test_folder_with_only_a_seg(tmp_path: Path) -> None:
    shutil.copy(shared_path("fixtures", "dcmqi", "liver.dcm"), tmp_path)
    [series] = list_dicom_series(tmp_path)
    assert not series.is_image and series.modality == "SEG"
    _refused(tmp_path, "no DICOM image series", "SEG (1 file(s))")


def test_single_slice(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path, n=1)
    assert len(copies) == 1
    _refused(tmp_path, "single slice", "2D image", "3D volume")


def test_dicomdir_is_skipped(tmp_path: Path) -> None:
    """A DICOM file-set (DICOMDIR plus files in PT*/ST*/SE* subfolders) reads as one series."""
    file_set = FileSet()
    for path in sorted(shared_path("fixtures", "dcmqi", "ct-3slice").iterdir()):
        file_set.add(pydicom.dcmread(path))
    file_set.write(tmp_path)
    assert (tmp_path / "DICOMDIR").is_file()
    [series] = list_dicom_series(tmp_path)
    assert series.num_slices == len(series.files) == 3
    assert read_dicom_series(tmp_path).origin == pytest.approx((-235.2, -226.8, -128.69), abs=1e-5)


def test_truncated_pixel_data(tmp_path: Path) -> None:
    copies = _copy_slices(tmp_path, n=3)
    size = copies[1].stat().st_size
    with copies[1].open("r+b") as f:
        f.truncate(size // 2)  # the header survives, half the pixels do not
    assert read_dicom_geometry(tmp_path).shape == (3, 512, 512)
    with pytest.raises(InputError, match=r"pixel data cannot be decoded.*truncated"):
        read_dicom_series(tmp_path)
