"""Case folders: files, geometry, all-or-nothing writing, skipping and surviving bad cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from livermets.errors import InputError
from livermets.infer.outputs import CaseInput, is_finished, predict_cases, write_case
from livermets.infer.predictor import LESION_COLUMNS, Predictor, PredictSettings
from livermets.io.image import read_image, write_image
from tests.infer.rule_models import lesion_rule
from tests.infer.test_predictor import make_phantom


@pytest.fixture
def phantom_files(tmp_path: Path) -> tuple[Path, Path]:
    phantom = make_phantom()
    return (write_image(phantom.ct, tmp_path / "in" / "ct.nii.gz"),
            write_image(phantom.liver, tmp_path / "in" / "liver.nii.gz"))


def _predictor() -> Predictor:
    return Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32"))


def test_case_folder_holds_every_output_on_the_ct_grid(phantom_files: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    ct_path, liver_path = phantom_files
    [outcome] = predict_cases(_predictor(), [CaseInput("p1", ct_path, liver_path)],
                              tmp_path / "out")
    assert outcome.status == "done" and outcome.lesions == 2
    folder = tmp_path / "out" / "p1"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".livermets", "lesion_probability.nii.gz", "lesions.csv", "lesions.nii.gz", "liver.nii.gz",
        "rejected_candidates.csv", "rejected_candidates.nii.gz", "run.json"]
    ct = read_image(ct_path)
    for name in ("liver.nii.gz", "lesions.nii.gz", "lesion_probability.nii.gz",
                 "rejected_candidates.nii.gz"):
        written = read_image(folder / name)
        assert written.geometry.difference(ct.geometry) is None, name
    lesions = read_image(folder / "lesions.nii.gz").array
    assert np.issubdtype(lesions.dtype, np.integer) and int(lesions.max()) == 2
    with (folder / "lesions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LESION_COLUMNS and len(rows) == 2
    # The table's volumes are the label map's voxel counts times the voxel volume (4.5 mm3).
    for row in rows:
        count = int((lesions == int(row["lesion_id"])).sum())
        assert float(row["volume_ml"]) == pytest.approx(count * 4.5 / 1000, abs=1e-4)
    record = json.loads((folder / "run.json").read_text())
    assert record["case_id"] == "p1" and record["lesions"] == 2
    assert record["rejected_candidates"] == 0  # both balls are 60 HU darker than the liver
    assert (folder / "rejected_candidates.csv").read_text().startswith("candidate_id,")
    assert record["threshold"]["method"] == "otsu"
    assert record["dicom_seg"] == {"written": False, "reason": "the input is not DICOM"}
    assert record["liver"]["source"] == "given"
    assert set(record["timings_s"]) == {"read_s", "liver_s", "lesion_model_s", "postprocess_s"}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_finished_cases_are_skipped_and_a_bad_case_does_not_stop_the_rest(
        phantom_files: tuple[Path, Path], tmp_path: Path) -> None:
    ct_path, liver_path = phantom_files
    out = tmp_path / "out"
    predict_cases(_predictor(), [CaseInput("p1", ct_path, liver_path)], out)
    before = (out / "p1" / "run.json").stat().st_mtime_ns
    not_ct = write_image(read_image(liver_path), tmp_path / "in" / "mask_not_ct.nii.gz")
    outcomes = predict_cases(_predictor(), [
        CaseInput("p1", ct_path, liver_path),
        CaseInput("bad", not_ct, liver_path),
        CaseInput("p2", ct_path, liver_path),
    ], out)
    assert [o.status for o in outcomes] == ["skipped", "failed", "done"]
    assert outcomes[1].error is not None and "air near -1000" in outcomes[1].error
    assert (out / "p1" / "run.json").stat().st_mtime_ns == before
    assert not (out / "bad").exists() and is_finished(out / "p2")
    redone = predict_cases(_predictor(), [CaseInput("p1", ct_path, liver_path)], out, redo=True)
    assert redone[0].status == "done"
    assert (out / "p1" / "run.json").stat().st_mtime_ns != before
    with pytest.raises(InputError, match="more than once"):
        predict_cases(_predictor(), [CaseInput("x", ct_path), CaseInput("x", ct_path)], out)


def test_an_existing_folder_is_refused_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    phantom = make_phantom()
    prediction = _predictor().predict(phantom.ct, phantom.liver)
    folder = tmp_path / "case"
    write_case(prediction, phantom.ct, folder, record={})
    with pytest.raises(InputError, match="--overwrite"):
        write_case(prediction, phantom.ct, folder, record={})
    # A record that cannot be written as JSON fails midway: the old folder stays as it was.
    with pytest.raises(TypeError):
        write_case(prediction, phantom.ct, folder, record={"bad": object()}, overwrite=True)
    assert is_finished(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]
