"""Numeric precision for training and inference: fp32, or bf16 autocast where it is fast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on `device` (CPU: AVX-512 bf16 or AMX; CUDA: Ampere+)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """`fp32` or `bf16`: `requested`, where `auto` chooses bf16 when it is fast on `device`."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return requested


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast on `device` for precision `bf16`, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
