"""Liver inference pieces: slice streaming back to the CT grid, the largest-component rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livermets.errors import InputError
from livermets.infer.liver import largest_filled_component, segment_liver
from livermets.infer.slices import slice_probabilities
from livermets.models import create_model
from livermets.models.saved import SavedModel, load_model, save_model
from livermets.preprocess import window


def _saved(tmp_path: Path, task: str = "liver") -> SavedModel:
    torch.manual_seed(0)
    model = create_model("unet", base_width=4)
    path = save_model(tmp_path / "model.pt", model, arch="unet", options={"base_width": 4},
                      task=task, preprocessing={"image_size": 32, "pad_hu": -1000.0,
                                                "window_hu": [-150.0, 250.0]}, record={})
    return load_model(path)


def test_probabilities_come_back_on_the_ct_grid(tmp_path: Path) -> None:
    model = _saved(tmp_path)
    hu = np.random.default_rng(0).integers(-1000, 400, size=(5, 40, 48)).astype(np.int16)
    by_two = slice_probabilities(model, hu, window, batch_size=2)
    by_all = slice_probabilities(model, hu, window, batch_size=16)
    assert by_two.shape == (5, 40, 48) and by_two.dtype == np.float32
    assert by_two.min() >= 0.0 and by_two.max() <= 1.0
    np.testing.assert_allclose(by_two, by_all, atol=1e-6)  # batching changes nothing
    in_bf16 = slice_probabilities(model, hu, window, batch_size=4, bf16=True)
    assert np.abs(in_bf16 - by_all).max() < 0.05


def test_largest_component_with_holes_filled() -> None:
    mask = np.zeros((3, 12, 12), bool)
    mask[:, 1:9, 1:9] = True
    mask[1, 4:6, 4:6] = False  # a hole (a lesion inside the liver)
    mask[:, 10:12, 10:12] = True  # a separate, smaller blob
    out = largest_filled_component(mask)
    assert out.dtype == np.uint8
    assert int(out.sum()) == 3 * 8 * 8 and out[1, 4, 4] == 1 and out[0, 11, 11] == 0


def test_no_liver_and_wrong_task(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="found no liver"):
        largest_filled_component(np.zeros((2, 3, 3), bool))
    with pytest.raises(InputError, match="give a liver model"):
        segment_liver(_saved(tmp_path, task="lesion"), np.zeros((2, 32, 32), np.int16))
