"""Agreement of the features of automatic (predicted) and manual (reference) lesion masks.

Per feature, ICC(3,1) (Shrout & Fleiss 1979, case 3, single measure; McGraw & Wong 1996
"ICC(C,1)": two-way mixed effects, consistency) over the lesions found in both masks, with
its confidence interval from the F distribution. The two masks are the k = 2 "raters" and the
lesions the n targets. From the two-way ANOVA of the n x k table (no replication):

    MSR = k * sum_i (row mean_i - grand mean)^2 / (n - 1)       (between lesions)
    MSE = sum_ij (x_ij - row mean_i - column mean_j + grand mean)^2 / ((n - 1)(k - 1))
    ICC = (MSR - MSE) / (MSR + (k - 1) MSE)
    F0 = MSR / MSE,  FL = F0 / F(1 - a/2; n - 1, (n - 1)(k - 1)),
                     FU = F0 * F(1 - a/2; (n - 1)(k - 1), n - 1)
    interval = ((FL - 1) / (FL + k - 1), (FU - 1) / (FU + k - 1))

Policies: fewer than 2 lesions, or a feature with the same value in every cell (zero variance:
the ratio is 0 / 0), give no ICC (None, an empty cell). When the masks agree exactly on
every lesion (MSE = 0, MSR > 0), ICC and both bounds are 1.

Lesion pairs come from `evaluate.matching.paired_lesions` (a detected reference lesion and the
predicted lesion sharing the most voxels with it), on the lesion ids `radiomics` uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from livermets.evaluate.matching import LesionPair, paired_lesions
from livermets.io.image import read_image
from livermets.labels import lesion_ids

AGREEMENT_COLUMNS = ("feature", "feature_class", "icc", "ci_low", "ci_high", "n")
SUMMARY_COLUMNS = ("feature_class", "features", "with_icc", "share_icc_0.75", "share_icc_0.9")
PAIR_COLUMNS = ("reference_lesion_id", "predicted_lesion_id", "dice")
#: ICC thresholds of the summary: good (0.75) and excellent (0.9) reliability (Koo & Li 2016).
THRESHOLDS = (0.75, 0.9)


@dataclass(frozen=True)
class Icc:
    """ICC(3,1) with its interval; None where undefined (module policies). `n`: targets."""

    icc: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


def icc_3_1(ratings: npt.ArrayLike, *, confidence: float = 0.95) -> Icc:
    """ICC(3,1) of `ratings`, shape (n targets, k raters), k >= 2, no missing values; its
    `confidence` interval (module formulas)."""
    from scipy import stats

    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"ratings must be (targets, raters) with 2 or more raters, got "
                         f"shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError("ratings hold NaN or infinite values; drop those targets first")
    n, k = table.shape
    if n < 2 or _constant(table):
        return Icc(None, None, None, n)
    grand = table.mean()
    rows, columns = table.mean(axis=1), table.mean(axis=0)
    ms_rows = k * float(np.sum((rows - grand) ** 2)) / (n - 1)
    residual = table - rows[:, None] - columns[None, :] + grand
    ms_error = float(np.sum(residual ** 2)) / ((n - 1) * (k - 1))
    if ms_error <= 1e-12 * max(ms_rows, 1e-300):  # exact agreement, up to rounding
        return Icc(1.0, 1.0, 1.0, n) if ms_rows > 0 else Icc(None, None, None, n)
    icc = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error)
    f0 = ms_rows / ms_error
    df1, df2 = n - 1, (n - 1) * (k - 1)
    upper_tail = 1.0 - (1.0 - confidence) / 2.0
    f_low = f0 / float(stats.f.ppf(upper_tail, df1, df2))
    f_high = f0 * float(stats.f.ppf(upper_tail, df2, df1))
    return Icc(float(icc), (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1), n)


def _constant(table: npt.NDArray[np.float64]) -> bool:
    """Every cell the same value (up to float rounding)."""
    return float(np.ptp(table)) <= 1e-12 * max(1.0, float(np.max(np.abs(table))))


def feature_class(feature: str) -> str:
    """The pyradiomics class of a feature name: `original_glcm_Contrast` -> `glcm`."""
    parts = feature.split("_")
    return parts[1] if len(parts) >= 3 else ""


def case_pairs(reference_mask: Path, predicted_mask: Path, *, reference_min_mm3: float
               ) -> list[LesionPair]:
    """The lesion pairs of one CT's reference and predicted masks (same grid), on the ids
    `radiomics` gives them: the reference's lesions of at least `reference_min_mm3` mm3,
    every predicted lesion."""
    reference, predicted = read_image(reference_mask), read_image(predicted_mask)
    difference = reference.geometry.difference(predicted.geometry)
    if difference is not None:
        raise ValueError(f"{predicted_mask} is not on {reference_mask}'s grid ({difference})")
    spacing = reference.spacing
    return paired_lesions(lesion_ids(reference.array, spacing, min_volume_mm3=reference_min_mm3),
                          lesion_ids(predicted.array, spacing), spacing)


def agreement_rows(pairs: Sequence[tuple[Mapping[str, str], Mapping[str, str]]],
                   features: Sequence[str]) -> list[dict[str, object]]:
    """One `AGREEMENT_COLUMNS` row per feature: ICC(3,1) over the (reference row, predicted
    row) `pairs` (features.csv rows) where both values are given; values to 4 decimals."""
    out: list[dict[str, object]] = []
    for feature in features:
        table = [(float(a[feature]), float(b[feature])) for a, b in pairs
                 if a.get(feature) not in (None, "") and b.get(feature) not in (None, "")]
        table = [row for row in table if all(math.isfinite(v) for v in row)]
        result = icc_3_1(np.array(table).reshape(len(table), 2))
        out.append({"feature": feature, "feature_class": feature_class(feature),
                    "icc": _round(result.icc), "ci_low": _round(result.ci_low),
                    "ci_high": _round(result.ci_high), "n": result.n})
    return out


def agreement_summary(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Per feature class (first met order): features, those with an ICC, and the share of
    those with ICC >= 0.75 and >= 0.9 (None when no feature of the class has an ICC)."""
    classes: dict[str, list[float | None]] = {}
    for row in rows:
        icc = row["icc"]
        classes.setdefault(str(row["feature_class"]), []).append(
            None if icc is None else float(str(icc)))
    out: list[dict[str, object]] = []
    for name, values in classes.items():
        defined = [v for v in values if v is not None]
        shares = [round(sum(v >= t for v in defined) / len(defined), 4) if defined else None
                  for t in THRESHOLDS]
        out.append({"feature_class": name, "features": len(values), "with_icc": len(defined),
                    "share_icc_0.75": shares[0], "share_icc_0.9": shares[1]})
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
