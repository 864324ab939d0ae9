"""The faster `predict` (issue 23, bar 07) gives the same numbers as the straightforward code.

Each speed-up is checked against what it replaces, on real arrays: the fused convolution +
ReLU against the two-step forward pass (the shipped starter models on IRCADb 1.17 slices, bf16
and fp32), the lesion boxes searched in a box against `ndimage.find_objects` on the whole map,
the projection bounding box against `find_objects`, the SEG's binary check against `np.isin`,
and (issue 23, second pass) the small confident cores' selection against `ndimage.maximum` and
a renumbering by `instance_labels`, the renumbering by volume against its int64 whole-map form,
the candidates' shell and the liver's margin against thresholded distance maps, and the SEG's
overlap check against highdicom's sum over segments. (The SEG itself, written with pydicom, is
compared with highdicom's in tests/io/test_seg_dataset.py.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from livermets.boxes import bounding_box, grow_box, grown_box
from livermets.infer import extent
from livermets.infer.candidates import CandidateChecks, CandidateMeasures, measure_candidate
from livermets.infer.predictor import confident_or_large, near_mask
from livermets.infer.slices import slice_probabilities
from livermets.io import dicom_seg, seg_dataset
from livermets.io.image import read_image
from livermets.labels import instance_labels, label_maxima, relabel_by_volume
from livermets.measure import lesion_boxes, measure_lesions
from livermets.models import create_model
from livermets.models.fused import ConvReLU, fuse_conv_relu, fused_convolutions_available
from livermets.models.saved import load_model
from livermets.models.starter import starter_model_path
from livermets.preprocess import window
from tests.conftest import shared_path

needs_fusion = pytest.mark.skipif(not fused_convolutions_available(),
                                  reason="this PyTorch build has no oneDNN fused convolution")


@needs_fusion
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_fused_unet_equals_two_step_forward(bf16: bool) -> None:
    """Every conv + ReLU pair of the paper's U-Net is fused, and the logits are bit-identical."""
    torch.manual_seed(0)
    model = create_model("unet", base_width=8).eval().to(memory_format=torch.channels_last)
    fused, count = fuse_conv_relu(model)
    assert count == 14  # 7 double convolutions
    assert sum(isinstance(m, ConvReLU) for m in fused.modules()) == 14
    assert not any(isinstance(m, ConvReLU) for m in model.modules())  # the model is untouched
    images = torch.randn(3, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        expected, got = model(images), fused(images)
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)


def test_fusion_leaves_other_layers_alone() -> None:
    """A conv not followed by a ReLU, or with reflect padding, stays as it is."""
    reflect = nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), reflect, nn.ReLU())
    fused, count = fuse_conv_relu(model)
    assert count == 0
    assert [type(m) for m in fused] == [nn.Conv2d, nn.Sigmoid, nn.Conv2d, nn.ReLU]


@needs_fusion
@pytest.mark.parametrize("task", ["liver", "lesion"])
def test_fused_starter_models_equal_on_ircadb_1_17(task: str) -> None:
    """The shipped models' probabilities on real CT slices, bit for bit, in bf16 and fp32."""
    ct = read_image(shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM"))
    hu = ct.array[40:64]  # 24 slices through the liver: three batches of 8
    model = load_model(starter_model_path(task), expected_task=task)
    if task == "liver":
        def normalise(s: Any) -> Any:
            return window(s, (-150.0, 250.0))
    else:
        def normalise(s: Any) -> Any:
            return ((s - 100.0) / 30.0).astype(np.float32)
    for bf16 in (True, False):
        plain = slice_probabilities(model, hu, normalise, bf16=bf16, fuse=False)
        fused = slice_probabilities(model, hu, normalise, bf16=bf16, fuse=True)
        assert np.array_equal(plain, fused), f"{task} bf16={bf16}"


def test_lesion_boxes_within_a_box_equal_find_objects() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 30, 40), dtype=np.uint16)
    labels[5:15, 8:25, 10:35] = rng.integers(0, 6, size=(10, 17, 25))  # label 3 may be absent
    labels[labels == 3] = 0
    within = (slice(4, 16), slice(8, 26), slice(9, 35))
    assert lesion_boxes(labels, within) == list(ndimage.find_objects(labels))
    assert lesion_boxes(labels) == list(ndimage.find_objects(labels))
    spacing = (2.0, 0.8, 0.8)
    assert (measure_lesions(labels, spacing, boxes=lesion_boxes(labels, within))
            == measure_lesions(labels, spacing))


