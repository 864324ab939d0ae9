"""`livermets predict` on real CT with really trained (tiny) models, and its bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.infer.outputs import write_case
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.io.dicom_seg import read_dicom_seg_for_series
from livermets.io.image import read_image, write_image
from livermets.io.manifest import read_manifest
from livermets.io.volume import Volume
from livermets.measure import measure_lesions
from tests.conftest import shared_path
from tests.infer.rule_models import lesion_rule
from tests.infer.test_predictor import make_phantom

runner = CliRunner()


def _error_line(result: object) -> str:
    err = result.stderr  # type: ignore[attr-defined]
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _check_case(folder: Path, ct_path: Path) -> None:
    """Every mask on the CT's exact grid; the table agrees with the lesion mask."""
    ct = read_image(ct_path)
    for name in ("liver.nii.gz", "lesions.nii.gz", "lesion_probability.nii.gz"):
        written = read_image(folder / name)
        assert written.shape == ct.shape
        assert written.spacing == pytest.approx(ct.spacing, abs=1e-6)
        assert written.origin == pytest.approx(ct.origin, abs=1e-4)
        assert written.direction == pytest.approx(ct.direction, abs=1e-6)
    lesions = read_image(folder / "lesions.nii.gz").array
    measured = measure_lesions(lesions.astype(np.int64), ct.spacing)
    with (folder / "lesions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(measured)
    for row in rows:
        m = measured[int(row["lesion_id"])]
        assert float(row["longest_axial_diameter_mm"]) == pytest.approx(
            m.longest_diameter_mm, abs=0.01)


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_a_real_dicom_ct_writes_masks_and_a_seg_that_reads_back(
        tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    dicom = shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM")
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "predict", str(dicom), "--out", str(out), "--case-id", "ircadb17",
        "--liver-model", str(tiny_runs["liver"]),
        "--lesion-model", str(tiny_runs["lesion"] / "model.pt")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [c["status"] for c in summary["cases"]] == ["done"]
    folder = out / "ircadb17"
    _check_case(folder, dicom)
    record = json.loads((folder / "run.json").read_text())
    assert record["dicom_seg"]["written"] is True and record["liver"]["source"] == "model"
    assert record["models"]["lesion"]["trained"]["best_epoch"] >= 1
    assert record["settings"]["candidate_checks"]["min_contrast_hu"] == 10.0
    with (folder / "rejected_candidates.csv").open() as f:
        assert len(list(csv.DictReader(f))) == record["rejected_candidates"]
    segments = {s.label: s.mask.array for s in read_dicom_seg_for_series(folder / "seg.dcm",
                                                                          dicom)}
    np.testing.assert_array_equal(segments["Liver"], read_image(folder / "liver.nii.gz").array)
    np.testing.assert_array_equal(segments["Liver metastases"],
                                  read_image(folder / "lesions.nii.gz").array > 0)
    # A second run skips the finished case.
    again = runner.invoke(app, [
        "predict", str(dicom), "--out", str(out), "--case-id", "ircadb17",
        "--liver-model", str(tiny_runs["liver"]), "--lesion-model", str(tiny_runs["lesion"])])
    assert again.exit_code == 0 and json.loads(again.stdout)["cases"][0]["status"] == "skipped"


@pytest.mark.shared_data
def test_seg_of_real_lesions_reads_back_on_the_source_grid(tmp_path: Path) -> None:
    """The 3-slice real CT with its real liver: hypodense voxels become lesions; the SEG
    holds the same liver and lesions as the NIfTI files."""
    folder = shared_path("fixtures", "dcmqi", "ct-3slice")
    ct = read_image(folder)
    liver = read_image(shared_path("fixtures", "dcmqi", "liver_seg.nrrd"))
    # The rule's "lesions" are the liver's darkest voxels, not tumours: no candidate checks.
    predictor = Predictor(lesion_rule(512, z_below=-2.0),
                          settings=PredictSettings(precision="fp32", candidate_checks=None))
    prediction = predictor.predict(ct, liver.with_array(liver.array.astype(np.uint8)))
    assert prediction.lesion_table, "the rule finds hypodense regions in a real liver"
    case = write_case(prediction, ct, tmp_path / "case", record={})
    segments = {s.label: s.mask.array for s in read_dicom_seg_for_series(case / "seg.dcm",
                                                                          folder)}
    np.testing.assert_array_equal(segments["Liver"], (liver.array > 0).astype(np.uint8))
    np.testing.assert_array_equal(segments["Liver metastases"],
                                  prediction.lesions.array > 0)


def test_bf16_and_fp32_inference_agree(tiny_runs: dict[str, Path], tiny_manifest: Path) -> None:
    with tiny_manifest.open() as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "validation")
    ct = read_image(tiny_manifest.parent / row["image"])
    masks = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(tiny_runs["lesion"], tiny_runs["liver"],
                              PredictSettings(precision=precision))
        masks[precision] = predictor.predict(ct).liver.array > 0
    both = np.count_nonzero(masks["fp32"] & masks["bf16"])
    dice = 2 * both / (masks["fp32"].sum() + masks["bf16"].sum())
    assert masks["fp32"].sum() > 0 and dice >= 0.99


def test_predict_from_a_manifest_with_its_liver_masks(tiny_runs: dict[str, Path],
                                                     tiny_manifest: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--manifest", str(tiny_manifest), "--manifest-liver",
                                 "--lesion-model", str(tiny_runs["lesion"]), "--out", str(out),
                                 "--threshold", "0.5", "--no-probability",
                                 "--no-candidate-checks", "--extent-mm", "0"])
    assert result.exit_code == 0, result.output
    cases = json.loads(result.stdout)["cases"]
    assert len(cases) == 8 and {c["status"] for c in cases} == {"done"}
    first = out / cases[0]["case_id"]
    assert not (first / "lesion_probability.nii.gz").exists()
    assert not list(first.glob("rejected_candidates.*"))
    record = json.loads((first / "run.json").read_text())
    assert record["liver"]["source"] == "given" and record["threshold"]["method"] == "fixed"
    assert record["settings"]["candidate_checks"] is None
    assert record["settings"]["extent_mm"] is None  # --extent-mm 0: off, the paper's
    assert record["rejected_candidates"] is None


