"""2D training slices from a manifest: loading, patient-level split, sampling, augmentation.

Each CT is read once, mapped to the network grid and normalised as inference will do it:
- liver task: input = HU in the abdominal window scaled to [0, 1]; target = liver mask; all
  slices.
- lesion task: input = the paper's liver z-score (reference liver mask); target = lesion mask
  > 0; only slices within the liver's z-range plus `z_margin_mm`, and with `crop_margin_mm`
  only the liver's in-plane bounding box plus that margin (`liver_plane_box`); with `field_mm`
  a square of that many mm round the liver (`liver_field_box`, padded with air past the slice).
Slices are kept in memory as float16 inputs and uint8 targets, shape (n, S, S).

Manifest `split` values: `training`/`train` or empty -> the training pool; `validation`/`val`
-> validation; any other value (valB, valTP1, test, ...) is not used for training. Without
validation rows, `val_fraction` of the training pool's patients (at least one when there are
two or more) is held out, seeded. A patient's CTs (all time points) stay on one side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from livermets.config import TrainConfig
from livermets.errors import InputError
from livermets.io import Volume, read_image
from livermets.io.image import check_ct
from livermets.io.manifest import ManifestRow
from livermets.preprocess import (
    AIR_HU,
    PlaneMapping,
    context_indices,
    context_steps,
    lesion_plane_box,
    liver_statistics,
    liver_z_range,
    liver_zscore,
    take_plane,
    window,
)

logger = logging.getLogger(__name__)

TRAINING_SPLITS = frozenset({"", "training", "train"})
VALIDATION_SPLITS = frozenset({"validation", "val"})


@dataclass(frozen=True)
class SliceSet:
    """Network-ready slices: `images` (n, S, S) float16, or (n, 3, S, S) for 2.5D input
    (`context_mm`: each slice with its neighbours), `targets` (n, S, S) uint8 in {0, 1},
    `case` (n,) the index into `cases` of each slice's CT, `positive` (n,) target present,
    `centers` the manifest `center` of each of `cases` (same order)."""

    images: torch.Tensor
    targets: torch.Tensor
    case: np.ndarray
    positive: np.ndarray
    cases: tuple[str, ...]
    centers: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])


def split_patients(rows: Sequence[ManifestRow], config: TrainConfig
                   ) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """(training rows, validation rows), split by patient (see the module docstring)."""
    pool = [r for r in rows if r.split.lower() in TRAINING_SPLITS]
    validation = [r for r in rows if r.split.lower() in VALIDATION_SPLITS]
    if not pool:
        raise InputError("the manifest has no training rows (split 'training' or empty)")
    if not validation and config.val_fraction > 0:
        patients = sorted({r.patient_id for r in pool})
        if len(patients) >= 2:
            count = min(len(patients) - 1, max(1, round(config.val_fraction * len(patients))))
            order = np.random.default_rng(config.seed).permutation(len(patients))
            held = {patients[i] for i in order[:count]}
            validation = [r for r in pool if r.patient_id in held]
            pool = [r for r in pool if r.patient_id not in held]
    overlap = {r.patient_id for r in pool} & {r.patient_id for r in validation}
    if overlap:
        raise InputError(f"patient(s) {', '.join(sorted(overlap))} are in both the training "
                         "and the validation split; put each patient's CTs on one side")
    return pool, validation


def load_slices(rows: Sequence[ManifestRow], config: TrainConfig) -> SliceSet:
    """Read, normalise and map every row's CT and target to the network grid."""
    images, targets, case_index = [], [], []
    for index, row in enumerate(rows):
        image, target = _case_slices(row, config)
        images.append(torch.from_numpy(image).to(torch.float16))
        targets.append(torch.from_numpy(target))
        case_index.append(np.full(len(image), index))
    if not images:
        raise InputError("no CT to train on")
    target_tensor = torch.cat(targets)
    return SliceSet(
        images=torch.cat(images),
        targets=target_tensor,
        case=np.concatenate(case_index),
        positive=target_tensor.flatten(1).any(dim=1).numpy(),
        cases=tuple(r.case_id for r in rows),
        centers=tuple(r.center for r in rows),
    )


