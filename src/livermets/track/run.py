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
from livermets.io.manifest import check_mask_values, read_manifest, timepoint_order
from livermets.io.safe_paths import (
    check_not_input,
    check_out_folder,
    check_replaceable,
    child_folder,
    make_folder,
    mark_as_ours,
)
from livermets.io.volume import Volume
from livermets.labels import lesion_ids
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

#: A patient folder written before the `.livermets` marker: its record and two of its keys.
LEGACY_TRACK = ("response.json", ("recist_category", "registration"))


@dataclass(frozen=True)
class TimepointInput:
    """One time point's files: the lesion instance (or binary) mask, the liver mask, and the CT.

    The CT is optional. Given, the masks must lie on its grid, its DICOM PatientID is checked
    against the other time point's, and a missing liver mask is segmented from it by a liver
    model.
    """

    lesions: Path
    liver: Path | None = None
    image: Path | None = None


@dataclass(frozen=True)
class _Timepoint:
    lesions: Volume
    liver: Volume
    patient: dict[str, str]  # DICOM tag -> value, for the tags of `_PATIENT_TAGS` present


def _read_timepoint(point: TimepointInput, what: str, segment: _LiverSegmenter
                    ) -> _Timepoint:
    lesions = read_image(point.lesions)
    ct = read_image(point.image) if point.image is not None else None
    if point.liver is not None:
        liver = read_image(point.liver)
    elif ct is not None:
        liver = ct.with_array(segment(ct))
    else:
        raise InputError(f"give the {what} liver mask, or the {what} CT so that a liver model "
                         "can segment it")
    for name, mask in (("liver", liver), ("lesion", lesions)):
        check_mask_values(mask.array, f"the {what} {name} mask", liver=name == "liver")
        reference, against = (ct, "CT") if ct is not None else (lesions, "lesion mask")
        difference = reference.geometry.difference(mask.geometry)
        if difference is not None:
            raise InputError(f"the {what} {name} mask is not on the {what} {against}'s grid "
                             f"({difference})")
    patient = {tag: ct.metadata[key] for tag, key in _PATIENT_TAGS
               if ct is not None and ct.metadata.get(key)}
    return _Timepoint(lesion_labels(lesions, what), liver, patient)


def lesion_labels(lesions: Volume, what: str = "") -> Volume:
    """The lesion ids `track` uses: an instance map keeps its ids (the user's lesion numbers);
    a binary mask is split into components numbered by decreasing volume (int32)."""
    array = lesions.array
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        name = f"the {what} lesion mask" if what else "the lesion mask"
        raise InputError(f"{name} holds {array.dtype} values; give a binary mask or an "
                         "instance label map")
    return lesions.with_array(lesion_ids(array, lesions.spacing))


#: DICOM tags naming the patient, in the order they are compared (IRCADb has no PatientID).
_PATIENT_TAGS = (("PatientID", "patient_id"), ("PatientName", "patient_name"))


def _check_same_patient(base: _Timepoint, follow: _Timepoint) -> None:
    """InputError when the two CTs name different patients (first tag both carry)."""
    for tag, _ in _PATIENT_TAGS:
        if tag in base.patient and tag in follow.patient:
            if base.patient[tag] != follow.patient[tag]:
                raise InputError(f"the baseline CT is of patient {base.patient[tag]!r} and the "
                                 f"follow-up CT of patient {follow.patient[tag]!r} (DICOM "
                                 f"{tag}); give two scans of one patient")
            return


class _LiverSegmenter:
    """Segments CTs given without a liver mask; loads `liver_model` (default: the shipped
    starter model) on first use only, and once for both time points."""

    def __init__(self, liver_model: PathLike | None) -> None:
        self.liver_model = liver_model
        self._model: Any = None

    def __call__(self, ct: Volume) -> np.ndarray:
        from livermets.infer.liver import segment_liver
        from livermets.models.saved import load_model
        from livermets.models.starter import starter_model_path

        if self._model is None:
            self._model = load_model(self.liver_model or starter_model_path("liver"),
                                     expected_task="liver")
        return segment_liver(self._model, ct.array, spacing=ct.spacing)


