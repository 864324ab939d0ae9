"""Fake torchvision ResNet-18 ImageNet state dicts, derived from the architecture description.

Independent of livermets' modules: names and shapes follow torchvision's `resnet18()` layout
(He et al. 2016: 7x7/2 conv 64, 3x3/2 max-pool, four stages of two BasicBlocks with 64, 128,
256, 512 channels, stride 2 and a 1x1 conv + BN projection at the start of stages 2-4, fc 1000).
"""

from __future__ import annotations

from pathlib import Path

import torch

RESNET18_PARAMETERS = 11_689_512
"""torchvision's documented parameter count of resnet18 (fc included)."""


def _batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's resnet18 state dict, in its order (122 entries)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_batch_norm("bn1", 64)}
    previous = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            prefix = f"layer{stage}.{block}"
            block_in = previous if block == 0 else width
            shapes[f"{prefix}.conv1.weight"] = (width, block_in, 3, 3)
            shapes.update(_batch_norm(f"{prefix}.bn1", width))
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(_batch_norm(f"{prefix}.bn2", width))
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (width, previous, 1, 1)
                shapes.update(_batch_norm(f"{prefix}.downsample.1", width))
        previous = width
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def fake_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with torchvision's resnet18 keys and shapes (variances positive)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in resnet18_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(12345, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def write_state(path: Path, state: object) -> Path:
    """torch.save `state` to `path`; return the path."""
    torch.save(state, path)
    return path
