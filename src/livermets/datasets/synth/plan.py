"""Planning a patient: centre, scenario, anatomy, lesions, the CT grid and the poses of both
time points, each from its own random stream."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from livermets.datasets.synth.anatomy import _Anatomy, _draw_anatomy, _draw_liver_fat
from livermets.datasets.synth.geometry import Pose, _vec3
from livermets.datasets.synth.lesions import _Lesion, _plan_lesions, _scenario
from livermets.datasets.synth.liver import _fit_liver_volume, _grow_vessels, _LiverMap
from livermets.datasets.synth.protocols import PROTOCOLS, CentreProtocol
from livermets.errors import InputError
from livermets.io.volume import Geometry

TIMEPOINTS: tuple[str, str] = ("baseline", "tp1")


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
    anatomy = replace(anatomy, liver_fat=_draw_liver_fat(anatomy_rng, anatomy))
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
