"""Checks on each lesion candidate that the network's output alone does not make.

A candidate is one connected component of the thresholded probability map (`Predictor`). On
real CT the network also fires on things that are not metastases. The usual culprits are fat
in the liver's fissures and at its hilum, air and fat of the stomach where the liver mask
reaches over, the gallbladder, vessels, and tissue outside the liver that the lesion margin
lets in. Four tissue facts catch them, each measured on the CT (z, y, x, HU), and one fact
about the network's own output:

- `outside`: more than `max_outside_fraction` of the candidate's voxels lie outside the liver
  mask. The margin (`liver_dilation_mm`) exists for lesions that bulge out of the liver, and
  such a lesion still lies largely inside it.
- `fat`: more than `max_fat_fraction` of its voxels are fat or air (below `fat_below_hu` after
  a Gaussian smoothing of `fat_smoothing_mm` in-plane, which keeps noise out). A metastasis is
  soft tissue; a fissure or the stomach holds fat or air.
- `contrast`: its median HU is less than `min_contrast_hu` below the median of the liver
  around it (the liver voxels within `shell_mm`, other candidates excluded). Colorectal
  metastases are darker than the liver in the portal-venous phase; a vessel or plain liver
  is not. There is no verdict when no liver lies around it. Blind spot: when the network
  marks only a tumour's dark core, the shell is the tumour's unmarked rim and a real tumour
  fails (a liver-wide reference was measured instead and let more look-alikes through:
  benchmarks/RESULTS.md).
- `fluid`: its median HU is below `min_median_hu` (20 HU: water, bile; the usual bound for a
  simple cyst). The gallbladder and cysts are not metastases.
- `confidence`: the network's highest probability in it is below `min_peak_probability`
  (0.5). Otsu's threshold draws the lesions' outlines, as in the paper, but on a CT with few
  or no lesions it falls far below 0.5 (0.19 on a generated CT after complete response), and
  components appear where the network never called any voxel a lesion. Keeping only the
  components that reach 0.5 somewhere is hysteresis thresholding: Otsu's value outlines,
  0.5 seeds.

A candidate failing any check is rejected. It is reported with its measures
(`rejected_candidates.csv`) and stays in the probability map, so nothing is silently lost.
These checks encode the hypodense metastases the starter models are made for. For hyperdense
tumours (some HCC, neuroendocrine metastases) turn them off: `--no-candidate-checks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.boxes import grow_box
from livermets.errors import InputError
from livermets.labels import smallest_label_dtype
from livermets.morphology import within_distance
from livermets.types import Spacing


@dataclass(frozen=True)
class CandidateChecks:
    """Thresholds of the four checks (see the module docstring); units in the names."""

    max_outside_fraction: float = 0.9
    max_fat_fraction: float = 0.05
    fat_below_hu: float = -30.0
    fat_smoothing_mm: float = 1.0
    min_contrast_hu: float = 10.0
    shell_mm: float = 5.0
    min_median_hu: float = 20.0
    min_peak_probability: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_outside_fraction", "max_fat_fraction", "min_peak_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.shell_mm <= 0 or self.fat_smoothing_mm < 0:
            raise InputError("shell_mm must be > 0 mm and fat_smoothing_mm >= 0 mm")

    def to_json(self) -> dict[str, float]:
        """The thresholds, for run.json."""
        return asdict(self)


@dataclass(frozen=True)
class CandidateMeasures:
    """One candidate's measures: fractions of its voxels (0-1), its contrast (HU, positive
    when darker than the liver around it; None when no liver surrounds it), its median HU and
    the network's highest probability in it (0-1; None when no probability map was given)."""

    outside_fraction: float
    fat_fraction: float
    contrast_hu: float | None
    median_hu: float
    peak_probability: float | None = None

    def failures(self, checks: CandidateChecks) -> list[str]:
        """The names of the checks this candidate fails, in the module's order."""
        failed = []
        if self.outside_fraction > checks.max_outside_fraction:
            failed.append("outside")
        if self.fat_fraction > checks.max_fat_fraction:
            failed.append("fat")
        if self.contrast_hu is not None and self.contrast_hu < checks.min_contrast_hu:
            failed.append("contrast")
        if self.median_hu < checks.min_median_hu:
            failed.append("fluid")
        if (self.peak_probability is not None
                and self.peak_probability < checks.min_peak_probability):
            failed.append("confidence")
        return failed

    def to_row(self) -> dict[str, Any]:
        """CSV columns: fractions and probability to 3 decimals, HU to 0.1 (empty when None)."""
        return {"outside_fraction": round(self.outside_fraction, 3),
                "fat_fraction": round(self.fat_fraction, 3),
                "contrast_hu": "" if self.contrast_hu is None else round(self.contrast_hu, 1),
                "median_hu": round(self.median_hu, 1),
                "peak_probability": ("" if self.peak_probability is None
                                     else round(self.peak_probability, 3))}


