"""Lesion insertion: paint metastasis-like lesions into a real CT's liver, with their mask.

Three real livers are far too few to teach a lesion model, and generated livers lack real
texture. Insertion puts lesions where the model must learn to find them: inside real liver
parenchyma, with the CT's own noise, vessels and partial-volume edges around them.

A lesion is a shape (the generator's irregular shapes, `lesion_shape_mask`, or a real lesion
shape from another patient's mask, `shape_bank`) placed at a random depth inside the liver,
clear of other lesions. Its look keeps the CT's own noise:

    new HU = HU * (1 - soft) + soft * (liver HU - contrast + patches + band * rim + fine noise)

`soft` is the shape blurred by a Gaussian of `edge_sigma_mm` (the partial-volume edge), liver
HU the median of the liver's parenchyma, `contrast` how much darker the lesion is (portal-
venous metastases are hypodense), `band` a blurred ring about 2 mm wide just inside the edge
and `rim` its enhancement (a share of lesions only), `patches` a smooth random field of mean 0
over the lesion (`texture_hu`, off by default: real metastases are patchy), fine noise the CT
minus its 1.5 mm smoothing (vessels do not show through a lesion). The mask is the shape
where it lies inside the liver.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.datasets.synth.lesions import lesion_shape_mask
from livermets.io import Volume
from livermets.types import Spacing

logger = logging.getLogger(__name__)

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class InsertSettings:
    """How many lesions, how large, how they look (mm, HU)."""

    #: Lesions per CT, drawn uniformly from this inclusive range.
    lesions: tuple[int, int] = (1, 4)
    #: Longest diameter of a generated shape, drawn log-uniformly from this range (mm).
    diameter_mm: tuple[float, float] = (6.0, 50.0)
    #: How much darker the lesion's core is than the liver (HU), drawn uniformly.
    contrast_hu: tuple[float, float] = (20.0, 80.0)
    #: Share of lesions with an enhancing rim, and the rim's enhancement range (HU).
    rim_share: float = 0.4
    rim_hu: tuple[float, float] = (10.0, 40.0)
    #: Heterogeneity inside the lesion: SD of a smooth random field added to its level (HU),
    #: drawn uniformly; (0, 0) paints every lesion at one level. Real metastases are patchy.
    texture_hu: tuple[float, float] = (0.0, 0.0)
    #: The field's grain: Gaussian sigma of the smoothing (mm).
    texture_mm: float = 3.0
    #: Width of the partial-volume edge: Gaussian sigma (mm).
    edge_sigma_mm: float = 0.7
    #: When set, each lesion's edge sigma is drawn uniformly from [edge_sigma_mm, this] (mm):
    #: real metastases often have gradual margins of 1-4 mm. None: every edge edge_sigma_mm.
    edge_sigma_max_mm: float | None = None
    #: Share of lesions taken from `shapes` (real shapes) when a bank is given.
    real_shape_share: float = 0.5
    #: Gap kept between lesions (mm).
    gap_mm: float = 3.0


def shape_bank(instance_maps: Sequence[Volume], spacing: Spacing, *,
               min_voxels: int = 8) -> list[Mask]:
    """Every lesion of `instance_maps` (labels 1..K) as a boolean box on a grid of `spacing`
    (z, y, x, mm), resampled by nearest neighbour; lesions under `min_voxels` there dropped."""
    bank: list[Mask] = []
    for volume in instance_maps:
        labels = np.asarray(volume.array)
        zoom = np.asarray(volume.spacing) / np.asarray(spacing)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            lesion = (labels[box] == index).astype(np.uint8)
            resampled = ndimage.zoom(lesion, zoom, order=0, grid_mode=True, mode="grid-constant")
            if int(resampled.sum()) >= min_voxels:  # padded: room for the blurred edge
                bank.append(np.pad(resampled.astype(bool), 2))
    return bank


def insert_lesions(ct: Volume, liver: Volume, rng: np.random.Generator,
                   settings: InsertSettings = InsertSettings(), *,
                   existing: Volume | None = None, shapes: Sequence[Mask] = ()
                   ) -> tuple[Volume, npt.NDArray[np.uint16]]:
    """`ct` (HU) with new lesions inside `liver` (mask on its grid), and the lesion instance
    map (z, y, x): the `existing` lesions keep their labels, new ones follow from max + 1.

    Lesions that do not fit (too little liver deep enough, clear of other lesions) are skipped
    with a log line, so a small liver may get fewer than asked.
    """
    spacing = ct.spacing
    whole_liver = np.asarray(liver.array) > 0
    labels = (np.zeros(ct.shape, np.uint16) if existing is None
              else np.asarray(existing.array).astype(np.uint16))
    hu = np.asarray(ct.array).astype(np.float32)
    found = ndimage.find_objects(whole_liver.astype(np.uint8))
    if not found or found[0] is None:
        return ct.with_array(hu.astype(np.int16)), labels
    region = found[0]  # all the work happens in the liver's bounding box
    inside, region_labels, region_hu = whole_liver[region], labels[region], hu[region]
    depth = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    gap = np.ones(2 * np.maximum(1, np.rint(settings.gap_mm / np.asarray(spacing))).astype(int)
                  + 1, bool)
    occupied = ndimage.binary_dilation(region_labels > 0, structure=gap)
    parenchyma = inside & (region_labels == 0)
    liver_hu = float(np.median(region_hu[parenchyma])) if parenchyma.any() else 0.0
    count = int(rng.integers(settings.lesions[0], settings.lesions[1] + 1))
    next_label = int(labels.max()) + 1
    for _ in range(count):
        shape = _draw_shape(rng, settings, spacing, shapes)
        placed = _place(shape, inside, occupied, depth, spacing, rng)
        if placed is None:
            logger.info("insertion: no room for a %s-voxel lesion; skipped", int(shape.sum()))
            continue
        box, lesion = placed
        level = liver_hu - float(rng.uniform(*settings.contrast_hu))
        rim = float(rng.uniform(*settings.rim_hu)) if rng.random() < settings.rim_share else 0.0
        # Drawn only when asked for, so the default draws the same lesions as before it existed.
        sd_hu = float(rng.uniform(*settings.texture_hu)) if max(settings.texture_hu) > 0 else 0.0
        edge_mm = (settings.edge_sigma_mm if settings.edge_sigma_max_mm is None
                   else float(rng.uniform(settings.edge_sigma_mm, settings.edge_sigma_max_mm)))
        # Painted on the box grown by 3 edge sigmas, so a wide margin is not cut at the box.
        painted_box, painted = _grown(box, lesion, np.ceil(3 * edge_mm / np.asarray(spacing))
                                      .astype(int), inside.shape)
        patches = _texture(rng, painted, spacing, settings.texture_mm, sd_hu)
        region_hu[painted_box] = _look(region_hu[painted_box], painted, spacing, edge_mm,
                                       level + patches, rim)
        region_labels[box][lesion & inside[box]] = next_label
        occupied[box] |= ndimage.binary_dilation(lesion, structure=gap)
        next_label += 1
    low, high = np.iinfo(np.int16).min, np.iinfo(np.int16).max
    out = np.clip(np.rint(hu), low, high).astype(np.int16)
    return ct.with_array(out), labels


def _grown(box: tuple[slice, ...], lesion: Mask, margin: npt.NDArray[np.integer],
           shape: tuple[int, ...]) -> tuple[tuple[slice, ...], Mask]:
    """`box` grown by `margin` voxels per axis (clipped to `shape`) and `lesion` placed in it."""
    grown = tuple(slice(max(0, s.start - int(m)), min(n, s.stop + int(m)))
                  for s, m, n in zip(box, margin, shape, strict=True))
    out = np.zeros(tuple(g.stop - g.start for g in grown), bool)
    out[tuple(slice(s.start - g.start, s.stop - g.start)
              for s, g in zip(box, grown, strict=True))] = lesion
    return grown, out


def _draw_shape(rng: np.random.Generator, settings: InsertSettings, spacing: Spacing,
                shapes: Sequence[Mask]) -> Mask:
    """A real shape from the bank (randomly flipped on each axis) or a generated one."""
    if shapes and rng.random() < settings.real_shape_share:
        shape = shapes[int(rng.integers(len(shapes)))]
        flips = tuple(axis for axis in range(3) if rng.random() < 0.5)
        return np.flip(shape, axis=flips) if flips else shape
    low, high = np.log(settings.diameter_mm[0]), np.log(settings.diameter_mm[1])
    return lesion_shape_mask(rng, float(np.exp(rng.uniform(low, high))), spacing)


def _place(shape: Mask, inside: Mask, occupied: Mask, depth: np.ndarray, spacing: Spacing,
           rng: np.random.Generator) -> tuple[tuple[slice, ...], Mask] | None:
    """A box of `inside`'s grid and the shape cropped to it, centred on a random liver voxel
    deep enough for the shape (`depth`: mm to the liver's edge), with at least 80% of the
    shape inside the liver and none of it on an `occupied` voxel. None after 20 tries."""
    half = np.asarray(shape.shape) // 2
    extent = np.argwhere(shape)
    radius_mm = float(np.min((extent.max(axis=0) - extent.min(axis=0) + 1) / 2
                             * np.asarray(spacing)))
    wanted = min(0.8 * radius_mm, 0.9 * float(depth.max()))
    candidates = np.flatnonzero((depth >= wanted) & ~occupied)
    for _ in range(20):
        if candidates.size == 0:
            return None
        centre = np.array(np.unravel_index(int(rng.choice(candidates)), inside.shape))
        start, stop = centre - half, centre - half + np.asarray(shape.shape)
        lo, hi = np.maximum(start, 0), np.minimum(stop, inside.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        cut = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))
        lesion = shape[cut]
        if (lesion & inside[box]).sum() >= 0.8 * shape.sum() and not (lesion & occupied[box]).any():
            return box, lesion
    return None


def _texture(rng: np.random.Generator, lesion: Mask, spacing: Spacing, grain_mm: float,
             sd_hu: float) -> npt.NDArray[np.float32]:
    """A smooth random field on the box of `lesion` (z, y, x): white noise blurred with a
    Gaussian of `grain_mm`, shifted and scaled to mean 0 and SD `sd_hu` (HU) over the lesion's
    voxels, so its mean level stays where `contrast_hu` put it; zeros when `sd_hu` is 0.

    Clipped to +/- 2.5 `sd_hu`: in a lesion not much wider than the grain the field varies
    little, so the scale is large and the box's corners (which the blurred edge carries into
    the liver) would otherwise reach several times `sd_hu`."""
    if sd_hu <= 0.0 or not lesion.any():
        return np.zeros(lesion.shape, np.float32)
    # "wrap": the blur treats the box as periodic, so its faces are as rough as its middle.
    field = ndimage.gaussian_filter(rng.standard_normal(lesion.shape).astype(np.float32),
                                    grain_mm / np.asarray(spacing), mode="wrap")
    field -= field[lesion].mean()
    spread = float(field[lesion].std())
    scaled = field * (sd_hu / spread if spread > 0 else 0.0)
    return np.clip(scaled, -2.5 * sd_hu, 2.5 * sd_hu).astype(np.float32)


def _look(hu: npt.NDArray[np.float32], lesion: Mask, spacing: Spacing, edge_sigma_mm: float,
          lesion_hu: float | npt.NDArray[np.float32], rim_hu: float
          ) -> npt.NDArray[np.float32]:
    """The box's HU `hu` with the lesion painted in: inside, the lesion's level (`lesion_hu`,
    one value or one per voxel of the box, plus `rim_hu` on a ring about 2 mm wide inside its
    edge) plus the CT's own fine noise (HU minus its 1.5 mm Gaussian smoothing, so vessels do
    not show through); blended into the surroundings by the shape blurred with
    `edge_sigma_mm` (partial volume)."""
    sigma = edge_sigma_mm / np.asarray(spacing)
    pad = [(int(p), int(p)) for p in np.ceil(3 * sigma).astype(int) + 1]
    crop = tuple(slice(p, p + n) for (p, _), n in zip(pad, lesion.shape, strict=True))
    padded = np.pad(lesion, pad)
    soft = ndimage.gaussian_filter(padded.astype(np.float32), sigma)[crop]
    level = np.broadcast_to(np.asarray(lesion_hu, np.float32), lesion.shape).copy()
    if rim_hu:
        ring = np.maximum(1, np.rint(2.0 / np.asarray(spacing))).astype(int)
        core = ndimage.binary_erosion(padded, structure=np.ones(2 * ring + 1, bool))
        level += rim_hu * ndimage.gaussian_filter((padded & ~core).astype(np.float32),
                                                  sigma)[crop]
    noise = hu - ndimage.gaussian_filter(hu, 1.5 / np.asarray(spacing))
    spread = 3.0 * float(np.std(noise))
    painted = level + np.clip(noise, -spread, spread)
    return (hu * (1.0 - soft) + painted * soft).astype(np.float32)
