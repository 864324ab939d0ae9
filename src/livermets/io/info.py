"""`info` and `convert`: the geometry and value range of an image, and format conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from livermets.errors import InputError
from livermets.io.image import read_image, write_image
from livermets.types import PathLike

_METADATA_KEYS = ("format", "modality", "study_instance_uid", "series_instance_uid")


def image_info(path: PathLike, *, series_uid: str | None = None) -> dict[str, Any]:
    """Geometry and value range of an image, as plain JSON.

    Keys: `shape` [z, y, x], `spacing` [z, y, x] mm, `origin` [x, y, z] mm (LPS), `direction`
    (row-major 3x3), `dtype`, `min`, `max` (HU for CT), then `format` and any DICOM UIDs.
    """
    volume = read_image(path, series_uid=series_uid)
    info: dict[str, Any] = volume.geometry.to_json()
    array = volume.array
    info["dtype"] = str(array.dtype)
    info["min"] = _plain(array.min())
    info["max"] = _plain(array.max())
    for key in _METADATA_KEYS:
        if volume.metadata.get(key):
            info[key] = volume.metadata[key]
    return info


def _plain(value: np.generic) -> int | float:
    return int(value) if np.issubdtype(value.dtype, np.integer) else float(value)


def convert_image(
    source: PathLike, target: PathLike, *, series_uid: str | None = None, overwrite: bool = False
) -> Path:
    """Read `source` (file or DICOM folder) and write it to `target` with the same geometry.

    Refuses to write over the source, and over an existing `target` unless `overwrite`.
    """
    src, dst = Path(source), Path(target)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise InputError(f"{dst} is the input itself; choose another output path")
    if dst.is_dir():
        raise InputError(f"{dst} is a folder; give an output file such as {dst}/image.nii.gz")
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} exists; choose another path or pass --overwrite")
    volume = read_image(src, series_uid=series_uid)
    return write_image(volume, dst)
