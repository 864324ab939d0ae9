"""Per-lesion baseline / follow-up picture pairs for the report, from a `track` folder.

For one patient folder (`response.json`, `matches.csv`, `transform.tfm`) whose CTs are known,
the follow-up CT and masks are brought onto the baseline grid by the saved transform, and each
persistent lesion (the largest first) gets a pair: the baseline slice through the lesion's
longest diameter, and the same slice of the aligned follow-up with the baseline liver's outline
over it (the registration overlay: where the outline misses the liver, the alignment is off).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from livermets.io import read_image
from livermets.measure import measure_lesions
from livermets.report.figures import to_data_uri
from livermets.track.register import resample_labels
from livermets.track.run import lesion_labels

logger = logging.getLogger(__name__)

#: Pixels kept around the pair of lesions in each picture, in mm.
MARGIN_MM = 35.0


def lesion_pairs(folder: Path, *, limit: int = 3) -> list[dict[str, Any]]:
    """Up to `limit` pictures (data URIs) of persistent lesions, largest baseline first, each
    with its ids and diameters; none when the folder does not name both CTs."""
    response = json.loads((folder / "response.json").read_text())
    base_files, follow_files = response["baseline"], response["followup"]
    if not base_files.get("image") or not follow_files.get("image"):
        return []
    with (folder / "matches.csv").open() as handle:
        persistent = [r for r in csv.DictReader(handle) if r["status"] == "persistent"]
    persistent.sort(key=lambda r: -float(r["baseline_diameter_mm"] or 0))
    if not persistent:
        return []
    base_ct, follow_ct = read_image(base_files["image"]), read_image(follow_files["image"])
    base_lesions = lesion_labels(read_image(base_files["lesions"]))
    follow_lesions = lesion_labels(read_image(follow_files["lesions"]))
    base_liver = read_image(base_files["liver"]).array > 0 if base_files["liver"] else None
    transform = sitk.ReadTransform(str(folder / "transform.tfm"))
    moved_ct = sitk.GetArrayFromImage(sitk.Resample(
        follow_ct.to_sitk(), base_ct.to_sitk(), transform, sitk.sitkLinear, -1000.0,
        sitk.sitkFloat32))
    moved_lesions = resample_labels(follow_lesions, base_lesions, transform).array
    measures = measure_lesions(base_lesions.array, base_lesions.spacing)
    aspect = base_ct.spacing[1] / base_ct.spacing[2]
    pictures = []
    for row in persistent[:limit]:
        base_id, follow_id = int(row["baseline_lesion_id"]), int(row["followup_lesion_id"])
        z = measures[base_id].diameter_slice
        box = _box(base_lesions.array[z] == base_id, moved_lesions[z] == follow_id,
                   base_ct.spacing)
        title = (f"lesion {base_id} -> {follow_id}: {float(row['baseline_diameter_mm']):.0f} "
                 f"-> {float(row['followup_diameter_mm']):.0f} mm")
        pictures.append({
            "baseline_id": base_id, "followup_id": follow_id, "title": title,
            "uri": pair_figure(base_ct.array[z][box], moved_ct[z][box],
                               base_lesions.array[z][box] == base_id,
                               moved_lesions[z][box] == follow_id,
                               None if base_liver is None else base_liver[z][box], aspect,
                               title)})
    return pictures


def _box(first: npt.NDArray[np.bool_], second: npt.NDArray[np.bool_],
         spacing: tuple[float, float, float]) -> tuple[slice, slice]:
    """The in-plane box around both masks plus `MARGIN_MM` (whole slice if both are empty)."""
    rows, columns = np.nonzero(first | second)
    if rows.size == 0:
        return slice(None), slice(None)
    pad_y, pad_x = (int(MARGIN_MM / s) for s in spacing[1:])
    height, width = first.shape
    return (slice(max(0, rows.min() - pad_y), min(height, rows.max() + pad_y + 1)),
            slice(max(0, columns.min() - pad_x), min(width, columns.max() + pad_x + 1)))


def pair_figure(baseline: npt.NDArray[Any], followup: npt.NDArray[Any],
                baseline_lesion: npt.NDArray[np.bool_], followup_lesion: npt.NDArray[np.bool_],
                baseline_liver: npt.NDArray[np.bool_] | None, pixel_aspect: float,
                title: str) -> str:
    """Two CT slices side by side (HU, window [-150, 250]): the baseline with its lesion
    (green), the aligned follow-up with its lesion (red) and the baseline liver's outline
    (yellow, dotted) over it."""
    figure, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    for ax, image, lesion, colour, name in ((axes[0], baseline, baseline_lesion, "#2ca02c",
                                             "baseline"),
                                            (axes[1], followup, followup_lesion, "#d62728",
                                             "follow-up, aligned")):
        ax.imshow(np.clip(image, -150, 250), cmap="gray", aspect=pixel_aspect,
                  interpolation="nearest")
        if lesion.any():
            ax.contour(lesion, levels=[0.5], colors=[colour], linewidths=1.2)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    if baseline_liver is not None and baseline_liver.any():
        axes[1].contour(baseline_liver, levels=[0.5], colors=["yellow"], linewidths=0.8,
                        linestyles="dotted")
    figure.suptitle(title, fontsize=9)
    return to_data_uri(figure)
