"""Predict throughput: CTs per minute with 1 and 2 processes and the threads per process.

    PYTHONPATH=src .venv/bin/python benchmarks/predict_throughput.py --work /tmp/pred_tp \\
        [--patients 2] [--matrix 256] [--slices 48] [--repeats 2]
        [--configs 1x2 1x1 2x1-shard 2x1-torchrun]

Generates a cohort (`livermets synth`, seed 0) in `WORK/cohort` once, then runs `livermets
predict --manifest` with the shipped starter models (predict's defaults) into a fresh
`WORK/<config>` per configuration, in turn:

- `1x2`, `1x1`: one process with 2 or 1 torch threads (`OMP_NUM_THREADS`);
- `2x1-shard`: two processes at once, `--shard 1/2` and `--shard 2/2`, 1 thread each, then
  `--merge`;
- `2x1-torchrun`: `torchrun --standalone --nproc_per_node 2`, whose ranks set their own
  threads (cores / ranks: 1 on 2 cores).

Each configuration's time is the wall clock from launch to the last process's exit (start-up,
model loading and writing included, as a user sees it). An untimed warm-up run (`1x1` on a
copy of the first CT) fills the file cache first; with `--repeats N` the configurations run
N times, in reverse order every other time, and the median counts. Prints (and writes
`WORK/throughput.json`) the CTs per minute of each, its ratio to `1x2`, the CPU seconds per CT
(user + system of all its processes, start-up included) and whether every configuration
wrote the same lesion tables as the first.

Each process starts in its own session: on Linux with autogroup scheduling
(`/proc/sys/kernel/sched_autogroup_enabled`), a busy machine shares its cores among sessions,
so N processes get N shares against other jobs, as N separate jobs (or torchrun's ranks, which
start in their own sessions) would.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from livermets.datasets.synth import generate_cohort
from livermets.io.manifest import read_manifest

logger = logging.getLogger("predict_throughput")
CONFIGS = ("1x2", "1x1", "2x1-shard", "2x1-torchrun")


def _environment(threads: int) -> dict[str, str]:
    """This process's environment with `threads` threads for torch, OpenMP and ITK."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads)}


def _predict(manifest: Path, out: Path, *extra: str) -> list[str]:
    """`python -m livermets predict` on `manifest` into `out` (starter models)."""
    return [sys.executable, "-m", "livermets", "predict", "--manifest", str(manifest),
            "--out", str(out), *extra]


def commands(config: str, manifest: Path, out: Path) -> tuple[list[list[str]], int]:
    """The processes launched at once for `config` and the threads of each."""
    if config in ("1x2", "1x1"):
        return [_predict(manifest, out)], int(config[-1])
    if config == "2x1-shard":
        return [_predict(manifest, out, "--shard", f"{k}/2") for k in (1, 2)], 1
    if config == "2x1-torchrun":
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        if torchrun is None:
            raise SystemExit("torchrun not found beside this Python")
        return [[torchrun, "--standalone", "--nproc_per_node", "2",
                 *_predict(manifest, out)[1:]]], 1
    raise SystemExit(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")


def run_config(config: str, manifest: Path, out: Path) -> tuple[float, float]:
    """Launch `config`'s processes at once, each in its own session (as separate jobs are);
    the seconds until the last one has exited, and the CPU seconds they used (user + system,
    torchrun's ranks included)."""
    shutil.rmtree(out, ignore_errors=True)
    launched, threads = commands(config, manifest, out)
    cpu_before = _children_cpu()
    tic = time.perf_counter()
    processes = [subprocess.Popen(command, env=_environment(threads),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True) for command in launched]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{config}: exit code {process.returncode}: {err[-2000:]}")
    seconds = time.perf_counter() - tic
    cpu = _children_cpu() - cpu_before
    if config == "2x1-shard":  # the cohort's summary, for completeness (not timed)
        subprocess.run(_predict(manifest, out, "--merge"), check=True,
                       stdout=subprocess.DEVNULL)
    return seconds, cpu


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lesion_tables(out: Path) -> dict[str, str]:
    """Each case's lesions.csv text, to check that every configuration predicted the same."""
    return {p.parent.name: p.read_text() for p in sorted(out.glob("*/lesions.csv"))}


def warm_up(manifest: Path, out: Path) -> None:
    """An untimed one-CT predict (1 thread), so that the first timed run does not pay for
    reading torch and the models from disk."""
    first = read_manifest(manifest)[0]
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "livermets", "predict", str(first.image),
                    "--out", str(out)], env=_environment(1), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(work: Path, *, patients: int, matrix: int, slices: int, configs: list[str],
            repeats: int) -> dict[str, Any]:
    """One predict run per configuration on the generated cohort in `work/cohort`."""
    cohort = work / "cohort"
    manifest = cohort / "manifest.csv"
    if not manifest.is_file():
        generate_cohort(cohort, patients=patients, seed=0, matrix=matrix, slices=slices,
                        overwrite=True)
    cts = len(read_manifest(manifest))
    load_before = os.getloadavg()
    warm_up(manifest, work / "warm_up")
    seconds: dict[str, list[float]] = {config: [] for config in configs}
    cpu: dict[str, list[float]] = {config: [] for config in configs}
    same = dict.fromkeys(configs, True)
    first_tables = None
    for repeat in range(repeats):
        for config in configs if repeat % 2 == 0 else list(reversed(configs)):
            wall, used = run_config(config, manifest, work / config)
            seconds[config].append(wall)
            cpu[config].append(used)
            tables = lesion_tables(work / config)
            first_tables = first_tables or tables
            same[config] &= tables == first_tables and len(tables) == cts
            logger.info("%s: %d CTs in %.1f s: %.2f CTs/min", config, cts,
                        seconds[config][-1], 60 * cts / seconds[config][-1])
    runs = [{"config": config, "cts": cts, "seconds": [round(t, 1) for t in seconds[config]],
             "median_seconds": round(statistics.median(seconds[config]), 1),
             "cts_per_minute": round(60 * cts / statistics.median(seconds[config]), 2),
             "cpu_seconds_per_ct": round(statistics.median(cpu[config]) / cts, 1),
             "same_lesions_as_first": same[config]} for config in configs]
    base = next((r["cts_per_minute"] for r in runs if r["config"] == "1x2"), None)
    for run in runs:
        run["ratio_to_1x2"] = round(run["cts_per_minute"] / base, 2) if base else None
    return {"cohort": {"patients": patients, "matrix": matrix, "slices": slices, "cts": cts},
            "repeats": repeats, "runs": runs, "load_average": {"before": load_before,
                                                 "after": os.getloadavg()},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    result = measure(args.work, patients=args.patients, matrix=args.matrix,
                     slices=args.slices, configs=args.configs, repeats=args.repeats)
    (args.work / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.info("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
