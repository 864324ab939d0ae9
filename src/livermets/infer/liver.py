"""Liver segmentation with a saved liver model: probabilities, threshold, largest component."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.errors import InputError
from livermets.infer.slices import slice_probabilities
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
    probability = slice_probabilities(model, hu, lambda s: window(s, (low, high)),
                                      batch_size=batch_size, bf16=bf16)
    return largest_filled_component(probability > threshold)


def largest_filled_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """The largest 26-connected component of `mask` (z, y, x), holes filled, as uint8 0/1."""
    labels, count = connected_components(mask)
    if count == 0:
        raise InputError("the liver model found no liver in this CT; check that it is an "
                         "abdominal CT")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    filled = np.stack([ndimage.binary_fill_holes(s) for s in largest])
    return ndimage.binary_fill_holes(filled).astype(np.uint8)
