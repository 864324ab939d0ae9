"""Liver-driven registration of follow-up to baseline: seconds and error against the truth.

On a generated cohort whose tp1 CTs are shifted and rotated against their baselines, for each
patient: the liver Dice before and after `register_livers`, its seconds, and the largest
distance (mm) between where our transform and the generated truth (`tp1_from_baseline`) send
the baseline lesions' centroids.

Usage: .venv/bin/python benchmarks/track_registration.py --out /tmp/track_bench
       [--patients 3] [--matrix 256] [--deformable]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from livermets.datasets.synth import generate_cohort
from livermets.io.image import read_image
from livermets.track.register import register_livers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--deformable", action="store_true",
                        help="Add the B-spline step after the affine one.")
    args = parser.parse_args()
    cohort = args.out / "cohort"
    generate_cohort(cohort, patients=args.patients, matrix=args.matrix, overwrite=True)
    truth = json.loads((cohort / "truth.json").read_text())["patients"]
    for patient_id, patient in truth.items():
        baseline = read_image(cohort / patient_id / "baseline" / "liver.nii.gz")
        followup = read_image(cohort / patient_id / "tp1" / "liver.nii.gz")
        tic = time.perf_counter()
        result = register_livers(baseline, followup, deformable=args.deformable)
        seconds = time.perf_counter() - tic
        matrix = np.array(patient["tp1_from_baseline"]["matrix"])
        errors = []
        for lesion in patient["timepoints"]["baseline"]["lesions"]:
            point = np.array(lesion["centroid_lps_mm"])
            expected = matrix[:3, :3] @ point + matrix[:3, 3]
            ours = np.array(result.transform.TransformPoint(tuple(float(v) for v in point)))
            errors.append(float(np.linalg.norm(ours - expected)))
        print(json.dumps({
            "patient": patient_id, "seconds": round(seconds, 1),
            "liver_dice_before": result.liver_dice_before,
            "liver_dice_after": result.liver_dice_after,
            "max_lesion_centroid_error_mm": round(max(errors), 3) if errors else None,
            "true_shift_mm": [round(v, 2) for v in patient["tp1_from_baseline"]["translation_mm"]],
            "true_rotation_deg": round(patient["tp1_from_baseline"]["rotation_deg"], 2),
        }), flush=True)


if __name__ == "__main__":
    main()
