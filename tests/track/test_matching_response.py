"""Lesion links over time and the response categories, on hand-built maps.

Lesions are squares one slice thick on a grid of 5 x 1 x 1 mm voxels, so a square of side s
pixels has the RECIST diameter s * sqrt(2) mm (corner to corner) and the volume 5 s^2 mm3:
diameter changes equal side changes, volume changes equal area changes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from livermets.measure import measure_lesions
from livermets.track.matching import link_lesions, match_rows
from livermets.track.response import response

SPACING = (5.0, 1.0, 1.0)
SHAPE = (3, 120, 200)


def _squares(*squares: tuple[int, int, int, int]) -> np.ndarray:
    """(label, y0, x0, side) squares on slice 1."""
    out = np.zeros(SHAPE, np.uint8)
    for label, y0, x0, side in squares:
        out[1, y0:y0 + side, x0:x0 + side] = label
    return out


def _links(baseline: np.ndarray, followup: np.ndarray, **kw: float) -> dict[tuple, str]:
    return {(link.baseline_id, link.followup_id): link.status
            for link in link_lesions(baseline, followup, SPACING, **kw)}


def test_persistent_disappeared_and_new() -> None:
    baseline = _squares((1, 10, 10, 20), (2, 60, 10, 10))
    followup = _squares((1, 14, 14, 20), (2, 80, 150, 8))  # 1 moved 4 px; 2 new, far away
    assert _links(baseline, followup) == {(1, 1): "persistent", (2, None): "disappeared",
                                          (None, 2): "new"}


def test_centroid_fallback_within_the_tolerance_only() -> None:
    baseline = _squares((1, 10, 10, 10))
    followup = _squares((1, 10, 30, 10))  # no overlap; centroids 20 mm apart
    assert _links(baseline, followup, tolerance_mm=25.0) == {(1, 1): "persistent"}
    assert _links(baseline, followup, tolerance_mm=15.0) == {(1, None): "disappeared",
                                                             (None, 1): "new"}
    [link] = [k for k in link_lesions(baseline, followup, SPACING, tolerance_mm=25.0)]
    assert link.distance_mm == pytest.approx(20.0)


def test_overlap_beats_distance_and_split_and_merge() -> None:
    # Split: baseline 1 (20 x 20) became two follow-up lesions over its halves.
    baseline = _squares((1, 10, 10, 20))
    followup = np.zeros(SHAPE, np.uint8)
    followup[1, 10:30, 10:22] = 1  # 240 px of it: the larger part
    followup[1, 10:30, 24:30] = 2  # 120 px
    assert _links(baseline, followup) == {(1, 1): "persistent", (1, 2): "split"}
    # Merge: two baseline lesions, one follow-up lesion covering both.
    merged = _links(followup, baseline)
    assert merged == {(1, 1): "persistent", (2, 1): "merged"}


def test_match_rows_give_the_changes() -> None:
    baseline = _squares((1, 10, 10, 20), (2, 60, 10, 10))
    followup = _squares((1, 10, 10, 10))
    links = link_lesions(baseline, followup, SPACING)
    rows = match_rows(links, measure_lesions(baseline, SPACING),
                      measure_lesions(followup, SPACING))
    persistent = next(r for r in rows if r["status"] == "persistent")
    assert persistent["baseline_diameter_mm"] == pytest.approx(20 * math.sqrt(2), abs=0.01)
    assert persistent["diameter_change_pct"] == pytest.approx(-50.0)
    assert persistent["volume_change_pct"] == pytest.approx(-75.0)  # area 400 -> 100
    gone = next(r for r in rows if r["status"] == "disappeared")
    assert (gone["followup_volume_ml"], gone["volume_change_pct"]) == (0.0, -100.0)


def _response(baseline: np.ndarray, followup: np.ndarray) -> dict[str, object]:
    links = link_lesions(baseline, followup, SPACING)
    return response(links, measure_lesions(baseline, SPACING), measure_lesions(followup, SPACING))


def test_partial_response_and_the_volumetric_boundary() -> None:
    # Sides 30 + 20 -> 18 + 12: the diameter sum falls 40% (PR); the volume falls from
    # 900 + 400 to 324 + 144 area units: -64%, just short of the volumetric -65% (vSD).
    result = _response(_squares((1, 5, 5, 30), (2, 60, 60, 20)),
                       _squares((1, 5, 5, 18), (2, 60, 60, 12)))
    assert result["recist_category"] == "PR" and result["sum_change_pct"] == pytest.approx(-40.0)
    assert result["volume_change_pct"] == pytest.approx(-64.0)
    assert result["volumetric_category"] == "vSD"


def test_progression_needs_20_percent_and_5_mm() -> None:
    # Side 8 -> 10: +25% but +2.8 mm: stable. Side 20 -> 25: +25% and +7.1 mm: progression.
    small = _response(_squares((1, 10, 10, 8)), _squares((1, 10, 10, 10)))
    assert small["recist_category"] == "SD"
    big = _response(_squares((1, 10, 10, 20)), _squares((1, 10, 10, 25)))
    assert big["recist_category"] == "PD"


def test_new_lesion_complete_response_and_two_targets() -> None:
    baseline = _squares((1, 10, 10, 20))
    assert _response(baseline, _squares((1, 10, 10, 20), (2, 80, 150, 8)))[
        "recist_category"] == "PD"
    gone = _response(baseline, np.zeros(SHAPE, np.uint8))
    assert (gone["recist_category"], gone["volumetric_category"]) == ("CR", "vCR")
    # Three measurable lesions: the two largest are the targets; the third may grow freely
    # (non-target progression is out of scope) and a 5 px (7 mm) lesion is not measurable.
    three = _squares((1, 5, 5, 40), (2, 60, 5, 30), (3, 5, 100, 20), (4, 80, 150, 5))
    grown = _squares((1, 5, 5, 40), (2, 60, 5, 30), (3, 5, 100, 50), (4, 80, 150, 5))
    result = _response(three, grown)
    assert result["target_lesions"] == [1, 2] and result["recist_category"] == "SD"
    assert result["sum_diameters_baseline_mm"] == pytest.approx(70 * math.sqrt(2), abs=0.01)


def test_progression_is_measured_from_the_nadir() -> None:
    # Side 30 at baseline (42.4 mm); a tp1 sum of side 15 (21.2 mm) is the nadir. At tp2 side
    # 20 (28.3 mm): -33% from baseline, but +33% and +7.1 mm over the nadir: PD, not PR.
    baseline, later = _squares((1, 10, 10, 30)), _squares((1, 10, 10, 20))
    links = link_lesions(baseline, later, SPACING)
    measures = measure_lesions(baseline, SPACING), measure_lesions(later, SPACING)
    nadir = 15 * math.sqrt(2)
    result = response(links, *measures, earlier_sums_mm=(nadir,))
    assert result["nadir_sum_mm"] == pytest.approx(nadir, abs=0.01)
    assert result["sum_change_pct"] == pytest.approx(-100 / 3, abs=0.01)
    assert result["recist_category"] == "PD"
    # Side 18 at tp2 (+20%, but only +4.2 mm over the nadir): PR from baseline (-40%).
    small = _squares((1, 10, 10, 18))
    assert response(link_lesions(baseline, small, SPACING), measures[0],
                    measure_lesions(small, SPACING), earlier_sums_mm=(nadir,))[
        "recist_category"] == "PR"
    # Without an earlier follow-up the baseline is the nadir: PR.
    assert response(links, *measures)["recist_category"] == "PR"
