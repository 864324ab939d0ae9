"""Comparing a state dict read from a file with the one an architecture expects."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch


def first_mismatch(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[Any, object],
    *,
    ignored: Collection[str] = (),
    optional: Collection[str] = (),
) -> str | None:
    """Describe the first difference between `found` and the `expected` key -> shape map.

    Checks, in the expected keys' order, that each key is present (unless in `optional`), holds
    a tensor and has the expected shape; then that `found` has no other keys (except `ignored`).
    Returns None when they match, else a short phrase such as
    "missing key 'layer1.0.conv1.weight'" or "'conv1.weight' has shape (64, 1, 7, 7), expected
    (64, 3, 7, 7)".
    """
    for key, shape in expected.items():
        if key not in found:
            if key in optional:
                continue
            return f"missing key {key!r}"
        value = found[key]
        if not isinstance(value, torch.Tensor):
            return f"{key!r} is a {type(value).__name__}, not a tensor"
        if tuple(value.shape) != tuple(shape):
            return f"{key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
    for name in found:
        if name not in expected and name not in ignored:
            return f"unexpected key {name!r}"
    return None


def shapes_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The key -> shape map of a state dict."""
    return {key: tuple(value.shape) for key, value in state_dict.items()}
