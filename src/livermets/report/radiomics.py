"""The report's radiomics section, from a `livermets radiomics` folder.

Reads `agreement.csv` (per feature ICC(3,1) of predicted vs reference masks),
`agreement_summary.csv` and `radiomics.json`: a figure of the ICC distribution per feature
class, the per-class shares of features with ICC >= 0.75 and >= 0.9, and the `count` features
most and least robust to automatic segmentation (highest and lowest ICC); plus how many
lesions and delta pairs the folder holds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from livermets.radiomics.agreement import THRESHOLDS
from livermets.radiomics.run import (
    AGREEMENT_FILE,
    AGREEMENT_SUMMARY_FILE,
    DELTA_FILE,
    RECORD_FILE,
)
from livermets.report.figures import icc_by_class

Row = dict[str, Any]


def radiomics_context(folder: Path, *, count: int = 5) -> Row | None:
    """The section's content, or None when `folder` holds no finished radiomics run."""
    record_path = folder / RECORD_FILE
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("status") != "finished":
        return None
    context: Row = {"folder": str(folder), "lesions": record.get("lesions", 0),
                    "classes": sorted(record.get("params", {}).get("featureClass", {})),
                    "delta": record.get("delta"), "delta_file": str(folder / DELTA_FILE),
                    "agreement": None, "thresholds": THRESHOLDS}
    agreement = folder / AGREEMENT_FILE
    if not agreement.is_file() or "agreement" not in record:
        return context
    rows = _read(agreement)
    defined: list[Row] = [{**r, "icc": float(r["icc"])} for r in rows if r["icc"]]
    ranked = sorted(defined, key=lambda r: (-r["icc"], r["feature"]))
    by_class: dict[str, list[float]] = {}
    for row in defined:
        by_class.setdefault(str(row["feature_class"]), []).append(float(row["icc"]))
    context["agreement"] = {
        "lesion_pairs": record["agreement"]["lesion_pairs"],
        "cases": record["agreement"]["cases"], "features": len(rows),
        "undefined": len(rows) - len(defined),
        "summary": _read(folder / AGREEMENT_SUMMARY_FILE),
        "most": ranked[:count], "least": ranked[::-1][:count],
        "figure": icc_by_class(by_class, THRESHOLDS) if defined else None}
    return context


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))
