"""Loading an ImageNet (RGB) state dict file into an encoder with one or three input channels."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path

from torch import nn

from livermets.errors import InputError
from livermets.models.files import read_torch_file, sha256_file
from livermets.models.state import first_mismatch, shapes_of
from livermets.types import PathLike

logger = logging.getLogger(__name__)

IMAGENET_CHANNELS = 3
"""Input channels of ImageNet networks (RGB)."""
RANDOM = "random"
"""The `encoder_weights` value for a randomly initialised encoder."""


def check_weights_channels(in_channels: int, *, uses_weights: bool, random_hint: str) -> None:
    """Raise InputError when ImageNet weights are asked for with `in_channels` not 1 or 3."""
    if uses_weights and in_channels not in (1, IMAGENET_CHANNELS):
        raise InputError(
            f"ImageNet encoder weights need in_channels 1 or 3, got {in_channels}; "
            f"use in_channels 1 for CT or {random_hint}"
        )


def load_rgb_encoder(
    encoder: nn.Module,
    path: PathLike,
    *,
    first_conv: str,
    network: str,
    hint: str,
    ignored: Collection[str] = (),
) -> str:
    """Load an ImageNet state dict file into `encoder`; return "<name> (sha256 <hex>)".

    `first_conv` is the key of the RGB input convolution's weight (C_out, 3, k, k): its kernels
    are summed over the RGB channels when the encoder has one input channel (what giving the
    same image on the 3 channels would compute). Keys in `ignored` (a classifier) are skipped;
    a missing `*.num_batches_tracked` (files saved before PyTorch 0.4.1) is taken as 0.
    Raises InputError naming the first missing key, unexpected key or shape difference (the
    file "is not a <network> state dict"), or saying why the file cannot be read (`hint`:
    what to give instead).
    """
    file = Path(path)
    state = read_torch_file(file, what="encoder weights file", hint=hint)
    if not isinstance(state, Mapping):
        raise InputError(f"{file} holds a {type(state).__name__}, not a state dict; {hint}")
    own = encoder.state_dict()
    expected = shapes_of(own)
    shape = tuple(own[first_conv].shape)
    expected[first_conv] = (shape[0], IMAGENET_CHANNELS, *shape[2:])
    optional = {key for key in expected if key.endswith(".num_batches_tracked")}
    problem = first_mismatch(expected, state, ignored=ignored, optional=optional)
    if problem is not None:
        raise InputError(f"{file} is not a {network} state dict: {problem}")
    weights = {key: state.get(key, own[key]) for key in expected}
    if shape[1] == 1:
        rgb = weights[first_conv].to(own[first_conv].dtype)
        weights[first_conv] = rgb.sum(dim=1, keepdim=True)
    encoder.load_state_dict(weights)
    source = f"{file.name} (sha256 {sha256_file(file)})"
    logger.info("loaded %s encoder weights from %s", network, source)
    return source
