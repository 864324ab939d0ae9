"""Binarise a lesion probability map: Otsu's threshold (the paper) or a fixed value.

The paper binarises the sigmoid map with Otsu's threshold without saying over which voxels.
Here Otsu's method runs on the probabilities inside the liver, on a 256-bin histogram of
[0, 1], and two rules keep it from cutting noise:

1. **No lesion class, no lesion.** When no voxel inside the liver reaches
   `EMPTY_BELOW` (0.5, the network's own decision boundary), the map is all background and
   nothing is foreground, whatever Otsu says: on a flat or one-sided histogram Otsu still
   returns a value inside the noise, and would turn that noise into lesions.
2. **Clamped.** The threshold applied is Otsu's value clamped to [`OTSU_FLOOR`,
   `OTSU_CEILING`] = [0.1, 0.9]: with a liver of a million background voxels and a lesion of
   a few hundred, Otsu's between-class variance is largest for a split inside the
   background's own spread, below 0.1.

Both values (Otsu's and the one applied) are reported in `ThresholdResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EMPTY_BELOW = 0.5
OTSU_FLOOR = 0.1
OTSU_CEILING = 0.9
HISTOGRAM_BINS = 256


@dataclass(frozen=True)
class ThresholdResult:
    """How a probability map was binarised.

    `method`: "otsu" or "fixed"; `otsu`: Otsu's value on the liver's probabilities (None for
    a fixed threshold or no voxel); `value`: the threshold applied (foreground is
    probability > value); `empty`: True when rule 1 made the whole map background.
    """

    method: str
    value: float
    otsu: float | None
    empty: bool

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict for run records."""
        return {"method": self.method, "value": self.value, "otsu": self.otsu,
                "empty": self.empty}


def otsu_threshold(values: npt.NDArray[np.floating], *, bins: int = HISTOGRAM_BINS) -> float:
    """Otsu's threshold of `values` in [0, 1]: the bin edge maximising between-class variance.

    Foreground is `values > threshold`. The histogram has `bins` equal bins on [0, 1]; the
    candidates are the bins' upper edges. When the classes are separated by empty bins, every
    edge in the gap scores the same: the middle of that run of equal edges is returned (for
    values at 0.1 and 0.9 that is 0.5, not 0.1). A constant input (one occupied bin) returns
    that bin's upper edge, so nothing is above it. Raises ValueError for an empty input.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("Otsu's threshold needs at least one value")
    counts, edges = np.histogram(np.clip(flat, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(counts)[:-1].astype(np.float64)
    weight1 = flat.size - weight0
    sum0 = np.cumsum(counts * centres)[:-1]
    total = float(np.sum(counts * centres))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean0 = sum0 / weight0
        mean1 = (total - sum0) / weight1
        between = weight0 * weight1 * (mean0 - mean1) ** 2
    between = np.where((weight0 > 0) & (weight1 > 0), between, -1.0)
    if between.max() < 0:  # one occupied bin: no split exists
        occupied = int(np.flatnonzero(counts)[-1])
        return float(edges[occupied + 1])
    first = int(np.argmax(between))
    last = first
    while last + 1 < between.size and np.isclose(between[last + 1], between[first],
                                                 rtol=1e-12, atol=0.0):
        last += 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def choose_threshold(probability_in_liver: npt.NDArray[np.floating],
                     threshold: str | float = "otsu") -> ThresholdResult:
    """The threshold for a lesion map from its probabilities inside the liver (any shape).

    `threshold` is "otsu" (the module's rules) or a fixed probability in (0, 1).
    """
    values = np.asarray(probability_in_liver)
    if threshold != "otsu":
        fixed = float(threshold)
        if not 0.0 < fixed < 1.0:
            raise ValueError(f"a fixed threshold must be in (0, 1), got {threshold!r}")
        return ThresholdResult("fixed", fixed, None, empty=False)
    if values.size == 0:
        return ThresholdResult("otsu", EMPTY_BELOW, None, empty=True)
    otsu = otsu_threshold(values)
    if float(values.max()) < EMPTY_BELOW:
        return ThresholdResult("otsu", EMPTY_BELOW, otsu, empty=True)
    return ThresholdResult("otsu", float(np.clip(otsu, OTSU_FLOOR, OTSU_CEILING)), otsu,
                           empty=False)


def parse_threshold(text: str) -> str | float:
    """`--threshold` value: "otsu" or a probability in (0, 1). Raises ValueError otherwise."""
    if text.strip().lower() == "otsu":
        return "otsu"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--threshold must be 'otsu' or a probability such as 0.5, got "
                         f"{text!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {text}")
    return value
