"""Summaries of lesion-level rows: per group counts, detection rate, mean and SD of the scores.

Groups: `all`; `set=<set>` for each set (the manifest's `split`); `set=<set>/size=<group>` for
each set and size group; `center=<centre>` for each centre. Standard deviations are sample
SDs (n - 1); with one lesion the SD is null. `false_positives_per_case` is the group's
false-positive lesions over its cases (for size groups, the false positives whose own longest
diameter falls in that group).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from livermets.evaluate.stats import (
    bootstrap_ci,
    compare_proportions,
    detection_rate,
    mann_whitney,
    mean_dice,
)

Row = dict[str, Any]


def group_summary(lesions: Sequence[Row], n_cases: int, n_false_positives: int) -> Row:
    """Counts and score statistics of `lesions` (rows with dice, precision, recall, detected).

    With lesions, also 95% bootstrap intervals (patients resampled, `stats.bootstrap_ci`) of
    the detection rate and the mean Dice.
    """
    out: Row = {"n_cases": n_cases, "n_lesions": len(lesions),
                "n_detected": sum(bool(r["detected"]) for r in lesions)}
    out["detection_rate"] = (round(out["n_detected"] / len(lesions), 4) if lesions else None)
    for metric in ("dice", "precision", "recall"):
        values = np.array([float(r[metric]) for r in lesions])
        out[f"{metric}_mean"] = round(float(values.mean()), 4) if values.size else None
        out[f"{metric}_std"] = (round(float(values.std(ddof=1)), 4) if values.size > 1
                                else None)
    out["false_positives_per_case"] = (round(n_false_positives / n_cases, 4) if n_cases
                                       else None)
    out["detection_rate_ci95"] = out["dice_mean_ci95"] = None
    if lesions:
        by_patient: dict[str, list[Row]] = {}
        for row in lesions:
            by_patient.setdefault(str(row["patient_id"]), []).append(row)
        for key, statistic in (("detection_rate_ci95", detection_rate),
                               ("dice_mean_ci95", mean_dice)):
            low, high = bootstrap_ci(by_patient, statistic)
            out[key] = [round(low, 4), round(high, 4)]
    return out


def comparisons(lesions: Sequence[Row]) -> list[Row]:
    """The paper's comparisons that the lesion rows allow, each with its tests.

    Every pair of sets (e.g. valB vs valTP1; TP1tr vs TP1tst): detection rates
    (`compare_proportions`) and lesion Dice (`mann_whitney`); within each set, small vs big
    lesions, the same two tests. Pairs where a side has no lesion are left out.
    """
    sets = sorted({str(r["set"]) for r in lesions})
    pairs: list[tuple[str, list[Row], str, list[Row]]] = []
    for k, first in enumerate(sets):
        for second in sets[k + 1:]:
            pairs.append((f"set={first}", [r for r in lesions if r["set"] == first],
                          f"set={second}", [r for r in lesions if r["set"] == second]))
    for name in sets:
        rows = [r for r in lesions if r["set"] == name]
        pairs.append((f"set={name}/size=small", [r for r in rows if r["size_group"] == "small"],
                      f"set={name}/size=big", [r for r in rows if r["size_group"] == "big"]))
    out = []
    for name_a, rows_a, name_b, rows_b in pairs:
        if not rows_a or not rows_b:
            continue
        detected_a, detected_b = (sum(bool(r["detected"]) for r in x) for x in (rows_a, rows_b))
        out.append({
            "a": name_a, "b": name_b,
            "detection": compare_proportions(detected_a, len(rows_a), detected_b,
                                             len(rows_b)).to_json(),
            "dice": mann_whitney([float(r["dice"]) for r in rows_a],
                                 [float(r["dice"]) for r in rows_b]).to_json()})
    return out


def size_bin(diameter_mm: float, edges_mm: Sequence[float]) -> str:
    """The finer size bin of a diameter: "<10", "10-20", ">=20" for edges (10, 20) mm."""
    edges = sorted(edges_mm)
    if diameter_mm < edges[0]:
        return f"<{edges[0]:g}"
    for low, high in itertools.pairwise(edges):
        if diameter_mm < high:
            return f"{low:g}-{high:g}"
    return f">={edges[-1]:g}"


def summarise(lesions: Sequence[Row], cases: Sequence[Row], false_positives: Sequence[Row],
              size_of: Callable[[float], str], bins_mm: Sequence[float] = ()) -> dict[str, Row]:
    """Every group's `group_summary` (module docstring); `size_of` maps mm to a size group.

    With `bins_mm` (e.g. (10, 20), as in Vorontsov et al. 2019), also `set=<set>/bin=<bin>`
    groups by `size_bin` of the longest diameter.
    """
    set_of_case = {c["case_id"]: c["set"] for c in cases}
    center_of_case = {c["case_id"]: c["center"] for c in cases}

    def summary(case_filter: Callable[[Row], bool], lesion_filter: Callable[[Row], bool],
                fp_filter: Callable[[Row], bool]) -> Row:
        chosen = {c["case_id"] for c in cases if case_filter(c)}
        return group_summary([r for r in lesions if r["case_id"] in chosen and lesion_filter(r)],
                             len(chosen),
                             sum(1 for f in false_positives
                                 if f["case_id"] in chosen and fp_filter(f)))

    def every(_: Row) -> bool:
        return True

    def in_set(name: str) -> Callable[[Row], bool]:
        return lambda case: bool(case["set"] == name)

    def in_center(name: str) -> Callable[[Row], bool]:
        return lambda case: bool(case["center"] == name)

    def lesion_of_size(size: str) -> Callable[[Row], bool]:
        return lambda lesion: bool(lesion["size_group"] == size)

    def false_positive_of_size(size: str) -> Callable[[Row], bool]:
        return lambda fp: size_of(float(fp["diameter_mm"])) == size

    def of_bin(label: str) -> Callable[[Row], bool]:
        return lambda row: size_bin(float(row["diameter_mm"]), bins_mm) == label

    groups: dict[str, Row] = {"all": summary(every, every, every)}
    for name in sorted(set(set_of_case.values())):
        groups[f"set={name}"] = summary(in_set(name), every, every)
        for size in ("small", "big"):
            groups[f"set={name}/size={size}"] = summary(in_set(name), lesion_of_size(size),
                                                        false_positive_of_size(size))
        if bins_mm:
            labels = sorted({size_bin(x, bins_mm) for x in [0.0, *bins_mm]},
                            key=lambda label: _bin_order(label, bins_mm))
            for label in labels:
                groups[f"set={name}/bin={label}"] = summary(in_set(name), of_bin(label),
                                                            of_bin(label))
    for name in sorted(set(center_of_case.values())):
        groups[f"center={name}"] = summary(in_center(name), every, every)
    return groups


def _bin_order(label: str, bins_mm: Sequence[float]) -> int:
    return [size_bin(x, bins_mm) for x in [0.0, *sorted(bins_mm)]].index(label)


def format_mean_sd(row: Row, metric: str) -> str:
    """`metric`'s mean ± SD of a group as text ("-" without lesions; the mean alone when the
    SD is undefined)."""
    mean, sd = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None:
        return "-"
    return f"{mean:.2f}" if sd is None or math.isnan(sd) else f"{mean:.2f} ± {sd:.2f}"


def format_detection(row: Row) -> str:
    """A group's detection rate as "67% (2/3) [0-100]" (with its 95% interval when known)."""
    if not row["n_lesions"]:
        return "-"
    text = f"{100 * row['detection_rate']:.0f}% ({row['n_detected']}/{row['n_lesions']})"
    interval = row.get("detection_rate_ci95")
    return text if interval is None else (f"{text} [{100 * interval[0]:.0f}-"
                                          f"{100 * interval[1]:.0f}]")


