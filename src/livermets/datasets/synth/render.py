"""Rendering one CT of a planned patient: tissue codes -> HU, liver texture, lesions, then
the scanner (correlated noise, in-plane blur, HU offset) and the masks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.datasets.synth.anatomy import _Anatomy
from livermets.datasets.synth.fissures import add_liver_fat
from livermets.datasets.synth.geometry import Array, _Grid
from livermets.datasets.synth.lesions import _paint_lesion
from livermets.datasets.synth.paint import _render_tissue
from livermets.datasets.synth.plan import TIMEPOINTS, PatientPlan, _streams, plan_patient
from livermets.datasets.synth.protocols import LIVER_TISSUES, Tissue, _tissue_hu
from livermets.errors import InputError
from livermets.io.volume import Volume

#: Where the slice profile is sampled besides its centre, in slice spacings (three equally
#: weighted samples of a box profile as thick as the spacing).
THROUGH_SLICE_OFFSETS = (-1.0 / 3.0, 1.0 / 3.0)


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
    hu = _through_slice_hu(plan.anatomy, grid, tissue, lut)
    _add_liver_texture(hu, tissue, grid, plan.anatomy)
    add_liver_fat(hu, tissue, grid, plan.anatomy.liver_fat, float(lut[Tissue.VISCERAL_FAT]),
                  float(lut[Tissue.LIVER]))
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


def _through_slice_hu(anatomy: _Anatomy, grid: _Grid, tissue: npt.NDArray[np.uint8],
                      lut: npt.NDArray[np.float32]) -> Array:
    """HU (z, y, x) averaged through each slice's thickness (= the slice spacing): the tissue
    map `tissue` at the slice centres, plus the maps `THROUGH_SLICE_OFFSETS` of the spacing
    above and below, through `lut`. Where a surface crosses a slice obliquely (the liver's
    dome, its tip, its lateral edge on thick slices) the voxel is a blend of both sides, as on
    a scanner; the masks stay those of the slice centres."""
    geometry = grid.geometry
    x, y, z = geometry.origin
    total = lut[tissue]  # a new float32 array (fancy indexing copies)
    for offset in THROUGH_SLICE_OFFSETS:
        shifted = replace(geometry, origin=(x, y, z + offset * geometry.spacing[0]))
        total += lut[_render_tissue(anatomy, _Grid(shifted, grid.pose))]
    total /= np.float32(1 + len(THROUGH_SLICE_OFFSETS))
    return total


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
