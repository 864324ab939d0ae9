"""resnet18-unet's `encoder_weights="imagenet"`: torchvision's file through the torch hub cache.

Never the network: TORCH_HOME points at a temporary folder and every proxy variable at a closed
local port, so a fetch fails at once; a file placed in the cache is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from livermets.cli import app
from livermets.errors import InputError
from livermets.models import create_model
from tests.models.torchvision_files import fake_resnet18_state, write_state

HUB_FILE = "resnet18-f37072fd.pth"


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch home (returned) with network access made impossible."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: refused
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_a_file_in_the_hub_cache_is_used_offline(
    offline_hub: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = fake_resnet18_state(seed=4)
    cached = offline_hub / "hub" / "checkpoints" / HUB_FILE
    cached.parent.mkdir(parents=True)
    write_state(cached, state)
    with caplog.at_level(logging.WARNING, logger="livermets.models.imagenet"):
        model = create_model("resnet18-unet", encoder_weights="imagenet")
    conv1 = state["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(model.encoder.conv1.weight, conv1)
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    assert model.encoder_source == f"{HUB_FILE} (sha256 {digest})"
    # ours is not torchvision's published file, and the log says so
    assert not digest.startswith("f37072fd")
    assert any("does not start with f37072fd" in r.getMessage() for r in caplog.records)


def test_a_damaged_file_in_the_hub_cache_is_refused(offline_hub: Path) -> None:
    cached = offline_hub / "hub" / "checkpoints" / HUB_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 not really a zip" * 50)
    with pytest.raises(InputError, match=rf"{HUB_FILE} is not a readable encoder weights file"):
        create_model("resnet18-unet", encoder_weights="imagenet")


def test_offline_without_the_file_says_where_to_put_it(offline_hub: Path) -> None:
    with pytest.raises(InputError) as caught:
        create_model("resnet18-unet", encoder_weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not fetch the ImageNet ResNet-18 weights (")
    target = offline_hub / "hub" / "checkpoints" / HUB_FILE
    assert message.endswith(f"put {HUB_FILE} at {target}")
    assert not target.exists()


def test_train_offline_without_the_file_is_refused_and_writes_no_run(
    offline_hub: Path, tiny_manifest: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--manifest", str(tiny_manifest), "--task", "lesion", "--out", str(run),
        "--arch", "resnet18-unet", "--encoder-weights", "imagenet", "--image-size", "64",
        "--epochs", "1",
    ])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert str(offline_hub / "hub" / "checkpoints" / HUB_FILE) in result.stderr
    assert result.stdout == ""
    assert not run.exists()
