"""`livermets radiomics`: the features of every lesion of every CT of a manifest.

Jobs are (CT, mask source): `reference` (the manifest's `lesion_mask`) and, with
`predictions`, `predicted` (`predict`'s `PREDICTIONS/<case_id>/lesions.nii.gz`). Each job
writes `OUT/cases/<case_id>/<source>.csv` atomically when it finishes, so a re-run skips it
(resume); a job that fails (a missing or damaged mask, a mask off the CT's grid) is reported
and the others go on. At the end `OUT/features.csv` gathers every finished job's rows, in
manifest order, and `OUT/radiomics.json` records the settings, versions, outcomes and speed.

With `tracking` (`track` output folders), `OUT/delta.csv` holds each feature's change over
every persistent pair (`delta`). When a CT has both sources, its lesion pairs (a detected
reference lesion and its predicted lesion, `evaluate.matching.paired_lesions`) are kept in
`OUT/cases/<case_id>/pairs.csv` (recomputed when either source is), and `OUT/agreement.csv`
holds each feature's ICC(3,1) over all pairs, `OUT/agreement_summary.csv` the share of
features with ICC >= 0.75 and >= 0.9 per class (`agreement`).

Sharing the work (`livermets radiomics --shard K/N`, torchrun ranks): `plan_radiomics` checks
everything and lists the jobs; `run_share` extracts one share's jobs (a share is a set of CTs,
`infer.shards.shard_of` on the case ids, the same split as `predict`'s) and writes only their
per-case files; `write_cohort` writes the cohort's files (features.csv, delta.csv,
agreement.csv, radiomics.json) from the finished per-case files, once, after every share;
`collect_jobs` reads the per-case files' state for a merge. `radiomics_manifest` is the three in
one process.

Lesion ids are the ones `evaluate` and `track` use (`labels.lesion_ids`): a reference instance
map keeps its own labels (instances under `MIN_LESION_VOLUME_MM3` dropped, as in `evaluate`), a
binary reference's components are numbered by decreasing volume, and predicted lesions keep
`predict`'s ids.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livermets import __version__
from livermets.datasets.common import MIN_LESION_VOLUME_MM3
from livermets.errors import InputError
from livermets.infer.shards import Shard, shard_of
from livermets.io.atomic import write_csv_atomic, write_text_atomic
from livermets.io.image import read_image
from livermets.io.manifest import ManifestRow, check_mask_values, read_manifest
from livermets.io.safe_paths import (
    check_not_input,
    check_out_folder,
    check_replaceable,
    child_folder,
    make_folder,
    mark_as_ours,
)
from livermets.labels import lesion_ids
from livermets.radiomics.agreement import (
    AGREEMENT_COLUMNS,
    PAIR_COLUMNS,
    SUMMARY_COLUMNS,
    agreement_rows,
    agreement_summary,
    case_pairs,
)
from livermets.radiomics.delta import (
    MaskOwner,
    TrackedPair,
    delta_columns,
    delta_rows,
    tracked_pairs,
)
from livermets.radiomics.extract import lesion_features
from livermets.radiomics.settings import check_params, default_params
from livermets.types import PathLike

logger = logging.getLogger(__name__)

REFERENCE, PREDICTED = "reference", "predicted"
IDENTITY_COLUMNS = ("case_id", "patient_id", "timepoint", "mask_source", "lesion_id")
NOTE_COLUMN = "note"
FEATURES_FILE = "features.csv"
RECORD_FILE = "radiomics.json"
DELTA_FILE = "delta.csv"
AGREEMENT_FILE = "agreement.csv"
AGREEMENT_SUMMARY_FILE = "agreement_summary.csv"
PAIRS_FILE = "pairs.csv"
CASES_FOLDER = "cases"
OUTPUT_FILES = (FEATURES_FILE, RECORD_FILE, DELTA_FILE, AGREEMENT_FILE, AGREEMENT_SUMMARY_FILE)


@dataclass(frozen=True)
class Job:
    """One CT with one mask source; `table` is its per-case result file; `threads`: the
    SimpleITK threads of the process that runs it (None: SimpleITK's default, every core)."""

    case_id: str
    patient_id: str
    timepoint: str
    source: str
    image: Path
    mask: Path
    table: Path
    params: dict[str, Any]
    min_volume_mm3: float
    threads: int | None


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job: `status` "done", "skipped" (finished before) or "failed";
    `collect_jobs` reports "done" for a finished per-case file and "missing" otherwise."""

    case_id: str
    source: str
    status: str
    lesions: int | None = None
    seconds: float | None = None
    error: str | None = None


#: The statuses of a job whose per-case file holds its rows.
FINISHED = ("done", "skipped")


@dataclass(frozen=True)
class RadiomicsPlan:
    """A checked run over a cohort, nothing written yet (`plan_radiomics`): the output folder,
    the jobs in manifest order, the rows without any mask, `track`'s persistent pairs (None
    without `tracking`), the worker processes and the settings part of radiomics.json."""

    out: Path
    jobs: list[Job]
    skipped_rows: list[str]
    pairs: list[TrackedPair] | None
    workers: int
    settings: dict[str, Any]


@dataclass(frozen=True)
class RadiomicsResult:
    """Where the files are, each job's outcome, and the lesions in `features.csv`."""

    out: Path
    outcomes: list[JobOutcome]
    lesions: int
    skipped_rows: list[str]
    #: Rows of delta.csv (None: no `tracking`) and lesion pairs behind agreement.csv (None:
    #: no CT with both sources).
    delta_pairs: int | None = None
    agreement_pairs: int | None = None


