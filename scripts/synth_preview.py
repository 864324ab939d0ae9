"""Render a few axial slices of one generated patient, baseline above tp1, with contours.

    .venv/bin/python scripts/synth_preview.py [--out docs/images/synth_example.png]
        [--seed 0] [--patient 1] [--matrix 512] [--slices N]

Columns are the same anatomical levels at both time points: the tp1 slice is the baseline
slice moved by the recorded patient shift. Liver contours are green, lesion contours red
with their label; the window is the abdominal one (W 400, L 40 HU).
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from scipy import ndimage

from livermets.datasets.synth import PatientPlan, SynthCase, plan_patient, render_case

logger = logging.getLogger("synth_preview")
WINDOW_HU = (-160.0, 240.0)


def _levels(case: SynthCase, count: int = 3) -> list[int]:
    """Baseline slices: through the largest lesions first, then down the liver."""
    labels = case.lesions.array
    sizes = np.bincount(labels.ravel())[1:]
    chosen: list[int] = []
    for label in np.argsort(sizes)[::-1] + 1:
        z = round(float(ndimage.center_of_mass(labels == label)[0]))
        if all(abs(z - c) >= 4 for c in chosen):
            chosen.append(z)
        if len(chosen) == count - 1:
            break
    liver_slices = np.flatnonzero(case.liver.array.any(axis=(1, 2)))
    for fraction in (0.25, 0.5, 0.75):
        if len(chosen) == count:
            break
        z = int(liver_slices[int(fraction * (len(liver_slices) - 1))])
        if all(abs(z - c) >= 4 for c in chosen):
            chosen.append(z)
    return sorted(chosen, reverse=True)  # head first


def _tp1_level(plan: PatientPlan, z: int) -> int:
    """The tp1 slice at the same anatomical level as baseline slice `z`."""
    shift = plan.poses["tp1"].translation_mm[2] - plan.poses["baseline"].translation_mm[2]
    moved = round(z + shift / plan.geometry.spacing[0])
    return int(np.clip(moved, 0, plan.geometry.shape[0] - 1))


def _body_box(ct: np.ndarray) -> tuple[slice, slice]:
    """In-plane box around the body (the largest region above -500 HU), with a margin."""
    regions, _ = ndimage.label((ct > -500).any(axis=0))
    body = regions == np.argmax(np.bincount(regions.ravel())[1:]) + 1
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    margin = ct.shape[1] // 40
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin),
            slice(max(cols[0] - margin, 0), cols[-1] + margin))


def _panel(ax: plt.Axes, case: SynthCase, z: int, box: tuple[slice, slice]) -> None:
    ct = case.ct.array[z][box]
    ax.imshow(ct, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="bilinear")
    liver = case.liver.array[z][box]
    if liver.any():
        ax.contour(liver, [0.5], colors="#3ddc84", linewidths=0.8)
    labels = case.lesions.array[z][box]
    for label in np.unique(labels[labels > 0]):
        ax.contour(labels == label, [0.5], colors="#ff3b30", linewidths=0.9)
        cy, cx = ndimage.center_of_mass(labels == label)
        ax.text(cx + 6, cy - 6, str(label), color="#ffcc00", fontsize=8, weight="bold")
    z_mm = case.ct.geometry.index_to_physical((z, 0, 0))[2]
    ax.set_title(f"{case.timepoint}, slice {z} (z = {z_mm:.0f} mm)", fontsize=9)
    ax.axis("off")


def render(plan: PatientPlan, out: Path) -> Path:
    """Write the preview PNG of `plan` to `out`."""
    cases = {tp: render_case(plan, tp) for tp in ("baseline", "tp1")}
    levels = _levels(cases["baseline"])
    box = _body_box(cases["baseline"].ct.array)
    fig, axes = plt.subplots(2, len(levels), figsize=(4.0 * len(levels), 7.4))
    for column, z in enumerate(levels):
        _panel(axes[0, column], cases["baseline"], z, box)
        _panel(axes[1, column], cases["tp1"], _tp1_level(plan, z), box)
    spacing = plan.geometry.spacing
    fig.suptitle(
        f"livermets synth: {plan.patient_id}, centre {plan.center}, {plan.scenario}; "
        f"{plan.geometry.shape[2]}x{plan.geometry.shape[1]} pixels of {spacing[2]:.2f} mm, "
        f"{spacing[0]:g} mm slices; liver green, lesions red", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(buffer).convert("RGB").quantize(
        256, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)  # keeps the PNG small
    image.save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/synth_example.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patient", type=int, default=1, help="1 = synth001")
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--slices", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plan = plan_patient(args.seed, args.patient - 1, matrix=args.matrix, slices=args.slices)
    out = render(plan, args.out)
    logger.info("wrote %s (%.0f KB)", out, out.stat().st_size / 1024)


if __name__ == "__main__":
    main()
