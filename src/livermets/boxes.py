"""Bounding boxes (tuples of z, y, x slices) grown by a distance in mm, clipped to the volume.

Preprocessing and inference work on boxes around the liver or around one candidate instead of
whole CTs; these are the one place where a box is grown by a radius in mm on a grid of a given
spacing. A base module (like `labels` and `measure`): `preprocess` and `infer` both use it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.errors import InputError
from livermets.types import Spacing


def grow_box(box: tuple[slice, ...], spacing: Spacing, radius_mm: float,
             shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """`box` grown by `radius_mm` (rounded up to whole voxels of `spacing`, mm) on every side,
    clipped to `shape`."""
    reach = [int(np.ceil(radius_mm / s)) for s in spacing]
    z, y, x = (slice(max(0, b.start - r), min(n, b.stop + r))
               for b, r, n in zip(box, reach, shape, strict=True))
    return z, y, x


def grown_box(mask: npt.NDArray[np.generic], spacing: Spacing,
              radius_mm: float) -> tuple[slice, slice, slice]:
    """The bounding box of `mask` (z, y, x) > 0 grown by `radius_mm` on every side, clipped.

    Raises `InputError` for an empty mask.
    """
    boxes = ndimage.find_objects((np.asarray(mask) > 0).astype(np.uint8))
    if not boxes or boxes[0] is None:
        raise InputError("the liver mask is empty; check the liver mask or the liver model")
    return grow_box(boxes[0], spacing, radius_mm, np.shape(mask))
