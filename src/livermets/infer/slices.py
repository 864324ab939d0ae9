"""Run a saved 2D model over a CT's slices in batches and map probabilities back to the CT grid.

Slices are streamed: only one batch of network-grid slices is in memory at a time besides the
float32 probability volume on the CT grid (z, y, x).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import numpy as np
import numpy.typing as npt
import torch

from livermets.models.saved import SavedModel
from livermets.preprocess import AIR_HU, PlaneMapping

Normaliser = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def iter_slice_probabilities(
    model: SavedModel,
    hu: npt.NDArray[np.generic],
    normalise: Normaliser,
    *,
    batch_size: int = 8,
    bf16: bool = False,
    channels_last: bool = True,
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """Yield (first slice index, probabilities (b, y, x) float32 on the CT grid) per batch.

    Each batch of CT slices `hu` (z, y, x) is mapped to the model's network grid (HU, padding
    with air), normalised by `normalise`, run through the model (bf16 autocast when `bf16`;
    channels_last memory layout, 1.5x faster than contiguous for the U-Net in fp32 on CPU, see
    benchmarks/RESULTS.md), and mapped back bilinearly. Only one batch is in memory at a time.
    """
    size = int(model.preprocessing["image_size"])
    mapping = PlaneMapping(hu.shape[1], hu.shape[2], size)
    network = model.model.eval()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    pad = float(model.preprocessing.get("pad_hu", AIR_HU))
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.inference_mode(), context:
        for start in range(0, hu.shape[0], batch_size):
            chunk = mapping.to_network(hu[start : start + batch_size], kind="image",
                                       pad_value=pad)
            tensor = torch.from_numpy(normalise(chunk)).unsqueeze(1)
            if channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            probability = torch.sigmoid(network(tensor).float())[:, 0].numpy()
            yield start, mapping.to_ct(probability, kind="image")


def slice_probabilities(
    model: SavedModel,
    hu: npt.NDArray[np.generic],
    normalise: Normaliser,
    *,
    batch_size: int = 8,
    bf16: bool = False,
    channels_last: bool = True,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Sigmoid probabilities (z, y, x) float32 on the CT grid for CT slices `hu` (z, y, x).

    The batches of `iter_slice_probabilities`, gathered into `out` (a float32 array of `hu`'s
    shape, e.g. a slab of a larger volume) or a new volume; returns it.
    """
    if out is None:
        out = np.empty(hu.shape, dtype=np.float32)
    for start, probability in iter_slice_probabilities(
            model, hu, normalise, batch_size=batch_size, bf16=bf16,
            channels_last=channels_last):
        out[start : start + probability.shape[0]] = probability
    return out