def tables_markdown(groups: dict[str, Row], small_mm: float,
                    tests: Sequence[Row] = ()) -> str:
    """The paper's Table I (per set: DSC, Pr, Re, DR with its 95% CI) and its size split,
    and the comparisons' p-values, as Markdown."""
    sets = [k.split("=", 1)[1] for k in groups if k.startswith("set=") and "/" not in k]
    lines = ["## Table I: per-lesion scores by set", "",
             "| set | lesions | DSC | Pr | Re | DR | FP / case |", "|---|---|---|---|---|---|---|"]
    def scores(row: Row) -> str:
        return " | ".join([*(format_mean_sd(row, m) for m in ("dice", "precision", "recall")),
                           format_detection(row)])

    for name in ["all", *sets]:
        row = groups["all" if name == "all" else f"set={name}"]
        fp = row["false_positives_per_case"]
        lines.append(f"| {name} | {row['n_lesions']} | {scores(row)} | "
                     f"{'-' if fp is None else f'{fp:.2f}'} |")
    lines += ["", f"## Table II: by lesion size (small < {small_mm:g} mm <= big)", "",
              "| set | size | lesions | DSC | Pr | Re | DR |", "|---|---|---|---|---|---|---|"]
    for name in sets:
        for size in ("small", "big"):
            row = groups[f"set={name}/size={size}"]
            lines.append(f"| {name} | {size} | {row['n_lesions']} | {scores(row)} |")
    if tests:
        lines += ["", "## Comparisons (two-sided p-values)", "",
                  "| a | b | detection: test | p | Dice: Mann-Whitney p |", "|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['a']} | {t['b']} | {t['detection']['test']} | "
                         f"{t['detection']['p_value']:.3g} | {t['dice']['p_value']:.3g} |")
    return "\n".join(lines) + "\n"
