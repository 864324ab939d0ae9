"""Liver segmentation with a saved liver model: probabilities, threshold, largest component."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.errors import InputError
from livermets.infer.slices import iter_slice_probabilities
from livermets.labels import connected_components
from livermets.models.saved import SavedModel
from livermets.preprocess import LIVER_WINDOW_HU, window

LIVER_THRESHOLD = 0.5


def segment_liver(model: SavedModel, hu: npt.NDArray[np.generic], *, batch_size: int = 8,
                  bf16: bool = False, threshold: float = LIVER_THRESHOLD
                  ) -> npt.NDArray[np.uint8]:
    """The liver mask (z, y, x) uint8 of CT `hu` (z, y, x, HU).

    Probability > `threshold`, then the largest 3D connected component (26-connectivity) with
    holes filled slice by slice and in 3D (lesions inside the liver belong to it). Raises
    `InputError` for a model of another task and when no liver is found.
    """
    if model.task != "liver":
        raise InputError(f"this is a {model.task} model; give a liver model")
    low, high = model.preprocessing.get("window_hu", LIVER_WINDOW_HU)
    above = np.zeros(hu.shape, dtype=bool)  # thresholded batch by batch: no float volume
    for start, probability in iter_slice_probabilities(
            model, hu, lambda s: window(s, (low, high)), batch_size=batch_size, bf16=bf16):
        above[start : start + probability.shape[0]] = probability > threshold
    return largest_filled_component(above)


def largest_filled_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """The largest 26-connected component of `mask` (z, y, x), holes filled, as uint8 0/1.

    Works on the mask's bounding box and frees each intermediate as soon as it can: the
    int32 component labels are the largest array (4 bytes a voxel).
    """
    inside = np.asarray(mask, dtype=bool)
    boxes = ndimage.find_objects(inside.view(np.uint8))
    if not boxes or boxes[0] is None:
        raise InputError("the liver model found no liver in this CT; check that it is an "
                         "abdominal CT")
    box = boxes[0]
    labels, _ = connected_components(inside[box])
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    del labels
    for z in range(largest.shape[0]):  # slice by slice first, then in 3D
        largest[z] = ndimage.binary_fill_holes(largest[z])
    out = np.zeros(inside.shape, dtype=np.uint8)
    out[box] = ndimage.binary_fill_holes(largest)
    return out