@pytest.mark.parametrize(("extra", "message"), [
    (["--threshold", "2"], "--threshold must be in"),
    (["--extent-mm", "-3"], "extent reach"),
    (["--recheck-grown", "--extent-mm", "0"], "--recheck-grown needs"),
    (["--lesion-model", "LIVER"], "this is a liver model; give a lesion model"),
    (["--lesion-model", "GARBAGE"], "GARBAGE.pt"),
    (["--lesion-model", "LESION", "--case-id", "a", "CT"], "go with a single input"),
    (["--lesion-model", "LESION", "--manifest", "CT"], "either --manifest or INPUT"),
])
def test_bad_arguments_are_one_line_and_exit_2(tiny_runs: dict[str, Path], tmp_path: Path,
                                              extra: list[str], message: str) -> None:
    ct = write_image(make_phantom().ct, tmp_path / "ct.nii.gz")
    garbage = tmp_path / "GARBAGE.pt"
    garbage.write_bytes(b"not a model")
    names = {"LIVER": str(tiny_runs["liver"]), "LESION": str(tiny_runs["lesion"]),
             "GARBAGE": str(garbage), "CT": str(ct)}
    args = ["predict", str(ct), "--out", str(tmp_path / "out"),
            *[names.get(a, a) for a in extra]]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in _error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_failed_case_is_reported_and_exits_2(tiny_runs: dict[str, Path],
                                               tmp_path: Path) -> None:
    phantom = make_phantom()
    ct = write_image(phantom.ct, tmp_path / "ct.nii.gz")
    other = write_image(Volume.from_array(phantom.liver.array, spacing=(1.0, 1.0, 1.0)),
                        tmp_path / "liver_other_grid.nii.gz")
    # One CT: refused with one line before any work.
    result = runner.invoke(app, ["predict", str(ct), "--liver-mask", str(other),
                                 "--lesion-model", str(tiny_runs["lesion"]),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not on the CT's grid" in _error_line(result)
    assert not (tmp_path / "out").exists()
    # Several CTs: the bad one (NaN slices) is reported, the others are segmented.
    broken = phantom.ct.array.astype(np.float32)
    broken[3:5] = np.nan
    nan_ct = write_image(phantom.ct.with_array(broken), tmp_path / "nan_ct.nii.gz")
    result = runner.invoke(app, ["predict", str(nan_ct), str(ct),
                                 "--lesion-model", str(tiny_runs["lesion"]),
                                 "--liver-model", str(tiny_runs["liver"]),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    failed, done = json.loads(result.stdout)["cases"]
    assert failed["status"] == "failed" and "NaN" in failed["error"]
    assert done["status"] == "done"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct"]


#: Every real CT in ../shared/data: (patient_id, path, SEG expected?). The TotalSegmentator
#: DICOM has no SOP, series or study UIDs: no SEG can reference it (its run.json says why).
REAL_CTS = [
    ("ircadb117", ("ircadb", "3Dircadb1.17", "PATIENT_DICOM"), True),
    ("ircadb107", ("ircadb", "3Dircadb1.7", "PATIENT_DICOM"), True),
    ("crlm1004", ("crlm", "CRLM-CT-1004"), True),
    ("crlm1006", ("crlm", "CRLM-CT-1006"), True),
    ("totalseg", ("fixtures", "totalsegmentator", "example_ct.nii.gz"), False),
    ("totalsegdicom", ("fixtures", "totalsegmentator", "example_ct_dicom"), False),
    ("crlmatlas", ("crlm", "CRLM-CT-1100_atlas_ct.nii.gz"), False),
    ("dcmqi", ("fixtures", "dcmqi", "ct-3slice"), True),
]


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_every_real_ct_from_a_manifest(tiny_runs: dict[str, Path],
                                               tmp_path: Path) -> None:
    manifest = tmp_path / "real.csv"
    lines = ["patient_id,center,timepoint,image,liver_mask,lesion_mask,split"]
    # The tiny liver model finds little liver in the 3-slice CT: its real liver mask is given
    # (--manifest-liver uses the column where a row has one, the model elsewhere).
    dcmqi_liver = shared_path("fixtures", "dcmqi", "liver_seg.nrrd")
    lines += [f"{pid},real,baseline,{shared_path(*parts)},"
              f"{dcmqi_liver if pid == 'dcmqi' else ''},," for pid, parts, _ in REAL_CTS]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--manifest", str(manifest), "--out", str(out),
                                 "--manifest-liver", "--liver-model", str(tiny_runs["liver"]),
                                 "--lesion-model", str(tiny_runs["lesion"])])
    assert result.exit_code == 0, result.output
    cases = {c["case_id"]: c for c in json.loads(result.stdout)["cases"]}
    for pid, parts, with_seg in REAL_CTS:
        case_id = f"{pid}_baseline"
        assert cases[case_id]["status"] == "done", cases[case_id]
        folder = out / case_id
        _check_case(folder, shared_path(*parts))
        assert (folder / "seg.dcm").exists() == with_seg
        record = json.loads((folder / "run.json").read_text())
        assert record["dicom_seg"]["written"] is with_seg
        if with_seg:
            segments = {s.label: s.mask.array
                        for s in read_dicom_seg_for_series(folder / "seg.dcm",
                                                           shared_path(*parts))}
            np.testing.assert_array_equal(segments["Liver"],
                                          read_image(folder / "liver.nii.gz").array)


def test_several_lesion_models_and_the_flip_are_run_and_recorded(
        tiny_runs: dict[str, Path], tiny_manifest: Path, tmp_path: Path) -> None:
    """The same model given twice averages to itself: the masks equal one model's, and
    run.json lists both members and the flip."""
    image = read_manifest(tiny_manifest)[0].image
    model = str(tiny_runs["lesion"] / "model.pt")
    common = ["predict", str(image), "--case-id", "ct", "--liver-model", str(tiny_runs["liver"]),
              "--flip-tta"]
    one = runner.invoke(app, [*common, "--out", str(tmp_path / "one"), "--lesion-model", model])
    two = runner.invoke(app, [*common, "--out", str(tmp_path / "two"), "--lesion-model", model,
                              "--lesion-model", str(tiny_runs["lesion"])])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    for name in ("lesions.nii.gz", "lesion_probability.nii.gz"):
        np.testing.assert_array_equal(read_image(tmp_path / "one" / "ct" / name).array,
                                      read_image(tmp_path / "two" / "ct" / name).array)
    record = json.loads((tmp_path / "two" / "ct" / "run.json").read_text())
    assert record["settings"]["flip_tta"] is True
    assert record["settings"]["lesion_models_averaged"] == 2
    assert len(record["models"]["lesion_ensemble"]) == 2
    single = json.loads((tmp_path / "one" / "ct" / "run.json").read_text())
    assert single["settings"]["lesion_models_averaged"] == 1
    assert "lesion_ensemble" not in single["models"]
