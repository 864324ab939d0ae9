"""Instance label maps: split binary masks into 3D connected components and number them.

Shared by the importers, inference and evaluation so that "a lesion" means the same thing
everywhere: a 26-connected component (voxels touching by a face, an edge or a corner) of the
lesion mask. Labels run 1..K by decreasing volume; 0 is background.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.boxes import bounding_box
from livermets.slabs import by_slabs
from livermets.types import Spacing

logger = logging.getLogger(__name__)

FULL_CONNECTIVITY = 26
_STRUCTURES = {
    6: ndimage.generate_binary_structure(3, 1),
    18: ndimage.generate_binary_structure(3, 2),
    26: ndimage.generate_binary_structure(3, 3),
}
#: Face neighbours within a z slice only: components of the slices of a (z, y, x) volume.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def connected_components(
    mask: npt.NDArray[np.generic], *, connectivity: int = FULL_CONNECTIVITY
) -> tuple[npt.NDArray[np.int32], int]:
    """Label the 3D connected components of `mask > 0` (shape (z, y, x)).

    `connectivity` is 6, 18 or 26 (face, +edge, +corner neighbours). Returns the int32 label
    array (0 background, 1..K in scan order) and K.

    A sparse mask (its bounding box under half the array, e.g. lesions in a liver's box) is
    labelled in its bounding box only: the same labels, as the scan order of the voxels in a
    box is theirs in the array.
    """
    if connectivity not in _STRUCTURES:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    inside = np.asarray(mask) > 0
    box = bounding_box(inside)
    if box is not None and _voxels(box) * 2 < inside.size:
        labels = np.zeros(inside.shape, dtype=np.int32)
        part, count = ndimage.label(inside[box], structure=_STRUCTURES[connectivity])
        labels[box] = part
        return labels, int(count)
    labels, count = ndimage.label(inside, structure=_STRUCTURES[connectivity])
    return labels.astype(np.int32, copy=False), int(count)


def _voxels(box: tuple[slice, ...]) -> int:
    """The number of voxels of a box of (start, stop) slices."""
    return int(np.prod([b.stop - b.start for b in box]))


def smallest_label_dtype(max_label: int) -> np.dtype[np.unsignedinteger]:
    """uint8 up to 255 labels, uint16 up to 65535, else uint32."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"{max_label} labels do not fit in uint32")


def relabel_by_volume(
    labels: npt.NDArray[np.integer], *, min_voxels: int = 1
) -> tuple[npt.NDArray[np.unsignedinteger], list[int]]:
    """Renumber the labels of an instance map 1..K by decreasing voxel count (ties: old label).

    Labels with fewer than `min_voxels` voxels become background. Returns the new map (the
    smallest unsigned dtype that fits) and the voxel count of each new label, in order.
    """
    relabelled, kept, _ = _relabelled(labels, min_voxels)
    return relabelled, kept


def _relabelled(labels: npt.NDArray[np.integer], min_voxels: int
                ) -> tuple[npt.NDArray[np.unsignedinteger], list[int], int]:
    """`relabel_by_volume`'s map and counts, and how many labels > 0 the input held.

    Reads and writes only the labelled voxels after one comparison pass (a lesion map is
    mostly background): no int64 copy of the whole map for the counts or the lookup.
    """
    array = np.asarray(labels)
    inside = array != 0
    values = array[inside]
    if not np.can_cast(values.dtype, np.intp):
        values = values.astype(np.int64)
    counts = np.bincount(values, minlength=1)
    old = [int(k) for k in np.nonzero(counts)[0] if k > 0 and counts[k] >= min_voxels]
    old.sort(key=lambda k: (-int(counts[k]), k))
    lookup = np.zeros(len(counts), dtype=smallest_label_dtype(len(old)))
    lookup[old] = np.arange(1, len(old) + 1)
    relabelled = np.zeros_like(lookup, shape=array.shape)
    relabelled[inside] = lookup[values]
    return relabelled, [int(counts[k]) for k in old], int(np.count_nonzero(counts[1:]))


def instance_labels(
    mask: npt.NDArray[np.generic],
    spacing: Spacing,
    *,
    min_volume_mm3: float = 0.0,
    connectivity: int = FULL_CONNECTIVITY,
) -> npt.NDArray[np.unsignedinteger]:
    """Turn a binary or instance mask (z, y, x) into instance labels 1..K by decreasing volume.

    A binary mask is split into connected components. An instance map (values > 1 present)
    keeps its instances, but any instance made of several disconnected parts keeps them
    together. Components under `min_volume_mm3` (spacing in mm, (z, y, x)) are dropped, and the
    number dropped is logged.
    """
    array = np.asarray(mask)
    labels: npt.NDArray[np.integer]
    if array.size and array.max() > 1:
        # An integer map is read as it is (its values are the labels either way).
        integer = np.issubdtype(array.dtype, np.integer) and np.can_cast(array.dtype, np.intp)
        labels = array if integer else array.astype(np.int64)
    else:
        labels, _ = connected_components(array, connectivity=connectivity)
    voxel_mm3 = float(np.prod(spacing))
    min_voxels = max(1, int(np.ceil(min_volume_mm3 / voxel_mm3))) if min_volume_mm3 > 0 else 1
    relabelled, counts, present = _relabelled(labels, min_voxels)
    dropped = present - len(counts)
    if dropped:
        logger.info("dropped %d component(s) under %.1f mm3 (%d voxels)", dropped,
                    min_volume_mm3, min_voxels)
    return relabelled


def lesion_ids(
    mask: npt.NDArray[np.generic],
    spacing: Spacing,
    *,
    min_volume_mm3: float = 0.0,
    connectivity: int = FULL_CONNECTIVITY,
) -> npt.NDArray[np.integer]:
    """The lesion ids a user sees everywhere (evaluate, track, radiomics), as a label map.

    An instance map (values > 1 present) keeps its own labels, the user's lesion numbers, gaps
    and order included; instances under `min_volume_mm3` (spacing (z, y, x) in mm) become
    background. A binary mask is split into connected components numbered 1..K by decreasing
    volume (`instance_labels`). Returns int32 labels (int64 when a label does not fit).
    """
    array = np.asarray(mask)
    if not (array.size and array.max() > 1):
        return instance_labels(array, spacing, min_volume_mm3=min_volume_mm3,
                               connectivity=connectivity).astype(np.int32)
    dtype = np.int32 if array.max() <= np.iinfo(np.int32).max else np.int64
    labels: npt.NDArray[np.integer] = array.astype(dtype)
    if min_volume_mm3 > 0:
        min_voxels = max(1, int(np.ceil(min_volume_mm3 / float(np.prod(spacing)))))
        counts = np.bincount(labels.ravel())
        small = [k for k in np.nonzero(counts)[0] if k > 0 and counts[k] < min_voxels]
        if small:
            labels[np.isin(labels, small)] = 0
            logger.info("dropped %d lesion(s) under %.1f mm3 (%d voxels)", len(small),
                        min_volume_mm3, min_voxels)
    return labels


def fill_holes(mask: npt.NDArray[np.generic], *, in_plane: bool = False
               ) -> npt.NDArray[np.bool_]:
    """`mask > 0` (z, y, x) with its holes filled, as `ndimage.binary_fill_holes` gives it in
    3D (face connectivity) or, with `in_plane`, on each z slice in 2D, but in one labelling pass.

    A hole is a face-connected piece of background that touches no face of the array (with
    `in_plane`: no y or x edge of its slice). `binary_fill_holes` grows the background in from
    the array's border until nothing changes, one pass per step; labelling the background once
    and keeping the pieces that touch the border gives the same voxels. Slice by slice
    (`in_plane`), slabs of slices run on threads (`livermets.slabs`).
    """
    if in_plane:
        return by_slabs(_filled_in_plane, np.asarray(mask))
    return _filled(np.asarray(mask), in_plane=False)


def _filled_in_plane(mask: npt.NDArray[np.generic]) -> npt.NDArray[np.bool_]:
    """`fill_holes(mask, in_plane=True)` on one slab of slices."""
    return _filled(mask, in_plane=True)


def _filled(mask: npt.NDArray[np.generic], *, in_plane: bool) -> npt.NDArray[np.bool_]:
    """`fill_holes` in one labelling pass (its docstring)."""
    background, count = ndimage.label(np.asarray(mask) <= 0,
                                      structure=_IN_PLANE if in_plane else _STRUCTURES[6])
    outer = np.zeros(count + 1, dtype=bool)
    faces = [(slice(None), 0), (slice(None), -1), (slice(None), slice(None), 0),
             (slice(None), slice(None), -1)]
    if not in_plane:
        faces += [(0,), (-1,)]
    for face in faces:
        outer[background[face]] = True
    if outer[1:].all():  # no hole
        return np.asarray(mask) > 0
    outer[0] = False  # the mask itself
    return ~outer[background]


def not_enclosed(mask: npt.NDArray[np.generic], filled: npt.NDArray[np.generic]
                 ) -> npt.NDArray[np.bool_]:
    """`filled & ~fill_holes(mask)` (z, y, x) for a `filled` that holds `mask` and has no
    holes of its own (e.g. `fill_holes` of a superset of `mask`): the voxels `filled` adds to
    `mask` that `mask` does not enclose in 3D, without labelling `mask`'s background again.

    A face-connected piece of those added voxels is a hole of `mask` unless it touches the
    outside of `filled` or a face of the array: the rest of `mask`'s background is the
    outside of `filled`, and each piece of that reaches a face (`filled` has no holes). So
    only the added voxels' box (grown by one voxel) is labelled.
    """
    inside = np.asarray(mask) > 0
    whole = np.asarray(filled) > 0
    extra = whole & ~inside
    out = np.zeros(inside.shape, dtype=bool)
    found = bounding_box(extra)
    if found is None:
        return out
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1))
                for b, n in zip(found, inside.shape, strict=True))
    pieces, count = ndimage.label(extra[box], structure=_STRUCTURES[6])
    outside = ~whole[box]
    open_ = np.zeros(count + 1, dtype=bool)
    for axis, (part, n) in enumerate(zip(box, inside.shape, strict=True)):
        length = pieces.shape[axis]
        low = tuple(slice(0, length - 1) if a == axis else slice(None) for a in range(3))
        high = tuple(slice(1, length) if a == axis else slice(None) for a in range(3))
        open_[pieces[low][outside[high]]] = True  # a piece next to the outside of `filled`
        open_[pieces[high][outside[low]]] = True
        for face, at_edge in ((0, part.start == 0), (length - 1, part.stop == n)):
            if at_edge:  # a piece on a face of the array
                open_[pieces[tuple(face if a == axis else slice(None) for a in range(3))]] = True
    open_[0] = False
    out[box] = open_[pieces]
    return out


