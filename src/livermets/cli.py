"""The `livermets` command line: a thin typer shell around the Python API.

Every command turns bad input into one line on stderr and exit code 2 (see `_run`); an
unexpected failure prints one line too (exit code 1) unless `--debug` asks for the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from livermets import __version__
from livermets.errors import InputError

logger = logging.getLogger("livermets")
T = TypeVar("T")

app = typer.Typer(
    name="livermets",
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
        typer.echo(f"livermets {__version__}")
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
