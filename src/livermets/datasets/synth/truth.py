"""Ground truth: per-lesion measurements on the written masks, a patient's truth.json
entry with lesion links and responses, and the RECIST-like response."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from livermets.datasets.synth.plan import PatientPlan
from livermets.datasets.synth.render import SynthCase
from livermets.io.volume import Geometry
from livermets.measure import LesionMeasurement, measure_lesions

#: Lesions with a longest axial diameter below this are "small", others "large" (mm).
SIZE_THRESHOLD_MM = 20.0


def _lesion_truth(measure: LesionMeasurement, geometry: Geometry) -> dict[str, Any]:
    lps = geometry.index_to_physical(measure.centroid_index)
    return {
        "id": measure.label,
        "volume_ml": round(measure.volume_ml, 4),
        "longest_axial_diameter_mm": round(measure.longest_diameter_mm, 3),
        "perpendicular_diameter_mm": round(measure.perpendicular_diameter_mm, 3),
        "diameter_slice": measure.diameter_slice,
        "centroid_lps_mm": [round(float(v), 3) for v in lps],
        "centroid_index_zyx": [round(v, 3) for v in measure.centroid_index],
        "size_group": "small" if measure.longest_diameter_mm < SIZE_THRESHOLD_MM else "large",
    }


def _change(before: float, after: float | None) -> str:
    """Per-lesion response from the longest diameter (RECIST-like thresholds)."""
    if after is None:
        return "vanished"
    change = (after - before) / before
    return "decreased" if change <= -0.3 else "increased" if change >= 0.2 else "stable"


def recist_response(baseline_mm: Sequence[float], followup_mm: Sequence[float | None],
                    new_lesions: int) -> dict[str, Any]:
    """RECIST 1.1-like category from the longest diameters of the same lesions.

    `baseline_mm[i]` and `followup_mm[i]` are lesion i's longest diameter at baseline and
    follow-up (None = vanished, counted as 0 mm). Targets: the (at most 2, the RECIST per-organ
    limit; all lesions are hepatic) largest baseline lesions with a diameter >= 10 mm. CR: every
    baseline lesion vanished and no new lesion. PD: a new lesion, or the target sum grew by
    >= 20% and >= 5 mm. PR: the target sum fell by >= 30%. SD otherwise.
    """
    order = sorted(range(len(baseline_mm)), key=lambda i: -baseline_mm[i])
    targets = [i for i in order if baseline_mm[i] >= 10.0][:2]
    before = float(sum(baseline_mm[i] for i in targets))
    after = float(sum(followup_mm[i] or 0.0 for i in targets))
    change = (after - before) / before if before > 0 else 0.0
    if all(v is None for v in followup_mm) and new_lesions == 0:
        category = "CR"
    elif new_lesions > 0 or (change >= 0.2 and after - before >= 5.0):
        category = "PD"
    elif change <= -0.3:
        category = "PR"
    else:
        category = "SD"
    return {"recist_category": category, "target_lesion_indices": targets,
            "sum_diameters_baseline_mm": round(before, 3),
            "sum_diameters_followup_mm": round(after, 3),
            "sum_change_pct": round(100.0 * change, 2), "new_lesions": new_lesions}


def _patient_truth(plan: PatientPlan, cases: dict[str, SynthCase]) -> dict[str, Any]:
    """truth.json entry of one patient (measurements from the arrays that were written)."""
    spacing = plan.geometry.spacing
    measured = {tp: measure_lesions(case.lesions.array, spacing) for tp, case in cases.items()}
    label_of = {tp: {key: label for label, key in case.lesion_keys.items()}
                for tp, case in cases.items()}
    by_key = {lesion.key: lesion for lesion in plan.lesions}
    timepoints: dict[str, Any] = {}
    for tp, case in cases.items():
        other = "tp1" if tp == "baseline" else "baseline"
        lesions = []
        for label, key in case.lesion_keys.items():
            lesion, look = by_key[key], by_key[key].look(tp)
            assert look is not None
            entry = _lesion_truth(measured[tp][label], plan.geometry)
            entry.update(necrotic=look.necrosis > 0, calcified=look.calcified, event=lesion.event)
            entry[f"{other}_id"] = label_of[other].get(key)
            lesions.append(entry)
        timepoints[tp] = {
            "image": f"{plan.patient_id}/{tp}/ct.nii.gz",
            "liver_mask": f"{plan.patient_id}/{tp}/liver.nii.gz",
            "lesion_mask": f"{plan.patient_id}/{tp}/lesions.nii.gz",
            "split": plan.splits[tp],
            "geometry": plan.geometry.to_json(),
            "pose": {"rotation_deg": plan.poses[tp].rotation_deg,
                     "translation_mm": list(plan.poses[tp].translation_mm)},
            "liver_volume_ml": round(float(case.liver.array.sum()) * plan.geometry.voxel_volume_ml,
                                     2),
            "lesions": lesions,
        }
    _add_responses(timepoints, measured)
    base, follow = plan.poses["baseline"], plan.poses["tp1"]
    transform = follow.matrix @ np.linalg.inv(base.matrix)
    return {
        "center": plan.center,
        "scenario": plan.scenario,
        "noise_sd_hu": round(plan.noise_sd_hu, 2),
        "tp1_from_baseline": {
            "rotation_deg": follow.rotation_deg,
            "rotation_centre_lps_mm": list(base.translation_mm),
            "translation_mm": list(np.subtract(follow.translation_mm, base.translation_mm)),
            "matrix": np.round(transform, 6).tolist(),
        },
        "timepoints": timepoints,
        "response": _patient_response(timepoints),
    }


def _add_responses(timepoints: dict[str, Any], measured: dict[str, dict[int, LesionMeasurement]]
                   ) -> None:
    """Per-lesion response and diameter change, both ways."""
    for entry in timepoints["baseline"]["lesions"]:
        after_id = entry["tp1_id"]
        after = None if after_id is None else measured["tp1"][after_id].longest_diameter_mm
        entry["response"] = _change(entry["longest_axial_diameter_mm"], after)
    for entry in timepoints["tp1"]["lesions"]:
        before_id = entry["baseline_id"]
        if before_id is None:
            entry["response"] = "new"
            continue
        before = measured["baseline"][before_id].longest_diameter_mm
        entry["response"] = _change(before, entry["longest_axial_diameter_mm"])
        entry["diameter_change_pct"] = round(
            100.0 * (entry["longest_axial_diameter_mm"] - before) / before, 2)


def _patient_response(timepoints: dict[str, Any]) -> dict[str, Any]:
    base = timepoints["baseline"]["lesions"]
    follow = {entry["id"]: entry for entry in timepoints["tp1"]["lesions"]}
    before = [entry["longest_axial_diameter_mm"] for entry in base]
    after = [None if entry["tp1_id"] is None
             else follow[entry["tp1_id"]]["longest_axial_diameter_mm"] for entry in base]
    new = sum(1 for entry in follow.values() if entry["baseline_id"] is None)
    response = recist_response(before, after, new)
    response["target_lesion_ids"] = [base[i]["id"] for i in response.pop("target_lesion_indices")]
    volume_before = sum(entry["volume_ml"] for entry in base)
    volume_after = sum(entry["volume_ml"] for entry in follow.values())
    response["volume_baseline_ml"] = round(volume_before, 3)
    response["volume_followup_ml"] = round(volume_after, 3)
    response["volume_change_pct"] = round(100.0 * (volume_after - volume_before)
                                          / volume_before, 2)
    return response
