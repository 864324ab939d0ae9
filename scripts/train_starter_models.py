"""Train the starter models that ship with livermets (a liver model and a No-TL lesion model).

One command, re-runnable by anyone with the public data in ../shared/data:

    .venv/bin/python scripts/train_starter_models.py --work /tmp/starter [--install]

Training data (written under WORK/data, manifest WORK/data/train.csv):
- a generated cohort of `--patients` patients at 512x512, both centres, baseline and tp1; its
  last `--validation-patients` patients validate both models;
- the real labelled CTs: 3D-IRCADb-01 1.17 (liver + 2 lesions), the CRLM-CT-1100 atlas (liver +
  1 metastasis) and the TotalSegmentator example's 30 labelled slices (liver);
- lesion insertion: `--copies` copies of each real CT with 1-4 lesions painted into its liver
  (`livermets.datasets.insert`): half generated shapes, half the real lesion shapes of the 16
  masks-only IRCADb patients.
Held out of both models: 3D-IRCADb-01 1.7 (the liver model's test case; it has no liver lesion)
and the CRLM-CT-1004/1006 CTs (no reference masks; the model card shows predictions on them).

Leave-one-out checks of the recipe: `--ircadb 3Dircadb1.7` trains on IRCADb 1.7 instead of 1.17
(1.17 held out); `--hold-out crlm1100` leaves a real CT and its inserted copies out of training
(`benchmarks/lesion_leave_one_out.py` then scores the lesion model on it).

Both models train with `balance_centers`, so each source (generated centres A and B, IRCAD,
CRLM, TotalSeg) gets the same share of every epoch. Settings: `STARTER_SETTINGS`, any field
overridable with `--liver-set k=v` / `--lesion-set k=v`; the lesion insertion's settings
(`INSERTION`, fields of `livermets.datasets.insert.InsertSettings`) with `--insert-set k=v`
(ranges as `[low, high]`), recorded in WORK/data/insertion.json.

Outputs: WORK/liver/ and WORK/lesion/ (run folders) with WORK/{task}_provenance.json (data
sources and licences, settings, this command, the git commit), and with `--install` the best
models as float16 in `src/livermets/models/starter/{liver,lesion}.pt`, the provenance in each
one's run record. `--install-trained` installs what an earlier run in WORK trained (train, look
at `benchmarks/starter_validation.py`, then install). `--data OTHER/data` trains on the data an
earlier run built (leave-one-out folds and recipe variants share one data set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from livermets.config import make_train_config, parse_assignments
from livermets.datasets.insert import InsertSettings, insert_lesions, shape_bank
from livermets.datasets.ircadb import import_ircadb
from livermets.datasets.public import crlm_atlas, lits_crop, totalsegmentator_example
from livermets.datasets.synth import GENERATOR_VERSION, generate_cohort
from livermets.io import read_image, write_image
from livermets.io.manifest import ManifestRow, read_manifest, write_manifest
from livermets.models.saved import load_model, save_model
from livermets.models.starter import STARTER_DIR
from livermets.train.records import git_commit
from livermets.train.trainer import train

logger = logging.getLogger("train_starter_models")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

STARTER_SETTINGS: dict[str, dict[str, Any]] = {
    "liver": {"task": "liver", "arch": "unet", "image_size": 128, "base_width": 16,
              "epochs": 40, "slices_per_epoch": 600, "balance_centers": True},
    "lesion": {"task": "lesion", "arch": "unet", "image_size": 192, "base_width": 16,
               "epochs": 30, "slices_per_epoch": 512, "balance_centers": True},
}

IRCADB_WITH_CT = ("3Dircadb1.7", "3Dircadb1.17")

#: Lesion insertion into the real CTs: generated shapes up to 80 mm, since real colorectal
#: metastases often exceed the 50 mm default (the leave-one-out under-segmented large ones).
INSERTION = InsertSettings(diameter_mm=(6.0, 80.0))

SOURCES = {
    "generated": "livermets synth (seed 0), generated in this run; no licence restriction",
    "3Dircadb1.17": "3D-IRCADb-01 patient 1.17, IRCAD France, CC BY-NC-ND 4.0",
    "crlm1100": "TCIA Colorectal-Liver-Metastases CRLM-CT-1100 atlas (Simpson et al., "
                "doi:10.7937/QXK2-QG03), CC BY 4.0",
    "totalseg": "TotalSegmentator example CT (Wasserthal et al.), CC BY 4.0",
    "lits117": "LiTS training volume 117 (Bilic et al. 2023), a crop around the liver as "
               "shipped in the PyPI package liver-ct-segmentation-package 1.6.0, CC BY-NC-SA "
               "4.0; lesion model only (the crop cuts the liver)",
    "lesion shapes": "3D-IRCADb-01 masks-only patients (lesion shapes only), CC BY-NC-ND 4.0",
}


def insertion_settings(assignments: dict[str, Any]) -> InsertSettings:
    """`INSERTION` with fields replaced; ValueError naming the field when it is not an
    `InsertSettings` field or its value is not of the default's kind: a range is a list of two
    numbers, low first (whole numbers for `lesions`), any other field one number."""
    fields = {f.name for f in dataclasses.fields(InsertSettings)}
    unknown = sorted(set(assignments) - fields)
    if unknown:
        raise ValueError(f"--insert-set {', '.join(unknown)}: not an insertion setting; "
                         f"choose from {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, value in assignments.items():
        default = getattr(INSERTION, name)
        kind = int if name == "lesions" else (int, float)
        if isinstance(default, tuple):
            if not (isinstance(value, list) and len(value) == 2
                    and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
                    and value[0] <= value[1]):
                raise ValueError(f"--insert-set {name}={value!r}: write a range of two numbers, "
                                 f"low first, e.g. {name}={list(default)}")
            values[name] = tuple(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = float(value)
        else:
            raise ValueError(f"--insert-set {name}={value!r}: write one number, e.g. "
                             f"{name}={default}")
    return dataclasses.replace(INSERTION, **values)


def recorded_insertion(data: Path) -> dict[str, Any]:
    """The insertion settings the data in `data` was built with: its insertion.json; for data
    built before that file was written, the recipe's `INSERTION` marked `"assumed": true`
    (older code may have used other settings)."""
    saved = data / "insertion.json"
    if saved.is_file():
        return dict(json.loads(saved.read_text()))
    logger.warning("%s has no insertion.json: recording today's INSERTION as assumed", data)
    return {**json.loads(json.dumps(dataclasses.asdict(INSERTION))), "assumed": True}


def build_training_data(shared: Path, work: Path, *, patients: int, validation: int,
                        copies: int, seed: int, ircadb: tuple[str, ...] = ("3Dircadb1.17",),
                        insertion: InsertSettings = INSERTION, with_lits: bool = False
                        ) -> Path:
    """Write every training CT and mask under `work` and return the manifest's path.

    `ircadb`: the 3D-IRCADb-01 patients with a CT to train on (the others are held out);
    `insertion`: how lesions are painted into the real CTs (kept in `work`/insertion.json);
    `with_lits`: LiTS volume 117 (66 real metastasis-like lesions) too, without inserted copies
    (`WITHOUT_COPIES`), for the lesion model only (`task_rows`).
    The old manifest and insertion.json go first, so a build that fails leaves neither."""
    for stale in (work / "train.csv", work / "insertion.json"):
        stale.unlink(missing_ok=True)
    cohort = generate_cohort(work / "synth", patients=patients, matrix=512, seed=seed,
                             overwrite=True)
    held = {f"synth{i:03d}" for i in range(patients - validation + 1, patients + 1)}
    rows = [ManifestRow(**{**r.__dict__, "split": "validation" if r.patient_id in held
                           else "training"}) for r in read_manifest(cohort.manifest)]
    real = []
    for name in ircadb:
        imported = import_ircadb(shared / "ircadb" / name, work / name, overwrite=True)
        assert imported.manifest is not None
        real += [ManifestRow(**{**r.__dict__, "split": "training"})
                 for r in read_manifest(imported.manifest)]
    real.append(crlm_atlas(shared / "crlm" / "CRLM-CT-1100_atlas_ct.nii.gz",
                           shared / "crlm" / "CRLM-CT-1100_atlas_seg.nii.gz", work / "crlm1100"))
    example = shared / "fixtures" / "totalsegmentator"
    real.append(totalsegmentator_example(example / "example_ct.nii.gz",
                                         example / "example_seg.nii.gz", work / "totalseg"))
    if with_lits:
        lits = shared / "lits"
        real.append(lits_crop(lits / "lits117_ct.nii.gz", lits / "lits117_seg.nii.gz",
                              work / "lits117", split="training"))
    masks_only = import_ircadb(shared / "ircadb" / "masks-only", work / "masks-only",
                               overwrite=True)
    shape_maps = [read_image(case.lesion_mask) for case in masks_only.cases if case.lesion_mask]
    rng = np.random.default_rng(seed)
    for row in real:
        rows.append(row)
        if row.patient_id not in WITHOUT_COPIES:
            rows += _inserted_copies(row, work / "inserted", shape_maps, copies, rng, insertion)
    (work / "insertion.json").write_text(json.dumps(dataclasses.asdict(insertion), indent=2))
    return write_manifest(rows, work / "train.csv")


def _inserted_copies(row: ManifestRow, out: Path, shape_maps: list[Any], copies: int,
                     rng: np.random.Generator, insertion: InsertSettings
                     ) -> list[ManifestRow]:
    """`copies` versions of a real CT with lesions inserted into its liver."""
    assert row.liver_mask is not None
    ct, liver = read_image(row.image), read_image(row.liver_mask)
    existing = read_image(row.lesion_mask) if row.lesion_mask else None
    bank = shape_bank(shape_maps, ct.spacing)
    made = []
    for copy in range(1, copies + 1):
        name = f"{row.patient_id}-ins{copy}"
        new, labels = insert_lesions(ct, liver, rng, insertion, existing=existing,
                                     shapes=bank)
        image = write_image(new, out / name / "ct.nii.gz")
        lesions = write_image(ct.with_array(labels), out / name / "lesions.nii.gz")
        made.append(ManifestRow(patient_id=name, timepoint="baseline", image=image,
                                center=row.center, liver_mask=row.liver_mask,
                                lesion_mask=lesions, split="training"))
        logger.info("%s: %d lesion(s)", name, int(labels.max()))
    return made


REAL_SOURCES = ("3Dircadb1.7", "3Dircadb1.17", "crlm1100", "totalseg", "lits117")
#: Real CTs used as they are, without inserted copies: LiTS 117's crop already holds 66 lesions,
#: and with 4 copies of it the IRCADb 1.17 fold never learned the generated validation patients
#: (benchmarks/RESULTS.md, 2026-12-07).
WITHOUT_COPIES = ("lits117",)
#: Real sources the liver model never trains on: crops that cut the liver.
LESION_ONLY_SOURCES = ("lits117",)


def source_of(patient_id: str) -> str:
    """The source a training patient comes from: a real CT's name for it and its inserted
    copies ("crlm1100-ins2" -> "crlm1100"), else the patient id."""
    return patient_id.split("-ins")[0]


def task_rows(manifest: Path, work: Path, task: str, hold_out: tuple[str, ...]) -> Path:
    """The manifest one model trains on: without the held-out sources, and for the lesion
    model only the rows that have a lesion mask."""
    rows = [r for r in read_manifest(manifest) if source_of(r.patient_id) not in hold_out
            and (task == "liver" or r.lesion_mask is not None)
            and not (task == "liver" and source_of(r.patient_id) in LESION_ONLY_SOURCES)]
    return write_manifest(rows, work / f"train_{task}.csv")


def install(run: Path, task: str, provenance: dict[str, Any]) -> Path:
    """Store the run's best model as float16 in the package, provenance added to its record."""
    saved = load_model(run / "model.pt", expected_task=task)
    record = saved.record | {"provenance": provenance}
    return save_model(STARTER_DIR / f"{task}.pt", saved.model, arch=saved.arch,
                      options=saved.options, task=task, preprocessing=saved.preprocessing,
                      record=record, half=True)


