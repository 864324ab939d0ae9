"""MobileNetV2 encoder whose module names load torchvision's classic flat `features.N` layout.

Sandler et al. 2018: a 3x3 stride-2 conv (32) + BN + ReLU6, then inverted-residual stages
(expansion t, width c, repeats n, first stride s) (1,16,1,1), (6,24,2,2), (6,32,3,2),
(6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), then a 1x1 conv to 1280 + BN + ReLU6.
Keys: `features.0.0.weight` (32, 3, 3, 3) and `features.0.1.*`; `features.1.conv.{0,1,3,4}.*`
(t = 1: depthwise 3x3, BN, [ReLU6], pointwise, BN); `features.2..17.conv.{0,1,3,4,6,7}.*`
(expand 1x1, BN, [ReLU6], depthwise 3x3, BN, [ReLU6], project 1x1, BN); `features.18.{0,1}.*`.
The classifier is not part of the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""(expansion t, output channels c, blocks n, stride of the first block s) per stage."""
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
FEATURE_INDICES: tuple[int, ...] = (1, 3, 6, 13, 18)
"""`features` modules whose outputs the encoder returns (the last block at each scale)."""
FEATURE_CHANNELS: tuple[int, ...] = (16, 24, 32, 96, LAST_CHANNELS)
"""Channels of the five features `MobileNetV2Encoder.forward` returns (at H/2 ... H/32)."""


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BN + ReLU6 as modules 0, 1, 2."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2, groups=groups, bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )  # fmt: skip


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand-BN-ReLU6], 3x3 depthwise-BN-ReLU6, 1x1 project-BN.

    (N, C_in, H, W) -> (N, C_out, H / stride, W / stride); the input is added back when
    stride is 1 and C_in == C_out. Modules live in `conv` with torchvision's flat numbering.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.extend(conv_bn_relu6(in_channels, hidden, 1))
        layers.extend(conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden))
        layers.append(nn.Conv2d(hidden, out_channels, 1, bias=False))
        layers.append(nn.BatchNorm2d(out_channels))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 trunk (`features.0` ... `features.18`), width multiplier 1.

    `in_channels` sets the stem convolution's input channels (ImageNet's is 3). Weights are left
    as PyTorch's defaults; the owner initialises or loads them.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn_relu6(in_channels, STEM_CHANNELS, 3, stride=2)]
        previous = STEM_CHANNELS
        for expansion, channels, repeats, stride in STAGES:
            for index in range(repeats):
                blocks.append(
                    InvertedResidual(previous, channels, stride if index == 0 else 1, expansion)
                )
                previous = channels
        blocks.append(conv_bn_relu6(previous, LAST_CHANNELS, 1))
        self.features = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, C, H, W) -> features (16 @ H/2, 24 @ H/4, 32 @ H/8, 96 @ H/16, 1280 @ H/32),
        each (N, C_i, H_i, W_i): the outputs of features.1, .3, .6, .13 and .18."""
        outputs: list[torch.Tensor] = []
        x = image
        for index, block in enumerate(self.features):
            x = block(x)
            if index in FEATURE_INDICES:
                outputs.append(x)
        return tuple(outputs)
