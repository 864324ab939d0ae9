"""Coordinates (mm): poses and CT grids seen from the patient frame, and the shape
primitives (ellipsoids, tubes, smooth random fields) evaluated on them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from livermets.io.volume import Geometry

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Poses, grids and sampling boxes


@dataclass(frozen=True)
class Pose:
    """Rigid placement of the patient frame in scanner LPS coordinates (mm).

    world = R(rotation_deg) @ patient + translation_mm, with R the rotation about +z:
    [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]].
    """

    rotation_deg: float
    translation_mm: Vec3

    @property
    def matrix(self) -> npt.NDArray[np.float64]:
        """4x4 homogeneous matrix patient frame -> LPS."""
        c, s = math.cos(math.radians(self.rotation_deg)), math.sin(math.radians(self.rotation_deg))
        m = np.eye(4)
        m[:2, :2] = [[c, -s], [s, c]]
        m[:3, 3] = self.translation_mm
        return m

    def to_world(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS points (..., 3) of patient-frame points (..., 3), (x, y, z) mm."""
        p = np.asarray(points, dtype=np.float64)
        m = self.matrix
        return p @ m[:3, :3].T + m[:3, 3]


@dataclass(frozen=True)
class _Box:
    """A sub-block of a CT grid with the patient-frame coordinates (mm) of its voxel centres.

    `px`, `py` are (1, ny, nx) (the pose rotates about z only) and `pz` is (nz, 1, 1), so
    fields evaluated on them broadcast to (nz, ny, nx) only when they need to. `wy` is the
    scanner y (1, ny, 1) in mm, for objects fixed to the scanner (the table).
    """

    index: tuple[slice, slice, slice]
    px: Array
    py: Array
    pz: Array
    wy: Array

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.pz.shape[0], self.px.shape[1], self.px.shape[2])


class _Grid:
    """A CT grid (geometry, identity direction) seen through a pose."""

    def __init__(self, geometry: Geometry, pose: Pose) -> None:
        self.geometry = geometry
        self.pose = pose

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> _Box | None:
        """The sub-block covering the patient-frame box [lo, hi] (x, y, z mm); None if outside."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])])
        index = self.geometry.physical_to_index(self.pose.to_world(corners))  # (8, 3) z, y, x
        start = np.maximum(np.floor(index.min(axis=0)).astype(int), 0)
        stop = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 1, self.geometry.shape)
        if np.any(stop <= start):
            return None
        return self._box(tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True)))

    def full(self) -> _Box:
        """The whole grid."""
        return self._box(tuple(slice(0, n) for n in self.geometry.shape))

    def _box(self, index: tuple[slice, ...]) -> _Box:
        sz, sy, sx = self.geometry.spacing
        ox, oy, oz = self.geometry.origin
        (tx, ty, tz), theta = self.pose.translation_mm, math.radians(self.pose.rotation_deg)
        zs, ys, xs = (np.arange(s.start, s.stop, dtype=np.float64) for s in index)
        wx = (ox + xs * sx - tx)[None, None, :]
        wy = (oy + ys * sy)[None, :, None]
        c, s = math.cos(theta), math.sin(theta)
        px = (c * wx + s * (wy - ty)).astype(np.float32)
        py = (-s * wx + c * (wy - ty)).astype(np.float32)
        pz = (oz + zs * sz - tz).astype(np.float32)[:, None, None]
        return _Box((index[0], index[1], index[2]), px, py, pz, wy.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Shape primitives in the patient frame (all broadcast over numpy arrays of coordinates)


def _vec3(values: npt.ArrayLike) -> Vec3:
    """Three floats (x, y, z) from any 3-element sequence or array."""
    a = np.asarray(values, dtype=np.float64).reshape(3)
    return (float(a[0]), float(a[1]), float(a[2]))


def _f32(values: npt.ArrayLike) -> Array:
    """A float32 array (no copy when it already is one)."""
    return np.asarray(values, dtype=np.float32)


def _rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0
              ) -> tuple[Vec3, Vec3, Vec3]:
    """Rows = the body axes in patient coordinates, for rotations (degrees) about z, y, x."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    rows = (rz @ ry @ rx).T
    return (_vec3(rows[0]), _vec3(rows[1]), _vec3(rows[2]))


_IDENTITY_AXES = _rotation()


