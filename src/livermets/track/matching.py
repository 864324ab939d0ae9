"""Match the lesions of a baseline and a follow-up instance map on the same (aligned) grid.

The follow-up map must already be on the baseline's grid (after registration). The rule:

1. Candidate pairs: lesions that overlap (cost 1 - Dice of the pair, in [0, 1)), else lesions
   whose centroids lie within `tolerance_mm` (cost 1 + distance / tolerance, in (1, 2]: any
   overlap beats any distance).
2. One-to-one assignment of minimal total cost (`scipy.optimize.linear_sum_assignment`):
   matched pairs are `persistent`.
3. The rest: a follow-up lesion overlapping a baseline lesion already matched to another
   follow-up lesion is `split` (a part of it); a baseline lesion overlapping a follow-up lesion
   already matched to another baseline lesion is `merged` (into it); other baseline lesions are
   `disappeared`, other follow-up lesions `new`.

Pure numpy/scipy on arrays; `match_timepoints` returns one row per lesion with the contract's
`MATCH_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from livermets.measure import LesionMeasurement, measure_lesions
from livermets.types import Spacing

DEFAULT_TOLERANCE_MM = 15.0
MATCH_COLUMNS = ("baseline_lesion_id", "followup_lesion_id", "status", "baseline_diameter_mm",
                 "followup_diameter_mm", "diameter_change_pct", "baseline_volume_ml",
                 "followup_volume_ml", "volume_change_pct", "distance_mm")
_INFEASIBLE = 1e9


@dataclass(frozen=True)
class LesionLink:
    """One row of the matching: ids are None where the lesion is absent at that time point."""

    baseline_id: int | None
    followup_id: int | None
    status: str
    distance_mm: float | None


def link_lesions(baseline: npt.NDArray[np.integer], followup: npt.NDArray[np.integer],
                 spacing: Spacing, *, tolerance_mm: float = DEFAULT_TOLERANCE_MM
                 ) -> list[LesionLink]:
    """Links between the lesions of two instance maps (z, y, x) on the same grid (module rule).

    Rows: persistent pairs by baseline id, then disappeared/merged baseline lesions, then
    new/split follow-up lesions.
    """
    if baseline.shape != followup.shape:
        raise ValueError(f"baseline {baseline.shape} and follow-up {followup.shape} differ in "
                         "shape; resample the follow-up onto the baseline grid first")
    base = measure_lesions(baseline, spacing)
    follow = measure_lesions(followup, spacing)
    b_ids, f_ids = list(base), list(follow)
    overlap = _overlaps(baseline, followup)
    cost = np.full((len(b_ids), len(f_ids)), _INFEASIBLE)
    distance = np.zeros_like(cost)
    for i, b in enumerate(b_ids):
        for j, f in enumerate(f_ids):
            distance[i, j] = _distance_mm(base[b], follow[f])
            shared = overlap.get((b, f), 0)
            if shared:
                cost[i, j] = 1.0 - 2 * shared / (base[b].voxels + follow[f].voxels)
            elif distance[i, j] <= tolerance_mm:
                cost[i, j] = 1.0 + distance[i, j] / tolerance_mm
    links: list[LesionLink] = []
    matched_b: dict[int, int] = {}
    matched_f: dict[int, int] = {}
    if cost.size:
        rows, columns = linear_sum_assignment(cost)
        for i, j in zip(rows, columns, strict=True):
            if cost[i, j] < _INFEASIBLE:
                matched_b[b_ids[i]], matched_f[f_ids[j]] = f_ids[j], b_ids[i]
                links.append(LesionLink(b_ids[i], f_ids[j], "persistent",
                                        round(float(distance[i, j]), 2)))
    links.sort(key=lambda link: link.baseline_id or 0)
    for b in b_ids:
        if b in matched_b:
            continue
        into = [f for (bb, f) in overlap if bb == b and f in matched_f]
        links.append(LesionLink(b, into[0] if into else None,
                                "merged" if into else "disappeared", None))
    for f in f_ids:
        if f in matched_f:
            continue
        part_of = [b for (b, ff) in overlap if ff == f and b in matched_b]
        links.append(LesionLink(part_of[0] if part_of else None, f,
                                "split" if part_of else "new", None))
    return links


def match_rows(links: list[LesionLink], baseline: dict[int, LesionMeasurement],
               followup: dict[int, LesionMeasurement]) -> list[dict[str, object]]:
    """matches.csv rows (`MATCH_COLUMNS`) for `links`, with sizes and their changes.

    Changes are given for persistent pairs; a disappeared lesion has follow-up size 0 and a
    change of -100%. Merged and split rows name the lesion they joined or came from, with
    their own size only.
    """
    rows = []
    for link in links:
        b = baseline.get(link.baseline_id) if link.baseline_id is not None else None
        f = followup.get(link.followup_id) if link.followup_id is not None else None
        own_b = b if link.status in ("persistent", "disappeared", "merged") else None
        own_f = f if link.status in ("persistent", "new", "split") else None
        row: dict[str, object] = {
            "baseline_lesion_id": link.baseline_id, "followup_lesion_id": link.followup_id,
            "status": link.status,
            "baseline_diameter_mm": _round(own_b.longest_diameter_mm if own_b else None),
            "followup_diameter_mm": _round(own_f.longest_diameter_mm if own_f else None),
            "baseline_volume_ml": _round(own_b.volume_ml if own_b else None, 4),
            "followup_volume_ml": _round(own_f.volume_ml if own_f else None, 4),
            "diameter_change_pct": None, "volume_change_pct": None,
            "distance_mm": link.distance_mm}
        if link.status == "disappeared" and b is not None:
            row |= {"followup_diameter_mm": 0.0, "followup_volume_ml": 0.0,
                    "diameter_change_pct": -100.0, "volume_change_pct": -100.0}
        if link.status == "persistent" and b is not None and f is not None:
            row["diameter_change_pct"] = _pct(f.longest_diameter_mm, b.longest_diameter_mm)
            row["volume_change_pct"] = _pct(f.volume_ml, b.volume_ml)
        rows.append(row)
    return rows


def _overlaps(baseline: npt.NDArray[np.integer], followup: npt.NDArray[np.integer]
              ) -> dict[tuple[int, int], int]:
    both = (baseline > 0) & (followup > 0)
    if not both.any():
        return {}
    pairs, counts = np.unique(np.stack([baseline[both], followup[both]]), axis=1,
                              return_counts=True)
    return {(int(b), int(f)): int(c) for (b, f), c in zip(pairs.T, counts, strict=True)}


def _distance_mm(a: LesionMeasurement, b: LesionMeasurement) -> float:
    return float(np.linalg.norm(np.subtract(a.centroid_mm, b.centroid_mm)))


def _pct(after: float, before: float) -> float | None:
    return round(100.0 * (after - before) / before, 2) if before > 0 else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)
