"""`livermets report EVAL... --out report.html`: one self-contained HTML file.

The page opens the way the paper does: Table I (DSC, Pr, Re, DR with 95% bootstrap intervals,
per set) with every evaluation (model) side by side and, for a study, the No-TL vs TL tests on
the same lesions beside each set; then Table II (by lesion size, side by side), TP1tr vs
TP1tst, the follow-up and the training curves. Then, per evaluation folder (`livermets
evaluate`'s output): the set and size comparisons with their p-values, a box plot of lesion
Dice per set and size (their Figure 2), detection rate by size, CT slices of a few cases with
the reference and predicted contours and missed lesions circled (their Figures 3-4; cases with
a missed lesion first), and the run record of the predictions (models, threshold, versions).
Images are embedded as data URIs; the file needs nothing else to open.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from livermets import __version__
from livermets.datasets.common import MIN_LESION_VOLUME_MM3
from livermets.errors import InputError
from livermets.evaluate.cases import CASE_COLUMNS, LESION_COLUMNS
from livermets.evaluate.run import SUMMARY
from livermets.evaluate.summary import format_detection, format_mean_sd
from livermets.io.atomic import write_text_atomic
from livermets.io.image import read_image
from livermets.io.manifest import read_manifest
from livermets.labels import lesion_ids
from livermets.measure import measure_lesions
from livermets.report.figures import case_overlay, detection_by_size, dice_boxplot, waterfall
from livermets.report.follow_up import lesion_pairs
from livermets.report.radiomics import radiomics_context
from livermets.types import PathLike

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def build_report(evaluations: list[PathLike], out: PathLike, *, cases: int = 6,
                 title: str = "livermets: lesion-level evaluation",
                 model_comparisons: list[Row] | None = None,
                 runs: list[Path] | None = None,
                 tp1_comparisons: dict[str, Row] | None = None,
                 follow_up: dict[str, Any] | None = None,
                 radiomics: PathLike | None = None,
                 model_notes: Sequence[str] = ()) -> Path:
    """Write the report of `evaluations` (folders holding summary.json) to `out` (HTML).

    `model_comparisons`: rows from `study.compare_models`; `tp1_comparisons`: per model, the
    `study.tp1_train_vs_test` result; `runs`: training run folders whose loss curves
    (loss_curve.png) are shown; `radiomics`: a `livermets radiomics` folder, for the section on
    the features' robustness to automatic segmentation (`report.radiomics`); `model_notes`:
    lines saying what each model is (shown above Table I).
    """
    if not evaluations:
        raise InputError("give at least one evaluation folder (from `livermets evaluate`)")
    if cases < 0:
        raise InputError(f"--cases {cases}: give 0 or more cases to picture")
    check_report_target(out)
    contexts = [_evaluation_context(Path(folder), cases) for folder in evaluations]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("livermets.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    html = environment.get_template("report.html.j2").render(
        title=title, created=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        version=__version__, evaluations=contexts, model_comparisons=model_comparisons or [],
        model_notes=list(model_notes),
        side_by_side=side_by_side(contexts, model_comparisons or []),
        tp1_comparisons=tp1_comparisons or {},
        follow_up=_follow_up_context(follow_up),
        radiomics=radiomics_context(Path(radiomics)) if radiomics is not None else None,
        curves=[{"name": run.name, "uri": _png_uri(run / "loss_curve.png")}
                for run in runs or []])
    target = Path(out)
    write_text_atomic(target, html)
    logger.info("wrote %s", target)
    return target


def side_by_side(contexts: Sequence[Row], model_comparisons: Sequence[Row]) -> Row:
    """Tables I and II with the evaluations' rows side by side.

    `contexts`: `_evaluation_context` results (their `table_main` and `table_size` rows);
    `model_comparisons`: rows of `study.compare_models` (keyed by set), put beside Table I's
    row of that set (None where a set has no comparison, e.g. "all"). Returns {"models":
    names, "main": [{"name", "n_cases", "n_lesions", "models": [row or None per model],
    "test": comparison or None}], "size": [... with "size"]}; `n_cases` and `n_lesions` are
    the models' counts, one value when they agree, else joined by "/".
    """
    tests = {row["set"]: row for row in model_comparisons}

    def merge(table: str, key: Any) -> list[Row]:
        order: list[Any] = []
        for context in contexts:
            order += [key(row) for row in context[table] if key(row) not in order]
        merged = []
        for wanted in order:
            rows = [next((r for r in c[table] if key(r) == wanted), None) for c in contexts]
            present = [r for r in rows if r is not None]
            merged.append({**present[0], "models": rows,
                           "n_cases": _joined(r.get("n_cases") for r in present),
                           "n_lesions": _joined(r["n_lesions"] for r in present),
                           "test": tests.get(present[0]["name"]) if table == "table_main"
                           else None})
        return merged

    return {"models": [c["name"] for c in contexts],
            "main": merge("table_main", lambda r: r["name"]),
            "size": merge("table_size", lambda r: (r["name"], r["size"]))}


def _joined(values: Any) -> str:
    """"3" when every value is 3, "3/4" when they differ (in first-seen order)."""
    distinct: list[str] = []
    for value in values:
        if str(value) not in distinct:
            distinct.append(str(value))
    return "/".join(distinct)


def _follow_up_context(follow_up: dict[str, Any] | None) -> Row | None:
    """Per patient: the reference and predicted RECIST categories and changes; a waterfall."""
    if not follow_up:
        return None
    reference = follow_up["reference"]
    models = [k for k in follow_up if k != "reference"]
    rows = []
    for patient, ref in sorted(reference.items()):
        row = {"patient": patient, "reference": ref}
        row["models"] = [follow_up[m].get(patient, {}) for m in models]
        rows.append(row)
    changes = {p: r["sum_change_pct"] for p, r in reference.items()
               if r.get("status") == "done" and r.get("sum_change_pct") is not None}
    predicted = {p: r["sum_change_pct"] for p, r in (follow_up[models[0]].items() if models
                                                     else [])
                 if r.get("status") == "done" and r.get("sum_change_pct") is not None}
    agree = [p for p in reference if reference[p].get("status") == "done" and models
             and follow_up[models[0]].get(p, {}).get("recist_category")
             == reference[p].get("recist_category")]
    done = [p for p in reference if reference[p].get("status") == "done"]
    pairs = []
    for patient in sorted(reference):
        # The first model's masks where its tracking succeeded, else the reference's.
        for source in [*models[:1], "reference"]:
            result = follow_up[source].get(patient, {})
            if result.get("status") == "done" and result.get("folder"):
                pictures = lesion_pairs(Path(result["folder"]))
                if pictures:
                    pairs.append({"patient": patient, "source": source, "pictures": pictures})
                break
    return {"models": models, "rows": rows, "agreement": f"{len(agree)}/{len(done)}",
            "waterfall": waterfall(changes, predicted) if changes else None, "pairs": pairs}


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _read_csv(path: Path, columns: Sequence[str] = ()) -> list[Row]:
    """The rows of `path`; `InputError` when it is unreadable or lacks one of `columns`."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); re-run `livermets evaluate`"
                         ) from None
    if missing:
        raise InputError(f"{path} lacks the column(s) {', '.join(missing)}; it is not "
                         "`livermets evaluate` output: re-run it")
    return rows