def _linear(row: Vec3, dx: Array, dy: Array, dz: Array) -> Array:
    """row . (dx, dy, dz), skipping zero terms so that in-plane terms stay 2D."""
    out: Array | float = 0.0
    for coefficient, d in zip(row, (dx, dy, dz), strict=True):
        if coefficient != 0.0:
            out = out + np.float32(coefficient) * d
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid: centre (x, y, z) mm, semi-axes mm along its body axes (rows of `axes`)."""

    centre: Vec3
    semi: Vec3
    axes: tuple[Vec3, Vec3, Vec3] = _IDENTITY_AXES

    def local(self, px: Array, py: Array, pz: Array) -> tuple[Array, Array, Array]:
        """Body-frame coordinates (mm) of patient-frame points."""
        d = (px - np.float32(self.centre[0]), py - np.float32(self.centre[1]),
             pz - np.float32(self.centre[2]))
        return (_linear(self.axes[0], *d), _linear(self.axes[1], *d), _linear(self.axes[2], *d))

    def q(self, px: Array, py: Array, pz: Array) -> Array:
        """Normalised squared radius: < 1 inside."""
        u, v, w = self.local(px, py, pz)
        a, b, c = (np.float32(s) for s in self.semi)
        return _f32((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)

    def inside(self, box: _Box) -> Mask:
        return self.q(box.px, box.py, box.pz) <= 1.0

    def bounds(self, pad: float = 0.0) -> tuple[Vec3, Vec3]:
        """Axis-aligned patient-frame bounding box (lo, hi), grown by `pad` mm."""
        rows = np.asarray(self.axes)
        half = np.sqrt(((rows * np.asarray(self.semi)[:, None]) ** 2).sum(axis=0)) + pad
        lo, hi = np.asarray(self.centre) - half, np.asarray(self.centre) + half
        return (_vec3(lo), _vec3(hi))

    def grown(self, mm: float) -> _Ellipsoid:
        """The same ellipsoid with every semi-axis `mm` longer."""
        return replace(self, semi=_vec3(np.asarray(self.semi) + mm))

    def scaled(self, factor: float) -> _Ellipsoid:
        """The same ellipsoid with every semi-axis multiplied by `factor`."""
        return replace(self, semi=_vec3(np.asarray(self.semi) * factor))


@dataclass(frozen=True)
class _Tube:
    """A capsule: segment a -> b (x, y, z mm) with radius mm."""

    a: Vec3
    b: Vec3
    radius: float

    def distance2(self, px: Array, py: Array, pz: Array) -> Array:
        """Squared distance (mm^2) of points to the segment."""
        d = np.subtract(self.b, self.a)
        length2 = float(d @ d) or 1e-9
        rx, ry, rz = (px - np.float32(self.a[0]), py - np.float32(self.a[1]),
                      pz - np.float32(self.a[2]))
        t = np.clip(_linear(tuple(d / length2), rx, ry, rz), 0.0, 1.0)
        return _f32((rx - np.float32(d[0]) * t) ** 2 + (ry - np.float32(d[1]) * t) ** 2
                    + (rz - np.float32(d[2]) * t) ** 2)

    def bounds(self) -> tuple[Vec3, Vec3]:
        lo = np.minimum(self.a, self.b) - self.radius
        hi = np.maximum(self.a, self.b) + self.radius
        return (_vec3(lo), _vec3(hi))


@dataclass(frozen=True)
class _Fourier:
    """A smooth random field: sum of K plane waves, unit variance, in patient-frame mm."""

    k: npt.NDArray[np.float32]  # (K, 3) rad/mm
    phase: npt.NDArray[np.float32]  # (K,)

    @classmethod
    def draw(cls, rng: np.random.Generator, modes: int, wavelength_mm: tuple[float, float]
             ) -> _Fourier:
        direction = rng.normal(size=(modes, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wavelength = rng.uniform(*wavelength_mm, size=(modes, 1))
        k = (2 * np.pi / wavelength * direction).astype(np.float32)
        return cls(k, rng.uniform(0, 2 * np.pi, size=modes).astype(np.float32))

    def __call__(self, px: Array, py: Array, pz: Array) -> Array:
        """Field at the points; (1, ny, nx) x (nz, 1, 1) grids use one matrix product."""
        amplitude = np.float32(math.sqrt(2.0 / len(self.phase)))
        kx, ky, kz = (self.k[:, i, None, None, None] for i in range(3))
        if px.shape[0] == py.shape[0] == 1 and pz.shape[1:] == (1, 1):
            plane = kx * px[None] + ky * py[None]  # (K, 1, ny, nx)
            ny, nx = plane.shape[-2:]
            plane = plane.reshape(len(self.phase), -1)
            along = (kz[:, 0, 0, 0][None, :] * pz.reshape(-1, 1) + self.phase[None, :])
            out = np.cos(along) @ np.cos(plane) - np.sin(along) @ np.sin(plane)
            return _f32((amplitude * out).reshape(pz.shape[0], ny, nx))
        total = np.zeros(np.broadcast_shapes(px.shape, py.shape, pz.shape), dtype=np.float32)
        for i in range(len(self.phase)):
            total += np.cos(self.k[i, 0] * px + self.k[i, 1] * py + self.k[i, 2] * pz
                            + self.phase[i])
        return _f32(amplitude * total)


def _superellipse(px: Array, py: Array, a: float, b_front: float, b_back: float,
                  power: float = 2.4) -> Array:
    """Normalised 'radius' of a superellipse with different anterior/posterior semi-axes."""
    b = np.where(py < 0, np.float32(b_front), np.float32(b_back))
    return _f32((np.abs(px / np.float32(a)) ** power + np.abs(py / b) ** power) ** (1 / power))
