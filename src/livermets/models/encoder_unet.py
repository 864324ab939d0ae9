"""The shared body of the TL networks: a U-Net decoder on a five-scale ImageNet-style encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from livermets.models.layers import check_input_size, decode, init_head, kaiming_init, unet_decoder

SIZE_MULTIPLE = 32
"""Height and width must be multiples of 32 pixels (five stride-2 stages)."""
DECODER_WIDTHS: tuple[int, ...] = (256, 128, 64, 32, 16)
"""Output channels of the five decoder blocks (Keras `segmentation_models`' Unet)."""


class EncoderUNet(nn.Module):
    """`encoder` (N, C, H, W) -> five features at H/2 ... H/32, then five decoder blocks
    (x2 up-sampling, skip concatenation, two 3x3 convolutions; DECODER_WIDTHS) and a 1x1 head:
    logits (N, 1, H, W).

    Every convolution starts He/Kaiming normal (fan_in, ReLU gain), biases 0, batch norms
    weight 1 and bias 0, the head from a 1% foreground prior; a subclass then loads encoder
    weights and sets `encoder_source` (where they came from, for the run record).
    """

    ARCH: ClassVar[str]
    """The registry name."""
    ENCODER: ClassVar[str]
    """The encoder's name for `describe` ("ResNet-18")."""
    UNLOADED_WEIGHTS: ClassVar[str | None] = None
    """The `encoder_weights` value that builds the net without reading any weights file."""

    def __init__(
        self,
        encoder: nn.Module,
        feature_channels: Sequence[int],
        *,
        decoder_batch_norm: bool,
        upsample: str,
        random_source: str,
    ) -> None:
        super().__init__()
        self.decoder_batch_norm = bool(decoder_batch_norm)
        self.upsample = upsample
        self.encoder = encoder
        self.decoder = unet_decoder(
            feature_channels, DECODER_WIDTHS, batch_norm=self.decoder_batch_norm,
            upsample=upsample,
        )  # fmt: skip
        self.head = nn.Conv2d(DECODER_WIDTHS[-1], 1, kernel_size=1)
        kaiming_init(self)
        init_head(self.head)
        self.encoder_source: str = random_source
        """Where the encoder's weights came from: `random_source` or "<file> (sha256 <hex>)"."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) standardised slices -> (N, 1, H, W) logits."""
        check_input_size(image, SIZE_MULTIPLE, self.ARCH)
        return self.head(decode(self.decoder, self.encoder(image)))

    def describe(self) -> str:
        """One line for the run record."""
        norm = "conv-BN-ReLU" if self.decoder_batch_norm else "conv-ReLU"
        widths = "-".join(str(width) for width in DECODER_WIDTHS)
        return (
            f"{self.ARCH}: {self.ENCODER} encoder + U-Net decoder ({widths}, {norm}, "
            f"{self.upsample} up-sampling); encoder: {self.encoder_source}"
        )
