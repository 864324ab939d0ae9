"""Response between baseline and follow-up: RECIST 1.1 restricted to the liver, and volumetric.

RECIST 1.1 (Eisenhauer et al. 2009), as far as it applies to liver-only assessment:

- Target lesions: up to `max_targets` (2, the per-organ limit) measurable lesions (longest
  axial diameter >= 10 mm) with the largest diameters at baseline.
- The sum of their diameters at baseline and follow-up. A target that disappeared counts 0 mm;
  a target that split counts the sum of its parts; one merged into another counts 0 (the
  merged lesion's diameter is the other target's).
- CR: every baseline lesion disappeared and no new lesion. PD: a new lesion, or the sum grew by
  >= 20% and >= 5 mm over the nadir: the smallest sum so far (baseline and earlier follow-ups;
  the baseline alone at the first follow-up). PR: the sum fell by >= 30% from baseline. SD
  otherwise.
- Out of scope: lymph nodes (short axis), non-target lesions' unequivocal progression, and
  confirmation scans.

Volumetric: the total lesion volume change; vCR when every lesion disappeared and none is
new, vPD for a new lesion or a change >= +73%, vPR for <= -65% (the volume changes equivalent
to RECIST's diameter thresholds for a sphere: 0.7^3 - 1 and 1.2^3 - 1), vSD otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livermets.measure import LesionMeasurement
from livermets.track.matching import LesionLink


@dataclass(frozen=True)
class ResponseSettings:
    """RECIST thresholds; the defaults are RECIST 1.1's."""

    max_targets: int = 2
    measurable_mm: float = 10.0
    pr_change: float = -0.30
    pd_change: float = 0.20
    pd_absolute_mm: float = 5.0
    volume_pr_change: float = -0.65
    volume_pd_change: float = 0.73


def response(links: list[LesionLink], baseline: dict[int, LesionMeasurement],
             followup: dict[int, LesionMeasurement],
             settings: ResponseSettings | None = None, *,
             earlier_sums_mm: tuple[float, ...] = ()) -> dict[str, Any]:
    """The response.json content for matched lesions (see the module docstring).

    `earlier_sums_mm`: the target sums (mm) of earlier follow-ups of the same baseline, for the
    nadir; empty at the first follow-up.
    """
    settings = settings or ResponseSettings()
    measurable = sorted((b for b in baseline.values()
                         if b.longest_diameter_mm >= settings.measurable_mm),
                        key=lambda m: (-m.longest_diameter_mm, m.label))
    targets = [m.label for m in measurable[: settings.max_targets]]
    before = sum(baseline[t].longest_diameter_mm for t in targets)
    after = 0.0
    for target in targets:
        for link in links:
            if link.baseline_id != target or link.followup_id is None:
                continue
            if link.status in ("persistent", "split"):
                after += followup[link.followup_id].longest_diameter_mm
    new = sum(1 for link in links if link.status == "new")
    vanished_all = bool(baseline) and all(
        link.status == "disappeared" for link in links if link.baseline_id is not None)
    change = (after - before) / before if before > 0 else 0.0
    nadir = min((before, *earlier_sums_mm))
    grew = (after - nadir) / nadir if nadir > 0 else (float("inf") if after > 0 else 0.0)
    if vanished_all and new == 0:
        category = "CR"
    elif new > 0 or (before > 0 and grew >= settings.pd_change
                     and after - nadir >= settings.pd_absolute_mm):
        category = "PD"
    elif before > 0 and change <= settings.pr_change:
        category = "PR"
    else:
        category = "SD"
    volume_before = sum(m.volume_ml for m in baseline.values())
    volume_after = sum(m.volume_ml for m in followup.values())
    volume_change = ((volume_after - volume_before) / volume_before if volume_before > 0
                     else 0.0)
    if vanished_all and new == 0:
        volumetric = "vCR"
    elif new > 0 or volume_change >= settings.volume_pd_change:
        volumetric = "vPD"
    elif volume_change <= settings.volume_pr_change:
        volumetric = "vPR"
    else:
        volumetric = "vSD"
    return {
        "recist_category": category, "target_lesions": targets,
        "sum_diameters_baseline_mm": round(before, 2),
        "sum_diameters_followup_mm": round(after, 2),
        "sum_change_pct": round(100.0 * change, 2) if before > 0 else None,
        "nadir_sum_mm": round(nadir, 2),
        "new_lesions": new,
        "volume_baseline_ml": round(volume_before, 4), "volume_followup_ml": round(volume_after, 4),
        "volume_change_pct": round(100.0 * volume_change, 2) if volume_before > 0 else None,
        "volumetric_category": volumetric,
        "settings": settings.__dict__,
    }
