"""The pyradiomics features of every lesion of one CT.

`lesion_features(image, labels, params)` runs pyradiomics once per lesion label on the CT and
its lesion label map (both (z, y, x) on one grid) and returns one `LesionFeatures` per lesion,
in label order, with the features named as pyradiomics names them
(`original_shape_VoxelVolume`, `original_glcm_Contrast`, ...).

Lesions too small or too flat for a class never stop the case: when pyradiomics refuses a
lesion, each class is tried alone; a class that fails leaves its features out (empty cells in
the tables) and the lesion's `note` says which and why; a feature pyradiomics cannot compute
(NaN) is left out and counted in the note too.

Speed, with the same numbers as pyradiomics on the whole CT: pyradiomics reads the whole mask
and B-spline-filters the whole CT for each lesion (about 2 s per lesion on a 512 x 512 x 100
CT). With only the original image type enabled, each lesion is run on a box around it instead:
its bounding box grown by pyradiomics' padding plus 16 voxels for the B-spline. With
resampling, the box's corner is moved, per axis, to a multiple of the number of voxels after
which the resampled grid repeats (q voxels with q * spacing / new spacing whole), so that the
resampled grid is the one pyradiomics builds on the whole CT (and an axis where no such q up to
`_MAX_PERIOD` exists is not cropped). Filters (LoG, wavelet) look beyond the lesion, so with
them every lesion runs on the whole CT.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.io.volume import Volume
from livermets.radiomics.settings import make_extractor

logger = logging.getLogger(__name__)

#: Voxels beyond pyradiomics' padding: the B-spline prefilter's reach (its pole, 0.27 per voxel,
#: falls below 1e-9 in 16 voxels), so that the crop edge does not change the values.
_SUPPORT_VOXELS = 16
#: The longest repeat (voxels) of the resampled grid for which an axis is cropped.
_MAX_PERIOD = 256


@dataclass(frozen=True)
class LesionFeatures:
    """One lesion's features ({pyradiomics name: value}) and a note ('' when all computed)."""

    lesion_id: int
    features: dict[str, float] = field(default_factory=dict)
    note: str = ""


def lesion_features(image: Volume, labels: npt.NDArray[np.integer], params: dict[str, Any]
                    ) -> list[LesionFeatures]:
    """Features of each lesion (label > 0) of `labels` on the CT `image` (HU), label order.

    `labels` has `image`'s shape (z, y, x); `params` is a pyradiomics parameter mapping
    (`settings.DEFAULT_PARAMS`). Never raises for a lesion pyradiomics refuses (module rules).
    """
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape} differ in shape")
    extractor = make_extractor(params)
    crop = set(extractor.enabledImagetypes) == {"Original"}
    period = _grid_period(image.spacing, extractor.settings.get("resampledPixelSpacing"))
    margin = _margin_voxels(image.spacing, extractor.settings)
    out = []
    for lesion_id, box in _lesion_boxes(labels):
        window = (_window(box, image.shape, margin, period) if crop
                  else tuple(slice(0, n) for n in image.shape))
        corner = [s.start for s in window]
        x, y, z = (float(v) for v in image.geometry.index_to_physical(corner))
        sub_image = Volume.from_array(image.array[window], spacing=image.spacing,
                                      origin=(x, y, z), direction=image.direction)
        sub_mask = sub_image.with_array((labels[window] == lesion_id).astype(np.uint8))
        out.append(_one_lesion(extractor, params, sub_image.to_sitk(), sub_mask.to_sitk(),
                               lesion_id))
    return out


def _lesion_boxes(labels: npt.NDArray[np.integer]) -> Iterator[tuple[int, tuple[slice, ...]]]:
    """(label, bounding box) of each label present, in increasing label order."""
    present = [int(k) for k in np.unique(labels) if k > 0]
    if not present:
        return
    # find_objects on a dense relabelling: user labels may be large and sparse.
    dense = np.searchsorted(np.asarray(present), labels) + 1
    dense[labels <= 0] = 0
    for lesion_id, box in zip(present, ndimage.find_objects(dense), strict=True):
        if box is not None:  # always: every dense label is present
            yield lesion_id, box


