"""Fat inside the liver's outline: the fissures, the porta hepatis and the gallbladder fossa;
and the periportal cuff, the darker connective tissue around the large portal branches.

Real livers are not solid: the umbilical fissure (with the ligamentum teres in it), the fissure
of the ligamentum venosum, the fat sleeve around the portal vein at the hilum and the fat rim of
the gallbladder fossa reach into the parenchyma. Through a CT slice their thin edges average
with the liver into streaks between fat and liver HU, which a lesion model must learn not to
call metastases. Each structure here gives, at every point, the half-width (mm) of its fat
layer and the point's distance (mm) from the layer's middle. `add_liver_fat` averages that
layer over a voxel's extent across it (the pixel, and the slice where the layer is oblique),
so thin or oblique fissures come out as grey streaks rather than black lines, blends the fat
fraction into the parenchyma's HU and recodes voxels that are mostly fat (so the liver mask
leaves them out, as reference masks do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livermets.datasets.synth.geometry import (
    Array,
    Vec3,
    _Ellipsoid,
    _f32,
    _Grid,
    _Tube,
    _vec3,
)
from livermets.datasets.synth.protocols import Tissue

#: HU of the ligamentum teres (a fibrous cord: soft tissue, unenhanced).
LIGAMENT_HU = 45.0


@dataclass(frozen=True)
class _FatSheet:
    """A fissure: a fat slab `thickness_mm` thick about the mid-plane of `region` (normal =
    the region's first body axis), thinning to nothing at the region's in-plane edge."""

    region: _Ellipsoid
    thickness_mm: float

    def extent_mm(self, px: Array, py: Array, pz: Array) -> tuple[Array, Array]:
        u, v, w = self.region.local(px, py, pz)
        _, b, c = self.region.semi
        taper = np.sqrt(np.clip(1.0 - (v / np.float32(b)) ** 2 - (w / np.float32(c)) ** 2,
                                0.0, 1.0))
        return _f32(np.float32(0.5 * self.thickness_mm) * taper), _f32(np.abs(u))

    def bounds(self) -> tuple[Vec3, Vec3]:
        return self.region.bounds(pad=2.0)

    def softness_mm(self, spacing: tuple[float, float, float]) -> float:
        """Width (mm) of the partial-volume edge: the pixel, plus the slice where it is oblique."""
        return math.hypot(spacing[1], spacing[0] * abs(self.region.axes[0][2]))


@dataclass(frozen=True)
class _FatSleeve:
    """Fat around a segment (radius = the fat's outer radius), with an optional fibrous cord
    of radius `cord_mm` along its axis (the ligamentum teres)."""

    tube: _Tube
    cord_mm: float = 0.0

    def extent_mm(self, px: Array, py: Array, pz: Array) -> tuple[Array, Array]:
        return _f32(np.float32(self.tube.radius)), np.sqrt(self.tube.distance2(px, py, pz))

    def bounds(self) -> tuple[Vec3, Vec3]:
        lo, hi = self.tube.bounds()
        return (_vec3(np.subtract(lo, 2.0)), _vec3(np.add(hi, 2.0)))

    def softness_mm(self, spacing: tuple[float, float, float]) -> float:
        return _round_softness_mm(spacing)


@dataclass(frozen=True)
class _FatShell:
    """A fat rim `thickness_mm` thick around an organ embedded in the liver (gallbladder)."""

    organ: _Ellipsoid
    thickness_mm: float

    def extent_mm(self, px: Array, py: Array, pz: Array) -> tuple[Array, Array]:
        q = self.organ.q(px, py, pz)
        outside = (np.sqrt(q) - 1.0) * np.float32(min(self.organ.semi))  # about mm
        half = np.float32(0.5 * self.thickness_mm)
        return _f32(half), _f32(np.abs(outside - half))

    def bounds(self) -> tuple[Vec3, Vec3]:
        return self.organ.bounds(pad=self.thickness_mm + 2.0)

    def softness_mm(self, spacing: tuple[float, float, float]) -> float:
        return _round_softness_mm(spacing)


def _round_softness_mm(spacing: tuple[float, float, float]) -> float:
    """Partial-volume width (mm) of a round structure (a sleeve, a shell): the pixel, plus
    half the slice (its surface meets the slices at every angle)."""
    return math.hypot(spacing[1], 0.5 * spacing[0])


@dataclass(frozen=True)
class _PeriportalCuff(_FatSleeve):
    """Periportal tissue around a large portal branch (Glisson's sheath: connective tissue,
    lymphatics, a little fat; `tube.radius` is its outer radius, mm): parenchyma blended
    towards `darker_hu` below the liver's HU and left in the liver mask. In the portal-venous
    phase it reads as a dark halo round a bright vessel, which a lesion model must not call a
    metastasis."""

    darker_hu: float = 40.0


LiverFat = _FatSheet | _FatSleeve | _FatShell | _PeriportalCuff

def add_liver_fat(hu: Array, tissue: npt.NDArray[np.uint8], grid: _Grid,
                  structures: Sequence[LiverFat], fat_hu: float, liver_hu: float) -> None:
    """Blend each structure (an anatomy's `liver_fat`) into the liver parenchyma of `hu`
    (z, y, x, HU) in place, by the share of each voxel it covers (`_covered`): fat towards
    `fat_hu`, a periportal cuff towards `liver_hu` minus its `darker_hu`. Voxels at least half
    fat become `Tissue.VISCERAL_FAT` in `tissue` (out of the liver mask), those at least half
    ligament `Tissue.MUSCLE`; a cuff stays liver. Vessels inside the liver keep their HU."""
    spacing = grid.geometry.spacing
    for fat in structures:
        box = grid.box(*fat.bounds())
        if box is None:
            continue
        codes, values = tissue[box.index], hu[box.index]
        parenchyma = codes == Tissue.LIVER
        if not parenchyma.any():
            continue
        width = np.float32(fat.softness_mm(spacing))
        half, distance = fat.extent_mm(box.px, box.py, box.pz)
        fraction = _covered(np.broadcast_to(half, codes.shape)[parenchyma],
                            np.broadcast_to(distance, codes.shape)[parenchyma], width)
        if isinstance(fat, _PeriportalCuff):
            target = np.float32(liver_hu - fat.darker_hu)
            values[parenchyma] += fraction * (target - values[parenchyma])
            continue
        values[parenchyma] += fraction * (np.float32(fat_hu) - values[parenchyma])
        codes[parenchyma] = np.where(fraction >= 0.5, np.uint8(Tissue.VISCERAL_FAT),
                                     np.uint8(Tissue.LIVER))
        if isinstance(fat, _FatSleeve) and fat.cord_mm > 0.0:  # `distance`: from its axis
            share = _covered(np.float32(fat.cord_mm),
                             np.broadcast_to(distance, codes.shape)[parenchyma], width)
            values[parenchyma] += share * (np.float32(LIGAMENT_HU) - values[parenchyma])
            codes[parenchyma] = np.where(share >= 0.5, np.uint8(Tissue.MUSCLE),
                                         codes[parenchyma])


def _covered(half: Array | np.float32, distance: Array, width: np.float32) -> Array:
    """Share of a voxel `width` mm across, centred `distance` mm from a layer's middle, that
    the layer (half-width `half` mm) covers: a box of width `width` convolved with the
    layer's box, so the share never reaches 1 when the layer is thinner than the voxel."""
    low = np.maximum(distance - 0.5 * width, -half)
    high = np.minimum(distance + 0.5 * width, half)
    return _f32(np.clip((high - low) / width, 0.0, 1.0))
