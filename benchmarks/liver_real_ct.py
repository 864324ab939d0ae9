"""Train a liver model on generated CT plus real labelled livers; segment IRCADb 1.7 (held out).

Training data: a generated cohort (both time points; its last patient validates) plus the real
labelled livers in ../shared/data: 3D-IRCADb-01 1.17, the CRLM-CT-1100 atlas and the
TotalSegmentator example's 30 labelled slices (`livermets.datasets.public`). Left out: IRCADb
1.7, the test case. `--balance-centers` gives each centre (generated A and B, IRCAD, CRLM,
TotalSeg) the same share of every epoch, so the real livers make 3/5 of the slices seen.

Prints and writes `OUT/result.json`: the Dice of the predicted liver against IRCADb 1.7's
reference (and 1.17's, seen in training), the training time, and the settings.

Usage: .venv/bin/python benchmarks/liver_real_ct.py --out /tmp/liver_bench [--epochs 25]
       [--image-size 128] [--base-width 16] [--patients 8] [--matrix 256] [--balance-centers]
       [--no-totalseg] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from livermets.config import make_train_config
from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.public import crlm_atlas, totalsegmentator_example
from livermets.datasets.synth import generate_cohort
from livermets.infer.liver import segment_liver
from livermets.io import read_image
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.models.precision import resolve_precision
from livermets.models.saved import load_model
from livermets.train.trainer import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks."""
    a, b = a > 0, b > 0
    return 2 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--slices-per-epoch", type=int, default=600)
    parser.add_argument("--balance-centers", action="store_true")
    parser.add_argument("--no-totalseg", action="store_true")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()
    out: Path = args.out
    cohort = generate_cohort(out / "synth", patients=args.patients, matrix=args.matrix,
                             overwrite=True)
    last = f"synth{args.patients:03d}"
    rows = [ManifestRow(**{**r.__dict__, "split": "validation" if r.patient_id == last
                           else "training"}) for r in read_manifest(cohort.manifest)]
    ircadb = import_ircadb(SHARED / "ircadb" / "3Dircadb1.17", out / "ircadb17", overwrite=True)
    assert ircadb.manifest is not None
    rows += [ManifestRow(**{**r.__dict__, "split": "training"})
             for r in read_manifest(ircadb.manifest)]
    rows.append(crlm_atlas(SHARED / "crlm" / "CRLM-CT-1100_atlas_ct.nii.gz",
                           SHARED / "crlm" / "CRLM-CT-1100_atlas_seg.nii.gz", out / "crlm1100"))
    if not args.no_totalseg:
        example = SHARED / "fixtures" / "totalsegmentator"
        rows.append(totalsegmentator_example(example / "example_ct.nii.gz",
                                             example / "example_seg.nii.gz", out / "totalseg"))
    manifest = write_manifest(rows, out / "train.csv")
    config = make_train_config({"task": "liver", "epochs": args.epochs,
                                "image_size": args.image_size, "base_width": args.base_width,
                                "slices_per_epoch": args.slices_per_epoch,
                                "balance_centers": args.balance_centers,
                                "precision": args.precision})
    tic = time.perf_counter()
    result = train(manifest, out / "run", config, overwrite=True)
    seconds = time.perf_counter() - tic
    model = load_model(result.model_path, expected_task="liver")
    bf16 = resolve_precision(args.precision, torch.device("cpu")) == "bf16"
    test = import_ircadb(SHARED / "ircadb" / "3Dircadb1.7", out / "ircadb7", overwrite=True)
    scores = {}
    for name, imported in (("3Dircadb1.7 (held out)", test), ("3Dircadb1.17 (trained on)",
                                                              ircadb)):
        case = imported.cases[0]
        ct = read_image(case.image)
        tic_case = time.perf_counter()
        predicted = segment_liver(model, ct.array, spacing=ct.spacing, bf16=bf16)
        scores[name] = {"dice": round(dice(predicted, read_image(case.liver_mask).array), 4),
                        "seconds": round(time.perf_counter() - tic_case, 1)}
    report = {"liver_dice": scores, "train_seconds": round(seconds, 1),
              "best_epoch": result.best_epoch, "best_val_dice": round(result.best_val_dice, 4),
              "epochs_run": result.epochs_run, "settings": vars(args) | {"out": str(out)}}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
