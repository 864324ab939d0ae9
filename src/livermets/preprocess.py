"""Pre-processing shared by training and inference: the network grid, liver z-score, windowing.

- Network grid: each axial slice (rows x columns) is padded, centred, to a square (so anatomy
  keeps its aspect ratio; a 512x512 CT is not padded) and resized to `size` x `size` (the
  paper: 256). Images use bilinear interpolation with anti-aliasing when shrinking; masks and
  label maps use nearest neighbour only ("nearest-exact": pixel centres map to pixel centres).
  `PlaneMapping.to_ct` inverts the mapping back onto the CT's exact grid.
- Liver z-score (the paper): (HU - mean) / std, with the mean and standard deviation of the HU
  inside the whole liver volume of that CT.
- The liver model's input: HU clipped to the abdominal window [-150, 250] HU (level 50, width
  400) and scaled to [0, 1].
- Crop to the liver's z-range plus a margin in mm, for the lesion model; optionally also
  in-plane to the liver's bounding box plus a margin (`liver_plane_box`), so that small
  lesions cover more network pixels than on the whole slice (not the paper's choice), or to a
  square of a fixed size in mm round the liver (`liver_field_box`, physical scale: a network
  pixel is the same number of mm on every CT, as nnU-Net resamples to one spacing; the paper
  resizes every slice whatever its field of view, so a lesion's size in pixels varies 1.7x
  between CTs). `take_plane` reads such a box, padding with air where it reaches past the
  slice.
- Optional 2.5D input for the lesion model (not the paper's): each slice with its neighbours
  `context_mm` above and below as three channels (`context_steps`, `context_indices`), so
  the network can tell a vessel, which continues through the slices, from a lesion.

Arrays are numpy (z, y, x); float work is float32 (no float64 copies of whole volumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from livermets.boxes import EMPTY_LIVER, bounding_box, grown_box
from livermets.errors import InputError
from livermets.types import Spacing

NETWORK_SIZE = 256
#: The liver model's input window in HU (abdominal soft tissue: level 50, width 400).
LIVER_WINDOW_HU: tuple[float, float] = (-150.0, 250.0)
#: A liver mask smaller than this (mL) cannot give a meaningful z-score: a real liver is
#: 1000-2500 mL, so a smaller mask means a failed or wrong liver segmentation.
MIN_LIVER_ML = 50.0
#: The liver's HU standard deviation must be at least this (HU), else the CT is constant there.
MIN_LIVER_STD_HU = 1.0
#: Padding value for images outside the field of view, in HU (air).
AIR_HU = -1000.0

Kind = Literal["image", "mask"]


@dataclass(frozen=True)
class PlaneMapping:
    """The in-plane mapping between a CT slice (rows x columns) and the network grid (size^2).

    The slice is padded to a centred square of side max(rows, columns), then resized to
    size x size. Shapes: CT side (z, rows, columns), network side (z, size, size).
    """

    rows: int
    columns: int
    size: int = NETWORK_SIZE

    @property
    def side(self) -> int:
        """Side of the padded square, in CT pixels."""
        return max(self.rows, self.columns)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding in CT pixels."""
        extra_x, extra_y = self.side - self.columns, self.side - self.rows
        return (extra_x // 2, extra_x - extra_x // 2, extra_y // 2, extra_y - extra_y // 2)

    def to_network(self, slices: npt.NDArray[Any], *, kind: Kind,
                   pad_value: float = 0.0) -> npt.NDArray[Any]:
        """CT slices (z, rows, columns) -> network grid (z, size, size).

        Images come back float32 (bilinear, anti-aliased when shrinking); masks keep their
        integer dtype (nearest). `pad_value` fills the padding (images; masks pad with 0).
        """
        _check_plane(slices, (self.rows, self.columns))
        tensor = torch.from_numpy(np.ascontiguousarray(slices)).unsqueeze(1)
        tensor = tensor.float() if kind == "image" else tensor.to(torch.float32)
        if self.padding != (0, 0, 0, 0):
            tensor = F.pad(tensor, self.padding, value=pad_value if kind == "image" else 0.0)
        out = _resize(tensor, self.size, kind)
        return _as_kind(out[:, 0], kind, slices.dtype)

    def to_ct(self, slices: npt.NDArray[Any], *, kind: Kind) -> npt.NDArray[Any]:
        """Network grid (z, size, size) -> CT slices (z, rows, columns), padding removed.

        Use kind="image" for probabilities (bilinear, float32) and kind="mask" for labels.
        """
        _check_plane(slices, (self.size, self.size))
        tensor = torch.from_numpy(np.ascontiguousarray(slices)).unsqueeze(1).to(torch.float32)
        out = _resize(tensor, self.side, kind)[:, 0]
        left, _, top, _ = self.padding
        out = out[:, top : top + self.rows, left : left + self.columns]
        return _as_kind(out, kind, slices.dtype)


def _check_plane(slices: npt.NDArray[Any], plane: tuple[int, int]) -> None:
    if slices.ndim != 3 or tuple(slices.shape[1:]) != plane:
        raise ValueError(f"expected slices of shape (z, {plane[0]}, {plane[1]}), "
                         f"got {tuple(slices.shape)}")


def _resize(tensor: torch.Tensor, size: int, kind: Kind) -> torch.Tensor:
    if tensor.shape[-1] == size and tensor.shape[-2] == size:
        return tensor
    if kind == "mask":
        return F.interpolate(tensor, size=(size, size), mode="nearest-exact")
    shrinking = size < tensor.shape[-1]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrinking)