def test_bounding_box_equals_find_objects() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random((7, 9, 11)) > 0.97
        expected = ndimage.find_objects(mask.astype(np.uint8))
        assert bounding_box(mask) == (expected[0] if expected else None)
    assert bounding_box(np.zeros((3, 4, 5), dtype=np.uint8)) is None
    assert bounding_box(np.array([[0, 2, 0], [0, 0, 0]])) == (slice(0, 1), slice(1, 2))


@pytest.mark.parametrize("values", [
    np.array([0, 1, 1], dtype=np.uint8), np.array([0, 2], dtype=np.uint8),
    np.array([0, 1], dtype=np.int16), np.array([-1, 0, 1], dtype=np.int32),
    np.array([0.0, 1.0]), np.array([0.0, 0.5]), np.array([0.0, np.nan]),
    np.array([True, False]), np.zeros(0, dtype=np.int64),
])
def test_binary_check_agrees_with_isin(values: np.ndarray) -> None:
    assert dicom_seg._is_binary(values) == bool(np.isin(values, (0, 1)).all())


def _ref_confident_or_large(labels: np.ndarray, probability: np.ndarray,
                            spacing: tuple[float, float, float], min_volume_mm3: float,
                            min_peak: float) -> np.ndarray:
    """`confident_or_large` before issue 23's second pass: scipy's per-label maximum (a sort of
    the whole array) and a renumbering by `instance_labels`."""
    count = int(labels.max())
    if count == 0:
        return labels
    index = np.arange(1, count + 1)
    volumes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * float(np.prod(spacing))
    peaks = np.asarray(ndimage.maximum(probability, labels, index))
    kept = index[(volumes >= min_volume_mm3) | (peaks >= min_peak)]
    lookup = np.zeros(count + 1, dtype=np.int64)
    lookup[kept] = np.arange(1, len(kept) + 1)
    return instance_labels(lookup[labels], spacing)


def test_label_maxima_equal_scipy_maximum() -> None:
    rng = np.random.default_rng(3)
    values = rng.random((9, 10, 11)).astype(np.float32)
    values.flat[::4] = values.flat[2]  # ties
    labels = rng.integers(0, 9, size=values.shape).astype(np.uint16)
    labels[labels == 5] = 0  # absent: -inf
    ours = label_maxima(values, labels, 8)
    theirs = np.asarray(ndimage.maximum(values, labels, np.arange(1, 9)))
    assert ours.dtype == theirs.dtype == np.float32
    present = np.arange(8) != 4
    assert np.array_equal(ours[present], theirs[present]) and ours[4] == -np.inf


@pytest.mark.parametrize("seed", range(6))
def test_confident_or_large_equals_reference(seed: int) -> None:
    """Random components (ties in size, many of one voxel, over 255 on some seeds), the
    probability on a 1/1024 grid like the pipeline's, thresholds that keep all, some or none."""
    rng = np.random.default_rng(seed)
    shape = (12, 60, 70) if seed < 4 else (20, 120, 130)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=0.8 + 0.3 * (seed % 3))
    labels = instance_labels(noise > 1.2 * noise.std(), (1.0, 1.0, 1.0))
    probability = np.rint(rng.random(shape) * 1024).astype(np.float32) / 1024
    probability = probability[:, 3:-3]  # a view inside a larger array, as the pipeline has
    labels = np.ascontiguousarray(labels[:, 3:-3])
    labels = instance_labels(labels, (1.0, 1.0, 1.0))
    spacing = (2.0, 0.75, 0.75)
    voxel = float(np.prod(spacing))
    assert labels.max() > 3
    for min_volume, min_peak in ((10.0, 0.9), (3 * voxel, 0.999), (0.0, 2.0), (1e9, 2.0),
                                 (1e9, 0.0), (5 * voxel, 0.5)):
        ours = confident_or_large(labels, probability, spacing, min_volume, min_peak)
        theirs = _ref_confident_or_large(labels, probability, spacing, min_volume, min_peak)
        assert ours.dtype == theirs.dtype, (min_volume, min_peak)
        assert np.array_equal(ours, theirs), (min_volume, min_peak)
    many = confident_or_large(labels, probability, spacing, 0.0, 2.0)
    assert many.max() == labels.max() and (many.dtype == np.uint16) == (labels.max() > 255)


