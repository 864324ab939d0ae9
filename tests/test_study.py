"""`livermets study` end to end on the tiny generated cohort, and its resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livermets.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_study_runs_every_stage_and_resumes(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["study", "--manifest", str(tiny_manifest), "--out", str(out), "--epochs", "2",
            "--image-size", "64", "--set", "base_width=8", "--set", "batch_size=8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == str(out / "report.html")
    for arch in ("unet", "resnet18-unet"):
        assert (out / "runs" / arch / "model.pt").is_file()
        evaluation = json.loads((out / "evaluations" / arch / "summary.json").read_text())
        # Every CT with a reference was evaluated; the tiny cohort has 4 patients x 2 CTs.
        assert evaluation["evaluated_cases"] == 8
        assert len(list((out / "predictions" / arch).iterdir())) == 8
    record = json.loads((out / "study.json").read_text())
    assert {c["set"] for c in record["model_comparisons"]} <= {"training", "validation"}
    for comparison in record["model_comparisons"]:
        assert comparison["a"] == "unet" and comparison["b"] == "resnet18-unet"
        assert 0.0 <= comparison["dice"]["p_value"] <= 1.0
    # The tiny cohort's last patient validates; its tp1 lesions are TP1tst.
    for arch in ("unet", "resnet18-unet"):
        tp1 = record["tp1_train_vs_test"][arch]
        assert tp1 is not None and tp1["n_tp1tr"] > 0 and tp1["n_tp1tst"] > 0
    html = (out / "report.html").read_text()
    assert "Models compared on the same lesions" in html and "training curves of" in html
    assert "TP1tr" in html
    # Every tiny patient has a baseline and a tp1: the follow-up ran on the references (and
    # on the No-TL predictions, where the barely trained liver may fail to register).
    follow_up = record["follow_up"]
    assert set(follow_up) == {"reference", "unet"}
    assert {r["status"] for r in follow_up["reference"].values()} == {"done"}
    assert all(r["recist_category"] in {"CR", "PR", "SD", "PD"}
               for r in follow_up["reference"].values())
    assert "Follow-up: lesion matching and response" in html
    # Radiomics: reference and No-TL masks, delta over the tracked pairs, and the agreement.
    radiomics = record["radiomics"]
    assert radiomics["predicted"] == "unet" and radiomics["lesions"] > 0
    assert (out / "radiomics" / "features.csv").is_file()
    assert radiomics["delta_pairs"] is not None and (out / "radiomics" / "delta.csv").is_file()
    assert "Radiomics: robustness of the features to automatic segmentation" in html

    # Resuming: every finished stage is reused, nothing is trained or predicted again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.pt")}
    stamps |= {p: p.stat().st_mtime_ns for p in out.glob("predictions/*/*/run.json")}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "reusing the finished run" in again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
