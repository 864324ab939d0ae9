"""The registry: names, options, errors."""

from __future__ import annotations

import pytest

from livermets.errors import InputError
from livermets.models import (
    MODEL_NAMES,
    MobileNetV2UNet,
    ResNet18UNet,
    UNet,
    create_model,
    model_options,
)


def test_names_and_classes() -> None:
    assert MODEL_NAMES == ("unet", "resnet18-unet", "mobilenetv2-unet")
    assert isinstance(create_model("unet", base_width=2), UNet)
    assert isinstance(create_model("resnet18-unet"), ResNet18UNet)
    assert isinstance(create_model("mobilenetv2-unet", encoder_weights="random"), MobileNetV2UNet)


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model architecture 'vnet'") as caught:
        create_model("vnet")
    assert isinstance(caught.value, InputError)
    assert "valid names: unet, resnet18-unet, mobilenetv2-unet" in str(caught.value)


def test_options_with_defaults() -> None:
    assert model_options("unet") == {
        "in_channels": 1, "base_width": 32, "upsample": "nearest", "batch_norm": False,
    }  # fmt: skip
    assert model_options("resnet18-unet") == {
        "in_channels": 1, "encoder_weights": None, "decoder_batch_norm": True,
        "upsample": "nearest",
    }  # fmt: skip
    assert model_options("mobilenetv2-unet") == model_options("resnet18-unet")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_width": 0}, "base_width must be a whole number >= 1, got 0"),
        ({"base_width": 8.0}, "base_width must be a whole number >= 1, got 8.0"),
        ({"in_channels": True}, "in_channels must be a whole number >= 1, got True"),
        ({"upsample": "cubic"}, "upsample must be one of nearest, bilinear, got 'cubic'"),
    ],
)
def test_bad_option_values_are_input_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        create_model("unet", **options)


def test_options_must_be_keywords() -> None:
    with pytest.raises(TypeError):
        UNet(1)  # type: ignore[misc]
