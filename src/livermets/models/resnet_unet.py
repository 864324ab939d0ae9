"""The paper's TL network: a U-Net decoder on a ResNet-18 (ImageNet) encoder.

The decoder follows the Keras `segmentation_models` Unet (what TensorFlow papers of 2022 used
for "U-Net with a ResNet-18 ImageNet encoder"): skips from conv1/ReLU (64 @ H/2), layer1
(64 @ H/4), layer2 (128 @ H/8), layer3 (256 @ H/16); layer4 (512 @ H/32) at the bottom; five
decoder blocks of x2 up-sampling + concatenation of the skip + two 3x3 conv-BN-ReLU, widths
256, 128, 64, 32, 16, the last without skip, back at full resolution; a 1x1 output convolution.
`forward` returns logits (N, 1, H, W); apply `torch.sigmoid` at inference.

One CT channel feeds ImageNet's 3-channel conv1 by summing conv1's kernels over the RGB input
channels: exactly what giving the same image on the 3 channels would compute, at a third of the
cost. Note the encoder then sees z-scored CT, not ImageNet-normalised RGB (as in the paper).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from livermets.errors import InputError
from livermets.models.files import read_torch_file, sha256_file
from livermets.models.layers import (
    UpBlock,
    check_input_size,
    check_positive_int,
    check_upsample,
    init_head,
    kaiming_init,
)
from livermets.models.resnet import FEATURE_CHANNELS, ResNet18Encoder
from livermets.models.state import first_mismatch, shapes_of
from livermets.types import PathLike

logger = logging.getLogger(__name__)

ARCH = "resnet18-unet"
SIZE_MULTIPLE = 32
"""Height and width must be multiples of 32 pixels (five stride-2 stages)."""
DECODER_WIDTHS: tuple[int, ...] = (256, 128, 64, 32, 16)
RANDOM_ENCODER = "random initialisation (no --encoder-weights)"
IMAGENET_CHANNELS = 3
IGNORED_KEYS: tuple[str, ...] = ("fc.weight", "fc.bias")
"""Keys of a torchvision ResNet-18 file that are not part of the encoder (the classifier)."""
_WEIGHTS_HINT = "give a torchvision ResNet-18 state dict (.pth), e.g. resnet18-f37072fd.pth"


class ResNet18UNet(nn.Module):
    """ResNet-18 encoder + U-Net decoder: (N, in_channels, H, W) -> logits (N, 1, H, W).

    Options (keyword-only):
        in_channels: input channels (1: one standardised CT slice).
        encoder_weights: a local torchvision-format ResNet-18 state dict to load into the
            encoder (ImageNet weights); None keeps the random initialisation.
        decoder_batch_norm: conv-BN-ReLU in the decoder (`segmentation_models`' default) or
            conv-ReLU.
        upsample: "nearest" (Keras `UpSampling2D`'s default) or "bilinear".

    Without encoder weights every convolution is He/Kaiming normal (fan_in, ReLU gain), biases 0,
    batch norms weight 1 and bias 0; the decoder always starts that way. `encoder_source` says
    where the encoder's weights came from (for the run record). H and W must be multiples of 32.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        encoder_weights: PathLike | None = None,
        decoder_batch_norm: bool = True,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        in_channels = check_positive_int("in_channels", in_channels)
        upsample = check_upsample(upsample)
        if encoder_weights is not None and in_channels not in (1, IMAGENET_CHANNELS):
            raise InputError(
                f"ImageNet encoder weights need in_channels 1 or 3, got {in_channels}; "
                "use in_channels 1 for CT or drop --encoder-weights"
            )
        self.decoder_batch_norm = bool(decoder_batch_norm)
        self.upsample = upsample
        self.encoder = ResNet18Encoder(in_channels)
        skips = (*FEATURE_CHANNELS[-2::-1], 0)  # 256, 128, 64, 64, then no skip
        inputs = (FEATURE_CHANNELS[-1], *DECODER_WIDTHS[:-1])
        self.decoder = nn.ModuleList(
            UpBlock(cin, skip, cout, batch_norm=self.decoder_batch_norm, upsample=upsample)
            for cin, skip, cout in zip(inputs, skips, DECODER_WIDTHS, strict=True)
        )
        self.head = nn.Conv2d(DECODER_WIDTHS[-1], 1, kernel_size=1)
        kaiming_init(self)
        init_head(self.head)
        self.encoder_source: str = RANDOM_ENCODER
        """Where the encoder's weights came from: RANDOM_ENCODER or "<file> (sha256 <hex>)"."""
        if encoder_weights is not None:
            self.encoder_source = load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) standardised slices -> (N, 1, H, W) logits."""
        check_input_size(image, SIZE_MULTIPLE, ARCH)
        *skips, x = self.encoder(image)
        for block, skip in zip(self.decoder, [*reversed(skips), None], strict=True):
            x = block(x, skip)
        return self.head(x)

    def describe(self) -> str:
        """One line for the run record."""
        norm = "conv-BN-ReLU" if self.decoder_batch_norm else "conv-ReLU"
        widths = "-".join(str(width) for width in DECODER_WIDTHS)
        return (
            f"{ARCH}: ResNet-18 encoder + U-Net decoder ({widths}, {norm}, {self.upsample} "
            f"up-sampling); encoder: {self.encoder_source}"
        )


def load_encoder_weights(encoder: ResNet18Encoder, path: PathLike) -> str:
    """Load a torchvision ResNet-18 state dict file into `encoder`; return "<name> (sha256 <hex>)".

    `fc.*` is ignored; a missing `*.num_batches_tracked` (files saved before PyTorch 0.4.1) is
    taken as 0. conv1's (64, 3, 7, 7) kernels are summed over the RGB channels when the encoder
    has one input channel. Raises InputError naming the first missing key, unexpected key or
    shape difference, or saying why the file cannot be read.
    """
    file = Path(path)
    state = read_torch_file(file, what="encoder weights file", hint=_WEIGHTS_HINT)
    if not isinstance(state, Mapping):
        raise InputError(
            f"{file} holds a {type(state).__name__}, not a state dict; {_WEIGHTS_HINT}"
        )
    own = encoder.state_dict()
    expected = shapes_of(own)
    conv1 = tuple(own["conv1.weight"].shape)
    expected["conv1.weight"] = (conv1[0], IMAGENET_CHANNELS, *conv1[2:])
    optional = {key for key in expected if key.endswith(".num_batches_tracked")}
    problem = first_mismatch(expected, state, ignored=IGNORED_KEYS, optional=optional)
    if problem is not None:
        raise InputError(f"{file} is not a torchvision ResNet-18 state dict: {problem}")
    weights = {key: state.get(key, own[key]) for key in expected}
    if conv1[1] == 1:
        rgb = weights["conv1.weight"].to(own["conv1.weight"].dtype)
        weights["conv1.weight"] = rgb.sum(dim=1, keepdim=True)
    encoder.load_state_dict(weights)
    source = f"{file.name} (sha256 {sha256_file(file)})"
    logger.info("loaded ResNet-18 encoder weights from %s", source)
    return source
