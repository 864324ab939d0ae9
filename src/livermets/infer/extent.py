"""A lesion's whole extent, recovered from the CT around the part the network marked.

On real CT the lesion network often marks only a tumour's dark core: 2-67% of a found lesion's
voxels were above the threshold on the held-out real CTs (the real-CT issue). Two ways to
recover the rest, both starting from a lesion already found (no lesion starts here):

- `grown_from`: hysteresis on the network's probability (`PredictSettings.outline_threshold`):
  the lesion takes the connected voxels above a lower probability;
- `recover_extent`: region growing on the CT itself (`PredictSettings.extent_mm`). A
  hypodense metastasis is darker than the liver around it; the lesion takes the connected
  voxels (within `reach_mm` of it, in the liver) whose smoothed HU lies closer to the lesion's
  own median than to the surrounding parenchyma's, i.e. below the midpoint of the two. The
  parenchyma is read in a ring beyond the reach, so a core's unmarked rim does not count as
  liver. Lesions less than `min_contrast_hu` darker than that ring (iso- or hyperdense) are
  left as they are;
- `second_chance` (`PredictSettings.recheck_grown`): a candidate the contrast check rejected
  (its 5 mm shell can be a tumour's own unmarked rim) is grown so and checked again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.boxes import grow_box
from livermets.errors import InputError
from livermets.infer.candidates import CandidateChecks, CheckedCandidates, measure_candidate
from livermets.labels import smallest_label_dtype
from livermets.morphology import within_distance
from livermets.types import Spacing

#: `predict`'s default reach (mm): on the held-out real CTs it found more lesions and outlined
#: them better than 10 or 25 mm (benchmarks/RESULTS.md, 2026-12-07).
DEFAULT_EXTENT_MM = 15.0
#: Beyond a lesion's seeded slices, the least share of a slice's part that must lie on the
#: lesion's part in the slice before it (`grown_in_plane`).
MIN_OVERLAP = 0.5
#: 26-connectivity in 3D.
FULL_3D = np.ones((3, 3, 3), dtype=bool)


def grown_from(seeds: npt.NDArray[np.bool_], region: npt.NDArray[np.bool_]
               ) -> npt.NDArray[np.bool_]:
    """The 26-connected components of `region` (z, y, x) that hold a voxel of `seeds`, plus the
    seeds themselves: hysteresis thresholding, seeds above the high threshold and `region`
    above the low one."""
    components, _ = ndimage.label(region, structure=FULL_3D)
    kept = np.unique(components[seeds & region])
    return np.isin(components, kept[kept > 0]) | seeds


def grown_in_plane(seeds: npt.NDArray[np.bool_], region: npt.NDArray[np.bool_]
                   ) -> npt.NDArray[np.bool_]:
    """`seeds` (z, y, x) grown into `region` so that every slice's part is connected in-plane:
    in a slice holding seeds, the 8-connected parts of `region` | seeds that touch its seeds;
    in the slices beyond, slice by slice away from the seeds, the parts of which at least
    `MIN_OVERLAP` of the area lies on what was kept in the slice before (a lesion's cross-
    sections overlap from slice to slice; a chain of dark noise patches or another dark
    structure that merely touches it does not). A dark patch of noise a few mm from a lesion,
    which 3D connectivity reaches through a neighbouring slice (5 mm slices), is not taken.
    `seeds` is one lesion: its slices are consecutive."""
    grown = grown_from(seeds, region)
    kept = np.zeros_like(grown)
    seeded = np.flatnonzero(seeds.any(axis=(1, 2)))
    if seeded.size == 0:
        return kept
    eight = np.ones((3, 3), dtype=bool)
    for z in range(seeded[0], seeded[-1] + 1):
        parts, _ = ndimage.label(grown[z], structure=eight)
        touched = np.unique(parts[seeds[z]])
        kept[z] = np.isin(parts, touched[touched > 0]) | seeds[z]
    for order in (range(seeded[-1] + 1, len(grown)), range(seeded[0] - 1, -1, -1)):
        before = seeded[-1] if order.step > 0 else seeded[0]
        for z in order:
            parts, count = ndimage.label(grown[z], structure=eight)
            area = np.bincount(parts.ravel(), minlength=count + 1)
            on_before = np.bincount(parts[kept[before]], minlength=count + 1)
            overlapping = np.flatnonzero(on_before >= MIN_OVERLAP * area)
            overlapping = overlapping[overlapping > 0]
            if overlapping.size == 0:
                break
            kept[z] = np.isin(parts, overlapping)
            before = z
    return kept


@dataclass(frozen=True)
class ExtentSettings:
    """How far and on what a lesion grows (units in the names).

    `reach_mm`: the farthest a lesion grows beyond the voxels the network marked;
    `ring_mm`: the width of the parenchyma ring read beyond the reach; `smoothing_mm`: the
    Gaussian sigma (in-plane and in z) applied to the HU first, against pixel noise;
    `min_contrast_hu`: lesions less dark than this against the ring are not grown;
    `soft_tissue_above_hu`: voxels at or below it (fat, air) never join; `cut_fraction`: where
    between the lesion's median HU (0) and the ring's (1) the cut lies (0.5: the midpoint);
    `in_plane`: each slice's growth must be connected in-plane (`grown_in_plane`), not only
    in 3D (`grown_from`), which let noise patches of neighbouring slices join.
    """

    reach_mm: float = 15.0
    ring_mm: float = 10.0
    smoothing_mm: float = 1.0
    min_contrast_hu: float = 10.0
    soft_tissue_above_hu: float = -30.0
    cut_fraction: float = 0.5
    rounds: int = 1
    in_plane: bool = True

    def __post_init__(self) -> None:
        if self.reach_mm <= 0 or self.ring_mm <= 0 or self.smoothing_mm < 0:
            raise InputError("extent reach and ring must be > 0 mm and the smoothing >= 0 mm, "
                             f"got {self.reach_mm}, {self.ring_mm}, {self.smoothing_mm}")


def recover_extent(labels: npt.NDArray[np.integer], hu: npt.NDArray[np.generic],
                   allowed: npt.NDArray[np.bool_], spacing: Spacing,
                   settings: ExtentSettings) -> npt.NDArray[np.integer]:
    """`labels` (instance map 1..K, z, y, x) with each hypodense lesion grown to its extent on
    the CT `hu` (HU, same grid); lesions grow only into `allowed` (the liver and the margin
    lesions may occupy) and never into another lesion. Lesions are grown in label order, each
    on the map as the earlier ones left it. A lesion whose growth reaches `reach_mm` (it goes
    on beyond) grows again from its new outline, at most `rounds` times in all. Returns a new
    map of the same dtype."""
    out = labels.copy()
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        for round_ in range(1, settings.rounds + 1):
            if box is None or not _grow(out, label, box, hu, allowed, spacing, settings):
                break
            if round_ < settings.rounds:  # the grown lesion's box, for the next round only
                box = ndimage.find_objects((out == label).astype(np.uint8))[0]
    return out


def _grow(labels: npt.NDArray[np.integer], label: int, box: tuple[slice, ...],
          hu: npt.NDArray[np.generic], allowed: npt.NDArray[np.bool_], spacing: Spacing,
          settings: ExtentSettings) -> bool:
    """Grow lesion `label` (bounding box `box`) of `labels` in place, once; whether it reached
    the reach (its extent goes on beyond)."""
    window = grow_box(box, spacing, settings.reach_mm + settings.ring_mm, labels.shape)
    local = labels[window]
    inside = local == label
    values = hu[window].astype(np.float32)
    if settings.smoothing_mm > 0:
        values = ndimage.gaussian_filter(values, [settings.smoothing_mm / s for s in spacing])
    # Within the reach of the lesion: its distance map (mm) <= reach_mm, voxel for voxel.
    near = within_distance(inside, spacing, settings.reach_mm)
    free = allowed[window] & (local == 0)
    ring = free & ~near
    if not ring.any():
        return False
    lesion_hu = float(np.median(values[inside]))
    liver_hu = float(np.median(values[ring]))
    if liver_hu - lesion_hu < settings.min_contrast_hu:
        return False
    cut = lesion_hu + settings.cut_fraction * (liver_hu - lesion_hu)
    region = free & near & (values < cut) & (values > settings.soft_tissue_above_hu)
    grow = grown_in_plane if settings.in_plane else grown_from
    added = grow(inside, region | inside) & ~inside
    local[added] = label
    if not added.any():
        return False
    # Reached: an added voxel lies farther than reach_mm - max(spacing) from the lesion.
    return bool((added & ~within_distance(inside, spacing,
                                          settings.reach_mm - max(spacing))).any())


def second_chance(checked: CheckedCandidates, hu: npt.NDArray[np.generic],
                  liver: npt.NDArray[np.bool_], spacing: Spacing, checks: CandidateChecks,
                  settings: ExtentSettings,
                  probability: npt.NDArray[np.floating] | None = None) -> CheckedCandidates:
    """`checked` with each candidate that failed only the contrast check grown on the CT
    (`recover_extent`, the other candidates blocking) and measured again: kept, grown, when it
    then passes every check.

    The contrast check's blind spot: when the network marks only a tumour's dark core, the
    5 mm shell it compares with is the tumour's own unmarked rim, and a real tumour fails. Grown
    to its extent, its shell is liver. A vessel or plain liver does not grow (less than
    `min_contrast_hu` darker than the ring beyond the reach) and fails again. Arrays (z, y, x)
    on one grid; `liver` > 0 inside. Lesions stay numbered first to last as before, the rescued
    ones after them; the rejected ones keep their order.
    """
    lesions = checked.lesions.astype(np.int64)
    rejected = checked.rejected
    rescued: list[int] = []
    measures = list(checked.lesion_measures)
    for index, reasons in enumerate(checked.rejected_reasons, start=1):
        if reasons != ["contrast"]:
            continue
        one = (rejected == index).astype(np.uint8)
        blocked = (lesions > 0) | ((rejected > 0) & (rejected != index))
        grown = recover_extent(one, hu, liver & ~blocked, spacing, settings)
        if np.count_nonzero(grown) == np.count_nonzero(one):
            continue
        box = ndimage.find_objects(grown)[0]
        measure = measure_candidate(grown, 1, box, hu, liver, spacing, checks, probability)
        if not measure.failures(checks):
            lesions[grown > 0] = int(lesions.max()) + 1
            rescued.append(index)
            measures.append(measure)
    if not rescued:
        return checked
    kept = [i for i in range(1, len(checked.rejected_reasons) + 1) if i not in rescued]
    lookup = np.zeros(len(checked.rejected_reasons) + 1, dtype=np.int64)
    lookup[kept] = np.arange(1, len(kept) + 1)
    dtype = smallest_label_dtype(int(lesions.max()))
    return CheckedCandidates(
        lesions=lesions.astype(dtype),
        rejected=lookup[rejected].astype(smallest_label_dtype(len(kept))),
        lesion_measures=measures,
        rejected_measures=[checked.rejected_measures[i - 1] for i in kept],
        rejected_reasons=[checked.rejected_reasons[i - 1] for i in kept])
