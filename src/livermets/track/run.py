"""`livermets track`: baseline vs follow-up per patient, from files or a manifest.

Per patient: align the follow-up to the baseline by the livers (`register`), bring the
follow-up lesions onto the baseline grid, link the lesions (`matching`), measure each lesion on
its own CT's grid, and judge the response (`response`). Writes `OUT/<patient_id>/matches.csv`,
`response.json` (with the registration's liver Dice before and after) and `transform.tfm`
(SimpleITK; maps baseline points to follow-up points), all atomically. Lesion ids are the
masks' own labels when they are instance maps; a binary mask's components are numbered by
decreasing volume.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from livermets.errors import InputError
from livermets.io.atomic import atomic_path, write_csv_atomic, write_text_atomic
from livermets.io.image import read_image
from livermets.io.manifest import read_manifest, timepoint_order
from livermets.io.volume import Volume
from livermets.labels import instance_labels
from livermets.measure import measure_lesions
from livermets.track.matching import (
    DEFAULT_TOLERANCE_MM,
    MATCH_COLUMNS,
    link_lesions,
    match_rows,
)
from livermets.track.register import register_livers, resample_labels
from livermets.track.response import response
from livermets.types import PathLike

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimepointInput:
    """One time point's files: the lesion instance (or binary) mask and the liver mask."""

    lesions: Path
    liver: Path


def _read_pair(point: TimepointInput, what: str) -> tuple[Volume, Volume]:
    lesions, liver = read_image(point.lesions), read_image(point.liver)
    difference = lesions.geometry.difference(liver.geometry)
    if difference is not None:
        raise InputError(f"the {what} lesion and liver masks are on different grids "
                         f"({difference})")
    array = lesions.array
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise InputError(f"the {what} lesion mask holds {array.dtype} values; give a binary "
                         "mask or an instance label map")
    # An instance map keeps its ids (the user's lesion numbers); a binary mask is split into
    # components numbered by decreasing volume.
    labels = (array.astype(np.int32) if array.size and array.max() > 1
              else instance_labels(array, lesions.spacing).astype(np.int32))
    return lesions.with_array(labels), liver


def track_patient(baseline: TimepointInput, followup: TimepointInput, out: PathLike, *,
                  tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict[str, Any]:
    """Match and judge one patient; write its folder; return the response dict."""
    base_lesions, base_liver = _read_pair(baseline, "baseline")
    follow_lesions, follow_liver = _read_pair(followup, "follow-up")
    registration = register_livers(base_liver, follow_liver)
    moved = resample_labels(follow_lesions, base_lesions, registration.transform)
    links = link_lesions(base_lesions.array, moved.array, base_lesions.spacing,
                         tolerance_mm=tolerance_mm)
    base_measures = measure_lesions(base_lesions.array, base_lesions.spacing)
    follow_measures = measure_lesions(follow_lesions.array, follow_lesions.spacing)
    result = response(links, base_measures, follow_measures) | {
        "registration": {"liver_dice_before": registration.liver_dice_before,
                         "liver_dice_after": registration.liver_dice_after,
                         "transform": "transform.tfm"},
        "matching_tolerance_mm": tolerance_mm,
        "baseline": {"lesions": str(baseline.lesions), "liver": str(baseline.liver)},
        "followup": {"lesions": str(followup.lesions), "liver": str(followup.liver)}}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(folder / "matches.csv", match_rows(links, base_measures, follow_measures),
                     MATCH_COLUMNS)
    with atomic_path(folder / "transform.tfm") as tmp:
        sitk.WriteTransform(registration.transform, str(tmp))
    write_text_atomic(folder / "response.json", json.dumps(result, indent=2) + "\n")
    return result


def track_manifest(manifest: PathLike, out: PathLike, *,
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                   predictions: Path | None = None) -> dict[str, Any]:
    """Every patient with a baseline and a follow-up (both with lesion and liver masks).

    The masks are the manifest's columns, or with `predictions` the `livermets predict`
    outputs `predictions/<case_id>/{lesions,liver}.nii.gz`. The first follow-up (tp1, else the
    lowest tpN) is compared with the baseline. A patient that fails (e.g. registration) is
    reported and the others go on.
    """
    by_patient: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in read_manifest(manifest):
        by_patient[row.patient_id][row.timepoint] = row
    results: dict[str, Any] = {}
    for patient, rows in sorted(by_patient.items()):
        followups = sorted((tp for tp in rows if tp != "baseline"), key=timepoint_order)
        if "baseline" not in rows or not followups:
            results[patient] = {"status": "skipped", "reason": "no baseline and follow-up pair"}
            continue
        pair = [rows["baseline"], rows[followups[0]]]
        if predictions is not None:
            inputs = [TimepointInput(predictions / r.case_id / "lesions.nii.gz",
                                     predictions / r.case_id / "liver.nii.gz") for r in pair]
            missing = [str(p) for i in inputs for p in (i.lesions, i.liver) if not p.is_file()]
        else:
            missing = [f"{r.case_id} {c}" for r in pair for c in ("lesion_mask", "liver_mask")
                       if getattr(r, c) is None]
            inputs = [TimepointInput(r.lesion_mask, r.liver_mask) for r in pair]
        if missing:
            results[patient] = {"status": "skipped", "reason": "missing " + ", ".join(missing)}
            continue
        first, second = inputs
        try:
            answer = track_patient(first, second, Path(out) / patient,
                                   tolerance_mm=tolerance_mm)
        except InputError as error:
            logger.error("%s: %s", patient, error)
            results[patient] = {"status": "failed", "error": str(error)}
            continue
        results[patient] = {"status": "done", "followup": followups[0],
                            "recist_category": answer["recist_category"],
                            "sum_change_pct": answer["sum_change_pct"],
                            "volume_change_pct": answer["volume_change_pct"],
                            "liver_dice_after": answer["registration"]["liver_dice_after"]}
    return results