def provenance(args: argparse.Namespace, config: Any, result: Any, seconds: float,
               insertion: dict[str, Any], trained_on: set[str] | None = None
               ) -> dict[str, Any]:
    """What a model's run record keeps of how it was trained: data sources and licences, the
    held-out CTs, settings, the data's `insertion` settings, this command and the git commit.
    `trained_on`: the sources of the rows it trained on (`source_of`); None: the real sources
    the arguments name."""
    def used(source: str) -> bool:
        if source in ("generated", "lesion shapes"):
            return True
        if trained_on is not None:
            return source in trained_on
        return source not in args.hold_out and source != "lits117" and (
            not source.startswith("3Dircadb") or source in args.ircadb)

    return {
        "command": shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "git_commit": git_commit(),
        "sources": {k: v for k, v in SOURCES.items() if used(k)},
        "held_out": [*(p for p in IRCADB_WITH_CT if p not in args.ircadb),
                     *args.hold_out, "CRLM-CT-1004", "CRLM-CT-1006",
                     *([] if trained_on is None or "lits117" in trained_on
                       or "lits117" in args.hold_out else ["lits117"])],
        "settings": config.to_dict(), "insertion": insertion,
        "generated_patients": args.patients, "copies": args.copies,
        "generator_version": GENERATOR_VERSION,
        "train_seconds": round(seconds), "best_epoch": result.best_epoch,
        "best_val_dice": round(result.best_val_dice, 4),
    }


