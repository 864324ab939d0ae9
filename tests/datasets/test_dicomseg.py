"""DICOM CT + DICOM-SEG import: the dcmqi fixture and a SEG written here by highdicom."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from livermets.datasets.dicomseg import import_dicom_seg
from livermets.errors import InputError
from livermets.io import read_image
from livermets.io.manifest import read_manifest, validate_manifest
from tests.conftest import shared_path

pytestmark = [pytest.mark.shared_data,
              pytest.mark.filterwarnings("ignore:The string .* person name:UserWarning")]


def _ct_slices(folder: Path) -> list[pydicom.Dataset]:
    slices = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    for ds in slices:  # the fixture's empty SpecificCharacterSet is refused by highdicom
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _write_seg(ct: list[pydicom.Dataset], masks: dict[str, np.ndarray], path: Path) -> None:
    """A BINARY SEG (highdicom) with one segment per mask (shape (slices, rows, columns))."""
    descriptions = []
    for number, label in enumerate(masks, start=1):
        organ = label.lower() == "liver"
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=(
                codes.SCT.Organ if organ else codes.SCT.MorphologicallyAbnormalStructure),
            segmented_property_type=codes.SCT.Liver if organ else codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    pixels = np.stack([m.astype(np.uint8) for m in masks.values()], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="livermets tests",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0")
    seg.save_as(path)


@pytest.fixture
def dcmqi_copy(tmp_path: Path) -> Path:
    source = tmp_path / "study"
    shutil.copytree(shared_path("fixtures", "dcmqi", "ct-3slice"), source / "ct")
    return source


def test_dcmqi_liver_seg(dcmqi_copy: Path, tmp_path: Path) -> None:
    shutil.copy(shared_path("fixtures", "dcmqi", "liver.dcm"), dcmqi_copy / "liver.dcm")
    result = import_dicom_seg(dcmqi_copy, tmp_path / "out")
    assert result.manifest is not None
    (row,) = read_manifest(result.manifest)
    assert (row.patient_id, row.timepoint) == ("99000", "baseline")
    assert row.lesion_mask is None  # a liver-only SEG says nothing about lesions
    validate_manifest([row])
    liver = read_image(row.liver_mask)  # type: ignore[arg-type]
    reference = read_image(shared_path("fixtures", "dcmqi", "liver_seg.nrrd"))
    # dcmqi's NRRD holds the same liver on the same slices; counted independently.
    assert int(liver.array.sum()) == int((reference.array > 0).sum()) == 107098
    ct = read_image(row.image)
    np.testing.assert_allclose(ct.origin, (-235.2, -226.8, -128.69), atol=1e-3)
    assert ct.shape == (3, 512, 512)


def test_lesion_segments_become_instances(dcmqi_copy: Path, tmp_path: Path) -> None:
    for path in (dcmqi_copy / "ct").glob("*.dcm"):  # an id that must be made file-name safe
        ds = pydicom.dcmread(path)
        ds.PatientID = "CRLM 007"
        ds.save_as(path)
    ct = _ct_slices(dcmqi_copy / "ct")
    shape = (3, 512, 512)
    liver = np.zeros(shape, bool)
    liver[:, 100:400, 100:400] = True
    tumour_1 = np.zeros(shape, bool)
    tumour_1[0:2, 150:170, 150:170] = True  # 800 voxels
    tumour_1[1:3, 300:310, 300:310] = True  # 200 voxels, a second lesion in the same segment
    tumour_2 = np.zeros(shape, bool)
    tumour_2[:, 200:230, 200:230] = True  # 2700 voxels
    _write_seg(ct, {"Liver": liver, "Tumor_1": tumour_1, "Portal": liver & ~liver,
                    "TUMOR_2": tumour_2}, dcmqi_copy / "seg.dcm")
    result = import_dicom_seg(dcmqi_copy, tmp_path / "out")
    assert result.manifest is not None
    (row,) = read_manifest(result.manifest)
    assert row.patient_id == "CRLM_007"
    lesions = read_image(row.lesion_mask).array  # type: ignore[arg-type]
    assert [int((lesions == k).sum()) for k in (1, 2, 3)] == [2700, 800, 200]
    assert lesions.max() == 3
    np.testing.assert_array_equal(lesions[:, 200:230, 200:230], 1)
    assert int(read_image(row.liver_mask).array.sum()) == 3 * 300 * 300  # type: ignore[arg-type]
    voxel_ml = 0.810547 * 0.810547 * 1.0 / 1000
    np.testing.assert_allclose(result.cases[0].lesion_volumes_ml,
                               [2700 * voxel_ml, 800 * voxel_ml, 200 * voxel_ml], atol=1e-3)
    notes = json.loads((tmp_path / "out" / "import.json").read_text())["cases"][0]["notes"]
    assert notes == ["segments not used: Portal"]


def test_custom_patterns_and_bad_inputs(dcmqi_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no DICOM-SEG file"):
        import_dicom_seg(dcmqi_copy, tmp_path / "out")
    shutil.copy(shared_path("fixtures", "dcmqi", "liver.dcm"), dcmqi_copy / "liver.dcm")
    with pytest.raises(InputError, match="not a valid regular expression"):
        import_dicom_seg(dcmqi_copy, tmp_path / "out", lesion_pattern="(")
    # Call the liver a lesion: one lesion, no liver mask.
    result = import_dicom_seg(dcmqi_copy, tmp_path / "out", lesion_pattern="^liver$",
                              liver_pattern="^none$")
    assert [(c.lesions, c.liver_mask) for c in result.cases] == [(1, "")]
    (dcmqi_copy / "ct").rename(tmp_path / "moved")
    with pytest.raises(InputError, match="no CT image series"):
        import_dicom_seg(dcmqi_copy, tmp_path / "out2")