def _grid_period(spacing: tuple[float, float, float], resampled: Any) -> tuple[int | None, ...]:
    """Per axis (z, y, x), the crop step (voxels) that keeps pyradiomics' resampled grid: 1
    without resampling, else the least q with q * spacing / new spacing whole (None: none up
    to `_MAX_PERIOD`)."""
    if not resampled:
        return (1, 1, 1)
    new_zyx = [float(v) for v in list(resampled)[::-1]]  # pyradiomics' order is x, y, z
    periods: list[int | None] = []
    for old, new in zip(spacing, new_zyx, strict=True):
        if new == 0:  # pyradiomics keeps that axis's spacing
            periods.append(1)
            continue
        ratio = old / new
        periods.append(next((q for q in range(1, _MAX_PERIOD + 1)
                             if abs(q * ratio - round(q * ratio)) < 1e-9 * max(1.0, q * ratio)),
                            None))
    return tuple(periods)


def _margin_voxels(spacing: tuple[float, float, float], settings: dict[str, Any]
                   ) -> tuple[int, ...]:
    """Voxels kept around a lesion per axis (z, y, x): pyradiomics' padding (in resampled
    voxels when resampling) plus `_SUPPORT_VOXELS`."""
    pad = float(settings.get("padDistance", 5))
    resampled = settings.get("resampledPixelSpacing")
    new_zyx = [float(v) for v in list(resampled)[::-1]] if resampled else list(spacing)
    return tuple(math.ceil(pad * (new or old) / old) + _SUPPORT_VOXELS
                 for old, new in zip(spacing, new_zyx, strict=True))


def _window(box: tuple[slice, ...], shape: tuple[int, ...], margin: tuple[int, ...],
            period: tuple[int | None, ...]) -> tuple[slice, ...]:
    """The lesion's box grown by `margin`, its start moved down to a multiple of `period`
    (the whole axis where the period is None)."""
    window = []
    for part, size, grow, step in zip(box, shape, margin, period, strict=True):
        if step is None:
            window.append(slice(0, size))
            continue
        start = max(0, part.start - grow) // step * step
        window.append(slice(start, min(size, part.stop + grow)))
    return tuple(window)


def _one_lesion(extractor: Any, params: dict[str, Any], image: Any, mask: Any,
                lesion_id: int) -> LesionFeatures:
    """pyradiomics on one lesion (mask label 1); class by class when it refuses the lesion."""
    notes: list[str] = []
    try:
        raw = dict(extractor.execute(image, mask, label=1))
    except Exception as error:
        raw, failures = {}, {}
        for name in list(extractor.enabledFeatures):
            single = make_extractor(params)
            single.enabledFeatures = {name: extractor.enabledFeatures[name]}
            try:
                raw |= dict(single.execute(image, mask, label=1))
            except Exception as class_error:
                failures[name] = _one_line(class_error)
        if not failures:  # the whole run failed, each class alone did not
            logger.info("lesion %d: %s; computed class by class", lesion_id, _one_line(error))
        reasons = list(dict.fromkeys(failures.values()))
        if len(failures) == len(extractor.enabledFeatures) and len(reasons) == 1:
            notes.append(f"no features: {reasons[0]}")
        else:
            for reason in reasons:
                names = [n for n, r in failures.items() if r == reason]
                notes.append(f"{', '.join(names)} not computed: {reason}")
    features: dict[str, float] = {}
    undefined: dict[str, int] = {}
    for key, value in raw.items():
        if key.startswith("diagnostics_"):
            continue
        number = float(np.asarray(value))
        if math.isfinite(number):
            features[key] = number
        else:
            group = key.split("_")[1] if key.count("_") >= 2 else key
            undefined[group] = undefined.get(group, 0) + 1
    if undefined:
        notes.append("undefined (empty): " + ", ".join(f"{group} {n}" for group, n in
                                                      undefined.items()))
    return LesionFeatures(lesion_id, features, "; ".join(notes))


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
