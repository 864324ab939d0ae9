"""Liver segmentation with a saved liver model: probabilities, threshold, largest component,
and a rule for dark tissue at the liver's edge.

The rule (`drop_dark_tissue`): a liver is one organ of even enhancement. Tissue whose local
mean HU (over the liver's voxels in a square of `LOCAL_MEAN_MM` in-plane) lies more than
`DARK_BELOW_LIVER_HU` below the median HU of the model's surest liver voxels (probability >
`SURE_LIVER_PROBABILITY`) is cut off, unless it is enclosed by the rest of the liver (a lesion
inside it) or fills a notch of the liver's outline up to `LIVER_NOTCH_MM` deep (a lesion at its
edge); then the largest component is kept again. Without it the 2D model took a 15 cm renal
mass pressing on the liver of 3D-IRCADb-01 1.7 for liver (Dice 0.73; see MODEL_CARD.md).

Holes are filled slice by slice and in 3D (a lesion the model left out is liver), except open
fluid pockets (`fill_liver_holes`): what only the slice-by-slice filling adds, whose median is
below `FLUID_BELOW_HU` (40 HU) and which is not enclosed by the liver in 3D, stays out. That is the
gallbladder in its fossa: on some slices the liver wraps round it, but it opens below the
liver (on CRLM-CT-1006 the filling took it in, and the lesion model marked its wall). A cyst
or a necrotic lesion enclosed by the liver is still filled.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.boxes import bounding_box
from livermets.errors import InputError
from livermets.infer.slices import iter_slice_probabilities
from livermets.labels import connected_components, fill_holes, label_medians, not_enclosed
from livermets.models.saved import SavedModel
from livermets.morphology import within_distance
from livermets.preprocess import LIVER_WINDOW_HU, window
from livermets.slabs import by_slabs
from livermets.types import Spacing

LIVER_THRESHOLD = 0.5
SURE_LIVER_PROBABILITY = 0.98
DARK_BELOW_LIVER_HU = 50.0
LOCAL_MEAN_MM = 7.0
LIVER_NOTCH_MM = 15.0
FLUID_BELOW_HU = 40.0
_NO_LIVER = "the liver model found no liver in this CT; check that it is an abdominal CT"


def segment_liver(model: SavedModel, hu: npt.NDArray[np.generic], *, spacing: Spacing,
                  batch_size: int = 8, bf16: bool = False, threshold: float = LIVER_THRESHOLD,
                  dark_tissue_rule: bool = True) -> npt.NDArray[np.uint8]:
    """The liver mask (z, y, x) uint8 of CT `hu` (z, y, x, HU; voxel `spacing` z, y, x mm).

    Probability > `threshold`, then the largest 3D connected component (26-connectivity) with
    holes filled slice by slice and in 3D (lesions inside the liver belong to it; open fluid
    pockets such as the gallbladder do not: module docstring), then the
    dark-tissue rule (module docstring; `dark_tissue_rule=False` skips it, for comparison).
    Raises `InputError` for a model of another task and when no liver is found.
    """
    if model.task != "liver":
        raise InputError(f"this is a {model.task} model; give a liver model")
    low, high = model.preprocessing.get("window_hu", LIVER_WINDOW_HU)
    above = np.zeros(hu.shape, dtype=bool)  # thresholded batch by batch: no float volume
    sure = np.zeros(hu.shape, dtype=bool)
    for start, probability in iter_slice_probabilities(
            model, hu, lambda s: window(s, (low, high)), batch_size=batch_size, bf16=bf16):
        above[start : start + probability.shape[0]] = probability > threshold
        sure[start : start + probability.shape[0]] = probability > SURE_LIVER_PROBABILITY
    return postprocess_liver(above, sure, hu, spacing=spacing,
                             dark_tissue_rule=dark_tissue_rule)


def postprocess_liver(above: npt.NDArray[np.bool_], sure: npt.NDArray[np.bool_],
                      hu: npt.NDArray[np.generic], *, spacing: Spacing,
                      dark_tissue_rule: bool = True) -> npt.NDArray[np.uint8]:
    """The liver mask (z, y, x) uint8 from the voxels the model calls liver (`above`) and those
    it is surest of (`sure`), on CT `hu` (HU, voxel `spacing` z, y, x mm): the largest filled
    component, then the dark-tissue rule (`segment_liver`).

    Works in the bounding box of `above` grown as `drop_dark_tissue` grows the liver's (the
    liver lies inside it), so every step sees what it would see on the whole CT, and the CT is
    passed over only to find that box and to write the mask back.
    """
    found = bounding_box(above)
    if found is None:
        raise InputError(_NO_LIVER)
    box = _notch_box(found, spacing, above.shape)
    hu_box = np.asarray(hu)[box]
    liver = largest_filled_component(above[box], hu=hu_box)
    if dark_tissue_rule:
        liver = drop_dark_tissue(liver, above[box], sure[box], hu_box, spacing)
    out = np.zeros(above.shape, dtype=np.uint8)
    out[box] = liver
    return out


def _notch_box(box: tuple[slice, ...], spacing: Spacing, shape: tuple[int, ...]
               ) -> tuple[slice, ...]:
    """`box` grown by `LIVER_NOTCH_MM` and one voxel more on every side, clipped to `shape`:
    room for the closing of `drop_dark_tissue`."""
    margin = [int(np.ceil(LIVER_NOTCH_MM / s)) + 1 for s in spacing]
    return tuple(slice(max(0, b.start - m), min(n, b.stop + m))
                 for b, m, n in zip(box, margin, shape, strict=True))


def drop_dark_tissue(liver: npt.NDArray[np.uint8], above: npt.NDArray[np.bool_],
                     sure: npt.NDArray[np.bool_], hu: npt.NDArray[np.generic], spacing: Spacing
                     ) -> npt.NDArray[np.uint8]:
    """`liver` (uint8 0/1, (z, y, x)) without the dark tissue at its edge (module docstring).

    `above`: voxels the model calls liver; `sure`: those it is surest of; `hu`: the CT.
    Works in the liver's bounding box grown by `LIVER_NOTCH_MM`.
    """
    inside = liver > 0
    sure_inside = sure & inside
    if not sure_inside.any():
        return liver
    level = float(np.median(np.asarray(hu[sure_inside], dtype=np.float32)))
    found = bounding_box(liver)
    assert found is not None  # sure_inside is not empty
    box = _notch_box(found, spacing, liver.shape)
    in_box = inside[box]
    bright = functools.partial(_bright_enough, floor=level - DARK_BELOW_LIVER_HU,
                               size=[max(1, round(LOCAL_MEAN_MM / s)) for s in spacing[1:]])
    kept = by_slabs(bright, hu[box], in_box)  # slice by slice: slabs on threads
    if not kept.any():
        return liver
    core = largest_filled_component(kept, fill=False) > 0
    closed = _closing(core, spacing, LIVER_NOTCH_MM)  # fills the notches of the outline
    out = np.zeros_like(liver)
    out[box] = largest_filled_component((closed & above[box]) | core, hu=hu[box])
    return out


def _bright_enough(hu: npt.NDArray[np.generic], inside: npt.NDArray[np.bool_], *,
                   floor: float, size: list[int]) -> npt.NDArray[np.bool_]:
    """The voxels of `inside` (z, y, x) whose local mean HU over `inside`'s voxels in a
    `size` (y, x pixels) square of their slice is at least `floor` (HU); slice-local."""
    weight = inside.astype(np.float32)  # the mean over liver voxels only: no fat mixed in
    total = ndimage.uniform_filter(np.asarray(hu, dtype=np.float32) * weight, size=[1, *size])
    share = ndimage.uniform_filter(weight, size=[1, *size])
    del weight
    kept = np.zeros_like(inside)  # the local mean is needed at the liver's voxels only
    kept[inside] = total[inside] / np.maximum(share[inside], 1e-6) >= floor
    return kept


def _closing(mask: npt.NDArray[np.bool_], spacing: Spacing, radius_mm: float
             ) -> npt.NDArray[np.bool_]:
    """Morphological closing of `mask` (z, y, x) by a ball of `radius_mm`, from two distance
    maps in mm (as dilations by the ball they define: `livermets.morphology`), computed on a
    grid of about 2 mm voxels (every k-th voxel of a finer grid) and brought back by nearest
    neighbour: notches of 15 mm need no finer grid, and the edge may move by up to k - 1 fine
    voxels (under 2 mm)."""
    step = [max(1, int(2.0 // s)) for s in spacing]
    coarse = mask[::step[0], ::step[1], ::step[2]]
    sampling = [s * k for s, k in zip(spacing, step, strict=True)]
    grown = within_distance(coarse, sampling, radius_mm)
    closed = ~within_distance(~grown, sampling, radius_mm)  # farther than it from outside
    for axis, k in enumerate(step):  # back by nearest neighbour: fine voxel i is coarse i // k
        if k > 1:
            closed = np.repeat(closed, k, axis=axis)
    return np.asarray(closed[tuple(slice(0, n) for n in mask.shape)] | mask)


def largest_filled_component(mask: npt.NDArray[np.bool_], *, fill: bool = True,
                             hu: npt.NDArray[np.generic] | None = None
                             ) -> npt.NDArray[np.uint8]:
    """The largest 26-connected component of `mask` (z, y, x), holes filled (unless `fill` is
    False; with the CT's `hu` on the same grid, open fluid pockets stay out:
    `fill_liver_holes`), as uint8 0/1.

    Works on the mask's bounding box and frees each intermediate as soon as it can: the
    int32 component labels are the largest array (4 bytes a voxel).
    """
    inside = np.asarray(mask, dtype=bool)
    box = bounding_box(inside)
    if box is None:
        raise InputError(_NO_LIVER)
    labels, _ = connected_components(inside[box])
    sizes = np.bincount(labels[inside[box]])  # over the mask only: 0 is not counted
    largest = labels == int(np.argmax(sizes))
    del labels
    out = np.zeros(inside.shape, dtype=np.uint8)
    if fill:
        largest = fill_liver_holes(largest, None if hu is None else np.asarray(hu)[box])
    out[box] = largest
    return out


def fill_liver_holes(liver: npt.NDArray[np.bool_], hu: npt.NDArray[np.generic] | None = None
                     ) -> npt.NDArray[np.bool_]:
    """`liver` (z, y, x) with its holes filled slice by slice, which fills its 3D holes too.

    Filling in 3D after the slices would add nothing: a background voxel the slice filling
    leaves is face-connected within its slice to the slice's edge, so every 3D piece of the
    background reaches a face of the array (`fill_holes`), and one labelling pass is saved.

    With `hu` (the CT on the same grid, HU), a pocket that only the slice-by-slice filling
    adds and that `liver` does not enclose in 3D (a 26-connected piece of those voxels) is
    left out when its median is below `FLUID_BELOW_HU`: the gallbladder. 40 HU lies above
    bile and simple cysts (0-25 HU) with the partial volume of a pocket's wall, and below the
    hypodense metastases of the portal-venous phase (about 45-80 HU).
    """
    filled = fill_holes(liver, in_plane=True)
    if hu is None:
        return filled
    added = not_enclosed(liver, filled)  # added by the slice filling alone, open in 3D
    box = bounding_box(added)
    if box is None:
        return filled
    pockets, count = connected_components(added[box])
    fluid = np.zeros(count + 1, dtype=bool)
    fluid[1:] = label_medians(np.asarray(hu[box], dtype=np.float32), pockets,
                              count) < FLUID_BELOW_HU
    filled[box][fluid[pockets]] = False
    return filled
