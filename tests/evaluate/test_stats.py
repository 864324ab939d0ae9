"""The statistics against hand-worked values and scipy called directly on the same numbers."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy import stats

from livermets.evaluate.stats import (
    bootstrap_ci,
    compare_proportions,
    detection_rate,
    mann_whitney,
    mcnemar_exact,
    mean_dice,
    wilcoxon_signed_rank,
)


def test_paper_sized_detection_counts_use_chi_squared() -> None:
    # The paper's training set, No-TL 130/134 vs TL 126/134: expected misses 6 per group.
    result = compare_proportions(130, 134, 126, 134)
    assert result.test == "chi2_yates" and result.detail["min_expected"] == 6.0
    # Yates by hand: |ad - bc| = |130*8 - 4*126| = 536; N = 268; margins 256, 12, 134, 134.
    chi2 = 268 * (536 - 268 / 2) ** 2 / (256 * 12 * 134 * 134)
    assert result.statistic == pytest.approx(chi2)
    assert result.p_value == pytest.approx(stats.chi2.sf(chi2, df=1))


def test_small_counts_use_fisher() -> None:
    result = compare_proportions(3, 4, 1, 4)
    assert result.test == "fisher" and result.statistic is None
    # Hypergeometric by hand: P(a = k) = C(4, k) C(4, 4 - k) / C(8, 4); tables at least as
    # extreme as a = 3 are a = 0, 1, 3, 4: (1 + 16 + 16 + 1) / 70.
    assert result.p_value == pytest.approx((1 + 16 + 16 + 1) / comb(8, 4))


def test_identical_margins_cannot_differ() -> None:
    result = compare_proportions(10, 10, 7, 7)
    assert (result.test, result.p_value) == ("none", 1.0)
    with pytest.raises(ValueError, match="detected <= total"):
        compare_proportions(5, 4, 1, 2)


def test_mann_whitney_exact_by_hand() -> None:
    # Complete separation of 3 vs 3: 2 of the C(6, 3) = 20 orderings are as extreme.
    result = mann_whitney([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert result.statistic == 0.0 and result.p_value == pytest.approx(2 / 20)
    a = [0.8, 0.6, 0.75, 0.9, 0.3, 0.55, 0.7]
    b = [0.5, 0.65, 0.4, 0.2, 0.62]
    expected = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert mann_whitney(a, b).p_value == pytest.approx(expected.pvalue)


def test_wilcoxon_exact_by_hand() -> None:
    # Five positive differences: 2 of the 2^5 sign patterns are as extreme.
    result = wilcoxon_signed_rank([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.6, 0.4, 0.2, 0.0])
    assert result.statistic == 0.0 and result.p_value == pytest.approx(2 / 32)
    assert wilcoxon_signed_rank([0.5, 0.4], [0.5, 0.4]).p_value == 1.0
    with pytest.raises(ValueError, match="paired"):
        wilcoxon_signed_rank([0.1], [0.1, 0.2])


def test_bootstrap_resamples_patients_not_lesions() -> None:
    # Patient A: 100 lesions all detected; B: 100 all missed. Drawing patients gives the
    # rates 1 (A, A), 0.5 (A, B or B, A) or 0 (B, B): the 95% interval spans 0 to 1.
    # Drawing lesions would give about 0.5 +/- 0.07.
    cohort = {"A": [{"detected": True}] * 100, "B": [{"detected": False}] * 100}
    low, high = bootstrap_ci(cohort, detection_rate, resamples=1000, seed=1)
    assert (low, high) == (0.0, 1.0)
    same = {f"p{k}": [{"dice": 0.7, "detected": True}] for k in range(5)}
    assert bootstrap_ci(same, mean_dice, resamples=200) == pytest.approx((0.7, 0.7))


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    cohort = {f"p{k}": [{"dice": float(d)} for d in rng.uniform(0, 1, size=3)]
              for k in range(12)}
    first = bootstrap_ci(cohort, mean_dice, seed=4)
    assert first == bootstrap_ci(cohort, mean_dice, seed=4)
    assert first[0] < mean_dice([r for rows in cohort.values() for r in rows]) < first[1]


def test_mcnemar_exact_by_hand() -> None:
    # 6 lesions found by a only, 1 by b only: P(X <= 1 | n = 7, 1/2) = 8/128, doubled.
    a = [True] * 6 + [False] + [True] * 5
    b = [False] * 6 + [True] + [True] * 5
    result = mcnemar_exact(a, b)
    assert result.detail == {"only_a": 6, "only_b": 1}
    assert result.p_value == pytest.approx(2 * 8 / 128)
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0
