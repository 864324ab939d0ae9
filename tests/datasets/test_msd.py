"""MSD / LiTS import on a small layout built here, with hand-placed liver and tumours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from livermets.datasets.msd import import_msd
from livermets.errors import InputError
from livermets.io import Volume, read_image, write_image
from livermets.io.manifest import read_manifest, validate_manifest

SPACING = (2.0, 1.0, 1.0)  # z, y, x mm: one voxel is 2 mm3
ORIGIN = (-50.0, -60.0, -70.0)


def _case(folder: Path, name: str, tumours: int, label_folder: str = "labelsTr") -> np.ndarray:
    ct = np.full((10, 20, 20), -1000, np.int16)
    label = np.zeros((10, 20, 20), np.uint8)
    label[2:8, 2:18, 2:18] = 1
    for k in range(tumours):  # 2x3x3 = 18 voxels = 36 mm3 each, apart from each other
        label[3:5, 3 + 5 * k : 6 + 5 * k, 4:7] = 2
    label[6, 16, 16] = 2  # a 1-voxel (2 mm3) speck: not a lesion
    write_image(Volume.from_array(ct, spacing=SPACING, origin=ORIGIN),
                folder / "imagesTr" / f"{name}.nii.gz")
    write_image(Volume.from_array(label, spacing=SPACING, origin=ORIGIN),
                folder / label_folder / f"{name}.nii.gz")
    return label


def test_msd_layout(tmp_path: Path) -> None:
    source = tmp_path / "Task03_Liver"
    label0 = _case(source, "liver_0", tumours=3)
    _case(source, "liver_1", tumours=0)
    (source / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"mac resource fork")
    write_image(Volume.from_array(np.zeros((3, 4, 4), np.int16)),
                source / "imagesTs" / "liver_200.nii.gz")
    result = import_msd(source, tmp_path / "out")
    assert result.manifest is not None
    rows = read_manifest(result.manifest)
    assert [r.patient_id for r in rows] == ["liver_0", "liver_1", "liver_200"]
    assert rows[0].image == (source / "imagesTr" / "liver_0.nii.gz").resolve()
    assert rows[2].liver_mask is None and rows[2].lesion_mask is None
    validate_manifest(rows)
    assert [c.lesions for c in result.cases] == [3, 0, 0]
    assert result.cases[0].lesion_volumes_ml == [0.036, 0.036, 0.036]
    liver = read_image(rows[0].liver_mask)  # type: ignore[arg-type]
    np.testing.assert_array_equal(liver.array, (label0 > 0).astype(np.uint8))
    np.testing.assert_allclose(liver.origin, ORIGIN)
    lesions = read_image(rows[0].lesion_mask)  # type: ignore[arg-type]
    assert sorted(np.unique(lesions.array).tolist()) == [0, 1, 2, 3]
    assert lesions.array[6, 16, 16] == 0
    summary = json.loads((tmp_path / "out" / "import.json").read_text())
    assert summary["rows"] == 3 and summary["lesions"] == 3


def test_lits_layout(tmp_path: Path) -> None:
    ct = Volume.from_array(np.zeros((4, 6, 6), np.int16), spacing=SPACING)
    label = np.zeros((4, 6, 6), np.uint8)
    label[1:3, 1:5, 1:5] = 1
    label[1:3, 2:4, 2:4] = 2  # 8 voxels = 16 mm3
    write_image(ct, tmp_path / "lits" / "volume-7.nii")
    write_image(ct.with_array(label), tmp_path / "lits" / "segmentation-7.nii")
    result = import_msd(tmp_path / "lits", tmp_path / "out")
    assert [(c.patient_id, c.lesions) for c in result.cases] == [("lits-7", 1)]


def test_unexpected_labels_and_missing_label_file(tmp_path: Path) -> None:
    source = tmp_path / "bad"
    _case(source, "liver_0", tumours=1)
    write_image(Volume.from_array(np.full((10, 20, 20), 3, np.uint8), spacing=SPACING,
                                  origin=ORIGIN), source / "labelsTr" / "liver_0.nii.gz")
    with pytest.raises(InputError, match=r"label value\(s\) \[3\]"):
        import_msd(source, tmp_path / "out")
    _case(source, "liver_5", tumours=1, label_folder="elsewhere")
    with pytest.raises(InputError, match=r"liver_5\.nii\.gz has no label file"):
        import_msd(source, tmp_path / "out2")


def test_refuses_existing_manifest_and_empty_folder(tmp_path: Path) -> None:
    _case(tmp_path / "src", "liver_0", tumours=1)
    import_msd(tmp_path / "src", tmp_path / "out")
    with pytest.raises(InputError, match=r"already holds a manifest\.csv"):
        import_msd(tmp_path / "src", tmp_path / "out")
    import_msd(tmp_path / "src", tmp_path / "out", overwrite=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no imagesTr"):
        import_msd(tmp_path / "empty", tmp_path / "out3")
