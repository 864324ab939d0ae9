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

from livermets.models.fused import fuse_conv_relu
from livermets.models.saved import SavedModel
from livermets.preprocess import AIR_HU, PlaneMapping, context_indices

Normaliser = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def iter_slice_probabilities(
    model: SavedModel,
    hu: npt.NDArray[np.generic],
    normalise: Normaliser,
    *,
    batch_size: int = 8,
    bf16: bool = False,
    channels_last: bool = True,
    centres: range | None = None,
    steps: int = 0,
    flip: bool = False,
    fuse: bool = True,
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """Yield (index into `centres` of the batch's first slice, probabilities (b, y, x) float32
    on the CT grid) per batch.

    The slices `centres` (default: all) of `hu` (z, y, x) are predicted. Each batch is mapped
    to the model's network grid (HU, padding with air), normalised by `normalise`, run through
    the model (bf16 autocast when `bf16`; channels_last memory layout, 1.5x faster than
    contiguous for the U-Net in fp32 on CPU, see benchmarks/RESULTS.md), and mapped back
    bilinearly. With `steps` (a 2.5D model, `preprocess.context_steps`) each slice goes in with
    the slices `steps` above and below it in `hu` as channels (clipped at `hu`'s ends; give
    `hu` those neighbours beyond `centres`). With `flip` (test-time augmentation) each batch
    also goes through mirrored left-right, and the two probabilities are averaged (for models
    trained with left-right flips: the lesion models). With `fuse` each convolution + ReLU
    runs as one oneDNN call (`models.fused`: the same probabilities, the U-Nets' forward pass
    about 1.3x faster). Only one batch is in memory at a time.
    """
    size = int(model.preprocessing["image_size"])
    mapping = PlaneMapping(hu.shape[1], hu.shape[2], size)
    network = model.model.eval()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if fuse:
        network, _ = fuse_conv_relu(network)
    pad = float(model.preprocessing.get("pad_hu", AIR_HU))
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    wanted = centres if centres is not None else range(hu.shape[0])
    with torch.inference_mode(), context:
        for start in range(0, len(wanted), batch_size):
            indices = context_indices(np.asarray(wanted[start : start + batch_size]), steps,
                                      hu.shape[0])  # (b, channels)
            needed = np.unique(indices)  # each slice mapped and normalised once
            chunk = normalise(mapping.to_network(hu[needed], kind="image", pad_value=pad))
            tensor = torch.from_numpy(chunk[np.searchsorted(needed, indices)])
            if channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            probability = torch.sigmoid(network(tensor).float())
            if flip:
                mirrored = torch.flip(tensor, dims=(3,))
                if channels_last:
                    mirrored = mirrored.contiguous(memory_format=torch.channels_last)
                probability += torch.flip(torch.sigmoid(network(mirrored).float()), dims=(3,))
                probability /= 2
            yield start, mapping.to_ct(probability[:, 0].numpy(), kind="image")


def slice_probabilities(
    model: SavedModel,
    hu: npt.NDArray[np.generic],
    normalise: Normaliser,
    *,
    batch_size: int = 8,
    bf16: bool = False,
    channels_last: bool = True,
    out: npt.NDArray[np.float32] | None = None,
    centres: range | None = None,
    steps: int = 0,
    flip: bool = False,
    fuse: bool = True,
) -> npt.NDArray[np.float32]:
    """Sigmoid probabilities (z, y, x) float32 on the CT grid for the slices `centres`
    (default: all) of CT slices `hu` (z, y, x); `steps` (2.5D context), `flip` (left-right
    test-time augmentation) and `fuse` as in `iter_slice_probabilities`.

    The batches gathered into `out` (a float32 array of (len(centres), y, x), e.g. a slab of a
    larger volume) or a new one; returns it.
    """
    wanted = centres if centres is not None else range(hu.shape[0])
    if out is None:
        out = np.empty((len(wanted), *hu.shape[1:]), dtype=np.float32)
    for start, probability in iter_slice_probabilities(
            model, hu, normalise, batch_size=batch_size, bf16=bf16,
            channels_last=channels_last, centres=wanted, steps=steps, flip=flip,
            fuse=fuse):
        out[start : start + probability.shape[0]] = probability
    return out
