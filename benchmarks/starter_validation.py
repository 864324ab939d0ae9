"""Validate the shipped starter models on data they did not see; write the model card's figures.

    .venv/bin/python benchmarks/starter_validation.py --work /tmp/starter_val [--write-card]

What it measures (every number in MODEL_CARD.md comes from here):
- liver: Dice, precision and recall of the starter liver model's mask (the full `predict`
  pipeline) against the reference on 3D-IRCADb-01 1.7 (held out of training) and 1.17
  (trained on: shown for contrast, not as validation), also without the dark-tissue rule
  (`livermets.infer.liver`), and the seconds of liver segmentation with and without it;
- lesions, with the starter liver model's mask (the whole pipeline, as a user runs it), with
  the candidate checks (`livermets.infer.candidates`, the default) and without them (the
  candidates and the rejected ones together: the paper's plain Otsu, same probabilities), and
  how close the candidates that are true lesions come to each check's threshold:
  - a generated cohort the models never saw (`--patients` patients, seed 1, 512x512, baseline
    and tp1): per-lesion Dice, detection rate (Dice > 0.2) by size (< 20 mm, >= 20 mm) and
    false positives per CT, with `livermets evaluate`;
  - IRCADb 1.7 (held out; no liver lesion): the false-positive lesions found;
  - IRCADb 1.17 (trained on, with inserted copies): its 2 lesions, for contrast;
- the CRLM-CT-1004 and -1006 CTs (real colorectal liver metastases, no reference): the lesions
  found and the candidates rejected, with a picture of each (`docs/model_card/`): one crop per
  lesion (or candidate) on its widest slice, for a reader to judge; and for each nodule a
  developer marked on them (`crlm_reader_marks.json`) the marked slices on which a kept lesion
  covers it and the network's peak probability there.

`--lesion-model W/lesion/model.pt` (or `--liver-model W/liver/model.pt`) validates a model
trained but not installed (a recipe variant) on the same data. With `--write-card` it writes
`src/livermets/models/starter/card.json`, the pictures, and renders `MODEL_CARD.md` at the
repository root.
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
from scipy import ndimage

from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.synth import generate_cohort
from livermets.evaluate.cases import mask_overlap
from livermets.evaluate.run import evaluate_manifest
from livermets.infer.candidates import CandidateChecks, measure_candidate
from livermets.infer.extent import DEFAULT_EXTENT_MM
from livermets.infer.liver import segment_liver
from livermets.infer.outputs import CaseInput, predict_cases
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.io import read_image, write_image
from livermets.io.atomic import write_text_atomic
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.labels import instance_labels
from livermets.models.saved import load_model
from livermets.models.starter import CARD_FIGURES, model_card, starter_model_path
from livermets.report.figures import lesion_gallery

logger = logging.getLogger("starter_validation")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIGURES = ROOT / "docs" / "model_card"
READER_MARKS = Path(__file__).with_name("crlm_reader_marks.json")
#: A marked point counts as found when a kept lesion lies within this many pixels of it.
MARK_REACH_PIXELS = 2
#: The network's peak probability is read within this many pixels of a marked point.
MARK_PROBABILITY_PIXELS = 4


def lesion_rows(folder: Path, kind: str = "lesions") -> list[dict[str, str]]:
    """The rows of a predicted case's lesions.csv (or `kind`.csv)."""
    with (folder / f"{kind}.csv").open() as handle:
        return list(csv.DictReader(handle))


def plain_predictions(predictions: Path, out: Path, case_ids: list[str]) -> Path:
    """Each case's lesions without the candidate checks: its lesions and rejected candidates
    together, renumbered by volume (the components are the same, only the checks differ)."""
    for case_id in case_ids:
        folder = predictions / case_id
        lesions = read_image(folder / "lesions.nii.gz")
        rejected = read_image(folder / "rejected_candidates.nii.gz").array
        union = instance_labels((lesions.array > 0) | (rejected > 0), lesions.spacing)
        write_image(lesions.with_array(union), out / case_id / "lesions.nii.gz")
    return out


def true_lesion_margins(rows: list[ManifestRow], predictions: Path, plain: Path,
                        evaluation: Path) -> dict[str, float]:
    """How close the candidates that match a reference lesion (plain Otsu, not false
    positives in `evaluation`) come to each check's threshold: the extreme of each measure,
    and how many of them the checks reject (pieces of a lesion the liver mask cut off, or
    slivers beside a vessel, can fail them)."""
    with (evaluation / "false_positives.csv").open() as handle:
        false = {(r["case_id"], int(r["lesion_id"])) for r in csv.DictReader(handle)}
    checks = CandidateChecks()
    measures = []
    for row in rows:
        ct = read_image(row.image)
        liver = read_image(predictions / row.case_id / "liver.nii.gz").array
        labels = read_image(plain / row.case_id / "lesions.nii.gz").array
        probability = read_image(predictions / row.case_id / "lesion_probability.nii.gz").array
        for label, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None and (row.case_id, label) not in false:
                measures.append(measure_candidate(labels, label, box, ct.array, liver,
                                                  ct.spacing, checks, probability))
    contrasts = [m.contrast_hu for m in measures if m.contrast_hu is not None]
    return {"true_candidates": len(measures),
            "rejected_true_candidates": sum(1 for m in measures if m.failures(checks)),
            "max_outside_fraction": round(max(m.outside_fraction for m in measures), 3),
            "max_fat_fraction": round(max(m.fat_fraction for m in measures), 3),
            "min_contrast_hu": round(min(contrasts), 1),
            "min_median_hu": round(min(m.median_hu for m in measures), 1),
            "min_peak_probability": round(min(m.peak_probability or 0.0 for m in measures), 3)}


