"""ICC(3,1): Shrout & Fleiss' (1979) table, an independent least-squares ANOVA, the policies
for degenerate features; and the per-feature and per-class agreement tables."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from livermets.radiomics.agreement import (
    Icc,
    agreement_rows,
    agreement_summary,
    feature_class,
    icc_3_1,
)

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                 [6, 2, 4, 7]]


def test_shrout_fleiss_table() -> None:
    result = icc_3_1(SHROUT_FLEISS)
    # Their Table 3 gives BMS 11.24 and EMS 1.02, so ICC(3,1) = (11.24 - 1.02) /
    # (11.24 + 3 * 1.02) = 0.71; exactly, MSR = 11.2417 and MSE = 1.0194: 0.7148.
    assert round(result.icc, 2) == 0.71
    assert result.icc == pytest.approx((11.241667 - 1.019444) / (11.241667 + 3 * 1.019444),
                                       abs=1e-6)
    assert result.n == 6
    # The 95% interval as R's psych::ICC prints it for these data: 0.34 to 0.95.
    assert (round(result.ci_low, 2), round(result.ci_high, 2)) == (0.34, 0.95)


def _independent_icc(table: np.ndarray, confidence: float = 0.95) -> tuple[float, ...]:
    """ICC(3,1) from a least-squares fit of the additive two-way model (dummy-coded targets
    and raters) and the lower-tail F quantile (F(1-a/2; d2, d1) = 1 / F(a/2; d1, d2))."""
    n, k = table.shape
    y = table.ravel()
    targets = np.repeat(np.eye(n), k, axis=0)
    raters = np.tile(np.eye(k), (n, 1))[:, 1:]
    design = np.hstack([targets, raters])
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    raters_only = np.hstack([np.ones((n * k, 1)), raters])
    fitted_raters = raters_only @ np.linalg.lstsq(raters_only, y, rcond=None)[0]
    sse = float(np.sum((y - fitted) ** 2))
    ss_targets = float(np.sum((fitted - fitted_raters) ** 2))  # extra SS of the targets
    msr, mse = ss_targets / (n - 1), sse / ((n - 1) * (k - 1))
    icc = (msr - mse) / (msr + (k - 1) * mse)
    alpha = 1 - confidence
    d1, d2 = n - 1, (n - 1) * (k - 1)
    f_low = msr / mse / stats.f.isf(alpha / 2, d1, d2)
    f_high = msr / mse / stats.f.ppf(alpha / 2, d1, d2)
    return icc, (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_an_independent_anova(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(100, 20, size=(15, 1))
    table = truth + rng.normal(0, 8, size=(15, 2)) + np.array([0.0, 5.0])  # a rater bias
    result = icc_3_1(table)
    expected = _independent_icc(table)
    assert (result.icc, result.ci_low, result.ci_high) == pytest.approx(expected, rel=1e-9)
    # Consistency: a constant offset of one rater changes nothing.
    shifted = icc_3_1(table + np.array([0.0, 1000.0]))
    assert shifted.icc == pytest.approx(result.icc, rel=1e-9)
    # 90% interval inside the 95% one.
    narrow = icc_3_1(table, confidence=0.9)
    assert result.ci_low < narrow.ci_low < narrow.icc < narrow.ci_high < result.ci_high


def test_degenerate_features() -> None:
    assert icc_3_1(np.full((5, 2), 3.5)) == Icc(None, None, None, 5)  # zero variance
    assert icc_3_1([[1.0, 2.0]]) == Icc(None, None, None, 1)  # one lesion
    assert icc_3_1(np.zeros((0, 2))) == Icc(None, None, None, 0)
    # Exact agreement up to a constant offset: 1, interval (1, 1).
    assert icc_3_1([[1.0, 3.0], [2.0, 4.0], [5.0, 7.0]]) == Icc(1.0, 1.0, 1.0, 3)
    # Two lesions, raters disagreeing in opposite ways: equal lesion means, MSR = 0;
    # residuals +-0.5, MSE = 1 / 1: ICC = (0 - 1) / (0 + 1) = -1.
    assert icc_3_1([[0.0, 1.0], [1.0, 0.0]]).icc == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="2 or more raters"):
        icc_3_1([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        icc_3_1([[1.0, np.nan], [2.0, 3.0]])


def test_agreement_rows_and_summary() -> None:
    a, b, c = "original_shape_VoxelVolume", "original_glcm_Contrast", "original_glcm_Idm"
    pairs = [({a: "1", b: "5", c: "2"}, {a: "3", b: "5", c: "2"}),
             ({a: "2", b: "5", c: ""}, {a: "4", b: "5", c: "2"}),
             ({a: "5", b: "5", c: "1"}, {a: "7", b: "5", c: "0"})]
    rows = agreement_rows(pairs, [a, b, c])
    assert rows[0] == {"feature": a, "feature_class": "shape", "icc": 1.0, "ci_low": 1.0,
                       "ci_high": 1.0, "n": 3}
    assert rows[1] == {"feature": b, "feature_class": "glcm", "icc": None, "ci_low": None,
                       "ci_high": None, "n": 3}  # the same value everywhere
    # c: the second lesion's reference value is missing, so n = 2: (2, 2) and (1, 0):
    # row means 2, 0.5, column means 1.5, 1, grand 1.25: MSR = 2 * (0.5625 * 2) = 2.25,
    # residuals +-0.25: MSE = 0.25: ICC = 2 / 2.5 = 0.8.
    assert rows[2]["n"] == 2 and rows[2]["icc"] == 0.8
    assert agreement_summary(rows) == [
        {"feature_class": "shape", "features": 1, "with_icc": 1, "share_icc_0.75": 1.0,
         "share_icc_0.9": 1.0},
        {"feature_class": "glcm", "features": 2, "with_icc": 1, "share_icc_0.75": 1.0,
         "share_icc_0.9": 0.0}]
    assert feature_class("wavelet-LLH_firstorder_Mean") == "firstorder"
