"""Radiomics throughput: lesions per second with 1 and 2 worker processes.

    PYTHONPATH=src .venv/bin/python benchmarks/radiomics_throughput.py --work /tmp/rad_bench \\
        [--patients 4] [--matrix 256] [--slices 48] [--workers 1 2] [--classes shape firstorder]

Generates a cohort (`livermets synth`, seed 0) in `WORK/cohort` once, then runs
`livermets radiomics` on its reference masks (the CT preset, or only `--classes`) into a fresh
`WORK/w<N>` per worker count, and prints (and writes `WORK/throughput.json`) the lesions, the
seconds and the lesions per second of each run (`radiomics.json`'s timing: extraction only,
process start-up included).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from livermets.datasets.synth import generate_cohort
from livermets.radiomics.run import RECORD_FILE, radiomics_manifest
from livermets.radiomics.settings import default_params

logger = logging.getLogger("radiomics_throughput")


def measure(work: Path, *, patients: int, matrix: int, slices: int, workers: list[int],
            classes: list[str] | None) -> dict[str, Any]:
    """One radiomics run per worker count on the generated cohort in `work/cohort`."""
    cohort = work / "cohort"
    manifest = cohort / "manifest.csv"
    if not manifest.is_file():
        generate_cohort(cohort, patients=patients, seed=0, matrix=matrix, slices=slices,
                        overwrite=True)
    params = default_params()
    if classes:
        params["featureClass"] = {name: [] for name in classes}
    runs = []
    for count in workers:
        out = work / f"w{count}"
        shutil.rmtree(out, ignore_errors=True)
        radiomics_manifest(manifest, out, params=params, workers=count, progress=False)
        timing = json.loads((out / RECORD_FILE).read_text())["timing"]
        runs.append({"workers": count, "lesions": timing["lesions_computed"],
                     "seconds": timing["seconds"],
                     "lesions_per_second": timing["lesions_per_second"]})
        logger.info("%d worker(s): %d lesions in %.1f s: %.2f lesions/s", count,
                    timing["lesions_computed"], timing["seconds"],
                    timing["lesions_per_second"])
    return {"cohort": {"patients": patients, "matrix": matrix, "slices": slices,
                       "cts": 2 * patients},
            "classes": sorted(params["featureClass"]), "runs": runs,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--classes", nargs="+", default=None,
                        help="Feature classes (default: the CT preset's seven).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    result = measure(args.work, patients=args.patients, matrix=args.matrix,
                     slices=args.slices, workers=args.workers, classes=args.classes)
    (args.work / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.info("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
