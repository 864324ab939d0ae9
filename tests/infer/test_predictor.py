"""The inference pipeline on a phantom whose answer is known voxel for voxel.

The phantom: air, a soft-tissue body (100 +/- 10 HU checkerboard), a liver block inside it,
and three hypodense (40 HU) balls: A inside the liver, B on its edge (1.5 mm outside), C in
the body 9 mm from the liver. The rule models (tests/infer/rule_models.py) mark liver z-scores
below -2.5 as lesion: the expected lesions are exactly the balls the pipeline must keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from livermets.errors import InputError
from livermets.infer.predictor import (
    LESION_COLUMNS,
    Predictor,
    PredictSettings,
    grown_box,
    lesion_table,
    near_mask,
    quantise_probability,
)
from livermets.io.image import check_ct
from livermets.io.volume import Volume
from livermets.measure import measure_lesions
from livermets.models.saved import SavedModel
from livermets.preprocess import liver_field_box
from tests.infer.rule_models import lesion_rule, liver_rule

SPACING = (2.0, 1.5, 1.5)  # z, y, x mm: the liver block is 86 mL
ORIGIN = (-30.0, 40.0, 100.0)  # x, y, z mm
# A left-right and anterior-posterior flip, as in many CTs, to test LPS centroids.
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class Phantom:
    ct: Volume
    liver: Volume
    body: np.ndarray
    balls: dict[str, np.ndarray]


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float],
          radius_mm: float) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=float)
    return ((((z - centre[0]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2
             + ((x - centre[2]) * SPACING[2]) ** 2) <= radius_mm**2)


def _air_and_body(shape: tuple[int, int, int], inset: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU int16, body mask): air, and a soft-tissue body (100 +/- 10 HU checkerboard) on
    every slice, `inset` pixels in from each side."""
    z, y, x = np.indices(shape)
    hu = np.full(shape, -1000, dtype=np.int16)
    body = np.zeros(shape, bool)
    body[:, inset:shape[1] - inset, inset:shape[2] - inset] = True
    hu[body] = (100 + 10 * (-1) ** (z + y + x))[body]
    return hu, body


def make_phantom(*, lesions: bool = True) -> Phantom:
    shape = (24, 64, 64)
    hu, body = _air_and_body(shape, 4)
    liver = np.zeros(shape, np.uint8)
    liver[6:18, 12:52, 12:52] = 1
    balls = {"A": _ball(shape, (12, 30, 24), 5.0), "B": _ball(shape, (12, 30, 50), 3.0),
             "C": _ball(shape, (12, 30, 58), 1.5)}
    if lesions:
        for ball in balls.values():
            hu[ball] = 40
    geometry = {"spacing": SPACING, "origin": ORIGIN, "direction": DIRECTION}
    return Phantom(Volume.from_array(hu, **geometry), Volume.from_array(liver, **geometry),
                   body, balls)


def test_given_liver_keeps_the_lesions_inside_and_at_the_edge() -> None:
    phantom = make_phantom()
    predictor = Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32"))
    result = predictor.predict(phantom.ct, phantom.liver)

    a, b = phantom.balls["A"], phantom.balls["B"]
    assert a.sum() > b.sum() > 0
    assert result.liver_source == "given"
    np.testing.assert_array_equal(result.liver.array, phantom.liver.array)
    # 1 = the larger lesion; B reaches 1.5 mm outside the liver (allowed 5 mm); C is 9 mm out.
    np.testing.assert_array_equal(result.lesions.array == 1, a)
    np.testing.assert_array_equal(result.lesions.array == 2, b)
    assert int(result.lesions.array.max()) == 2
    assert result.threshold.method == "otsu" and not result.threshold.empty
    assert 0.1 <= result.threshold.value <= 0.9
    # Liver z-range 6..17 plus 10 mm (5 slices) each side; no probability outside it.
    assert result.z_range == (1, 23)
    assert result.probability is not None
    assert not result.probability.array[0].any() and not result.probability.array[23].any()
    for volume in (result.liver, result.lesions, result.probability):
        assert volume.geometry == phantom.ct.geometry