def _as_kind(tensor: torch.Tensor, kind: Kind, dtype: np.dtype) -> npt.NDArray[Any]:
    array = tensor.numpy()
    if kind == "image":
        return array.astype(np.float32, copy=False)
    return np.rint(array).astype(dtype, copy=False)


@dataclass(frozen=True)
class LiverStatistics:
    """HU statistics inside a liver mask: the paper's z-score parameters."""

    mean_hu: float
    std_hu: float
    volume_ml: float


def liver_statistics(image: npt.NDArray[Any], liver_mask: npt.NDArray[Any],
                     spacing: Spacing) -> LiverStatistics:
    """Mean and standard deviation (HU) of `image` inside `liver_mask` (> 0), shape (z, y, x).

    Raises `InputError` when the mask is empty or under `MIN_LIVER_ML` mL (spacing (z, y, x)
    mm), or the liver's HU are constant: the z-score would divide by (nearly) zero.
    """
    if image.shape != liver_mask.shape:
        raise ValueError(f"image {image.shape} and liver mask {liver_mask.shape} differ in shape")
    inside = liver_mask > 0
    voxels = int(np.count_nonzero(inside))
    volume_ml = voxels * float(np.prod(spacing)) / 1000.0
    if volume_ml < MIN_LIVER_ML:
        what = "empty" if voxels == 0 else f"only {volume_ml:.1f} mL"
        raise InputError(f"the liver mask is {what} (a liver is 1000-2500 mL; at least "
                         f"{MIN_LIVER_ML:.0f} mL needed for the liver z-score); check the liver "
                         "mask or the liver model")
    values = image[inside].astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    if not math.isfinite(std) or std < MIN_LIVER_STD_HU:
        raise InputError(f"the CT is constant inside the liver (standard deviation {std:.3g} "
                         "HU); the z-score needs a real CT")
    return LiverStatistics(mean, std, volume_ml)


def liver_zscore(image: npt.NDArray[Any], stats: LiverStatistics) -> npt.NDArray[np.float32]:
    """The paper's standardisation: (HU - liver mean) / liver standard deviation, float32."""
    out = np.asarray(image, dtype=np.float32) - np.float32(stats.mean_hu)
    out /= np.float32(stats.std_hu)
    return out


def window(image: npt.NDArray[Any],
           window_hu: tuple[float, float] = LIVER_WINDOW_HU) -> npt.NDArray[np.float32]:
    """HU clipped to `window_hu` (low, high), scaled to [0, 1], float32: the liver model input."""
    low, high = window_hu
    if not high > low:
        raise ValueError(f"window must be (low, high) with high > low, got {window_hu}")
    out = np.clip(np.asarray(image, dtype=np.float32), low, high)
    out -= np.float32(low)
    out /= np.float32(high - low)
    return out


def liver_z_range(liver_mask: npt.NDArray[Any], spacing: Spacing, *,
                  margin_mm: float = 10.0) -> tuple[int, int]:
    """Slice range [start, stop) covering the liver (mask > 0) plus `margin_mm` on each side.

    Raises `InputError` for an empty mask.
    """
    slices = np.flatnonzero(np.any(liver_mask > 0, axis=(1, 2)))
    if slices.size == 0:
        raise InputError(EMPTY_LIVER)
    margin = math.ceil(margin_mm / spacing[0]) if margin_mm > 0 else 0
    return max(0, int(slices[0]) - margin), min(liver_mask.shape[0], int(slices[-1]) + 1 + margin)


def liver_plane_box(liver_mask: npt.NDArray[Any], spacing: Spacing,
                    margin_mm: float | None) -> tuple[slice, slice]:
    """The in-plane (rows, columns) box the lesion model sees on every slice.

    `margin_mm` None: the whole slice (the paper). Otherwise the bounding box of the liver
    (mask > 0, z, y, x) over all its slices, grown by `margin_mm` (rounded up to whole pixels
    of `spacing`, mm) on each side and clipped to the slice. Raises `InputError` for an empty
    mask or a negative margin.
    """
    if margin_mm is None:
        return slice(0, liver_mask.shape[1]), slice(0, liver_mask.shape[2])
    if margin_mm < 0:
        raise InputError(f"the crop margin must be >= 0 mm, got {margin_mm}")
    footprint = np.any(liver_mask > 0, axis=0)[np.newaxis]
    _, rows, columns = grown_box(footprint, spacing, margin_mm)
    return rows, columns


