"""Atomic file writing: write to a temporary file beside the target, then rename.

A crash mid-write leaves either the old file or nothing, never half a file.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from livermets.errors import InputError
from livermets.types import PathLike


def full_suffix(path: PathLike) -> str:
    """The file's suffix with `.nii.gz`-style double suffixes kept whole (lower case)."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def stem_without_suffix(path: PathLike) -> str:
    """The file name without its (possibly double, e.g. `.nii.gz`) suffix."""
    name = Path(path).name
    suffix = full_suffix(path)
    return name[: len(name) - len(suffix)] if suffix else name


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` with the same suffix; rename it onto `path` on success.

    The parent folder is created if missing. On an exception the temporary file is removed
    and `path` is left untouched. The file gets the permissions a plain `open` would give it
    (0666 less the umask), not the temporary file's 0600.
    """
    target = Path(path)
    suffix = full_suffix(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}",
                                        dir=target.parent)
    except OSError as exc:
        raise InputError(f"cannot write {target} ({exc.strerror or exc}); choose a folder "
                         "you can write to") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_folder(folder: Path) -> Path:
    """`folder` created with its parents; an OS refusal (permission, read-only file system,
    a file in the way) is an `InputError` saying so."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {folder} ({exc.strerror or exc}); choose "
                         "a folder you can write to") from None
    return folder


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header of `columns` and one line per row (None becomes empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def write_csv_atomic(path: PathLike, rows: Iterable[Mapping[str, Any]],
                     columns: Sequence[str]) -> None:
    """Write `csv_text(rows, columns)` to `path` atomically."""
    write_text_atomic(path, csv_text(rows, columns))
