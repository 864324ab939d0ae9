"""Config, losses, patient split, sampling and augmentation, with hand-computed answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from livermets.config import (
    TrainConfig,
    load_train_config,
    make_train_config,
    parse_assignments,
)
from livermets.errors import InputError
from livermets.io import Volume, write_image
from livermets.io.manifest import ManifestRow
from livermets.train.data import SliceSet, augment, epoch_indices, load_slices, split_patients
from livermets.train.losses import bce, dice_bce, get_loss, soft_dice
from livermets.train.trainer import preprocessing_settings


def test_defaults_are_the_papers() -> None:
    config = TrainConfig()
    assert (config.lr, config.beta1, config.beta2) == (1e-3, 0.9, 0.999)
    assert (config.lr_patience, config.early_stop_patience, config.image_size) == (5, 10, 256)
    assert config.loss_name == "bce" and config.base_width == 32
    assert make_train_config({"arch": "resnet18-unet"}).loss_name == "dice_bce"
    assert config.flip == 0.5 and make_train_config({"task": "liver"}).flip == 0.0
    # Gradient clipping: none for the paper's net, 1.0 for the TL net unless set (0: never).
    assert config.clip_norm is None
    assert make_train_config({"arch": "resnet18-unet"}).clip_norm == 1.0
    assert make_train_config({"arch": "resnet18-unet", "grad_clip_norm": 0}).clip_norm is None
    assert make_train_config({"grad_clip_norm": 2.5}).clip_norm == 2.5
    mobilenet = make_train_config({"arch": "mobilenetv2-unet"})  # the other TL net
    assert (mobilenet.loss_name, mobilenet.clip_norm) == ("dice_bce", 1.0)
    assert mobilenet.model_options() == {"encoder_weights": None}


def test_yaml_then_flags(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("lr: 0.0005\nepochs: 3\naugment: false\n")
    config = load_train_config(tmp_path / "c.yaml", parse_assignments(["epochs=7",
                                                                        "slices_per_epoch=null"]))
    assert (config.lr, config.epochs, config.augment, config.slices_per_epoch) == (
        0.0005, 7, False, None)


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 2.5}, "expected int"), ({"augment": "maybe"}, "expected bool"),
    ({"lr_factor": 1.0}, "lr_factor"), ({"task": "kidney"}, "choose one of liver, lesion"),
    ({"grad_clip_norm": -1}, "grad_clip_norm must be >= 0"),
    ({"crop_margin_mm": -5.0}, "crop_margin_mm must be >= 0"),
    ({"field_mm": 0.5, "task": "lesion"}, "field_mm goes with the lesion task"),
    ({"field_mm": 300.0, "task": "liver"}, "field_mm goes with the lesion task"),
    ({"field_mm": 300.0, "task": "lesion", "crop_margin_mm": 10.0}, "not both"),
])
def test_bad_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_train_config(values)


def test_bce_and_dice_by_hand() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # probabilities 0.5 and 0.75
    target = torch.tensor([[[[0.0, 1.0]]]])
    expected_bce = (-math.log(0.5) - math.log(0.75)) / 2
    assert float(bce(logits, target)) == pytest.approx(expected_bce)
    # soft Dice = (2 * 0.75 + 1) / (1.25 + 1 + 1)
    assert float(soft_dice(logits, target)) == pytest.approx(2.5 / 3.25)
    assert float(dice_bce(logits, target)) == pytest.approx(expected_bce + 1 - 2.5 / 3.25)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")


def _row(patient: str, split: str, tp: str = "baseline") -> ManifestRow:
    return ManifestRow(patient_id=patient, timepoint=tp, image=Path("x"), split=split)


def test_split_keeps_patients_whole_and_skips_other_sets() -> None:
    rows = [_row(f"p{i}", "training", tp) for i in range(10) for tp in ("baseline", "tp1")]
    rows += [_row("q1", "valB"), _row("q2", "valTP1")]
    train, val = split_patients(rows, make_train_config({"val_fraction": 0.2}))
    train_ids, val_ids = {r.patient_id for r in train}, {r.patient_id for r in val}
    assert len(val_ids) == 2 and len(train_ids) == 8 and not train_ids & val_ids
    assert len(val) == 4  # both time points of each held-out patient
    assert "q1" not in train_ids | val_ids and "q2" not in train_ids | val_ids
    again = split_patients(rows, make_train_config({"val_fraction": 0.2}))
    assert [r.patient_id for r in again[1]] == [r.patient_id for r in val]  # seeded


def test_explicit_validation_rows_and_overlap() -> None:
    train, val = split_patients([_row("a", "training"), _row("b", "validation")],
                                make_train_config({}))
    assert [r.patient_id for r in train] == ["a"] and [r.patient_id for r in val] == ["b"]
    with pytest.raises(InputError, match="both the training and the validation"):
        split_patients([_row("a", "training"), _row("a", "validation", "tp1")],
                       make_train_config({}))
    with pytest.raises(InputError, match="no training rows"):
        split_patients([_row("a", "valB")], make_train_config({}))


def _slices(positive: list[bool]) -> SliceSet:
    n = len(positive)
    return SliceSet(torch.zeros(n, 4, 4, dtype=torch.float16), torch.zeros(n, 4, 4,
                    dtype=torch.uint8), np.zeros(n, int), np.array(positive), ("c",))


def test_positive_oversampling() -> None:
    slices = _slices([True] * 10 + [False] * 90)
    config = make_train_config({"slices_per_epoch": 1000, "positive_fraction": 0.4})
    order = epoch_indices(slices, config, torch.Generator().manual_seed(0))
    assert len(order) == 1000 and int((order < 10).sum()) == 400
    natural = epoch_indices(slices, make_train_config({"positive_fraction": None}),
                            torch.Generator().manual_seed(0))
    assert sorted(natural.tolist()) == list(range(100))  # every slice once


def test_augment_keeps_targets_binary_and_aligned() -> None:
    image = torch.zeros(4, 1, 32, 32)
    image[:, :, 10:20, 12:22] = 5.0
    target = (image > 0).float()
    config = make_train_config({"intensity_jitter": 0.0, "flip_probability": 1.0,
                                "rotate_degrees": 10.0, "scale_range": 0.1})
    out_image, out_target = augment(image, target, config, torch.Generator().manual_seed(1))
    assert set(torch.unique(out_target).tolist()) <= {0.0, 1.0}
    # The target still marks the bright square: inside it the image is bright.
    assert float(out_image[out_target > 0].mean()) > 4.0
    assert float(out_image[out_target == 0].mean()) < 1.0
    flipped = make_train_config({"intensity_jitter": 0.0, "flip_probability": 1.0,
                                 "rotate_degrees": 0.0, "scale_range": 0.0})
    out_image, _ = augment(image, target, flipped, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_image, torch.flip(image, dims=[-1]))


def test_gaussian_blur_matches_scipy_per_image() -> None:
    from scipy import ndimage

    from livermets.train.data import gaussian_blur

    images = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 20, 24))).float()
    blurred = gaussian_blur(images, torch.tensor([1.0, 0.0]))
    # scipy's kernel for sigma 1, truncated at 3 sigma (radius 3), edges replicated.
    expected = ndimage.gaussian_filter(images[0, 0].numpy(), sigma=1.0, truncate=3.0,
                                       mode="nearest")
    np.testing.assert_allclose(blurred[0, 0].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(blurred[1], images[1])  # sigma 0: unchanged


def test_noise_augmentation_has_the_drawn_spread_and_leaves_targets() -> None:
    images = torch.zeros(400, 1, 64, 64)
    targets = torch.zeros(400, 1, 64, 64)
    targets[:, :, 20:30, 20:30] = 1
    config = make_train_config({"intensity_jitter": 0.0, "flip_probability": 0.0,
                                "rotate_degrees": 0.0, "scale_range": 0.0, "noise_std": 0.6})
    out, out_targets = augment(images, targets, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out_targets, targets)
    sds = out.flatten(1).std(dim=1)
    # Each image's SD is drawn uniformly in [0, 0.6]: mean 0.3, all within the range.
    assert float(sds.max()) <= 0.6 * 1.02 and abs(float(sds.mean()) - 0.3) < 0.03
    assert abs(float(out.mean())) < 0.01


def test_learning_rate_halves_after_5_bad_epochs_and_training_stops_after_10() -> None:
    from livermets.train.records import EpochRecord
    from livermets.train.trainer import TrainingState, make_optimizer

    config = make_train_config({})
    optimizer, scheduler = make_optimizer(torch.nn.Linear(1, 1), config)
    state = TrainingState()
    losses = [1.0, 0.9] + [0.95] * 12  # best at epoch 2, then no improvement
    lrs, stopped_after = [], None  # lrs[k]: the rate epoch k + 1 ran at
    for epoch, loss in enumerate(losses, start=1):
        if state.bad_epochs >= config.early_stop_patience:
            stopped_after = epoch - 1
            break
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(loss)
        state.add(EpochRecord(epoch, loss, loss, 0.5, lrs[-1], 0.0))  # it has learned
    assert state.best_epoch == 2 and state.best_loss == 0.9
    # Epochs 3-7 do not improve (5 in a row): epoch 8 is the first at half the rate.
    assert lrs[:7] == [1e-3] * 7
    assert lrs[7] == pytest.approx(5e-4)
    assert stopped_after == 12  # 10 epochs (3-12) without improvement


def test_epochs_before_the_network_learns_do_not_count_towards_early_stopping() -> None:
    """Validation Dice 0 for epochs 1-14 (loss best at epoch 4), then 0.3 from epoch 15 on,
    the loss never better than epoch 4's: the 10 bad epochs are 15-24, so training stops after
    epoch 24, not after 14. A checkpoint's history replays to the same state."""
    from livermets.train.records import EpochRecord
    from livermets.train.trainer import TrainingState

    patience = make_train_config({}).early_stop_patience
    state = TrainingState()
    losses = [0.9, 0.8, 0.7, 0.5] + [0.6] * 26
    stopped_after = None
    for epoch, loss in enumerate(losses, start=1):
        if state.bad_epochs >= patience:
            stopped_after = epoch - 1
            break
        state.add(EpochRecord(epoch, loss, loss, 0.0 if epoch < 15 else 0.3, 1e-3, 0.0))
        if epoch == 14:
            assert state.bad_epochs == 0 and not state.learned
    assert stopped_after == 24 and state.best_epoch == 4
    replayed = TrainingState.from_json(state.to_json())
    assert (replayed.bad_epochs, replayed.best_epoch, replayed.best_loss, replayed.learned) == (
        state.bad_epochs, state.best_epoch, state.best_loss, True)


