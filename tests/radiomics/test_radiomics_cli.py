"""`livermets radiomics` end to end on a small generated cohort: rows and ids, predicted masks,
resume, a broken CT reported while the others go on, and refusals of bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.datasets.common import MIN_LESION_VOLUME_MM3
from livermets.datasets.synth import generate_cohort
from livermets.io.image import read_image, write_image
from livermets.io.volume import Volume

runner = CliRunner()
IDENTITY = ["case_id", "patient_id", "timepoint", "mask_source", "lesion_id"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 patients x 2 time points, 64 x 64 x 24; its manifest."""
    root = tmp_path_factory.mktemp("radiomics_cohort")
    return generate_cohort(root, patients=2, seed=0, matrix=64, slices=24).manifest


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    return _csv(manifest)


def _invoke(*args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["radiomics", *args])
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, payload, result.stderr


def test_features_resume_and_predicted_masks(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "radiomics"
    code, summary, stderr = _invoke("--manifest", str(cohort), "--out", str(out),
                                    "--workers", "2")
    assert code == 0, stderr
    assert [c["status"] for c in summary["cases"]] == ["done"] * 4

    rows = _csv(out / "features.csv")
    columns = list(rows[0])
    assert columns[:5] == IDENTITY and columns[-1] == "note"
    assert "original_shape_VoxelVolume" in columns and "original_ngtdm_Coarseness" in columns
    # One row per lesion, with the mask's own ids (lesions of at least 10 mm3).
    expected = []
    for row in _manifest_rows(cohort):
        mask = read_image(cohort.parent / row["lesion_mask"])
        voxel_mm3 = float(np.prod(mask.spacing))
        ids, counts = np.unique(mask.array[mask.array > 0], return_counts=True)
        expected += [(f"{row['patient_id']}_{row['timepoint']}", str(k))
                     for k, n in zip(ids, counts, strict=True)
                     if n * voxel_mm3 >= MIN_LESION_VOLUME_MM3]
    assert [(r["case_id"], r["lesion_id"]) for r in rows] == expected
    assert {r["mask_source"] for r in rows} == {"reference"}
    record = json.loads((out / "radiomics.json").read_text())
    assert record["params"]["setting"]["binWidth"] == 25
    assert record["params"]["setting"]["resampledPixelSpacing"] == [1.0, 1.0, 1.0]
    assert record["versions"]["pyradiomics"].lstrip("v").startswith("3.1")
    assert record["timing"]["lesions_computed"] == len(rows)

    # Resume: nothing to do; then one case's file removed is the only case computed again.
    code, summary, _ = _invoke("--manifest", str(cohort), "--out", str(out))
    assert code == 0 and [c["status"] for c in summary["cases"]] == ["skipped"] * 4
    first = summary["cases"][0]["case_id"]
    (out / "cases" / first / "reference.csv").unlink()
    code, summary, _ = _invoke("--manifest", str(cohort), "--out", str(out))
    assert [c["status"] for c in summary["cases"]] == ["done", "skipped", "skipped", "skipped"]
    assert _csv(out / "features.csv") == rows

    # Predicted masks: the reference masks given as `predict`'s output give the same rows.
    predictions = tmp_path / "pred"
    for row in _manifest_rows(cohort):
        case = predictions / f"{row['patient_id']}_{row['timepoint']}"
        case.mkdir(parents=True)
        shutil.copy(cohort.parent / row["lesion_mask"], case / "lesions.nii.gz")
    code, summary, stderr = _invoke("--manifest", str(cohort), "--out", str(out),
                                    "--predictions", str(predictions))
    assert code == 0, stderr
    both = _csv(out / "features.csv")
    reference = [r for r in both if r["mask_source"] == "reference"]
    predicted = [r for r in both if r["mask_source"] == "predicted"]
    assert reference == rows
    assert [r | {"mask_source": "reference"} for r in predicted] == rows


def test_a_broken_ct_is_reported_and_the_others_go_on(cohort: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(cohort.parent, data)
    manifest = data / cohort.name
    rows = _manifest_rows(manifest)
    # The second CT's lesion mask on another grid.
    broken = data / rows[1]["lesion_mask"]
    write_image(Volume.from_array(np.ones((5, 8, 8), np.uint8)), broken)
    out = tmp_path / "radiomics"
    code, summary, stderr = _invoke("--manifest", str(manifest), "--out", str(out))
    statuses = [(c["case_id"], c["status"]) for c in summary["cases"]]
    failed = f"{rows[1]['patient_id']}_{rows[1]['timepoint']}"
    assert code == 2 and f"{failed} (reference): " in stderr  # the log names it
    assert [s for _, s in statuses] == ["done", "failed", "done", "done"]
    assert statuses[1][0] == failed
    assert "not on the CT's grid" in summary["cases"][1]["error"]
    assert failed not in {r["case_id"] for r in _csv(out / "features.csv")}
    assert not (out / "cases" / failed / "reference.csv").exists()


def test_bad_input_is_one_line_and_writes_nothing(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "radiomics"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("featureClass:\n  glcmm: []\n")
    cases = [
        (["--params", str(tmp_path / "missing.yaml")], "no such file"),
        (["--params", str(bad_yaml)], "not valid pyradiomics settings"),
        (["--workers", "0"], "--workers 0"),
        (["--predictions", str(tmp_path / "nowhere")], "no such predictions folder"),
    ]
    for extra, message in cases:
        code, _, stderr = _invoke("--manifest", str(cohort), "--out", str(out), *extra)
        assert code == 2, extra
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert message in stderr
        assert not out.exists()
    # A folder of the user's is never written into.
    out.mkdir()
    (out / "mine.txt").write_text("x")
    code, _, stderr = _invoke("--manifest", str(cohort), "--out", str(out))
    assert code == 2 and "livermets did not write it" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