def _case_slices(row: ManifestRow, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    if row.liver_mask is None:
        raise InputError(f"{row.where}: training needs a liver_mask (the {config.task} task "
                         "uses it for " + ("its target" if config.task == "liver" else
                                           "the liver z-score") + ")")
    ct = read_image(row.image)
    check_ct(ct, f"{row.where}: image {row.image}")
    liver = read_image(row.liver_mask)
    _same_grid(row, ct, liver, "liver_mask")
    if config.task == "liver":
        mapping = PlaneMapping(ct.shape[1], ct.shape[2], config.image_size)
        hu = mapping.to_network(ct.array, kind="image", pad_value=AIR_HU)
        target = liver.array > 0
        return window(hu), mapping.to_network(target.astype(np.uint8), kind="mask")
    if row.lesion_mask is None:
        raise InputError(f"{row.where}: the lesion task needs a lesion_mask")
    lesions = read_image(row.lesion_mask)
    _same_grid(row, ct, lesions, "lesion_mask")
    stats = liver_statistics(ct.array, liver.array, ct.spacing)
    start, stop = liver_z_range(liver.array, ct.spacing, margin_mm=config.z_margin_mm)
    rows, columns = lesion_plane_box(liver.array, ct.spacing, {
        "crop_margin_mm": config.crop_margin_mm, "field_mm": config.field_mm})
    mapping = PlaneMapping(rows.stop - rows.start, columns.stop - columns.start,
                           config.image_size)
    steps = context_steps(config.context_mm, ct.spacing[0])
    low, high = max(0, start - steps), min(ct.shape[0], stop + steps)
    hu = mapping.to_network(take_plane(ct.array[low:high], rows, columns, AIR_HU),
                            kind="image", pad_value=AIR_HU)
    normalised = liver_zscore(hu, stats)
    target = (take_plane(lesions.array[start:stop], rows, columns, 0) > 0).astype(np.uint8)
    if steps:  # (n, 3, S, S): each slice with its neighbours `steps` slices away
        images = normalised[context_indices(np.arange(start, stop), steps, ct.shape[0]) - low]
    else:
        images = normalised[start - low : stop - low]
    return images, mapping.to_network(target, kind="mask")


def _same_grid(row: ManifestRow, ct: Volume, mask: Volume, column: str) -> None:
    difference = ct.geometry.difference(mask.geometry)
    if difference is not None:
        raise InputError(f"{row.where}: {column} is not on the image's grid ({difference})")


def epoch_indices(slices: SliceSet, config: TrainConfig, generator: torch.Generator
                  ) -> torch.Tensor:
    """The slice indices of one training epoch, in order (seeded by `generator`).

    `slices_per_epoch` slices (default: all). With `positive_fraction` f, round(f * n) are
    drawn with replacement from slices containing the target and the rest from the others.
    With `balance_centers`, draws (with replacement) give every manifest `center` the same
    share of each group (positive, negative, or all), however many slices it holds.
    """
    n = config.slices_per_epoch or len(slices)
    fraction = config.positive_fraction
    positives = torch.from_numpy(np.flatnonzero(slices.positive))
    negatives = torch.from_numpy(np.flatnonzero(~slices.positive))
    if fraction is None or len(positives) == 0 or len(negatives) == 0:
        if config.balance_centers:
            return _draw(torch.arange(len(slices)), n, slices, generator, balance=True)
        if n == len(slices):
            return torch.randperm(len(slices), generator=generator)
        return torch.randint(len(slices), (n,), generator=generator)
    n_pos = round(fraction * n)
    chosen = torch.cat([
        _draw(positives, n_pos, slices, generator, balance=config.balance_centers),
        _draw(negatives, n - n_pos, slices, generator, balance=config.balance_centers),
    ])
    return chosen[torch.randperm(n, generator=generator)]


def _draw(pool: torch.Tensor, count: int, slices: SliceSet, generator: torch.Generator, *,
          balance: bool) -> torch.Tensor:
    """`count` indices from `pool` with replacement: uniformly, or with equal total weight per
    centre (each slice weighted 1 / the number of its centre's slices in the pool)."""
    if not balance or count == 0:
        return pool[torch.randint(len(pool), (count,), generator=generator)]
    case_centers = np.array(slices.centers or [""] * len(slices.cases))
    centers = case_centers[slices.case[pool.numpy()]]
    _, inverse, counts = np.unique(centers, return_inverse=True, return_counts=True)
    weights = torch.from_numpy(1.0 / counts[inverse])
    return pool[torch.multinomial(weights, count, replacement=True, generator=generator)]


def with_channels(images: torch.Tensor) -> torch.Tensor:
    """A batch of `SliceSet.images` as network input (B, C, S, S): one channel added to
    single slices (B, S, S); 2.5D stacks (B, 3, S, S) as they are."""
    return images.unsqueeze(1) if images.dim() == 3 else images


def augment(images: torch.Tensor, targets: torch.Tensor, config: TrainConfig,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, rotations, scaling, intensity jitter, blur and noise of a batch of images
    (B, C, S, S) and their targets (B, 1, S, S).

    Images are resampled bilinearly (edges replicated), targets by nearest neighbour only, so
    they stay binary. Rotation within +/- `rotate_degrees`, scale within 1 +/- `scale_range`,
    intensity x(1 + a) + b with a, b within +/- `intensity_jitter` (normalised units), then a
    Gaussian blur of sigma within [0, `blur_sigma_px`] pixels and Gaussian noise of SD within
    [0, `noise_std`] (normalised units), each drawn per image (all channels of a 2.5D stack
    alike). Targets are not blurred.
    """
    batch = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    angle = uniform(-1, 1) * math.radians(config.rotate_degrees)
    scale = 1 + uniform(-1, 1) * config.scale_range
    flip = torch.where(torch.rand(batch, generator=generator) < config.flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(batch)], dim=1),
                         torch.stack([sin * flip, cos, torch.zeros(batch)], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    targets = F.grid_sample(targets, grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)
    gain = 1 + uniform(-1, 1) * config.intensity_jitter
    shift = uniform(-1, 1) * config.intensity_jitter
    images = images * gain.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
    if config.blur_sigma_px > 0:
        images = gaussian_blur(images, uniform(0, 1) * config.blur_sigma_px)
    if config.noise_std > 0:
        sd = uniform(0, 1) * config.noise_std
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        images = images + noise * sd.view(-1, 1, 1, 1).to(images.dtype)
    return images, targets


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, H, W) blurred by a separable Gaussian of its own sigma (B,), in
    pixels (0: unchanged; every channel of an image alike), truncated at 3 sigma, edges
    replicated; the mean is kept."""
    batch = images.shape[0] * images.shape[1]
    sigmas = sigmas.repeat_interleave(images.shape[1])
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    safe = sigmas.clamp_min(1e-3).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets.view(1, -1) / safe) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(images.dtype)  # (B, K)
    stacked = images.reshape(1, batch, *images.shape[2:])  # one group per image
    padded = F.pad(stacked, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernels.view(batch, 1, 1, -1), groups=batch)
    both = F.conv2d(rows, kernels.view(batch, 1, -1, 1), groups=batch)
    return both.reshape(images.shape)