def install_trained(work: Path, task: str) -> None:
    """Install a model trained earlier in `work`, with the provenance saved beside it."""
    saved = work / f"{task}_provenance.json"
    if not (work / task / "model.pt").is_file() or not saved.is_file():
        raise FileNotFoundError(f"no trained {task} model with its provenance in {work}: "
                                "train first (without --install-trained)")
    path = install(work / task, task, json.loads(saved.read_text()))
    logger.info("installed %s (%.1f MB)", path, path.stat().st_size / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--validation-patients", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=["liver", "lesion"],
                        choices=("liver", "lesion"))
    parser.add_argument("--liver-set", action="append", default=[])
    parser.add_argument("--lesion-set", action="append", default=[])
    parser.add_argument("--insert-set", action="append", default=[],
                        help="Lesion insertion setting for data built in this run, e.g. "
                             "texture_hu=[0,25].")
    parser.add_argument("--ircadb", nargs="+", default=["3Dircadb1.17"],
                        help="IRCADb patients to train on (a leave-one-out check: 3Dircadb1.7).")
    parser.add_argument("--hold-out", nargs="+", default=[], choices=REAL_SOURCES,
                        help="Real CTs left out of training with their inserted copies.")
    parser.add_argument("--reuse-data", action="store_true",
                        help="Use WORK/data/train.csv from an earlier run.")
    parser.add_argument("--data", type=Path, default=None,
                        help="Use the training data an earlier run built in this folder "
                             "(its train.csv; e.g. OTHER_WORK/data), read only.")
    parser.add_argument("--with-lits", action="store_true",
                        help="Data built in this run includes LiTS 117, without inserted "
                             "copies (lesion model only); hold it out with --hold-out lits117.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue an interrupted run in WORK from its last epoch "
                             "(WORK/TASK/checkpoint.pt); a task without one starts afresh.")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--install-trained", action="store_true",
                        help="Train nothing: install the models trained earlier in WORK.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.install_trained:
        for task in args.tasks:
            try:
                install_trained(args.work, task)
            except FileNotFoundError as error:
                parser.error(str(error))
        return
    try:
        insertion = insertion_settings(parse_assignments(args.insert_set, "--insert-set"))
    except ValueError as error:
        parser.error(str(error))
    if (args.insert_set or args.with_lits) and (args.data is not None or args.reuse_data):
        parser.error("--insert-set and --with-lits change how data is built: drop "
                     "--data/--reuse-data")
    tic = time.perf_counter()
    if args.data is not None:
        manifest = args.data / "train.csv"
        if not manifest.is_file():
            parser.error(f"no train.csv in {args.data}: name the data folder of an earlier "
                         "run (WORK/data)")
    else:
        manifest = args.work / "data" / "train.csv"
        if not (args.reuse_data and manifest.is_file()):
            manifest = build_training_data(args.shared, args.work / "data",
                                           patients=args.patients,
                                           validation=args.validation_patients,
                                           copies=args.copies, seed=args.seed,
                                           ircadb=tuple(args.ircadb), insertion=insertion,
                                           with_lits=args.with_lits)
    logger.info("training data ready in %.0f s: %s", time.perf_counter() - tic, manifest)
    overrides = {"liver": parse_assignments(args.liver_set),
                 "lesion": parse_assignments(args.lesion_set)}
    for task in args.tasks:
        config = make_train_config(STARTER_SETTINGS[task] | overrides[task])
        task_manifest = task_rows(manifest, args.work, task, tuple(args.hold_out))
        tic = time.perf_counter()
        resume = args.resume and (args.work / task / "checkpoint.pt").is_file()
        result = train(task_manifest, args.work / task, config, resume=resume,
                       overwrite=not resume)
        seconds = time.perf_counter() - tic
        logger.info("%s: best epoch %d, validation Dice %.3f, %.0f s", task,
                    result.best_epoch, result.best_val_dice, seconds)
        (args.work / f"{task}_provenance.json").write_text(
            json.dumps(provenance(args, config, result, seconds,
                                  recorded_insertion(manifest.parent),
                                  {source_of(r.patient_id) for r in read_manifest(task_manifest)}),
                       indent=2))
        (args.work / f"{task}_result.json").write_text(json.dumps(
            {"best_epoch": result.best_epoch, "best_val_dice": result.best_val_dice,
             "seconds": round(seconds), "stop_reason": result.stop_reason}, indent=2))
        if args.install:
            install_trained(args.work, task)

if __name__ == "__main__":
    main()