#: The keys of summary.json the report reads.
_SUMMARY_KEYS = ("settings", "manifest", "predictions", "evaluated_cases", "skipped_cases",
                 "groups", "comparisons")


def _read_summary(folder: Path) -> Row:
    """summary.json of an evaluation folder; `InputError` when missing, damaged or foreign."""
    path = folder / SUMMARY
    if not path.is_file():
        raise InputError(f"{folder} is not an evaluation folder (no summary.json); run "
                         "`livermets evaluate` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not readable JSON ({type(exc).__name__}); re-run "
                         "`livermets evaluate`") from None
    missing = [k for k in _SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}; it is not `livermets evaluate` "
                         "output: re-run it")
    return dict(summary)


def check_report_target(out: PathLike) -> None:
    """`InputError` unless the report `out` is an .html file (so it can never replace a CT, a
    mask, a manifest or an evaluation's own files, none of which is HTML)."""
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm") or target.is_dir():
        raise InputError(f"--out {target}: give an .html file for the report")


def _evaluation_context(folder: Path, cases: int) -> Row:
    summary = _read_summary(folder)
    lesions = _read_csv(folder / "lesions.csv", LESION_COLUMNS)
    groups: dict[str, Row] = summary["groups"]
    sets = [k.split("=", 1)[1] for k in groups if k.startswith("set=") and "/" not in k]
    table_main = [_table_row(name, groups["all" if name == "all" else f"set={name}"])
                  for name in ["all", *sets]]
    table_size = [_table_row(name, groups[f"set={name}/size={size}"]) | {"size": size}
                  for name in sets for size in ("small", "big")]
    figures = []
    if lesions:
        figures.append({"uri": dice_boxplot(lesions, summary["comparisons"],
                                            f"{folder.name}: lesion Dice"),
                        "alt": "box plot of lesion Dice per set and size group"})
        figures.append({"uri": detection_by_size(groups, f"{folder.name}: detection by size"),
                        "alt": "detection rate per set and size group"})
    predictions = Path(summary["predictions"])
    cases_rows = _read_csv(folder / "cases.csv", CASE_COLUMNS)
    return {
        "name": folder.name, "settings": summary["settings"],
        "evaluated_cases": summary["evaluated_cases"], "skipped_cases": summary["skipped_cases"],
        "predictions": str(predictions), "table_main": table_main, "table_size": table_size,
        "comparisons": summary["comparisons"], "figures": figures,
        "gallery": _gallery(summary, lesions, cases_rows, cases),
        "run_record": _run_record(predictions, cases_rows),
    }


