"""3D-IRCADb-01 import on the real data in ../shared/data/ircadb.

Expected numbers come from an independent reading (pydicom + scipy.ndimage.label with full
connectivity on the raw mask slices, sorted by ImagePositionPatient), not from our code path.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from livermets.datasets.common import ImportResult
from livermets.datasets.ircadb import import_ircadb, is_lesion_structure
from livermets.errors import InputError
from livermets.io import read_image
from livermets.io.manifest import read_manifest, validate_manifest
from tests.conftest import shared_path

pytestmark = pytest.mark.shared_data

# Lesions per patient: 26-connected components of livertumor*/metastasectomie >= 10 mm3.
EXPECTED_LESIONS = {
    "3Dircadb1.2": 1, "3Dircadb1.3": 1, "3Dircadb1.4": 8, "3Dircadb1.5": 0, "3Dircadb1.6": 15,
    "3Dircadb1.7": 0, "3Dircadb1.8": 3, "3Dircadb1.9": 1, "3Dircadb1.10": 8, "3Dircadb1.11": 0,
    "3Dircadb1.12": 1, "3Dircadb1.13": 17, "3Dircadb1.14": 2, "3Dircadb1.15": 2,
    "3Dircadb1.16": 1, "3Dircadb1.17": 2, "3Dircadb1.18": 1, "3Dircadb1.19": 48,
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> ImportResult:
    source = shared_path("ircadb")
    return import_ircadb(source, tmp_path_factory.mktemp("ircadb") / "out")


def test_lesion_counts_of_every_patient(imported: ImportResult) -> None:
    assert {c.patient_id: c.lesions for c in imported.cases} == EXPECTED_LESIONS


def test_manifest_holds_the_two_patients_with_ct(imported: ImportResult) -> None:
    assert imported.manifest is not None
    rows = read_manifest(imported.manifest)
    assert [r.case_id for r in rows] == ["3Dircadb1.7_baseline", "3Dircadb1.17_baseline"]
    assert {r.center for r in rows} == {"IRCAD"}
    validate_manifest(rows)
    masks_only = [c for c in imported.cases if not c.in_manifest]
    assert len(masks_only) == 16 and all(Path(c.lesion_mask).is_file() for c in masks_only)
    summary = json.loads((imported.manifest.parent / "import.json").read_text())
    assert summary["rows"] == 2 and summary["lesions"] == 2
    assert imported.manifest is not None


def test_patient_17_geometry_and_lesions(imported: ImportResult) -> None:
    assert imported.manifest is not None
    row = next(r for r in read_manifest(imported.manifest) if r.patient_id == "3Dircadb1.17")
    ct = read_image(row.image)
    assert ct.shape == (119, 512, 512)
    np.testing.assert_allclose(ct.spacing, (1.6, 0.743, 0.743), atol=1e-3)
    np.testing.assert_allclose(ct.origin, (0.0, 0.0, 0.0), atol=1e-6)
    assert ct.array.dtype == np.int16 and ct.array.max() == 1023  # IRCADb clips HU at 1023
    liver = read_image(row.liver_mask)  # type: ignore[arg-type]
    lesions = read_image(row.lesion_mask)  # type: ignore[arg-type]
    assert int(liver.array.sum()) == 2106497
    # livertumor1 has 96961 voxels, livertumor2 89029: labels by decreasing volume.
    assert [int((lesions.array == k).sum()) for k in (1, 2)] == [96961, 89029]
    assert lesions.array.max() == 2
    voxel_ml = 0.743 * 0.743 * 1.6 / 1000
    case = next(c for c in imported.cases if c.patient_id == "3Dircadb1.17")
    np.testing.assert_allclose(case.lesion_volumes_ml, [96961 * voxel_ml, 89029 * voxel_ml],
                               rtol=1e-4)
    assert np.all(liver.array[lesions.array > 0] == 1)  # both lesions lie inside the liver


def test_patient_7_tumour_outside_liver_is_not_a_lesion(imported: ImportResult) -> None:
    case = next(c for c in imported.cases if c.patient_id == "3Dircadb1.7")
    assert case.lesions == 0 and "tumor" in case.notes[0]
    assert int(read_image(case.liver_mask).array.sum()) == 1461944
    assert read_image(case.lesion_mask).array.max() == 0


def test_speck_is_dropped(imported: ImportResult) -> None:
    """1.9's livertumor is one tumour of 39483 voxels plus a 1-voxel speck."""
    case = next(c for c in imported.cases if c.patient_id == "3Dircadb1.9")
    lesions = read_image(case.lesion_mask).array
    assert int((lesions == 1).sum()) == 39483 and lesions.max() == 1


@pytest.mark.parametrize(
    ("name", "lesion"),
    [("livertumor", True), ("livertumor01", True), ("livertumors", True), ("LiverTumor2", True),
     ("metastasectomie", True), ("liverkyste", False), ("livercyst", False), ("tumor", False),
     ("leftsurretumor", False), ("liver", False), ("portalvein", False)],
)
def test_structure_names(name: str, lesion: bool) -> None:
    assert is_lesion_structure(name) is lesion


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no 3D-IRCADb-01 patient"):
        import_ircadb(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="not a folder"):
        import_ircadb(tmp_path / "missing", tmp_path / "out")
    patient = tmp_path / "3Dircadb1.99"
    patient.mkdir()
    (patient / "MASKS_DICOM.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match="not a readable zip"):
        import_ircadb(patient, tmp_path / "out2")


def test_masks_only_patient_from_unzipped_folder(tmp_path: Path) -> None:
    """MASKS_DICOM as a folder works; a masks-only import writes masks but no manifest."""
    source = shared_path("ircadb", "masks-only", "3Dircadb1.15", "MASKS_DICOM.zip")
    patient = tmp_path / "3Dircadb1.15"
    with zipfile.ZipFile(source) as archive:
        archive.extractall(patient, [n for n in archive.namelist()
                                     if n.split("/")[1] in ("liver", "livertumor")])
    result = import_ircadb(patient, tmp_path / "out")
    assert result.manifest is None and not (tmp_path / "out" / "manifest.csv").exists()
    assert [(c.patient_id, c.lesions, c.in_manifest) for c in result.cases] == [
        ("3Dircadb1.15", 2, False)]
    lesions = read_image(tmp_path / "out" / "3Dircadb1.15" / "lesions.nii.gz")
    assert [int((lesions.array == k).sum()) for k in (1, 2)] == [1552, 86]
