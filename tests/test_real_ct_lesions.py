"""The summaries of benchmarks/real_ct_lesions.py, on fold results worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import repo_script

SCRIPT = "benchmarks/real_ct_lesions.py"


def _result(dice: list[float], false_positives: int) -> dict[str, Any]:
    """A lesion_leave_one_out result.json with these lesion Dice values (case "c")."""
    return {"lesions": [{"case_id": "c", "lesion_id": i, "dice": d, "detected": d > 0.2}
                        for i, d in enumerate(dice, start=1)],
            "breakdown": {"with_checks": {"false_positives": false_positives}}}


def test_folds_lits_and_targets_over_seeds() -> None:
    script = repo_script(SCRIPT)
    # IRCADb fold, two tumours over 3 seeds: tumour 1 found in seeds 0 and 2 (2 of 3), tumour
    # 2 in all; per-seed means 0.5, 0.45, 0.7 -> fold mean 0.55, spread 0.45-0.7.
    ircadb = script.fold_summary({0: _result([0.3, 0.7], 3), 1: _result([0.1, 0.8], 2),
                                  2: _result([0.6, 0.8], 1)}, "3Dircadb1.17")
    assert ircadb["dice_mean"] == pytest.approx(0.55, abs=1e-3)
    assert (ircadb["dice_min"], ircadb["dice_max"]) == (0.45, 0.7)
    assert [s["found"] for s in ircadb["per_seed"].values()] == [2, 1, 2]
    # CRLM fold, one tumour found in 1 of 3 seeds (Dice 0.9, 0, 0.1).
    crlm = script.fold_summary({0: _result([0.9], 2), 1: _result([0.0], 2),
                                2: _result([0.1], 2)}, "crlm1100")
    # LiTS, one seed: lesions 1-4 of 100, 40, 29 and 30 voxels; lesion 3 (29) does not count.
    # Found: 1 (0.8) and 4 (0.6), missed 2 (0.1): 2 of 3, Dice of the found 0.7, all 0.5.
    lits = script.lits_summary({0: _result([0.8, 0.1, 0.9, 0.6], 0)},
                               {0: {("c", 1): 100, ("c", 2): 40, ("c", 3): 29, ("c", 4): 30}})
    assert lits["lesions"] == 3 and lits["detection_rate"] == pytest.approx(0.667, abs=1e-3)
    assert lits["dice_mean"] == 0.5 and lits["dice_mean_detected"] == 0.7
    validation = {"ircadb17_false_positives": 2, "generated_detection": 0.9,
                  "generated_small_detection": 0.6, "generated_false_positives_per_ct": 1.0}
    targets = script.targets_met([ircadb, crlm], lits, [validation])
    # The worst tumour (CRLM) is found in 1 of 3 seeds; the tumours' mean Dice is
    # (0.333 + 0.767 + 0.333) / 3 = 0.478.
    assert targets["fold_tumours_found_in_seeds"] == {
        "value": 0.333, "target": pytest.approx(2 / 3), "met": False}
    assert targets["fold_tumours_dice"]["value"] == pytest.approx(0.478, abs=1e-3)
    assert not targets["fold_tumours_dice"]["met"]
    assert not targets["lits_detection"]["met"] and targets["lits_dice"]["met"]
    assert targets["ircadb17_false_positives"]["met"]  # 2 <= 2
    assert targets["generated_detection"]["met"] and not targets["generated_small_detection"]["met"]
    assert targets["generated_false_positives_per_ct"]["met"]  # 1.0 <= 1