def radiomics_manifest(manifest: PathLike, out: PathLike, *,
                       predictions: PathLike | None = None,
                       params: dict[str, Any] | None = None,
                       tracking: Sequence[PathLike] = (), workers: int = 1,
                       redo: bool = False, progress: bool = True) -> RadiomicsResult:
    """Features of every lesion of every CT of `manifest` into `out` (module docstring), in
    this process (and its `workers`).

    `params`: pyradiomics settings (default: `settings.DEFAULT_PARAMS`); `tracking`: `track`
    output folders, for delta.csv; `workers`: processes (1: in this process); `redo`:
    recompute finished jobs. `InputError`, before any work, as `plan_radiomics`.
    """
    plan = plan_radiomics(manifest, out, predictions=predictions, params=params,
                          tracking=tracking, workers=workers, redo=redo)
    write_running_record(plan)
    tic = time.perf_counter()
    outcomes = run_share(plan, redo=redo, progress=progress)
    return write_cohort(plan, outcomes, seconds=time.perf_counter() - tic)


def plan_radiomics(manifest: PathLike, out: PathLike, *,
                   predictions: PathLike | None = None,
                   params: dict[str, Any] | None = None,
                   tracking: Sequence[PathLike] = (), workers: int = 1,
                   cores: int | None = None, redo: bool = False) -> RadiomicsPlan:
    """Check a run and list its jobs; write nothing.

    `cores`: the cores this process may use (its share of the machine under torchrun; None:
    all): `workers` is capped to it and each job's SimpleITK threads are `cores` divided among
    the workers. `InputError` for a bad manifest, a missing predictions folder, a tracking
    folder that is not `track`'s or tracked other masks, unsafe output paths, settings other
    than those of the finished jobs in `out` (without `redo`), or nothing to extract.
    """
    out_dir = Path(out)
    params = default_params() if params is None else params
    check_params(params)
    if workers < 1:
        raise InputError(f"--workers {workers}: give 1 or more processes")
    if cores is not None and workers > cores:
        logger.warning("--workers %d on %d core(s) for this process: %d worker(s)", workers,
                       cores, cores)
        workers = cores
    prediction_dir = Path(predictions) if predictions is not None else None
    if prediction_dir is not None and not prediction_dir.is_dir():
        raise InputError(f"{prediction_dir}: no such predictions folder")
    rows = read_manifest(manifest)
    inputs = [Path(manifest), *(p for r in rows for p in (r.image, r.liver_mask, r.lesion_mask)
                                if p is not None)]
    if prediction_dir is not None:
        inputs.append(prediction_dir)
    inputs += [Path(folder) for folder in tracking]
    _check_out(out_dir, inputs, params, redo)
    jobs, skipped_rows = _jobs(rows, out_dir, prediction_dir, params, inputs,
                               job_threads(workers, cores))
    if not jobs:
        raise InputError(f"{manifest}: no row has a lesion_mask (and no --predictions); "
                         "nothing to extract")
    owners = {job.mask.resolve(): MaskOwner(job.case_id, job.patient_id, job.source)
              for job in jobs}
    pairs = [pair for folder in tracking for pair in tracked_pairs(Path(folder), owners)]
    settings = {
        "params": params, "manifest": str(Path(manifest).resolve()),
        "predictions": None if prediction_dir is None else str(prediction_dir.resolve()),
        "tracking": [str(Path(folder).resolve()) for folder in tracking], "workers": workers,
        "versions": _versions()}
    return RadiomicsPlan(out_dir, jobs, skipped_rows, pairs if tracking else None, workers,
                         settings)


