"""Output paths that cannot reach a user's data.

One rule for every name that becomes a folder (case, patient, timepoint: `NAME_RULE`), every
output path proven to lie inside its `--out` (symlinks followed), never an input or a folder
holding one, and only folders that livermets itself wrote ever replaced or written into again.
A folder livermets writes holds the marker file `MARKER`; `is_ours` recognises it (and the
folders of earlier versions, by their records).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from livermets.errors import InputError
from livermets.io.atomic import make_folder as make_folder  # re-exported with the helpers here
from livermets.io.atomic import stem_without_suffix, write_text_atomic

#: A name that becomes a folder: letters, digits, '.', '_' and '-', starting with a letter or
#: a digit (so never '', '.', '..', a hidden name, an absolute path or one with a separator).
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # whole name: use fullmatch
NAME_RULE_TEXT = ("letters, digits, '.', '_' and '-', starting with a letter or digit, "
                  "at most 200 characters")

#: The file livermets leaves in each folder it writes (case, patient): only such folders are
#: ever replaced.
MARKER = ".livermets"


def check_name(name: str, what: str) -> str:
    """`name` when it follows `NAME_RULE`; else `InputError` naming `what` (e.g. '--case-id')."""
    if not NAME_RULE.fullmatch(name):
        raise InputError(f"{what} {name!r} cannot name an output folder; use only "
                         f"{NAME_RULE_TEXT}")
    return name


def name_from_input(path: Path) -> str:
    """The output folder name for an input given without one: a file's name without its
    suffix, a folder's own name ('.' and '..' resolved, symlinks not); characters outside
    `NAME_RULE` become '_'; 'case' when nothing is left."""
    absolute = Path(os.path.normpath(path.absolute()))
    return clean_name(absolute.name if absolute.is_dir() else stem_without_suffix(absolute))


def clean_name(text: str, empty: str = "case") -> str:
    """`text` made a name by `NAME_RULE`: characters outside it become '_', leading '.', '_'
    and '-' go, at most 200 characters; `empty` when nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")[:200]
    return cleaned or empty


def child_folder(out: Path, name: str, what: str) -> Path:
    """`out / name` after checking `name` against `NAME_RULE` and that the path, symlinks
    followed, lies inside `out`."""
    folder = out / check_name(name, what)
    ensure_inside(out, folder)
    return folder


def ensure_inside(out: Path, path: Path) -> None:
    """`InputError` unless `path` (symlinks followed) lies strictly inside `out`."""
    root, target = out.resolve(), path.resolve()
    if root not in target.parents:
        raise InputError(f"{path} resolves to {target}, outside {out}; livermets writes only "
                         "inside --out: remove the link or choose another --out")


def check_out_folder(out: Path, option: str = "--out") -> None:
    """`InputError` when `out` (or a folder above it) is a file rather than a folder."""
    for candidate in (out, *out.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise InputError(f"{option} {out}: {candidate} is a file, not a folder; give "
                                 "a folder")
            return


def check_not_input(target: Path, inputs: Iterable[Path], what: str, *,
                    holding: bool = True) -> None:
    """`InputError` when the output `target` is an input, lies inside an input folder, or
    (with `holding`: a folder livermets may replace) holds an input. `what` names it in the
    message, e.g. 'the case folder'."""
    resolved = target.resolve()
    for given in inputs:
        source = given.resolve()
        if source == resolved or (holding and resolved in source.parents):
            verb = "is" if source == resolved else "holds"
            raise InputError(f"{what} {target} {verb} the input {given}; livermets never "
                             "writes over its input: choose another --out (or name)")
        if source.is_dir() and source in resolved.parents:
            raise InputError(f"{what} {target} lies inside the input folder {given}; choose "
                             "an --out outside it")


def mark_as_ours(folder: Path, kind: str) -> None:
    """Leave `MARKER` in `folder`: livermets wrote it (`kind`: 'prediction', 'tracking')."""
    write_text_atomic(folder / MARKER, json.dumps({"written_by": "livermets",
                                                   "kind": kind}) + "\n")


#: A folder written before the marker existed: its JSON record's name and the keys it holds.
Legacy = tuple[str, tuple[str, ...]]


def is_ours(folder: Path, legacy: Legacy | None = None) -> bool:
    """Whether livermets wrote `folder`: it holds `MARKER`, or (folders written before the
    marker existed) `legacy`'s JSON record holding all of its keys."""
    if (folder / MARKER).is_file():
        return True
    if legacy is None or not (folder / legacy[0]).is_file():
        return False
    try:
        record = json.loads((folder / legacy[0]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and all(key in record for key in legacy[1])


def check_replaceable(folder: Path, legacy: Legacy | None = None) -> None:
    """`InputError` when `folder` exists but livermets did not write it."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise InputError(f"{folder} exists and is not a folder livermets wrote; livermets "
                         "never replaces it: move it or choose another --out")
    if folder.exists() and not is_ours(folder, legacy):
        raise InputError(f"{folder} exists and livermets did not write it (no {MARKER} "
                         "marker); livermets never replaces it: move it or choose another "
                         "--out")
