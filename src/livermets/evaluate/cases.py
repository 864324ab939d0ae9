"""Evaluate one case: its reference masks (from the manifest) against a prediction folder.

Per reference lesion a row of `LESION_COLUMNS`; per false-positive lesion a row of
`FALSE_POSITIVE_COLUMNS`; per case a row of `CASE_COLUMNS`. Lesions are the 26-connected
components (or the instances of an instance map) of at least `MIN_LESION_VOLUME_MM3`, the
same definition as on import and in `predict`. Reference lesion ids are the user's: an instance
map keeps its own labels, a binary mask's components are numbered by decreasing volume
(`labels.lesion_ids`, as in `track` and `radiomics`).

Case-level policies, for a reference without any lesion (e.g. all vanished after therapy):
no lesion rows; its false positives still count; the voxel-level lesion Dice is 1.0 when the
prediction is empty too (nothing to find, nothing found) and 0.0 otherwise. The liver Dice is
given when both the manifest's `liver_mask` and the predicted `liver.nii.gz` exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from livermets.datasets.common import MIN_LESION_VOLUME_MM3
from livermets.errors import InputError
from livermets.evaluate.matching import DETECTION_DICE, match_lesions
from livermets.io.image import read_image
from livermets.io.manifest import ManifestRow
from livermets.io.volume import Volume
from livermets.labels import lesion_ids
from livermets.measure import measure_lesions

SMALL_MM = 20.0

LESION_COLUMNS = ("case_id", "patient_id", "center", "timepoint", "set", "lesion_id",
                  "diameter_mm", "volume_ml", "size_group", "dice", "precision", "recall",
                  "detected")
FALSE_POSITIVE_COLUMNS = ("case_id", "lesion_id", "volume_ml", "diameter_mm")
CASE_COLUMNS = ("case_id", "patient_id", "center", "timepoint", "set", "liver_dice",
                "lesion_dice_voxel", "n_reference", "n_predicted", "n_detected",
                "n_false_positives")


@dataclass(frozen=True)
class EvaluationSettings:
    """`detection_dice`: detected when Dice > it; `small_mm`: lesions with a longest axial
    diameter below it are `small`, the others `big` (the paper's 20 mm); `size_bins_mm`:
    finer bins for summary.json."""

    detection_dice: float = DETECTION_DICE
    small_mm: float = SMALL_MM
    #: Optional finer size bins (mm edges) reported in summary.json, e.g. (10.0, 20.0).
    size_bins_mm: tuple[float, ...] = ()


@dataclass
class CaseEvaluation:
    """One case's rows (dicts keyed by the column tuples above)."""

    case: dict[str, Any]
    lesions: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)


def dice(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic], *, empty: float = 1.0
         ) -> float:
    """Voxel Dice of the foregrounds (> 0) of `a` and `b`; `empty` when both are empty."""
    x, y = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    return empty if total == 0 else 2 * int(np.count_nonzero(x & y)) / total


def mask_overlap(predicted: npt.NDArray[np.generic], reference: npt.NDArray[np.generic]
                 ) -> dict[str, float]:
    """Dice, precision and recall of the foregrounds (> 0) of `predicted` against `reference`,
    to 4 decimals (precision or recall 0 when its mask is empty)."""
    p, r = np.asarray(predicted) > 0, np.asarray(reference) > 0
    both = float(np.count_nonzero(p & r))
    return {"dice": round(dice(p, r), 4),
            "precision": round(both / max(1.0, float(np.count_nonzero(p))), 4),
            "recall": round(both / max(1.0, float(np.count_nonzero(r))), 4)}


def size_group(diameter_mm: float, small_mm: float = SMALL_MM) -> str:
    """`small` below `small_mm`, else `big`."""
    return "small" if diameter_mm < small_mm else "big"


def evaluate_case(row: ManifestRow, prediction_dir: Path,
                  settings: EvaluationSettings | None = None) -> CaseEvaluation:
    """Compare `row`'s reference lesion mask with `prediction_dir/<case_id>/lesions.nii.gz`.

    Raises `InputError` when the row has no lesion_mask, the prediction is missing, or the
    two are on different grids.
    """
    settings = settings or EvaluationSettings()
    if row.lesion_mask is None:
        raise InputError(f"{row.where}: no lesion_mask to evaluate against")
    folder = prediction_dir / row.case_id
    predicted_path = folder / "lesions.nii.gz"
    if not predicted_path.is_file():
        raise InputError(f"{predicted_path} not found; run `livermets predict` for "
                         f"{row.case_id} first")
    reference = read_image(row.lesion_mask)
    predicted = read_image(predicted_path)
    _same_grid(reference, predicted, f"{row.case_id}: the prediction")
    spacing = reference.spacing
    reference_labels = lesion_ids(reference.array, spacing,
                                  min_volume_mm3=MIN_LESION_VOLUME_MM3)
    predicted_labels = np.asarray(predicted.array)
    if not np.issubdtype(predicted_labels.dtype, np.integer):
        raise InputError(f"{predicted_path} is not an instance label map "
                         f"({predicted_labels.dtype})")
    match = match_lesions(reference_labels, predicted_labels, spacing)
    reference_geometry = measure_lesions(reference_labels, spacing)
    identity = {"case_id": row.case_id, "patient_id": row.patient_id, "center": row.center,
                "timepoint": row.timepoint, "set": row.split}
    lesions = []
    for score in match.scores:
        measured = reference_geometry[score.reference_id]
        lesions.append(identity | {
            "lesion_id": score.reference_id,
            "diameter_mm": round(measured.longest_diameter_mm, 2),
            "volume_ml": round(measured.volume_ml, 4),
            "size_group": size_group(measured.longest_diameter_mm, settings.small_mm),
            "dice": round(score.dice, 4), "precision": round(score.precision, 4),
            "recall": round(score.recall, 4),
            "detected": score.detected(settings.detection_dice)})
    predicted_geometry = measure_lesions(predicted_labels, spacing)
    false_positives = [{"case_id": row.case_id, "lesion_id": k,
                        "volume_ml": round(predicted_geometry[k].volume_ml, 4),
                        "diameter_mm": round(predicted_geometry[k].longest_diameter_mm, 2)}
                       for k in match.false_positive_ids]
    case = identity | {
        "liver_dice": _liver_dice(row, folder),
        "lesion_dice_voxel": round(dice(reference_labels, predicted_labels), 4),
        "n_reference": len(match.scores), "n_predicted": len(predicted_geometry),
        "n_detected": sum(bool(r["detected"]) for r in lesions),
        "n_false_positives": len(false_positives)}
    return CaseEvaluation(case, lesions, false_positives)


def _liver_dice(row: ManifestRow, folder: Path) -> float | None:
    predicted = folder / "liver.nii.gz"
    if row.liver_mask is None or not predicted.is_file():
        return None
    reference, prediction = read_image(row.liver_mask), read_image(predicted)
    _same_grid(reference, prediction, f"{row.case_id}: the predicted liver")
    return round(dice(reference.array, prediction.array), 4)


def _same_grid(reference: Volume, other: Volume, what: str) -> None:
    difference = reference.geometry.difference(other.geometry)
    if difference is not None:
        raise InputError(f"{what} is not on the reference's grid ({difference}); predict on "
                         "the manifest's image")
