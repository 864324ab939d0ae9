"""How fast each model learns on a generated cohort, on this machine's CPU.

Three runs on generated cohorts whose last patient validates (all other CTs, both time points,
train): the liver model (unet) and the lesion models (unet with BCE, resnet18-unet with
Dice + BCE from random weights). Prints one JSON line per run: best validation Dice, its
epoch, the per-epoch validation Dice, and seconds.

Usage: .venv/bin/python benchmarks/train_convergence.py --out /tmp/convergence
       [--liver-epochs 25] [--lesion-epochs 20] [--runs liver-unet lesion-unet ...]
       [--set FIELD=VALUE ...]   (extra training settings for every run, as `livermets train`)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from livermets.config import make_train_config, parse_assignments
from livermets.datasets.synth import generate_cohort
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.train.trainer import train

RUNS = ["liver-unet", "lesion-unet", "lesion-resnet18-unet"]


def cohort(out: Path, *, patients: int, matrix: int, slices: int) -> Path:
    """A generated cohort; its last patient is `validation`, the others `training`."""
    summary = generate_cohort(out, patients=patients, matrix=matrix, slices=slices,
                              overwrite=True)
    last = f"synth{patients:03d}"
    rows = [ManifestRow(**{**r.__dict__, "split": "validation" if r.patient_id == last
                           else "training"}) for r in read_manifest(summary.manifest)]
    return write_manifest(rows, out / "train.csv")


def run(name: str, manifest: Path, out: Path, settings: dict[str, object]) -> None:
    tic = time.perf_counter()
    result = train(manifest, out / name, make_train_config(settings), overwrite=True)
    print(json.dumps({
        "run": name, "settings": settings, "best_val_dice": round(result.best_val_dice, 4),
        "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - tic, 1),
        "val_dice": [round(r.val_dice, 3) for r in result.history],
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--liver-epochs", type=int, default=25)
    parser.add_argument("--lesion-epochs", type=int, default=20)
    parser.add_argument("--runs", nargs="+", default=RUNS, choices=RUNS)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="extra training settings applied to every run")
    args = parser.parse_args()
    extra_settings = parse_assignments(args.set)
    if "liver-unet" in args.runs:
        liver = cohort(args.out / "c96", patients=8, matrix=96, slices=32)
        run("liver-unet", liver, args.out, {"task": "liver", "epochs": args.liver_epochs,
                                            "image_size": 96, "base_width": 16,
                                            "batch_size": 16} | extra_settings)
    lesion_runs = [r for r in args.runs if r.startswith("lesion")]
    if lesion_runs:
        lesion = cohort(args.out / "c128", patients=6, matrix=128, slices=32)
        common = {"task": "lesion", "epochs": args.lesion_epochs, "image_size": 128,
                  "batch_size": 8}
        extra = {"lesion-unet": {"base_width": 16}, "lesion-resnet18-unet":
                 {"arch": "resnet18-unet"}}
        for name in lesion_runs:
            run(name, lesion, args.out, common | extra[name] | extra_settings)


if __name__ == "__main__":
    main()