def test_confident_or_large_sorts_components_not_in_volume_order() -> None:
    labels = np.zeros((3, 8, 8), dtype=np.uint8)
    labels[0, :2, :2] = 1  # 4 voxels
    labels[2, 4:, 4:] = 2  # 16 voxels: not by decreasing volume
    probability = np.zeros(labels.shape, dtype=np.float32)
    out = confident_or_large(labels, probability, (1.0, 1.0, 1.0), 1.0, 0.5)
    assert np.array_equal(out, _ref_confident_or_large(labels, probability, (1.0, 1.0, 1.0),
                                                       1.0, 0.5))
    assert out[2, 5, 5] == 1 and out[0, 0, 0] == 2


def _ref_relabel_by_volume(labels: np.ndarray, *, min_voxels: int = 1
                           ) -> tuple[np.ndarray, list[int]]:
    """`relabel_by_volume` before issue 23's second pass: int64 counts of the whole map."""
    counts = np.bincount(labels.ravel().astype(np.int64))
    old = [int(k) for k in np.nonzero(counts)[0] if k > 0 and counts[k] >= min_voxels]
    old.sort(key=lambda k: (-int(counts[k]), k))
    dtype = next(d for d in (np.uint8, np.uint16, np.uint32) if len(old) <= np.iinfo(d).max)
    lookup = np.zeros(len(counts), dtype=dtype)
    lookup[old] = np.arange(1, len(old) + 1)
    return lookup[labels], [int(counts[k]) for k in old]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint32])
def test_relabel_by_volume_equals_reference(dtype: type) -> None:
    rng = np.random.default_rng(5)
    labels = np.zeros((6, 40, 50), dtype=dtype)
    top = 250 if dtype in (np.uint8, np.int16) else 400  # over 255 labels: uint16 out
    labels[1:5, 5:35, 5:45] = rng.integers(0, top, size=(4, 30, 40))
    labels[labels % 7 == 3] = 0  # gaps
    view = labels[:, 2:-2, 3:]  # not contiguous
    for array in (labels, view, np.zeros((2, 3, 4), dtype=dtype)):
        for min_voxels in (1, 3, 10**6):
            ours, our_counts = relabel_by_volume(array, min_voxels=min_voxels)
            theirs, their_counts = _ref_relabel_by_volume(array, min_voxels=min_voxels)
            assert ours.dtype == theirs.dtype and our_counts == their_counts
            assert np.array_equal(ours, theirs)
    assert relabel_by_volume(labels)[0].max() > 1
    if np.issubdtype(dtype, np.signedinteger):
        labels[0, 0, 0] = -1
        with pytest.raises(ValueError):
            relabel_by_volume(labels)


def test_instance_labels_of_an_instance_map_in_its_own_dtype(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    labels = np.zeros((3, 9, 9), dtype=np.uint8)
    labels[0, :3, :3] = 4  # 9 voxels
    labels[2, 5:, 5:] = 2  # 16 voxels
    labels[1, 0, 8] = 7  # 1 voxel: dropped
    with caplog.at_level("INFO", logger="livermets.labels"):
        out = instance_labels(labels, (1.0, 1.0, 1.0), min_volume_mm3=2.0)
    assert out.dtype == np.uint8 and labels[1, 0, 8] == 7  # the input is left alone
    assert out[2, 6, 6] == 1 and out[0, 0, 0] == 2 and out[1, 0, 8] == 0
    assert "dropped 1 component(s)" in caplog.text
    floats = instance_labels(labels.astype(np.float32), (1.0, 1.0, 1.0), min_volume_mm3=2.0)
    assert np.array_equal(floats, out)


def _ref_near_mask(mask: np.ndarray, candidates: np.ndarray, spacing: tuple[float, float, float],
                   radius_mm: float) -> np.ndarray:
    """`near_mask` before issue 23's second pass: the distance map on the candidates' box."""
    out = np.zeros(mask.shape, dtype=bool)
    if radius_mm <= 0 or not candidates.any() or not mask.any():
        return out
    box = grown_box(candidates, spacing, radius_mm)
    if not mask[box].any():
        return out
    distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing)
    out[box] = candidates[box] & (distance <= radius_mm)
    return out