def label_medians(values: npt.NDArray[np.generic], labels: npt.NDArray[np.integer],
                  count: int) -> npt.NDArray[np.float64]:
    """The median of `values` over each label 1..`count` of `labels` (same shape), in order;
    NaN for a label without voxels.

    The same numbers as `ndimage.median(values, labels, range(1, count + 1))` (the mean of the
    two middle values for an even count, in `values`' dtype when it is floating, else in
    float64), from one sort of the labelled voxels instead of passes over the whole array.
    """
    where = np.flatnonzero(np.asarray(labels).ravel())
    keys = np.asarray(labels).ravel()[where]
    picked = np.asarray(values).ravel()[where]
    if not np.issubdtype(picked.dtype, np.floating):
        picked = picked.astype(np.float64)
    picked = picked[np.lexsort((picked, keys))]
    counts = np.bincount(keys, minlength=count + 1)[1 : count + 1]
    starts = np.cumsum(counts) - counts
    medians = np.full(count, np.nan)
    found = counts > 0
    low = (starts + (counts - 1) // 2)[found]
    high = (starts + counts // 2)[found]
    medians[found] = (picked[low] + picked[high]) / 2.0
    return medians


def label_maxima(values: npt.NDArray[np.floating], labels: npt.NDArray[np.integer],
                 count: int) -> npt.NDArray[np.floating]:
    """The maximum of `values` (no NaN) over each label 1..`count` of `labels` (same shape),
    in order, in `values`' dtype; -inf for a label without voxels.

    The same numbers as `ndimage.maximum(values, labels, range(1, count + 1))` for every
    label present, from the labelled voxels only: scipy sorts the whole array.
    """
    inside = np.asarray(labels) > 0
    peaks = np.full(count + 1, -np.inf, dtype=np.asarray(values).dtype)
    np.maximum.at(peaks, np.asarray(labels)[inside], np.asarray(values)[inside])
    return peaks[1:]
