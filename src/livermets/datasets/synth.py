"""The generated cohort: two centres, baseline and tp1 CT, liver and lesion ground truth.

`livermets synth` and `generate_cohort` write a cohort that looks like the paper's (Defeudis et
al. 2022): portal-venous abdominal CT of patients with colorectal liver metastases from two
centres with different protocols, each patient at baseline and about 3 months later (tp1).

Model
-----
Each patient is an anatomy described in a *patient frame* (mm, LPS axes: +x patient left, +y
posterior, +z superior; x = y = 0 on the body axis, z = 0 at the top of the right
hemidiaphragm): body outline with subcutaneous fat, abdominal-wall and paraspinal muscles,
psoas, spine with discs and posterior elements, ribs and costal cartilage, lung bases, heart,
aorta, IVC, kidneys (cortex, medulla, sinus fat), spleen, stomach with an air-fluid level,
pancreas, splenic and mesenteric vessels, bowel loops with gas, gallbladder and a liver built as
a smooth union of lobes deformed by low-frequency noise, with portal and hepatic vein trees and
1-10 metastases. A CT samples that anatomy at voxel centres after a rigid *pose*
(patient frame -> scanner LPS), then adds centre-specific enhancement, correlated noise, a
slight in-plane blur and an HU offset. The masks are sampled at the same points, so they lie
exactly on the CT grid and every lesion voxel is a liver voxel.

The physical size never depends on `matrix` or `slices`: the in-plane field of view and the
craniocaudal coverage are drawn per patient, `matrix` sets the pixel size (FOV / matrix) and
`slices`, when given, sets the slice spacing (coverage / slices); by default the slice
spacing is the centre's (A 2.5 mm, B 5 mm) and the slice count follows from the coverage
(about 190-240 mm: from the lung bases to below the kidneys' hila).

Lesions are hypodense with an enhancing rim, some with a necrotic core or calcified spots;
none touches another (each is its own 26-connected component) and all lie inside the liver.
At tp1 each lesion shrinks, grows, stays or vanishes, some get calcified areas, and 0-2 new
lesions may appear; the tp1 anatomy is rotated about z and shifted against baseline.
Patients are generated from `numpy.random.SeedSequence([seed, patient_index])`, so a patient
is the same whatever the cohort size. Patient 1 (synth001) is centre A with >= 3 lesions of
both size groups, patient 2 is centre B with a new lesion at tp1 (progression), patient 3 has
all its lesions vanish (complete response); later patients are drawn (centre A 30%).

On disk (`generate_cohort`)::

    DIR/manifest.csv                 patient_id, center, timepoint, image, liver_mask, ...
    DIR/truth.json                   per-lesion ground truth (see `generate_cohort`)
    DIR/synth001/baseline/ct.nii.gz  int16 HU
    DIR/synth001/baseline/liver.nii.gz    uint8 0/1 (liver incl. lesions and inner vessels)
    DIR/synth001/baseline/lesions.nii.gz  uint8 instance labels 1..K, 0 = background
    DIR/synth001/tp1/...

Splits: the baseline CT of patients with an odd number (synth001, synth003, ...) is
`training`, the other baselines are `valB`, and every tp1 CT is `valTP1`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets import __version__
from livermets.errors import InputError
from livermets.io.atomic import write_text_atomic
from livermets.io.image import write_image
from livermets.io.manifest import ManifestRow, write_manifest
from livermets.io.volume import Geometry, Volume
from livermets.measure import LesionMeasurement, measure_lesions
from livermets.types import PathLike

logger = logging.getLogger(__name__)

#: Bumped whenever the same seed would give different images.
GENERATOR_VERSION = "1"
#: Lesions with a longest axial diameter below this are "small", others "large" (mm).
SIZE_THRESHOLD_MM = 20.0
TIMEPOINTS: tuple[str, str] = ("baseline", "tp1")

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Centre protocols


@dataclass(frozen=True)
class CentreProtocol:
    """Acquisition protocol of one centre: sampling, noise and contrast enhancement (HU).

    Enhancement values are the mean HU of each tissue in the portal-venous phase before the
    patient's own variation; `hu_offset` is a scanner calibration offset added to every voxel.
    """

    name: str
    slice_spacing_mm: float
    fov_range_mm: tuple[float, float]
    noise_sd_hu: float
    hu_offset: float
    blur_mm: float
    delay_s: float
    liver_hu: float
    portal_hu: float
    hepatic_hu: float
    aorta_hu: float
    ivc_hu: float
    spleen_hu: float
    kidney_cortex_hu: float
    kidney_medulla_hu: float


#: Centre A: thinner slices, lower noise, earlier portal phase (bright portal vein and aorta,
#: hepatic veins still filling). Centre B: 5 mm slices, noisier, later phase.
PROTOCOLS: dict[str, CentreProtocol] = {
    "A": CentreProtocol(
        name="A", slice_spacing_mm=2.5, fov_range_mm=(340.0, 400.0), noise_sd_hu=9.0,
        hu_offset=3.0, blur_mm=0.45, delay_s=65.0, liver_hu=106.0, portal_hu=178.0,
        hepatic_hu=138.0, aorta_hu=185.0, ivc_hu=115.0, spleen_hu=122.0,
        kidney_cortex_hu=195.0, kidney_medulla_hu=140.0,
    ),
    "B": CentreProtocol(
        name="B", slice_spacing_mm=5.0, fov_range_mm=(380.0, 440.0), noise_sd_hu=15.0,
        hu_offset=-4.0, blur_mm=0.6, delay_s=80.0, liver_hu=117.0, portal_hu=162.0,
        hepatic_hu=158.0, aorta_hu=152.0, ivc_hu=140.0, spleen_hu=118.0,
        kidney_cortex_hu=172.0, kidney_medulla_hu=160.0,
    ),
}


class Tissue(IntEnum):
    """Tissue codes of the internal label map; each has one mean HU per patient and scan."""

    AIR = 0
    FAT = 1
    VISCERAL_FAT = 2
    MUSCLE = 3
    RIB = 4
    CORTICAL_BONE = 5
    MARROW = 6
    DISC = 7
    CSF = 8
    CARTILAGE = 9
    LUNG = 10
    MYOCARDIUM = 11
    BLOOD = 12
    AORTA = 13
    IVC = 14
    PORTAL = 15
    LIVER = 16
    LIVER_PORTAL = 17
    LIVER_HEPATIC = 18
    SPLEEN = 19
    KIDNEY_CORTEX = 20
    KIDNEY_MEDULLA = 21
    RENAL_SINUS = 22
    URINE = 23
    STOMACH_WALL = 24
    STOMACH_FLUID = 25
    GAS = 26
    BOWEL_WALL = 27
    BOWEL_CONTENT = 28
    PANCREAS = 29
    GALLBLADDER = 30
    TABLE = 31
    TABLE_FOAM = 32


#: Tissues counted as liver in the liver mask (parenchyma and the vessels inside it).
LIVER_TISSUES: tuple[Tissue, ...] = (Tissue.LIVER, Tissue.LIVER_PORTAL, Tissue.LIVER_HEPATIC)

#: HU of tissues that do not depend on contrast timing.
_FIXED_HU: dict[Tissue, float] = {
    Tissue.AIR: -1000.0, Tissue.FAT: -105.0, Tissue.VISCERAL_FAT: -95.0, Tissue.MUSCLE: 52.0,
    Tissue.RIB: 480.0, Tissue.CORTICAL_BONE: 800.0, Tissue.MARROW: 230.0, Tissue.DISC: 85.0,
    Tissue.CSF: 18.0, Tissue.CARTILAGE: 140.0, Tissue.LUNG: -860.0, Tissue.MYOCARDIUM: 100.0,
    Tissue.RENAL_SINUS: -80.0, Tissue.URINE: 12.0, Tissue.STOMACH_WALL: 72.0,
    Tissue.STOMACH_FLUID: 14.0, Tissue.GAS: -985.0, Tissue.BOWEL_WALL: 80.0,
    Tissue.BOWEL_CONTENT: 22.0, Tissue.PANCREAS: 98.0, Tissue.GALLBLADDER: 8.0,
    Tissue.TABLE: 200.0, Tissue.TABLE_FOAM: -920.0,
}


def _tissue_hu(protocol: CentreProtocol, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Mean HU per tissue code for one scan: the protocol plus this patient's and this scan's
    variation (liver +-5 HU, vessels +-10 HU together, as contrast timing varies)."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, hu in _FIXED_HU.items():
        lut[tissue] = hu
    vessels = rng.normal(0.0, 10.0)
    liver = protocol.liver_hu + rng.normal(0.0, 5.0)
    portal = protocol.portal_hu + vessels
    lut[Tissue.LIVER] = liver
    lut[Tissue.LIVER_PORTAL] = lut[Tissue.PORTAL] = portal
    lut[Tissue.LIVER_HEPATIC] = protocol.hepatic_hu + vessels
    lut[Tissue.AORTA] = protocol.aorta_hu + vessels
    lut[Tissue.BLOOD] = protocol.aorta_hu + vessels - 15.0
    lut[Tissue.IVC] = protocol.ivc_hu + vessels
    lut[Tissue.SPLEEN] = protocol.spleen_hu + rng.normal(0.0, 5.0)
    lut[Tissue.KIDNEY_CORTEX] = protocol.kidney_cortex_hu + vessels
    lut[Tissue.KIDNEY_MEDULLA] = protocol.kidney_medulla_hu + vessels
    return lut


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


# --------------------------------------------------------------------------------------------
# Anatomy


@dataclass(frozen=True)
class _Body:
    """Body outline and wall (mm): cavity semi-axes, muscle and fat thickness, z taper."""

    cavity: tuple[float, float, float]  # half-width, anterior, posterior
    muscle: tuple[float, float, float]
    fat: tuple[float, float, float]

    def layer(self, depth: int) -> tuple[float, float, float]:
        """Semi-axes of the cavity (0), the muscle's outer surface (1), the skin (2)."""
        out = np.asarray(self.cavity)
        if depth >= 1:
            out = out + np.asarray(self.muscle)
        if depth >= 2:
            out = out + np.asarray(self.fat)
        return (float(out[0]), float(out[1]), float(out[2]))

    def radius(self, px: Array, py: Array, depth: int) -> Array:
        return _superellipse(px, py, *self.layer(depth))

    @staticmethod
    def taper(pz: Array) -> Array:
        """Cross-section scale along z: widest at the lower ribs, narrower above and below."""
        return (1.0 - 0.045 * ((pz + 70.0) / 100.0) ** 2).astype(np.float32)


