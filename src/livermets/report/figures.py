"""The report's figures, as PNG data URIs (the HTML embeds them: one self-contained file).

- `dice_boxplot`: lesion Dice per set and size group (the paper's Figure 2), with the
  Mann-Whitney p-value of each small-vs-big comparison written above its pair.
- `detection_by_size`: detection rate per set and size group with the 95% bootstrap interval.
- `case_overlay`: one axial CT slice with the reference lesions' contours (green), the
  predicted ones (red, dashed) and missed reference lesions circled in yellow (their Figures 3-4).
- `lesion_gallery`: one crop per lesion (or candidate) with its outline and caption.
- `icc_by_class`: the ICC(3,1) of each radiomics feature per feature class.

matplotlib only (Agg backend); no torch.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

Row = dict[str, Any]
SIZES = ("small", "big")


def to_data_uri(figure: Figure) -> str:
    """The figure as a base64 PNG data URI (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def dice_boxplot(lesions: Sequence[Row], comparisons: Sequence[Row], title: str) -> str:
    """Box plot (with the points) of lesion Dice for each set x size group."""
    sets = sorted({str(r["set"]) for r in lesions})
    groups = [(s, size) for s in sets for size in SIZES]
    values = [[float(r["dice"]) for r in lesions if r["set"] == s and r["size_group"] == size]
              for s, size in groups]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.3 * len(groups)), 3.6))
    positions = np.arange(1, len(groups) + 1)
    shown = [(p, v) for p, v in zip(positions, values, strict=True) if v]
    if shown:
        axes.boxplot([v for _, v in shown], positions=[p for p, _ in shown], widths=0.5,
                     showfliers=False)
        rng = np.random.default_rng(0)
        for p, v in shown:
            axes.scatter(p + rng.uniform(-0.12, 0.12, len(v)), v, s=10, alpha=0.6)
    axes.set_xticks(positions, [f"{s}\n{size} (n={len(v)})"
                                for (s, size), v in zip(groups, values, strict=True)])
    axes.set_ylim(-0.05, 1.18)
    axes.set_ylabel("lesion Dice")
    axes.set_title(title)
    for k, name in enumerate(sets):
        test = next((c for c in comparisons if c["a"] == f"set={name}/size=small"
                     and c["b"] == f"set={name}/size=big"), None)
        if test is not None:
            x = positions[2 * k] + 0.5
            axes.text(x, 1.08, f"p = {test['dice']['p_value']:.2g}", ha="center", fontsize=8)
    return to_data_uri(figure)


def detection_by_size(groups: dict[str, Row], title: str) -> str:
    """Bars of detection rate per set x size group, with 95% bootstrap intervals."""
    keys = [k for k in groups if k.startswith("set=") and "/size=" in k
            and groups[k]["n_lesions"]]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(keys)), 3.4))
    rates = [groups[k]["detection_rate"] for k in keys]
    low = [r - groups[k]["detection_rate_ci95"][0] for k, r in zip(keys, rates, strict=True)]
    high = [groups[k]["detection_rate_ci95"][1] - r for k, r in zip(keys, rates, strict=True)]
    axes.bar(range(len(keys)), rates, yerr=[low, high], capsize=4,
             color=["#4c72b0" if k.endswith("small") else "#dd8452" for k in keys])
    axes.set_xticks(range(len(keys)),
                    [k.replace("set=", "").replace("/size=", "\n") +
                     f"\n{groups[k]['n_detected']}/{groups[k]['n_lesions']}" for k in keys])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("detection rate (Dice > threshold)")
    axes.set_title(title)
    return to_data_uri(figure)


def case_overlay(ct_slice: npt.NDArray[Any], reference: npt.NDArray[Any],
                 prediction: npt.NDArray[Any], missed: Sequence[tuple[float, float]],
                 pixel_aspect: float, title: str) -> str:
    """An axial CT slice (HU, window [-150, 250]) with reference (green) and predicted (red,
    dashed) lesion contours; `missed`: (row, column) centres of missed lesions, circled."""
    figure, axes = plt.subplots(figsize=(4.2, 4.2))
    axes.imshow(np.clip(ct_slice, -150, 250), cmap="gray", aspect=pixel_aspect,
                interpolation="nearest")
    if reference.any():
        axes.contour(reference > 0, levels=[0.5], colors=["#2ca02c"], linewidths=1.2)
    if prediction.any():
        axes.contour(prediction > 0, levels=[0.5], colors=["#d62728"], linewidths=1.0,
                     linestyles="dashed")
    for row, column in missed:
        axes.scatter([column], [row], s=500, facecolors="none", edgecolors="yellow",
                     linewidths=1.5)
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    return to_data_uri(figure)


