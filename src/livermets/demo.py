"""`livermets demo`: the embedded default job, the paper's study on a generated cohort.

Generates a small two-centre, two-time-point cohort in `OUT/cohort` (or reuses a finished one:
its manifest.csv and truth.json exist), then runs `livermets study` on it in `OUT/study` at a
size that finishes in minutes on two CPU cores: small networks on small grids and few epochs
(`DEMO_SETTINGS`), so the numbers show the pipeline working, not the paper's accuracy.
Re-running resumes (finished models and predictions are reused).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from livermets.datasets.synth import generate_cohort
from livermets.errors import InputError
from livermets.io.manifest import read_manifest, validate_manifest
from livermets.io.safe_paths import check_out_folder
from livermets.radiomics.settings import DEFAULT_PARAMS, default_params
from livermets.study import StudySettings, run_study
from livermets.types import PathLike

logger = logging.getLogger(__name__)

DEMO_PATIENTS = 10
DEMO_MATRIX = 256
#: Small enough for two CPU cores: the liver model on 64 px, the lesion models on 128 px.
#: Radiomics on each CT's own grid: resampling every lesion to 1 mm is 5/6 of the preset's time
#: (3.5 against 17 lesions/s, benchmarks/RESULTS.md); the agreement compares two masks of one
#: CT, so the grid does not change what the demo shows.
DEMO_RADIOMICS = default_params() | {
    "setting": {k: v for k, v in DEFAULT_PARAMS["setting"].items()
                if k not in ("resampledPixelSpacing", "interpolator")}}
DEMO_SETTINGS = StudySettings(
    common={"batch_size": 8},
    liver={"image_size": 64, "base_width": 8, "epochs": 8},
    lesion={"image_size": 128, "base_width": 16, "epochs": 12, "slices_per_epoch": 256},
    report_cases=6,
    radiomics_params=DEMO_RADIOMICS,
)


def run_demo(out_dir: PathLike, *, patients: int = DEMO_PATIENTS, matrix: int = DEMO_MATRIX,
             seed: int = 0, study: bool = True,
             progress: Callable[[str], None] | None = None) -> list[str]:
    """Generate (or reuse) the demo cohort in `out_dir/cohort` and run the study on it.

    Returns summary lines (the report's path last). `study=False` stops after the cohort.
    """
    root = Path(out_dir)
    check_out_folder(root)
    cohort = root / "cohort"
    manifest, truth = cohort / "manifest.csv", cohort / "truth.json"
    if manifest.is_file() and truth.is_file():
        lines = [f"reusing the generated cohort in {cohort}"]
    elif cohort.is_dir() and any(cohort.iterdir()):
        raise InputError(f"{cohort} holds files but no generated cohort (no truth.json): "
                         "livermets did not write it; choose another --out")
    else:
        summary = generate_cohort(cohort, patients=patients, seed=seed, matrix=matrix,
                                  overwrite=True)
        lines = summary.lines()
    rows = read_manifest(manifest)
    validate_manifest(rows, check_values=False)
    splits = Counter(row.split or "(none)" for row in rows)
    lesions = sum(len(tp["lesions"]) for patient in json.loads(truth.read_text())["patients"]
                  .values() for tp in patient["timepoints"].values())
    lines.append(f"manifest checked: {len(rows)} CTs, splits "
                 + ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
                 + f", {lesions} reference lesions")
    if study:
        report = run_study(manifest, root / "study", DEMO_SETTINGS, progress=progress)
        lines.append(f"report: {report}")
    return lines