@dataclass(frozen=True)
class _Dome:
    """The diaphragm: height z (mm) of its surface over (x, y), right dome higher."""

    right: Vec3  # x, y, z of the dome tops
    left: Vec3
    spread: float

    def height(self, px: Array, py: Array) -> Array:
        def one(top: Vec3) -> Array:
            back = np.where(py > top[1], np.float32(75.0), np.float32(170.0))
            return _f32(np.float32(top[2]) - 42.0 * ((px - top[0]) / self.spread) ** 2
                        - 45.0 * ((py - top[1]) / back) ** 2)
        right, left = one(self.right), one(self.left)
        high = np.maximum(right, left)  # smooth maximum (a soft saddle between the domes)
        return _f32(high + 6.0 * np.log1p(np.exp(-np.abs(right - left) / 6.0)))


@dataclass(frozen=True)
class _Liver:
    """The liver: smooth union of lobes, deformed by a low-frequency field, then clipped."""

    lobes: tuple[_Ellipsoid, ...]
    deform: _Fourier
    deform_amplitude: float
    sharpness: float = 9.0

    def field(self, px: Array, py: Array, pz: Array) -> Array:
        """< 0 inside the (unclipped) liver; roughly (distance / lobe radius)."""
        total: Array | None = None
        for lobe in self.lobes:
            term = np.exp(-self.sharpness * (np.sqrt(lobe.q(px, py, pz)) - 1.0))
            total = term if total is None else total + term
        assert total is not None
        smooth_min = -np.log(np.maximum(total, 1e-30)) / self.sharpness
        return _f32(smooth_min - np.float32(self.deform_amplitude) * self.deform(px, py, pz))

    def bounds(self) -> tuple[Vec3, Vec3]:
        los, his = zip(*(lobe.bounds(pad=8.0) for lobe in self.lobes), strict=True)
        return (_vec3(np.min(los, axis=0)), _vec3(np.max(his, axis=0)))


@dataclass(frozen=True)
class _Kidney:
    shell: _Ellipsoid
    sinus: _Ellipsoid
    pelvis: _Ellipsoid
    cortex_mm: float


@dataclass(frozen=True)
class _Anatomy:
    """One patient's anatomy in the patient frame (mm)."""

    scale: float
    body: _Body
    dome: _Dome
    liver: _Liver
    gallbladder: _Ellipsoid
    spleen: _Ellipsoid
    spleen_hilum: _Ellipsoid
    stomach: _Ellipsoid
    heart: _Ellipsoid
    kidneys: tuple[_Kidney, _Kidney]
    aorta: Vec3  # x, y, radius (a vertical cylinder)
    ivc: Vec3  # x, y, radius
    vertebra: Vec3  # x, y of the vertebral body centre, its half-width
    disc_phase: float
    psoas: Vec3  # |x|, y, max radius
    pancreas: tuple[_Tube, ...]
    portal_outside: tuple[_Tube, ...]
    mesenteric: tuple[Vec3, Vec3]  # (x, y, radius) of SMV (portal HU) and SMA (aortic HU)
    small_bowel: tuple[_Tube, ...]
    colon: tuple[_Tube, ...]
    bowel_gas: _Fourier
    liver_texture: _Fourier
    ribs: tuple[Vec3, ...]  # z at the back (mm), slope (mm/rad), end angle (rad)
    vessels: tuple[tuple[_Tube, Tissue], ...] = ()


def _jitter(rng: np.random.Generator, point: Sequence[float], sd: float, scale: float) -> Vec3:
    """`point` (mm) scaled by the patient's size, plus Gaussian jitter of `sd` mm."""
    return _vec3(np.asarray(point, dtype=np.float64) * scale + rng.normal(0.0, sd, size=3))


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    """A patient's anatomy without its vessel trees (see `_grow_vessels`)."""
    s = float(rng.uniform(0.92, 1.06))
    fat = float(rng.uniform(8.0, 30.0))
    body = _Body(
        cavity=(128.0 * s, 92.0 * s, 96.0 * s),
        muscle=(15.0, 10.0, 12.0),
        fat=(fat, 1.3 * fat, 0.6 * fat + 4.0),
    )
    dome = _Dome(right=(-58.0 * s, 12.0 * s, 0.0),
                 left=(62.0 * s, 14.0 * s, float(rng.uniform(-22.0, -12.0))),
                 spread=95.0 * s)

    def lobe(c: Sequence[float], semi: Sequence[float], yaw: float = 0.0) -> _Ellipsoid:
        size = rng.uniform(0.9, 1.1, size=3) * s
        return _Ellipsoid(_jitter(rng, c, 5.0, s), _vec3(np.asarray(semi) * size),
                          _rotation(yaw + rng.normal(0.0, 6.0)))

    left_lobe = float(rng.uniform(0.75, 1.2))
    liver = _Liver(
        lobes=(
            lobe((-62, 8, -52), (60, 80, 60)),
            lobe((-82, 22, -105), (40, 52, 42)),
            lobe((-18, -12, -55), (38, 52, 36)),
            lobe((30 * left_lobe, -42, -42), (52 * left_lobe, 30, 26), yaw=-12.0),
            lobe((72 * left_lobe, -36, -34), (30 * left_lobe, 20, 15), yaw=-20.0),
        ),
        deform=_Fourier.draw(rng, 16, (70.0, 160.0)),
        deform_amplitude=float(rng.uniform(0.05, 0.09)),
    )
    kidneys = (_draw_kidney(rng, -1, s), _draw_kidney(rng, 1, s))
    return _Anatomy(
        scale=s,
        body=body,
        dome=dome,
        liver=liver,
        gallbladder=_Ellipsoid(_jitter(rng, (-42, -40, -98), 3.0, s),
                               (15.0 * s, 32.0 * s, 16.0 * s), _rotation(25.0, 0.0, -25.0)),
        spleen=_Ellipsoid(_jitter(rng, (84, 50, -55), 4.0, s),
                          _vec3(np.array([24.0, 58.0, 50.0]) * s * rng.uniform(0.85, 1.15)),
                          _rotation(28.0 + rng.normal(0, 5))),
        spleen_hilum=_Ellipsoid((46.0 * s, 40.0 * s, -55.0), (30.0 * s, 45.0 * s, 70.0 * s),
                                _rotation(28.0)),
        stomach=_Ellipsoid(_jitter(rng, (58, -20, -52), 5.0, s),
                           (42.0 * s, 36.0 * s, 42.0 * s), _rotation(35.0, 0.0, 10.0)),
        heart=_Ellipsoid((22.0 * s, -40.0 * s, 62.0), (72.0 * s, 62.0 * s, 66.0),
                         _rotation(-25.0)),
        kidneys=kidneys,
        aorta=(13.0 * s, -2.0 * s, float(rng.uniform(10.5, 13.0))),
        ivc=(-24.0 * s, 4.0 * s, float(rng.uniform(10.0, 13.0))),
        vertebra=(0.0, 36.0 * s, 21.0 * s),
        disc_phase=float(rng.uniform(0.0, 34.0)),
        psoas=(37.0 * s, 34.0 * s, 17.0 * s),
        pancreas=_chain(((-28, -8, -112), (0, -4, -104), (35, 8, -96), (72, 38, -84)),
                        (13.0, 10.0, 10.0), s),
        portal_outside=_chain(((72, 48, -86), (30, 18, -100), (-6, 4, -106), (-30, 10, -86)),
                              (4.5, 5.5, 7.0), s),
        mesenteric=((-6.0 * s, -26.0 * s, 5.5), (12.0 * s, -22.0 * s, 3.5)),
        small_bowel=_draw_small_bowel(rng, s),
        colon=_chain(((-92, 18, -270), (-90, 8, -150), (-72, -42, -122), (-25, -68, -135),
                      (30, -66, -140), (76, -42, -112), (96, 12, -140), (96, 18, -270)),
                     (21.0, 21.0, 19.0, 19.0, 19.0, 18.0, 17.0), s),
        bowel_gas=_Fourier.draw(rng, 24, (12.0, 30.0)),
        liver_texture=_Fourier.draw(rng, 24, (8.0, 30.0)),
        ribs=tuple(((5.0 - 20.0 * i) * s + rng.normal(0, 2), 35.0 * s, end)
                   for i, end in enumerate((2.7, 2.6, 2.45, 2.2, 1.6, 1.1))),
    )


