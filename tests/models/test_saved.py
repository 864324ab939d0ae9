"""The saved-model format: contents, portability, refusals (one-line InputErrors)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from livermets.errors import InputError
from livermets.models import FORMAT_VERSION, create_model, load_model, save_model
from tests.models.torchvision_files import fake_resnet18_state, write_state

UNET_OPTIONS = {"base_width": 4}


def _save_unet(path: Path, *, task: str = "lesion", half: bool = False) -> Path:
    torch.manual_seed(0)
    model = create_model("unet", **UNET_OPTIONS)
    return save_model(
        path, model, arch="unet", options=UNET_OPTIONS, task=task,
        preprocessing={"image_size": 32}, record={"seed": 0}, half=half,
    )  # fmt: skip


def _payload(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def _load_error(path: Path, pattern: str, **kwargs: Any) -> str:
    with pytest.raises(InputError, match=pattern) as caught:
        load_model(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_file_contents(tmp_path: Path) -> None:
    path = _save_unet(tmp_path / "run" / "model.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary left
    payload = _payload(path)
    assert payload["format"] == "livermets-model"
    assert payload["format_version"] == FORMAT_VERSION == 1
    assert (payload["arch"], payload["task"]) == ("unet", "lesion")
    assert json.loads(payload["options"]) == {
        "in_channels": 1, "base_width": 4, "upsample": "nearest", "batch_norm": False,
    }  # fmt: skip
    assert json.loads(payload["preprocessing"]) == {"image_size": 32}
    assert json.loads(payload["record"]) == {"seed": 0}
    assert all(t.dtype == torch.float32 for t in payload["state_dict"].values())


def test_half_stores_float16(tmp_path: Path) -> None:
    full = _save_unet(tmp_path / "full.pt")
    half = _save_unet(tmp_path / "half.pt", half=True)
    assert all(t.dtype == torch.float16 for t in _payload(half)["state_dict"].values())
    assert half.stat().st_size < 0.6 * full.stat().st_size


def test_encoder_weights_file_is_not_needed_to_load(tmp_path: Path) -> None:
    weights = write_state(tmp_path / "resnet18-imagenet.pth", fake_resnet18_state())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    model = create_model("resnet18-unet", encoder_weights=weights).eval()
    path = save_model(
        tmp_path / "model.pt", model, arch="resnet18-unet",
        options={"encoder_weights": weights}, task="liver", preprocessing={}, record={},
    )  # fmt: skip
    weights.unlink()
    loaded = load_model(path, expected_task="liver")
    source = f"resnet18-imagenet.pth (sha256 {digest})"
    assert loaded.options["encoder_weights"] == source
    assert loaded.model.encoder_source == source
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(image), model(image))


def test_missing_garbage_and_truncated_files(tmp_path: Path) -> None:
    _load_error(tmp_path / "absent.pt", r"model file not found: .*absent\.pt; give the model\.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    _load_error(garbage, r"garbage\.pt is not a readable model file \(")
    data = _save_unet(tmp_path / "model.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    _load_error(truncated, r"truncated\.pt is not a readable model file \(")


def test_other_torch_file_is_not_a_livermets_model(tmp_path: Path) -> None:
    path = write_state(tmp_path / "weights.pt", {"conv.weight": torch.zeros(2)})
    _load_error(path, r"weights\.pt is not a livermets model file; give the model\.pt")


def test_newer_format_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = _save_unet(tmp_path / "model.pt")
    payload = _payload(path)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    _load_error(path, "model format version 2 but this livermets reads up to 1; upgrade livermets")


def test_wrong_task(tmp_path: Path) -> None:
    path = _save_unet(tmp_path / "model.pt", task="liver")
    _load_error(path, "this is a liver model; give a lesion model", expected_task="lesion")
    assert load_model(path, expected_task="liver").task == "liver"


def test_weights_not_matching_the_architecture(tmp_path: Path) -> None:
    path = _save_unet(tmp_path / "model.pt")
    payload = _payload(path)
    del payload["state_dict"]["head.bias"]
    torch.save(payload, path)
    _load_error(path, r"do not match the unet architecture \(missing key 'head\.bias'\)")
    payload = _payload(_save_unet(path))
    payload["options"] = json.dumps({**json.loads(payload["options"]), "base_width": 8})
    torch.save(payload, path)
    _load_error(path, r"'encoder\.0\.0\.weight' has shape \(4, 1, 3, 3\), expected \(8, 1, 3, 3\)")


def test_stored_options_unknown_to_this_version(tmp_path: Path) -> None:
    path = _save_unet(tmp_path / "model.pt")
    payload = _payload(path)
    payload["options"] = json.dumps({"depth": 5})
    torch.save(payload, path)
    _load_error(path, r"model\.pt: unknown option 'depth' for model 'unet'")


class Payload:
    """A pickle that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-a-model-dict"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, nested: bool) -> None:
    marker = tmp_path / "pwned"
    evil: object = Payload(marker)
    if nested:
        evil = {**_payload(_save_unet(tmp_path / "good.pt")), "state_dict": evil}
    path = tmp_path / "model.pt"
    torch.save(evil, path)
    message = _load_error(path, r"model\.pt is not a readable model file \(")
    assert "not plain tensors and containers" in message
    assert not marker.exists()
    # control: the payload is real; an unsafe load would have run it
    control = tmp_path / "control"
    torch.save(Payload(control), tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()


def test_save_refuses_bad_arguments(tmp_path: Path) -> None:
    model = create_model("unet", **UNET_OPTIONS)
    common: dict[str, Any] = {"arch": "unet", "preprocessing": {}, "record": {}}
    with pytest.raises(ValueError, match="task must be one of liver, lesion, got 'tumour'"):
        save_model(tmp_path / "a.pt", model, options=UNET_OPTIONS, task="tumour", **common)
    with pytest.raises(ValueError, match=r"'encoder\.0\.0\.weight' has shape \(4, 1, 3, 3\)"):
        save_model(tmp_path / "b.pt", model, options={"base_width": 8}, task="liver", **common)
    with pytest.raises(ValueError, match="record must be JSON-serialisable"):
        save_model(
            tmp_path / "c.pt", model, arch="unet", options=UNET_OPTIONS, task="liver",
            preprocessing={}, record={"paths": {Path("x")}},
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