def test_lesion_table_agrees_with_the_masks() -> None:
    phantom = make_phantom()
    result = Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32")).predict(
        phantom.ct, phantom.liver)
    table = result.lesion_table
    assert [row["lesion_id"] for row in table] == [1, 2]
    assert all(list(row) == list(LESION_COLUMNS) for row in table)
    for row, ball in zip(table, (phantom.balls["A"], phantom.balls["B"]), strict=True):
        assert row["volume_ml"] == pytest.approx(ball.sum() * 4.5 / 1000, abs=1e-4)
        assert row["mean_hu"] == 40.0
        # The centroid, by hand: mean voxel index -> physical with the flipped directions.
        zc, yc, xc = (float(v.mean()) for v in np.nonzero(ball))
        assert row["centroid_x_mm"] == pytest.approx(-30.0 - xc * 1.5, abs=0.01)
        assert row["centroid_y_mm"] == pytest.approx(40.0 - yc * 1.5, abs=0.01)
        assert row["centroid_z_mm"] == pytest.approx(100.0 + zc * 2.0, abs=0.01)
        measured = measure_lesions(ball.astype(np.uint8), SPACING)[1]
        assert row["longest_axial_diameter_mm"] == pytest.approx(
            measured.longest_diameter_mm, abs=0.01)
        assert row["slice_index"] == measured.diameter_slice
    # Ball A: radius 5 mm, so its widest slice spans 7 voxels of 1.5 mm (10.5 mm edge to
    # edge), at most the diagonal of its 7 x 7 bounding square.
    assert 10.5 <= table[0]["longest_axial_diameter_mm"] <= 10.5 * np.sqrt(2)


def test_candidate_checks_reject_fat_and_report_it() -> None:
    """A fat band (-100 HU, 3 voxels = 4.5 mm wide, 120 voxels) in the liver, like the fat of
    a fissure. It raises the liver's SD to about 18.5 HU, so the balls (40 HU) still lie below
    z = -2.5 and the band (z about -11) too; the fat check rejects the band (its voxels stay
    fat after the 1 mm smoothing), and the balls stay lesions 1 and 2."""
    phantom = make_phantom()
    hu = phantom.ct.array.copy()
    band = np.zeros(hu.shape, bool)
    band[11:13, 40:43, 16:36] = True
    hu[band] = -100
    ct = phantom.ct.with_array(hu)
    result = Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32")).predict(
        ct, phantom.liver)
    np.testing.assert_array_equal(result.lesions.array == 1, phantom.balls["A"])
    np.testing.assert_array_equal(result.lesions.array == 2, phantom.balls["B"])
    [rejected] = result.rejected_table
    # Its median, -100 HU, is below the fluid bound (20 HU) too.
    assert rejected["failed_checks"] == "fat fluid" and rejected["candidate_id"] == 1
    assert rejected["volume_ml"] == pytest.approx(band.sum() * 4.5 / 1000, abs=1e-4)
    assert rejected["fat_fraction"] > 0.5 and rejected["outside_fraction"] == 0.0
    assert result.rejected is not None
    np.testing.assert_array_equal(result.rejected.array, band.astype(np.uint8))
    # Without the checks (the paper's pipeline) the band is a lesion, between A and B in size.
    plain = Predictor(lesion_rule(64), settings=PredictSettings(
        precision="fp32", candidate_checks=None)).predict(ct, phantom.liver)
    assert phantom.balls["A"].sum() > band.sum() > phantom.balls["B"].sum()
    np.testing.assert_array_equal(plain.lesions.array == 2, band)
    assert plain.rejected_table == [] and plain.rejected is None


def test_liver_model_path_takes_the_largest_component() -> None:
    phantom = make_phantom()
    # No dilation: beyond this "liver" lies air, which the lesion rule (z < -2.5) would take.
    predictor = Predictor(lesion_rule(64), liver_rule(64),
                          PredictSettings(precision="fp32", keep_probability=False,
                                          liver_dilation_mm=0.0, extent_mm=None))
    result = predictor.predict(phantom.ct)
    assert result.liver_source == "model" and result.probability is None
    # The liver rule takes all soft tissue: the whole body, balls included (holes filled).
    np.testing.assert_array_equal(result.liver.array, phantom.body.astype(np.uint8))
    # Now every ball lies inside the "liver": three lesions, by decreasing volume.
    expected = [phantom.balls[k].sum() for k in "ABC"]
    assert [int((result.lesions.array == k).sum()) for k in (1, 2, 3)] == expected


def test_no_lesion_no_noise_and_a_fixed_threshold() -> None:
    phantom = make_phantom(lesions=False)
    result = Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32")).predict(
        phantom.ct, phantom.liver)
    assert result.threshold.empty and result.lesion_table == []
    assert not result.lesions.array.any()
    fixed = Predictor(lesion_rule(64), settings=PredictSettings(threshold=0.5)).predict(
        make_phantom().ct, phantom.liver)
    assert fixed.threshold.method == "fixed" and len(fixed.lesion_table) == 2