def test_balance_centers_gives_each_centre_an_equal_share() -> None:
    # 90 slices from centre A (cases 0, 1), 10 from centre B (case 2); positives: 20 in A, 2 in B.
    positive = [i < 20 for i in range(90)] + [i < 2 for i in range(10)]
    slices = SliceSet(torch.zeros(100, 4, 4, dtype=torch.float16),
                      torch.zeros(100, 4, 4, dtype=torch.uint8),
                      np.array([0] * 45 + [1] * 45 + [2] * 10), np.array(positive),
                      ("a1", "a2", "b1"), ("A", "A", "B"))
    config = make_train_config({"slices_per_epoch": 20000, "positive_fraction": 0.5,
                                "balance_centers": True})
    order = epoch_indices(slices, config, torch.Generator().manual_seed(0)).numpy()
    from_b = order >= 90
    assert int(np.asarray(positive)[order].sum()) == 10000
    # Half of the positives and half of the negatives come from B: 5000 each, +/- 4 SD.
    assert abs(int((from_b & np.asarray(positive)[order]).sum()) - 5000) < 4 * 50
    assert abs(int((from_b & ~np.asarray(positive)[order]).sum()) - 5000) < 4 * 50
    natural = epoch_indices(slices, make_train_config({"slices_per_epoch": 20000,
                                                       "positive_fraction": 0.5}),
                            torch.Generator().manual_seed(0)).numpy()
    # Without balancing, B holds 2/22 of the positives and 8/78 of the negatives.
    assert abs(int((natural >= 90).sum()) - round(10000 * 2 / 22 + 10000 * 8 / 78)) < 4 * 40


