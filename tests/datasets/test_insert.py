"""Lesion insertion into a liver, and the real-data builders of `livermets.datasets.public`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from livermets.datasets.insert import InsertSettings, insert_lesions, shape_bank
from livermets.datasets.public import totalsegmentator_example
from livermets.datasets.synth.lesions import lesion_shape_mask
from livermets.io import Volume, read_image
from livermets.measure import longest_axial_diameter_mm
from tests.conftest import shared_path

SPACING = (2.0, 0.8, 0.8)


def _phantom() -> tuple[Volume, Volume, Volume]:
    """A 60x120x120 CT (fat -100 HU) with a box liver of 100 HU + noise (SD 10 HU), and one
    existing lesion (label 1) at its corner."""
    rng = np.random.default_rng(5)
    hu = np.full((60, 120, 120), -100.0) + rng.normal(0, 10, (60, 120, 120))
    liver = np.zeros(hu.shape, np.uint8)
    liver[5:55, 10:110, 10:110] = 1
    hu[liver > 0] += 200.0
    lesions = np.zeros(hu.shape, np.uint8)
    lesions[8:12, 15:25, 15:25] = 1
    hu[lesions > 0] -= 50
    ct = Volume.from_array(np.rint(hu).astype(np.int16), spacing=SPACING)
    return ct, ct.with_array(liver), ct.with_array(lesions)


def test_generated_shape_has_the_asked_diameter() -> None:
    rng = np.random.default_rng(0)
    for diameter in (8.0, 20.0, 40.0):
        shape = lesion_shape_mask(rng, diameter, SPACING)
        assert ndimage.label(shape, structure=np.ones((3, 3, 3)))[1] == 1
        measured = longest_axial_diameter_mm(shape, SPACING)[0]
        assert 0.6 * diameter <= measured <= 1.5 * diameter, (diameter, measured)


def test_inserted_lesions_are_dark_inside_the_liver_and_leave_the_rest_alone() -> None:
    ct, liver, existing = _phantom()
    settings = InsertSettings(lesions=(3, 3), diameter_mm=(10.0, 14.0),
                              contrast_hu=(40.0, 40.0), rim_share=0.0)
    new, labels = insert_lesions(ct, liver, np.random.default_rng(1), settings,
                                 existing=existing)
    assert new.geometry == ct.geometry and new.array.dtype == np.int16
    assert np.array_equal(labels == 1, existing.array == 1)  # the old lesion keeps its label
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3, 4]
    assert not (labels[liver.array == 0] > 0).any()
    near = ndimage.binary_dilation(labels > 1, iterations=4)
    assert np.array_equal(new.array[~near], ct.array[~near])
    for label in (2, 3, 4):
        lesion = labels == label
        assert not (ndimage.binary_dilation(lesion, iterations=2) & (labels == 1)).any()
        core = ndimage.binary_erosion(lesion, iterations=1)
        # The liver's median is 100 HU: the core sits at 100 - 40 = 60 HU with the fine noise.
        assert abs(float(new.array[core].mean()) - 60.0) < 3.0
        # The CT's own noise (SD 10 HU) remains, less its 1.5 mm smooth part.
        assert 4.0 < float(new.array[core].std()) < 12.0


def test_patchy_lesions_keep_their_mean_level_and_add_the_asked_spread() -> None:
    ct, liver, existing = _phantom()
    settings = InsertSettings(lesions=(3, 3), diameter_mm=(20.0, 24.0), contrast_hu=(40.0, 40.0),
                              rim_share=0.0, texture_hu=(15.0, 15.0))
    new, labels = insert_lesions(ct, liver, np.random.default_rng(1), settings,
                                 existing=existing)
    for label in (2, 3, 4):
        lesion = labels == label
        # The field has mean 0 over the lesion: the mean stays near 100 - 40 = 60 HU, a little
        # higher from the edge's blend with the 100 HU liver (63 HU without any texture).
        assert 60.0 < float(new.array[lesion].mean()) < 66.0
        # Its SD (15 HU) adds to the fine noise's (about 10): sqrt(10^2 + 15^2) = 18 HU.
        core = ndimage.binary_erosion(lesion, iterations=1)
        assert 14.0 < float(new.array[core].std()) < 22.0


def test_a_drawn_wide_margin_fades_like_a_blurred_edge_and_is_not_cut() -> None:
    """Edge sigma drawn in [3, 3] mm on a flat 100 HU liver without noise: outside the lesion
    the darkening of a 40 HU lesion follows 40 * (1 - Phi(d / 3 mm)) for a flat edge (a
    sphere's curvature makes it somewhat less), and it is not cut off at the lesion's box."""
    hu = np.full((60, 120, 120), 100.0)
    liver = np.ones(hu.shape, np.uint8)
    ct = Volume.from_array(hu.astype(np.int16), spacing=SPACING)
    settings = InsertSettings(lesions=(1, 1), contrast_hu=(40.0, 40.0), rim_share=0.0,
                              edge_sigma_mm=3.0, edge_sigma_max_mm=3.0, real_shape_share=1.0)
    # A 24 mm ball from the shape bank, whose boxes have a margin of only 2 voxels.
    z, y, x = np.ogrid[-6:7, -15:16, -15:16]
    ball = (z * SPACING[0]) ** 2 + (y * SPACING[1]) ** 2 + (x * SPACING[2]) ** 2 <= 12.0**2
    bank = shape_bank([Volume.from_array(ball.astype(np.uint8), spacing=SPACING)], SPACING)
    new, labels = insert_lesions(ct, ct.with_array(liver), np.random.default_rng(2), settings,
                                 shapes=bank)
    darkening = 100.0 - new.array.astype(np.float64)
    distance = ndimage.distance_transform_edt(labels == 0, sampling=SPACING)
    def shell(low: float, high: float) -> float:
        return float(darkening[(distance > low) & (distance <= high)].mean())
    # Flat-edge values 40 * (1 - Phi(d / 3)) at d = 3 and 5 mm: 6.3 and 1.9 HU; the ball's
    # curvature lowers them. Cut at the shape's box (2 voxels), they fall to 4.9 and 1.1.
    assert 5.0 < shell(2.0, 4.0) < 7.0
    assert 1.3 < shell(4.0, 6.0) < 2.2
    assert 0.0 <= shell(9.0, 12.0) < 0.3
    assert darkening.min() > -0.6  # nothing brightened


def test_a_liver_too_small_gets_no_lesion() -> None:
    ct, liver, _ = _phantom()
    tiny = np.zeros(liver.shape, np.uint8)
    tiny[30, 60:62, 60:62] = 1
    new, labels = insert_lesions(ct, ct.with_array(tiny), np.random.default_rng(0),
                                 InsertSettings(lesions=(2, 2), diameter_mm=(20.0, 30.0)))
    assert not labels.any() and np.array_equal(new.array, ct.array)


def test_shape_bank_resamples_real_lesions_to_the_target_grid() -> None:
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[5:9, 10:16, 10:13] = 1    # 4 x 6 x 3 voxels at (4, 1, 1) mm: 16 x 6 x 3 mm
    labels[15, 20, 20] = 2           # one voxel: dropped at min_voxels=8 after resampling
    source = Volume.from_array(labels, spacing=(4.0, 1.0, 1.0))
    bank = shape_bank([source], (2.0, 0.5, 1.0))
    assert len(bank) == 1
    found = ndimage.find_objects(bank[0].astype(np.uint8))[0]
    assert tuple(s.stop - s.start for s in found) == (8, 12, 3)
    assert int(bank[0].sum()) == 8 * 12 * 3


def test_totalsegmentator_labels_land_on_ct_slices_82_to_111(tmp_path: Path) -> None:
    folder = shared_path("fixtures", "totalsegmentator")
    row = totalsegmentator_example(folder / "example_ct.nii.gz", folder / "example_seg.nii.gz",
                                   tmp_path)
    ct, liver, full = read_image(row.image), read_image(row.liver_mask), read_image(
        folder / "example_ct.nii.gz")
    assert ct.shape == (30, 101, 122) and liver.geometry == ct.geometry
    assert np.array_equal(ct.array, np.rint(full.array[82:112]).astype(np.int16))
    z_of_first = full.geometry.index_to_physical((82, 0, 0))[2]
    assert ct.origin[2] == pytest.approx(z_of_first)
    # On the right slices the liver is homogeneous: its HU spread is about 15 HU.
    assert float(ct.array[liver.array > 0].std()) < 20.0