def measure_candidate(labels: npt.NDArray[np.integer], label: int, box: tuple[slice, ...],
                      hu: npt.NDArray[np.generic], liver: npt.NDArray[Any],
                      spacing: Spacing, checks: CandidateChecks,
                      probability: npt.NDArray[np.floating] | None = None) -> CandidateMeasures:
    """The measures of candidate `label` of `labels` (z, y, x), whose bounding box is `box`;
    `probability` is the network's lesion probability (0-1) on the same grid, when known.

    Only a box around the candidate is read: grown by the shell (for the contrast) and by
    three smoothing sigmas (so the smoothing sees the same neighbours as on the whole CT).
    """
    sigma_mm = checks.fat_smoothing_mm
    reach_mm = max(checks.shell_mm, 3 * sigma_mm)
    grown = grow_box(box, spacing, reach_mm, labels.shape)
    local = labels[grown]
    inside = local == label
    values = hu[grown].astype(np.float32)
    in_liver = liver[grown] > 0

    outside_fraction = float(np.count_nonzero(inside & ~in_liver)) / float(inside.sum())
    sigmas = (0.0, sigma_mm / spacing[1], sigma_mm / spacing[2])
    smooth = ndimage.gaussian_filter(values, sigmas) if sigma_mm > 0 else values
    fat_fraction = float(np.count_nonzero(smooth[inside] < checks.fat_below_hu)) / float(
        inside.sum())

    median = float(np.median(values[inside]))
    # The shell: within shell_mm of the candidate (its distance map <= shell_mm), not in it.
    shell = (~inside & within_distance(inside, spacing, checks.shell_mm) & in_liver
             & (local == 0))
    contrast = float(np.median(values[shell])) - median if shell.any() else None
    peak = None if probability is None else float(probability[grown][inside].max())
    return CandidateMeasures(outside_fraction, fat_fraction, contrast, median, peak)


@dataclass(frozen=True)
class CheckedCandidates:
    """The outcome of `check_candidates`: `lesions` and `rejected` are instance maps on the
    input's grid (1..n by decreasing volume); the lists follow their numbers."""

    lesions: npt.NDArray[np.unsignedinteger]
    rejected: npt.NDArray[np.unsignedinteger]
    lesion_measures: list[CandidateMeasures]
    rejected_measures: list[CandidateMeasures]
    rejected_reasons: list[list[str]]


def check_candidates(labels: npt.NDArray[np.integer], hu: npt.NDArray[np.generic],
                     liver: npt.NDArray[Any], spacing: Spacing, checks: CandidateChecks,
                     probability: npt.NDArray[np.floating] | None = None) -> CheckedCandidates:
    """Split the candidates of `labels` (instance map 1..K, z, y, x) into kept and rejected.

    `hu` is the CT, `liver` the liver mask (> 0 inside) and `probability` the network's
    output (0-1; without it the `confidence` check has no verdict), all on `labels`' grid;
    `spacing` in mm (z, y, x). Each group is renumbered 1..n in the candidates' order, so candidates
    numbered by decreasing volume (as `instance_labels` numbers them) stay so.
    """
    kept: list[int] = []
    rejected: list[int] = []
    lesion_measures: list[CandidateMeasures] = []
    rejected_measures: list[CandidateMeasures] = []
    reasons: list[list[str]] = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        measures = measure_candidate(labels, label, box, hu, liver, spacing, checks,
                                     probability)
        failed = measures.failures(checks)
        if failed:
            rejected.append(label)
            rejected_measures.append(measures)
            reasons.append(failed)
        else:
            kept.append(label)
            lesion_measures.append(measures)
    return CheckedCandidates(lesions=_renumbered(labels, kept),
                             rejected=_renumbered(labels, rejected),
                             lesion_measures=lesion_measures,
                             rejected_measures=rejected_measures, rejected_reasons=reasons)


def _renumbered(labels: npt.NDArray[np.integer], order: list[int]
                ) -> npt.NDArray[np.unsignedinteger]:
    """`labels` with only the labels in `order`, the i-th of them numbered i + 1."""
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=smallest_label_dtype(len(order)))
    lookup[order] = np.arange(1, len(order) + 1)
    return lookup[labels]
