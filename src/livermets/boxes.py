"""Bounding boxes (tuples of z, y, x slices) grown by a distance in mm, clipped to the volume.

Preprocessing and inference work on boxes around the liver or around one candidate instead of
whole CTs; these are the one place where a box is grown by a radius in mm on a grid of a given
spacing. A base module (like `labels` and `measure`): `preprocess` and `infer` both use it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from livermets.errors import InputError
from livermets.types import Spacing

#: The refusal for an empty liver mask wherever a box round the liver is needed.
EMPTY_LIVER = "the liver mask is empty; check the liver mask or the liver model"


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
    box = bounding_box(mask)
    if box is None:
        raise InputError(EMPTY_LIVER)
    return grow_box(box, spacing, radius_mm, np.shape(mask))


def bounding_box(mask: npt.NDArray[np.generic]) -> tuple[slice, ...] | None:
    """The bounding box of `mask > 0` (one slice per axis, e.g. z, y, x); None when empty.

    From the mask's projections on each axis, the first axis first and then only over the
    range found: the box `ndimage.find_objects` gives, a few times faster.
    """
    inside = np.asarray(mask)
    if inside.dtype != bool:
        inside = inside > 0
    if inside.ndim == 0 or inside.size == 0:
        return None
    first = np.flatnonzero(inside.any(axis=tuple(range(1, inside.ndim))))
    if first.size == 0:
        return None
    slab = inside[first[0] : first[-1] + 1]
    others = [np.flatnonzero(slab.any(axis=tuple(a for a in range(inside.ndim) if a != axis)))
              for axis in range(1, inside.ndim)]
    return tuple(slice(int(a[0]), int(a[-1]) + 1) for a in (first, *others))