#: `liver_field_box`: the least room between the liver's in-plane box and the field's edge (mm).
FIELD_MARGIN_MM = 10.0


def liver_field_box(liver_mask: npt.NDArray[Any], spacing: Spacing,
                    field_mm: float) -> tuple[slice, slice]:
    """A square field of `field_mm` mm a side, centred on the liver's in-plane bounding box
    (mask > 0, z, y, x, over all its slices): (rows, columns) of CT pixels of `spacing` (mm).

    The field grows, still square in mm, where the liver's box plus `FIELD_MARGIN_MM` on each
    side would not fit in it (a very large liver sees a coarser grid rather than lose its
    edge). The slices may reach past the slice's edges (start < 0, stop > its size): read
    them with `take_plane`. Raises `InputError` for an empty mask or a field under 1 mm.
    """
    if not field_mm >= 1:
        raise InputError(f"the lesion field must be at least 1 mm, got {field_mm}")
    box = bounding_box(np.any(np.asarray(liver_mask) > 0, axis=0))
    if box is None:
        raise InputError(EMPTY_LIVER)
    pixel_mm = spacing[1:]
    side_mm = max(field_mm, *((b.stop - b.start) * s + 2 * FIELD_MARGIN_MM
                              for b, s in zip(box, pixel_mm, strict=True)))
    rows, columns = (_centred(b, round(side_mm / s)) for b, s in zip(box, pixel_mm, strict=True))
    return rows, columns


def _centred(span: slice, side: int) -> slice:
    """A run of `side` pixels with the same centre as `span` (to half a pixel)."""
    start = (span.start + span.stop - side) // 2
    return slice(start, start + side)


def take_plane(volume: npt.NDArray[Any], rows: slice, columns: slice,
               fill: float) -> npt.NDArray[Any]:
    """`volume[:, rows, columns]` (z, y, x) where `rows` and `columns` (steps of 1) may reach
    past the slice: pixels outside it are `fill` (e.g. `AIR_HU`, or 0 for masks). A view of
    `volume` when the box lies inside the slice, else a new array of its dtype."""
    depth, height, width = np.shape(volume)
    inside, within = plane_overlap(rows, columns, (height, width))
    if inside == (rows, columns):
        return volume[:, rows, columns]
    out = np.full((depth, rows.stop - rows.start, columns.stop - columns.start), fill,
                  dtype=np.asarray(volume).dtype)
    out[(slice(None), *within)] = volume[(slice(None), *inside)]
    return out


def plane_overlap(rows: slice, columns: slice, plane: tuple[int, int]
                  ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where a box (`rows`, `columns`, possibly reaching past a slice of `plane` = (height,
    width) pixels) overlaps the slice: (the overlap in slice coordinates, the same pixels in the
    box's own coordinates)."""
    inside = tuple(slice(max(0, b.start), min(n, b.stop))
                   for b, n in zip((rows, columns), plane, strict=True))
    within = tuple(slice(i.start - b.start, i.stop - b.start)
                   for i, b in zip(inside, (rows, columns), strict=True))
    return (inside[0], inside[1]), (within[0], within[1])


def lesion_plane_box(liver_mask: npt.NDArray[Any], spacing: Spacing,
                     preprocessing: dict[str, Any]) -> tuple[slice, slice]:
    """The in-plane box a lesion model sees, from its `preprocessing` settings (as stored in
    model.pt or `trainer.preprocessing_settings`): `field_mm` (`liver_field_box`),
    `crop_margin_mm` (`liver_plane_box`), else the whole slice (the paper)."""
    field_mm = preprocessing.get("field_mm")
    if field_mm is not None:
        return liver_field_box(liver_mask, spacing, float(field_mm))
    return liver_plane_box(liver_mask, spacing, preprocessing.get("crop_margin_mm"))


def context_steps(context_mm: float | None, slice_spacing_mm: float) -> int:
    """Slices between a lesion model's centre slice and each neighbour it sees (2.5D input):
    `context_mm` (the model's setting) in whole slices of `slice_spacing_mm`, at least 1;
    0 when the model sees one slice (`context_mm` None, the paper)."""
    if context_mm is None:
        return 0
    return max(1, round(context_mm / slice_spacing_mm))


def context_indices(centres: npt.NDArray[np.integer], steps: int,
                    depth: int) -> npt.NDArray[np.intp]:
    """(n, 3) slice indices [z - steps, z, z + steps] of each centre z, clipped to [0, depth)
    (the first and last slices repeat at the volume's ends); (n, 1) [z] when `steps` is 0."""
    z = np.asarray(centres, dtype=np.intp)[:, np.newaxis]
    if steps == 0:
        return z
    offsets = np.array([-steps, 0, steps], dtype=np.intp)
    return np.clip(z + offsets, 0, depth - 1)
