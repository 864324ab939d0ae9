"""The inference pipeline: a `Predictor` loads its models once and segments many CTs.

For one CT (z, y, x, HU):

1. Liver: the liver model's mask (largest 3D component, holes filled), or a given mask.
2. The paper's liver z-score (mean and SD of the HU inside that liver) and the liver's
   z-range plus the lesion model's margin; slices outside it get probability 0. A model
   trained with `crop_margin_mm` sees only the liver's in-plane box plus that margin
   (`preprocess.liver_plane_box`), one trained with `field_mm` a square of that many mm round
   the liver (`preprocess.liver_field_box`, air beyond the slice); pixels outside get
   probability 0. With
   `zoom_margin_mm` a second pass on the liver's box, magnified, keeps the higher probability.
3. Lesion probabilities per slice, in batches, on the lesion model's grid and back
   (`infer.slices`), with the settings saved in the model file, never re-typed. Several lesion
   models (an ensemble, e.g. one recipe trained with several seeds) are averaged, and with
   `flip_tta` each also reads the slices mirrored left-right.
4. Probabilities in steps of 1/1024, 0 outside the liver's bounding box grown by
   `liver_dilation_mm`; threshold: Otsu on the probabilities inside the liver, or fixed
   (`infer.threshold`).
5. Lesion voxels inside the liver or within `liver_dilation_mm` of it; 26-connected
   components of at least `min_lesion_mm3` are the candidates.
6. Candidate checks (`infer.candidates`, unless turned off): candidates mostly outside the
   liver, holding fat or air, not darker than the liver around them, or of fluid density are
   rejected and reported apart; the lesions are numbered 1..K by decreasing volume (`labels`).

All masks are on the CT's own grid (shape, spacing, origin, direction).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from livermets.boxes import grown_box
from livermets.errors import InputError
from livermets.infer.candidates import CandidateChecks, CandidateMeasures, check_candidates
from livermets.infer.extent import (
    DEFAULT_EXTENT_MM,
    ExtentSettings,
    grown_from,
    recover_extent,
    second_chance,
)
from livermets.infer.liver import segment_liver
from livermets.infer.slices import slice_probabilities
from livermets.infer.threshold import ThresholdResult, choose_threshold
from livermets.io.image import check_ct
from livermets.io.manifest import check_mask_values
from livermets.io.volume import Volume
from livermets.labels import instance_labels, label_maxima, smallest_label_dtype
from livermets.measure import lesion_boxes, measure_lesions
from livermets.models.precision import PRECISIONS, resolve_precision
from livermets.models.saved import SavedModel, load_model
from livermets.morphology import within_distance
from livermets.preprocess import (
    AIR_HU,
    LiverStatistics,
    context_steps,
    lesion_plane_box,
    liver_plane_box,
    liver_statistics,
    liver_z_range,
    liver_zscore,
    plane_overlap,
    take_plane,
)
from livermets.types import PathLike, Spacing

logger = logging.getLogger(__name__)

DEFAULT_LIVER_DILATION_MM = 5.0
#: Lesion probabilities are kept in steps of 1/1024 (see `quantise_probability`).
PROBABILITY_STEPS = 1024
#: The same minimum as reference lesions get on import (`datasets.common`).
DEFAULT_MIN_LESION_MM3 = 10.0

LESION_COLUMNS = ("lesion_id", "volume_ml", "longest_axial_diameter_mm",
                  "perpendicular_diameter_mm", "slice_index", "centroid_x_mm", "centroid_y_mm",
                  "centroid_z_mm", "mean_hu")
#: Columns of `rejected_candidates.csv`: the lesion columns, the measures and failed checks.
REJECTED_COLUMNS = ("candidate_id", *LESION_COLUMNS[1:], "outside_fraction", "fat_fraction",
                    "contrast_hu", "median_hu", "peak_probability", "failed_checks")


@dataclass(frozen=True)
class PredictSettings:
    """How the pipeline turns probabilities into lesions, and how fast it runs.

    `threshold`: "otsu" or a probability in (0, 1); `liver_dilation_mm`: lesion voxels may lie
    this far outside the liver mask (tumours on the liver's edge bulge out of it);
    `zoom_margin_mm`: None, or a second pass of the lesion model on the liver's in-plane box
    grown by this margin (mm), magnified to the network grid, whose probability is kept where
    it is higher (small lesions are seen larger);
    `min_lesion_mm3`: smaller components are dropped; `candidate_checks`: the tissue checks of
    `infer.candidates` (None: every candidate is a lesion, as in the paper); `precision`:
    "auto" (bf16 where the CPU or GPU does it fast), "fp32" or "bf16"; `batch_size`: slices per
    forward pass; `outline_threshold`: None (the paper: a lesion is its voxels above the
    threshold), or a lower probability to which each lesion found above the threshold is grown
    (its connected voxels above this value join it; no new lesion starts below the threshold),
    so a lesion the network marks confidently only at its core is outlined whole;
    `extent_mm`: each lesion (after the checks) grown on the CT itself up to this far (mm)
    into the liver voxels darker than the midpoint between it and the parenchyma around it
    (`infer.extent.recover_extent`; None: off, the paper's); `recheck_grown`: a candidate that
    failed only the contrast check is grown so (with `extent_mm`) and checked again, kept when it
    passes (`infer.extent.second_chance`; off by default: measured in benchmarks/RESULTS.md);
    `flip_tta`: the lesion model(s) also read each slice mirrored left-right and the two
    probabilities are averaged (twice the lesion network's cost; on by default: fewer false
    positives and more lesions found on real and generated CT, benchmarks/RESULTS.md; off
    in `study`, the paper's method); `grow_small_cores`: components under `min_lesion_mm3`
    that reach the confidence check's peak probability are candidates too, checked and grown
    (with the checks and `extent_mm`), and kept when grown to at least `min_lesion_mm3` (on
    by default: LiTS 117 lesions of >= 30 voxels found 38 -> 41 of 56, benchmarks/RESULTS.md).
    """

    threshold: str | float = "otsu"
    liver_dilation_mm: float = DEFAULT_LIVER_DILATION_MM
    min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3
    candidate_checks: CandidateChecks | None = field(default_factory=CandidateChecks)
    precision: str = "auto"
    batch_size: int = 8
    keep_probability: bool = True
    zoom_margin_mm: float | None = None
    outline_threshold: float | None = None
    extent_mm: float | None = DEFAULT_EXTENT_MM
    recheck_grown: bool = False
    flip_tta: bool = True
    grow_small_cores: bool = True

    def __post_init__(self) -> None:
        if self.liver_dilation_mm < 0:
            raise InputError(f"liver dilation must be >= 0 mm, got {self.liver_dilation_mm}")
        if self.min_lesion_mm3 < 0:
            raise InputError(f"minimum lesion volume must be >= 0 mm3, got "
                             f"{self.min_lesion_mm3}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{self.precision!r}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch_size}")
        if self.zoom_margin_mm is not None and self.zoom_margin_mm < 0:
            raise InputError(f"zoom margin must be >= 0 mm, got {self.zoom_margin_mm}")
        choose_threshold(np.zeros(0), self.threshold)  # validates a fixed value
        if self.outline_threshold is not None and not 0 < self.outline_threshold < 1:
            raise InputError(f"the outline threshold must be a probability in (0, 1), got "
                             f"{self.outline_threshold}")
        self.extent()  # validates the reach
        if self.recheck_grown and (self.extent_mm is None or self.candidate_checks is None):
            raise InputError("--recheck-grown needs the candidate checks and --extent-mm > 0")

    def extent(self) -> ExtentSettings | None:
        """How lesions grow on the CT (`extent_mm`), or None when they do not."""
        return None if self.extent_mm is None else ExtentSettings(reach_mm=self.extent_mm)


@dataclass
class Prediction:
    """One CT's result, every volume on the CT's grid.

    `liver`: uint8 0/1; `lesions`: instance labels 1..K by decreasing volume (0 background);
    `probability`: float32 lesion probability (None unless kept); `lesion_table`: one dict per
    lesion with `LESION_COLUMNS` (centroids in patient LPS mm); `rejected`: the candidates the
    checks rejected, labels 1..R by decreasing volume (None when the checks are off), and
    `rejected_table` one dict for each with `REJECTED_COLUMNS`; `timings`: seconds per stage.
    """

    liver: Volume
    lesions: Volume
    probability: Volume | None
    threshold: ThresholdResult
    liver_source: str
    liver_stats: LiverStatistics
    z_range: tuple[int, int]
    lesion_table: list[dict[str, Any]]
    rejected: Volume | None = None
    rejected_table: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Predictor:
    """Liver and lesion segmentation with models loaded once.

    `lesion_model`: a lesion `model.pt` (or its run folder, or a loaded `SavedModel`), or a
    sequence of them whose probabilities are averaged (they must share their preprocessing;
    `lesion_model` is then the first); `liver_model`: a liver model, or None when every CT
    comes with a liver mask.
    """

    def __init__(self, lesion_model: PathLike | SavedModel | Sequence[PathLike | SavedModel],
                 liver_model: PathLike | SavedModel | None = None,
                 settings: PredictSettings | None = None) -> None:
        self.settings = settings or PredictSettings()
        given: list[PathLike | SavedModel] = (
            [lesion_model] if isinstance(lesion_model, (str, os.PathLike, SavedModel))
            else list(lesion_model))
        if not given:
            raise InputError("no lesion model given")
        self.lesion_models = [_load(model, "lesion") for model in given]
        self.lesion_model = self.lesion_models[0]
        _check_same_preprocessing(self.lesion_models)
        self.liver_model = None if liver_model is None else _load(liver_model, "liver")
        self.precision = resolve_precision(self.settings.precision, torch.device("cpu"))

    def predict(self, ct: Volume, liver_mask: Volume | None = None) -> Prediction:
        """Segment `ct`; with `liver_mask` (same grid, > 0 inside) the liver model is skipped.

        Raises `InputError` for an image that is not a CT in HU, a liver mask on another grid,
        no liver model and no mask, or a liver too small for the z-score.
        """
        timings: dict[str, float] = {}
        tic = time.perf_counter()
        check_ct(ct, "the CT")
        hu = ct.array
        bf16 = self.precision == "bf16"
        if liver_mask is not None:
            difference = ct.geometry.difference(liver_mask.geometry)
            if difference is not None:
                raise InputError(f"the liver mask is not on the CT's grid ({difference}); "
                                 "give a mask drawn on this CT")
            check_mask_values(liver_mask.array, "the liver mask", liver=True)
            liver = (liver_mask.array > 0).astype(np.uint8)
            source = "given"
        elif self.liver_model is not None:
            liver = segment_liver(self.liver_model, hu, spacing=ct.spacing,
                                  batch_size=self.settings.batch_size,
                                  bf16=bf16)
            source = "model"
        else:
            raise InputError("no liver model and no liver mask; give --liver-model or "
                             "--liver-mask")
        timings["liver_s"] = time.perf_counter() - tic

        tic = time.perf_counter()
        stats = liver_statistics(hu, liver, ct.spacing)
        margin = float(self.lesion_model.preprocessing.get("z_margin_mm", 10.0))
        start, stop = liver_z_range(liver, ct.spacing, margin_mm=margin)
        rows, columns = lesion_plane_box(liver, ct.spacing, self.lesion_model.preprocessing)
        probability = np.zeros(hu.shape, dtype=np.float32)

        steps = context_steps(self.lesion_model.preprocessing.get("context_mm"), ct.spacing[0])

        def lesion_pass(box: tuple[slice, slice, slice],
                        out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
            # A 2.5D model also reads the `steps` slices beyond the box's z-range.
            low, high = max(0, box[0].start - steps), min(hu.shape[0], box[0].stop + steps)
            slab = take_plane(hu[low:high], box[1], box[2], AIR_HU)
            centres = range(box[0].start - low, box[0].stop - low)
            total = None
            for model in self.lesion_models:
                one = slice_probabilities(model, slab, lambda s: liver_zscore(s, stats),
                                          batch_size=self.settings.batch_size, bf16=bf16,
                                          out=out if total is None else None, centres=centres,
                                          steps=steps, flip=self.settings.flip_tta)
                total = one if total is None else np.add(total, one, out=total)
            assert total is not None
            if len(self.lesion_models) > 1:
                total /= len(self.lesion_models)
            return total

        box = (slice(start, stop), rows, columns)
        inside, within = plane_overlap(rows, columns, hu.shape[1:])
        if inside == (rows, columns):
            lesion_pass(box, out=probability[box])
        else:  # a field that reaches past the slice: keep the part on the CT
            probability[(box[0], *inside)] = lesion_pass(box)[(slice(None), *within)]
        if self.settings.zoom_margin_mm is not None:
            box = (slice(start, stop),
                   *liver_plane_box(liver, ct.spacing, self.settings.zoom_margin_mm))
            np.maximum(probability[box], lesion_pass(box), out=probability[box])
        timings["lesion_model_s"] = time.perf_counter() - tic

        tic = time.perf_counter()
        found = self.lesion_labels(probability, liver, ct.spacing, hu)
        table = lesion_table(found.labels, ct, within=found.box)
        rejected = rejected_table(found, ct)
        timings["postprocess_s"] = time.perf_counter() - tic
        logger.info("%d lesion(s), %d candidate(s) rejected; threshold %.3f (%s); liver %.0f mL",
                    len(table), len(rejected), found.threshold.value, found.threshold.method,
                    stats.volume_ml)
        return Prediction(
            liver=ct.with_array(liver),
            lesions=ct.with_array(found.labels),
            probability=ct.with_array(probability) if self.settings.keep_probability else None,
            threshold=found.threshold, liver_source=source, liver_stats=stats,
            z_range=(start, stop), lesion_table=table,
            rejected=None if found.rejected is None else ct.with_array(found.rejected),
            rejected_table=rejected, timings=timings)

    def lesion_labels(self, probability: npt.NDArray[np.float32],
                      liver: npt.NDArray[np.uint8], spacing: tuple[float, float, float],
                      hu: npt.NDArray[np.generic]) -> FoundLesions:
        """Steps 4-6: lesion instance labels (z, y, x) from `probability` (changed in place).

        Everything happens inside the liver's bounding box grown by the dilation radius:
        `probability` is quantised there and set to 0 outside it; the threshold comes from the
        probabilities inside the liver; voxels above it outside the liver are kept when within
        `liver_dilation_mm` of it (Euclidean, mm); the candidates are checked against the CT
        `hu` (same grid) unless the checks are off.
        """
        radius = self.settings.liver_dilation_mm
        box = grown_box(liver, spacing, radius)
        kept = quantise_probability(probability[box].copy())
        probability[...] = 0.0
        probability[box] = kept
        liver_box = liver[box] > 0
        threshold = choose_threshold(probability[box][liver_box], self.settings.threshold)
        foreground = probability[box] > threshold.value
        outline = self.settings.outline_threshold
        if outline is not None and outline < threshold.value and foreground.any():
            foreground = grown_from(foreground, probability[box] > outline)
        outside = foreground & ~liver_box
        if outside.any():
            foreground &= liver_box | near_mask(liver_box, outside, spacing, radius)
        checks, extent = self.settings.candidate_checks, self.settings.extent()
        smallest = self.settings.min_lesion_mm3
        if checks is None:
            labels_box = instance_labels(foreground, spacing, min_volume_mm3=smallest)
            lesions = self._extended(labels_box, hu[box], liver_box, spacing)
            return FoundLesions(_placed(lesions, box, probability.shape), threshold, box=box)
        if self.settings.grow_small_cores and extent is not None:
            labels_box = confident_or_large(instance_labels(foreground, spacing),
                                            probability[box], spacing, smallest,
                                            checks.min_peak_probability)
        else:
            labels_box = instance_labels(foreground, spacing, min_volume_mm3=smallest)
        checked = check_candidates(labels_box, hu[box], liver[box], spacing, checks,
                                   probability[box])
        if self.settings.recheck_grown and extent is not None:
            checked = second_chance(checked, hu[box], liver_box, spacing, checks, extent,
                                    probability[box])
        lesions = self._extended(checked.lesions, hu[box], liver_box, spacing)
        return FoundLesions(_placed(lesions, box, probability.shape), threshold,
                            _placed(checked.rejected, box, probability.shape),
                            checked.rejected_measures, checked.rejected_reasons, box=box)

    def _extended(self, lesions: npt.NDArray[np.unsignedinteger], hu: npt.NDArray[np.generic],
                  liver: npt.NDArray[np.bool_], spacing: tuple[float, float, float]
                  ) -> npt.NDArray[np.unsignedinteger]:
        """`lesions` grown to their extent on `hu` inside `liver` (`extent_mm`), renumbered by
        decreasing volume; unchanged when `extent_mm` is None."""
        extent = self.settings.extent()
        if extent is None or not lesions.any():
            return lesions
        grown = recover_extent(lesions, hu, liver, spacing, extent)
        # A small confident core (`grow_small_cores`) stays only if it grew to a lesion.
        return instance_labels(grown, spacing, min_volume_mm3=self.settings.min_lesion_mm3)

    def record(self) -> dict[str, Any]:
        """The models and settings, for run.json."""
        models: dict[str, Any] = {"lesion": _model_record(self.lesion_model)}
        if len(self.lesion_models) > 1:  # an ensemble: every member, averaged
            models["lesion_ensemble"] = [_model_record(m) for m in self.lesion_models]
        if self.liver_model is not None:
            models["liver"] = _model_record(self.liver_model)
        checks = self.settings.candidate_checks
        settings = {"threshold": self.settings.threshold,
                    "liver_dilation_mm": self.settings.liver_dilation_mm,
                    "min_lesion_mm3": self.settings.min_lesion_mm3,
                    "candidate_checks": None if checks is None else checks.to_json(),
                    "batch_size": self.settings.batch_size, "precision": self.precision,
                    "zoom_margin_mm": self.settings.zoom_margin_mm,
                    "outline_threshold": self.settings.outline_threshold,
                    "extent_mm": self.settings.extent_mm,
                    "recheck_grown": self.settings.recheck_grown,
                    "flip_tta": self.settings.flip_tta,
                    "grow_small_cores": self.settings.grow_small_cores,
                    "lesion_models_averaged": len(self.lesion_models)}
        return {"models": models, "settings": settings}


@dataclass(frozen=True)
class FoundLesions:
    """Steps 4-6 on a CT's grid: the lesions (1..K by decreasing volume), the threshold, the
    rejected candidates (1..R by decreasing volume; None when the checks are off) with their
    measures and failed checks; `box`: the box (z, y, x slices) holding every lesion and
    candidate, None when unknown."""

    labels: npt.NDArray[np.unsignedinteger]
    threshold: ThresholdResult
    rejected: npt.NDArray[np.unsignedinteger] | None = None
    rejected_measures: list[CandidateMeasures] = field(default_factory=list)
    rejected_reasons: list[list[str]] = field(default_factory=list)
    box: tuple[slice, ...] | None = None


def confident_or_large(labels: npt.NDArray[np.unsignedinteger],
                       probability: npt.NDArray[np.floating], spacing: Spacing,
                       min_volume_mm3: float, min_peak: float
                       ) -> npt.NDArray[np.unsignedinteger]:
    """The components of `labels` of at least `min_volume_mm3`, or smaller but reaching
    `min_peak` in `probability` somewhere (a confident core of a small lesion, which the
    extent step may grow); renumbered 1..K' by decreasing volume.

    `labels`: (z, y, x) connected components numbered 1..K by decreasing volume, as
    `instance_labels` gives them; the kept ones keep that order, so renumbering them in turn
    is what `instance_labels` would do (in the smallest dtype that holds K').
    """
    inside = labels != 0  # the labelled voxels only are read and written after this
    keys = labels[inside]
    count = int(keys.max(initial=0))
    if count == 0:
        return labels
    index = np.arange(1, count + 1)
    voxels = np.bincount(keys, minlength=count + 1)[1:]
    volumes = voxels * float(np.prod(spacing))
    peaks = label_maxima(probability[inside], keys, count)
    kept = index[(volumes >= min_volume_mm3) | (peaks >= min_peak)]
    if np.any(np.diff(voxels[kept - 1]) > 0):  # not by decreasing volume: sort them
        numbers = np.zeros(count + 1, dtype=np.int64)
        numbers[kept] = np.arange(1, len(kept) + 1)
        return instance_labels(numbers[labels], spacing)
    lookup = np.zeros(count + 1, dtype=smallest_label_dtype(len(kept)))
    lookup[kept] = np.arange(1, len(kept) + 1)
    out = np.zeros_like(lookup, shape=labels.shape)
    out[inside] = lookup[keys]
    return out


def _placed(box_labels: npt.NDArray[np.unsignedinteger], box: tuple[slice, slice, slice],
            shape: tuple[int, ...]) -> npt.NDArray[np.unsignedinteger]:
    """A label map of `shape`, zero but for `box_labels` at `box`."""
    labels = np.zeros(shape, dtype=box_labels.dtype)
    labels[box] = box_labels
    return labels


def rejected_table(found: FoundLesions, ct: Volume) -> list[dict[str, Any]]:
    """One row per rejected candidate with `REJECTED_COLUMNS` (measured as lesions are)."""
    if found.rejected is None:
        return []
    rows = []
    for row, measures, reasons in zip(lesion_table(found.rejected, ct, within=found.box),
                                      found.rejected_measures,
                                      found.rejected_reasons, strict=True):
        rows.append({"candidate_id": row.pop("lesion_id"), **row, **measures.to_row(),
                     "failed_checks": " ".join(reasons)})
    return rows


def quantise_probability(probability: npt.NDArray[np.float32],
                         allowed: npt.NDArray[np.bool_] | None = None
                         ) -> npt.NDArray[np.float32]:
    """`probability` in steps of 1/`PROBABILITY_STEPS`, and 0 outside `allowed` when given
    (in place).

    The network's output far from the liver is never used, and its last digits are noise:
    without both, a 512 x 512 x 119 map is 107 MB as .nii.gz (incompressible). The steps are
    exact in float32, far finer than Otsu's 256 bins.
    """
    probability *= PROBABILITY_STEPS
    np.rint(probability, out=probability)
    probability /= PROBABILITY_STEPS
    if allowed is not None:
        probability[~allowed] = 0.0
    return probability


def near_mask(mask: npt.NDArray[np.bool_], candidates: npt.NDArray[np.bool_],
              spacing: tuple[float, float, float], radius_mm: float) -> npt.NDArray[np.bool_]:
    """The `candidates` voxels whose centre lies within `radius_mm` (Euclidean) of `mask`.

    The distance is measured on the candidates' bounding box grown by the radius (any
    mask voxel within the radius of a candidate lies inside it), so its cost follows the
    candidates, not the volume (`morphology.within_distance`: the thresholded distance map).
    """
    out = np.zeros(mask.shape, dtype=bool)
    if radius_mm <= 0 or not candidates.any() or not mask.any():
        return out
    box = grown_box(candidates, spacing, radius_mm)
    if not mask[box].any():  # the transform of an input without zeros is meaningless
        return out
    out[box] = candidates[box] & within_distance(mask[box], spacing, radius_mm)
    return out


def lesion_table(labels: npt.NDArray[np.integer], ct: Volume, *,
                 within: tuple[slice, ...] | None = None) -> list[dict[str, Any]]:
    """One row per lesion of `labels` (instance map on `ct`'s grid), with `LESION_COLUMNS`.

    Diameters are RECIST's (longest axial, edge to edge, mm) from `livermets.measure`;
    `slice_index` is the z index of the slice where it is longest; the centroid is in patient
    LPS coordinates (mm); `mean_hu` the CT's mean inside the lesion. `within`: a box (z, y, x
    slices) holding every lesion, where the lesions' boxes are searched (one pass over it, not
    two over the CT); None: the whole CT.
    """
    boxes = lesion_boxes(labels, within)  # per-lesion boxes: no whole-volume float copies
    measured = measure_lesions(labels, ct.spacing, boxes=boxes)
    if not measured:
        return []
    rows = []
    for lesion_id, m in measured.items():
        box = boxes[lesion_id - 1]
        assert box is not None  # measured lesions are present
        mean_hu = float(ct.array[box][labels[box] == lesion_id].mean())
        x, y, z = ct.geometry.index_to_physical(m.centroid_index)
        rows.append({
            "lesion_id": lesion_id, "volume_ml": round(m.volume_ml, 4),
            "longest_axial_diameter_mm": round(m.longest_diameter_mm, 2),
            "perpendicular_diameter_mm": round(m.perpendicular_diameter_mm, 2),
            "slice_index": m.diameter_slice,
            "centroid_x_mm": round(float(x), 2), "centroid_y_mm": round(float(y), 2),
            "centroid_z_mm": round(float(z), 2), "mean_hu": round(float(mean_hu), 1),
        })
    return rows


def _load(model: PathLike | SavedModel, task: str) -> SavedModel:
    if isinstance(model, SavedModel):
        if model.task != task:
            raise InputError(f"this is a {model.task} model; give a {task} model")
        return model
    path = Path(model)
    if path.is_dir():
        path = path / "model.pt"
    return load_model(path, expected_task=task)


def _check_same_preprocessing(models: Sequence[SavedModel]) -> None:
    """Refuse an ensemble whose members read the CT differently (grid, crop, context)."""
    first = models[0].preprocessing
    for number, model in enumerate(models[1:], start=2):
        if model.preprocessing != first:
            differing = sorted(k for k in {*first, *model.preprocessing}
                               if first.get(k) != model.preprocessing.get(k))
            raise InputError(f"lesion model {number} reads the CT differently from the first "
                             f"({', '.join(differing)}); average only models trained with the "
                             "same preprocessing")


def _model_record(model: SavedModel) -> dict[str, Any]:
    record = model.record
    return {"arch": model.arch, "task": model.task, "options": model.options,
            "preprocessing": model.preprocessing,
            "trained": {k: record[k] for k in ("git_commit", "best_epoch", "manifest_sha256",
                                               "train_cases", "versions", "provenance")
                        if k in record}}