def _chain(points: Sequence[Sequence[float]], radii: Sequence[float], s: float
           ) -> tuple[_Tube, ...]:
    """Tubes joining consecutive points (scaled by s) with the given radii (mm)."""
    p = [_vec3(np.asarray(point) * s) for point in points]
    return tuple(_Tube(a, b, r * s) for a, b, r in zip(p[:-1], p[1:], radii, strict=True))


def _draw_small_bowel(rng: np.random.Generator, s: float) -> tuple[_Tube, ...]:
    """Small-bowel loops: smooth random walks of tubes in the central lower abdomen."""
    centre = np.array([5.0, -20.0, -190.0]) * s
    semi = np.array([82.0, 52.0, 70.0]) * s
    tubes: list[_Tube] = []
    for _ in range(12):
        point = centre + rng.uniform(-0.7, 0.7, size=3) * semi
        direction = rng.normal(size=3)
        radius = float(rng.uniform(10.0, 14.0)) * s
        for _ in range(18):
            direction = direction / np.linalg.norm(direction) + 0.8 * rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            step = point + direction * 20.0 * s
            if (((step - centre) / semi) ** 2).sum() > 1.0:  # turn back inside the region
                direction = centre - point + rng.normal(0.0, 20.0, size=3)
                direction /= np.linalg.norm(direction)
                step = point + direction * 20.0 * s
            tubes.append(_Tube(_vec3(point), _vec3(step), radius))
            point = step
    return tuple(tubes)


def _draw_kidney(rng: np.random.Generator, side: int, s: float) -> _Kidney:
    """A kidney on the patient's right (side -1, lower) or left (+1)."""
    z = -122.0 if side < 0 else -106.0
    centre = _jitter(rng, (side * 76.0, 60.0, z), 3.0, s)
    centre = (centre[0], centre[1], z * s)
    axes = _rotation(side * -28.0, side * 12.0, -18.0)
    semi = _vec3(np.array([27.0, 22.0, 54.0]) * s * rng.uniform(0.9, 1.1))
    shell = _Ellipsoid(centre, semi, axes)
    medial = np.asarray(axes[0]) * -side * semi[0] * 0.7 - np.asarray(axes[1]) * semi[1] * 0.2
    sinus_centre = _vec3(np.asarray(centre) + medial)
    sinus = _Ellipsoid(sinus_centre, (semi[0] * 0.35, semi[1] * 0.3, semi[2] * 0.4), axes)
    pelvis = _Ellipsoid(sinus_centre, (semi[0] * 0.2, semi[1] * 0.15, semi[2] * 0.18), axes)
    return _Kidney(shell, sinus, pelvis, cortex_mm=6.0)


# --------------------------------------------------------------------------------------------
# The liver region: one definition for sampling, lesion placement and vessel growth


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


# --------------------------------------------------------------------------------------------
# Painting the tissue map


def _paint(tissue: npt.NDArray[np.uint8], box: _Box, mask: Mask, code: Tissue,
           only: Sequence[Tissue] | None = None) -> None:
    """Set `code` where `mask` (broadcast to the box) is true, optionally only over `only`."""
    view = tissue[box.index]
    mask = np.broadcast_to(mask, view.shape)
    if only is not None:
        allowed = np.zeros(256, dtype=bool)
        allowed[list(only)] = True
        mask = mask & allowed[view]
    view[mask] = code


def _paint_body(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Table, skin and subcutaneous fat, abdominal-wall muscle, visceral fat."""
    box = grid.full()
    body = anatomy.body
    table_top = np.float32(grid.pose.translation_mm[1] + body.layer(2)[2] * 1.0 + 3.0)
    lateral = np.abs(box.px) < 230.0  # table width follows the patient only roughly
    shell = (box.wy >= table_top) & (box.wy < table_top + 3.0)
    shell |= (box.wy >= table_top + 22.0) & (box.wy < table_top + 25.0)
    _paint(tissue, box, lateral & (box.wy >= table_top) & (box.wy < table_top + 25.0),
           Tissue.TABLE_FOAM)
    _paint(tissue, box, lateral & shell, Tissue.TABLE)
    taper = _Body.taper(box.pz)
    for depth, code in ((2, Tissue.FAT), (1, Tissue.MUSCLE), (0, Tissue.VISCERAL_FAT)):
        _paint(tissue, box, body.radius(box.px, box.py, depth) <= taper, code)


def _paint_thorax(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Lung bases above the diaphragm, the diaphragm itself and the bottom of the heart."""
    c = anatomy.body.layer(0)
    box = grid.box((-c[0], -c[1], -110.0), (c[0], c[2], 200.0))
    if box is None:
        return
    cavity = anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz)
    dome = anatomy.dome.height(box.px, box.py)
    _paint(tissue, box, cavity & (box.pz > dome - 5.0), Tissue.MUSCLE)
    above = cavity & (box.pz > dome + 1.0)
    _paint(tissue, box, above, Tissue.LUNG)
    heart = anatomy.heart.q(box.px, box.py, box.pz)
    _paint(tissue, box, above & (heart <= 1.0), Tissue.MYOCARDIUM)
    _paint(tissue, box, above & (heart <= 0.7), Tissue.BLOOD)


