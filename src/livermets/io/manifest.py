"""The cohort manifest: one CSV row per CT, read and validated into typed `ManifestRow` records.

Columns (exactly these, in any order): `patient_id, center, timepoint, image, liver_mask,
lesion_mask, split`. `liver_mask`, `lesion_mask` and `split` may be empty. Paths are relative
to the manifest file (absolute paths are kept). `image` is a file (NIfTI, NRRD, MetaImage) or a
DICOM series folder. `timepoint` is `baseline`, `tp1`, `tp2`, ... Each (patient_id, timepoint)
appears once.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from livermets.errors import InputError
from livermets.io.atomic import write_text_atomic
from livermets.io.safe_paths import NAME_RULE, NAME_RULE_TEXT
from livermets.types import PathLike

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "patient_id",
    "center",
    "timepoint",
    "image",
    "liver_mask",
    "lesion_mask",
    "split",
)
REQUIRED_VALUES: tuple[str, ...] = ("patient_id", "timepoint", "image")
_TIMEPOINT = re.compile(r"^(baseline|tp\d+)$")


def timepoint_order(timepoint: str) -> int:
    """Sort key for time points: baseline is 0, tpN is N."""
    return 0 if timepoint == "baseline" else int(timepoint[2:])


@dataclass(frozen=True)
class ManifestRow:
    """One CT of a cohort. Paths are absolute once read from a manifest file.

    `row_number` is the 1-based data-row number in the CSV (header excluded), for messages.
    """

    patient_id: str
    timepoint: str
    image: Path
    center: str = ""
    liver_mask: Path | None = None
    lesion_mask: Path | None = None
    split: str = ""
    row_number: int = 0

    @property
    def case_id(self) -> str:
        """`<patient_id>_<timepoint>`, the name of this CT's output folder."""
        return f"{self.patient_id}_{self.timepoint}"

    @property
    def where(self) -> str:
        """'row N (patient P, timepoint T)' for error messages."""
        return f"row {self.row_number} ({self.patient_id}, {self.timepoint})"


