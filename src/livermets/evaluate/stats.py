"""The statistics of the paper's comparisons, on lesion-level results.

- `compare_proportions`: detection rates of two groups (sets, models, size groups) in a 2 x 2
  table: Pearson's chi-squared test with Yates' continuity correction (scipy's default for
  2 x 2), or Fisher's exact test when an expected count is below 5. When a margin is zero
  (e.g. every lesion of both groups detected) the groups cannot differ: p = 1, test "none".
- `mann_whitney`: lesion Dice between independent groups (e.g. TP1tr vs TP1tst),
  two-sided; exact for small samples without ties (scipy's `method="auto"`).
- `wilcoxon_signed_rank`: two models on the same lesions (paired), two-sided; pairs with
  zero difference are dropped (scipy's "wilcox"); all-zero differences give p = 1.
- `mcnemar_exact`: two models' detection on the same lesions (paired): the exact binomial
  test on the discordant lesions (detected by one model only); none discordant gives p = 1.
- `bootstrap_ci`: a percentile confidence interval resampling **patients** with replacement
  (their lesions are correlated), not lesions; seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

FISHER_BELOW = 5.0


@dataclass(frozen=True)
class TestResult:
    """A test's name, statistic (None for Fisher's and "none") and two-sided p-value."""

    test: str
    statistic: float | None
    p_value: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"test": self.test, "statistic": self.statistic, "p_value": self.p_value,
                **self.detail}


def compare_proportions(detected_a: int, total_a: int, detected_b: int, total_b: int
                        ) -> TestResult:
    """Compare detected_a / total_a with detected_b / total_b (module rules)."""
    for detected, total in ((detected_a, total_a), (detected_b, total_b)):
        if total < 1 or not 0 <= detected <= total:
            raise ValueError(f"need 0 <= detected <= total and total >= 1, got "
                             f"{detected}/{total}")
    table = np.array([[detected_a, total_a - detected_a], [detected_b, total_b - detected_b]])
    detail = {"table": table.tolist()}
    if (table.sum(axis=0) == 0).any():
        return TestResult("none", None, 1.0, detail)
    expected = stats.contingency.expected_freq(table)
    detail["min_expected"] = float(expected.min())
    if expected.min() < FISHER_BELOW:
        _, p = stats.fisher_exact(table, alternative="two-sided")
        return TestResult("fisher", None, float(p), detail)
    chi2, p, _, _ = stats.chi2_contingency(table, correction=True)
    return TestResult("chi2_yates", float(chi2), float(p), detail)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U test of `a` against `b` (independent groups)."""
    if len(a) < 1 or len(b) < 1:
        raise ValueError("Mann-Whitney needs at least one value in each group")
    result = stats.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    return TestResult("mann_whitney_u", float(result.statistic), float(result.pvalue),
                      {"n_a": len(a), "n_b": len(b)})


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Wilcoxon signed-rank test of paired `a` and `b` (same lesions, two models)."""
    if len(a) != len(b) or len(a) < 1:
        raise ValueError(f"need paired values of equal, non-zero length, got {len(a)} and "
                         f"{len(b)}")
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not differences.any():
        return TestResult("wilcoxon", None, 1.0, {"n_pairs": len(a), "n_nonzero": 0})
    result = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return TestResult("wilcoxon", float(result.statistic), float(result.pvalue),
                      {"n_pairs": len(a), "n_nonzero": int(np.count_nonzero(differences))})


def mcnemar_exact(detected_a: Sequence[bool], detected_b: Sequence[bool]) -> TestResult:
    """Exact McNemar test of paired detections (the same lesions under models a and b)."""
    if len(detected_a) != len(detected_b) or not detected_a:
        raise ValueError("need paired detections of equal, non-zero length")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(detected_a, detected_b, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(detected_a, detected_b, strict=True))
    detail = {"only_a": only_a, "only_b": only_b}
    if only_a + only_b == 0:
        return TestResult("mcnemar_exact", None, 1.0, detail)
    p = stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    return TestResult("mcnemar_exact", None, float(min(1.0, p)), detail)


def bootstrap_ci(by_patient: Mapping[str, Sequence[Any]],
                 statistic: Callable[[list[Any]], float], *, resamples: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of `statistic` over the pooled items of patients drawn with replacement.

    `by_patient`: each patient's items (e.g. its lesion rows); each resample draws as many
    patients as there are, with replacement, pools their items and applies `statistic`.
    """
    patients = [list(items) for items in by_patient.values()]
    if not patients:
        raise ValueError("bootstrap needs at least one patient")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(patients), size=len(patients))
        pooled = [item for k in drawn for item in patients[k]]
        if pooled:
            values.append(statistic(pooled))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def detection_rate(rows: Sequence[Mapping[str, Any]]) -> float:
    """Share of lesion rows whose `detected` is true."""
    return sum(bool(r["detected"]) for r in rows) / len(rows)


def mean_dice(rows: Sequence[Mapping[str, Any]]) -> float:
    """Mean `dice` of lesion rows."""
    return float(np.mean([float(r["dice"]) for r in rows]))
