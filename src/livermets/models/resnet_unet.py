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

from torch import nn

from livermets.models.encoder_unet import EncoderUNet
from livermets.models.imagenet import IMAGENET, resnet18_imagenet_file
from livermets.models.layers import check_positive_int, check_upsample
from livermets.models.pretrained import RANDOM, check_weights_channels, load_rgb_encoder
from livermets.models.resnet import FEATURE_CHANNELS, ResNet18Encoder
from livermets.types import PathLike

ARCH = "resnet18-unet"
RANDOM_ENCODER = "random initialisation (no --encoder-weights)"
IGNORED_KEYS: tuple[str, ...] = ("fc.weight", "fc.bias")
"""Keys of a torchvision ResNet-18 file that are not part of the encoder (the classifier)."""
_WEIGHTS_HINT = "give a torchvision ResNet-18 state dict (.pth), e.g. resnet18-f37072fd.pth"


class ResNet18UNet(EncoderUNet):
    """ResNet-18 encoder + U-Net decoder: (N, in_channels, H, W) -> logits (N, 1, H, W).

    Options (keyword-only):
        in_channels: input channels (1: one standardised CT slice).
        encoder_weights: a local torchvision-format ResNet-18 state dict to load into the
            encoder (ImageNet weights); "imagenet": torchvision's published file from the torch
            hub cache, fetched there if absent (`models.imagenet.resnet18_imagenet_file`);
            None or "random" keeps the random initialisation.
        decoder_batch_norm: conv-BN-ReLU in the decoder (`segmentation_models`' default) or
            conv-ReLU.
        upsample: "nearest" (Keras `UpSampling2D`'s default) or "bilinear".

    Without encoder weights every convolution is He/Kaiming normal (fan_in, ReLU gain), biases 0,
    batch norms weight 1 and bias 0; the decoder always starts that way. `encoder_source` says
    where the encoder's weights came from (for the run record). H and W must be multiples of 32.
    """

    ARCH = ARCH
    ENCODER = "ResNet-18"
    UNLOADED_WEIGHTS = None

    def __init__(
        self,
        *,
        in_channels: int = 1,
        encoder_weights: PathLike | None = None,
        decoder_batch_norm: bool = True,
        upsample: str = "nearest",
    ) -> None:
        if encoder_weights is not None and str(encoder_weights) == RANDOM:
            encoder_weights = None
        in_channels = check_positive_int("in_channels", in_channels)
        check_weights_channels(
            in_channels, uses_weights=encoder_weights is not None,
            random_hint="drop --encoder-weights",
        )  # fmt: skip
        super().__init__(
            ResNet18Encoder(in_channels), FEATURE_CHANNELS,  # skips 256, 128, 64, 64, then none
            decoder_batch_norm=decoder_batch_norm, upsample=check_upsample(upsample),
            random_source=RANDOM_ENCODER,
        )  # fmt: skip
        if encoder_weights is not None:
            if str(encoder_weights) == IMAGENET:
                encoder_weights = resnet18_imagenet_file()
            self.encoder_source = load_encoder_weights(self.encoder, encoder_weights)


def load_encoder_weights(encoder: nn.Module, path: PathLike) -> str:
    """Load a torchvision ResNet-18 state dict file into `encoder`; return "<name> (sha256 <hex>)".

    `fc.*` is ignored; a missing `*.num_batches_tracked` (files saved before PyTorch 0.4.1) is
    taken as 0. conv1's (64, 3, 7, 7) kernels are summed over the RGB channels when the encoder
    has one input channel. Raises InputError naming the first missing key, unexpected key or
    shape difference, or saying why the file cannot be read.
    """
    return load_rgb_encoder(
        encoder, path, first_conv="conv1.weight", network="torchvision ResNet-18",
        hint=_WEIGHTS_HINT, ignored=IGNORED_KEYS,
    )  # fmt: skip
