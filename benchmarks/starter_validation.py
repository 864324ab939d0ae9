"""Validate the shipped starter models on data they did not see; write the model card's figures.

    .venv/bin/python benchmarks/starter_validation.py --work /tmp/starter_val [--write-card]

What it measures (every number in MODEL_CARD.md comes from here):
- liver: Dice, precision and recall of the starter liver model's mask (the full `predict`
  pipeline) against the reference on 3D-IRCADb-01 1.7 (held out of training) and 1.17
  (trained on: shown for contrast, not as validation), also without the dark-tissue rule
  (`livermets.infer.liver`), and the seconds of liver segmentation with and without it;
- lesions, with the starter liver model's mask (the whole pipeline, as a user runs it):
  - a generated cohort the models never saw (`--patients` patients, seed 1, 512x512, baseline
    and tp1): per-lesion Dice, detection rate (Dice > 0.2) by size (< 20 mm, >= 20 mm) and
    false positives per CT, with `livermets evaluate`;
  - IRCADb 1.7 (held out; no liver lesion): the false-positive lesions found;
  - IRCADb 1.17 (trained on, with inserted copies): its 2 lesions, for contrast;
- the CRLM-CT-1004 and -1006 CTs (real colorectal liver metastases, no reference): the lesions
  found, and an overlay picture of each (`docs/model_card/`).

With `--write-card` it writes `src/livermets/models/starter/card.json`, the pictures, and
renders `MODEL_CARD.md` at the repository root.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.synth import generate_cohort
from livermets.evaluate.run import evaluate_manifest
from livermets.infer.liver import segment_liver
from livermets.infer.outputs import CaseInput, predict_cases
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.io import read_image
from livermets.io.atomic import write_text_atomic
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.models.saved import load_model
from livermets.models.starter import CARD_FIGURES, model_card, starter_model_path
from livermets.report.figures import case_overlay

logger = logging.getLogger("starter_validation")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIGURES = ROOT / "docs" / "model_card"


def overlap(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Dice, precision and recall of two binary masks."""
    p, r = predicted > 0, reference > 0
    both = float(np.logical_and(p, r).sum())
    return {"dice": round(2 * both / float(p.sum() + r.sum()), 4),
            "precision": round(both / max(1.0, float(p.sum())), 4),
            "recall": round(both / max(1.0, float(r.sum())), 4)}


def lesion_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of a predicted case's lesions.csv."""
    with (folder / "lesions.csv").open() as handle:
        return list(csv.DictReader(handle))


def overlay_png(ct_path: Path, case: Path, title: str, target: Path) -> dict[str, Any]:
    """A PNG of the axial slice through the largest predicted lesion (or the liver's middle)."""
    ct = read_image(ct_path)
    lesions = read_image(case / "lesions.nii.gz").array
    liver = read_image(case / "liver.nii.gz").array
    rows = lesion_rows(case)
    z = int(rows[0]["slice_index"]) if rows else int(np.median(np.nonzero(liver)[0]))
    aspect = ct.spacing[1] / ct.spacing[2]
    uri = case_overlay(ct.array[z], liver[z], lesions[z], [], aspect,
                       f"{title}, slice {z}: liver (green), lesions (red)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    return {"slice": z, "picture": str(target.relative_to(ROOT))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--write-card", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work: Path = args.work
    predictor = Predictor(starter_model_path("lesion"), starter_model_path("liver"),
                          PredictSettings())

    cohort = generate_cohort(work / "generated", patients=args.patients, seed=1, matrix=512,
                             overwrite=True)
    rows = [ManifestRow(**{**r.__dict__, "split": "generated-unseen"})
            for r in read_manifest(cohort.manifest)]
    ircadb = {}
    for name, split in (("3Dircadb1.7", "ircadb-held-out"), ("3Dircadb1.17", "ircadb-trained")):
        imported = import_ircadb(args.shared / "ircadb" / name, work / name, overwrite=True)
        assert imported.manifest is not None
        row = read_manifest(imported.manifest)[0]
        ircadb[name] = row
        rows.append(ManifestRow(**{**row.__dict__, "split": split}))
    manifest = write_manifest(rows, work / "manifest.csv")
    crlm = [CaseInput(f"CRLM-CT-{n}", args.shared / "crlm" / f"CRLM-CT-{n}")
            for n in ("1004", "1006")]
    cases = [CaseInput(r.case_id, r.image) for r in rows] + crlm
    tic = time.perf_counter()
    predictions = work / "predictions"
    outcomes = predict_cases(predictor, cases, predictions)
    failed = [o.case_id for o in outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"prediction failed for {failed}; see the log")
    seconds = (time.perf_counter() - tic) / len(cases)

    liver = {}
    model = load_model(starter_model_path("liver"), expected_task="liver")
    for name, row in ircadb.items():
        assert row.liver_mask is not None
        predicted = read_image(predictions / row.case_id / "liver.nii.gz").array
        reference = read_image(row.liver_mask).array
        ct = read_image(row.image)
        tic = time.perf_counter()
        raw = segment_liver(model, ct.array, spacing=ct.spacing, dark_tissue_rule=False)
        raw_seconds = time.perf_counter() - tic
        tic = time.perf_counter()
        segment_liver(model, ct.array, spacing=ct.spacing)
        liver[name] = overlap(predicted, reference) | {
            "without_dark_tissue_rule": overlap(raw, reference),
            "seconds": round(time.perf_counter() - tic, 1),
            "seconds_without_rule": round(raw_seconds, 1)}
    evaluation = evaluate_manifest(manifest, predictions, work / "evaluation", overwrite=True)
    groups = {key: value for key, value in evaluation.groups.items() if key.startswith("set=")}
    crlm_found = {}
    for case in crlm:
        found = lesion_rows(predictions / case.case_id)
        picture = (overlay_png(case.image, predictions / case.case_id, case.case_id,
                               FIGURES / f"{case.case_id}.png") if args.write_card else {})
        crlm_found[case.case_id] = {
            "lesions": len(found),
            "volumes_ml": [round(float(r["volume_ml"]), 1) for r in found],
            "diameters_mm": [round(float(r["longest_axial_diameter_mm"]), 1) for r in found],
            **picture}
    figures = {"date": time.strftime("%Y-%m-%d"), "command":
               "benchmarks/starter_validation.py --work WORK --write-card",
               "liver": liver, "lesion_groups": groups, "crlm": crlm_found,
               "seconds_per_ct": round(seconds, 1), "generated_patients": args.patients}
    print(json.dumps(figures, indent=2))
    (work / "figures.json").write_text(json.dumps(figures, indent=2))
    if args.write_card:
        write_text_atomic(CARD_FIGURES, json.dumps(figures, indent=2) + "\n")
        write_text_atomic(ROOT / "MODEL_CARD.md", model_card())


if __name__ == "__main__":
    main()
