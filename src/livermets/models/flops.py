"""Counting a network's floating-point operations with `torch.utils.flop_counter`."""

from __future__ import annotations

from itertools import chain

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, image_size: int, in_channels: int = 1) -> int:
    """FLOPs of one forward pass on one (1, in_channels, image_size, image_size) slice.

    A multiply-add counts 2. Counted by FlopCounterMode: convolutions and matrix products only
    (ReLU, batch norm, pooling, up-sampling and concatenation are not counted). The pass runs
    in eval mode on "meta" tensors (shapes only: no arithmetic, no memory); the model's weights
    and training mode are left as they were.
    """
    tensors = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in chain(model.named_parameters(), model.named_buffers())
    }
    dtype = next(model.parameters()).dtype
    image = torch.empty(1, in_channels, image_size, image_size, device="meta", dtype=dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            functional_call(model, tensors, (image,))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
