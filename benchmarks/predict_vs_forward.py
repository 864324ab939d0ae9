"""`livermets predict` on one CT against the paper U-Net's forward pass over its slices, same run.

    .venv/bin/python benchmarks/predict_vs_forward.py --out /tmp/pvf [--repeats 2]

The CT is 3D-IRCADb-01 1.17 (DICOM, 119 x 512 x 512, ../shared/data). Each repeat times, one
after the other: the `livermets predict` command (a fresh process, the shipped starter models,
default settings: what a user runs, start-up included), and the forward pass of an untrained
paper-size U-Net (width 32, 256 x 256, batch 8, channels_last) over 119 slices, in fp32 and in
bf16 autocast. Prints and writes `OUT/predict_vs_forward.json`: the seconds of each and the
ratios predict / forward (median over repeats), the figure the real-CT issue bounds at 1.5.
With `--without-flip` each repeat also times `predict --no-flip-tta` (one lesion pass, the
cost of the default flip read off in the same run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def predict_seconds(out: Path, *extra: str) -> float:
    """Wall seconds of `livermets predict CT --out OUT [extra]` in a fresh process."""
    shutil.rmtree(out, ignore_errors=True)
    tic = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("livermets")), "predict", str(CT),
                    "--out", str(out), "--case-id", "ircadb117", *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--without-flip", action="store_true",
                        help="Also time predict --no-flip-tta in each repeat.")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        run = {"predict_s": predict_seconds(args.out / "predict")}
        if args.without_flip:
            run["predict_no_flip_s"] = predict_seconds(args.out / "no-flip", "--no-flip-tta")
        run.update(forward_fp32_s=forward_seconds(False), forward_bf16_s=forward_seconds(True))
        runs.append(run)
    median = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    result = {"ct": str(CT), "slices": SLICES, "runs": runs, "median": median,
              "predict_over_forward_fp32": round(median["predict_s"] / median["forward_fp32_s"], 2),
              "predict_over_forward_bf16": round(median["predict_s"] / median["forward_bf16_s"], 2),
              "threads": torch.get_num_threads()}
    if args.without_flip:
        result["predict_no_flip_over_forward_fp32"] = round(
            median["predict_no_flip_s"] / median["forward_fp32_s"], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_vs_forward.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