def lesion_gallery(crops: Sequence[tuple[npt.NDArray[Any], npt.NDArray[Any], str]],
                   pixel_aspect: float, title: str, *, columns: int = 4,
                   color: str = "#d62728") -> str:
    """Crops of axial CT slices (HU, window [-50, 250], the liver's contrast) side by side,
    each with one mask's outline (dashed, `color`) and its caption: (ct crop, mask crop,
    caption) per panel, `columns` panels a row."""
    rows = max(1, -(-len(crops) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows + 0.3),
                                squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, (ct_crop, mask_crop, caption) in zip(axes.flat, crops, strict=False):
        axis.imshow(np.clip(ct_crop, -50, 250), cmap="gray", aspect=pixel_aspect,
                    interpolation="nearest")
        if mask_crop.any():
            axis.contour(mask_crop > 0, levels=[0.5], colors=[color], linewidths=0.9,
                         linestyles="dashed")
        axis.set_title(caption, fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return to_data_uri(figure)


def waterfall(reference_pct: dict[str, float], predicted_pct: dict[str, float]) -> str:
    """Per-patient change of the RECIST target sum (%), sorted: bars from the reference masks,
    dots from the predictions; dashed lines at +20% (PD) and -30% (PR)."""
    patients = sorted(reference_pct, key=lambda p: -reference_pct[p])
    figure, axes = plt.subplots(figsize=(max(4.0, 0.5 * len(patients) + 2), 3.4))
    x = np.arange(len(patients))
    values = [reference_pct[p] for p in patients]
    axes.bar(x, values, color=["#d62728" if v >= 20 else "#2ca02c" if v <= -30 else "#7f7f7f"
                               for v in values], label="reference")
    shown = [(k, predicted_pct[p]) for k, p in enumerate(patients) if p in predicted_pct]
    if shown:
        axes.scatter([k for k, _ in shown], [v for _, v in shown], color="black", zorder=3,
                     s=18, label="prediction")
    for level in (20, -30):
        axes.axhline(level, color="black", linestyle="--", linewidth=0.8)
    axes.set_xticks(x, patients, rotation=60, fontsize=7)
    axes.set_ylabel("target sum change (%)")
    axes.set_title("Response per patient (RECIST 1.1, liver)")
    axes.legend(fontsize=7)
    return to_data_uri(figure)


def icc_by_class(icc: dict[str, list[float]], thresholds: Sequence[float] = (0.75, 0.9)
                 ) -> str:
    """ICC(3,1) of each feature (points) and their spread (box) per feature class, with dashed
    lines at `thresholds`; `icc`: {class: ICCs of its features} (classes without any left out)."""
    names = [name for name, values in icc.items() if values]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6))
    positions = np.arange(1, len(names) + 1)
    if names:
        axes.boxplot([icc[n] for n in names], positions=positions, widths=0.5,
                     showfliers=False)
        rng = np.random.default_rng(0)
        for p, name in zip(positions, names, strict=True):
            axes.scatter(p + rng.uniform(-0.12, 0.12, len(icc[name])), icc[name], s=10,
                         alpha=0.6)
    for level in thresholds:
        axes.axhline(level, color="black", linestyle="--", linewidth=0.8)
    axes.set_xticks(positions, [f"{n}\n(n={len(icc[n])})" for n in names])
    low = min([0.0, *(v for n in names for v in icc[n])])
    axes.set_ylim(max(-1.05, low - 0.05), 1.05)
    axes.set_ylabel("ICC(3,1), predicted vs reference")
    axes.set_title("Feature robustness to automatic segmentation")
    return to_data_uri(figure)
