"""Metastases: irregular shapes, looks (HU), patient scenarios, placement in the liver,
the tp1 fate of each lesion, and painting a lesion into a CT."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.datasets.synth.geometry import (
    Array,
    Vec3,
    _Box,
    _Ellipsoid,
    _f32,
    _Fourier,
    _Grid,
    _rotation,
    _vec3,
)
from livermets.datasets.synth.liver import _LiverMap

# The package's name, as when this was one module: log lines keep their origin.
logger = logging.getLogger(__package__)


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


def lesion_shape_mask(rng: np.random.Generator, diameter_mm: float,
                      spacing: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    """One irregular lesion shape as a boolean box (z, y, x) on a grid of `spacing` (z, y, x)
    mm, its longest axial diameter about `diameter_mm`: the generator's own shapes, for
    inserting lesions into other CTs. The box is odd-sized with the lesion's centre in its
    middle voxel; the mask is one 26-connected piece holding at least that voxel."""
    shape = _draw_shape(rng, diameter_mm, (0.0, 0.0, 0.0))
    reach = shape.radius_mm
    axes = [np.arange(-(n := int(np.ceil(reach / s))), n + 1, dtype=np.float32) * np.float32(s)
            for s in spacing]
    pz, py, px = np.meshgrid(*axes, indexing="ij")
    inside = shape.rho(px, py, pz, 1.0) <= 1.0
    pieces, count = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    if count > 1:
        inside = pieces == int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1
    inside[tuple(len(a) // 2 for a in axes)] |= count == 0
    return inside