def _table_row(name: str, group: Row) -> Row:
    fp = group["false_positives_per_case"]
    return {"name": name, "n_cases": group["n_cases"], "n_lesions": group["n_lesions"],
            "dice": format_mean_sd(group, "dice"),
            "precision": format_mean_sd(group, "precision"),
            "recall": format_mean_sd(group, "recall"), "detection": format_detection(group),
            "fp": "-" if fp is None else f"{fp:.2f}"}


def _gallery(summary: Row, lesions: list[Row], case_rows: list[Row], count: int) -> list[Row]:
    """Overlays of up to `count` cases: those with a missed lesion first, then by id."""
    if count <= 0:
        return []
    manifest = Path(summary["manifest"])
    if not manifest.is_file():
        logger.warning("%s is gone: no case pictures", manifest)
        return []
    rows = {r.case_id: r for r in read_manifest(manifest)}
    missed_by_case: dict[str, list[int]] = {}
    for lesion in lesions:
        if lesion["detected"] != "True":
            missed_by_case.setdefault(lesion["case_id"], []).append(int(lesion["lesion_id"]))
    order = sorted((c["case_id"] for c in case_rows),
                   key=lambda case_id: (case_id not in missed_by_case, case_id))
    items = []
    for case_id in order[:count]:
        row = rows.get(case_id)
        prediction = Path(summary["predictions"]) / case_id / "lesions.nii.gz"
        if row is None or row.lesion_mask is None or not prediction.is_file():
            continue
        items.append(_overlay(row, prediction, missed_by_case.get(case_id, [])))
    return items


def _overlay(row: Any, prediction_path: Path, missed: list[int]) -> Row:
    ct = read_image(row.image)
    reference = lesion_ids(read_image(row.lesion_mask).array, ct.spacing,
                           min_volume_mm3=MIN_LESION_VOLUME_MM3)
    prediction = read_image(prediction_path).array
    measured = measure_lesions(reference, ct.spacing)
    if missed:
        z = measured[missed[0]].diameter_slice
    elif measured:  # the largest lesion (the user's ids need not start at 1)
        z = max(measured.values(), key=lambda m: (m.voxels, -m.label)).diameter_slice
    else:
        predicted = measure_lesions(prediction.astype(np.int64), ct.spacing)
        z = predicted[1].diameter_slice if predicted else ct.shape[0] // 2
    centres = []
    for lesion_id in missed:
        rows_, columns = np.nonzero(reference[z] == lesion_id)
        if rows_.size:
            centres.append((float(rows_.mean()), float(columns.mean())))
    caption = f"{row.case_id}, slice {z}"
    if missed:
        caption += f": {len(missed)} missed lesion(s)"
    uri = case_overlay(ct.array[z], reference[z], prediction[z], centres,
                       ct.spacing[1] / ct.spacing[2], caption)
    return {"uri": uri, "alt": f"CT slice of {row.case_id} with lesion contours",
            "caption": caption}


def _run_record(predictions: Path, case_rows: list[Row]) -> list[tuple[str, str]]:
    """Models, threshold and versions from the first case's prediction record."""
    for case in case_rows:
        path = predictions / case["case_id"] / "run.json"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            out = [("threshold (first case)", json.dumps(record.get("threshold"))),
                   ("settings", json.dumps(record.get("settings")))]
            for task, model in record.get("models", {}).items():
                trained = model.get("trained", {})
                out.append((f"{task} model", f"{model.get('arch')} "
                            f"{json.dumps(model.get('options'))}, best epoch "
                            f"{trained.get('best_epoch')}, commit {trained.get('git_commit')}"))
            out.append(("versions", json.dumps(record.get("versions"))))
            return out
    return []
