"""The paper's No-TL U-Net: generic contract, layout and initialisation."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from livermets.models import UNet, create_model
from tests.models.contract import ModelContract


class TestUNet(ModelContract):
    arch = "unet"
    options: ClassVar[dict[str, Any]] = {"base_width": 8}
    size_multiple = 8


class TestUNetBatchNormBilinear(ModelContract):
    arch = "unet"
    options: ClassVar[dict[str, Any]] = {
        "base_width": 8,
        "batch_norm": True,
        "upsample": "bilinear",
    }
    size_multiple = 8


def _convs(model: nn.Module) -> list[tuple[int, int, int]]:
    return [
        (m.in_channels, m.out_channels, m.kernel_size[0])
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]


def test_layout_is_the_papers() -> None:
    model = create_model("unet")
    assert isinstance(model, UNet)
    assert _convs(model) == [
        (1, 32, 3), (32, 32, 3),          # encoder block 1, then 2x2 max-pooling
        (32, 64, 3), (64, 64, 3),         # encoder block 2
        (64, 128, 3), (128, 128, 3),      # encoder block 3
        (128, 256, 3), (256, 256, 3),     # bottleneck
        (256 + 128, 128, 3), (128, 128, 3),  # decoder: up x2 + skip
        (128 + 64, 64, 3), (64, 64, 3),
        (64 + 32, 32, 3), (32, 32, 3),
        (32, 1, 1),                       # 1x1 output convolution
    ]  # fmt: skip
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 1  # shared, used 3 times


def test_batch_norm_option_drops_conv_biases() -> None:
    model = create_model("unet", base_width=4, batch_norm=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs) - 1
    assert all(conv.bias is None for conv in convs[:-1])
    assert convs[-1].bias is not None


def test_weights_are_he_normal_and_biases_zero() -> None:
    torch.manual_seed(0)
    model = create_model("unet")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0
    head = convs[-1]  # the 1x1 output: N(0, 0.01^2), bias log(0.01 / 0.99) = -4.5951
    assert head is model.head and head.bias is not None
    assert head.bias.item() == pytest.approx(math.log(0.01 / 0.99))
    assert head.weight.abs().max().item() < 0.05
    bottleneck = model.bottleneck[2]  # 256 -> 256, 3x3: 589,824 draws
    expected_std = math.sqrt(2.0 / (256 * 3 * 3))
    weights = bottleneck.weight
    assert abs(weights.std().item() / expected_std - 1.0) < 0.01
    assert abs(weights.mean().item()) < 0.01 * expected_std
    # a normal, not a uniform: about 4.6% of draws beyond 2 standard deviations
    beyond = (weights.abs() > 2 * expected_std).float().mean().item()
    assert 0.040 < beyond < 0.052


def test_nearest_upsampling_repeats_pixels() -> None:
    block = create_model("unet", base_width=1).decoder[0]
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    seen: list[torch.Tensor] = []
    block.conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    block(x.expand(1, 8, 2, 2), torch.zeros(1, 4, 4, 4))
    up = seen[0][0, 0]
    assert torch.equal(up, torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
