"""The starter models shipped in the package: listed, documented, and used by `predict` when no
model is named, on a real CT."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.io import read_image
from livermets.models.starter import STARTER_DIR, model_card
from tests.conftest import shared_path

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_models_lists_both_starters_with_their_provenance() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    models = {m["task"]: m for m in json.loads(result.stdout)}
    assert set(models) == {"liver", "lesion"}
    for task, model in models.items():
        assert model["arch"] == "unet" and 0 < model["size_mb"] < 20
        assert Path(model["file"]) == STARTER_DIR / f"{task}.pt"
        assert model["git_commit"] and "3Dircadb1.17" in model["sources"]


def test_model_card_is_the_rendered_template() -> None:
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert card == model_card(), "re-render: benchmarks/starter_validation.py --write-card"
    result = runner.invoke(app, ["models", "--info"])
    assert result.exit_code == 0 and result.stdout == card
    for words in ("Intended use", "Training data", "Validation", "Known limits",
                  "Not for diagnosis"):
        assert words in card


def test_predict_without_a_model_uses_the_starters_on_a_real_ct(tmp_path: Path) -> None:
    folder = shared_path("fixtures", "totalsegmentator")
    ct_path = folder / "example_ct.nii.gz"
    result = runner.invoke(app, ["predict", str(ct_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    case = tmp_path / "out" / "example_ct"
    ct, liver = read_image(ct_path), read_image(case / "liver.nii.gz")
    assert liver.geometry == ct.geometry
    record = json.loads((case / "run.json").read_text())
    for task in ("liver", "lesion"):
        provenance = record["models"][task]["trained"]["provenance"]
        assert provenance["command"].startswith("scripts/train_starter_models.py")
    # The example's liver label covers CT slices 82-111 (its header says 0-29).
    reference = read_image(folder / "example_seg.nii.gz").array == 5
    found = liver.array[82:112] > 0
    dice = 2 * np.count_nonzero(found & reference) / (found.sum() + reference.sum())
    assert dice > 0.8, dice


@pytest.mark.slow
def test_a_built_wheel_carries_the_models_and_the_card(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("livermets-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("liver.pt", "lesion.pt", "MODEL_CARD.md.j2", "card.json"):
        assert f"livermets/models/starter/{name}" in names
