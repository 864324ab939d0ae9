"""Write one CT's prediction as a case folder, all or nothing, and run many CTs in turn.

`OUT/<case_id>/` holds `liver.nii.gz` (uint8 0/1), `lesions.nii.gz` (instance labels 1..K),
`lesion_probability.nii.gz` (float32, when kept), `lesions.csv` (`LESION_COLUMNS`),
`rejected_candidates.nii.gz` and `.csv` (`REJECTED_COLUMNS`: what the candidate checks turned
down, labels 1..R; both absent when the checks are off),
`seg.dcm` (DICOM Segmentation, for DICOM input whose slices were not resampled),
`run.json` (input, models, threshold, timings, versions) and the marker `.livermets`.

The folder is built under a hidden temporary name beside it and renamed into place when
complete, so a case folder with `run.json` is always finished, and an interrupted run
leaves no half-written case. `predict_cases` skips finished cases (unless `redo`), and a bad
case is reported while the others continue. Before any work it proves every case folder safe
(`livermets.io.safe_paths`): a name by the rule, inside `out`, not an input nor holding one,
and, where it exists, written by livermets; no other folder is ever replaced.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livermets.errors import InputError
from livermets.infer.predictor import LESION_COLUMNS, REJECTED_COLUMNS, Prediction, Predictor
from livermets.io.atomic import csv_text, write_text_atomic
from livermets.io.dicom_seg import liver_segment, metastases_segment, write_dicom_seg
from livermets.io.image import read_image, write_image
from livermets.io.safe_paths import (
    check_not_input,
    check_out_folder,
    check_replaceable,
    child_folder,
    make_folder,
    mark_as_ours,
)
from livermets.io.volume import Volume
from livermets.train.records import versions

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
#: A case folder written before the `.livermets` marker: its run record and two of its keys.
LEGACY_CASE = (RUN_RECORD, ("case_id", "versions"))


@dataclass(frozen=True)
class CaseInput:
    """One CT to segment: its id (the output folder's name), image and optional liver mask."""

    case_id: str
    image: Path
    liver_mask: Path | None = None


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case: `status` is "done", "skipped" (finished before) or "failed";
    `collect_cases` also reports "missing" (no case folder) and "unfinished" (only a
    half-written one)."""

    case_id: str
    status: str
    lesions: int | None = None
    seconds: float | None = None
    error: str | None = None


def write_case(prediction: Prediction, ct: Volume, folder: Path, *, record: dict[str, Any],
               overwrite: bool = False) -> Path:
    """Write `prediction` for `ct` into `folder` (created whole, atomically); return it.

    An existing `folder` is refused unless `overwrite` and livermets wrote it, in which case it
    is replaced only once the new one is complete.
    """
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} exists; use --overwrite to replace it")
    check_replaceable(folder, LEGACY_CASE)
    make_folder(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial",
                                    dir=folder.parent))
    staging.chmod(0o755)
    try:
        write_image(prediction.liver, staging / "liver.nii.gz")
        write_image(prediction.lesions, staging / "lesions.nii.gz")
        if prediction.probability is not None:
            write_image(prediction.probability, staging / "lesion_probability.nii.gz")
        (staging / "lesions.csv").write_text(lesions_csv(prediction.lesion_table),
                                             encoding="utf-8")
        if prediction.rejected is not None:
            write_image(prediction.rejected, staging / "rejected_candidates.nii.gz")
            (staging / "rejected_candidates.csv").write_text(
                csv_text(prediction.rejected_table, REJECTED_COLUMNS), encoding="utf-8")
        seg = _write_seg(prediction, ct, staging / "seg.dcm")
        full_record = {**record, "dicom_seg": seg, **_prediction_record(prediction),
                       "versions": versions()}
        write_text_atomic(staging / RUN_RECORD, json.dumps(full_record, indent=2) + "\n")
        mark_as_ours(staging, "prediction")
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def lesions_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The lesion table as CSV text with `LESION_COLUMNS` (header only when there is none)."""
    return csv_text(rows, LESION_COLUMNS)


def leftover_staging(folder: Path) -> list[Path]:
    """The hidden temporary folders `write_case` left beside `folder` when its process was
    killed mid-write (`.<name>.<random>.partial`; another case's, e.g. `<name>.b`'s, never)."""
    prefix, suffix = f".{folder.name}.", ".partial"
    if not folder.parent.is_dir():
        return []
    return sorted(p for p in folder.parent.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(suffix)
                  and "." not in p.name[len(prefix):-len(suffix)] and p.is_dir()
                  and not p.is_symlink())


def is_finished(folder: Path) -> bool:
    """Whether `folder` is a complete case folder (it has its run record)."""
    return (folder / RUN_RECORD).is_file()


def predict_cases(predictor: Predictor, cases: Sequence[CaseInput], out: Path, *,
                  overwrite: bool = False, redo: bool = False,
                  stop_on_error: bool = False, other_inputs: Sequence[Path] = ()
                  ) -> list[CaseOutcome]:
    """Segment each case into `out/<case_id>/`; a failing case is logged and the rest go on.

    A finished case folder is skipped unless `redo` or `overwrite` (both replace it). Every
    case folder is checked before any work (`case_folders`). With `stop_on_error` a bad case
    raises its `InputError` (one CT: the refusal is the answer) instead of being reported;
    `other_inputs` (models, the manifest) are protected as the CTs are.
    """
    folders = case_folders(cases, out, other_inputs)
    outcomes = []
    for number, (case, folder) in enumerate(zip(cases, folders, strict=True), start=1):
        for stale in leftover_staging(folder):  # a killed run's half-written copy of this case
            logger.info("%s: removing %s, left half-written by an interrupted run",
                        case.case_id, stale.name)
            shutil.rmtree(stale, ignore_errors=True)
        if is_finished(folder) and not (redo or overwrite):
            logger.info("[%d/%d] %s: finished before, skipped", number, len(cases),
                        case.case_id)
            outcomes.append(CaseOutcome(case.case_id, "skipped"))
            continue
        tic = time.perf_counter()
        try:
            outcomes.append(_predict_one(predictor, case, folder, replace=folder.exists(),
                                         started=tic))
        except InputError as error:
            if stop_on_error:
                raise
            logger.error("[%d/%d] %s: %s", number, len(cases), case.case_id, error)
            outcomes.append(CaseOutcome(case.case_id, "failed", error=str(error)))
            continue
        logger.info("[%d/%d] %s: %d lesion(s) in %.1f s", number, len(cases), case.case_id,
                    outcomes[-1].lesions, outcomes[-1].seconds)
    return outcomes


def collect_cases(cases: Sequence[CaseInput], out: Path) -> list[CaseOutcome]:
    """The state of each case in `out`, read from its folder, predicting nothing (`predict
    --merge`): "done" with its lesion count for a finished folder, "unfinished" where only a
    half-written one exists (a folder without its run record, or a hidden temporary folder a
    killed process left), "missing" otherwise."""
    outcomes = []
    for case in cases:
        folder = out / case.case_id
        if is_finished(folder):
            record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
            outcomes.append(CaseOutcome(case.case_id, "done", lesions=record.get("lesions")))
        elif folder.exists() or leftover_staging(folder):
            outcomes.append(CaseOutcome(case.case_id, "unfinished",
                                        error="half-written: predict it again"))
        else:
            outcomes.append(CaseOutcome(case.case_id, "missing", error="not predicted yet"))
    return outcomes


def case_folders(cases: Sequence[CaseInput], out: Path,
                 other_inputs: Sequence[Path] = ()) -> list[Path]:
    """Each case's folder `out/<case_id>`, proven safe before any work: the id follows the
    naming rule and is unique, the folder lies inside `out`, is no input (the cases' images
    and liver masks, and `other_inputs`: models, the manifest) and holds none, and, where it
    exists, livermets wrote it. `InputError` otherwise."""
    ids = [c.case_id for c in cases]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputError(f"case id(s) {', '.join(repeated)} appear more than once; give each "
                         "CT its own id (use a manifest)")
    check_out_folder(out)
    inputs = [*other_inputs, *(p for c in cases for p in (c.image, c.liver_mask)
                               if p is not None)]
    folders = []
    for case in cases:
        folder = child_folder(out, case.case_id, "case id")
        check_not_input(folder, inputs, "the case folder")
        check_replaceable(folder, LEGACY_CASE)
        folders.append(folder)
    return folders


def _predict_one(predictor: Predictor, case: CaseInput, folder: Path, *, replace: bool,
                 started: float) -> CaseOutcome:
    read_tic = time.perf_counter()
    ct = read_image(case.image)
    liver_mask = read_image(case.liver_mask) if case.liver_mask is not None else None
    read_s = time.perf_counter() - read_tic
    try:
        prediction = predictor.predict(ct, liver_mask)  # checks the CT first (`check_ct`)
    except InputError as error:
        raise InputError(f"{case.image}: {error}") from None
    prediction.timings = {"read_s": read_s, **prediction.timings}
    record = {"case_id": case.case_id, "image": str(case.image),
              "liver_mask": None if case.liver_mask is None else str(case.liver_mask),
              "ct": ct.geometry.to_json(), **predictor.record()}
    write_case(prediction, ct, folder, record=record, overwrite=replace)
    seconds = time.perf_counter() - started
    return CaseOutcome(case.case_id, "done", lesions=len(prediction.lesion_table),
                       seconds=round(seconds, 2))


def _prediction_record(prediction: Prediction) -> dict[str, Any]:
    stats = prediction.liver_stats
    return {
        "liver": {"source": prediction.liver_source, "volume_ml": round(stats.volume_ml, 1),
                  "mean_hu": round(stats.mean_hu, 2), "std_hu": round(stats.std_hu, 2)},
        "lesion_z_range": list(prediction.z_range),
        "threshold": prediction.threshold.to_json(),
        "lesions": len(prediction.lesion_table),
        "rejected_candidates": (None if prediction.rejected is None
                                else len(prediction.rejected_table)),
        "timings_s": {k: round(v, 3) for k, v in prediction.timings.items()},
    }


def _write_seg(prediction: Prediction, ct: Volume, path: Path) -> dict[str, Any]:
    """Write seg.dcm for DICOM input; return what happened, for the run record."""
    if ct.metadata.get("format") != "dicom":
        return {"written": False, "reason": "the input is not DICOM"}
    if ct.metadata.get("resampled_z") == "true":
        return {"written": False, "reason": "the DICOM slices were unevenly spaced and "
                "resampled, so the masks do not lie on the source slices"}
    segments = [liver_segment(prediction.liver.array),
                metastases_segment(prediction.lesions.array > 0)]
    try:
        write_dicom_seg(path, segments, ct)
    except InputError as error:  # the masks stand; only the SEG cannot be made
        logger.warning("no seg.dcm: %s", error)
        return {"written": False, "reason": str(error)}
    return {"written": True, "file": path.name}


def _swap_into_place(staging: Path, folder: Path) -> None:
    """Rename `staging` to `folder`; an existing `folder` is moved aside (to a fresh hidden
    name) first, then removed."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
        folder.replace(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)
