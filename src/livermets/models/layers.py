"""Building blocks shared by the networks: double 3x3 convolution, decoder block, checks, init.

Shapes are (N, C, H, W): batch, channels, height and width in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from livermets.errors import InputError

UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
"""x2 up-sampling modes; `nearest` is Keras `UpSampling2D`'s default (the paper's framework)."""


def check_positive_int(name: str, value: object) -> int:
    """Return `value` if it is an int >= 1, else raise InputError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"model option {name} must be a whole number >= 1, got {value!r}")
    return value


def check_upsample(value: object) -> str:
    """Return `value` if it is one of UPSAMPLE_MODES, else raise InputError listing them."""
    if value not in UPSAMPLE_MODES:
        raise InputError(
            f"model option upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {value!r}"
        )
    return str(value)


def check_input_size(image: torch.Tensor, multiple: int, arch: str) -> None:
    """Raise InputError unless `image` is (N, C, H, W) with H and W multiples of `multiple`."""
    if image.ndim != 4:
        raise InputError(
            f"{arch} takes a batch of shape (N, C, H, W), got shape {tuple(image.shape)}"
        )
    height, width = image.shape[-2:]
    if height % multiple or width % multiple:
        raise InputError(
            f"{arch} needs height and width that are multiples of {multiple} pixels, got "
            f"{height}x{width}; resample the slices to such a size (e.g. --image-size 256)"
        )


def kaiming_init(module: nn.Module) -> None:
    """Initialise in place: every convolution He/Kaiming normal (fan_in, ReLU gain
    sqrt(2), i.e. std = sqrt(2 / (C_in * k * k))) with zero bias; batch norms weight 1, bias 0.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


#: Standard deviation of the output (1x1) convolution's normal initialisation.
HEAD_INIT_STD = 0.01
#: Foreground share the output starts from: bias = log(p / (1 - p)) (RetinaNet's prior).
HEAD_PRIOR = 0.01


def init_head(head: nn.Conv2d) -> None:
    """Initialise the output convolution in place: weights N(0, 0.01^2), bias log(0.01/0.99).

    Training then starts from "almost every pixel is background" (probability 0.01), the
    truth for lesions and most of each slice. Measured on the generated cohort: with He-normal
    on the head the paper's U-Net started at a BCE of 8.6 (z-scored CT puts air and bone 40-50
    standard deviations from the liver mean) and sat near log 2 for epochs; with a zero bias,
    Adam (lr 1e-3) needs thousands of steps to move every background logit to about -5.
    """
    nn.init.normal_(head.weight, mean=0.0, std=HEAD_INIT_STD)
    if head.bias is not None:
        nn.init.constant_(head.bias, math.log(HEAD_PRIOR / (1 - HEAD_PRIOR)))


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1), each followed by ReLU: (N, C_in, H, W) -> (N, C_out, H, W).

    With `batch_norm` each is conv-BN-ReLU and the convolutions have no bias (the batch norm's
    shift replaces it).
    """

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(
                nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Decoder block: up-sample x2, concatenate the skip (if any) on channels, DoubleConv.

    (N, C_in, H, W) and skip (N, C_skip, 2H, 2W) -> (N, C_out, 2H, 2W).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        batch_norm: bool,
        upsample: str,
    ) -> None:
        super().__init__()
        self.mode = check_upsample(upsample)
        self.conv = DoubleConv(in_channels + skip_channels, out_channels, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C_in, H, W) [+ skip (N, C_skip, 2H, 2W)] -> (N, C_out, 2H, 2W)."""
        # align_corners=False for bilinear = Keras/TF half-pixel centres.
        align = False if self.mode == "bilinear" else None
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=align)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


def unet_decoder(
    feature_channels: Sequence[int], widths: Sequence[int], *, batch_norm: bool, upsample: str
) -> nn.ModuleList:
    """U-Net decoder blocks for an encoder's features, given shallowest to deepest.

    Block i up-samples x2, concatenates the encoder feature one scale shallower (the last block
    has none) and applies a DoubleConv to `widths[i]` channels: with five features at H/2 ...
    H/32 and five widths, the output is back at full resolution. Run it with `decode`.
    """
    if len(feature_channels) != len(widths):
        raise ValueError(f"{len(feature_channels)} features but {len(widths)} decoder widths")
    skips = (*feature_channels[-2::-1], 0)
    inputs = (feature_channels[-1], *widths[:-1])
    return nn.ModuleList(
        UpBlock(cin, skip, cout, batch_norm=batch_norm, upsample=upsample)
        for cin, skip, cout in zip(inputs, skips, widths, strict=True)
    )


def decode(decoder: nn.ModuleList, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Run `unet_decoder` blocks on encoder features (shallowest first): (N, widths[-1], H, W)."""
    *skips, x = features
    for block, skip in zip(decoder, [*reversed(skips), None], strict=True):
        x = block(x, skip)
    return x