def job_threads(workers: int, cores: int | None) -> int | None:
    """SimpleITK threads for each of `workers` processes given `cores` (None: no limit, and
    then one thread per worker when there are several, SimpleITK's default for one)."""
    if cores is None:
        return 1 if workers > 1 else None
    return max(1, cores // workers)


def write_running_record(plan: RadiomicsPlan, *, only_if_absent: bool = False) -> None:
    """radiomics.json with the settings and status "running" (so that a run with other settings
    is refused before it finishes); with `only_if_absent`, only where `out` holds none yet (a
    `--shard` run: the first share pins the settings, the merge writes the final record)."""
    path = plan.out / RECORD_FILE
    if only_if_absent and path.is_file():
        return
    _prepare_out(plan.out)
    write_text_atomic(path, json.dumps({"status": "running", **plan.settings}, indent=2) + "\n")


def run_share(plan: RadiomicsPlan, *, share: Shard | None = None, redo: bool = False,
              progress: bool = True) -> list[JobOutcome]:
    """Extract the jobs of `share` (all jobs: None) into their per-case files, and the lesion
    pairs of its CTs with both sources; write nothing else. The outcomes of the share's jobs,
    in plan order; finished jobs are skipped unless `redo`."""
    jobs = plan.jobs
    if share is not None:
        mine = set(shard_of([job.case_id for job in jobs], share.k, share.n))
        jobs = [job for job in jobs if job.case_id in mine]
    _prepare_out(plan.out)
    for folder in dict.fromkeys(job.table.parent for job in jobs):
        make_folder(folder)
        mark_as_ours(folder, "radiomics")
    outcomes = _run_jobs(jobs, plan.workers, redo=redo, progress=progress)
    _write_case_pairs(jobs, outcomes, redo=redo)
    return outcomes


def collect_jobs(plan: RadiomicsPlan) -> list[JobOutcome]:
    """Each job's state read from its per-case file, computing nothing (`radiomics --merge`):
    "done" with its lesion count where the file exists, "missing" otherwise (not run yet, or
    failed: its share's printed summary and log say why)."""
    outcomes = []
    for job in plan.jobs:
        if job.table.is_file():
            with job.table.open(newline="", encoding="utf-8") as file:
                lesions = sum(1 for _ in csv.DictReader(file))
            outcomes.append(JobOutcome(job.case_id, job.source, "done", lesions=lesions))
        else:
            outcomes.append(JobOutcome(job.case_id, job.source, "missing",
                                       error="not extracted: run its share again"))
    return outcomes


def write_cohort(plan: RadiomicsPlan, outcomes: Sequence[JobOutcome], *,
                 seconds: float | None, extra: dict[str, Any] | None = None
                 ) -> RadiomicsResult:
    """The cohort's files from the finished jobs' per-case files: features.csv (manifest
    order), delta.csv (with tracking), agreement.csv and agreement_summary.csv (CTs with both
    sources), radiomics.json (`extra` added to it; `seconds`: the extraction's wall time, None
    for a merge, which extracts nothing). Stale cohort files of an earlier run are removed."""
    if len(outcomes) != len(plan.jobs):
        raise ValueError(f"{len(outcomes)} outcomes for {len(plan.jobs)} jobs")
    out = plan.out
    _prepare_out(out)
    rows_out, columns = _gather([j for j, o in zip(plan.jobs, outcomes, strict=True)
                                 if o.status in FINISHED])
    write_csv_atomic(out / FEATURES_FILE, rows_out, columns)
    names = [c for c in columns if c not in IDENTITY_COLUMNS and c != NOTE_COLUMN]
    by_lesion = {(r["case_id"], r["mask_source"], r["lesion_id"]): r for r in rows_out}
    record: dict[str, Any] = {"status": "running", **plan.settings, **(extra or {})}
    if plan.pairs is not None:
        write_csv_atomic(out / DELTA_FILE, delta_rows(plan.pairs, by_lesion, names),
                         delta_columns(names))
        record["delta"] = _delta_record(plan.pairs)
    else:
        (out / DELTA_FILE).unlink(missing_ok=True)  # an earlier run's, now stale
    agreement = _agreement(plan.jobs, outcomes, by_lesion, names, out)
    if agreement is not None:
        record["agreement"] = agreement
    else:
        for name in (AGREEMENT_FILE, AGREEMENT_SUMMARY_FILE):
            (out / name).unlink(missing_ok=True)
    record |= {"status": "finished", "lesions": len(rows_out),
               "outcomes": [asdict(o) for o in outcomes], "skipped_rows": plan.skipped_rows,
               "timing": None if seconds is None else _timing(outcomes, seconds)}
    write_text_atomic(out / RECORD_FILE, json.dumps(record, indent=2) + "\n")
    return RadiomicsResult(out, list(outcomes), len(rows_out), plan.skipped_rows,
                           delta_pairs=None if plan.pairs is None else len(plan.pairs),
                           agreement_pairs=None if agreement is None
                           else agreement["lesion_pairs"])


def _timing(outcomes: Sequence[JobOutcome], seconds: float) -> dict[str, Any]:
    """The extraction's speed for radiomics.json: lesions computed (not skipped) per second."""
    computed = sum(o.lesions or 0 for o in outcomes if o.status == "done")
    return {"seconds": round(seconds, 2), "lesions_computed": computed,
            "lesions_per_second": round(computed / seconds, 3)
            if computed and seconds > 0 else None}


def _prepare_out(out: Path) -> None:
    """Create `out` (if needed) and mark it as livermets'."""
    make_folder(out)
    mark_as_ours(out, "radiomics")


def _delta_record(pairs: Sequence[TrackedPair]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.source] = counts.get(pair.source, 0) + 1
    return {"file": DELTA_FILE, "pairs": len(pairs), "pairs_by_source": counts}


def _both_sources(jobs: Sequence[Job], outcomes: Sequence[JobOutcome]
                  ) -> dict[str, dict[str, tuple[Job, JobOutcome]]]:
    """The CTs whose reference and predicted jobs both finished: each source's job and outcome."""
    finished: dict[str, dict[str, tuple[Job, JobOutcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome.status in FINISHED:
            finished.setdefault(job.case_id, {})[job.source] = (job, outcome)
    return {case: sources for case, sources in finished.items() if len(sources) == 2}


def _pairs_table(reference: Job, predicted: Job) -> Path:
    """Write `cases/<case_id>/pairs.csv`, the CT's lesion pairs (`agreement.case_pairs`)."""
    table = reference.table.parent / PAIRS_FILE
    found = case_pairs(reference.mask, predicted.mask,
                       reference_min_mm3=reference.min_volume_mm3)
    write_csv_atomic(table, [{"reference_lesion_id": p.reference_id,
                              "predicted_lesion_id": p.predicted_id,
                              "dice": round(p.dice, 4)} for p in found], PAIR_COLUMNS)
    return table


def _write_case_pairs(jobs: Sequence[Job], outcomes: Sequence[JobOutcome], *,
                      redo: bool) -> None:
    """pairs.csv of each CT with both sources finished, made again when either source was
    (or `redo`); a CT whose pairs fail is logged, and `_agreement` reports it."""
    for case_id, sources in _both_sources(jobs, outcomes).items():
        (reference, ref_outcome), (predicted, pred_outcome) = (sources[REFERENCE],
                                                               sources[PREDICTED])
        table = reference.table.parent / PAIRS_FILE
        if not (redo or not table.is_file() or "done" in (ref_outcome.status,
                                                          pred_outcome.status)):
            continue
        try:
            _pairs_table(reference, predicted)
        except Exception as error:  # one CT's failure never stops the cohort
            table.unlink(missing_ok=True)  # stale: its masks changed
            logger.error("%s: no lesion pairs for the agreement: %s", case_id, error)


def _agreement(jobs: Sequence[Job], outcomes: Sequence[JobOutcome],
               features: dict[tuple[str, str, str], dict[str, str]], names: Sequence[str],
               out: Path) -> dict[str, Any] | None:
    """agreement.csv and agreement_summary.csv over the lesion pairs (each CT's pairs.csv,
    made where missing) of every CT whose two sources finished; their record, or None when no
    CT has both."""
    both = _both_sources(jobs, outcomes)
    if not both:
        return None
    pairs: list[tuple[dict[str, str], dict[str, str]]] = []
    failed: dict[str, str] = {}
    for case_id, sources in both.items():
        reference, predicted = sources[REFERENCE][0], sources[PREDICTED][0]
        table = reference.table.parent / PAIRS_FILE
        try:
            if not table.is_file():
                _pairs_table(reference, predicted)
            with table.open(newline="", encoding="utf-8") as file:
                case_rows = list(csv.DictReader(file))
        except Exception as error:  # one CT's failure never stops the cohort
            failed[case_id] = f"{type(error).__name__}: {error}"
            logger.error("%s: no lesion pairs for the agreement: %s", case_id, error)
            continue
        for row in case_rows:
            a = features.get((case_id, REFERENCE, row["reference_lesion_id"]))
            b = features.get((case_id, PREDICTED, row["predicted_lesion_id"]))
            if a is not None and b is not None:
                pairs.append((a, b))
    rows = agreement_rows(pairs, names)
    summary = agreement_summary(rows)
    write_csv_atomic(out / AGREEMENT_FILE, rows, AGREEMENT_COLUMNS)
    write_csv_atomic(out / AGREEMENT_SUMMARY_FILE, summary, SUMMARY_COLUMNS)
    return {"file": AGREEMENT_FILE, "cases": len(both) - len(failed),
            "lesion_pairs": len(pairs), "failed_cases": failed, "summary": summary}


def _check_out(out: Path, inputs: Sequence[Path], params: dict[str, Any], redo: bool) -> None:
    """`out` is a folder, no input, and (when it holds anything) ours, computed with `params`
    unless `redo`."""
    check_out_folder(out)
    check_not_input(out, inputs, "the radiomics folder", holding=False)
    for name in OUTPUT_FILES:
        check_not_input(out / name, inputs, "the output file", holding=False)
    if not out.is_dir() or not any(out.iterdir()):
        return
    check_replaceable(out)
    record_path = out / RECORD_FILE
    if redo or not record_path.is_file():
        return
    try:
        earlier = json.loads(record_path.read_text(encoding="utf-8")).get("params")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        earlier = None
    if earlier != params:
        raise InputError(f"{out} holds features computed with other settings (see "
                         f"{record_path}); use another --out, or --redo to recompute them all")


def _jobs(rows: Sequence[ManifestRow], out: Path, predictions: Path | None,
          params: dict[str, Any], inputs: Sequence[Path], threads: int | None
          ) -> tuple[list[Job], list[str]]:
    """The jobs in manifest order (reference before predicted) and the rows without any."""
    jobs, skipped = [], []
    cases = out / CASES_FOLDER
    for row in rows:
        masks = []
        if row.lesion_mask is not None:
            masks.append((REFERENCE, row.lesion_mask, MIN_LESION_VOLUME_MM3))
        if predictions is not None:
            masks.append((PREDICTED, predictions / row.case_id / "lesions.nii.gz", 0.0))
        if not masks:
            skipped.append(row.case_id)
            continue
        folder = child_folder(cases, row.case_id, "case id")
        check_not_input(folder, inputs, "the case folder")
        check_replaceable(folder)
        for source, mask, min_volume in masks:
            jobs.append(Job(row.case_id, row.patient_id, row.timepoint, source, row.image,
                            mask, folder / f"{source}.csv", params, min_volume, threads))
    return jobs, skipped


def _run_jobs(jobs: Sequence[Job], workers: int, *, redo: bool, progress: bool
              ) -> list[JobOutcome]:
    """Each job's outcome, in `jobs` order; finished ones skipped unless `redo`."""
    outcomes: dict[int, JobOutcome] = {}
    pending = []
    for index, job in enumerate(jobs):
        if job.table.is_file() and not redo:
            outcomes[index] = JobOutcome(job.case_id, job.source, "skipped")
        else:
            pending.append(index)
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc="radiomics", unit="CT", file=sys.stderr,
               disable=None if progress else True, dynamic_ncols=True)
    try:
        if workers == 1 or len(pending) <= 1:
            for index in pending:
                outcomes[index] = _report(run_job(jobs[index]))
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
            with ProcessPoolExecutor(max_workers=min(workers, len(pending)),
                                     mp_context=context) as pool:
                futures: dict[Future[JobOutcome], int] = {
                    pool.submit(run_job, jobs[index]): index for index in pending}
                for future in as_completed(futures):
                    outcomes[futures[future]] = _report(future.result())
                    bar.update()
    finally:
        bar.close()
    return [outcomes[index] for index in range(len(jobs))]


def _report(outcome: JobOutcome) -> JobOutcome:
    if outcome.status == "failed":
        logger.error("%s (%s): %s", outcome.case_id, outcome.source, outcome.error)
    else:
        logger.info("%s (%s): %d lesion(s) in %.1f s", outcome.case_id, outcome.source,
                    outcome.lesions or 0, outcome.seconds or 0.0)
    return outcome


def run_job(job: Job) -> JobOutcome:
    """Extract one job's features into `job.table` (atomically); never raises: a failure is
    the outcome's `error`."""
    tic = time.perf_counter()
    try:
        if job.threads is not None:
            import SimpleITK as sitk

            sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(job.threads)
        rows = _job_rows(job)
    except InputError as error:
        return JobOutcome(job.case_id, job.source, "failed", error=str(error))
    except Exception as error:  # one CT's failure never stops the cohort
        return JobOutcome(job.case_id, job.source, "failed",
                          error=f"{type(error).__name__}: {error}")
    return JobOutcome(job.case_id, job.source, "done", lesions=len(rows),
                      seconds=round(time.perf_counter() - tic, 2))


def _job_rows(job: Job) -> list[dict[str, Any]]:
    if not job.mask.is_file():
        hint = ("run `livermets predict` for it first" if job.source == PREDICTED
                else "fix the manifest")
        raise InputError(f"{job.mask} not found; {hint}")
    ct = read_image(job.image)
    mask = read_image(job.mask)
    difference = ct.geometry.difference(mask.geometry)
    if difference is not None:
        raise InputError(f"the {job.source} lesion mask {job.mask} is not on the CT's grid "
                         f"({difference})")
    check_mask_values(mask.array, f"the {job.source} lesion mask {job.mask}", liver=False)
    labels = lesion_ids(mask.array, ct.spacing, min_volume_mm3=job.min_volume_mm3)
    identity = {"case_id": job.case_id, "patient_id": job.patient_id,
                "timepoint": job.timepoint, "mask_source": job.source}
    rows = []
    columns: dict[str, None] = {}
    for lesion in lesion_features(ct, labels, job.params):
        columns |= dict.fromkeys(lesion.features)
        rows.append(identity | {"lesion_id": lesion.lesion_id} | lesion.features
                    | {NOTE_COLUMN: lesion.note})
    write_csv_atomic(job.table, rows, [*IDENTITY_COLUMNS, *columns, NOTE_COLUMN])
    return rows


def _gather(jobs: Sequence[Job]) -> tuple[list[dict[str, str]], list[str]]:
    """Every row of the jobs' tables, in order, and the union of their columns (features in
    the order first met, `note` last)."""
    rows: list[dict[str, str]] = []
    features: dict[str, None] = {}
    for job in jobs:
        with job.table.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            features |= dict.fromkeys(c for c in reader.fieldnames or ()
                                      if c not in IDENTITY_COLUMNS and c != NOTE_COLUMN)
            rows.extend(reader)
    return rows, [*IDENTITY_COLUMNS, *features, NOTE_COLUMN]


def _versions() -> dict[str, str]:
    """Versions of the libraries the features depend on."""
    import platform

    import numpy
    import radiomics
    import SimpleITK

    return {"livermets": __version__, "pyradiomics": str(radiomics.__version__),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString()}