def test_minimum_volume_and_dilation_settings() -> None:
    phantom = make_phantom()
    b_ml = phantom.balls["B"].sum() * 4.5 / 1000
    no_small = PredictSettings(min_lesion_mm3=b_ml * 1000 + 1, precision="fp32")
    result = Predictor(lesion_rule(64), settings=no_small).predict(phantom.ct, phantom.liver)
    assert len(result.lesion_table) == 1
    no_dilation = PredictSettings(liver_dilation_mm=0.0, precision="fp32")
    result = Predictor(lesion_rule(64), settings=no_dilation).predict(phantom.ct, phantom.liver)
    # B is cut at the liver's edge (x < 52).
    expected_b = phantom.balls["B"] & (phantom.liver.array > 0)
    np.testing.assert_array_equal(result.lesions.array == 2, expected_b)


def test_nearness_in_mm_follows_the_spacing() -> None:
    mask = np.zeros((9, 9, 9), bool)
    mask[4, 4, 4] = True
    everywhere = ~mask
    near = near_mask(mask, everywhere, (2.0, 1.0, 1.0), 2.0)
    # 2 mm reaches one slice in z (2 mm) and two voxels in y and x; not the corners.
    assert near[3, 4, 4] and near[5, 4, 4] and not near[2, 4, 4]
    assert near[4, 4, 6] and near[4, 6, 4] and not near[4, 4, 7]
    assert not near[3, 5, 4]  # sqrt(2^2 + 1^2) > 2 mm
    assert not near[4, 4, 4]  # only candidates
    assert int(near.sum()) == 2 + 12  # z neighbours, in-plane disc of radius 2 (centre excluded)
    # Candidates far away cost nothing and are not near.
    far = np.zeros((9, 9, 9), bool)
    far[0, 0, 0] = True
    assert not near_mask(mask, far, (2.0, 1.0, 1.0), 2.0).any()
    assert grown_box(mask, (2.0, 1.0, 1.0), 2.0) == (slice(3, 6), slice(2, 7), slice(2, 7))


def test_bad_input_is_one_clear_error() -> None:
    phantom = make_phantom()
    predictor = Predictor(lesion_rule(64))
    mr_like = phantom.ct.with_array(np.abs(phantom.ct.array.astype(np.int32)) + 5)
    with pytest.raises(InputError, match="air near -1000"):
        check_ct(mr_like, "the CT")
    with pytest.raises(InputError, match="air near -1000"):
        predictor.predict(mr_like, phantom.liver)
    other_grid = Volume.from_array(phantom.liver.array, spacing=(2.0, 1.0, 1.5))
    with pytest.raises(InputError, match="not on the CT's grid"):
        predictor.predict(phantom.ct, other_grid)
    with pytest.raises(InputError, match="no liver model and no liver mask"):
        predictor.predict(phantom.ct)
    with pytest.raises(InputError, match="give a liver model"):
        Predictor(lesion_rule(64), lesion_rule(64))
    with pytest.raises(InputError, match="give a lesion model"):
        Predictor(liver_rule(64))
    with pytest.raises(InputError, match="liver mask is empty"):
        predictor.predict(phantom.ct, phantom.liver.with_array(np.zeros((24, 64, 64), np.uint8)))


def test_empty_table_for_an_empty_map() -> None:
    phantom = make_phantom()
    assert lesion_table(np.zeros((24, 64, 64), np.uint8), phantom.ct) == []


def test_probabilities_are_kept_in_1024ths_inside_the_dilated_liver_only() -> None:
    probability = np.array([[[0.1, 0.5004, 0.9999, 0.7]]], dtype=np.float32)
    allowed = np.array([[[True, True, True, False]]])
    out = quantise_probability(probability.copy(), allowed)
    # 0.1 * 1024 = 102.4 -> 102; 0.5004 * 1024 = 512.4 -> 512; 0.9999 * 1024 = 1023.9 -> 1024.
    np.testing.assert_array_equal(out, np.array([[[102 / 1024, 512 / 1024, 1.0, 0.0]]],
                                                dtype=np.float32))
    phantom = make_phantom()
    result = Predictor(lesion_rule(64), settings=PredictSettings(precision="fp32")).predict(
        phantom.ct, phantom.liver)
    assert result.probability is not None
    # The liver block (z 6-17, y and x 12-51) grown by 5 mm: 3 slices, 4 pixels of 1.5 mm.
    zone = np.zeros(phantom.ct.shape, bool)
    zone[3:21, 8:56, 8:56] = True
    assert not result.probability.array[~zone].any()
    assert result.probability.array[zone].any()
    assert result.probability.array[phantom.balls["A"]].min() == 1.0