def read_manifest(path: PathLike, *, check_files: bool = True) -> list[ManifestRow]:
    """Read and validate a manifest CSV; paths resolve relative to the manifest's folder.

    Raises `InputError` naming the row and the problem for: an unreadable file, missing or
    unknown columns, empty required values, a bad timepoint or id, a duplicate (patient_id,
    timepoint), and (with `check_files`) a missing image or mask file. Geometry and mask values
    are checked by `validate_manifest`, which reads the images.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found; give the path of a manifest.csv")
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest}: cannot read the manifest as UTF-8 text ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise InputError(f"{manifest} is empty; it needs a header row: {','.join(COLUMNS)}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(
            f"{manifest}: unknown column(s) {', '.join(repr(u) for u in unknown)}; "
            f"the columns are {','.join(COLUMNS)}"
        )
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{manifest}: missing column(s) {', '.join(missing)}; "
            f"the columns are {','.join(COLUMNS)} (optional ones may be left empty)"
        )
    reader.fieldnames = header
    base = manifest.resolve().parent
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(reader, start=1):
        if None in raw:
            raise InputError(
                f"{manifest}: row {number} has more values than the header has columns"
            )
        values = {k: (v or "").strip() for k, v in raw.items()}
        if not any(values.values()):
            continue  # blank line
        row = _parse_row(values, number, base, manifest)
        key = (row.patient_id, row.timepoint)
        if key in seen:
            raise InputError(
                f"{manifest}: row {number} repeats patient {row.patient_id} at "
                f"{row.timepoint} (first in row {seen[key]}); each CT appears once"
            )
        seen[key] = number
        if check_files:
            _check_files(row, manifest)
        rows.append(row)
    if not rows:
        raise InputError(f"{manifest} has a header but no rows; add one row per CT")
    return rows


def _parse_row(values: dict[str, str], number: int, base: Path, manifest: Path) -> ManifestRow:
    for column in REQUIRED_VALUES:
        if not values[column]:
            raise InputError(f"{manifest}: row {number} has no {column}; every row needs one")
    patient_id, timepoint = values["patient_id"], values["timepoint"]
    if not NAME_RULE.fullmatch(patient_id):
        raise InputError(
            f"{manifest}: row {number} patient_id {patient_id!r} cannot name an output folder; "
            f"use only {NAME_RULE_TEXT}"
        )
    if not _TIMEPOINT.match(timepoint):
        raise InputError(
            f"{manifest}: row {number} timepoint {timepoint!r} is not 'baseline' or 'tpN' "
            "(tp1, tp2, ...)"
        )

    def resolve(value: str) -> Path | None:
        if not value:
            return None
        p = Path(value).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else base / p))

    image = resolve(values["image"])
    assert image is not None  # required value checked above
    return ManifestRow(
        patient_id=patient_id,
        timepoint=timepoint,
        image=image,
        center=values["center"],
        liver_mask=resolve(values["liver_mask"]),
        lesion_mask=resolve(values["lesion_mask"]),
        split=values["split"],
        row_number=number,
    )


def _check_files(row: ManifestRow, manifest: Path) -> None:
    for column, path in (("image", row.image), ("liver_mask", row.liver_mask),
                         ("lesion_mask", row.lesion_mask)):
        if path is not None and not path.exists():
            raise InputError(
                f"{manifest}: {row.where}: {column} {path} does not exist; fix the path "
                "(relative paths start at the manifest's folder)"
            )


MASK_COLUMNS: tuple[str, ...] = ("liver_mask", "lesion_mask")


def validate_manifest(rows: Sequence[ManifestRow], *, check_values: bool = True,
                      columns: Sequence[str] = MASK_COLUMNS) -> None:
    """Check each row's masks (of `columns`) against its image: same grid, integer labels.

    Geometry is read from headers only. With `check_values`, mask voxels are read and checked
    by `check_mask_values`. Raises `InputError` naming the row and the problem.
    """
    from livermets.io.image import read_geometry, read_image

    for row in rows:
        image_geometry = read_geometry(row.image)
        for column in columns:
            path = getattr(row, column)
            if path is None:
                continue
            if path == row.image:
                raise InputError(f"{row.where}: {column} is the image itself; give the mask's "
                                 "file")
            difference = image_geometry.difference(read_geometry(path))
            if difference is not None:
                raise InputError(
                    f"{row.where}: {column} {path.name} is not on the image's grid "
                    f"({difference}); resample the mask onto the CT"
                )
            if check_values:
                check_mask_values(read_image(path).array, f"{row.where}: {column} {path.name}",
                                  liver=column == "liver_mask")


def check_mask_values(array: np.ndarray, what: str, *, liver: bool) -> None:
    """`InputError` unless `array` holds integers >= 0 (binary 0/1 or lesion labels 0..K).

    A float mask with fractional or non-finite values, a negative value, or a non-numeric
    type is refused; so is a liver mask (`liver`) with more than 255 labels (a CT given as a
    mask). `what` names the mask in the message.
    """
    if array.dtype == np.bool_:
        return
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError(f"{what} has non-integer values; a mask must be binary (0/1) or "
                             "integer lesion labels")
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{what} has {array.dtype} values; a mask must hold integers")
    if array.size == 0:
        return
    if array.min() < 0:
        raise InputError(f"{what} has negative values (is it a CT?); a mask must be binary "
                         "(0/1) or integer lesion labels")
    if liver and array.max() > 255:
        raise InputError(f"{what} has values up to {array.max()} (is it a CT?); a liver mask "
                         "is binary (0/1)")
    if liver and array.max() > 1:
        logger.info("%s has labels up to %s; voxels > 0 count as liver", what, array.max())


def write_manifest(rows: Iterable[ManifestRow], path: PathLike) -> Path:
    """Write rows to a manifest CSV atomically, paths relative to the manifest's folder."""
    manifest = Path(path)
    base = manifest.resolve().parent
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        def rel(p: Path | None) -> str:
            if p is None:
                return ""
            absolute = p if p.is_absolute() else Path.cwd() / p
            return Path(os.path.relpath(absolute.resolve(), base)).as_posix()

        writer.writerow([row.patient_id, row.center, row.timepoint, rel(row.image),
                         rel(row.liver_mask), rel(row.lesion_mask), row.split])
    write_text_atomic(manifest, buffer.getvalue())
    return manifest


def with_row_numbers(rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """Rows renumbered 1..N (after filtering or concatenation)."""
    return [replace(row, row_number=i) for i, row in enumerate(rows, start=1)]
