"""The TL network: generic contract, torchvision encoder weights, decoder layout."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from livermets.errors import InputError
from livermets.models import ResNet18UNet, create_model
from tests.models.contract import ModelContract
from tests.models.torchvision_files import (
    RESNET18_PARAMETERS,
    fake_resnet18_state,
    resnet18_shapes,
    write_state,
)


class TestResNet18UNet(ModelContract):
    arch = "resnet18-unet"
    options: ClassVar[dict[str, Any]] = {}
    size_multiple = 32


class TestResNet18UNetPlainDecoder(ModelContract):
    arch = "resnet18-unet"
    options: ClassVar[dict[str, Any]] = {"decoder_batch_norm": False, "upsample": "bilinear"}
    size_multiple = 32


def test_the_independent_torchvision_layout_is_resnet18() -> None:
    shapes = resnet18_shapes()
    assert len(shapes) == 122
    parameters = sum(
        torch.Size(shape).numel()
        for key, shape in shapes.items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert parameters == RESNET18_PARAMETERS


def test_encoder_has_torchvision_names_and_shapes() -> None:
    encoder = create_model("resnet18-unet", in_channels=3).encoder
    expected = {k: v for k, v in resnet18_shapes().items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == expected


def test_skips_and_decoder_widths() -> None:
    model = create_model("resnet18-unet")
    features = model.encoder(torch.zeros(1, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2),
    ]  # fmt: skip
    decoder_convs = [
        (m.in_channels, m.out_channels) for m in model.decoder.modules() if isinstance(m, nn.Conv2d)
    ]
    assert decoder_convs == [
        (512 + 256, 256), (256, 256),
        (256 + 128, 128), (128, 128),
        (128 + 64, 64), (64, 64),
        (64 + 64, 32), (32, 32),
        (32, 16), (16, 16),
    ]  # fmt: skip
    head = model.head
    assert (head.in_channels, head.out_channels, head.kernel_size) == (16, 1, (1, 1))


def test_random_encoder_is_recorded() -> None:
    model = create_model("resnet18-unet")
    assert model.encoder_source == "random initialisation (no --encoder-weights)"
    assert "encoder: random initialisation (no --encoder-weights)" in model.describe()


def test_encoder_weights_load_tensor_for_tensor(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    path = write_state(tmp_path / "resnet18-imagenet.pth", state)
    model = create_model("resnet18-unet", encoder_weights=path)
    assert isinstance(model, ResNet18UNet)
    own = model.state_dict()
    for key, tensor in state.items():
        if key.startswith("fc."):
            continue
        expected = tensor.sum(dim=1, keepdim=True) if key == "conv1.weight" else tensor
        assert torch.equal(own[f"encoder.{key}"], expected), key
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.encoder_source == f"resnet18-imagenet.pth (sha256 {digest})"
    assert model.encoder_source in model.describe()


def test_one_channel_equals_the_image_on_three_channels(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    path = write_state(tmp_path / "w.pth", state)
    conv1 = create_model("resnet18-unet", encoder_weights=path).encoder.conv1
    image = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    rgb = F.conv2d(image.expand(-1, 3, -1, -1), state["conv1.weight"], stride=2, padding=3)
    with torch.no_grad():
        assert torch.allclose(conv1(image), rgb, atol=1e-5)


def test_three_channel_encoder_takes_conv1_as_is(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    path = write_state(tmp_path / "w.pth", state)
    model = create_model("resnet18-unet", in_channels=3, encoder_weights=str(path))
    assert torch.equal(model.encoder.conv1.weight, state["conv1.weight"])


def test_file_without_num_batches_tracked_loads(tmp_path: Path) -> None:
    state = {k: v for k, v in fake_resnet18_state().items() if "num_batches" not in k}
    del state["fc.weight"], state["fc.bias"]
    path = write_state(tmp_path / "old.pth", state)
    model = create_model("resnet18-unet", encoder_weights=path)
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.encoder.bn1.num_batches_tracked.item() == 0


def _expect_error(path: Path, pattern: str) -> InputError:
    with pytest.raises(InputError, match=pattern) as caught:
        create_model("resnet18-unet", encoder_weights=path)
    assert "\n" not in str(caught.value)
    return caught.value


def test_renamed_key_is_named(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    state["layer3.1.bn2.running_avg"] = state.pop("layer3.1.bn2.running_mean")
    path = write_state(tmp_path / "renamed.pth", state)
    _expect_error(
        path,
        r"renamed\.pth is not a torchvision ResNet-18 state dict: missing key "
        r"'layer3\.1\.bn2\.running_mean'",
    )


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    state["layer5.0.conv1.weight"] = torch.zeros(3)
    _expect_error(write_state(tmp_path / "extra.pth", state), r"unexpected key 'layer5\.0\.conv1")


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    state = fake_resnet18_state()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    _expect_error(
        write_state(tmp_path / "shape.pth", state),
        r"'layer2\.0\.conv1\.weight' has shape \(128, 64, 5, 5\), expected \(128, 64, 3, 3\)",
    )


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a torch file\x00\x01" * 100)
    _expect_error(path, r"garbage\.pth is not a readable encoder weights file \(")


def test_missing_file_and_non_state_dict(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.pth", r"encoder weights file not found: .*absent\.pth")
    _expect_error(write_state(tmp_path / "list.pth", [1, 2]), "holds a list, not a state dict")


def test_weights_need_one_or_three_channels(tmp_path: Path) -> None:
    path = write_state(tmp_path / "w.pth", fake_resnet18_state())
    with pytest.raises(InputError, match="in_channels 1 or 3, got 2"):
        create_model("resnet18-unet", in_channels=2, encoder_weights=path)