def _small_lesion_phantom() -> tuple[Volume, Volume, np.ndarray]:
    """A 6 mm lesion (4x4 pixels of 1.5 mm, 60 HU darker) in a 48 mm liver on a 240 mm slice:
    (CT, liver, lesion mask)."""
    shape = (16, 160, 160)
    hu, _ = _air_and_body(shape, 10)
    liver = np.zeros(shape, np.uint8)
    liver[2:14, 20:52, 20:52] = 1  # 138 mL
    lesion = np.zeros(shape, bool)
    lesion[6:10, 34:38, 34:38] = True
    hu[lesion] = 40
    return (Volume.from_array(hu, spacing=(5.0, 1.5, 1.5)),
            Volume.from_array(liver, spacing=(5.0, 1.5, 1.5)), lesion)


def test_a_model_trained_on_liver_crops_sees_a_lesion_the_whole_slice_blurs_away() -> None:
    """Shrunk whole to a 32x32 grid (5x), the 6 mm lesion is averaged with the liver around it
    and its z-score no longer reaches the rule's -2.5 (peak probability 0.36): nothing is
    found. With `crop_margin_mm` 3 the network sees the liver's box plus 2 pixels (36 pixels,
    1.125x), and the lesion is found voxel for voxel."""
    ct, given, lesion = _small_lesion_phantom()
    settings = PredictSettings(precision="fp32")

    whole = Predictor(lesion_rule(32), settings=settings).predict(ct, given)
    assert not whole.lesions.array.any()
    assert whole.probability is not None and whole.probability.array.max() < 0.5

    cropping = lesion_rule(32)
    cropping.preprocessing["crop_margin_mm"] = 3.0
    cropped = Predictor(cropping, settings=settings).predict(ct, given)
    np.testing.assert_array_equal(cropped.lesions.array, lesion.astype(np.uint8))
    assert cropped.probability is not None
    assert cropped.probability.array.shape == lesion.shape


def test_a_model_on_a_field_in_mm_reads_past_the_slice_and_keeps_what_lies_on_it() -> None:
    """The phantom's liver moved to the slice's corner (rows and columns 0-31, 48 mm, lesion at
    rows and columns 14-17). A model with `field_mm` 60 sees 48 + 2 x 10 = 68 mm round the
    liver's centre: 45 pixels from -7 to 38 (air past the edge), magnified to 64: the 6 mm
    lesion is found voxel for voxel, and probabilities exist only on the field's part of the
    CT (rows and columns 0-37), nowhere else."""
    ct, given, lesion = _small_lesion_phantom()
    shift = (slice(None), slice(20, None), slice(20, None))
    hu = np.full(ct.array.shape, -1000, np.int16)
    hu[:, :-20, :-20] = ct.array[shift]
    liver = np.zeros_like(given.array)
    liver[:, :-20, :-20] = given.array[shift]
    moved = np.zeros_like(lesion)
    moved[:, :-20, :-20] = lesion[shift]
    assert liver_field_box(liver, (5.0, 1.5, 1.5), 60.0) == (slice(-7, 38), slice(-7, 38))
    field = lesion_rule(64)
    field.preprocessing["field_mm"] = 60.0
    found = Predictor(field, settings=PredictSettings(precision="fp32")).predict(
        ct.with_array(hu), given.with_array(liver))
    np.testing.assert_array_equal(found.lesions.array, moved.astype(np.uint8))
    assert found.probability is not None
    probability = found.probability.array
    assert probability[:, 38:, :].max() == 0 and probability[:, :, 38:].max() == 0
    assert probability[moved].min() > 0.5