def _ref_measure_candidate(labels: np.ndarray, label: int, box: tuple[slice, ...],
                           hu: np.ndarray, liver: np.ndarray, spacing: tuple[float, float, float],
                           checks: CandidateChecks, probability: np.ndarray) -> CandidateMeasures:
    """`measure_candidate` before issue 23's second pass: the shell from a distance map."""
    sigma_mm = checks.fat_smoothing_mm
    grown = grow_box(box, spacing, max(checks.shell_mm, 3 * sigma_mm), labels.shape)
    local = labels[grown]
    inside = local == label
    values = hu[grown].astype(np.float32)
    in_liver = liver[grown] > 0
    outside_fraction = float(np.count_nonzero(inside & ~in_liver)) / float(inside.sum())
    smooth = ndimage.gaussian_filter(values, (0.0, sigma_mm / spacing[1], sigma_mm / spacing[2]))
    fat_fraction = float(np.count_nonzero(smooth[inside] < checks.fat_below_hu)) / float(
        inside.sum())
    median = float(np.median(values[inside]))
    distance = ndimage.distance_transform_edt(~inside, sampling=spacing)
    shell = (distance > 0) & (distance <= checks.shell_mm) & in_liver & (local == 0)
    contrast = float(np.median(values[shell])) - median if shell.any() else None
    peak = float(probability[grown][inside].max())
    return CandidateMeasures(outside_fraction, fat_fraction, contrast, median, peak)


def _lesion_scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """labels (candidates by decreasing volume), hu, liver, probability on a small grid."""
    rng = np.random.default_rng(seed)
    shape = (16, 70, 80)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5)
    labels = instance_labels(noise > 1.6 * noise.std(), (1.0, 1.0, 1.0))
    liver = np.zeros(shape, dtype=np.uint8)
    liver[2:14, 10:60, 5:70] = 1
    hu = rng.normal(110, 25, size=shape).astype(np.int16)
    hu[labels > 0] -= 40
    probability = rng.random(shape).astype(np.float32)
    return labels, hu, liver, probability


@pytest.mark.parametrize("spacing", [(1.6, 0.74, 0.74), (5.0, 0.8, 0.8), (1.0, 1.0, 1.0)])
@pytest.mark.usefixtures("both_distance_ways")
def test_candidate_measures_equal_reference(spacing: tuple[float, float, float]) -> None:
    labels, hu, liver, probability = _lesion_scene(int(spacing[0]))
    checks = CandidateChecks()
    boxes = ndimage.find_objects(labels)
    assert len(boxes) > 5
    with_shell = 0
    for label, box in enumerate(boxes, start=1):
        ours = measure_candidate(labels, label, box, hu, liver, spacing, checks, probability)
        theirs = _ref_measure_candidate(labels, label, box, hu, liver, spacing, checks,
                                        probability)
        assert ours == theirs, label
        with_shell += ours.contrast_hu is not None
    assert with_shell > 3


@pytest.mark.parametrize("radius", [0.0, 2.0, 5.0, 12.0])
@pytest.mark.usefixtures("both_distance_ways")
def test_near_mask_equals_reference(radius: float) -> None:
    labels, _, liver, _ = _lesion_scene(4)
    candidates = (labels > 0) & (liver == 0)
    for spacing in ((1.6, 0.74, 0.74), (5.0, 0.8, 0.8)):
        ours = near_mask(liver > 0, candidates, spacing, radius)
        assert np.array_equal(ours, _ref_near_mask(liver > 0, candidates, spacing, radius))
        if radius == 5.0:  # some candidate voxels near the liver, some not
            assert 0 < ours.sum() < candidates.sum()


