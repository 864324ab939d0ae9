"""Lesion-level comparison of a predicted instance map with a reference one.

Both maps are instance labels (z, y, x) on the same grid: 0 background, any positive ids (a
reference keeps its own ids; a binary one is split into 26-connected components first,
`labels.lesion_ids`).

The rule, per reference lesion r:

- Its **predicted region** is the union of the predicted lesions that overlap r (share at
  least one voxel with it).
- A predicted lesion that overlaps **several** reference lesions (e.g. two lesions merged into
  one) is shared out voxel by voxel among them: each of its voxels goes to the one of those
  reference lesions nearest to it (Euclidean distance in mm to the lesion's nearest voxel; a
  voxel inside a reference lesion belongs to it; ties go to the lower reference id).
- Over r and its predicted region: TP = voxels in both, FP = predicted region outside r, FN =
  r outside the predicted region. Dice = 2TP / (2TP + FP + FN), precision = TP / (TP + FP),
  recall = TP / (TP + FN). A lesion with no overlapping prediction has Dice, precision and
  recall 0 (a missed lesion is a failure, not a missing value).
- **Detected**: Dice > `detection_dice` (0.2, the paper's).
- **False positives**: predicted lesions that overlap no reference lesion.
- **Pairs** (`paired_lesions`, for comparing per-lesion values such as radiomics features):
  each predicted lesion goes to the reference lesion it shares the most voxels with (ties: the
  lower id); a reference lesion chosen by several predicted lesions keeps the one sharing the
  most voxels with it (ties: the lower id); a pair counts when its reference lesion is
  detected. One-to-one: neither lesion appears in two pairs.

These are pure functions on arrays: no files, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from livermets.types import Spacing

DETECTION_DICE = 0.2


@dataclass(frozen=True)
class LesionScore:
    """One reference lesion against the prediction: voxel counts and the three scores.

    `predicted_ids`: the predicted lesions overlapping it (their regions, shared out when
    they overlap other reference lesions too, form the predicted region).
    """

    reference_id: int
    tp: int
    fp: int
    fn: int
    predicted_ids: tuple[int, ...]

    @property
    def dice(self) -> float:
        """2TP / (2TP + FP + FN); 0 when nothing overlaps."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 0.0

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when there is no predicted region."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    def detected(self, detection_dice: float = DETECTION_DICE) -> bool:
        """Whether the lesion counts as detected (Dice strictly above `detection_dice`)."""
        return self.dice > detection_dice


@dataclass(frozen=True)
class LesionMatch:
    """Every reference lesion's score, in reference id order, and the false positives."""

    scores: tuple[LesionScore, ...]
    false_positive_ids: tuple[int, ...]


def match_lesions(reference: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer],
                  spacing: Spacing) -> LesionMatch:
    """Score each reference lesion of `reference` against `prediction` (module rules).

    Both are integer instance maps (z, y, x) of the same shape; `spacing` (z, y, x) mm is used
    to share out predicted lesions overlapping several reference lesions.
    """
    ref_in, pred_in = np.asarray(reference), np.asarray(prediction)
    if ref_in.shape != pred_in.shape:
        raise ValueError(f"reference {ref_in.shape} and prediction {pred_in.shape} "
                         "differ in shape")
    for name, array in (("reference", ref_in), ("prediction", pred_in)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(f"{name} must be an integer instance map, got {array.dtype}")
    reference = ref_in.astype(np.int64, copy=False)
    prediction = pred_in.astype(np.int64, copy=False)
    overlaps = _overlap_pairs(reference, prediction)
    partners_of = _by_prediction(overlaps)
    # Voxels of each reference lesion's predicted region, from the predicted lesions shared
    # with other reference lesions: {(reference id, predicted id): voxels}.
    shared_region: dict[tuple[int, int], int] = {}
    for p, refs in partners_of.items():
        if len(refs) > 1:
            shared_region |= _share_out(reference, prediction, p, sorted(refs), spacing)

    reference_ids = [int(k) for k in np.unique(reference) if k > 0]
    sizes = np.bincount(reference.ravel())
    predicted_sizes = np.bincount(prediction.ravel())
    scores = []
    for r in reference_ids:
        partners = tuple(sorted(p for (ref, p) in overlaps if ref == r))
        region = sum(shared_region.get((r, p), int(predicted_sizes[p])) for p in partners)
        tp = sum(overlaps[(r, p)] for p in partners)
        scores.append(LesionScore(r, tp=tp, fp=region - tp, fn=int(sizes[r]) - tp,
                                  predicted_ids=partners))
    touched = {p for (_, p) in overlaps}
    false_positives = tuple(int(p) for p in np.unique(prediction) if p > 0 and p not in touched)
    return LesionMatch(tuple(scores), false_positives)


@dataclass(frozen=True)
class LesionPair:
    """A detected reference lesion and the predicted lesion paired with it; `dice` is the
    reference lesion's (over its whole predicted region, as in `LesionScore`)."""

    reference_id: int
    predicted_id: int
    dice: float


def paired_lesions(reference: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer],
                   spacing: Spacing, *, detection_dice: float = DETECTION_DICE
                   ) -> list[LesionPair]:
    """One-to-one pairs of detected reference lesions and predicted lesions (module rules),
    in reference id order; the arguments as for `match_lesions`."""
    match = match_lesions(reference, prediction, spacing)
    overlaps = _overlap_pairs(np.asarray(reference).astype(np.int64, copy=False),
                              np.asarray(prediction).astype(np.int64, copy=False))
    # Each predicted lesion's reference lesion: most shared voxels, then the lower id.
    chosen: dict[int, int] = {}
    for (r, p), shared in sorted(overlaps.items()):
        if p not in chosen or shared > overlaps[(chosen[p], p)]:
            chosen[p] = r
    best: dict[int, int] = {}  # reference id -> its predicted lesion
    for p, r in sorted(chosen.items()):
        if r not in best or overlaps[(r, p)] > overlaps[(r, best[r])]:
            best[r] = p
    return [LesionPair(score.reference_id, best[score.reference_id], score.dice)
            for score in match.scores
            if score.reference_id in best and score.detected(detection_dice)]


def _overlap_pairs(reference: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer]
                   ) -> dict[tuple[int, int], int]:
    """{(reference id, predicted id): shared voxels} for every overlapping pair."""
    both = (reference > 0) & (prediction > 0)
    pairs, counts = np.unique(np.stack([reference[both], prediction[both]]), axis=1,
                              return_counts=True)
    return {(int(r), int(p)): int(c) for (r, p), c in zip(pairs.T, counts, strict=True)}


def _by_prediction(overlaps: dict[tuple[int, int], int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for r, p in overlaps:
        out.setdefault(p, set()).add(r)
    return out


def _share_out(reference: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer],
               predicted_id: int, reference_ids: list[int], spacing: Spacing
               ) -> dict[tuple[int, int], int]:
    """Share predicted lesion `predicted_id`'s voxels out to the nearest of `reference_ids`.

    Returns {(reference id, predicted_id): voxels given to it}. The distance transforms run
    on the bounding box of the lesion and those reference lesions only.
    """
    involved = (prediction == predicted_id) | np.isin(reference, reference_ids)
    box = ndimage.find_objects(involved.astype(np.uint8))[0]
    voxels = prediction[box] == predicted_id
    distances = np.stack([
        ndimage.distance_transform_edt(reference[box] != r, sampling=spacing)[voxels]
        for r in reference_ids])
    nearest = np.argmin(distances, axis=0)  # ties: the first, i.e. the lower id
    return {(r, predicted_id): int(np.count_nonzero(nearest == k))
            for k, r in enumerate(reference_ids)}