def _paint_bowel(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Colon (gas mottled with stool) and small-bowel loops (fluid, little gas), each with an
    enhancing 2.5 mm wall, in the abdominal cavity below the diaphragm."""
    lows, highs = zip(*(tube.bounds() for tube in anatomy.colon + anatomy.small_bowel),
                      strict=True)
    region_box = grid.box(np.min(lows, axis=0), np.max(highs, axis=0))
    if region_box is None:
        return
    gas_field = anatomy.bowel_gas(region_box.px, region_box.py, region_box.pz)  # one pass
    for tubes, gas_level in ((anatomy.colon, 0.35), (anatomy.small_bowel, 1.4)):
        for tube in tubes:
            box = grid.box(*tube.bounds())
            if box is None:
                continue
            within = tuple(slice(a.start - r.start, a.stop - r.start)
                           for a, r in zip(box.index, region_box.index, strict=True))
            region = anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz) - 0.03
            region = region & (box.pz < anatomy.dome.height(box.px, box.py) - 30.0)
            distance2 = tube.distance2(box.px, box.py, box.pz)
            _paint(tissue, box, region & (distance2 <= tube.radius**2), Tissue.BOWEL_WALL,
                   (Tissue.VISCERAL_FAT,))
            lumen = region & (distance2 <= (tube.radius - 2.5) ** 2)
            _paint(tissue, box, lumen, Tissue.BOWEL_CONTENT,
                   (Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL))
            gas = gas_field[within] > gas_level
            _paint(tissue, box, lumen & gas, Tissue.GAS, (Tissue.BOWEL_CONTENT,))


def _paint_spine(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Psoas and paraspinal muscles, vertebral bodies with discs, canal, posterior elements."""
    s = anatomy.scale
    vx, vy, half = anatomy.vertebra
    box = grid.box((-80.0 * s, vy - 40.0 * s, -400.0), (80.0 * s, vy + 80.0 * s, 200.0))
    if box is None:
        return
    px, py, pz = box.px, box.py, box.pz
    wall = anatomy.body.radius(px, py, 1) <= _Body.taper(pz)
    ax, ay, amax = anatomy.psoas
    psoas_r = np.clip((-pz - 95.0 * s) / (70.0 * s), 0.0, 1.0) * amax
    for side in (-1.0, 1.0):
        _paint(tissue, box, (px - side * ax) ** 2 + ((py - ay) / 1.15) ** 2 <= psoas_r**2,
               Tissue.MUSCLE)
        paraspinal = ((px - side * 30.0 * s) / (25.0 * s)) ** 2 + ((py - vy - 47.0 * s)
                                                                  / (21.0 * s)) ** 2
        _paint(tissue, box, (paraspinal <= 1.0) & wall, Tissue.MUSCLE)
    phase = np.mod(pz - anatomy.disc_phase, 34.0)  # mm within one vertebra + disc
    disc = phase < 8.0
    vb = ((px - vx) / half) ** 2 + ((py - vy) / (0.8 * half)) ** 2
    vb_inner = ((px - vx) / (half - 2.5)) ** 2 + ((py - vy) / (0.8 * half - 2.5)) ** 2
    _paint(tissue, box, (vb <= 1.0) & ~disc, Tissue.CORTICAL_BONE)
    _paint(tissue, box, (vb_inner <= 1.0) & ~disc, Tissue.MARROW)
    _paint(tissue, box, (vb <= 1.0) & disc, Tissue.DISC)
    canal_y = vy + 0.8 * half + 11.0 * s
    canal = (px - vx) ** 2 + (py - canal_y) ** 2
    arch = (canal <= (15.0 * s) ** 2) & (py > canal_y - 6.0 * s)
    spinous = ((px - vx) / (4.5 * s)) ** 2 + ((py - canal_y - 28.0 * s) / (17.0 * s)) ** 2 <= 1
    transverse = (((np.abs(px - vx) - 22.0 * s) / (13.0 * s)) ** 2
                  + ((py - canal_y + 2.0 * s) / (4.5 * s)) ** 2 <= 1.0)
    _paint(tissue, box, arch & (phase > 9.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, spinous & (phase > 12.0) & (phase < 30.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, transverse & (phase > 17.0) & (phase < 25.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, canal <= (8.5 * s) ** 2, Tissue.CSF)


def _paint_ribs(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Lower ribs in the body wall: oblique bands that descend from the spine to the front,
    ending anteriorly in costal cartilage (lower ribs end laterally)."""
    c = anatomy.body.layer(1)
    top = max(rib[0] for rib in anatomy.ribs) + 10.0
    bottom = min(rib[0] - rib[1] * rib[2] for rib in anatomy.ribs) - 10.0
    box = grid.box((-c[0], -c[1], bottom), (c[0], c[2], top))
    if box is None:
        return
    radius = anatomy.body.radius(box.px, box.py, 0)[0]
    band = np.flatnonzero((radius > 0.95) & (radius < 1.12))
    if band.size == 0:
        return
    angle = np.arctan2(box.px[0].ravel()[band], box.py[0].ravel()[band])  # 0 = straight back
    reach = np.abs(angle) - 0.38
    r = radius.ravel()[band][None, :]
    taper = _Body.taper(box.pz).reshape(-1, 1)
    ring = (r > taper * 1.015) & (r < taper * 1.06)
    pz = box.pz.reshape(-1, 1)
    rows, cols = np.unravel_index(band, radius.shape)
    view = tissue[box.index]
    values = view[:, rows, cols]
    for z_back, slope, end in anatomy.ribs:
        centre = z_back - slope * reach
        rib = ring & (np.abs(pz - centre[None, :]) < 3.5) & (reach > 0)[None, :]
        rib &= (np.abs(angle) < end)[None, :]
        cartilage = rib & (np.abs(angle) > 2.25)[None, :]
        values[rib & ~cartilage] = Tissue.RIB
        values[cartilage] = Tissue.CARTILAGE
    view[:, rows, cols] = values


def _paint_organs(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Kidneys, great vessels, pancreas, stomach, spleen."""
    for kidney in anatomy.kidneys:
        box = grid.box(*kidney.shell.bounds(pad=1.0))
        if box is None:
            continue
        q = kidney.shell.q(box.px, box.py, box.pz)
        inner = 1.0 - kidney.cortex_mm / min(kidney.shell.semi)
        _paint(tissue, box, q <= 1.0, Tissue.KIDNEY_CORTEX)
        _paint(tissue, box, q <= inner**2, Tissue.KIDNEY_MEDULLA)
        _paint(tissue, box, kidney.sinus.inside(box), Tissue.RENAL_SINUS)
        _paint(tissue, box, kidney.pelvis.inside(box), Tissue.URINE)
    box = grid.box((-60.0, -60.0, -400.0), (60.0, 60.0, 60.0))
    if box is not None:
        for (x, y, r), code, top in ((anatomy.aorta, Tissue.AORTA, 60.0),
                                     (anatomy.ivc, Tissue.IVC, 30.0)):
            ellipse = ((box.px - x) / r) ** 2 + ((box.py - y) / (0.8 * r if code == Tissue.IVC
                                                               else r)) ** 2 <= 1.0
            _paint(tissue, box, ellipse & (box.pz < top), code)
        for (x, y, r), code in zip(anatomy.mesenteric, (Tissue.PORTAL, Tissue.AORTA),
                                   strict=True):
            disc = (box.px - x) ** 2 + (box.py - y) ** 2 <= r * r
            _paint(tissue, box, disc & (box.pz < -108.0 * anatomy.scale), code)
    for tubes, code in ((anatomy.pancreas, Tissue.PANCREAS),
                        (anatomy.portal_outside, Tissue.PORTAL)):
        for tube in tubes:
            box = grid.box(*tube.bounds())
            if box is not None:
                _paint(tissue, box, tube.distance2(box.px, box.py, box.pz) <= tube.radius**2,
                       code)
    _paint_stomach(tissue, grid, anatomy)
    box = grid.box(*anatomy.spleen.bounds(pad=1.0))
    if box is not None:
        spleen = anatomy.spleen.inside(box) & ~anatomy.spleen_hilum.inside(box)
        spleen &= box.pz < anatomy.dome.height(box.px, box.py) - 5.0
        spleen &= anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz) - 0.02
        _paint(tissue, box, spleen, Tissue.SPLEEN)


def _paint_stomach(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Stomach: enhancing wall, fluid, and gas above an air-fluid level (anterior, supine)."""
    stomach = anatomy.stomach
    box = grid.box(*stomach.bounds(pad=1.0))
    if box is None:
        return
    q = stomach.q(box.px, box.py, box.pz)
    inner = (1.0 - 5.0 / min(stomach.semi)) ** 2
    below = box.pz < anatomy.dome.height(box.px, box.py) - 5.0
    _paint(tissue, box, (q <= 1.0) & below, Tissue.STOMACH_WALL)
    _paint(tissue, box, (q <= inner) & below, Tissue.STOMACH_FLUID)
    level = np.float32(stomach.centre[1] - 0.35 * stomach.semi[1])
    _paint(tissue, box, (q <= inner) & below & (box.py < level), Tissue.GAS)


def _paint_liver(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Liver parenchyma, gallbladder, intrahepatic IVC and the vein trees inside the liver."""
    box = grid.box(*anatomy.liver.bounds())
    if box is not None:
        _paint(tissue, box, _liver_inside(anatomy, box.px, box.py, box.pz), Tissue.LIVER)
    gallbladder = grid.box(*anatomy.gallbladder.bounds(pad=1.0))
    if gallbladder is not None:
        below = gallbladder.pz < -40.0
        _paint(tissue, gallbladder, anatomy.gallbladder.inside(gallbladder) & below,
               Tissue.GALLBLADDER)
    for tube, code in anatomy.vessels:
        vessel = grid.box(*tube.bounds())
        if vessel is not None:
            inside = tube.distance2(vessel.px, vessel.py, vessel.pz) <= tube.radius**2
            _paint(tissue, vessel, inside, code, (Tissue.LIVER,))


def _render_tissue(anatomy: _Anatomy, grid: _Grid) -> npt.NDArray[np.uint8]:
    """The tissue code map (z, y, x) of `anatomy` on `grid` (painter's order)."""
    tissue = np.zeros(grid.geometry.shape, dtype=np.uint8)
    _paint_body(tissue, grid, anatomy)
    _paint_thorax(tissue, grid, anatomy)
    _paint_bowel(tissue, grid, anatomy)
    _paint_ribs(tissue, grid, anatomy)
    _paint_spine(tissue, grid, anatomy)
    _paint_organs(tissue, grid, anatomy)
    _paint_liver(tissue, grid, anatomy)
    return tissue


# --------------------------------------------------------------------------------------------
# Lesions


@dataclass(frozen=True)
class _LesionShape:
    """An irregular lesion at scale 1: a main ellipsoid with a direction-dependent radius
    (1 + sum of low-order terms) and 0-2 overlapping satellite lobes, in its body frame."""

    centre: Vec3
    axes: tuple[Vec3, Vec3, Vec3]
    semi: Vec3
    bump_dirs: tuple[Vec3, ...]
    bump_weights: tuple[float, ...]  # even terms
    skew_weights: tuple[float, ...]  # odd terms
    satellites: tuple[tuple[Vec3, Vec3], ...]  # (offset, semi-axes) in the body frame

    @property
    def radius_mm(self) -> float:
        """Bounding radius (mm) at scale 1."""
        wobble = 1.0 + sum(abs(w) for w in self.bump_weights + self.skew_weights)
        main = max(self.semi) * wobble
        sat = [float(np.linalg.norm(o)) + max(sm) for o, sm in self.satellites]
        return max([main, *sat])

    def rho(self, px: Array, py: Array, pz: Array, scale: float) -> Array:
        """Normalised radius (< 1 inside) of the lesion grown by `scale` about its centre."""
        main = _Ellipsoid(self.centre, self.semi, self.axes).scaled(scale)
        u, v, w = main.local(px, py, pz)
        r = np.sqrt(u * u + v * v + w * w) + np.float32(1e-6)
        wobble: Array | float = 1.0
        for direction, even, odd in zip(self.bump_dirs, self.bump_weights, self.skew_weights,
                                        strict=True):
            cos = (u * direction[0] + v * direction[1] + w * direction[2]) / r
            wobble = wobble + np.float32(even) * cos * cos + np.float32(odd) * cos**3
        a, b, c = main.semi
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2) / wobble
        for offset, semi in self.satellites:
            lobe = ((u - offset[0] * scale) / (semi[0] * scale)) ** 2
            lobe = lobe + ((v - offset[1] * scale) / (semi[1] * scale)) ** 2
            lobe = lobe + ((w - offset[2] * scale) / (semi[2] * scale)) ** 2
            rho = np.minimum(rho, np.sqrt(lobe))
        return _f32(rho)


@dataclass(frozen=True)
class _LesionLook:
    """A lesion's appearance at one time point (HU, mm)."""

    scale: float
    core_hu: float
    rim_hu: float  # added on a ring about rim_mm wide just inside the edge
    rim_mm: float
    necrosis: float  # normalised radius of the necrotic core, 0 = none
    necrosis_hu: float
    spots: tuple[tuple[Vec3, float], ...]  # calcified spots: (offset as a fraction of semi, mm)
    calcified_area: float  # texture threshold above which the lesion is calcified, 0 = none
    calcium_hu: float

    @property
    def calcified(self) -> bool:
        return bool(self.spots) or self.calcified_area > 0


@dataclass(frozen=True)
class _Lesion:
    """A planned lesion: shape, look at baseline and tp1 (None = absent), and its tp1 event."""

    key: int
    shape: _LesionShape
    texture: _Fourier
    baseline: _LesionLook | None
    tp1: _LesionLook | None
    event: str  # shrink, grow, stable, vanish (baseline lesions) or new

    def look(self, timepoint: str) -> _LesionLook | None:
        return self.baseline if timepoint == "baseline" else self.tp1

    @property
    def reach_mm(self) -> float:
        """Bounding radius (mm) over both time points."""
        scales = [look.scale for look in (self.baseline, self.tp1) if look is not None]
        return self.shape.radius_mm * max(scales)


_EVENTS = ("vanish", "shrink", "stable", "grow")
_SCENARIO_EVENTS: dict[str, tuple[float, float, float, float]] = {
    "response": (0.15, 0.6, 0.2, 0.05),
    "stable": (0.05, 0.2, 0.6, 0.15),
    "progression": (0.0, 0.1, 0.35, 0.55),
    "complete_response": (1.0, 0.0, 0.0, 0.0),
}


def _scenario(index: int, rng: np.random.Generator) -> str:
    """Patient 2 progresses with a new lesion, patient 3 responds completely; others drawn."""
    fixed = {0: "response", 1: "progression", 2: "complete_response"}
    if index in fixed:
        return fixed[index]
    return str(rng.choice(["response", "stable", "progression"], p=[0.45, 0.3, 0.25]))


def _lesion_count(index: int, scenario: str, rng: np.random.Generator) -> int:
    weights = 0.75 ** np.arange(10)
    n = int(rng.choice(np.arange(1, 11), p=weights / weights.sum()))
    if index == 0:
        n = max(n, 3)  # both size groups in every cohort
    if scenario == "complete_response":
        n = min(n, 3)
    return n


def _design_diameters(n: int, d_min: float, rng: np.random.Generator) -> list[float]:
    """Target longest diameters (mm): the first >= 25 (a RECIST target), the second < 16."""
    small_hi = max(d_min + 3.0, 16.0)
    out = [float(np.exp(rng.uniform(np.log(25.0), np.log(50.0))))]
    for i in range(1, n):
        small = i == 1 or rng.random() < 0.4
        low, high = (d_min, small_hi) if small else (22.0, 50.0)
        out.append(float(np.exp(rng.uniform(np.log(low), np.log(high)))))
    return out


def _draw_shape(rng: np.random.Generator, diameter: float, centre: Vec3) -> _LesionShape:
    """An irregular lesion whose longest axial diameter is about `diameter` mm."""
    terms = 4
    dirs = rng.normal(size=(terms, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    even = rng.uniform(-0.16, 0.16, size=terms)
    odd = rng.uniform(-0.14, 0.14, size=terms)
    total = np.abs(even).sum() + np.abs(odd).sum()
    if total > 0.45:  # keep the radius factor within [0.55, 1.45]: star-shaped, one piece
        even, odd = even * 0.45 / total, odd * 0.45 / total
    a = diameter / 2.0 / 1.15
    semi = (a, a * float(rng.uniform(0.72, 1.0)), a * float(rng.uniform(0.75, 1.05)))
    satellites: list[tuple[Vec3, Vec3]] = []
    if diameter >= 15.0:
        for _ in range(int(rng.integers(0, 3))):
            direction = rng.normal(size=3)
            direction[2] *= 0.5
            direction /= np.linalg.norm(direction)
            offset = _vec3(direction * a * rng.uniform(0.4, 0.6))
            satellites.append((offset, _vec3(a * rng.uniform(0.3, 0.45, size=3))))
    return _LesionShape(
        centre=centre,
        axes=_rotation(rng.uniform(0, 180), rng.normal(0, 12), rng.normal(0, 12)),
        semi=semi,
        bump_dirs=tuple(_vec3(d) for d in dirs),
        bump_weights=tuple(float(v) for v in even),
        skew_weights=tuple(float(v) for v in odd),
        satellites=tuple(satellites),
    )


def _draw_look(rng: np.random.Generator, diameter: float) -> _LesionLook:
    """A baseline appearance: hypodense core, enhancing rim, maybe necrosis or calcium."""
    necrotic = diameter >= 20.0 and rng.random() < 0.4
    spots: tuple[tuple[Vec3, float], ...] = ()
    if rng.random() < 0.15:
        spots = tuple((_vec3(rng.uniform(-0.5, 0.5, size=3)), float(rng.uniform(1.2, 2.5)))
                      for _ in range(int(rng.integers(1, 4))))
    return _LesionLook(
        scale=1.0,
        core_hu=float(rng.uniform(42.0, 68.0)),
        rim_hu=float(rng.uniform(45.0, 80.0)),
        rim_mm=float(rng.uniform(1.5, 3.0)),
        necrosis=float(rng.uniform(0.3, 0.55)) if necrotic else 0.0,
        necrosis_hu=float(rng.uniform(10.0, 25.0)),
        spots=spots,
        calcified_area=0.0,
        calcium_hu=float(rng.uniform(300.0, 650.0)),
    )


def _tp1_look(rng: np.random.Generator, look: _LesionLook, event: str, diameter: float,
              d_min: float) -> _LesionLook | None:
    """The tp1 appearance after `event` of a lesion designed `diameter` mm across at baseline:
    scaled, never below `d_min` nor above 60 mm; shrinking or stable lesions may calcify."""
    if event == "vanish":
        return None
    scale = {"shrink": rng.uniform(0.45, 0.8), "stable": rng.uniform(0.92, 1.08),
             "grow": rng.uniform(1.2, 1.45)}[event]
    scale = float(np.clip(scale, d_min / diameter, max(1.0, 60.0 / diameter)))
    calcify = event in ("shrink", "stable") and rng.random() < 0.35
    core = look.core_hu - (rng.uniform(3.0, 15.0) if event == "shrink" else 0.0)
    return replace(look, scale=scale, core_hu=float(core),
                   calcified_area=float(rng.uniform(0.7, 1.1)) if calcify else 0.0)


@dataclass
class _Placer:
    """Places lesions deep enough in the liver and apart from each other (patient frame)."""

    liver: _LiverMap
    gap_mm: float
    placed: list[tuple[npt.NDArray[np.float64], float]] = field(default_factory=list)

    def place(self, rng: np.random.Generator, reach_mm: float) -> Vec3 | None:
        """A centre whose ball of `reach_mm` is inside the liver and clear of placed ones."""
        ok = self.liver.depth_mm >= reach_mm + 3.0
        candidates = self.liver.points(ok)
        for centre, reach in self.placed:
            d2 = ((candidates - centre) ** 2).sum(axis=1)
            candidates = candidates[d2 >= (reach + reach_mm + self.gap_mm) ** 2]
        if len(candidates) == 0:
            return None
        chosen = candidates[int(rng.integers(len(candidates)))]
        self.placed.append((chosen, reach_mm))
        return (float(chosen[0]), float(chosen[1]), float(chosen[2]))


def _plan_lesions(rng: np.random.Generator, index: int, scenario: str, liver: _LiverMap,
                  d_min: float, gap_mm: float) -> tuple[_Lesion, ...]:
    """Baseline lesions with their tp1 fate, then new tp1 lesions; keys 1, 2, ..."""
    n = _lesion_count(index, scenario, rng)
    probabilities = _SCENARIO_EVENTS[scenario]
    placer = _Placer(liver, gap_mm)
    lesions: list[_Lesion] = []
    for diameter in _design_diameters(n, d_min, rng):
        event = str(rng.choice(_EVENTS, p=probabilities))
        look = _draw_look(rng, diameter)
        tp1 = _tp1_look(rng, look, event, diameter, d_min)
        lesion = _fit(rng, placer, diameter, look, tp1, event, len(lesions) + 1)
        if lesion is not None:
            lesions.append(lesion)
    for _ in range(_new_lesion_count(index, scenario, rng)):
        diameter = float(np.exp(rng.uniform(np.log(max(d_min, 6.0)), np.log(22.0))))
        look = replace(_draw_look(rng, diameter), spots=(), necrosis=0.0)
        lesion = _fit(rng, placer, diameter, None, look, "new", len(lesions) + 1)
        if lesion is not None:
            lesions.append(lesion)
    return tuple(lesions)


def _new_lesion_count(index: int, scenario: str, rng: np.random.Generator) -> int:
    if index == 1:
        return int(rng.integers(1, 3))
    chance = {"progression": 0.6, "stable": 0.1, "response": 0.05}.get(scenario, 0.0)
    return int(rng.integers(1, 3)) if rng.random() < chance else 0


def _fit(rng: np.random.Generator, placer: _Placer, diameter: float,
         baseline: _LesionLook | None, tp1: _LesionLook | None, event: str, key: int
         ) -> _Lesion | None:
    """Place a lesion, shrinking its design up to 6 times when it does not fit."""
    for _ in range(6):
        shape = _draw_shape(rng, diameter, (0.0, 0.0, 0.0))
        lesion = _Lesion(key, shape, _Fourier.draw(rng, 8, (4.0, 12.0)), baseline, tp1, event)
        centre = placer.place(rng, lesion.reach_mm)
        if centre is not None:
            return replace(lesion, shape=replace(shape, centre=centre))
        diameter *= 0.85
    logger.info("a %s lesion did not fit in the liver and was left out", event)
    return None


def _lesion_hu(lesion: _Lesion, look: _LesionLook, rho: Array, box: _Box) -> Array:
    """HU inside a lesion: core + texture, rim enhancement, necrosis, calcification."""
    texture = lesion.texture(box.px, box.py, box.pz)
    width = min(0.18, look.rim_mm / (float(np.mean(lesion.shape.semi)) * look.scale))
    rim = np.exp(-(((rho - (1.0 - 0.5 * width)) / (0.5 * width)) ** 2))
    hu = np.float32(look.core_hu) + 5.0 * texture + np.float32(look.rim_hu) * rim
    if look.necrosis > 0:
        core = rho < look.necrosis * (1.0 + 0.25 * texture)
        hu = np.where(core, np.float32(look.necrosis_hu) + 3.0 * texture, hu)
    if look.calcified_area > 0:
        area = (texture > look.calcified_area) & (rho < 0.85)
        hu = np.where(area, np.float32(look.calcium_hu) + 40.0 * texture, hu)
    main = _Ellipsoid(lesion.shape.centre, lesion.shape.semi, lesion.shape.axes).scaled(
        look.scale)
    u, v, w = main.local(box.px, box.py, box.pz)
    for offset, mm in look.spots:
        spot = ((u - offset[0] * main.semi[0]) ** 2 + (v - offset[1] * main.semi[1]) ** 2
                + (w - offset[2] * main.semi[2]) ** 2) <= mm * mm
        hu = np.where(spot, np.float32(look.calcium_hu), hu)
    return np.asarray(hu, dtype=np.float32)


def _paint_lesion(labels: npt.NDArray[np.uint8], hu: Array, grid: _Grid, lesion: _Lesion,
                  look: _LesionLook, label: int) -> None:
    """Paint one lesion (its largest 26-connected piece; at least the voxel at its centre)."""
    reach = lesion.shape.radius_mm * look.scale
    c = np.asarray(lesion.shape.centre)
    box = grid.box(tuple(c - reach), tuple(c + reach))
    if box is None:
        raise RuntimeError(f"lesion {lesion.key} lies outside the CT; report this bug")
    rho = lesion.shape.rho(box.px, box.py, box.pz, look.scale)
    inside = rho <= 1.0
    pieces, count = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    if count > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        inside = pieces == int(np.argmax(sizes)) + 1
    elif count == 0:
        world = grid.pose.to_world(c)
        nearest = np.rint(grid.geometry.physical_to_index(world)).astype(int)
        local = nearest - [s.start for s in box.index]
        inside[tuple(np.clip(local, 0, np.asarray(inside.shape) - 1))] = True
    labels[box.index][inside] = label
    hu[box.index][inside] = _lesion_hu(lesion, look, rho, box)[inside]


# --------------------------------------------------------------------------------------------
# Patients and cases


@dataclass(frozen=True)
class PatientPlan:
    """Everything drawn for one patient; rendering a time point needs nothing else."""

    seed: int
    index: int
    patient_id: str
    center: str
    protocol: CentreProtocol
    scenario: str
    anatomy: _Anatomy
    lesions: tuple[_Lesion, ...]
    geometry: Geometry
    poses: dict[str, Pose]
    noise_sd_hu: float
    liver_volume_ml: float
    splits: dict[str, str]


@dataclass(frozen=True)
class SynthCase:
    """One generated CT with its masks (all on the same grid).

    `ct` holds int16 HU, `liver` uint8 0/1, `lesions` uint8 instance labels 1..K. `lesion_keys`
    maps each label to the patient's lesion key (the same physical lesion at both time points).
    """

    patient_id: str
    timepoint: str
    center: str
    ct: Volume
    liver: Volume
    lesions: Volume
    lesion_keys: dict[int, int]


def _patient_id(index: int) -> str:
    return f"synth{index + 1:03d}"


def _check_sampling(matrix: int, slices: int | None) -> None:
    if not 32 <= matrix <= 2048:
        raise InputError(f"--matrix {matrix} is out of range; give 32..2048 pixels (512 = CT)")
    if slices is not None and not 8 <= slices <= 2000:
        raise InputError(f"--slices {slices} is out of range; give 8..2000 slices per CT")


def _streams(seed: int, index: int) -> list[np.random.SeedSequence]:
    """Independent random streams of one patient: protocol, anatomy, lesions, pose, noise."""
    return np.random.SeedSequence([seed, index]).spawn(5)


def plan_patient(seed: int, index: int, *, matrix: int = 512, slices: int | None = None
                 ) -> PatientPlan:
    """Draw patient `index` (0-based) of cohort `seed`: anatomy, lesions, grid and poses.

    The anatomy does not depend on `matrix` and `slices`; the lesions' smallest designed
    diameter (max(6 mm, 2.5 pixels, 1.5 slices)) and their gap (one voxel diagonal + 1.5 mm)
    do, so that every lesion is visible and separate at the requested sampling.
    """
    _check_sampling(matrix, slices)
    protocol_rng, anatomy_rng, lesion_rng, pose_rng = (
        np.random.default_rng(s) for s in _streams(seed, index)[:4])
    center = ("A", "B")[index] if index < 2 else ("A" if protocol_rng.random() < 0.3 else "B")
    protocol = PROTOCOLS[center]
    scenario = _scenario(index, protocol_rng)
    anatomy = _draw_anatomy(anatomy_rng)
    anatomy, liver = _fit_liver_volume(anatomy, float(anatomy_rng.uniform(1250.0, 1900.0)))
    anatomy = replace(anatomy, vessels=_grow_vessels(anatomy_rng, anatomy, liver))
    geometry, poses = _draw_geometry(pose_rng, protocol, anatomy, liver, matrix, slices)
    spacing = geometry.spacing
    d_min = max(6.0, 2.5 * spacing[2], 1.5 * spacing[0])
    gap = math.sqrt(sum(v * v for v in spacing)) + 1.5
    lesions = _plan_lesions(lesion_rng, index, scenario, liver, d_min, gap)
    return PatientPlan(
        seed=seed, index=index, patient_id=_patient_id(index), center=center,
        protocol=protocol, scenario=scenario, anatomy=anatomy, lesions=lesions,
        geometry=geometry, poses=poses,
        noise_sd_hu=protocol.noise_sd_hu * float(protocol_rng.uniform(0.9, 1.2)),
        liver_volume_ml=liver.volume_ml,
        splits={"baseline": "training" if index % 2 == 0 else "valB", "tp1": "valTP1"},
    )


def _draw_geometry(rng: np.random.Generator, protocol: CentreProtocol, anatomy: _Anatomy,
                   liver: _LiverMap, matrix: int, slices: int | None
                   ) -> tuple[Geometry, dict[str, Pose]]:
    """The CT grid (shared by both time points) and the baseline and tp1 poses."""
    skin = anatomy.body.layer(2)
    fov_lo, fov_hi = protocol.fov_range_mm
    fov = float(np.clip(2.0 * skin[0] + rng.uniform(30.0, 80.0), fov_lo, fov_hi))
    liver_bottom = liver.z_range()[0]
    top = 20.0
    coverage = max(float(rng.uniform(190.0, 230.0)) * anatomy.scale, top - liver_bottom + 30.0)
    n = slices if slices is not None else max(8, round(coverage / protocol.slice_spacing_mm))
    dz = protocol.slice_spacing_mm if slices is None else coverage / n
    dxy = fov / matrix
    table_depth = 30.0
    ty_lo = -fov / 2 + skin[1] + 8.0
    ty_hi = fov / 2 - skin[2] - table_depth
    ty = float(np.clip(rng.uniform(-10.0, 25.0), ty_lo, max(ty_lo, ty_hi)))
    tz = float(rng.uniform(-150.0, 50.0))
    baseline = Pose(0.0, (float(rng.uniform(-8.0, 8.0)), ty, tz))
    shift = np.array([rng.uniform(2.0, 8.0), rng.uniform(0.0, 3.0), rng.uniform(3.0, 12.0)])
    shift *= rng.choice([-1.0, 1.0], size=3)
    tp1 = Pose(float(rng.uniform(1.5, 5.0) * rng.choice([-1.0, 1.0])),
               _vec3(np.asarray(baseline.translation_mm) + shift))
    z_first = top - n * dz + dz / 2.0
    origin = (-fov / 2 + dxy / 2, -fov / 2 + dxy / 2, tz + z_first)
    geometry = Geometry((n, matrix, matrix), (dz, dxy, dxy), origin)
    return geometry, {"baseline": baseline, "tp1": tp1}


def render_case(plan: PatientPlan, timepoint: str = "baseline") -> SynthCase:
    """Render one CT of a planned patient: int16 HU, liver mask, lesion labels (no files)."""
    if timepoint not in TIMEPOINTS:
        raise InputError(f"timepoint {timepoint!r} is not one of {', '.join(TIMEPOINTS)}")
    noise_stream = _streams(plan.seed, plan.index)[4].spawn(2)[TIMEPOINTS.index(timepoint)]
    rng = np.random.default_rng(noise_stream)
    grid = _Grid(plan.geometry, plan.poses[timepoint])
    tissue = _render_tissue(plan.anatomy, grid)
    lut = _tissue_hu(plan.protocol, rng)
    if timepoint == "tp1":
        lut[Tissue.LIVER] -= rng.uniform(0.0, 10.0)  # chemotherapy-associated steatosis
    hu = lut[tissue]
    _add_liver_texture(hu, tissue, grid, plan.anatomy)
    labels = np.zeros(plan.geometry.shape, dtype=np.uint8)
    keys: dict[int, int] = {}
    for lesion in plan.lesions:
        look = lesion.look(timepoint)
        if look is not None:
            keys[len(keys) + 1] = lesion.key
            _paint_lesion(labels, hu, grid, lesion, look, len(keys))
    ct = _acquire(hu, plan, rng)
    liver = np.isin(tissue, np.asarray(LIVER_TISSUES, dtype=np.uint8)) | (labels > 0)
    meta = {"source": f"livermets synth seed {plan.seed}", "modality": "CT"}
    return SynthCase(
        patient_id=plan.patient_id,
        timepoint=timepoint,
        center=plan.center,
        ct=Volume(ct, plan.geometry, meta),
        liver=Volume(liver.astype(np.uint8), plan.geometry, meta),
        lesions=Volume(labels, plan.geometry, meta),
        lesion_keys=keys,
    )


def generate_case(seed: int, patient_index: int, timepoint: str = "baseline", *,
                  matrix: int = 512, slices: int | None = None) -> SynthCase:
    """One CT of the generated cohort, as arrays (nothing is written).

    Identical to the files `generate_cohort(seed=seed, matrix=matrix, slices=slices)` writes
    for patient `patient_index` (0-based: 0 is synth001) at `timepoint` (baseline or tp1).
    """
    if patient_index < 0:
        raise InputError(f"patient index {patient_index} must be >= 0")
    return render_case(plan_patient(seed, patient_index, matrix=matrix, slices=slices),
                       timepoint)


def _add_liver_texture(hu: Array, tissue: npt.NDArray[np.uint8], grid: _Grid,
                       anatomy: _Anatomy) -> None:
    """Low-frequency parenchymal heterogeneity (about +-4 HU) on the liver only."""
    box = grid.box(*anatomy.liver.bounds())
    if box is None:
        return
    texture = anatomy.liver_texture(box.px, box.py, box.pz)
    view = hu[box.index]
    liver = tissue[box.index] == Tissue.LIVER
    view[liver] += 4.0 * texture[liver]


def _acquire(hu: Array, plan: PatientPlan, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Scanner: correlated noise of SD `noise_sd_hu`, in-plane blur, HU offset, int16."""
    sigma_px = plan.protocol.blur_mm / plan.geometry.spacing[1]
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise *= np.float32(plan.noise_sd_hu / _blur_noise_factor(sigma_px))
    noise += np.float32(plan.protocol.hu_offset)
    hu += noise
    del noise
    if sigma_px >= 0.3:
        ndimage.gaussian_filter(hu, sigma=(0.0, sigma_px, sigma_px), mode="nearest", output=hu)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    np.rint(hu, out=hu)
    return hu.astype(np.int16)


def _blur_noise_factor(sigma_px: float) -> float:
    """Factor by which the in-plane blur lowers the SD of white noise (1 without blur)."""
    if sigma_px < 0.3:
        return 1.0
    impulse = np.zeros(64)
    impulse[32] = 1.0
    kernel = ndimage.gaussian_filter1d(impulse, sigma_px)
    return float((kernel**2).sum())  # two axes: sqrt(sum k^2) each


# --------------------------------------------------------------------------------------------
# Ground truth and the cohort


def _lesion_truth(measure: LesionMeasurement, geometry: Geometry) -> dict[str, Any]:
    lps = geometry.index_to_physical(measure.centroid_index)
    return {
        "id": measure.label,
        "volume_ml": round(measure.volume_ml, 4),
        "longest_axial_diameter_mm": round(measure.longest_diameter_mm, 3),
        "perpendicular_diameter_mm": round(measure.perpendicular_diameter_mm, 3),
        "diameter_slice": measure.diameter_slice,
        "centroid_lps_mm": [round(float(v), 3) for v in lps],
        "centroid_index_zyx": [round(v, 3) for v in measure.centroid_index],
        "size_group": "small" if measure.longest_diameter_mm < SIZE_THRESHOLD_MM else "large",
    }


def _change(before: float, after: float | None) -> str:
    """Per-lesion response from the longest diameter (RECIST-like thresholds)."""
    if after is None:
        return "vanished"
    change = (after - before) / before
    return "decreased" if change <= -0.3 else "increased" if change >= 0.2 else "stable"


def recist_response(baseline_mm: Sequence[float], followup_mm: Sequence[float | None],
                    new_lesions: int) -> dict[str, Any]:
    """RECIST 1.1-like category from the longest diameters of the same lesions.

    `baseline_mm[i]` and `followup_mm[i]` are lesion i's longest diameter at baseline and
    follow-up (None = vanished, counted as 0 mm). Targets: the (at most 2, the RECIST per-organ
    limit; all lesions are hepatic) largest baseline lesions with a diameter >= 10 mm. CR: every
    baseline lesion vanished and no new lesion. PD: a new lesion, or the target sum grew by
    >= 20% and >= 5 mm. PR: the target sum fell by >= 30%. SD otherwise.
    """
    order = sorted(range(len(baseline_mm)), key=lambda i: -baseline_mm[i])
    targets = [i for i in order if baseline_mm[i] >= 10.0][:2]
    before = float(sum(baseline_mm[i] for i in targets))
    after = float(sum(followup_mm[i] or 0.0 for i in targets))
    change = (after - before) / before if before > 0 else 0.0
    if all(v is None for v in followup_mm) and new_lesions == 0:
        category = "CR"
    elif new_lesions > 0 or (change >= 0.2 and after - before >= 5.0):
        category = "PD"
    elif change <= -0.3:
        category = "PR"
    else:
        category = "SD"
    return {"recist_category": category, "target_lesion_indices": targets,
            "sum_diameters_baseline_mm": round(before, 3),
            "sum_diameters_followup_mm": round(after, 3),
            "sum_change_pct": round(100.0 * change, 2), "new_lesions": new_lesions}


@dataclass(frozen=True)
class CohortSummary:
    """What `generate_cohort` wrote: counts and paths."""

    out_dir: Path
    manifest: Path
    truth: Path
    patients: int
    cts: int
    lesions: dict[str, int]  # baseline, tp1
    size_groups: dict[str, dict[str, int]]  # timepoint -> small/large -> count
    centers: dict[str, int]  # A/B -> patients
    recist: dict[str, int]  # CR/PR/SD/PD -> patients
    seconds: float

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        return [
            f"wrote {self.patients} patients, {self.cts} CTs to {self.out_dir}",
            "centres: " + ", ".join(f"{k} {v}" for k, v in sorted(self.centers.items())),
            *(f"{tp} lesions: {self.lesions[tp]} (small < 20 mm: "
              f"{self.size_groups[tp]['small']}, large >= 20 mm: {self.size_groups[tp]['large']})"
              for tp in TIMEPOINTS),
            "response: " + ", ".join(f"{k} {v}" for k, v in self.recist.items()),
            f"manifest: {self.manifest}",
            f"truth: {self.truth}",
        ]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the cohort")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty; choose another folder or pass "
                         "--overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_cohort(out_dir: PathLike, *, patients: int = 10, seed: int = 0, matrix: int = 512,
                    slices: int | None = None, overwrite: bool = False) -> CohortSummary:
    """Write the generated cohort: NIfTI CT and masks, `manifest.csv` and `truth.json`.

    Refuses a non-empty `out_dir` unless `overwrite` (files of this cohort are then replaced;
    other files are left alone). truth.json holds the generator version, seed, sampling, the
    centre protocols and, per patient: centre, scenario, split, the tp1 pose against baseline
    and, per time point, the files, geometry, liver volume and per-lesion truth measured on
    the written masks by `livermets.measure` (id = label, volume_ml,
    longest_axial_diameter_mm, perpendicular_diameter_mm, diameter_slice, centroid_lps_mm,
    centroid_index_zyx, size_group, necrotic, calcified, event, response and the link to the
    other time point: `tp1_id` for baseline lesions, `baseline_id` for tp1 ones, null when
    vanished or new), and the patient's RECIST-like response (see `recist_response`).
    """
    if patients < 1 or patients > 999:
        raise InputError(f"--patients {patients} is out of range; give 1..999")
    if seed < 0:
        raise InputError(f"--seed {seed} must be >= 0")
    _check_sampling(matrix, slices)
    root = Path(out_dir)
    _prepare_out_dir(root, overwrite)
    start = time.perf_counter()
    rows: list[ManifestRow] = []
    truth_patients: dict[str, Any] = {}
    for index in range(patients):
        plan = plan_patient(seed, index, matrix=matrix, slices=slices)
        cases = {tp: render_case(plan, tp) for tp in TIMEPOINTS}
        for tp, case in cases.items():
            rows.append(_write_case(root, case, plan.splits[tp]))
        truth_patients[plan.patient_id] = _patient_truth(plan, cases)
        logger.info("%s (centre %s, %s) written", plan.patient_id, plan.center, plan.scenario)
    manifest = write_manifest(rows, root / "manifest.csv")
    truth = {
        "generator": "livermets synth",
        "generator_version": GENERATOR_VERSION,
        "livermets_version": __version__,
        "seed": seed,
        "matrix": matrix,
        "slices": slices,
        "size_threshold_mm": SIZE_THRESHOLD_MM,
        "conventions": _CONVENTIONS,
        "protocols": {name: asdict(p) for name, p in PROTOCOLS.items()},
        "patients": truth_patients,
    }
    truth_path = root / "truth.json"
    write_text_atomic(truth_path, json.dumps(truth, indent=1) + "\n")
    return _summary(root, manifest, truth_path, truth_patients, time.perf_counter() - start)


_CONVENTIONS = {
    "spacing": "(z, y, x) mm",
    "lps": "patient LPS (x, y, z) mm, as ITK",
    "diameters": "edge to edge on the axial slice of the longest diameter, by livermets.measure",
    "size_group": "small: longest axial diameter < 20 mm, large: >= 20 mm",
    "pose": "world = R(rotation_deg about +z) @ patient + translation_mm; "
            "tp1_from_baseline maps a baseline LPS point to the same anatomy at tp1",
    "response": "per lesion from the longest diameter: vanished, decreased (<= -30%), "
                "increased (>= +20%), stable; new at tp1",
    "recist": "targets: the 2 largest baseline lesions >= 10 mm (RECIST 1.1 per-organ limit); "
              "CR: all lesions vanished and none new; PD: a new lesion or target sum +20% and "
              "+5 mm; PR: target sum -30%; SD otherwise",
    "event": "what the generator did to the lesion at tp1: shrink, stable, grow, vanish, new",
    "splits": "baselines of synth001, synth003, ... training, other baselines valB, tp1 valTP1",
}


def _write_case(root: Path, case: SynthCase, split: str) -> ManifestRow:
    folder = root / case.patient_id / case.timepoint
    image = write_image(case.ct, folder / "ct.nii.gz")
    liver = write_image(case.liver, folder / "liver.nii.gz")
    lesions = write_image(case.lesions, folder / "lesions.nii.gz")
    return ManifestRow(patient_id=case.patient_id, timepoint=case.timepoint, image=image,
                       center=case.center, liver_mask=liver, lesion_mask=lesions, split=split)


def _patient_truth(plan: PatientPlan, cases: dict[str, SynthCase]) -> dict[str, Any]:
    """truth.json entry of one patient (measurements from the arrays that were written)."""
    spacing = plan.geometry.spacing
    measured = {tp: measure_lesions(case.lesions.array, spacing) for tp, case in cases.items()}
    label_of = {tp: {key: label for label, key in case.lesion_keys.items()}
                for tp, case in cases.items()}
    by_key = {lesion.key: lesion for lesion in plan.lesions}
    timepoints: dict[str, Any] = {}
    for tp, case in cases.items():
        other = "tp1" if tp == "baseline" else "baseline"
        lesions = []
        for label, key in case.lesion_keys.items():
            lesion, look = by_key[key], by_key[key].look(tp)
            assert look is not None
            entry = _lesion_truth(measured[tp][label], plan.geometry)
            entry.update(necrotic=look.necrosis > 0, calcified=look.calcified, event=lesion.event)
            entry[f"{other}_id"] = label_of[other].get(key)
            lesions.append(entry)
        timepoints[tp] = {
            "image": f"{plan.patient_id}/{tp}/ct.nii.gz",
            "liver_mask": f"{plan.patient_id}/{tp}/liver.nii.gz",
            "lesion_mask": f"{plan.patient_id}/{tp}/lesions.nii.gz",
            "split": plan.splits[tp],
            "geometry": plan.geometry.to_json(),
            "pose": {"rotation_deg": plan.poses[tp].rotation_deg,
                     "translation_mm": list(plan.poses[tp].translation_mm)},
            "liver_volume_ml": round(float(case.liver.array.sum()) * plan.geometry.voxel_volume_ml,
                                     2),
            "lesions": lesions,
        }
    _add_responses(timepoints, measured)
    base, follow = plan.poses["baseline"], plan.poses["tp1"]
    transform = follow.matrix @ np.linalg.inv(base.matrix)
    return {
        "center": plan.center,
        "scenario": plan.scenario,
        "noise_sd_hu": round(plan.noise_sd_hu, 2),
        "tp1_from_baseline": {
            "rotation_deg": follow.rotation_deg,
            "rotation_centre_lps_mm": list(base.translation_mm),
            "translation_mm": list(np.subtract(follow.translation_mm, base.translation_mm)),
            "matrix": np.round(transform, 6).tolist(),
        },
        "timepoints": timepoints,
        "response": _patient_response(timepoints),
    }


def _add_responses(timepoints: dict[str, Any], measured: dict[str, dict[int, LesionMeasurement]]
                   ) -> None:
    """Per-lesion response and diameter change, both ways."""
    for entry in timepoints["baseline"]["lesions"]:
        after_id = entry["tp1_id"]
        after = None if after_id is None else measured["tp1"][after_id].longest_diameter_mm
        entry["response"] = _change(entry["longest_axial_diameter_mm"], after)
    for entry in timepoints["tp1"]["lesions"]:
        before_id = entry["baseline_id"]
        if before_id is None:
            entry["response"] = "new"
            continue
        before = measured["baseline"][before_id].longest_diameter_mm
        entry["response"] = _change(before, entry["longest_axial_diameter_mm"])
        entry["diameter_change_pct"] = round(
            100.0 * (entry["longest_axial_diameter_mm"] - before) / before, 2)


def _patient_response(timepoints: dict[str, Any]) -> dict[str, Any]:
    base = timepoints["baseline"]["lesions"]
    follow = {entry["id"]: entry for entry in timepoints["tp1"]["lesions"]}
    before = [entry["longest_axial_diameter_mm"] for entry in base]
    after = [None if entry["tp1_id"] is None
             else follow[entry["tp1_id"]]["longest_axial_diameter_mm"] for entry in base]
    new = sum(1 for entry in follow.values() if entry["baseline_id"] is None)
    response = recist_response(before, after, new)
    response["target_lesion_ids"] = [base[i]["id"] for i in response.pop("target_lesion_indices")]
    volume_before = sum(entry["volume_ml"] for entry in base)
    volume_after = sum(entry["volume_ml"] for entry in follow.values())
    response["volume_baseline_ml"] = round(volume_before, 3)
    response["volume_followup_ml"] = round(volume_after, 3)
    response["volume_change_pct"] = round(100.0 * (volume_after - volume_before)
                                          / volume_before, 2)
    return response


def _summary(root: Path, manifest: Path, truth: Path, patients: dict[str, Any],
             seconds: float) -> CohortSummary:
    lesions = dict.fromkeys(TIMEPOINTS, 0)
    groups = {tp: {"small": 0, "large": 0} for tp in TIMEPOINTS}
    centers: dict[str, int] = {}
    recist = dict.fromkeys(("CR", "PR", "SD", "PD"), 0)
    for patient in patients.values():
        centers[patient["center"]] = centers.get(patient["center"], 0) + 1
        recist[patient["response"]["recist_category"]] += 1
        for tp in TIMEPOINTS:
            for entry in patient["timepoints"][tp]["lesions"]:
                lesions[tp] += 1
                groups[tp][entry["size_group"]] += 1
    return CohortSummary(root, manifest, truth, len(patients), 2 * len(patients), lesions,
                         groups, centers, recist, seconds)