def _overlap(masks: np.ndarray) -> bool:
    """`seg_dataset.segments_overlap` of masks stacked (segments, z, y, x)."""
    return seg_dataset.segments_overlap(list(masks), masks.any(axis=(2, 3)))


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_segments_overlap_equals_the_sum_over_segments(segments: int) -> None:
    """The SEG's overlap check (slices where both segments have foreground) against
    highdicom's: the stack summed over its segments."""
    rng = np.random.default_rng(segments)
    for density in (0.0, 0.001, 0.3):
        masks = (rng.random((segments, 5, 6, 7)) < density).astype(np.uint8)
        assert _overlap(masks) == bool(masks.sum(axis=0).max() > 1)
    masks = np.zeros((segments, 2, 3, 4), dtype=np.uint8)
    masks[:, 1, 2, 3] = 1  # one shared voxel
    assert _overlap(masks) == (segments > 1)
    for k in range(1, segments):  # the same slice, another voxel for each segment
        masks[k, 1, 2, 3] = 0
        masks[k, 1, 0, k] = 1
    assert not _overlap(masks)


def _ref_grow(labels: np.ndarray, label: int, box: tuple[slice, ...], hu: np.ndarray,
              allowed: np.ndarray, spacing: tuple[float, float, float],
              settings: extent.ExtentSettings) -> bool:
    """`extent._grow` before issue 23's second pass: from the lesion's distance map."""
    window = grow_box(box, spacing, settings.reach_mm + settings.ring_mm, labels.shape)
    local = labels[window]
    inside = local == label
    values = ndimage.gaussian_filter(hu[window].astype(np.float32),
                                     [settings.smoothing_mm / s for s in spacing])
    distance = ndimage.distance_transform_edt(~inside, sampling=spacing)
    free = allowed[window] & (local == 0)
    ring = free & (distance > settings.reach_mm)
    if not ring.any():
        return False
    lesion_hu = float(np.median(values[inside]))
    liver_hu = float(np.median(values[ring]))
    if liver_hu - lesion_hu < settings.min_contrast_hu:
        return False
    cut = lesion_hu + settings.cut_fraction * (liver_hu - lesion_hu)
    region = (free & (distance <= settings.reach_mm) & (values < cut)
              & (values > settings.soft_tissue_above_hu))
    added = extent.grown_in_plane(inside, region | inside) & ~inside
    local[added] = label
    return bool(added.any()) and float(distance[added].max()) > settings.reach_mm - max(spacing)


def _ref_recover_extent(labels: np.ndarray, hu: np.ndarray, allowed: np.ndarray,
                        spacing: tuple[float, float, float],
                        settings: extent.ExtentSettings) -> np.ndarray:
    """`recover_extent` before issue 23's second pass: the box found again after every round,
    the growth from distance maps."""
    out = labels.copy()
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        for _ in range(settings.rounds):
            if box is None or not _ref_grow(out, label, box, hu, allowed, spacing, settings):
                break
            box = ndimage.find_objects((out == label).astype(np.uint8))[0]
    return out


@pytest.mark.parametrize("rounds", [1, 2, 3])
@pytest.mark.usefixtures("both_distance_ways")
def test_recover_extent_equals_reference(rounds: int) -> None:
    """A dark lesion larger than the reach, marked only at its core, grows over rounds."""
    shape = (12, 90, 90)
    zz, yy, xx = np.indices(shape)
    radius = np.sqrt(((zz - 6) * 2.0) ** 2 + (yy - 45.0) ** 2 + (xx - 45.0) ** 2)
    hu = np.where(radius < 14, 50, 120).astype(np.int16)
    hu += np.random.default_rng(rounds).normal(0, 3, size=shape).astype(np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(radius < 4)] = 1
    labels[2:4, 5:8, 80:84] = 2  # a small dark spot elsewhere
    hu[2:4, 5:8, 80:84] = 40
    settings = extent.ExtentSettings(reach_mm=8.0, ring_mm=6.0, rounds=rounds)
    allowed = np.ones(shape, dtype=bool)
    ours = extent.recover_extent(labels, hu, allowed, (2.0, 1.0, 1.0), settings)
    assert np.array_equal(ours, _ref_recover_extent(labels, hu, allowed, (2.0, 1.0, 1.0),
                                                     settings))
    assert (ours == 1).sum() > (labels == 1).sum() * 10
