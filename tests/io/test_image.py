"""Reading and writing images: geometry survives every format; bad files give one clear error."""

from __future__ import annotations

import gzip
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from livermets.errors import InputError
from livermets.io import Volume, read_dicom_seg, read_geometry, read_image, write_image
from livermets.io.atomic import atomic_path
from tests.conftest import shared_path

# A rotated grid (30 degrees about z), anisotropic spacing and an off-zero origin: any axis
# swap or transposition in a reader or writer shows up in one of these numbers.
_C, _S = math.cos(math.radians(30)), math.sin(math.radians(30))
ROTATED = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)
SPACING = (2.5, 0.8, 0.7)  # z, y, x mm
ORIGIN = (-180.5, -200.25, -75.0)  # x, y, z mm


def _volume(dtype: type = np.int16) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 1500, size=(7, 11, 13)).astype(dtype)
    return Volume.from_array(array, spacing=SPACING, origin=ORIGIN, direction=ROTATED)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_keeps_geometry_and_values(tmp_path: Path, suffix: str, dtype: type) -> None:
    volume = _volume(dtype)
    path = write_image(volume, tmp_path / f"image{suffix}")
    back = read_image(path)
    assert back.shape == (7, 11, 13)
    assert back.geometry.difference(volume.geometry, origin_tolerance_mm=1e-4) is None
    np.testing.assert_allclose(back.spacing, SPACING, atol=1e-6)
    np.testing.assert_allclose(back.origin, ORIGIN, atol=1e-4)
    np.testing.assert_allclose(back.direction, ROTATED, atol=1e-6)
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, volume.array)
    assert read_geometry(path) == back.geometry
    # Only the target (plus its data file for header formats) is left: no temporary files.
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = {".mhd": ["image.mhd", "image.zraw"], ".nhdr": ["image.nhdr", "image.raw.gz"]}
    assert names == expected.get(suffix, [f"image{suffix}"])


def test_array_axis_order_is_z_y_x(tmp_path: Path) -> None:
    """Voxel (z=1, y=2, x=3) must land at ITK index (3, 2, 1), at the physical point we expect."""
    array = np.zeros((4, 5, 6), np.int16)
    array[1, 2, 3] = 7
    volume = Volume.from_array(array, spacing=(3.0, 2.0, 1.0), origin=(10.0, 20.0, 30.0))
    image = sitk.ReadImage(str(write_image(volume, tmp_path / "a.nii.gz")))
    assert image.GetSize() == (6, 5, 4)
    assert image.GetPixel(3, 2, 1) == 7
    assert image.TransformIndexToPhysicalPoint((3, 2, 1)) == pytest.approx((13.0, 24.0, 33.0))
    np.testing.assert_allclose(volume.geometry.index_to_physical([1, 2, 3]), [13.0, 24.0, 33.0])
    np.testing.assert_allclose(volume.geometry.physical_to_index([13.0, 24.0, 33.0]), [1, 2, 3])


def test_physical_index_round_trip_on_rotated_grid() -> None:
    geometry = _volume().geometry
    index = np.array([[0, 0, 0], [6, 10, 12], [2.5, 3.25, 7.0]])
    points = geometry.index_to_physical(index)
    # Voxel (0, 0, 0) is the origin; one step along x moves 0.7 mm along the rotated x axis.
    np.testing.assert_allclose(points[0], ORIGIN)
    step_x = geometry.index_to_physical([0, 0, 1]) - np.asarray(ORIGIN)
    np.testing.assert_allclose(step_x, [0.7 * _C, 0.7 * _S, 0.0], atol=1e-12)
    np.testing.assert_allclose(geometry.physical_to_index(points), index, atol=1e-9)


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "mask.nii.gz"
    write_image(_volume(), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(tmp))
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and tmp != target
        raise RuntimeError("disk full")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_image(_volume(), tmp_path / "a.nii.gz")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.nii.gz").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640


def test_bool_mask_is_written_as_uint8(tmp_path: Path) -> None:
    mask = Volume.from_array(np.eye(3, dtype=bool)[None].repeat(2, axis=0))
    back = read_image(write_image(mask, tmp_path / "m.nrrd"))
    assert back.array.dtype == np.uint8
    assert back.array.sum() == 6


# --- real CT -------------------------------------------------------------------------------

REAL_FILES = [
    # path under ../shared/data, shape (z, y, x), spacing (z, y, x), origin (x, y, z)
    (("fixtures", "totalsegmentator", "example_ct.nii.gz"), (112, 101, 122),
     (3.0, 3.0, 3.0), (177.956, -11.319, 94.302)),
    (("fixtures", "totalsegmentator", "example_seg.nii.gz"), (30, 101, 122),
     (3.0, 3.0, 3.0), (177.956, -11.319, 94.302)),
    (("crlm", "CRLM-CT-1100_atlas_ct.nii.gz"), (119, 167, 200),
     (2.3535, 2.3535, 2.3535), (0.0, 0.0, 0.0)),
    (("fixtures", "dcmqi", "liver_seg.nrrd"), (3, 512, 512),
     (1.0, 0.810547, 0.810547), (-235.2, -226.8, -128.69)),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("parts", "shape", "spacing", "origin"), REAL_FILES)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_real_images_round_trip(
    tmp_path: Path, parts: tuple[str, ...], shape: tuple[int, ...], spacing: tuple[float, ...],
    origin: tuple[float, ...], suffix: str,
) -> None:
    source = shared_path(*parts)
    volume = read_image(source)
    assert volume.shape == shape
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-3)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-3)
    # Checked independently with SimpleITK's own reader.
    reference = sitk.ReadImage(str(source))
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    back = read_image(write_image(volume, tmp_path / f"copy{suffix}"))
    assert back.geometry.difference(volume.geometry, origin_tolerance_mm=1e-4) is None
    np.testing.assert_array_equal(back.array, volume.array)


