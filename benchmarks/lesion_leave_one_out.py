"""Score a lesion model on real CTs it was not trained on: the lesion recipe's leave-one-out.

Train the starter lesion recipe without one real CT (and its inserted copies), then score it
here on that CT. The folds share the training data of the shipped run (`--data`):

    .venv/bin/python scripts/train_starter_models.py --work W --patients 20 --tasks lesion
    # IRCADb 1.17 held out:
    .venv/bin/python scripts/train_starter_models.py --work W1 --data W/data --patients 20 \\
        --tasks lesion --hold-out 3Dircadb1.17
    .venv/bin/python benchmarks/lesion_leave_one_out.py --model W1/lesion/model.pt \\
        --cases 3Dircadb1.17 --out /tmp/lloo1
    # The CRLM-CT-1100 atlas held out:
    .venv/bin/python scripts/train_starter_models.py --work W2 --data W/data --patients 20 \\
        --tasks lesion --hold-out crlm1100
    .venv/bin/python benchmarks/lesion_leave_one_out.py --model W2/lesion/model.pt \\
        --cases crlm1100 --out /tmp/lloo2

Each case is predicted with its reference liver mask, so the figures are the lesion model's
alone, with the candidate checks (`livermets.infer.candidates`, the default) and without
them (the paper's plain Otsu), and scored per lesion by `livermets evaluate`: lesion Dice,
detection (Dice > 0.2) and false positives per CT. Each reference lesion also gets its
contrast (median HU of the liver within 5 mm around it minus its own median, as the candidate
checks measure it), and `breakdown` gives the real-CT issue's figures: lesions found, hypodense
ones (>= 10 HU darker) found, small ones (< 20 mm) found, mean Dice (all, hypodense) and
false positives.

`lits117` (LiTS volume 117, 66 lesions, never in any starter training) is the held-out real
CT every lesion recipe is measured on with the same command:

    .venv/bin/python benchmarks/lesion_leave_one_out.py --model RUN/lesion/model.pt \
        --cases lits117 --out /tmp/lits_RUN
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.public import crlm_atlas, lits_crop
from livermets.evaluate.run import evaluate_manifest
from livermets.infer.candidates import CandidateChecks, measure_candidate
from livermets.infer.extent import DEFAULT_EXTENT_MM
from livermets.infer.outputs import CaseInput, predict_cases
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.infer.threshold import parse_threshold
from livermets.io import read_image
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.models.saved import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = ("3Dircadb1.17", "3Dircadb1.7", "crlm1100", "lits117")


def prepare(name: str, shared: Path, out: Path) -> ManifestRow:
    """The manifest row of a real labelled CT, imported under `out`."""
    if name == "lits117":  # never in any starter training: a real held-out CT for every recipe
        lits = shared / "lits"
        return lits_crop(lits / "lits117_ct.nii.gz", lits / "lits117_seg.nii.gz", out / name,
                         split=name)
    if name == "crlm1100":
        crlm = shared / "crlm"
        return crlm_atlas(crlm / "CRLM-CT-1100_atlas_ct.nii.gz",
                          crlm / "CRLM-CT-1100_atlas_seg.nii.gz", out / name, split=name)
    imported = import_ircadb(shared / "ircadb" / name, out / name, overwrite=True)
    assert imported.manifest is not None
    row = read_manifest(imported.manifest)[0]
    return ManifestRow(**{**row.__dict__, "split": name})


#: The columns of the evaluation's lesions.csv kept for each reference lesion, and their types.
LESION_FIELDS = {"lesion_id": int, "diameter_mm": float, "dice": float, "precision": float,
                 "recall": float}


def reference_lesions(evaluation: Path) -> list[dict[str, Any]]:
    """Each reference lesion's row of `evaluation`/lesions.csv: its held-out CT (the set, as
    `case`), its scan (`case_id`), id, longest diameter (mm), Dice, precision, recall and
    whether it was detected."""
    with (evaluation / "lesions.csv").open(newline="", encoding="utf-8") as handle:
        return [{"case": row["set"], "case_id": row["case_id"],
                 **{k: kind(row[k]) for k, kind in LESION_FIELDS.items()},
                 "detected": row["detected"] == "True"} for row in csv.DictReader(handle)]


def lesions_both_ways(checked: Path, plain: Path) -> list[dict[str, Any]]:
    """Each reference lesion as scored with the candidate checks (`checked`, an evaluation
    folder), plus its Dice and detection without them (`plain`) as `dice_without_checks`
    and `detected_without_checks`."""
    unchecked = {(r["case_id"], r["lesion_id"]): r for r in reference_lesions(plain)}
    rows = []
    for row in reference_lesions(checked):
        same = unchecked[(row["case_id"], row["lesion_id"])]
        rows.append({**row, "dice_without_checks": same["dice"],
                     "detected_without_checks": same["detected"]})
    return rows


def lesion_contrasts(rows: list[ManifestRow]) -> dict[tuple[str, int], float | None]:
    """(case_id, lesion_id) -> the reference lesion's contrast (HU, positive: darker than the
    liver within 5 mm around it), measured as the candidate checks measure it."""
    checks = CandidateChecks()
    out: dict[tuple[str, int], float | None] = {}
    for row in rows:
        assert row.lesion_mask is not None and row.liver_mask is not None
        ct, liver = read_image(row.image), read_image(row.liver_mask)
        labels = read_image(row.lesion_mask).array.astype(np.int32)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                measures = measure_candidate(labels, index, box, ct.array, liver.array,
                                             ct.spacing, checks)
                out[(row.case_id, index)] = measures.contrast_hu
    return out


def breakdown(lesions: list[dict[str, Any]], false_positives: int, cases: int,
              *, suffix: str = "") -> dict[str, Any]:
    """The real-CT issue's table from per-lesion rows (`suffix` "_without_checks" reads the
    figures without the candidate checks)."""
    def found(rows: list[dict[str, Any]]) -> str:
        return f"{sum(r['detected' + suffix] for r in rows)} / {len(rows)}"

    def mean_dice(rows: list[dict[str, Any]]) -> float | None:
        return round(float(np.mean([r["dice" + suffix] for r in rows])), 3) if rows else None

    hypodense = [r for r in lesions if (r["contrast_hu"] or 0.0) >= 10.0]
    small = [r for r in lesions if r["diameter_mm"] < 20.0]
    return {"found": found(lesions), "hypodense_found": found(hypodense),
            "small_found": found(small), "dice_mean": mean_dice(lesions),
            "dice_mean_hypodense": mean_dice(hypodense), "false_positives": false_positives,
            "cases": cases}


def score(models: list[Path], rows: list[ManifestRow], out: Path, *, checks: bool,
          threshold: str | float = "otsu", outline: float | None = None,
          extent: float | None = None, recheck: bool = False,
          flip: bool = False, small_cores: bool = False) -> dict[str, Any]:
    """Predict every row with its reference liver (several `models`: their average) and
    evaluate (into `out`/evaluation-checks or evaluation-plain); the per-case figures."""
    settings = PredictSettings(threshold=threshold, outline_threshold=outline,
                               extent_mm=extent, recheck_grown=recheck, flip_tta=flip,
                               grow_small_cores=small_cores)
    if not checks:
        settings = PredictSettings(threshold=threshold, outline_threshold=outline,
                                   extent_mm=extent, candidate_checks=None, flip_tta=flip)
    predictor = Predictor([load_model(m, expected_task="lesion") for m in models], None,
                          settings)
    predictions = out / ("checks" if checks else "plain")
    predict_cases(predictor, [CaseInput(r.case_id, r.image, r.liver_mask) for r in rows],
                  predictions, overwrite=True)
    manifest = write_manifest(rows, out / "manifest.csv")
    evaluation = evaluate_manifest(manifest, predictions, out / f"evaluation-{predictions.name}",
                                   overwrite=True)
    keep = ("n_lesions", "n_detected", "detection_rate", "dice_mean",
            "false_positives_per_case")
    return {r.split: {k: evaluation.groups[f"set={r.split}"][k] for k in keep} for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True,
                        help="A lesion model.pt; several: their probabilities averaged.")
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="predict's --flip-tta (default on, as predict): each slice also read "
                             "mirrored left-right.")
    parser.add_argument("--cases", nargs="+", choices=CASES, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--threshold", default="otsu",
                        help="otsu (default, as predict) or a fixed probability.")
    parser.add_argument("--outline", type=float, default=None,
                        help="Grow each lesion to this lower probability (predict's "
                             "--outline-threshold).")
    parser.add_argument("--grow-small-cores", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="predict's --grow-small-cores (default on, as predict; with the "
                             "checks only).")
    parser.add_argument("--recheck-grown", action="store_true",
                        help="predict's --recheck-grown (with the checks only).")
    parser.add_argument("--extent-mm", type=float, default=DEFAULT_EXTENT_MM,
                        help="Grow each lesion on the CT up to this far (mm; predict's "
                             "--extent-mm, default as predict); 0: off.")
    args = parser.parse_args()
    threshold = parse_threshold(args.threshold)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows = [prepare(name, args.shared, args.out / "data") for name in args.cases]
    trained = load_model(args.model[0], expected_task="lesion").record
    with_checks = score(args.model, rows, args.out, checks=True, threshold=threshold,
                        outline=args.outline, extent=args.extent_mm or None,
                        recheck=args.recheck_grown, flip=args.flip_tta,
                        small_cores=args.grow_small_cores)
    without_checks = score(args.model, rows, args.out, checks=False, threshold=threshold,
                           outline=args.outline, extent=args.extent_mm or None,
                           flip=args.flip_tta)
    lesions = lesions_both_ways(args.out / "evaluation-checks", args.out / "evaluation-plain")
    contrasts = lesion_contrasts(rows)
    for lesion in lesions:
        contrast = contrasts[(lesion["case_id"], lesion["lesion_id"])]
        lesion["contrast_hu"] = None if contrast is None else round(contrast, 1)
    result = {"model": str(args.model[0]), "models": [str(m) for m in args.model],
              "flip_tta": args.flip_tta, "held_out": args.cases, "threshold": args.threshold,
              "outline": args.outline, "extent_mm": args.extent_mm or None,
              "recheck_grown": args.recheck_grown, "grow_small_cores": args.grow_small_cores,
              "best_epoch": trained.get("best_epoch"),
              "git_commit": trained.get("git_commit"),
              "train_cases": trained.get("train_cases", []),
              "with_checks": with_checks, "without_checks": without_checks,
              "lesions": lesions}
    result["breakdown"] = {
        "with_checks": breakdown(lesions, _false_positives(result["with_checks"]), len(rows)),
        "without_checks": breakdown(lesions, _false_positives(result["without_checks"]),
                                    len(rows), suffix="_without_checks")}
    print(json.dumps(result, indent=2))
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def _false_positives(per_case: dict[str, dict[str, Any]]) -> int:
    """All false positives of `score`'s per-case figures (one CT per held-out case)."""
    return round(sum(float(c["false_positives_per_case"]) for c in per_case.values()))


if __name__ == "__main__":
    main()