def track_patient(baseline: TimepointInput, followup: TimepointInput, out: PathLike, *,
                  tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                  earlier_sums_mm: tuple[float, ...] = (),
                  liver_model: PathLike | None = None,
                  deformable: bool = False) -> dict[str, Any]:
    """Match and judge one patient; write its folder; return the response dict.

    `earlier_sums_mm`: target sums of earlier follow-ups (for RECIST's nadir); `liver_model`:
    segments a CT given without its liver mask (default: the starter model); `deformable`:
    add the B-spline step to the registration.
    """
    folder = Path(out)
    check_out_folder(folder)
    check_replaceable(folder, LEGACY_TRACK)
    check_not_input(folder, [p for point in (baseline, followup)
                             for p in (point.lesions, point.liver, point.image) if p is not None],
                    "the patient folder")
    segment = _LiverSegmenter(liver_model)
    base = _read_timepoint(baseline, "baseline", segment)
    follow = _read_timepoint(followup, "follow-up", segment)
    _check_same_patient(base, follow)
    registration = register_livers(base.liver, follow.liver, deformable=deformable)
    moved = resample_labels(follow.lesions, base.lesions, registration.transform)
    links = link_lesions(base.lesions.array, moved.array, base.lesions.spacing,
                         tolerance_mm=tolerance_mm)
    base_measures = measure_lesions(base.lesions.array, base.lesions.spacing)
    follow_measures = measure_lesions(follow.lesions.array, follow.lesions.spacing)
    result = response(links, base_measures, follow_measures,
                      earlier_sums_mm=earlier_sums_mm) | {
        "registration": {"liver_dice_before": registration.liver_dice_before,
                         "liver_dice_after": registration.liver_dice_after,
                         "deformable": deformable, "transform": "transform.tfm"},
        "matching_tolerance_mm": tolerance_mm,
        "baseline": _describe(baseline), "followup": _describe(followup)}
    make_folder(folder)
    mark_as_ours(folder, "tracking")
    write_csv_atomic(folder / "matches.csv", match_rows(links, base_measures, follow_measures),
                     MATCH_COLUMNS)
    with atomic_path(folder / "transform.tfm") as tmp:
        sitk.WriteTransform(registration.transform, str(tmp))
    write_text_atomic(folder / "response.json", json.dumps(result, indent=2) + "\n")
    return result


def _describe(point: TimepointInput) -> dict[str, str | None]:
    return {"lesions": str(point.lesions),
            "liver": str(point.liver) if point.liver else None,  # None: segmented from the CT
            "image": str(point.image) if point.image else None}


def track_manifest(manifest: PathLike, out: PathLike, *,
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                   predictions: Path | None = None, deformable: bool = False
                   ) -> dict[str, Any]:
    """Every patient with a baseline and follow-ups (each with lesion and liver masks).

    The masks are the manifest's columns, or with `predictions` the `livermets predict`
    outputs `predictions/<case_id>/{lesions,liver}.nii.gz`. Each follow-up is compared with
    the baseline: the first (tp1, else the lowest tpN) in `OUT/<patient>/`, later ones in
    `OUT/<patient>/<tpN>/`, their RECIST PD judged against the nadir of the earlier sums. A
    patient that fails (e.g. registration) is reported and the others go on.
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
        inputs, missing = {}, []
        for timepoint in ("baseline", *followups):
            row = rows[timepoint]
            if predictions is not None:
                point = TimepointInput(predictions / row.case_id / "lesions.nii.gz",
                                       predictions / row.case_id / "liver.nii.gz", row.image)
                missing += [str(p) for p in (point.lesions, point.liver)
                            if p is None or not p.is_file()]
            else:
                missing += [f"{row.case_id} {c}" for c in ("lesion_mask", "liver_mask")
                            if getattr(row, c) is None]
                point = TimepointInput(row.lesion_mask, row.liver_mask, row.image)
            inputs[timepoint] = point
        if missing:
            results[patient] = {"status": "skipped", "reason": "missing " + ", ".join(missing)}
            continue
        results[patient] = _track_followups(patient, inputs, followups, Path(out),
                                            tolerance_mm, deformable)
    return results


def check_anything_tracked(results: dict[str, Any], manifest: PathLike) -> None:
    """`InputError` when `track_manifest` skipped every patient (nothing was written)."""
    if results and all(result["status"] == "skipped" for result in results.values()):
        patient, first = next(iter(results.items()))
        raise InputError(f"{manifest}: no patient has a baseline and a follow-up with lesion "
                         f"and liver masks (patient {patient}: {first['reason']}); nothing "
                         "to track")


def _track_followups(patient: str, inputs: dict[str, TimepointInput], followups: list[str],
                     out: Path, tolerance_mm: float, deformable: bool) -> dict[str, Any]:
    """Baseline against each follow-up in turn; the first follow-up's summary, later ones
    under `later`."""
    sums: list[float] = []
    summaries: dict[str, dict[str, Any]] = {}
    for index, timepoint in enumerate(followups):
        folder = child_folder(out, patient, "patient id")
        if index > 0:
            folder = child_folder(folder, timepoint, "timepoint")
        try:
            answer = track_patient(inputs["baseline"], inputs[timepoint], folder,
                                   tolerance_mm=tolerance_mm, earlier_sums_mm=tuple(sums),
                                   deformable=deformable)
        except InputError as error:
            logger.error("%s %s: %s", patient, timepoint, error)
            summaries[timepoint] = {"status": "failed", "error": str(error)}
            continue
        sums.append(answer["sum_diameters_followup_mm"])
        summaries[timepoint] = {"status": "done", "followup": timepoint,
                                "folder": str(folder),
                                "recist_category": answer["recist_category"],
                                "sum_change_pct": answer["sum_change_pct"],
                                "volume_change_pct": answer["volume_change_pct"],
                                "liver_dice_after": answer["registration"]["liver_dice_after"]}
    first, *later = followups
    result = dict(summaries[first])
    if later:
        result["later"] = {tp: summaries[tp] for tp in later}
    return result
