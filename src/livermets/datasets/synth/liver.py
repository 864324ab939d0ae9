"""The liver region: one definition for sampling, lesion placement and vessel growth;
fitting the liver volume and growing the portal and hepatic vein trees inside it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.datasets.synth.anatomy import _Anatomy, _Body
from livermets.datasets.synth.geometry import Array, Mask, Vec3, _f32, _Tube, _vec3
from livermets.datasets.synth.protocols import Tissue


def _liver_inside(anatomy: _Anatomy, px: Array, py: Array, pz: Array) -> Mask:
    """True inside the liver: the lobes, below the diaphragm, within the cavity, minus the
    gallbladder, IVC and right kidney."""
    inside = anatomy.liver.field(px, py, pz) <= 0.0
    inside &= pz <= anatomy.dome.height(px, py) - 4.0
    inside &= anatomy.body.radius(px, py, 0) <= _Body.taper(pz) - 0.015
    inside &= anatomy.gallbladder.q(px, py, pz) > 1.0
    inside &= anatomy.kidneys[0].shell.grown(4.0).q(px, py, pz) > 1.0
    ix, iy, ir = anatomy.ivc
    inside &= ((px - ix) / ir) ** 2 + ((py - iy) / (ir * 0.8)) ** 2 > 1.0
    return inside


@dataclass(frozen=True)
class _LiverMap:
    """The liver sampled on a regular patient-frame grid, with its depth (mm to the surface)."""

    lo: Vec3  # patient-frame (x, y, z) mm of element [0, 0, 0]
    step_mm: float
    inside: Mask  # (z, y, x)

    @classmethod
    def build(cls, anatomy: _Anatomy, step_mm: float = 2.0) -> _LiverMap:
        lo, hi = anatomy.liver.bounds()
        x, y, z = (np.arange(a, b + step_mm, step_mm, dtype=np.float32)
                   for a, b in zip(lo, hi, strict=True))
        inside = _liver_inside(anatomy, x[None, None, :], y[None, :, None], z[:, None, None])
        return cls(lo, step_mm, inside)

    @cached_property
    def depth_mm(self) -> npt.NDArray[np.float32]:
        """Distance (mm) from each inside point to the nearest outside point, (z, y, x)."""
        return _f32(ndimage.distance_transform_edt(self.inside, sampling=self.step_mm))

    @property
    def volume_ml(self) -> float:
        return float(self.inside.sum()) * self.step_mm**3 / 1000.0

    def points(self, where: Mask) -> npt.NDArray[np.float64]:
        """Patient-frame coordinates (N, 3) (x, y, z) mm of the points where `where` is true."""
        return np.asarray(np.argwhere(where)[:, ::-1] * self.step_mm + np.asarray(self.lo),
                          dtype=np.float64)

    def depth_at(self, point: npt.ArrayLike) -> float:
        """Depth (mm) at the grid point nearest to patient-frame `point`; 0 outside the map."""
        index = np.rint((np.asarray(point) - self.lo) / self.step_mm).astype(int)[::-1]
        if np.any(index < 0) or np.any(index >= self.inside.shape):
            return 0.0
        return float(self.depth_mm[tuple(index)])

    def z_range(self) -> tuple[float, float]:
        """Lowest and highest patient-frame z (mm) of the liver."""
        zs = np.flatnonzero(self.inside.any(axis=(1, 2)))
        return (self.lo[2] + zs[0] * self.step_mm, self.lo[2] + zs[-1] * self.step_mm)


def _fit_liver_volume(anatomy: _Anatomy, target_ml: float) -> tuple[_Anatomy, _LiverMap]:
    """Scale the liver lobes (about their centres) until the liver holds about `target_ml`."""
    liver = _LiverMap.build(anatomy)
    for _ in range(3):
        ratio = target_ml / liver.volume_ml
        if abs(ratio - 1.0) < 0.03:
            break
        factor = float(np.clip(ratio ** (1.0 / 3.0), 0.8, 1.25))
        lobes = tuple(lobe.scaled(factor) for lobe in anatomy.liver.lobes)
        anatomy = replace(anatomy, liver=replace(anatomy.liver, lobes=lobes))
        liver = _LiverMap.build(anatomy)
    return anatomy, liver


def _grow_vessels(rng: np.random.Generator, anatomy: _Anatomy, liver: _LiverMap
                  ) -> tuple[tuple[_Tube, Tissue], ...]:
    """Portal and hepatic vein trees inside the liver: branching tubes from fixed roots."""
    s = anatomy.scale
    ivc = (anatomy.ivc[0], anatomy.ivc[1], -28.0 * s)
    hilum = anatomy.portal_outside[-1].b
    roots: list[tuple[Vec3, Vec3, float, Tissue]] = [
        (ivc, (-90 * s, 0, -75 * s), 6.0, Tissue.LIVER_HEPATIC),
        (ivc, (-40 * s, -60 * s, -70 * s), 5.0, Tissue.LIVER_HEPATIC),
        (ivc, (35 * s, -40 * s, -40 * s), 4.5, Tissue.LIVER_HEPATIC),
        (hilum, (-80 * s, 10 * s, -80 * s), 6.5, Tissue.LIVER_PORTAL),
        (hilum, (-60 * s, -45 * s, -70 * s), 5.0, Tissue.LIVER_PORTAL),
        (hilum, (-85 * s, 45 * s, -100 * s), 5.0, Tissue.LIVER_PORTAL),
        (hilum, (20 * s, -35 * s, -50 * s), 5.0, Tissue.LIVER_PORTAL),
    ]
    tubes: list[tuple[_Tube, Tissue]] = []
    for start, target, radius, kind in roots:
        direction = np.subtract(target, start)
        length = float(np.linalg.norm(direction))
        _branch(rng, np.asarray(start), direction / length, length * 0.55, radius, 3, kind,
                liver, tubes)
    return tuple(tubes)


def _branch(rng: np.random.Generator, start: npt.NDArray[np.float64],
            direction: npt.NDArray[np.float64], length: float, radius: float, depth: int,
            kind: Tissue, liver: _LiverMap, out: list[tuple[_Tube, Tissue]]) -> None:
    """Add one vessel segment (shortened to stay in the liver) and recurse into two children."""
    end = start + direction * length
    while liver.depth_at(end) < radius + 2.0 and length > 6.0:
        length *= 0.6
        end = start + direction * length
    if length <= 6.0:
        return
    out.append((_Tube(_vec3(start), _vec3(end), radius), kind))
    if depth == 0 or radius < 2.0:
        return
    for sign in (-1.0, 1.0):
        turn = np.cross(direction, rng.normal(size=3))
        turn /= np.linalg.norm(turn) + 1e-9
        angle = math.radians(rng.uniform(22.0, 42.0)) * sign
        child = direction * math.cos(angle) + turn * math.sin(angle)
        _branch(rng, end, child / np.linalg.norm(child), length * rng.uniform(0.65, 0.85),
                radius * rng.uniform(0.62, 0.75), depth - 1, kind, liver, out)
