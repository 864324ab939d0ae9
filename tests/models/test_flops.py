"""FLOP counts: FlopCounterMode against an independent hand sum of the convolutions."""

from __future__ import annotations

import torch

from livermets.models import create_model, forward_flops


def conv_flops(side: int, kernel: int, c_in: int, c_out: int) -> int:
    """2 * H * W * k * k * C_in * C_out: one multiply-add = 2 FLOPs, output side x side pixels."""
    return 2 * side * side * kernel * kernel * c_in * c_out


def test_unet_base32_at_256_is_21_2_gflop() -> None:
    convs = [
        (256, 3, 1, 32), (256, 3, 32, 32),          # encoder level 1
        (128, 3, 32, 64), (128, 3, 64, 64),         # level 2
        (64, 3, 64, 128), (64, 3, 128, 128),        # level 3
        (32, 3, 128, 256), (32, 3, 256, 256),       # bottleneck
        (64, 3, 256 + 128, 128), (64, 3, 128, 128),  # decoder, skip concatenated
        (128, 3, 128 + 64, 64), (128, 3, 64, 64),
        (256, 3, 64 + 32, 32), (256, 3, 32, 32),
        (256, 1, 32, 1),                             # 1x1 output
    ]  # fmt: skip
    expected = sum(conv_flops(*conv) for conv in convs)
    assert expected == 21_181_235_200
    assert forward_flops(create_model("unet"), 256) == expected


def test_resnet18_unet_at_256() -> None:
    convs = [(128, 7, 1, 64)]  # conv1 (stride 2): kernels summed to one input channel
    previous = 64
    for side, width in ((64, 64), (32, 128), (16, 256), (8, 512)):
        convs += [(side, 3, previous, width)] + [(side, 3, width, width)] * 3
        if width != previous:
            convs.append((side, 1, previous, width))  # projection shortcut
        previous = width
    for side, c_in, skip, c_out in (
        (16, 512, 256, 256), (32, 256, 128, 128), (64, 128, 64, 64), (128, 64, 64, 32),
        (256, 32, 0, 16),
    ):  # fmt: skip
        convs += [(side, 3, c_in + skip, c_out), (side, 3, c_out, c_out)]
    convs.append((256, 1, 16, 1))
    expected = sum(conv_flops(*conv) for conv in convs)
    assert forward_flops(create_model("resnet18-unet"), 256) == expected


def test_counting_keeps_the_training_mode_and_weights() -> None:
    model = create_model("unet", base_width=2, batch_norm=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert forward_flops(model, 32) > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
