"""Test-time flips and averaged lesion models, against probabilities worked out by hand.

The models are real torch modules with hand-set weights (tests/infer/rule_models.py), so the
probability each must give is known: a left-right flip changes the answer of a model that
looks at its right-hand neighbour, and the flipped pass must look at the left-hand one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from livermets.errors import InputError
from livermets.infer.predictor import Predictor, PredictSettings
from livermets.infer.slices import slice_probabilities
from livermets.models.saved import SavedModel
from tests.infer.rule_models import lesion_rule
from tests.infer.test_predictor import make_phantom

WEIGHT, BIAS = 0.7, -0.2


class RightNeighbour(nn.Module):
    """logit(y, x) = WEIGHT * input(y, x + 1) + BIAS (0 beyond the right edge)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=(1, 3), padding=(0, 1))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 0, 2] = WEIGHT
            self.conv.bias.fill_(BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _right_neighbour_model(size: int) -> SavedModel:
    return SavedModel(model=RightNeighbour().eval(), arch="unet", options={}, task="lesion",
                      record={}, preprocessing={"image_size": size, "pad_hu": -1000.0,
                                                "normalisation": "liver_zscore"})


def test_a_flipped_pass_averages_the_mirrored_answer() -> None:
    rng = np.random.default_rng(3)
    hu = rng.normal(0.0, 1.0, size=(3, 16, 16)).astype(np.float32)  # square: no resampling
    model = _right_neighbour_model(16)
    right = np.pad(hu[:, :, 1:], ((0, 0), (0, 0), (0, 1)))  # input(y, x + 1), 0 beyond
    left = np.pad(hu[:, :, :-1], ((0, 0), (0, 0), (1, 0)))  # input(y, x - 1), 0 beyond
    plain = slice_probabilities(model, hu, lambda s: s, batch_size=2)
    flipped = slice_probabilities(model, hu, lambda s: s, batch_size=2, flip=True)
    np.testing.assert_allclose(plain, _sigmoid(WEIGHT * right + BIAS), atol=1e-6)
    np.testing.assert_allclose(
        flipped, (_sigmoid(WEIGHT * right + BIAS) + _sigmoid(WEIGHT * left + BIAS)) / 2,
        atol=1e-6)
    assert np.abs(flipped - plain).max() > 0.05  # the flip changed this model's answer


def test_a_mirror_symmetric_model_is_unchanged_by_the_flip() -> None:
    phantom = make_phantom()
    settings = {"precision": "fp32", "extent_mm": None}
    plain = Predictor(lesion_rule(64), settings=PredictSettings(**settings)).predict(
        phantom.ct, phantom.liver)
    flipped = Predictor(lesion_rule(64), settings=PredictSettings(
        **settings, flip_tta=True)).predict(phantom.ct, phantom.liver)
    np.testing.assert_array_equal(flipped.lesions.array, plain.lesions.array)
    assert plain.probability is not None and flipped.probability is not None
    np.testing.assert_allclose(flipped.probability.array, plain.probability.array, atol=1e-6)


def test_several_lesion_models_are_averaged() -> None:
    phantom = make_phantom()
    settings = PredictSettings(precision="fp32", extent_mm=None)
    steep, gentle = lesion_rule(64, steepness=10.0), lesion_rule(64, steepness=0.8)
    alone = [Predictor(m, settings=settings).predict(phantom.ct, phantom.liver).probability
             for m in (steep, gentle)]
    both = Predictor([steep, gentle], settings=settings)
    averaged = both.predict(phantom.ct, phantom.liver).probability
    assert averaged is not None and alone[0] is not None and alone[1] is not None
    mean = (alone[0].array + alone[1].array) / 2
    # Each probability is kept in 1/1024 steps: the mean of two kept values is within a step.
    np.testing.assert_allclose(averaged.array, mean, atol=1.01 / 1024)
    assert np.abs(averaged.array - alone[0].array).max() > 0.1
    assert np.abs(averaged.array - alone[1].array).max() > 0.1
    record = both.record()
    assert len(record["models"]["lesion_ensemble"]) == 2
    assert record["settings"]["lesion_models_averaged"] == 2


def test_models_that_read_the_ct_differently_are_not_averaged() -> None:
    with pytest.raises(InputError, match="image_size"):
        Predictor([lesion_rule(64), lesion_rule(32)])
    with pytest.raises(InputError, match="no lesion model"):
        Predictor([])
