"""`livermets evaluate`: every manifest row with a reference against a prediction folder.

Writes `EVAL/lesions.csv`, `false_positives.csv`, `cases.csv`, `summary.json` and `tables.md`
(each atomically; `summary.json` last, so its presence means a finished evaluation). Rows
without a `lesion_mask` are skipped and listed in `summary.json`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livermets.errors import InputError
from livermets.evaluate.cases import (
    CASE_COLUMNS,
    FALSE_POSITIVE_COLUMNS,
    LESION_COLUMNS,
    EvaluationSettings,
    evaluate_case,
    size_group,
)
from livermets.evaluate.summary import comparisons, summarise, tables_markdown
from livermets.io.atomic import write_csv_atomic, write_text_atomic
from livermets.io.manifest import read_manifest, validate_manifest
from livermets.io.safe_paths import check_not_input, check_out_folder, make_folder
from livermets.types import PathLike

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
#: The files an evaluation writes, `SUMMARY` last.
OUTPUT_FILES = ("lesions.csv", "false_positives.csv", "cases.csv", "tables.md", SUMMARY)


@dataclass(frozen=True)
class EvaluationResult:
    """Where the files are, and the summary's groups."""

    out: Path
    groups: dict[str, dict[str, Any]]
    evaluated: int
    skipped: list[str]


def evaluate_manifest(manifest: PathLike, predictions: PathLike, out: PathLike,
                      settings: EvaluationSettings | None = None, *,
                      overwrite: bool = False) -> EvaluationResult:
    """Evaluate every row of `manifest` that has a lesion_mask against `predictions`."""
    settings = settings or EvaluationSettings()
    out_dir, prediction_dir = Path(out), Path(predictions)
    if (out_dir / SUMMARY).exists() and not overwrite:
        raise InputError(f"{out_dir} holds an evaluation; use --overwrite to replace it")
    if (not overwrite and not (out_dir / SUMMARY).exists()
            and any((out_dir / n).exists() for n in OUTPUT_FILES)):
        raise InputError(f"{out_dir} holds files named like an evaluation's but no {SUMMARY} "
                         "(not a finished evaluation); choose another --out, or --overwrite "
                         "to replace them")
    if not prediction_dir.is_dir():
        raise InputError(f"{prediction_dir}: no such predictions folder")
    check_out_folder(out_dir)
    check_not_input(out_dir, [prediction_dir], "the evaluation folder", holding=False)
    rows = read_manifest(manifest)
    masks = [p for r in rows for p in (r.liver_mask, r.lesion_mask) if p is not None]
    for name in OUTPUT_FILES:
        check_not_input(out_dir / name, [Path(manifest), *masks], "the output file",
                        holding=False)
    validate_manifest([r for r in rows if r.lesion_mask is not None], columns=("lesion_mask",))
    lesions, false_positives, cases, skipped = [], [], [], []
    for row in rows:
        if row.lesion_mask is None:
            skipped.append(row.case_id)
            continue
        result = evaluate_case(row, prediction_dir, settings)
        lesions += result.lesions
        false_positives += result.false_positives
        cases.append(result.case)
        logger.info("%s: %d/%d lesions detected, %d false positive(s)", row.case_id,
                    result.case["n_detected"], result.case["n_reference"],
                    result.case["n_false_positives"])
    if not cases:
        raise InputError(f"{manifest}: no row has a lesion_mask; nothing to evaluate")
    groups = summarise(lesions, cases, false_positives,
                       lambda mm: size_group(mm, settings.small_mm), settings.size_bins_mm)
    tests = comparisons(lesions)
    make_folder(out_dir)
    write_csv_atomic(out_dir / "lesions.csv", lesions, LESION_COLUMNS)
    write_csv_atomic(out_dir / "false_positives.csv", false_positives, FALSE_POSITIVE_COLUMNS)
    write_csv_atomic(out_dir / "cases.csv", cases, CASE_COLUMNS)
    write_text_atomic(out_dir / "tables.md", tables_markdown(groups, settings.small_mm, tests))
    summary = {"settings": asdict(settings), "manifest": str(Path(manifest).resolve()),
               "predictions": str(prediction_dir.resolve()), "evaluated_cases": len(cases),
               "skipped_cases": skipped, "groups": groups, "comparisons": tests}
    write_text_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return EvaluationResult(out_dir, groups, len(cases), skipped)