def reader_marks(marks: Path, predictions: Path) -> list[dict[str, Any]]:
    """Score the nodules a reader marked on the CRLM CTs (`crlm_reader_marks.json`).

    Each nodule is a list of [slice, row, column] points; a point is found when a kept
    lesion (lesions.nii.gz > 0) lies within `MARK_REACH_PIXELS` of it on its slice, and its
    peak probability is the highest of lesion_probability.nii.gz within
    `MARK_PROBABILITY_PIXELS`. Returns one dict per nodule.
    """
    scored = []
    maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for nodule in json.loads(marks.read_text())["nodules"]:
        if nodule["case"] not in maps:  # each case's maps read once, not once per nodule
            folder = predictions / nodule["case"]
            maps[nodule["case"]] = (read_image(folder / "lesions.nii.gz").array,
                                    read_image(folder / "lesion_probability.nii.gz").array)
        lesions, probability = maps[nodule["case"]]
        found, peaks = [], []
        for z, row, column in nodule["points"]:
            found.append(bool(_disc(lesions[z], row, column, MARK_REACH_PIXELS).any()))
            peaks.append(round(float(_disc(probability[z], row, column,
                                           MARK_PROBABILITY_PIXELS).max()), 3))
        scored.append({"case": nodule["case"], "name": nodule["name"],
                       "slices": [p[0] for p in nodule["points"]], "found": found,
                       "peak_probability": peaks})
    return scored


def _disc(plane: np.ndarray, row: int, column: int, radius: int) -> np.ndarray:
    """The values of `plane` (y, x) within `radius` pixels of (row, column)."""
    rows, columns = np.ogrid[:plane.shape[0], :plane.shape[1]]
    return plane[(rows - row) ** 2 + (columns - column) ** 2 <= radius**2]


