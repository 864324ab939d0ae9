"""`livermets demo`: the embedded default job, on a generated cohort.

For now it generates a small two-centre, two-time-point cohort (or reuses a finished one in
the same folder: its manifest.csv and truth.json exist), validates its manifest, and returns
the summary. The paper's full study on that cohort follows in later versions.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from livermets.datasets.synth import generate_cohort
from livermets.io.manifest import read_manifest, validate_manifest
from livermets.types import PathLike

logger = logging.getLogger(__name__)

DEMO_PATIENTS = 6
DEMO_MATRIX = 512


def run_demo(out_dir: PathLike, *, patients: int = DEMO_PATIENTS, matrix: int = DEMO_MATRIX,
             seed: int = 0) -> list[str]:
    """Generate (or reuse) the demo cohort in `out_dir/cohort`; return summary lines."""
    cohort = Path(out_dir) / "cohort"
    manifest, truth = cohort / "manifest.csv", cohort / "truth.json"
    if manifest.is_file() and truth.is_file():
        lines = [f"reusing the generated cohort in {cohort}"]
    else:
        summary = generate_cohort(cohort, patients=patients, seed=seed, matrix=matrix,
                                  overwrite=True)
        lines = summary.lines()
    rows = read_manifest(manifest)
    validate_manifest(rows, check_values=False)
    splits = Counter(row.split or "(none)" for row in rows)
    lesions = sum(len(tp["lesions"]) for patient in json.loads(truth.read_text())["patients"]
                  .values() for tp in patient["timepoints"].values())
    lines += [f"manifest checked: {len(rows)} CTs, splits "
              + ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
              + f", {lesions} reference lesions",
              f"next: livermets train --manifest {manifest} --task liver --out runs/liver"]
    return lines
