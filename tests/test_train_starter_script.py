"""The insertion settings of scripts/train_starter_models.py: parsed, recorded, refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from livermets.io.manifest import read_manifest
from tests.conftest import REPO_ROOT, repo_script

SCRIPT = "scripts/train_starter_models.py"


def test_insert_set_replaces_only_the_named_fields() -> None:
    settings = repo_script(SCRIPT).insertion_settings({"texture_hu": [0, 25], "rim_share": 0.2})
    assert settings.texture_hu == (0, 25) and settings.rim_share == 0.2
    assert settings.diameter_mm == (6.0, 80.0)  # the recipe's own, untouched


def test_insert_set_names_the_unknown_field() -> None:
    with pytest.raises(ValueError, match="texture_sd: not an insertion setting"):
        repo_script(SCRIPT).insertion_settings({"texture_sd": 5})


@pytest.mark.parametrize(("assignment", "message"), [
    ({"texture_hu": 20}, "texture_hu=20: write a range of two numbers"),
    ({"texture_hu": [0, 25, 30]}, "write a range of two numbers"),
    ({"contrast_hu": [70, 10]}, "low first"),
    ({"lesions": [1.5, 3]}, "lesions=[1.5, 3]: write a range"),
    ({"texture_hu": None}, "texture_hu=None"),
    ({"rim_share": [0, 1]}, "rim_share=[0, 1]: write one number"),
])
def test_insert_set_refuses_a_value_of_the_wrong_kind(assignment: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        repo_script(SCRIPT).insertion_settings(assignment)


def test_the_data_folder_says_how_its_lesions_were_inserted(tmp_path: Path) -> None:
    # Data built before insertion.json existed used the recipe's settings.
    assumed = repo_script(SCRIPT).recorded_insertion(tmp_path)
    assert assumed["diameter_mm"] == [6.0, 80.0] and assumed["assumed"] is True
    (tmp_path / "insertion.json").write_text(json.dumps({"texture_hu": [0, 25]}))
    assert repo_script(SCRIPT).recorded_insertion(tmp_path) == {"texture_hu": [0, 25]}


def test_a_bad_insert_set_exits_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_starter_models.py"),
                           "--work", str(tmp_path / "w"), "--insert-set", "bogus=1"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "--insert-set bogus: not an insertion setting" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "w").exists()  # nothing built


def test_lits_trains_only_the_lesion_model_and_can_be_held_out(tmp_path: Path) -> None:
    script = repo_script(SCRIPT)
    patients = ["synth001", "lits117", "lits117-ins1", "crlm1100"]
    lines = ["patient_id,center,timepoint,image,liver_mask,lesion_mask,split"]
    for patient in patients:
        for name in ("ct", "liver", "lesions"):
            (tmp_path / f"{patient}_{name}.nii.gz").write_bytes(b"")
        lines.append(f"{patient},X,baseline,{patient}_ct.nii.gz,{patient}_liver.nii.gz,"
                     f"{patient}_lesions.nii.gz,training")
    manifest = tmp_path / "train.csv"
    manifest.write_text("\n".join(lines) + "\n")

    def trained(task: str, hold_out: tuple[str, ...] = ()) -> list[str]:
        rows = read_manifest(script.task_rows(manifest, tmp_path, task, hold_out))
        return [r.patient_id for r in rows]

    assert trained("liver") == ["synth001", "crlm1100"]
    assert trained("lesion") == patients
    assert trained("lesion", ("lits117",)) == ["synth001", "crlm1100"]