# --- bad input -----------------------------------------------------------------------------

def _raises(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.nii.gz", "no such file")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.nii.gz").write_bytes(b"")
    _raises(tmp_path / "e.nii.gz", "empty")


def test_text_file_named_like_nifti(tmp_path: Path) -> None:
    (tmp_path / "t.nii.gz").write_text("not an image at all\n")
    _raises(tmp_path / "t.nii.gz", "not a readable NIfTI image")


def test_truncated_nifti(tmp_path: Path) -> None:
    path = write_image(_volume(), tmp_path / "full.nii")
    data = gzip.compress(path.read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "cut.nii.gz", "truncated|corrupt")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    _raises(tmp_path / "scan.png", "unsupported file type")


def test_2d_image(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(tmp_path / "slice.nii.gz"))
    _raises(tmp_path / "slice.nii.gz", "2D image")


def test_4d_image(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkInt16), str(tmp_path / "t.nii.gz"))
    _raises(tmp_path / "t.nii.gz", "4D image")


def test_4d_image_with_one_time_point_is_3d(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image([4, 5, 6, 1], sitk.sitkInt16), str(tmp_path / "t.nii.gz"))
    assert read_image(tmp_path / "t.nii.gz").shape == (6, 5, 4)
    assert read_geometry(tmp_path / "t.nii.gz").shape == (6, 5, 4)


def test_vector_image(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(tmp_path / "rgb.nrrd"))
    _raises(tmp_path / "rgb.nrrd", "values per voxel")


def test_single_dicom_file(shared_data: Path, tmp_path: Path) -> None:
    _raises(shared_data / "crlm" / "CRLM-CT-1004" / "1-01.dcm", "single DICOM file")


def test_unwritable_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        write_image(_volume(), tmp_path / "out.png")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("cut_bytes", [1, 40, 600])
def test_nifti_cut_short_anywhere_is_refused(tmp_path: Path, suffix: str, cut_bytes: int) -> None:
    """SimpleITK alone reads these as zeros; we must refuse them."""
    data = write_image(_volume(), tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[:-cut_bytes])
    _raises(tmp_path / f"cut{suffix}", "truncated or corrupt")


def test_multi_member_gzip_nifti_is_accepted(tmp_path: Path) -> None:
    """A .nii.gz written as several gzip members (as bgzip does) is whole and must read."""
    raw = write_image(_volume(), tmp_path / "v.nii").read_bytes()
    half = len(raw) // 2
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    np.testing.assert_array_equal(read_image(tmp_path / "v.nii.gz").array, _volume().array)


REAL_DICOM = [
    ("ircadb", "3Dircadb1.17", "PATIENT_DICOM"),
    ("crlm", "CRLM-CT-1004"),
    ("crlm", "CRLM-CT-1006"),
    ("fixtures", "totalsegmentator", "example_ct_dicom"),
    ("fixtures", "dcmqi", "ct-3slice"),
]


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", REAL_DICOM, ids=lambda parts: parts[-1])
def test_real_dicom_series_round_trip_through_every_format(
    tmp_path: Path, parts: tuple[str, ...]
) -> None:
    """DICOM -> NIfTI / NRRD / MetaImage -> read: the grid and the HU values survive."""
    volume = read_image(shared_path(*parts))
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        back = read_image(write_image(volume, tmp_path / f"ct{suffix}"))
        assert back.geometry.difference(volume.geometry, origin_tolerance_mm=1e-4) is None
        assert back.array.dtype == volume.array.dtype
        np.testing.assert_array_equal(back.array, volume.array)
        assert read_geometry(tmp_path / f"ct{suffix}") == back.geometry


@pytest.mark.shared_data
def test_dicom_seg_mask_round_trips_onto_its_ct(tmp_path: Path) -> None:
    ct_folder = shared_path("fixtures", "dcmqi", "ct-3slice")
    ct = read_image(ct_folder)
    (liver,) = read_dicom_seg(shared_path("fixtures", "dcmqi", "liver.dcm"), ct.geometry)
    path = write_image(liver.mask, tmp_path / "liver.nii.gz")
    back = read_image(path)
    assert back.geometry.difference(ct.geometry) is None  # NIfTI keeps float32 spacing
    np.testing.assert_array_equal(back.array, liver.mask.array)
    assert int(back.array.sum()) == 107098