def test_lesion_slices_cropped_to_the_liver_box(tmp_path: Path) -> None:
    """With `crop_margin_mm` 0 the network sees exactly the liver's 32x32 box: no resizing,
    so the inputs are the box's z-scored HU and the targets its lesion voxels, as they are."""
    shape = (10, 80, 96)
    rng = np.random.default_rng(0)
    hu = rng.integers(80, 120, size=shape).astype(np.int16)
    liver = np.zeros(shape, np.uint8)
    liver[3:7, 20:52, 40:72] = 1  # 4 slices of 32x32 pixels of 2 mm: 65.5 mL at 4 mm
    lesions = np.zeros(shape, np.uint8)
    lesions[4, 30:34, 50:54] = 1
    hu[lesions > 0] = 30
    hu[:, :2] = -1000  # air at the edge, outside the box: training checks it is a CT in HU
    paths = {name: write_image(Volume.from_array(array, spacing=(4.0, 2.0, 2.0)),
                               tmp_path / f"{name}.nii.gz")
             for name, array in (("ct", hu), ("liver", liver), ("lesions", lesions))}
    row = ManifestRow(patient_id="p", timepoint="baseline", image=paths["ct"],
                      liver_mask=paths["liver"], lesion_mask=paths["lesions"])
    config = TrainConfig(task="lesion", image_size=32, z_margin_mm=4.0, crop_margin_mm=0.0)
    slices = load_slices([row], config)

    box = hu[2:8, 20:52, 40:72].astype(np.float64)  # the z-range 3..6 plus one 4 mm slice
    inside = hu[liver > 0].astype(np.float64)
    expected = (box - inside.mean()) / inside.std()
    np.testing.assert_allclose(slices.images.float().numpy(), expected, atol=5e-3)
    np.testing.assert_array_equal(slices.targets.numpy(), lesions[2:8, 20:52, 40:72])
    assert preprocessing_settings(config)["crop_margin_mm"] == 0.0
    assert "crop_margin_mm" not in preprocessing_settings(TrainConfig(task="lesion"))


