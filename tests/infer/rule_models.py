"""Models with known answers for pipeline tests: a 1x1 convolution, logit = a * input + b.

They are real torch modules run by the real pipeline; only their weights are chosen by hand,
so what they segment is known exactly: the lesion rule marks voxels whose liver z-score is
below `z_below`, the liver rule voxels whose windowed HU is above `window_above`.
"""

from __future__ import annotations

import torch
from torch import nn

from livermets.models.saved import SavedModel


class PixelRule(nn.Module):
    """logit = slope * x + intercept, pixel by pixel (N, 1, H, W) -> (N, 1, H, W)."""

    def __init__(self, slope: float, intercept: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(slope)
            self.conv.bias.fill_(intercept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def lesion_rule(image_size: int, *, z_below: float = -2.5, steepness: float = 10.0,
                z_margin_mm: float = 10.0) -> SavedModel:
    """A lesion model whose probability is sigmoid(steepness * (z_below - z))."""
    return SavedModel(
        model=PixelRule(-steepness, steepness * z_below).eval(), arch="unet", options={},
        task="lesion", record={},
        preprocessing={"image_size": image_size, "pad_hu": -1000.0,
                       "normalisation": "liver_zscore", "z_margin_mm": z_margin_mm})


def liver_rule(image_size: int, *, window_above: float = 0.3) -> SavedModel:
    """A liver model whose probability is sigmoid(50 * (window - window_above))."""
    return SavedModel(
        model=PixelRule(50.0, -50.0 * window_above).eval(), arch="unet", options={},
        task="liver", record={},
        preprocessing={"image_size": image_size, "pad_hu": -1000.0, "normalisation": "window",
                       "window_hu": [-150.0, 250.0]})
