"""`Volume`: a 3D image as a numpy array in (z, y, x) order plus its physical geometry.

Conventions (the same as ITK, SimpleITK, ITK-SNAP and 3D Slicer, so masks open over their CT):

- `array[z, y, x]`: slice index first, then row, then column.
- `spacing`: voxel size in mm in array order (z, y, x).
- `origin`: the physical position in mm, patient LPS (x, y, z), of the centre of voxel [0, 0, 0].
- `direction`: ITK direction cosines, row-major 3x3; column k is the LPS unit vector of
  index axis k, where axis 0 is x (columns), 1 is y (rows), 2 is z (slices).

CT values are Hounsfield units (HU): DICOM rescale slope and intercept are already applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from livermets.types import Direction, Point, Spacing

IDENTITY_DIRECTION: Direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

#: Default tolerances when comparing grids: spacing/origin in mm, direction cosines unitless.
SPACING_TOLERANCE_MM = 1e-3
ORIGIN_TOLERANCE_MM = 1e-2
DIRECTION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume: shape (z, y, x), spacing (z, y, x) mm, origin, direction."""

    shape: tuple[int, int, int]
    spacing: Spacing
    origin: Point
    direction: Direction = IDENTITY_DIRECTION

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise ValueError(f"shape must be 3 positive sizes (z, y, x), got {self.shape}")
        if len(self.spacing) != 3 or any(not (s > 0 and math.isfinite(s)) for s in self.spacing):
            raise ValueError(f"spacing must be 3 positive mm values (z, y, x), got {self.spacing}")
        if len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("origin needs 3 values (x, y, z) and direction 9 (row-major 3x3)")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    def difference(
        self,
        other: Geometry,
        *,
        spacing_tolerance_mm: float = SPACING_TOLERANCE_MM,
        origin_tolerance_mm: float = ORIGIN_TOLERANCE_MM,
        direction_tolerance: float = DIRECTION_TOLERANCE,
    ) -> str | None:
        """Describe the first way `other` differs from this grid, or None if they match."""
        if self.shape != other.shape:
            return f"shape (z, y, x) {list(self.shape)} vs {list(other.shape)}"
        if not np.allclose(self.spacing, other.spacing, rtol=0, atol=spacing_tolerance_mm):
            return f"spacing (z, y, x) mm {_fmt(self.spacing)} vs {_fmt(other.spacing)}"
        if not np.allclose(self.origin, other.origin, rtol=0, atol=origin_tolerance_mm):
            return f"origin (x, y, z) mm {_fmt(self.origin)} vs {_fmt(other.origin)}"
        if not np.allclose(self.direction, other.direction, rtol=0, atol=direction_tolerance):
            return f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}"
        return None

    def matches(self, other: Geometry, **tolerances: float) -> bool:
        """True when `other` is the same grid within the tolerances of `difference`."""
        return self.difference(other, **tolerances) is None

    @property
    def direction_matrix(self) -> npt.NDArray[np.float64]:
        """Direction as a 3x3 array; column k is the LPS direction of index axis k (x, y, z)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical(self, index_zyx: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Physical LPS points (x, y, z) mm of voxel indices (..., 3) given in (z, y, x) order."""
        idx = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]  # -> (x, y, z) index order
        scaled = idx * np.asarray(self.spacing[::-1])
        return np.asarray(self.origin) + scaled @ self.direction_matrix.T

    def physical_to_index(self, point_xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous voxel indices (..., 3) in (z, y, x) order of physical LPS points (x, y, z)."""
        rel = np.asarray(point_xyz, dtype=np.float64) - np.asarray(self.origin)
        idx_xyz = (rel @ self.direction_matrix) / np.asarray(self.spacing[::-1])
        return np.asarray(idx_xyz[..., ::-1])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: shape and spacing (z, y, x), origin (x, y, z), direction row-major."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }


def _fmt(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image: `array` (z, y, x) with its `geometry`, plus metadata later stages need.

    `metadata` holds strings such as `format`, `source`, `study_instance_uid`,
    `series_instance_uid`, `modality`. CT arrays hold HU. Volumes are not modified in place by
    this package: operations return new volumes.
    """

    array: npt.NDArray[Any]
    geometry: Geometry
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D (z, y, x) array, got {self.array.ndim}D")
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(
                f"array shape {self.array.shape} does not match geometry {self.geometry.shape}"
            )

    @classmethod
    def from_array(
        cls,
        array: npt.ArrayLike,
        *,
        spacing: Spacing = (1.0, 1.0, 1.0),
        origin: Point = (0.0, 0.0, 0.0),
        direction: Direction = IDENTITY_DIRECTION,
        metadata: Mapping[str, str] | None = None,
    ) -> Volume:
        """Build a volume from a (z, y, x) array and its spacing (z, y, x) mm, origin, direction."""
        arr = np.asarray(array)
        geometry = Geometry(arr.shape, spacing, origin, direction)
        return cls(arr, geometry, dict(metadata or {}))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x)."""
        return self.geometry.shape

    @property
    def spacing(self) -> Spacing:
        """Voxel spacing (z, y, x) in mm."""
        return self.geometry.spacing

    @property
    def origin(self) -> Point:
        """Physical LPS position (x, y, z) in mm of voxel [0, 0, 0]."""
        return self.geometry.origin

    @property
    def direction(self) -> Direction:
        """ITK direction cosines, row-major 3x3."""
        return self.geometry.direction

    def with_array(self, array: npt.ArrayLike, **metadata: str) -> Volume:
        """A new volume on the same grid holding `array` (same shape), metadata updated."""
        arr = np.asarray(array)
        return Volume(arr, self.geometry, {**self.metadata, **metadata})

    def to_sitk(self) -> sitk.Image:
        """This volume as a SimpleITK image with the same geometry (array is copied)."""
        arr = self.array
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        image.SetSpacing(self.spacing[::-1])
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, metadata: Mapping[str, str] | None = None) -> Volume:
        """A volume from a 3D scalar SimpleITK image, geometry included."""
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()}"
            )
        array = sitk.GetArrayFromImage(image)
        sx, sy, sz = image.GetSpacing()
        geometry = Geometry(
            array.shape,
            (sz, sy, sx),
            tuple(image.GetOrigin()),
            tuple(image.GetDirection()),
        )
        return cls(array, geometry, dict(metadata or {}))