def _field_case(tmp_path: Path, pixel_mm: float) -> ManifestRow:
    """A CT of 8 mm slices whose liver (40 x 40 x 32 mm = 51 mL, at the slice's left edge)
    holds an 8 x 8 mm lesion 30 HU darker, drawn on pixels of `pixel_mm` (1 or 0.5 mm; 80 mm
    across)."""
    n = round(80 / pixel_mm)
    mm = lambda a, b: slice(round(a / pixel_mm), round(b / pixel_mm))  # noqa: E731
    rng = np.random.default_rng(0)
    hu = rng.integers(90, 110, size=(6, n, n)).astype(np.int16)
    hu[:, :, mm(60, 80)] = -1000  # air on the right
    liver = np.zeros(hu.shape, np.uint8)
    liver[1:5, mm(20, 60), mm(0, 40)] = 1
    lesions = np.zeros(hu.shape, np.uint8)
    lesions[2:4, mm(32, 40), mm(16, 24)] = 1
    hu[lesions > 0] = 70
    folder = tmp_path / f"{pixel_mm}"
    folder.mkdir()
    paths = {name: write_image(Volume.from_array(array, spacing=(8.0, pixel_mm, pixel_mm)),
                               folder / f"{name}.nii.gz")
             for name, array in (("ct", hu), ("liver", liver), ("lesions", lesions))}
    return ManifestRow(patient_id="p", timepoint="baseline", image=paths["ct"],
                       liver_mask=paths["liver"], lesion_mask=paths["lesions"])


def test_lesion_slices_on_a_field_in_mm_have_one_scale_whatever_the_pixel_size(
        tmp_path: Path) -> None:
    """`field_mm` 64 on a 32 grid: 2 mm a network pixel on both CTs (1 mm pixels shrunk 2x,
    0.5 mm pixels 4x), so the 8 mm lesion is 4 x 4 network pixels on each. The field is
    centred on the liver's box (columns 0-40 mm): it reaches 12 mm past the slice's left
    edge, where the input is air (z-score of -1000 HU). The whole slice (80 mm on 32 pixels,
    the paper's way) would give 2.5 mm pixels and a 3.2-pixel lesion."""
    config = TrainConfig(task="lesion", image_size=32, z_margin_mm=0.0, field_mm=64.0)
    coarse = load_slices([_field_case(tmp_path, 1.0)], config)
    fine = load_slices([_field_case(tmp_path, 0.5)], config)
    np.testing.assert_array_equal(coarse.targets.numpy(), fine.targets.numpy())
    lesion = coarse.targets.numpy()
    assert lesion.shape == (4, 32, 32)  # the liver's 4 slices
    assert [int(t.sum()) for t in lesion] == [0, 16, 16, 0]
    rows, columns = np.nonzero(lesion[1])
    # field rows 8-72 mm and columns -12..52 mm: the lesion at rows 32-40, columns 16-24 mm
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (12, 15, 14, 17)
    images = coarse.images.float().numpy()
    assert images[:, :, :6].max() < -20  # 12 mm of air past the left edge: 6 pixels
    assert images[:, 8:24, 8].min() > -3  # liver on the slice from column 6 on
    assert preprocessing_settings(config)["field_mm"] == 64.0
