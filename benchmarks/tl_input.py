"""The TL nets' CT input: the liver z-score on the summed-kernel stem vs ImageNet's recipe.

ImageNet's recipe: the CT window scaled to [0, 1], x = clip((HU - L) / (U - L), 0, 1), copied
to the 3 RGB channels, each normalised, z_c = (x - m_c) / s_c (m = 0.485, 0.456, 0.406;
s = 0.229, 0.224, 0.225), into the RGB stem kernels W_c. Ours: one channel y (the lesion task's
liver z-score, (HU - mean_liver) / sd_liver) into the summed kernel K = W_0 + W_1 + W_2.

  sum_c W_c * z_c = (sum_c W_c / s_c) * x - sum_c (m_c / s_c) * sum(W_c)   (interior pixels)

With s_c within 1.1% of s = 0.2260, that is K * y for the affine y = (x - m) / s with
m = 0.449 (their mean), up to a constant per output channel. Both stems (MobileNetV2's
features.0, ResNet-18's conv1) are convolution -> batch norm: in training mode the batch norm
removes any positive scale and any constant per channel, so after it every affine a * HU + b
(a > 0) of the input gives the same features, except on the border pixels that the zero
padding reaches and through BN's epsilon. What differs is the window's clipping (HU outside
[L, U] saturate) and, until the running statistics adapt, evaluation-mode batch norm.

This script measures it on the packaged ImageNet MobileNetV2 stem (training mode) and a batch
of CT-like slices (air, fat, liver, a lesion, bone): over interior pixels, the mean absolute
difference relative to the mean absolute output between ImageNet's 3-channel recipe and the
summed kernel on y (both unclipped: the s_c spread), the liver z-score and y (the affine, which
the batch norm removes), and the clipped window and y (the clipping). Prints one JSON line.

Usage: .venv/bin/python benchmarks/tl_input.py
"""

from __future__ import annotations

import json

import numpy as np
import torch

from livermets.models.imagenet import packaged_mobilenet_v2
from livermets.models.mobilenet import MobileNetV2Encoder
from livermets.models.mobilenet_unet import load_mobilenet_weights

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WINDOW_HU = (-150.0, 250.0)


def stem(channels: int) -> torch.nn.Module:
    """The ImageNet MobileNetV2 features.0 (conv -> BN -> ReLU6) for 1 or 3 input channels."""
    encoder = MobileNetV2Encoder(channels)
    with packaged_mobilenet_v2() as path:
        load_mobilenet_weights(encoder, path)
    return encoder.features[0].train()


def main() -> None:
    rng = np.random.default_rng(0)
    # A CT-like slice batch (N, 1, 64, 64) in HU: fat, liver, a lesion, air, bone.
    hu = rng.normal(100.0, 20.0, (8, 1, 64, 64))
    hu[:, :, :8] = -1000.0
    hu[:, :, 8:16] = rng.normal(-100.0, 20.0, (8, 1, 8, 64))
    hu[:, :, 40:48, 40:48] = rng.normal(40.0, 15.0, (8, 1, 8, 8))
    hu[:, :, 56:] = 700.0
    low, high = WINDOW_HU
    width = high - low
    m, s = float(np.mean(MEAN)), float(np.mean(STD))
    unclipped = (hu - low) / width
    clipped = np.clip(unclipped, 0.0, 1.0)
    liver = hu[:, :, 16:56]
    zscore = (hu - liver.mean()) / liver.std()

    def run(net: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return net(torch.as_tensor(image, dtype=torch.float32))[..., 1:-1, 1:-1]

    rgb, single = stem(3), stem(1)
    three = np.concatenate([(unclipped - MEAN[c]) / STD[c] for c in range(3)], axis=1)
    reference = run(rgb, three)
    affine = run(single, (unclipped - m) / s)

    def differ(a: torch.Tensor, b: torch.Tensor) -> float:
        """Mean absolute difference relative to the mean absolute stem output of `b`."""
        return round(float((a - b).abs().mean() / b.abs().mean()), 4)

    out = {
        "window_hu": WINDOW_HU,
        "affine": f"y = (clip(HU) - {low + m * width:.1f}) / {s * width:.1f}",
        "imagenet_3ch_vs_summed_affine": differ(affine, reference),
        "summed_zscore_vs_summed_affine": differ(run(single, zscore), affine),
        "summed_clipped_window_vs_summed_affine": differ(run(single, (clipped - m) / s),
                                                         affine),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
