"""`livermets track` on a generated cohort: the true links and RECIST categories, recovered
through a shifted and rotated follow-up; and a failed registration is refused."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.datasets.synth import generate_cohort
from livermets.io.image import read_image, write_image
from livermets.report.follow_up import lesion_pairs

runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 patients at 128 px: a partial response, a progression with a new lesion, a complete
    response (every lesion vanished) and another partial response; each tp1 CT is shifted
    (up to about 12 mm) and rotated (up to about 4 degrees) against its baseline."""
    root = tmp_path_factory.mktemp("track")
    generate_cohort(root / "cohort", patients=4, matrix=128)
    return root / "cohort"


def _expected_links(patient: dict) -> set[tuple[str, str, str]]:
    expected = set()
    for lesion in patient["timepoints"]["baseline"]["lesions"]:
        partner = lesion["tp1_id"]
        expected.add((str(lesion["id"]), str(partner) if partner else "",
                      "persistent" if partner else "disappeared"))
    for lesion in patient["timepoints"]["tp1"]["lesions"]:
        if lesion.get("baseline_id") is None:
            expected.add(("", str(lesion["id"]), "new"))
    return expected


@pytest.mark.slow
def test_track_recovers_the_true_links_and_categories(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "track"
    result = runner.invoke(app, ["track", "--manifest", str(cohort / "manifest.csv"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    truth = json.loads((cohort / "truth.json").read_text())["patients"]
    assert set(summary) == set(truth)
    categories = set()
    for patient_id, patient in truth.items():
        assert summary[patient_id]["status"] == "done"
        with (out / patient_id / "matches.csv").open() as f:
            rows = list(csv.DictReader(f))
        found = {(r["baseline_lesion_id"], r["followup_lesion_id"], r["status"]) for r in rows}
        assert found == _expected_links(patient), patient_id  # all links, no false ones
        answer = json.loads((out / patient_id / "response.json").read_text())
        assert answer["recist_category"] == patient["response"]["recist_category"]
        assert answer["registration"]["liver_dice_after"] > 0.95
        assert answer["registration"]["liver_dice_after"] > answer["registration"][
            "liver_dice_before"]
        categories.add(answer["recist_category"])
        assert (out / patient_id / "transform.tfm").is_file()
        _check_pictures(out / patient_id)
    assert categories == {"PR", "PD", "CR"}


def _check_pictures(folder: Path) -> None:
    """The report's picture pairs: the largest persistent lesions, in order, as PNGs."""
    rows = list(csv.DictReader((folder / "matches.csv").open()))
    persistent = sorted((r for r in rows if r["status"] == "persistent"),
                        key=lambda r: -float(r["baseline_diameter_mm"]))
    pictures = lesion_pairs(folder)
    assert [(p["baseline_id"], p["followup_id"]) for p in pictures] == [
        (int(r["baseline_lesion_id"]), int(r["followup_lesion_id"])) for r in persistent[:3]]
    for picture in pictures:
        png = base64.b64decode(picture["uri"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_a_failed_registration_is_refused(cohort: Path, tmp_path: Path) -> None:
    base = cohort / "synth001" / "baseline"
    follow = cohort / "synth001" / "tp1"
    liver = read_image(follow / "liver.nii.gz")
    wrong = np.zeros_like(liver.array)
    wrong[:8, :20, :20] = 1  # a small block in a corner: no liver to align
    bad_liver = write_image(liver.with_array(wrong), tmp_path / "bad_liver.nii.gz")
    result = runner.invoke(app, [
        "track", "--out", str(tmp_path / "out"),
        "--baseline-lesions", str(base / "lesions.nii.gz"),
        "--baseline-liver", str(base / "liver.nii.gz"),
        "--followup-lesions", str(follow / "lesions.nii.gz"), "--followup-liver", str(bad_liver)])
    assert result.exit_code == 2
    assert "registration failed" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "patient" / "matches.csv").exists()
    missing = runner.invoke(app, ["track", "--out", str(tmp_path / "o2"),
                                  "--baseline-lesions", str(base / "lesions.nii.gz")])
    assert missing.exit_code == 2 and "--followup-liver" in missing.stderr


def test_later_followups_are_judged_against_the_nadir(cohort: Path, tmp_path: Path) -> None:
    # synth001 at tp2 = its tp1 again: the same links and category; the nadir is the smaller
    # of the baseline and tp1 sums, i.e. tp1's (a partial response).
    rows = list(csv.DictReader((cohort / "manifest.csv").open()))
    mine = [r for r in rows if r["patient_id"] == "synth001"]
    tp1 = next(r for r in mine if r["timepoint"] == "tp1")
    base = cohort
    for row in mine:
        for column in ("image", "liver_mask", "lesion_mask"):
            row[column] = str((base / row[column]).resolve())
    mine.append({**tp1, "timepoint": "tp2"})
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(mine)
    result = runner.invoke(app, ["track", "--manifest", str(manifest), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["synth001"]
    assert summary["later"]["tp2"]["recist_category"] == summary["recist_category"] == "PR"
    first = json.loads((tmp_path / "out" / "synth001" / "response.json").read_text())
    later = json.loads((tmp_path / "out" / "synth001" / "tp2" / "response.json").read_text())
    assert first["nadir_sum_mm"] == first["sum_diameters_baseline_mm"]
    assert later["nadir_sum_mm"] == first["sum_diameters_followup_mm"]
    assert later["sum_diameters_followup_mm"] == first["sum_diameters_followup_mm"]


def test_ct_of_another_patient_is_refused(tmp_path: Path) -> None:
    from livermets.datasets.ircadb import import_ircadb
    from tests.conftest import shared_path

    folders = {}
    for name in ("3Dircadb1.17", "3Dircadb1.7"):
        source = shared_path("ircadb", name)
        import_ircadb(source, tmp_path / name, overwrite=True)
        folders[name] = (source / "PATIENT_DICOM", tmp_path / name / name)
    (b_ct, b_masks), (f_ct, f_masks) = folders["3Dircadb1.17"], folders["3Dircadb1.7"]
    result = runner.invoke(app, [
        "track", "--out", str(tmp_path / "out"),
        "--baseline", str(b_ct), "--baseline-lesions", str(b_masks / "lesions.nii.gz"),
        "--baseline-liver", str(b_masks / "liver.nii.gz"),
        "--followup", str(f_ct), "--followup-lesions", str(f_masks / "lesions.nii.gz"),
        "--followup-liver", str(f_masks / "liver.nii.gz")])
    assert result.exit_code == 2
    assert "'liver_17^patient'" in result.stderr and "'liver_07^patient'" in result.stderr
    assert "PatientName" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # A mask that is not on its CT's grid is refused too.
    wrong = runner.invoke(app, [
        "track", "--out", str(tmp_path / "out"),
        "--baseline", str(b_ct), "--baseline-lesions", str(f_masks / "lesions.nii.gz"),
        "--baseline-liver", str(b_masks / "liver.nii.gz"),
        "--followup-lesions", str(f_masks / "lesions.nii.gz"),
        "--followup-liver", str(f_masks / "liver.nii.gz")])
    assert wrong.exit_code == 2 and "baseline lesion mask is not on the baseline CT" in (
        wrong.stderr)