def gallery_png(ct_path: Path, case: Path, kind: str, title: str, target: Path,
                limit: int = 12) -> dict[str, Any]:
    """A PNG of the case's lesions (`kind` "lesions") or rejected candidates
    ("rejected_candidates"), largest first: a 60 mm crop of each on its widest slice."""
    ct = read_image(ct_path)
    labels = read_image(case / f"{kind}.nii.gz").array
    rows = lesion_rows(case, kind)[:limit]
    id_column = "lesion_id" if kind == "lesions" else "candidate_id"
    half = [round(30.0 / s) for s in ct.spacing[1:]]
    crops = []
    for row in rows:
        label, z = int(row[id_column]), int(row["slice_index"])
        ys, xs = np.nonzero(labels[z] == label)
        y, x = int(ys.mean()), int(xs.mean())
        window = (z, slice(max(0, y - half[0]), y + half[0]),
                  slice(max(0, x - half[1]), x + half[1]))
        caption = f"#{label}: {float(row['longest_axial_diameter_mm']):.0f} mm, slice {z}"
        if kind != "lesions":
            caption += f"\n{row['failed_checks']}"
        crops.append((ct.array[window], labels[window] == label, caption))
    target.parent.mkdir(parents=True, exist_ok=True)
    if crops:
        uri = lesion_gallery(crops, ct.spacing[1] / ct.spacing[2], title,
                             color="#d62728" if kind == "lesions" else "#ff7f0e")
        target.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    else:
        target.unlink(missing_ok=True)  # a picture from an earlier run would mislead
    return {"picture": str(target.relative_to(ROOT)) if crops else None, "shown": len(crops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--write-card", action="store_true")
    parser.add_argument("--leave-one-out", nargs="*", type=Path, default=[],
                        help="result.json files of benchmarks/lesion_leave_one_out.py, whose "
                             "figures go into the card.")
    parser.add_argument("--zoom-margin-mm", type=float, default=None,
                        help="Also run the lesion model on the liver's box, magnified "
                             "(PredictSettings.zoom_margin_mm).")
    parser.add_argument("--outline-threshold", type=float, default=None,
                        help="Grow lesions to this probability (PredictSettings."
                             "outline_threshold; default: predict's default).")
    parser.add_argument("--extent-mm", type=float, default=DEFAULT_EXTENT_MM,
                        help="Grow lesions on the CT up to this far (PredictSettings."
                             "extent_mm; default: predict's default); 0: off.")
    parser.add_argument("--lesion-model", type=Path, nargs="+", default=None,
                        help="Validate this lesion model (a model.pt, e.g. a recipe variant "
                             "not installed; several: their average) instead of the starter "
                             "one.")
    parser.add_argument("--liver-model", type=Path, default=None,
                        help="Validate this liver model (a model.pt, e.g. a recipe variant not "
                             "installed) instead of the starter one.")
    parser.add_argument("--recheck-grown", action=argparse.BooleanOptionalAction, default=None,
                        help="predict's --recheck-grown (default: predict's default).")
    parser.add_argument("--grow-small-cores", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="predict's --grow-small-cores (default: predict's default).")
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="predict's --flip-tta (default on, as predict): each slice also read "
                             "mirrored left-right.")
    args = parser.parse_args()
    if (args.lesion_model is not None or args.liver_model is not None) and args.write_card:
        parser.error("--write-card describes the shipped models: install the model "
                     "(scripts/train_starter_models.py --install-trained) instead of naming it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work: Path = args.work
    liver_model = args.liver_model or starter_model_path("liver")
    predictor = Predictor(args.lesion_model or starter_model_path("lesion"),
                          liver_model,
                          PredictSettings(zoom_margin_mm=args.zoom_margin_mm,
                                          **({} if args.outline_threshold is None else
                                             {"outline_threshold": args.outline_threshold}),
                                          extent_mm=args.extent_mm or None,
                                          **({} if args.recheck_grown is None else
                                             {"recheck_grown": args.recheck_grown}),
                                          **({} if args.grow_small_cores is None else
                                             {"grow_small_cores": args.grow_small_cores}),
                                          flip_tta=args.flip_tta))

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
    model = load_model(liver_model, expected_task="liver")
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
        liver[name] = mask_overlap(predicted, reference) | {
            "without_dark_tissue_rule": mask_overlap(raw, reference),
            "seconds": round(time.perf_counter() - tic, 1),
            "seconds_without_rule": round(raw_seconds, 1)}
    evaluation = evaluate_manifest(manifest, predictions, work / "evaluation", overwrite=True)
    groups = {key: value for key, value in evaluation.groups.items() if key.startswith("set=")}
    plain = plain_predictions(predictions, work / "plain", [r.case_id for r in rows])
    plain_evaluation = evaluate_manifest(manifest, plain, work / "evaluation-plain",
                                         overwrite=True)
    plain_groups = {key: value for key, value in plain_evaluation.groups.items()
                    if key.startswith("set=")}
    margins = true_lesion_margins(rows, predictions, plain, work / "evaluation-plain")
    crlm_found = {}
    for case in crlm:
        folder = predictions / case.case_id
        found = lesion_rows(folder)
        rejected = lesion_rows(folder, "rejected_candidates")
        pictures = {}
        if args.write_card:
            pictures = {
                "lesions_picture": gallery_png(
                    case.image, folder, "lesions", f"{case.case_id}: lesions found (red)",
                    FIGURES / f"{case.case_id}.png")["picture"],
                "rejected_picture": gallery_png(
                    case.image, folder, "rejected_candidates",
                    f"{case.case_id}: candidates rejected by the checks (orange)",
                    FIGURES / f"{case.case_id}-rejected.png")["picture"]}
        crlm_found[case.case_id] = {
            "lesions": len(found),
            "volumes_ml": [round(float(r["volume_ml"]), 1) for r in found],
            "diameters_mm": [round(float(r["longest_axial_diameter_mm"]), 1) for r in found],
            "rejected": len(rejected),
            "rejected_checks": [r["failed_checks"] for r in rejected],
            **pictures}
    figures = {"date": time.strftime("%Y-%m-%d"), "command":
               "benchmarks/starter_validation.py --work WORK --write-card",
               "liver": liver, "lesion_groups": groups,
               "lesion_groups_without_checks": plain_groups,
               "true_lesion_margins": margins, "crlm": crlm_found,
               "reader_marks": reader_marks(READER_MARKS, predictions),
               "seconds_per_ct": round(seconds, 1), "generated_patients": args.patients,
               "zoom_margin_mm": args.zoom_margin_mm,
               "outline_threshold": predictor.settings.outline_threshold,
               "extent_mm": predictor.settings.extent_mm,
               "recheck_grown": predictor.settings.recheck_grown,
               "flip_tta": predictor.settings.flip_tta,
               "grow_small_cores": predictor.settings.grow_small_cores,
               "lesion_model": ([str(m) for m in args.lesion_model] if args.lesion_model
                                else "starter"),
               "liver_model": str(args.liver_model) if args.liver_model else "starter",
               "lesion_leave_one_out": [json.loads(p.read_text()) for p in args.leave_one_out]}
    print(json.dumps(figures, indent=2))
    (work / "figures.json").write_text(json.dumps(figures, indent=2))
    if args.write_card:
        write_text_atomic(CARD_FIGURES, json.dumps(figures, indent=2) + "\n")
        write_text_atomic(ROOT / "MODEL_CARD.md", model_card())


if __name__ == "__main__":
    main()
