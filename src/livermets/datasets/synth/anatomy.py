"""A patient's anatomy in the patient frame (mm): body wall, diaphragm, liver lobes,
organs, great vessels and bowel, drawn from one random stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from livermets.datasets.synth.fissures import (
    LiverFat,
    _FatSheet,
    _FatShell,
    _FatSleeve,
    _PeriportalCuff,
)
from livermets.datasets.synth.geometry import (
    Array,
    Vec3,
    _Ellipsoid,
    _f32,
    _Fourier,
    _rotation,
    _superellipse,
    _Tube,
    _vec3,
)
from livermets.datasets.synth.protocols import Tissue


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
    liver_fat: tuple[LiverFat, ...] = ()  # fissures, hilar, fossa fat, cuffs (`fissures`)


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


#: Portal branches at least this wide (radius, mm) get a cuff: the first two generations.
CUFF_MIN_RADIUS_MM = 3.0


def _draw_liver_fat(rng: np.random.Generator, anatomy: _Anatomy) -> tuple[LiverFat, ...]:
    """This patient's fissures, hilar fat and gallbladder-fossa fat, placed from the (fitted)
    lobes: some patients have wide fat-filled fissures, others nearly closed ones."""
    s = anatomy.scale
    medial, left = anatomy.liver.lobes[2].centre, anatomy.liver.lobes[3].centre
    out: list[LiverFat] = []
    if rng.random() < 0.85:  # umbilical fissure: sagittal, from the anterior-inferior edge
        x = 0.5 * (medial[0] + left[0]) + rng.normal(0.0, 4.0)
        centre = (x, -62.0 * s + rng.normal(0.0, 5.0), -72.0 * s + rng.normal(0.0, 6.0))
        axes = _rotation(rng.normal(0.0, 10.0), rng.normal(0.0, 25.0))
        depth = float(rng.uniform(25.0, 45.0)) * s
        out.append(_FatSheet(_Ellipsoid(centre, (4.0, depth, depth * rng.uniform(0.7, 1.1)),
                                        axes), float(rng.uniform(1.5, 7.0))))
        if rng.random() < 0.8:  # the ligamentum teres runs in it towards the left portal vein
            cord = float(rng.uniform(2.0, 3.5))
            a = (x, centre[1] - 0.5 * depth, centre[2] - 10.0 * s)
            b = (x + rng.normal(0.0, 3.0), centre[1] + 0.6 * depth, centre[2] + 8.0 * s)
            out.append(_FatSleeve(_Tube(_vec3(a), _vec3(b), cord + float(rng.uniform(1.5, 4.0))),
                                  cord))
    if rng.random() < 0.8:  # fissure of the ligamentum venosum: caudate vs left lateral lobe
        centre = (0.6 * medial[0] + 0.4 * left[0] + rng.normal(0.0, 4.0),
                  -10.0 * s + rng.normal(0.0, 4.0), -48.0 * s + rng.normal(0.0, 6.0))
        axes = _rotation(90.0 + rng.normal(0.0, 25.0), rng.normal(0.0, 25.0))  # normal ~ y
        length = float(rng.uniform(22.0, 38.0)) * s
        out.append(_FatSheet(_Ellipsoid(_vec3(centre), (4.0, length, length * 0.8), axes),
                             float(rng.uniform(1.5, 5.0))))
    hilum = np.asarray(anatomy.portal_outside[-1].b)
    radius = anatomy.portal_outside[-1].radius + float(rng.uniform(1.5, 6.0))
    for target in ((-80.0, 10.0, -80.0), (20.0, -35.0, -50.0)):  # right and left portal veins
        direction = np.asarray(target) * s - hilum
        reach = float(rng.uniform(15.0, 30.0)) * s
        end = hilum + direction / np.linalg.norm(direction) * reach
        out.append(_FatSleeve(_Tube(_vec3(hilum), _vec3(end), radius * rng.uniform(0.7, 1.0))))
    if rng.random() < 0.5:
        out.append(_FatShell(anatomy.gallbladder, float(rng.uniform(1.0, 4.0))))
    if rng.random() < 0.6:  # a visible periportal cuff (thickness and contrast per patient)
        margin, darker = float(rng.uniform(1.5, 4.5)), float(rng.uniform(25.0, 60.0))
        for tube, kind in anatomy.vessels:
            if kind == Tissue.LIVER_PORTAL and tube.radius >= CUFF_MIN_RADIUS_MM:
                outer = tube.radius + margin * float(rng.uniform(0.6, 1.0))
                out.append(_PeriportalCuff(_Tube(tube.a, tube.b, outer), darker_hu=darker))
    return tuple(out)
