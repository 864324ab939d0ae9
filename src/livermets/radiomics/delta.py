"""Delta-radiomics: each feature's change between the two lesions of a persistent pair.

The pairs are `track`'s: every `matches.csv` of a `track` output folder
(`DIR/<patient_id>/matches.csv`, later follow-ups in `DIR/<patient_id>/<tpN>/`), rows with
status `persistent`. Which CTs and masks a pair belongs to is read from the `response.json`
beside it (the lesion masks `track` was given), so that a folder tracked on the reference masks
gives `mask_source` `reference` and one tracked on `predict`'s masks gives `predicted`: a mask
path is looked up among the masks `radiomics` extracts (`MaskIndex`).

Per pair and feature: `<feature>_delta` = follow-up - baseline (the feature's units), and
`<feature>_relative` = delta / |baseline| (a fraction; empty when the baseline value is 0).
Both are empty when either lesion has no value for the feature; a lesion without a row in the
feature table (e.g. under the reference's minimum volume) is named in the row's `note`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from livermets.errors import InputError

DELTA_IDENTITY = ("patient_id", "mask_source", "baseline_case_id", "baseline_lesion_id",
                  "followup_case_id", "followup_lesion_id")
MATCHES, RESPONSE = "matches.csv", "response.json"


@dataclass(frozen=True)
class MaskOwner:
    """The CT a lesion mask belongs to, and the mask's source (`reference` or `predicted`)."""

    case_id: str
    patient_id: str
    source: str


#: {resolved lesion mask path: its owner}, for every mask `radiomics` extracts.
MaskIndex = Mapping[Path, MaskOwner]


@dataclass(frozen=True)
class TrackedPair:
    """A persistent pair of `track`, placed on the CTs and mask source it came from."""

    patient_id: str
    source: str
    baseline_case_id: str
    baseline_lesion_id: str
    followup_case_id: str
    followup_lesion_id: str


def tracked_pairs(tracking: Path, masks: MaskIndex) -> list[TrackedPair]:
    """Every persistent pair under the `track` output folder `tracking` (module docstring),
    in folder order then `matches.csv` order.

    `InputError` (before anything is written) when `tracking` is not a folder, holds no
    `matches.csv`, one is unreadable or lacks its `response.json`, or a tracked mask is none of
    `masks` (e.g. tracked on predictions without `--predictions`).
    """
    if not tracking.is_dir():
        raise InputError(f"--tracking {tracking}: no such folder")
    found = sorted(tracking.glob(f"*/{MATCHES}")) + sorted(tracking.glob(f"*/*/{MATCHES}"))
    if not found:
        raise InputError(f"--tracking {tracking} holds no <patient>/{MATCHES}; give the "
                         "output folder of `livermets track`")
    pairs: list[TrackedPair] = []
    for matches in sorted(found, key=lambda p: p.relative_to(tracking).parts):
        baseline, followup = _owners(matches.parent / RESPONSE, masks)
        if baseline.source != followup.source or baseline.patient_id != followup.patient_id:
            raise InputError(f"{matches.parent / RESPONSE}: its baseline ({baseline.case_id}, "
                             f"{baseline.source}) and follow-up ({followup.case_id}, "
                             f"{followup.source}) masks are not one patient's, one source's")
        for row in _read_matches(matches):
            if row["status"] == "persistent":
                pairs.append(TrackedPair(baseline.patient_id, baseline.source,
                                         baseline.case_id, row["baseline_lesion_id"],
                                         followup.case_id, row["followup_lesion_id"]))
    return pairs


def _read_matches(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path} is not readable ({error})") from None
    needed = ("baseline_lesion_id", "followup_lesion_id", "status")
    if rows and any(column not in rows[0] for column in needed):
        raise InputError(f"{path} lacks the columns {', '.join(needed)}; is it `track`'s?")
    return rows


def _owners(response: Path, masks: MaskIndex) -> tuple[MaskOwner, MaskOwner]:
    """The owners of the baseline and follow-up lesion masks `response` names."""
    try:
        record = json.loads(response.read_text(encoding="utf-8"))
        paths = [Path(record[point]["lesions"]) for point in ("baseline", "followup")]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{response} is missing or not `track`'s record ({error}); "
                         "re-run `livermets track`") from None
    owners = []
    for path in paths:
        owner = masks.get(path.resolve())
        if owner is None:
            raise InputError(f"{response}: the tracked lesion mask {path} is not one this run "
                             "extracts (the manifest's lesion_mask, or with --predictions "
                             "PRED/<case_id>/lesions.nii.gz); give the manifest and "
                             "predictions `track` used")
        owners.append(owner)
    return owners[0], owners[1]


def delta_rows(pairs: Sequence[TrackedPair],
               features: Mapping[tuple[str, str, str], Mapping[str, str]],
               names: Sequence[str]) -> list[dict[str, object]]:
    """One row per pair: `DELTA_IDENTITY`, then per feature of `names` its `_delta` and
    `_relative`, then `note`. `features`: features.csv rows by (case_id, mask_source,
    lesion_id)."""
    out: list[dict[str, object]] = []
    for pair in pairs:
        base = features.get((pair.baseline_case_id, pair.source, pair.baseline_lesion_id))
        follow = features.get((pair.followup_case_id, pair.source, pair.followup_lesion_id))
        row: dict[str, object] = {
            "patient_id": pair.patient_id, "mask_source": pair.source,
            "baseline_case_id": pair.baseline_case_id,
            "baseline_lesion_id": pair.baseline_lesion_id,
            "followup_case_id": pair.followup_case_id,
            "followup_lesion_id": pair.followup_lesion_id}
        for name in names:
            before = _value(base, name)
            after = _value(follow, name)
            change = None if before is None or after is None else after - before
            row[f"{name}_delta"] = change
            row[f"{name}_relative"] = (change / abs(before) if change is not None
                                       and before else None)
        missing = [f"{what} lesion {lesion} ({case})" for what, lesion, case, found in (
            ("baseline", pair.baseline_lesion_id, pair.baseline_case_id, base),
            ("follow-up", pair.followup_lesion_id, pair.followup_case_id, follow))
            if found is None]
        row["note"] = ("no features for " + " and ".join(missing)) if missing else ""
        out.append(row)
    return out


def delta_columns(names: Sequence[str]) -> list[str]:
    """delta.csv's columns for the features `names`."""
    return [*DELTA_IDENTITY, *(f"{n}_{kind}" for n in names for kind in ("delta", "relative")),
            "note"]


def _value(row: Mapping[str, str] | None, name: str) -> float | None:
    text = row.get(name) if row is not None else None
    return float(text) if text not in (None, "") else None
