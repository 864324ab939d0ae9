"""The paper's No-TL network: a 2D U-Net with 3 pooling levels, initialised at random.

Encoder: 3 blocks of two 3x3 convolutions (padding 1) + ReLU, each followed by 2x2 max-pooling;
a bottleneck of two 3x3 convolutions + ReLU; a symmetric decoder whose blocks up-sample x2
(nearest neighbour, like Keras `UpSampling2D`), concatenate the encoder's skip and apply two 3x3
convolutions + ReLU; a 1x1 output convolution. Widths: base, 2x, 4x, bottleneck 8x (32-64-128-256
by default).

`forward` returns logits; the paper's output sigmoid is applied at inference with
`torch.sigmoid(logits)` (training uses `BCEWithLogitsLoss`-style losses on the logits, which is
numerically safer than a sigmoid inside the network).
"""

from __future__ import annotations

import torch
from torch import nn

from livermets.models.layers import (
    DoubleConv,
    UpBlock,
    check_input_size,
    check_positive_int,
    check_upsample,
    init_head,
    kaiming_init,
)

ARCH = "unet"
SIZE_MULTIPLE = 8
"""Height and width must be multiples of 8 pixels (three 2x2 poolings)."""


class UNet(nn.Module):
    """The paper's No-TL U-Net: (N, in_channels, H, W) -> logits (N, 1, H, W).

    The paper's output sigmoid is not inside: use `torch.sigmoid(logits)` for probabilities.

    Options (keyword-only):
        in_channels: input channels (1: one standardised CT slice).
        base_width: channels of the first block; then 2x, 4x and 8x at the bottleneck.
        upsample: "nearest" (the paper's Keras default) or "bilinear".
        batch_norm: conv-BN-ReLU instead of conv-ReLU. NOT in the paper; off by default.

    Weights are drawn from a normal distribution: He/Kaiming normal (fan_in, ReLU gain),
    biases 0. H and W must be multiples of 8.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        base_width: int = 32,
        upsample: str = "nearest",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        in_channels = check_positive_int("in_channels", in_channels)
        base = check_positive_int("base_width", base_width)
        upsample = check_upsample(upsample)
        batch_norm = bool(batch_norm)
        widths = (base, 2 * base, 4 * base)
        self.base_width = base
        self.upsample = upsample
        self.batch_norm = batch_norm
        self.encoder = nn.ModuleList(
            DoubleConv(cin, cout, batch_norm=batch_norm)
            for cin, cout in zip((in_channels, *widths[:-1]), widths, strict=True)
        )
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.bottleneck = DoubleConv(widths[-1], 8 * base, batch_norm=batch_norm)
        self.decoder = nn.ModuleList(
            UpBlock(cin, skip, skip, batch_norm=batch_norm, upsample=upsample)
            for cin, skip in zip((8 * base, 4 * base, 2 * base), reversed(widths), strict=True)
        )
        self.head = nn.Conv2d(base, 1, kernel_size=1)
        kaiming_init(self)
        init_head(self.head)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) standardised slices -> (N, 1, H, W) logits."""
        check_input_size(image, SIZE_MULTIPLE, ARCH)
        skips: list[torch.Tensor] = []
        x = image
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        return self.head(x)

    def describe(self) -> str:
        """One line for the run record."""
        norm = "conv-BN-ReLU (not the paper's)" if self.batch_norm else "conv-ReLU"
        return (
            f"{ARCH}: paper's No-TL U-Net, widths {self.base_width}-{2 * self.base_width}-"
            f"{4 * self.base_width}-{8 * self.base_width}, {norm}, {self.upsample} up-sampling, "
            "random He-normal initialisation (output conv: prior 0.01)"
        )
