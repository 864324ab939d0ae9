"""Per-lesion geometry shared by inference, evaluation, tracking and the generated cohort.

Pure numpy/scipy. Masks are arrays in (z, y, x) order; any non-zero voxel belongs to the
lesion. `spacing` is the voxel size in mm in the same (z, y, x) order.

Diameters follow RECIST 1.1 as a reader measures them on an axial slice, edge to edge: each
voxel is the rectangle of its in-plane footprint (`spacing[2]` mm wide in x, `spacing[1]` mm
high in y), and a slice's lesion is the union of those rectangles. The longest diameter on a
slice is the largest distance between two points of that union, i.e. between two vertices of
the convex hull of the voxels' corner points. One voxel therefore measures its own diagonal,
sqrt(dx^2 + dy^2). The perpendicular diameter is the extent (caliper width) of the same hull
across the long axis; for a digital disc or ellipse this is the short axis.

An empty mask has no diameter: the diameter functions raise `ValueError` (a vanished lesion
is a caller's decision, usually counted as 0 mm in RECIST sums); the volume of an empty mask
is 0 mL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull

from livermets.types import Spacing


@dataclass(frozen=True)
class LesionMeasurement:
    """The geometry of one lesion of an instance label map.

    `centroid_index` is (z, y, x) in voxel index units (fractional); `centroid_mm` is the same
    point in mm from the centre of voxel [0, 0, 0] along the array axes (z, y, x); turn it into
    patient LPS coordinates with `Geometry.index_to_physical(centroid_index)`.
    """

    label: int
    voxels: int
    volume_ml: float
    longest_diameter_mm: float
    perpendicular_diameter_mm: float
    diameter_slice: int
    centroid_index: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]


def _check(mask: npt.ArrayLike, spacing: Sequence[float], ndim: int) -> npt.NDArray[np.bool_]:
    array = np.asarray(mask)
    if array.ndim != ndim:
        raise ValueError(f"mask must be {ndim}D, got shape {array.shape}")
    if len(spacing) != ndim or any(not (float(s) > 0 and np.isfinite(s)) for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive mm values, got {tuple(spacing)}")
    return np.asarray(array != 0, dtype=np.bool_)


def lesion_volume_ml(mask: npt.ArrayLike, spacing: Spacing) -> float:
    """Volume in mL of the non-zero voxels of a (z, y, x) mask; 0.0 for an empty mask."""
    inside = _check(mask, spacing, 3)
    return float(np.count_nonzero(inside)) * float(np.prod(spacing)) / 1000.0


def centroid_index(mask: npt.ArrayLike) -> tuple[float, float, float]:
    """Centre of mass (z, y, x) of the non-zero voxels, in voxel index units.

    Raises `ValueError` for an empty mask.
    """
    inside = _check(mask, (1.0, 1.0, 1.0), 3)
    points = np.nonzero(inside)
    if points[0].size == 0:
        raise ValueError("the mask is empty: an absent lesion has no centroid")
    return (float(points[0].mean()), float(points[1].mean()), float(points[2].mean()))


def centroid_mm(mask: npt.ArrayLike, spacing: Spacing) -> tuple[float, float, float]:
    """Centre of mass (z, y, x) in mm from the centre of voxel [0, 0, 0], along the array axes.

    Raises `ValueError` for an empty mask.
    """
    _check(mask, spacing, 3)
    index = centroid_index(mask)
    return (index[0] * spacing[0], index[1] * spacing[1], index[2] * spacing[2])


def _hull_points_mm(inside: npt.NDArray[np.bool_], spacing_yx: tuple[float, float]
                    ) -> npt.NDArray[np.float64]:
    """Corner points (y, x) mm whose convex hull is that of the voxel rectangles of a 2D mask.

    Only the outermost voxel of each row matters: its four corners, one row (y) at a time.
    """
    rows = np.flatnonzero(inside.any(axis=1))
    sub = inside[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    y0, y1 = rows - 0.5, rows + 0.5
    x0, x1 = first - 0.5, last + 0.5
    ys = np.concatenate([y0, y1, y0, y1])
    xs = np.concatenate([x0, x0, x1, x1])
    return np.stack([ys * spacing_yx[0], xs * spacing_yx[1]], axis=1)


def longest_diameter_2d(mask: npt.ArrayLike, spacing_yx: tuple[float, float]
                        ) -> tuple[float, float]:
    """Longest and perpendicular diameters (mm) of a 2D (y, x) mask, edge to edge.

    The longest diameter is the largest distance between two corners of the mask's voxels
    (`spacing_yx` mm per voxel along y and x); the perpendicular diameter is the extent of the
    voxels across that direction. Ties between equally long diameters take the first pair in
    hull order. Raises `ValueError` for an empty mask.
    """
    inside = _check(mask, spacing_yx, 2)
    if not inside.any():
        raise ValueError("the mask is empty: an absent lesion has no diameter")
    points = _hull_points_mm(inside, (float(spacing_yx[0]), float(spacing_yx[1])))
    hull = points[ConvexHull(points).vertices]
    delta = hull[:, None, :] - hull[None, :, :]
    distance = np.sqrt((delta**2).sum(axis=-1))
    i, j = np.unravel_index(int(np.argmax(distance)), distance.shape)
    longest = float(distance[i, j])
    axis = (hull[j] - hull[i]) / longest
    normal = np.array([-axis[1], axis[0]])
    across = hull @ normal
    return longest, float(across.max() - across.min())


def longest_axial_diameter_mm(mask: npt.ArrayLike, spacing: Spacing
                              ) -> tuple[float, float, int]:
    """RECIST longest axial diameter of a (z, y, x) mask: (longest mm, perpendicular mm, slice).

    Every axial slice (fixed z) is measured with `longest_diameter_2d` using the real in-plane
    spacing (`spacing[1]` in y, `spacing[2]` in x); the slice with the longest diameter wins (the
    lowest index among equals), and its perpendicular diameter and index are returned. Raises
    `ValueError` for an empty mask.
    """
    inside = _check(mask, spacing, 3)
    slices = np.flatnonzero(inside.any(axis=(1, 2)))
    if slices.size == 0:
        raise ValueError("the mask is empty: an absent lesion has no diameter")
    spacing_yx = (float(spacing[1]), float(spacing[2]))
    best = (-1.0, 0.0, -1)
    for z in slices:
        longest, perpendicular = longest_diameter_2d(inside[z], spacing_yx)
        if longest > best[0]:
            best = (longest, perpendicular, int(z))
    return best


def measure_lesions(labels: npt.ArrayLike, spacing: Spacing, *,
                    boxes: Sequence[tuple[slice, ...] | None] | None = None
                    ) -> dict[int, LesionMeasurement]:
    """Measure every lesion of an instance label map (z, y, x), 0 = background.

    Returns {label: LesionMeasurement} for the labels present, in increasing label order.
    `diameter_slice` is an index of the whole volume. Integer labels are required. `boxes`:
    `ndimage.find_objects(labels)` when the caller has it already (`lesion_boxes`), else it is
    computed here.
    """
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"labels must be an integer instance map, got {array.dtype}")
    _check(array, spacing, 3)
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    measurements: dict[int, LesionMeasurement] = {}
    for index, box in enumerate(ndimage.find_objects(array) if boxes is None else boxes):
        if box is None:
            continue
        label = index + 1
        inside = array[box] == label
        offset = np.array([s.start for s in box], dtype=np.float64)
        longest, perpendicular, z = longest_axial_diameter_mm(inside, spacing)
        centre = np.asarray(centroid_index(inside)) + offset
        measurements[label] = LesionMeasurement(
            label=label,
            voxels=int(np.count_nonzero(inside)),
            volume_ml=lesion_volume_ml(inside, spacing),
            longest_diameter_mm=longest,
            perpendicular_diameter_mm=perpendicular,
            diameter_slice=z + box[0].start,
            centroid_index=(float(centre[0]), float(centre[1]), float(centre[2])),
            centroid_mm=(float(centre[0] * spacing[0]), float(centre[1] * spacing[1]),
                         float(centre[2] * spacing[2])),
        )
    return measurements


def lesion_boxes(labels: npt.NDArray[np.integer], within: tuple[slice, ...] | None = None
                 ) -> list[tuple[slice, ...] | None]:
    """`ndimage.find_objects(labels)` (the bounding box of label k at index k - 1, None where
    absent), searched only inside the box `within` when every label lies in it: the same
    boxes, in whole-volume indices, without a pass over the rest of the volume."""
    if within is None:
        return list(ndimage.find_objects(labels))
    found = ndimage.find_objects(labels[within])
    return [None if box is None else
            tuple(slice(s.start + (w.start or 0), s.stop + (w.start or 0)) for s, w in
                  zip(box, within, strict=True))
            for box in found]
