"""Bad input, as a hostile but realistic user gives it, across every command.

Each refusal asserts the README's promise: exit code 2, exactly one stderr line starting
"error: " that says what is wrong, no traceback, every input byte-identical afterwards
(SHA-256 of every file under it, and its listing), and nothing left in --out that a re-run
would trip over. The six destructive cases of issue 19 have their own regression tests, with
variants (absolute paths, symlinks, '..' inside longer names).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.io import Volume, read_image, write_image
from livermets.io.safe_paths import MARKER
from tests.conftest import shared_path
from tests.infer.test_predictor import make_phantom

runner = CliRunner()


# --- helpers -------------------------------------------------------------------------------


def fingerprint(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under each path (a file or a folder), keyed by its path; a
    folder's own entry lists its names, so an added or removed file shows too."""
    prints: dict[str, str] = {}
    for path in paths:
        if path.is_symlink():
            prints[str(path)] = "link->" + str(path.readlink())
        elif path.is_dir():
            prints[str(path)] = "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
            for child in sorted(path.iterdir()):
                prints |= fingerprint(child)
        elif path.is_file():
            prints[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            prints[str(path)] = "missing"
    return prints


def refused(args: list[str], fragment: str, *keep: Path) -> str:
    """Run `livermets ARGS`; assert the refusal contract and that `keep` is unchanged."""
    before = fingerprint(*keep)
    result = runner.invoke(app, [str(a) for a in args])
    err = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in result.output
    assert fragment in err, err
    assert fingerprint(*keep) == before
    return err


def succeeded(args: list[str]) -> dict[str, object]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


@pytest.fixture()
def phantom(tmp_path: Path) -> tuple[Path, Path]:
    """A small CT with three dark lesions and its liver mask, as NIfTI: (ct, liver)."""
    made = make_phantom()
    folder = tmp_path / "data"
    return (write_image(made.ct, folder / "ct.nii.gz"),
            write_image(made.liver, folder / "liver.nii.gz"))


@pytest.fixture()
def dicom_ct(tmp_path: Path) -> Path:
    """A real 3-slice CT DICOM series (dcmqi's test data) copied into a writable folder."""
    source = shared_path("fixtures", "dcmqi", "ct-3slice")
    folder = tmp_path / "dcm_victim"
    folder.mkdir()
    for file in sorted(source.iterdir()):
        shutil.copyfile(file, folder / file.name)
    return folder


def dicom_liver_mask(dicom: Path, path: Path) -> Path:
    """A liver mask on the DICOM series' grid: a box in the middle of each slice."""
    ct = read_image(dicom)
    mask = np.zeros(ct.shape, np.uint8)
    mask[:, 160:352, 160:352] = 1
    return write_image(ct.with_array(mask), path)


def predicted_case(out: Path, name: str, phantom: tuple[Path, Path]) -> Path:
    """A finished case folder written by `livermets predict` (given liver: fast)."""
    ct, liver = phantom
    succeeded(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", name])
    assert (out / name / MARKER).is_file()
    return out / name


# --- the six destructive cases and their variants ------------------------------------------


@pytest.mark.shared_data
def test_predict_never_replaces_the_dicom_folder_it_reads(dicom_ct: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    parent = dicom_ct.parent
    monkeypatch.chdir(parent)
    for extra in ([], ["--overwrite"], ["--redo"]):
        refused(["predict", "dcm_victim", "--out", ".", *extra], "is the input", dicom_ct)
        refused(["predict", str(dicom_ct), "--out", str(parent), *extra], "is the input",
                dicom_ct)
    # The case folder would lie inside the input (seg.dcm would join the series).
    refused(["predict", "dcm_victim", "--out", "dcm_victim"], "inside the input folder",
            dicom_ct)
    # A link to the input folder, given as the input: the case folder is still the input.
    (parent / "link").symlink_to(dicom_ct)
    refused(["predict", "link", "--out", ".", "--case-id", "dcm_victim"], "is the input",
            dicom_ct)


def test_predict_never_turns_the_input_ct_into_a_folder(phantom: tuple[Path, Path]) -> None:
    ct, liver = phantom
    folder = ct.parent
    for extra in ([], ["--overwrite"]):
        refused(["predict", ct, "--out", folder, "--case-id", "ct.nii.gz", "--liver-mask",
                 liver, *extra], "is the input", folder)
        # Not an input of this call, but a file livermets did not write.
        refused(["predict", ct, "--out", folder, "--case-id", "liver.nii.gz", *extra],
                "livermets never replaces it", folder)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("case_id", ["../victim", "..", ".", "", "a/../../victim",
                                     "x/..", "sub/case", "/abs/victim", ".hidden",
                                     "name\nwith newline", "..victim", "x\n"])
def test_predict_refuses_case_ids_that_are_not_plain_names(
        case_id: str, phantom: tuple[Path, Path], tmp_path: Path) -> None:
    ct, liver = phantom
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious")
    out = tmp_path / "s6"
    other = predicted_case(out, "other", phantom)
    if case_id == "/abs/victim":
        case_id = str(victim)
    refused(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", case_id,
             "--overwrite"], "cannot name an output folder", victim, other, ct.parent)
    assert sorted(p.name for p in out.iterdir()) == ["other"]


@pytest.mark.shared_data
def test_predict_of_the_current_folder_names_the_case_after_it(
        dicom_ct: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cd dicom_folder; livermets predict . --out ../preds --overwrite`: the case id is the
    folder's name, not ''; the other cases in --out stay."""
    liver = dicom_liver_mask(dicom_ct, tmp_path / "dcm_liver.nii.gz")
    preds = tmp_path / "preds"
    phantom_ct = write_image(make_phantom().ct, tmp_path / "p" / "ct.nii.gz")
    phantom_liver = write_image(make_phantom().liver, tmp_path / "p" / "liver.nii.gz")
    other = predicted_case(preds, "other", (phantom_ct, phantom_liver))
    before = fingerprint(other, dicom_ct)
    monkeypatch.chdir(dicom_ct)
    summary = succeeded(["predict", ".", "--out", "../preds", "--overwrite", "--liver-mask",
                         str(liver)])
    assert [c["case_id"] for c in summary["cases"]] == ["dcm_victim"]  # type: ignore[index]
    assert sorted(p.name for p in preds.iterdir()) == ["dcm_victim", "other"]
    assert fingerprint(other, dicom_ct) == before
    assert (preds / "dcm_victim" / "seg.dcm").is_file()


def test_predict_replaces_only_case_folders_livermets_wrote(phantom: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    ct, liver = phantom
    out = tmp_path / "out"
    user = out / "mine"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("a user's folder that happens to share the case's name")
    for extra in ([], ["--overwrite"], ["--redo"]):
        refused(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", "mine",
                 *extra], "livermets did not write it", user)
    # Its own finished folder is replaced with --overwrite, whole.
    ours = predicted_case(out, "ours", phantom)
    (ours / "stale.txt").write_text("from an earlier run")
    succeeded(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", "ours",
               "--overwrite"])
    assert not (ours / "stale.txt").exists() and (ours / "run.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["mine", "ours"]


def test_predict_never_follows_a_link_out_of_out(phantom: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    ct, liver = phantom
    elsewhere = predicted_case(tmp_path / "elsewhere", "case1", phantom)
    out = tmp_path / "out"
    out.mkdir()
    (out / "case1").symlink_to(elsewhere)
    for extra in ([], ["--overwrite"]):
        refused(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", "case1",
                 *extra], "outside", elsewhere, out)


def _track_files(tmp_path: Path) -> dict[str, Path]:
    """A baseline and follow-up pair of lesion and liver masks of one patient."""
    made = make_phantom()
    liver = made.liver
    array = np.zeros(liver.shape, np.uint8)
    array[made.balls["A"]] = 1
    lesions = liver.with_array(array)
    folder = tmp_path / "masks"
    return {"bl": write_image(lesions, folder / "bl_lesions.nii.gz"),
            "bv": write_image(liver, folder / "bl_liver.nii.gz"),
            "fl": write_image(lesions, folder / "fu_lesions.nii.gz"),
            "fv": write_image(liver, folder / "fu_liver.nii.gz")}


def _track_args(files: dict[str, Path], out: Path) -> list[str]:
    return ["track", "--out", str(out), "--baseline-lesions", str(files["bl"]),
            "--baseline-liver", str(files["bv"]), "--followup-lesions", str(files["fl"]),
            "--followup-liver", str(files["fv"])]


@pytest.mark.parametrize("patient_id", ["../trk_victim", "..", "", "a/../../trk_victim",
                                        "/abs"])
def test_track_writes_nothing_outside_out(patient_id: str, tmp_path: Path) -> None:
    files = _track_files(tmp_path)
    victim = tmp_path / "trk_victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    out = tmp_path / "k9"
    if patient_id == "/abs":
        patient_id = str(victim)
    refused([*_track_args(files, out), "--patient-id", patient_id],
            "cannot name an output folder", victim, files["bl"].parent)
    assert not out.exists() or not any(out.iterdir())


def test_track_refuses_a_patient_folder_it_did_not_write_and_a_link(tmp_path: Path) -> None:
    files = _track_files(tmp_path)
    out = tmp_path / "k9"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "matches.csv").write_text("the user's own table\n")
    refused([*_track_args(files, out), "--patient-id", "mine"], "livermets did not write it",
            out)
    (out / "link").symlink_to(tmp_path / "masks")
    refused([*_track_args(files, out), "--patient-id", "link"], "outside", out,
            tmp_path / "masks")
    # Its own folder is written again.
    succeeded([*_track_args(files, out), "--patient-id", "p1"])
    succeeded([*_track_args(files, out), "--patient-id", "p1"])
    assert (out / "p1" / MARKER).is_file() and (out / "p1" / "response.json").is_file()


# --- masks are checked everywhere ----------------------------------------------------------


def _float_mask(liver: Path, path: Path, value: float = 0.7) -> Path:
    volume = read_image(liver)
    return write_image(volume.with_array(volume.array.astype(np.float32) * value), path)


def test_predict_refuses_a_bad_liver_mask(phantom: tuple[Path, Path], tmp_path: Path) -> None:
    ct, liver = phantom
    out = tmp_path / "out"
    float_mask = _float_mask(liver, tmp_path / "float.nii.gz")
    refused(["predict", ct, "--out", out, "--liver-mask", float_mask], "non-integer values",
            ct.parent, float_mask)
    refused(["predict", ct, "--out", out, "--liver-mask", ct], "the CT itself", ct.parent)
    copy = tmp_path / "ct_copy.nii.gz"
    shutil.copyfile(ct, copy)
    refused(["predict", ct, "--out", out, "--liver-mask", copy], "is it a CT?", ct.parent)
    refused(["predict", ct, "--out", out, "--liver-mask", liver, "--liver-model",
             tmp_path / "any.pt"], "not both", ct.parent)
    refused(["predict", ct, "--out", out, "--liver-mask", liver, "--outline-threshold", "1.5"],
            "outline threshold", ct.parent)
    assert not out.exists()


def _manifest(tmp_path: Path, rows: list[dict[str, str]], name: str = "manifest.csv") -> Path:
    columns = ["patient_id", "center", "timepoint", "image", "liver_mask", "lesion_mask",
               "split"]
    lines = [",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_predict_manifest_liver_train_and_evaluate_refuse_float_and_ct_masks(
        phantom: tuple[Path, Path], tmp_path: Path) -> None:
    ct, liver = phantom
    float_liver = _float_mask(liver, tmp_path / "data" / "float_liver.nii.gz")
    lesions = liver  # a binary mask standing in for a lesion mask
    bad_liver = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(ct),
         "liver_mask": str(float_liver), "lesion_mask": str(lesions), "split": "training"}],
        "bad_liver.csv")
    ct_as_lesions = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(ct),
         "liver_mask": str(liver), "lesion_mask": str(ct), "split": "training"}],
        "ct_as_lesions.csv")
    keep = [tmp_path / "data", bad_liver, ct_as_lesions]
    refused(["predict", "--manifest", bad_liver, "--manifest-liver", "--out",
             tmp_path / "pred"], "non-integer values", *keep)
    for task in ("liver", "lesion"):
        refused(["train", "--manifest", bad_liver, "--task", task, "--out",
                 tmp_path / f"run_{task}", "--epochs", "1"], "non-integer values", *keep)
        assert not (tmp_path / f"run_{task}").exists()
    refused(["train", "--manifest", ct_as_lesions, "--task", "lesion", "--out",
             tmp_path / "run_ct", "--epochs", "1"], "the image itself", *keep)
    assert not (tmp_path / "run_ct").exists()
    predictions = tmp_path / "preds"
    predictions.mkdir()
    float_lesions = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(ct),
         "liver_mask": str(liver), "lesion_mask": str(float_liver)}], "float_lesions.csv")
    refused(["evaluate", "--manifest", float_lesions, "--predictions", predictions, "--out",
             tmp_path / "eval"], "non-integer values", *keep, float_lesions)
    copy = shutil.copyfile(ct, tmp_path / "data" / "ct_copy.nii.gz")
    ct_reference = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(ct),
         "liver_mask": str(liver), "lesion_mask": str(copy)}], "ct_reference.csv")
    refused(["evaluate", "--manifest", ct_reference, "--predictions", predictions, "--out",
             tmp_path / "eval"], "is it a CT?", *keep, ct_reference)
    assert not (tmp_path / "eval").exists()


def test_train_leaves_nothing_after_a_mask_on_another_grid(phantom: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    ct, liver = phantom
    volume = read_image(liver)
    cropped = write_image(Volume.from_array(volume.array[:, :40], spacing=volume.spacing,
                                            origin=volume.origin), tmp_path / "cropped.nii.gz")
    manifest = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(ct),
         "liver_mask": str(cropped), "split": "training"}])
    refused(["train", "--manifest", manifest, "--task", "liver", "--out", tmp_path / "run",
             "--epochs", "1"], "not on the image's grid", ct.parent, cropped)
    assert not (tmp_path / "run").exists()
    refused(["train", "--manifest", manifest, "--task", "liver", "--out", tmp_path / "run",
             "--encoder-weights", tmp_path / "missing.pth", "--arch", "resnet18-unet"],
            "", ct.parent)
    assert not (tmp_path / "run").exists()


def test_track_refuses_float_masks_and_a_manifest_with_nothing_to_track(
        tmp_path: Path) -> None:
    files = _track_files(tmp_path)
    float_lesions = _float_mask(files["bl"], tmp_path / "masks" / "float.nii.gz", 0.5)
    args = _track_args(files, tmp_path / "k9")
    args[args.index(str(files["bl"]))] = str(float_lesions)
    refused(args, "non-integer values", tmp_path / "masks")
    only_followups = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "tp1", "image": str(files["bv"]),
         "liver_mask": str(files["fv"]), "lesion_mask": str(files["fl"])}])
    refused(["track", "--manifest", only_followups, "--out", tmp_path / "k10"],
            "nothing to track", tmp_path / "masks")
    no_masks = _manifest(tmp_path, [
        {"patient_id": "p1", "timepoint": "baseline", "image": str(files["bv"])},
        {"patient_id": "p1", "timepoint": "tp1", "image": str(files["fv"])}], "no_masks.csv")
    refused(["track", "--manifest", no_masks, "--out", tmp_path / "k10"], "nothing to track",
            tmp_path / "masks")
    assert not (tmp_path / "k10").exists()


# --- exit 2, not "internal error" ----------------------------------------------------------


def test_outputs_that_cannot_be_written_are_refused(phantom: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    ct, liver = phantom
    a_file = tmp_path / "exist.nrrd"
    a_file.write_text("not a folder")
    keep = [ct.parent, a_file]
    refused(["convert", ct, a_file / "out.nii.gz"], "cannot write", *keep)
    refused(["convert", ct, "/proc/out.nii.gz"], "cannot write", *keep)
    refused(["predict", ct, "--liver-mask", liver, "--out", a_file], "is a file", *keep)
    refused(["predict", ct, "--liver-mask", liver, "--out", a_file / "sub"], "is a file",
            *keep)
    manifest = _manifest(tmp_path, [{"patient_id": "p1", "timepoint": "baseline",
                                     "image": str(ct), "lesion_mask": str(liver)}])
    refused(["evaluate", "--manifest", manifest, "--predictions", tmp_path, "--out", a_file],
            "is a file", *keep)
    refused(["demo", "--out", a_file], "is a file", *keep)
    refused(["train", "--manifest", manifest, "--task", "liver", "--out", a_file],
            "is a file", *keep)


def test_predict_never_replaces_a_folder_holding_its_model_or_manifest(
        phantom: tuple[Path, Path], tmp_path: Path) -> None:
    from livermets.models.starter import starter_model_path

    ct, liver = phantom
    out = tmp_path / "data"
    case = predicted_case(out, "ct", phantom)
    model = case / "my_lesion_model.pt"
    shutil.copyfile(starter_model_path("lesion"), model)
    refused(["predict", ct, "--liver-mask", liver, "--out", out, "--case-id", "ct",
             "--lesion-model", model, "--overwrite"], "holds the input", case)
    manifest = _manifest(case, [{"patient_id": "ct", "timepoint": "baseline",
                                 "image": str(ct), "liver_mask": str(liver)}], "m.csv")
    (out / "ct_baseline").symlink_to(case)  # the manifest's case folder: a link to it
    refused(["predict", "--manifest", manifest, "--manifest-liver", "--out", out,
             "--overwrite"], "holds the input", case)
    (out / "ct_baseline").unlink()
    shutil.move(str(case), str(out / "ct_baseline"))
    manifest = out / "ct_baseline" / "m.csv"
    refused(["predict", "--manifest", manifest, "--manifest-liver", "--out", out,
             "--overwrite"], "holds the input", out / "ct_baseline")


def test_convert_into_a_folder_is_refused(phantom: tuple[Path, Path], tmp_path: Path) -> None:
    ct, _ = phantom
    folder = tmp_path / "d.nii.gz"
    folder.mkdir()
    refused(["convert", ct, folder, "--overwrite"], "is a folder", ct.parent, folder)


def test_import_msd_names_stay_inside_out(phantom: tuple[Path, Path], tmp_path: Path) -> None:
    """An image named `...nii.gz` (its case name would be '..') lands in OUT/case; a case
    folder that is a symlink out of OUT is refused."""
    ct, liver = phantom
    source = tmp_path / "src"
    for folder in ("imagesTr", "labelsTr"):
        (source / folder).mkdir(parents=True)
    shutil.copyfile(ct, source / "imagesTr" / "...nii.gz")
    shutil.copyfile(liver, source / "labelsTr" / "...nii.gz")
    top = tmp_path / "out"
    top.mkdir()
    (top / "liver.nii.gz").write_text("precious")
    succeeded(["import", "msd", source, "--out", top / "sub"])
    assert sorted(p.name for p in top.iterdir()) == ["liver.nii.gz", "sub"]
    assert (top / "sub" / "case" / "liver.nii.gz").is_file()
    assert (top / "liver.nii.gz").read_text() == "precious"
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "liver.nii.gz").write_text("mine")
    (top / "linked").mkdir()
    (top / "linked" / "case").symlink_to(user)
    refused(["import", "msd", source, "--out", top / "linked"], "outside", user, source)
    assert sorted(p.name for p in (top / "linked").iterdir()) == ["case"]


def test_convert_into_a_folder_without_write_permission(phantom: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into any folder: permission refusals need a non-root user")
    ct, _ = phantom
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        refused(["convert", ct, locked / "out.nii.gz"], "cannot write", ct.parent)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(("args", "fragment"), [
    (["import", "foo", "x", "--out", "y"], "'foo' is not one of"),
    (["predict", "x", "--batch-size", "abc"], "--batch-size"),
    (["predict", "x", "--bogus"], "No such option: --bogus"),
    (["nope"], "No such command"),
])
def test_usage_errors_are_one_line(args: list[str], fragment: str) -> None:
    refused(args, fragment)


# --- report ---------------------------------------------------------------------------------


@pytest.fixture()
def evaluation(phantom: tuple[Path, Path], tmp_path: Path) -> Path:
    """A real evaluation folder: the phantom predicted (given liver) and evaluated."""
    ct, liver = phantom
    made = make_phantom()
    reference = np.zeros(made.liver.shape, np.uint8)
    for label, name in enumerate(("A", "B"), start=1):
        reference[made.balls[name]] = label
    lesions = write_image(made.liver.with_array(reference), ct.parent / "lesions.nii.gz")
    manifest = _manifest(tmp_path, [{"patient_id": "p1", "timepoint": "baseline",
                                     "image": str(ct), "liver_mask": str(liver),
                                     "lesion_mask": str(lesions)}])
    succeeded(["predict", "--manifest", manifest, "--manifest-liver", "--out",
               tmp_path / "preds"])
    succeeded(["evaluate", "--manifest", manifest, "--predictions", tmp_path / "preds",
               "--out", tmp_path / "eval"])
    return tmp_path / "eval"


def test_report_refuses_damaged_evaluations_and_negative_cases(evaluation: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    refused(["report", evaluation, "--out", out, "--cases", "-1"], "--cases -1", evaluation)
    # Never over a CT, a mask or a manifest, even with --overwrite: a report is an .html file.
    ct = tmp_path / "data" / "ct.nii.gz"
    refused(["report", evaluation, "--out", ct, "--overwrite"], "give an .html file",
            evaluation, ct.parent)
    refused(["report", evaluation, "--out", tmp_path / "data", "--overwrite"],
            "give an .html file", evaluation, ct.parent)
    refused(["report", evaluation, "--out", evaluation / "summary.json", "--overwrite"],
            "give an .html file", evaluation)
    damaged = tmp_path / "damaged"
    shutil.copytree(evaluation, damaged)
    text = (damaged / "summary.json").read_text()
    (damaged / "summary.json").write_text(text[: len(text) // 2])
    refused(["report", damaged, "--out", out], "not readable JSON", damaged)
    (damaged / "summary.json").write_text(text)
    (damaged / "lesions.csv").write_text("a,b\n1,2\n")
    refused(["report", damaged, "--out", out], "lacks the column(s)", damaged)
    assert not out.exists()
    succeeded(["report", evaluation, "--out", out])
    succeeded(["report", evaluation, "--out", evaluation / "report.html"])
    assert out.stat().st_size > 0 and (evaluation / "report.html").stat().st_size > 0


# --- CTs that cannot be segmented ----------------------------------------------------------


def test_predict_refuses_cts_that_cannot_be_segmented(phantom: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    _, liver = phantom
    made = make_phantom()
    out = tmp_path / "out"
    hu = made.ct.array.astype(np.float32)
    hu[10:12] = np.nan
    nan_ct = write_image(made.ct.with_array(hu), tmp_path / "nan.nii.gz")
    refused(["predict", nan_ct, "--out", out, "--liver-mask", liver],
            "holds 8192 NaN or infinite voxels on 2 slice(s) (first: slice 10)", nan_ct, liver)
    one = Volume.from_array(made.ct.array[12:13], spacing=made.ct.spacing)
    one_slice = write_image(one, tmp_path / "one.nii.gz")
    one_liver = write_image(one.with_array(made.liver.array[12:13]), tmp_path / "one_l.nii.gz")
    refused(["predict", one_slice, "--out", out, "--liver-mask", one_liver],
            "single slice", one_slice)
    tiny = Volume.from_array(made.ct.array, spacing=(1e-6, 1e-6, 1e-6))
    tiny_ct = write_image(tiny, tmp_path / "tiny.nii.gz")
    tiny_liver = write_image(tiny.with_array(made.liver.array), tmp_path / "tiny_l.nii.gz")
    refused(["predict", tiny_ct, "--out", out], "voxel spacing of (1e-06, 1e-06, 1e-06) mm",
            tiny_ct)
    refused(["predict", tiny_ct, "--out", out, "--liver-mask", tiny_liver], "voxel spacing",
            tiny_ct)
    assert not out.exists()


@pytest.mark.shared_data
def test_predict_refuses_an_mr_series(dicom_ct: Path, tmp_path: Path) -> None:
    import pydicom

    for file in dicom_ct.iterdir():
        dataset = pydicom.dcmread(file)
        dataset.Modality = "MR"
        dataset.save_as(file)
    liver = dicom_liver_mask(dicom_ct, tmp_path / "liver.nii.gz")
    refused(["predict", dicom_ct, "--out", tmp_path / "out", "--liver-mask", liver],
            "is a MR series", dicom_ct)


def test_a_truncated_gzip_says_how_much_was_there(tmp_path: Path) -> None:
    """A .nii.gz cut in half: the message counts the bytes that did decompress."""
    rng = np.random.default_rng(0)
    volume = Volume.from_array(rng.integers(-1000, 1000, (40, 64, 64), dtype=np.int16))
    whole = write_image(volume, tmp_path / "whole.nii.gz")
    data = whole.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    err = refused(["info", cut], "its gzip stream ends early, after ", cut)
    count, expected = (int(x) for x in err.split("after ")[1].split(" bytes")[0].split(" of "))
    # 352 header bytes + 40*64*64*2 data bytes; random data barely compresses, so about
    # half of it decompressed (a deflate block or so may be lost at the cut).
    assert expected == 352 + 40 * 64 * 64 * 2
    assert 0.3 * expected < count < 0.55 * expected


# --- imports leave nothing behind ----------------------------------------------------------


def _ircadb_patient(tmp_path: Path, *, drop_slice: str | None = None,
                    cut_zip: bool = False) -> Path:
    """IRCADb 1.17 as links to the shared files (cheap), one slice left out or the mask
    archive cut short when asked."""
    source = shared_path("ircadb", "3Dircadb1.17")
    patient = tmp_path / "src" / "3Dircadb1.17"
    (patient / "PATIENT_DICOM").mkdir(parents=True)
    for file in (source / "PATIENT_DICOM").iterdir():
        if file.name != drop_slice:
            (patient / "PATIENT_DICOM" / file.name).symlink_to(file)
    archive = source / "MASKS_DICOM.zip"
    if cut_zip:
        data = archive.read_bytes()
        (patient / "MASKS_DICOM.zip").write_bytes(data[: len(data) // 2])
    else:
        (patient / "MASKS_DICOM.zip").symlink_to(archive)
    return patient


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize(("damage", "fragment"), [
    ({"cut_zip": True}, "MASKS_DICOM.zip"),
    ({"drop_slice": "image_60"}, "is missing slices"),
])
def test_a_refused_ircadb_import_leaves_nothing(damage: dict[str, object], fragment: str,
                                                tmp_path: Path) -> None:
    patient = _ircadb_patient(tmp_path, **damage)  # type: ignore[arg-type]
    out = tmp_path / "imported"
    err = refused(["import", "ircadb", patient, "--out", out], fragment, patient)
    assert f"patient folder {patient}" in err
    assert not out.exists()
    # Into a folder that held something before: only what the import added goes.
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    refused(["import", "ircadb", patient, "--out", out], fragment, patient)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.shared_data
def test_a_slice_without_its_position_is_named_not_taken_for_a_gap(dicom_ct: Path) -> None:
    import pydicom

    damaged = sorted(dicom_ct.iterdir())[1]
    dataset = pydicom.dcmread(damaged)
    del dataset.ImagePositionPatient
    dataset.save_as(damaged)
    err = refused(["info", dicom_ct], "without ImagePositionPatient", dicom_ct)
    assert damaged.name in err and "missing slices" not in err


# --- study checks every argument before any work -------------------------------------------


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--epochs", "0"], "epochs"),
    (["--image-size", "7"], "image_size"),
    (["--liver-model", "{lesion_model}"], "lesion model"),
])
def test_study_refuses_bad_arguments_before_any_work(extra: list[str], fragment: str,
                                                     phantom: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    from livermets.models.starter import starter_model_path

    ct, liver = phantom
    manifest = _manifest(tmp_path, [{"patient_id": "p1", "timepoint": "baseline",
                                     "image": str(ct), "liver_mask": str(liver),
                                     "lesion_mask": str(liver), "split": "training"}])
    extra = [e.format(lesion_model=starter_model_path("lesion")) for e in extra]
    refused(["study", "--manifest", manifest, "--out", tmp_path / "study", *extra], fragment,
            ct.parent, manifest)
    assert not (tmp_path / "study").exists()


def test_no_user_file_is_replaced_by_an_output_of_the_same_name(
        phantom: tuple[Path, Path], tmp_path: Path) -> None:
    """A folder of the user's given as --out: evaluate, train and demo refuse it rather than
    write over its files; convert never replaces another image's data file."""
    ct, liver = phantom
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "lesions.csv").write_text("the user's own table\n")
    (mine / "history.csv").write_text("h\n")
    manifest = _manifest(tmp_path, [{"patient_id": "p1", "timepoint": "baseline",
                                     "image": str(ct), "liver_mask": str(liver),
                                     "lesion_mask": str(liver), "split": "training"}])
    predictions = tmp_path / "preds"
    predictions.mkdir()
    refused(["evaluate", "--manifest", manifest, "--predictions", predictions, "--out", mine],
            "not a finished evaluation", mine)
    refused(["train", "--manifest", manifest, "--task", "liver", "--out", mine, "--epochs",
             "1"], "livermets did not write it", mine)
    cohort = tmp_path / "demo" / "cohort"
    cohort.mkdir(parents=True)
    (cohort / "manifest.csv").write_text("mine\n")
    refused(["demo", "--out", tmp_path / "demo", "--no-study"], "no truth.json",
            tmp_path / "demo")
    (tmp_path / "out.zraw").write_text("another image's data")
    refused(["convert", ct, tmp_path / "out.mhd"], "belongs to another image",
            tmp_path / "out.zraw", ct.parent)
    assert not (tmp_path / "out.mhd").exists()


def test_a_run_folders_own_config_and_an_overlong_path_are_refused(
        phantom: tuple[Path, Path], tmp_path: Path) -> None:
    ct, liver = phantom
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.yaml"
    config.write_text("# my commented settings\nepochs: 1\n")
    manifest = _manifest(tmp_path, [{"patient_id": "p1", "timepoint": "baseline",
                                     "image": str(ct), "liver_mask": str(liver),
                                     "split": "training"}])
    refused(["train", "--manifest", manifest, "--task", "liver", "--out", run, "--config",
             config], "training rewrites", run)
    refused(["predict", ct, "--liver-mask", liver, "--out", tmp_path / ("a" * 5000)],
            "File name too long", ct.parent)