def test_a_zoomed_second_pass_finds_the_small_lesion_and_only_raises_probabilities() -> None:
    """The whole-slice model alone misses the 6 mm lesion (above); a second pass on the
    liver's box plus 3 mm, magnified, finds it voxel for voxel, and the probability kept is
    the higher of the two passes everywhere."""
    ct, given, lesion = _small_lesion_phantom()
    whole = Predictor(lesion_rule(32), settings=PredictSettings(precision="fp32")).predict(
        ct, given)
    zoomed = Predictor(lesion_rule(32), settings=PredictSettings(
        precision="fp32", zoom_margin_mm=3.0)).predict(ct, given)
    np.testing.assert_array_equal(zoomed.lesions.array, lesion.astype(np.uint8))
    assert whole.probability is not None and zoomed.probability is not None
    assert (zoomed.probability.array >= whole.probability.array).all()
    assert zoomed.probability.array[lesion].min() > 0.5 > whole.probability.array.max()
    with pytest.raises(InputError, match="zoom margin"):
        PredictSettings(zoom_margin_mm=-1.0)


def _context_rule(image_size: int, weights: tuple[float, float, float]) -> SavedModel:
    """A 2.5D lesion rule: logit = 10 * (-2.5 - sum_c weights[c] * z_c) over the channels
    (slice below, the slice, slice above), with `context_mm` 4 (2 slices of 2 mm)."""
    from tests.infer.rule_models import PixelRule

    rule = PixelRule(-10.0, -25.0)
    rule.conv = torch.nn.Conv2d(3, 1, kernel_size=1)
    with torch.no_grad():
        rule.conv.weight.copy_(torch.tensor(weights).view(1, 3, 1, 1) * -10.0)
        rule.conv.bias.fill_(-25.0)
    single = lesion_rule(image_size)
    return SavedModel(model=rule.eval(), arch="unet", options={"in_channels": 3},
                      task="lesion", record={},
                      preprocessing={**single.preprocessing, "context_mm": 4.0})


def test_a_2_5d_model_sees_the_slices_context_mm_away() -> None:
    """Only the centre channel weighted: the same probabilities as the one-slice rule. Only
    the slice below (z - 2) weighted: each slice's probability is the one-slice rule's of the
    slice 2 below it (the first two repeat slice 0, clipped at the volume's end)."""
    phantom = make_phantom()
    settings = PredictSettings(precision="fp32", candidate_checks=None)
    single = Predictor(lesion_rule(64), settings=settings).predict(phantom.ct, phantom.liver)
    centre = Predictor(_context_rule(64, (0.0, 1.0, 0.0)), settings=settings).predict(
        phantom.ct, phantom.liver)
    assert single.probability is not None and centre.probability is not None
    np.testing.assert_allclose(centre.probability.array, single.probability.array, atol=1e-6)
    np.testing.assert_array_equal(centre.lesions.array, single.lesions.array)
    below = Predictor(_context_rule(64, (1.0, 0.0, 0.0)), settings=settings).predict(
        phantom.ct, phantom.liver)
    assert below.probability is not None
    start, stop = single.z_range
    np.testing.assert_allclose(below.probability.array[start + 2 : stop],
                               single.probability.array[start : stop - 2], atol=1e-6)


def test_an_outline_threshold_grows_found_lesions_and_starts_none() -> None:
    """Threshold 0.5, outline 0.2: a lesion whose core (radius 2 voxels) is at 0.9 and whose
    rim (radius 2-4) is at 0.3 is outlined whole; a blob at 0.3 without a core stays out."""
    shape = (20, 40, 40)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    def ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
        return ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
                <= radius**2)
    probability = np.zeros(shape, np.float32)
    probability[ball((10, 12, 12), 4)] = 0.3
    probability[ball((10, 12, 12), 2)] = 0.9
    probability[ball((10, 28, 28), 4)] = 0.3  # no core: never a lesion
    liver = np.ones(shape, np.uint8)
    hu = np.zeros(shape, np.int16)
    plain = Predictor(lesion_rule(64), settings=PredictSettings(
        threshold=0.5, candidate_checks=None, min_lesion_mm3=0))
    grown = Predictor(lesion_rule(64), settings=PredictSettings(
        threshold=0.5, candidate_checks=None, min_lesion_mm3=0, outline_threshold=0.2))
    core = plain.lesion_labels(probability.copy(), liver, (1.0, 1.0, 1.0), hu).labels
    whole = grown.lesion_labels(probability.copy(), liver, (1.0, 1.0, 1.0), hu).labels
    np.testing.assert_array_equal(core > 0, ball((10, 12, 12), 2))
    np.testing.assert_array_equal(whole > 0, ball((10, 12, 12), 4))
    assert int(whole.max()) == 1
    with pytest.raises(InputError, match="outline threshold"):
        PredictSettings(outline_threshold=1.5)
