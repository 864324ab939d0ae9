"""`livermets evaluate` on three hand-built cases whose every number is worked out by hand.

Grid: 4 x 40 x 60 voxels of 2 x 1 x 1 mm (z, y, x). Lesions are boxes two slices deep.
- Case p1_baseline (centre c1, valB): lesion 1 is 25 x 25 px (diagonal 35.4 mm: big), found
  exactly; lesion 2 is 10 x 10 px (14.1 mm: small), found shifted by 5 px (TP 100, FP 100,
  FN 100: Dice 0.5); one false positive of 3 x 3 px far away.
- Case p2_tp1 (c2, valTP1): no reference lesion (all vanished); one predicted lesion.
- Case p3_baseline (c2, valB): one 8 x 8 px lesion (11.3 mm: small), missed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.io.image import write_image
from livermets.io.volume import Volume

SHAPE = (4, 40, 60)
SPACING = (2.0, 1.0, 1.0)
runner = CliRunner()


def _box(*boxes: tuple[int, int, int, int, int]) -> np.ndarray:
    """Label map with (label, y0, x0, height, width) boxes on slices 1-2."""
    out = np.zeros(SHAPE, np.uint8)
    for label, y0, x0, h, w in boxes:
        out[1:3, y0:y0 + h, x0:x0 + w] = label
    return out


def _write(path: Path, array: np.ndarray) -> Path:
    return write_image(Volume.from_array(array, spacing=SPACING), path)


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, Path]:
    data, pred = tmp_path / "data", tmp_path / "pred"
    ct = _write(data / "ct.nii.gz", np.full(SHAPE, -1000, np.int16))
    liver = _box((1, 0, 0, 40, 60))
    cases = {
        "p1_baseline": (_box((1, 2, 2, 25, 25), (2, 5, 40, 10, 10)),
                        _box((1, 2, 2, 25, 25), (2, 5, 45, 10, 10), (3, 35, 5, 3, 3))),
        "p2_tp1": (_box(), _box((1, 30, 30, 4, 4))),
        "p3_baseline": (_box((1, 10, 10, 8, 8)), _box()),
    }
    for case_id, (reference, prediction) in cases.items():
        _write(data / f"{case_id}_lesions.nii.gz", reference)
        _write(pred / case_id / "lesions.nii.gz", prediction)
    _write(data / "liver.nii.gz", liver)
    _write(pred / "p1_baseline" / "liver.nii.gz", liver)
    manifest = data / "manifest.csv"
    manifest.write_text(
        "patient_id,center,timepoint,image,liver_mask,lesion_mask,split\n"
        f"p1,c1,baseline,{ct.name},liver.nii.gz,p1_baseline_lesions.nii.gz,valB\n"
        f"p2,c2,tp1,{ct.name},,p2_tp1_lesions.nii.gz,valTP1\n"
        f"p3,c2,baseline,{ct.name},,p3_baseline_lesions.nii.gz,valB\n"
        f"p4,c2,baseline,{ct.name},,,valB\n")
    return manifest, pred


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_lesion_rows_false_positives_and_cases(cohort: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    manifest, pred = cohort
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                                 str(pred), "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["evaluated_cases"] == 3 and printed["skipped_cases"] == ["p4_baseline"]

    lesions = _csv(out / "lesions.csv")
    assert list(lesions[0]) == ["case_id", "patient_id", "center", "timepoint", "set",
                                "lesion_id", "diameter_mm", "volume_ml", "size_group", "dice",
                                "precision", "recall", "detected"]
    got = [(r["case_id"], r["lesion_id"], r["size_group"], float(r["dice"]),
            float(r["precision"]), float(r["recall"]), r["detected"]) for r in lesions]
    assert got == [
        ("p1_baseline", "1", "big", 1.0, 1.0, 1.0, "True"),
        ("p1_baseline", "2", "small", 0.5, 0.5, 0.5, "True"),
        ("p3_baseline", "1", "small", 0.0, 0.0, 0.0, "False"),
    ]
    assert float(lesions[0]["diameter_mm"]) == pytest.approx(np.hypot(25, 25), abs=0.01)
    assert float(lesions[1]["volume_ml"]) == pytest.approx(200 * 2 / 1000)
    assert float(lesions[2]["diameter_mm"]) == pytest.approx(np.hypot(8, 8), abs=0.01)

    fps = _csv(out / "false_positives.csv")
    assert [(f["case_id"], f["lesion_id"]) for f in fps] == [("p1_baseline", "3"),
                                                            ("p2_tp1", "1")]
    assert float(fps[0]["volume_ml"]) == pytest.approx(18 * 2 / 1000)
    assert float(fps[0]["diameter_mm"]) == pytest.approx(np.hypot(3, 3), abs=0.01)

    cases = {c["case_id"]: c for c in _csv(out / "cases.csv")}
    assert cases["p1_baseline"]["liver_dice"] == "1.0" and cases["p3_baseline"]["liver_dice"] == ""
    # p1 voxel Dice: reference 1250 + 200, prediction 1250 + 200 + 18, shared 1250 + 100.
    assert float(cases["p1_baseline"]["lesion_dice_voxel"]) == pytest.approx(
        2 * 1350 / (1450 + 1468), abs=1e-4)
    assert (cases["p2_tp1"]["lesion_dice_voxel"], cases["p2_tp1"]["n_reference"],
            cases["p2_tp1"]["n_false_positives"]) == ("0.0", "0", "1")
    assert (cases["p1_baseline"]["n_predicted"], cases["p1_baseline"]["n_detected"]) == ("3", "2")


def test_summary_groups_and_tables(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, pred = cohort
    out = tmp_path / "eval"
    assert runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                               str(pred), "--out", str(out)]).exit_code == 0
    groups = json.loads((out / "summary.json").read_text())["groups"]
    everything = groups["all"]
    assert (everything["n_lesions"], everything["n_detected"], everything["n_cases"]) == (3, 2, 3)
    assert everything["detection_rate"] == pytest.approx(2 / 3, abs=1e-4)
    # Dice 1, 0.5, 0: mean 0.5, sample SD sqrt((0.25 + 0 + 0.25) / 2) = 0.5.
    assert everything["dice_mean"] == 0.5 and everything["dice_std"] == 0.5
    assert everything["false_positives_per_case"] == pytest.approx(2 / 3, abs=1e-4)
    assert groups["set=valTP1"]["n_lesions"] == 0 and groups["set=valTP1"]["detection_rate"] is None
    assert groups["set=valTP1"]["false_positives_per_case"] == 1.0
    small = groups["set=valB/size=small"]
    assert (small["n_lesions"], small["n_detected"], small["dice_mean"]) == (2, 1, 0.25)
    assert small["false_positives_per_case"] == 0.5  # the 4.2 mm false positive, 2 cases
    big = groups["set=valB/size=big"]
    assert (big["n_lesions"], big["dice_mean"], big["dice_std"]) == (1, 1.0, None)
    assert big["false_positives_per_case"] == 0.0
    assert groups["center=c2"]["n_cases"] == 2 and groups["center=c1"]["n_lesions"] == 2
    tables = (out / "tables.md").read_text()
    # valB's patients: p1 (2 of 2 detected) and p3 (0 of 1). Drawing two patients gives 1,
    # 2/3 or 0: the 95% interval is [0, 1].
    assert groups["set=valB"]["detection_rate_ci95"] == [0.0, 1.0]
    assert groups["set=valTP1"]["detection_rate_ci95"] is None
    assert ("| valB | 3 | 0.50 ± 0.50 | 0.50 ± 0.50 | 0.50 ± 0.50 | 67% (2/3) [0-100] | 0.50 |"
            in tables)
    assert "| valB | big | 1 | 1.00 | 1.00 | 1.00 | 100% (1/1) [100-100] |" in tables
    # Small (Dice 0.5, 0; one detected) vs big (Dice 1, detected) in valB: Fisher on
    # [[1, 1], [1, 0]] gives p = 1; Mann-Whitney, the big lesion above both small ones: 2 of
    # the 3 orderings are as extreme, p = 2/3. valTP1 has no lesion: no comparison with it.
    [test] = json.loads((out / "summary.json").read_text())["comparisons"]
    assert (test["a"], test["b"]) == ("set=valB/size=small", "set=valB/size=big")
    assert test["detection"]["test"] == "fisher" and test["detection"]["p_value"] == 1.0
    assert test["dice"]["p_value"] == pytest.approx(2 / 3)
    assert "| set=valB/size=small | set=valB/size=big | fisher | 1 | 0.667 |" in tables


def test_detection_threshold_option_and_refusals(cohort: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    manifest, pred = cohort
    out = tmp_path / "eval"
    args = ["evaluate", "--manifest", str(manifest), "--predictions", str(pred), "--out", str(out)]
    assert runner.invoke(app, [*args, "--detection-dice", "0.5"]).exit_code == 0
    assert json.loads((out / "summary.json").read_text())["groups"]["all"]["n_detected"] == 1
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    (pred / "p3_baseline" / "lesions.nii.gz").unlink()
    missing = runner.invoke(app, [*args, "--overwrite"])
    assert missing.exit_code == 2 and "run `livermets predict`" in missing.stderr


def test_finer_size_bins(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, pred = cohort
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                                 str(pred), "--out", str(out), "--size-bins", "12,20"])
    assert result.exit_code == 0, result.output
    groups = json.loads((out / "summary.json").read_text())["groups"]
    # valB diameters: 11.3 mm (missed), 14.1 mm (Dice 0.5), 35.4 mm (Dice 1).
    assert [k for k in groups if "/bin=" in k and k.startswith("set=valB")] == [
        "set=valB/bin=<12", "set=valB/bin=12-20", "set=valB/bin=>=20"]
    assert (groups["set=valB/bin=<12"]["n_lesions"], groups["set=valB/bin=<12"]["n_detected"]) \
        == (1, 0)
    assert groups["set=valB/bin=12-20"]["dice_mean"] == 0.5
    assert groups["set=valB/bin=>=20"]["detection_rate"] == 1.0
    bad = runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                              str(pred), "--out", str(tmp_path / "e2"), "--size-bins", "ten"])
    assert bad.exit_code == 2 and "--size-bins" in bad.stderr


def test_reference_instance_labels_are_kept(tmp_path: Path) -> None:
    """A user's lesion 3 stays lesion 3: labels not in volume order keep their own numbers
    (3 the largest, 7 the middle one, 1 the smallest; 5, 2 voxels = 4 mm3 < 10 mm3, is
    dropped); a binary reference's components are still numbered by decreasing volume."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    ct = _write(data / "ct.nii.gz", np.full(SHAPE, -1000, np.int16))
    instances = _box((1, 2, 2, 4, 4), (7, 2, 20, 6, 6), (3, 15, 2, 20, 20), (5, 38, 58, 1, 1))
    _write(data / "a_lesions.nii.gz", instances)
    # The prediction finds 3 and 1 exactly and misses 7; its own labels are 1 and 2.
    _write(pred / "pa_baseline" / "lesions.nii.gz", _box((1, 15, 2, 20, 20), (2, 2, 2, 4, 4)))
    # Binary: the first component in scan order (4 x 4) is the smaller, so it becomes 2.
    _write(data / "b_lesions.nii.gz", _box((1, 2, 2, 4, 4), (1, 20, 20, 9, 9)))
    _write(pred / "pb_baseline" / "lesions.nii.gz", _box((1, 20, 20, 9, 9)))
    manifest = data / "manifest.csv"
    manifest.write_text(
        "patient_id,center,timepoint,image,liver_mask,lesion_mask,split\n"
        f"pa,c1,baseline,{ct.name},,a_lesions.nii.gz,valB\n"
        f"pb,c1,baseline,{ct.name},,b_lesions.nii.gz,valB\n")
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                                 str(pred), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = [(r["case_id"], r["lesion_id"], float(r["volume_ml"]), float(r["dice"]))
           for r in _csv(out / "lesions.csv")]
    assert got == [("pa_baseline", "1", 16 * 2 * 2 / 1000, 1.0),
                   ("pa_baseline", "3", 400 * 2 * 2 / 1000, 1.0),
                   ("pa_baseline", "7", 36 * 2 * 2 / 1000, 0.0),
                   ("pb_baseline", "1", 81 * 2 * 2 / 1000, 1.0),
                   ("pb_baseline", "2", 16 * 2 * 2 / 1000, 0.0)]
