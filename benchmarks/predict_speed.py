"""Inference speed and memory per CT: the whole `predict` pipeline and each stage, vs the floor.

CTs: 3D-IRCADb-01 1.17 (DICOM, 119 x 512 x 512, from ../shared/data; its reference liver is
imported for the lesion stage) and a generated 300-slice 512 x 512 CT (with its true liver).
Each (CT, precision) runs in its own child process, so its peak resident memory is its own.

Models: `--liver-model` / `--lesion-model` (run folders or model.pt), else untrained models of
the paper's size (unet, base width 32, 256 x 256). Untrained, the liver model finds no liver;
its forward pass over every slice is then timed on its own (`liver_s`), and the lesion stage
runs on the reference liver. The forward passes cost the same whatever the weights.

The floor: the models' forward FLOPs for this CT (liver model on every slice, lesion model on
the liver's z-range) divided by this machine's measured matmul rate in that precision.

Each run is made with the system allocator and with tcmalloc preloaded (when installed), in
the same invocation. Prints one JSON line per run, and the Dice between the fp32 and bf16
masks when both ran. Usage:
    .venv/bin/python benchmarks/predict_speed.py --out /tmp/predict_bench [--threads 2]
        [--slices 300] [--liver-model RUN] [--lesion-model RUN] [--precisions fp32 bf16]
        [--allocators system tcmalloc]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livermets.config import TCMALLOC_PATHS, TrainConfig
from livermets.datasets.ircadb import import_patient
from livermets.datasets.synth import generate_cohort
from livermets.io.manifest import read_manifest
from livermets.models import create_model
from livermets.models.flops import forward_flops
from livermets.models.precision import bf16_supported
from livermets.models.saved import load_model, save_model
from livermets.train.trainer import preprocessing_settings

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import matmul_gflops

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def untrained_model(out: Path, task: str) -> Path:
    """A paper-size unet (base 32, 256 px) with its initial weights, as training saves it."""
    torch.manual_seed(0)
    config = TrainConfig(task=task)  # type: ignore[arg-type]
    return save_model(out / task / "model.pt", create_model("unet"), arch="unet",
                      options={}, task=task, preprocessing=preprocessing_settings(config),
                      record={"untrained": True})


def cases(out: Path, slices: int) -> list[dict[str, Any]]:
    """The benchmark CTs: (name, image, reference liver)."""
    found = []
    patient = SHARED / "ircadb" / "3Dircadb1.17"
    if patient.is_dir():
        imported = import_patient(patient, out / "ircadb")
        found.append({"name": "ircadb1.17-dicom", "image": patient / "PATIENT_DICOM",
                      "liver": imported.liver_mask})
    summary = generate_cohort(out / "synth", patients=1, matrix=512, slices=slices,
                              overwrite=True)
    row = next(r for r in read_manifest(summary.manifest) if r.timepoint == "baseline")
    found.append({"name": f"synth-512x{slices}", "image": row.image, "liver": row.liver_mask})
    return found


def run_case(case: dict[str, Any], models: dict[str, Path], trained_liver: bool,
             precision: str, threads: int, out: Path, queue: Any) -> None:
    """Child process: the pipeline on one CT; puts its timings and peak memory on `queue`."""
    torch.set_num_threads(threads)
    from livermets.config import allocator
    from livermets.infer.outputs import write_case
    from livermets.infer.predictor import Predictor, PredictSettings
    from livermets.infer.slices import slice_probabilities
    from livermets.io.image import read_image
    from livermets.preprocess import window

    settings = PredictSettings(precision=precision)
    predictor = Predictor(models["lesion"], models["liver"] if trained_liver else None,
                          settings)
    tic = time.perf_counter()
    ct = read_image(case["image"])
    read_s = time.perf_counter() - tic
    liver_mask = None
    liver_forward_s = 0.0
    if not trained_liver:
        liver_model = load_model(models["liver"], expected_task="liver")
        tic = time.perf_counter()
        slice_probabilities(liver_model, ct.array, window, bf16=precision == "bf16")
        liver_forward_s = time.perf_counter() - tic
        liver_mask = read_image(case["liver"])
    prediction = predictor.predict(ct, liver_mask)
    tic = time.perf_counter()
    folder = write_case(prediction, ct, out / f"{case['name']}-{precision}", record={},
                        overwrite=True)
    write_s = time.perf_counter() - tic
    timings = {"read_s": read_s, **prediction.timings, "write_s": write_s}
    if not trained_liver:
        timings["liver_s"] = liver_forward_s + timings["liver_s"]
    queue.put({"allocator": allocator(), "timings": {k: round(v, 2) for k, v in timings.items()},
               "total_s": round(sum(timings.values()), 2), "z_range": prediction.z_range,
               "slices": ct.shape[0], "lesions": len(prediction.lesion_table),
               "threshold": prediction.threshold.to_json(), "folder": str(folder),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})


def mask_dice(a: Path, b: Path) -> float | None:
    """Dice of two label maps' foregrounds; None when both are empty."""
    from livermets.io.image import read_image

    x, y = read_image(a).array > 0, read_image(b).array > 0
    total = int(x.sum() + y.sum())
    return None if total == 0 else 2 * int(np.count_nonzero(x & y)) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--liver-model", type=Path)
    parser.add_argument("--lesion-model", type=Path)
    parser.add_argument("--allocators", nargs="+", choices=["system", "tcmalloc"],
                        help="default: both where tcmalloc is installed")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                        help="default: fp32, and bf16 where the CPU has fast bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fast_bf16 = bf16_supported(torch.device("cpu"))
    precisions = args.precisions or (["fp32", "bf16"] if fast_bf16 else ["fp32"])
    tcmalloc = next((p for p in TCMALLOC_PATHS if Path(p).is_file()), None)
    allocators = args.allocators or (["system", "tcmalloc"] if tcmalloc else ["system"])
    print(json.dumps({"cpu_bf16": fast_bf16, "precisions": precisions,
                      "allocators": allocators}), flush=True)
    models = {"liver": args.liver_model or untrained_model(args.out / "models", "liver"),
              "lesion": args.lesion_model or untrained_model(args.out / "models", "lesion")}
    models = {k: (p / "model.pt" if p.is_dir() else p) for k, p in models.items()}
    loaded = {task: load_model(path) for task, path in models.items()}
    flops = {task: forward_flops(m.model, int(m.preprocessing["image_size"]))
             for task, m in loaded.items()}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    # Best of three: one measurement on a shared machine can be 25% low. bf16 without CPU
    # support is emulated (minutes per matmul): no ceiling, no floor then.
    ceiling = {p: max(matmul_gflops(dtypes[p]) for _ in range(3)) for p in precisions
               if p == "fp32" or fast_bf16}
    context = multiprocessing.get_context("spawn")
    for case in cases(args.out / "data", args.slices):
        folders = {}
        for precision, memory in itertools.product(precisions, allocators):
            # A spawned child starts with this process's environment: preload per run.
            os.environ.pop("LD_PRELOAD", None)
            if memory == "tcmalloc" and tcmalloc:
                os.environ["LD_PRELOAD"] = tcmalloc
            queue = context.Queue()
            child = context.Process(target=run_case, args=(
                case, models, args.liver_model is not None, precision, args.threads,
                args.out / "predictions" / memory, queue))
            child.start()
            result = queue.get()
            child.join()
            start, stop = result["z_range"]
            model_flops = flops["liver"] * result["slices"] + flops["lesion"] * (stop - start)
            rate = ceiling.get(precision)
            floor_s = model_flops / (rate * 1e9) if rate else None
            folders.setdefault(precision, Path(result.pop("folder")))
            os.environ.pop("LD_PRELOAD", None)
            print(json.dumps({
                "ct": case["name"], "precision": precision, "threads": args.threads,
                **result, "model_gflop": round(model_flops / 1e9, 1),
                "matmul_gflops": round(rate, 1) if rate else None,
                "floor_s": round(floor_s, 2) if floor_s else None,
                "total_over_floor": round(result["total_s"] / floor_s, 2) if floor_s else None,
                "trained_models": {"liver": args.liver_model is not None,
                                   "lesion": args.lesion_model is not None},
            }), flush=True)
        if {"fp32", "bf16"} <= set(folders):
            print(json.dumps({"ct": case["name"], "fp32_vs_bf16_dice": {
                name: mask_dice(folders["fp32"] / name, folders["bf16"] / name)
                for name in ("liver.nii.gz", "lesions.nii.gz")}}), flush=True)


if __name__ == "__main__":
    main()
