"""Liver inference pieces: slice streaming back to the CT grid, the largest-component rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livermets.errors import InputError
from livermets.infer.liver import (
    FLUID_BELOW_HU,
    drop_dark_tissue,
    fill_liver_holes,
    largest_filled_component,
    segment_liver,
)
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


def _block(shape: tuple[int, ...], z: slice, y: slice, x: slice) -> np.ndarray:
    """A boolean mask of `shape` (z, y, x), true on one box."""
    mask = np.zeros(shape, bool)
    mask[z, y, x] = True
    return mask


def test_open_fluid_pocket_stays_out_but_lesions_and_cysts_are_filled() -> None:
    # 1 mm voxels; a liver block of 120 HU over z 2-17 (fat around it, -100 HU).
    hu = np.full((20, 60, 60), -100, np.int16)
    liver = _block(hu.shape, slice(2, 18), slice(10, 50), slice(10, 50))
    hu[liver] = 120
    # 15 HU, from below the liver up into it
    gallbladder = _block(hu.shape, slice(0, 11), slice(20, 29), slice(20, 29))
    # 10 HU, enclosed by liver on every side
    cyst = _block(hu.shape, slice(12, 16), slice(35, 41), slice(35, 41))
    # 60 HU, reaching above the liver's top (z 17)
    lesion = _block(hu.shape, slice(14, 20), slice(15, 23), slice(35, 43))
    hu[gallbladder], hu[cyst], hu[lesion] = 15, 10, 60
    model = liver & ~gallbladder & ~cyst & ~lesion  # what the model calls liver
    filled = fill_liver_holes(model, hu)
    assert not filled[gallbladder].any()  # in-plane holes on z 2-10, but open below: out
    assert filled[cyst].all()  # a 3D hole: in, whatever its HU
    assert filled[lesion & liver].all()  # open above, but 60 HU >= FLUID_BELOW_HU: in
    assert not filled[~liver].any()
    assert np.array_equal(filled, liver & ~gallbladder)
    assert 15 < FLUID_BELOW_HU <= 45  # the pockets below are on either side of it
    without_hu = fill_liver_holes(model)  # no CT: every hole filled, as before
    assert np.array_equal(without_hu, liver)
    hu[gallbladder] = 45  # the same pocket at soft-tissue density is filled
    assert np.array_equal(fill_liver_holes(model, hu), liver)
    out = largest_filled_component(model, hu=hu)
    assert out.dtype == np.uint8 and np.array_equal(out > 0, liver)


def test_no_liver_and_wrong_task(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="found no liver"):
        largest_filled_component(np.zeros((2, 3, 3), bool))
    with pytest.raises(InputError, match="give a liver model"):
        segment_liver(_saved(tmp_path, task="lesion"), np.zeros((2, 32, 32), np.int16),
                      spacing=(1.0, 1.0, 1.0))


def test_dark_tissue_pressing_on_the_liver_is_cut_but_its_lesions_stay() -> None:
    # 1 mm voxels. A liver block of 120 HU (z 5-35, y 20-80, x 20-80) with a lesion of 40 HU
    # inside it and one at its edge (a 10 mm deep notch, open to the outside), and a mass of
    # 40 HU pressing on its right side (x 80-120) that the model also called liver.
    hu = np.full((40, 100, 140), -100, np.int16)
    liver_true = _block(hu.shape, slice(5, 35), slice(20, 80), slice(20, 80))
    hu[liver_true] = 120
    inner = _block(hu.shape, slice(15, 25), slice(40, 55), slice(40, 55))
    # from the liver's top edge (y 20), 10 mm deep
    edge = _block(hu.shape, slice(15, 25), slice(20, 30), slice(45, 60))
    mass = _block(hu.shape, slice(5, 35), slice(20, 80), slice(80, 120))
    hu[inner | edge | mass] = 40
    above = (liver_true & ~inner & ~edge) | mass  # the model: neither lesion, but the mass
    sure = liver_true & ~inner & ~edge
    sure[:, :, 70:80] = False  # the model is least sure next to the mass
    liver = largest_filled_component(above)
    out = drop_dark_tissue(liver, above | edge, sure, hu, (1.0, 1.0, 1.0)) > 0
    # The 7 mm local mean mixes liver into the mass's first voxels (at x 80 the mean is
    # (3 * 120 + 4 * 40) / 7 = 74 HU, above 120 - 50 = 70: kept; at x 81, 63 HU: cut), and the
    # closing on a 2 mm grid may add one fine voxel more: nothing beyond x 81 stays.
    assert not out[:, :, 82:].any() and out[mass].sum() <= 2 * 30 * 60
    assert out[inner].all()  # enclosed: filled back as a hole
    # In a notch of the outline, and the model called it liver: back, but for up to 2 mm at
    # its mouth (y 20) and its walls (the 2 mm grid of the closing).
    assert out[17:23, 22:, 47:58][edge[17:23, 22:, 47:58]].all() and out[edge].mean() > 0.6
    assert np.array_equal(out[:, 30:, :80], liver_true[:, 30:, :80])
    # Without dark tissue nothing changes.
    plain = largest_filled_component(liver_true)
    assert np.array_equal(drop_dark_tissue(plain, liver_true, liver_true,
                                           np.where(liver_true, 120, -100), (1.0, 1.0, 1.0)),
                          plain)
