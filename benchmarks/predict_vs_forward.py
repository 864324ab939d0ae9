"""`livermets predict` on one CT against the paper U-Net's forward pass over its slices, same run.

    .venv/bin/python benchmarks/predict_vs_forward.py --out /tmp/pvf [--repeats 2]

The CT is 3D-IRCADb-01 1.17 (DICOM, 119 x 512 x 512, ../shared/data). Each repeat times, one
after the other: the `livermets predict` command (a fresh process, the shipped starter models,
default settings: what a user runs, start-up included), and the forward pass of an untrained
paper-size U-Net (width 32, 256 x 256, batch 8, channels_last) over 119 slices, in fp32 and in
bf16 autocast. Prints and writes `OUT/predict_vs_forward.json`: the seconds of each and the
ratios predict / forward (median over repeats), the figure the real-CT issue bounds at 1.5.
With `--without-flip` each repeat also times `predict --no-flip-tta` (one lesion pass, the
cost of the default flip read off in the same run). With `--old-rev REV` each repeat also times
`predict` of the `src` tree of git revision REV (`python -m livermets` with it first on
PYTHONPATH), before or after the current one by turns: old and new measured in one run. Each
predict's user and system CPU seconds are recorded too (`cpu`): on these virtual machines the
system time of the same command varies 1-3.6 s from run to run (page faults), which is most
of the spread of the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from livermets.models import create_model

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT.parent / "shared" / "data" / "ircadb" / "3Dircadb1.17" / "PATIENT_DICOM"
SLICES = 119


def forward_seconds(bf16: bool, batch: int = 8) -> float:
    """Seconds of the paper U-Net's forward pass over `SLICES` 256 x 256 slices."""
    model = create_model("unet", base_width=32).eval().to(memory_format=torch.channels_last)
    images = torch.randn(batch, 1, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        model(images)  # warm-up
        tic = time.perf_counter()
        for _ in range(-(-SLICES // batch)):
            model(images)
        return time.perf_counter() - tic


def predict_seconds(out: Path, *extra: str, src: Path | None = None,
                    cpu: dict[str, Any] | None = None) -> float:
    """Wall seconds of `livermets predict CT --out OUT [extra]` in a fresh process; with `src`
    the livermets of that source tree (`python -m livermets`, `src` first on PYTHONPATH). When
    `cpu` is given, the process's user and system CPU seconds are stored in it."""
    shutil.rmtree(out, ignore_errors=True)
    command = ([sys.executable, "-m", "livermets"] if src is not None
               else [str(Path(sys.executable).with_name("livermets"))])
    env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run([*command, "predict", str(CT), "--out", str(out), "--case-id", "ircadb117",
                    *extra], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.update(user_s=round(after.ru_utime - before.ru_utime, 2),
                   system_s=round(after.ru_stime - before.ru_stime, 2))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--without-flip", action="store_true",
                        help="Also time predict --no-flip-tta in each repeat.")
    parser.add_argument("--old-rev", default=None,
                        help="Also time predict of this git revision's src in each repeat.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_src = None
        if args.old_rev is not None:
            from seg_write_speed import extract_src  # benchmarks/ is the script's folder

            extract_src(args.old_rev, Path(tmp))
            old_src = Path(tmp) / "src"
        runs = [_repeat(args, k, old_src) for k in range(args.repeats)]
    median = {k: round(statistics.median(r[k] for r in runs), 2)
              for k in runs[0] if k.endswith("_s")}
    result = {"ct": str(CT), "slices": SLICES, "runs": runs, "median": median,
              "predict_over_forward_fp32": round(median["predict_s"] / median["forward_fp32_s"], 2),
              "predict_over_forward_bf16": round(median["predict_s"] / median["forward_bf16_s"], 2),
              "threads": torch.get_num_threads()}
    if args.without_flip:
        result["predict_no_flip_over_forward_fp32"] = round(
            median["predict_no_flip_s"] / median["forward_fp32_s"], 2)
    if args.old_rev is not None:
        result["old_rev"] = args.old_rev
        result["old_predict_over_forward_fp32"] = round(
            median["old_predict_s"] / median["forward_fp32_s"], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_vs_forward.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _repeat(args: argparse.Namespace, index: int, old_src: Path | None) -> dict[str, Any]:
    """One repeat: predict (and the old revision's, first in odd repeats), then the forward
    passes."""
    run: dict[str, Any] = {}
    timed = [("predict", None)] + ([("old_predict", old_src)] if old_src is not None else [])
    for name, src in (reversed(timed) if index % 2 else timed):
        cpu: dict[str, Any] = {}
        run[f"{name}_s"] = predict_seconds(args.out / name, src=src, cpu=cpu)
        run[f"{name}_cpu"] = cpu
    if args.without_flip:
        run["predict_no_flip_s"] = predict_seconds(args.out / "no-flip", "--no-flip-tta")
    run.update(forward_fp32_s=forward_seconds(False), forward_bf16_s=forward_seconds(True))
    return run


if __name__ == "__main__":
    main()
