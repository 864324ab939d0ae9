"""ResNet-18 encoder with torchvision's exact module names and shapes (no `fc` head).

So a torchvision ImageNet state dict (`conv1.weight` (64, 3, 7, 7), `bn1.*`,
`layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, ... `layer4.1.bn2.*`) loads key for key.
"""

from __future__ import annotations

import torch
from torch import nn

LAYER_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
"""Output channels of layer1..layer4."""

FEATURE_CHANNELS: tuple[int, ...] = (64, *LAYER_WIDTHS)
"""Channels of the five features `ResNet18Encoder.forward` returns."""


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: 3x3 conv-BN-ReLU, 3x3 conv-BN, + identity (or 1x1 conv-BN), ReLU.

    (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _layer(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels, 1)
    )


class ResNet18Encoder(nn.Module):
    """ResNet-18 trunk: 7x7 stride-2 conv1 + BN + ReLU, 3x3 stride-2 max-pool, layer1..layer4.

    `in_channels` sets conv1's input channels (torchvision's is 3). Weights are left as
    PyTorch's defaults; the owner initialises or loads them.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, C, H, W) -> features (64 @ H/2 after conv1/ReLU, 64 @ H/4, 128 @ H/8,
        256 @ H/16, 512 @ H/32), each (N, C_i, H_i, W_i)."""
        x0 = self.relu(self.bn1(self.conv1(image)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return x0, x1, x2, x3, x4
