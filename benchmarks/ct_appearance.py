"""Training data against real CT: liver noise and lesion contrast, as histograms.

    .venv/bin/python benchmarks/ct_appearance.py --training RUN/data/train.csv \\
        --real-work /tmp/appearance --out benchmarks/figures/ct_appearance.png

For every CT of a manifest with a liver mask:
- **liver noise** (HU): the median, over the liver's parenchyma eroded by 3 mm (lesions left
  out), of the local standard deviation in 5 x 5 in-plane windows: the pixel noise a reader
  measures in a homogeneous ROI, robust to vessels and edges;
- **lesion contrast** (HU, positive: darker than the liver), for every reference lesion: the
  median HU of the liver within 5 mm around it minus its own median, as the candidate checks
  (`livermets.infer.candidates.measure_candidate`) measure it.

The real CTs are the labelled ones of ../shared/data (3D-IRCADb-01 1.17 and 1.7, the
CRLM-CT-1100 atlas, LiTS 117, the TotalSegmentator example's liver), imported under
`--real-work`. Prints and writes `OUT.json` beside the figure: per CT and per lesion figures,
and the ranges, for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from scipy import ndimage

from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.public import crlm_atlas, lits_crop, totalsegmentator_example
from livermets.infer.candidates import CandidateChecks, measure_candidate
from livermets.io import read_image
from livermets.io.manifest import ManifestRow, read_manifest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def liver_noise_hu(hu: np.ndarray, parenchyma: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Median local SD (5 x 5 in-plane windows) over `parenchyma` eroded by 3 mm (HU)."""
    values = hu.astype(np.float64)
    size = (1, 5, 5)
    mean = ndimage.uniform_filter(values, size)
    square = ndimage.uniform_filter(values**2, size)
    local_sd = np.sqrt(np.maximum(square - mean**2, 0.0))
    radius = np.maximum(1, np.rint(3.0 / np.asarray(spacing))).astype(int)
    core = ndimage.binary_erosion(parenchyma, np.ones(2 * radius + 1, bool))
    return float(np.median(local_sd[core])) if core.any() else float("nan")


def appearance(row: ManifestRow) -> dict[str, Any]:
    """The liver noise and each reference lesion's contrast and size of one CT."""
    assert row.liver_mask is not None
    ct = read_image(row.image)
    liver = read_image(row.liver_mask).array > 0
    labels = (read_image(row.lesion_mask).array.astype(np.int32) if row.lesion_mask
              else np.zeros(ct.shape, np.int32))
    contrasts = []
    checks = CandidateChecks()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            measures = measure_candidate(labels, index, box, ct.array, liver, ct.spacing, checks)
            if measures.contrast_hu is not None:
                contrasts.append(round(measures.contrast_hu, 1))
    return {"case_id": row.case_id, "center": row.center,
            "liver_noise_hu": round(liver_noise_hu(ct.array, liver & (labels == 0),
                                                   ct.spacing), 2),
            "lesion_contrasts_hu": contrasts}


def real_rows(work: Path, shared: Path) -> list[ManifestRow]:
    """The labelled real CTs of ../shared/data, imported under `work`."""
    rows = []
    for name in ("3Dircadb1.17", "3Dircadb1.7"):
        imported = import_ircadb(shared / "ircadb" / name, work / name, overwrite=True)
        assert imported.manifest is not None
        rows += read_manifest(imported.manifest)
    crlm, lits = shared / "crlm", shared / "lits"
    totalseg = shared / "fixtures" / "totalsegmentator"
    rows.append(crlm_atlas(crlm / "CRLM-CT-1100_atlas_ct.nii.gz",
                           crlm / "CRLM-CT-1100_atlas_seg.nii.gz", work / "crlm1100"))
    rows.append(lits_crop(lits / "lits117_ct.nii.gz", lits / "lits117_seg.nii.gz",
                          work / "lits117"))
    rows.append(totalsegmentator_example(totalseg / "example_ct.nii.gz",
                                         totalseg / "example_seg.nii.gz", work / "totalseg"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training", type=Path, required=True, help="A training manifest.")
    parser.add_argument("--real-work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="The PNG to write.")
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    training = [appearance(r) for r in read_manifest(args.training) if r.liver_mask]
    real = [appearance(r) for r in real_rows(args.real_work, args.shared)]

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "liver_noise_hu", "liver noise SD (HU)"),
                           (axes[1], "lesion_contrasts_hu", "lesion contrast (HU darker)")):
        def values(cases: list[dict[str, Any]], key: str = key) -> list[float]:
            if key == "liver_noise_hu":
                return [c[key] for c in cases]
            return [v for c in cases for v in c[key]]
        low, high = (0.0, 30.0) if key == "liver_noise_hu" else (-40.0, 100.0)
        bins = np.linspace(low, high, 36)
        for cases, name in ((training, "training"), (real, "real, ../shared/data")):
            shown = np.clip(values(cases), low, high)  # outliers in the end bins
            ax.hist(shown, bins=bins, alpha=0.6, density=True,
                    label=f"{name} ({len(shown)})")
        ax.set_xlabel(label)
        ax.legend(fontsize=8)
    axes[0].axvspan(8, 16, color="grey", alpha=0.15)
    axes[1].axvspan(13, 45, color="grey", alpha=0.15)
    figure.suptitle("grey: the held-back real CTs of the real-CT issue (noise 8-16 HU, "
                    "hypodense contrast 13-45 HU)", fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)

    def summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
        noise = [c["liver_noise_hu"] for c in cases]
        contrast = [v for c in cases for v in c["lesion_contrasts_hu"]]
        return {"cts": len(cases), "noise_hu_range": [min(noise), max(noise)],
                "noise_hu_median": float(np.median(noise)), "lesions": len(contrast),
                "contrast_hu_percentiles_10_50_90": [float(np.percentile(contrast, q))
                                                     for q in (10, 50, 90)] if contrast else []}
    result = {"training": summary(training), "real": summary(real),
              "training_cases": training, "real_cases": real}
    print(json.dumps({k: result[k] for k in ("training", "real")}, indent=2))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
