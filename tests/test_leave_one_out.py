"""The per-lesion rows of benchmarks/lesion_leave_one_out.py, on a case worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livermets.evaluate.run import evaluate_manifest
from livermets.io import Volume, write_image
from tests.conftest import repo_script

LEAVE_ONE_OUT = "benchmarks/lesion_leave_one_out.py"

def test_reference_lesions_reads_each_lesion_of_the_evaluation(tmp_path: Path) -> None:
    # Grid 4 x 40 x 60 voxels of 2 x 1 x 1 mm. Lesion 1: 10 x 10 px on slices 1-2, predicted
    # 5 px to the right (overlap 2 x 10 x 5 = 100 voxels of 200 each: Dice, precision and
    # recall 0.5; detected, Dice > 0.2). Lesion 2: 4 x 4 px, missed (Dice 0).
    reference = np.zeros((4, 40, 60), np.uint8)
    reference[1:3, 5:15, 5:15] = 1
    reference[1:3, 30:34, 40:44] = 2
    predicted = np.zeros_like(reference)
    predicted[1:3, 5:15, 10:20] = 1

    def write(array: np.ndarray, path: Path) -> Path:
        return write_image(Volume.from_array(array, spacing=(2.0, 1.0, 1.0)), path)

    ct = write(np.full(reference.shape, -1000, np.int16), tmp_path / "ct.nii.gz")
    write(reference, tmp_path / "lesions.nii.gz")
    write(predicted, tmp_path / "pred" / "held_baseline" / "lesions.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,center,timepoint,image,liver_mask,lesion_mask,split\n"
                        f"held,c,baseline,{ct.name},,lesions.nii.gz,3Dircadb1.17\n")
    evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "evaluation")

    rows = repo_script(LEAVE_ONE_OUT).reference_lesions(tmp_path / "evaluation")

    assert [(r["case"], r["lesion_id"], r["detected"]) for r in rows] == [
        ("3Dircadb1.17", 1, True), ("3Dircadb1.17", 2, False)]
    assert [r["dice"] for r in rows] == pytest.approx([0.5, 0.0], abs=1e-3)
    assert rows[0]["precision"] == pytest.approx(0.5, abs=1e-3)
    assert rows[0]["recall"] == pytest.approx(0.5, abs=1e-3)
    # Longest axial diameter, voxel extents included: the square's diagonal, 10 and 4 mm sides.
    assert [r["diameter_mm"] for r in rows] == pytest.approx([10 * 2**0.5, 4 * 2**0.5],
                                                             abs=0.01)


def test_lesions_both_ways_adds_the_plain_dice_of_the_same_lesion(tmp_path: Path) -> None:
    # One 10 x 10 px lesion on slices 1-2 of 1 mm pixels. With the checks it is missed
    # (Dice 0); without them it is predicted 5 px to the right: Dice 0.5, detected.
    reference = np.zeros((4, 40, 60), np.uint8)
    reference[1:3, 5:15, 5:15] = 1
    shifted = np.zeros_like(reference)
    shifted[1:3, 5:15, 10:20] = 1

    def write(array: np.ndarray, path: Path) -> Path:
        return write_image(Volume.from_array(array, spacing=(2.0, 1.0, 1.0)), path)

    ct = write(np.full(reference.shape, -1000, np.int16), tmp_path / "ct.nii.gz")
    write(reference, tmp_path / "lesions.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,center,timepoint,image,liver_mask,lesion_mask,split\n"
                        f"held,c,baseline,{ct.name},,lesions.nii.gz,crlm1100\n")
    for name, predicted in (("checks", np.zeros_like(reference)), ("plain", shifted)):
        write(predicted, tmp_path / name / "held_baseline" / "lesions.nii.gz")
        evaluate_manifest(manifest, tmp_path / name, tmp_path / f"evaluation-{name}")

    rows = repo_script(LEAVE_ONE_OUT).lesions_both_ways(tmp_path / "evaluation-checks",
                                                        tmp_path / "evaluation-plain")

    assert len(rows) == 1
    assert (rows[0]["case"], rows[0]["detected"], rows[0]["detected_without_checks"]) == (
        "crlm1100", False, True)
    assert rows[0]["dice"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["dice_without_checks"] == pytest.approx(0.5, abs=1e-3)
