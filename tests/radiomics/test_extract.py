"""Per-lesion features: equal to pyradiomics called directly, and to values worked out by hand
on phantoms (a box and a sphere of known HU on anisotropic 2.5 x 0.8 x 0.8 mm voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from radiomics import featureextractor

from livermets.io.volume import Volume
from livermets.radiomics.extract import lesion_features
from livermets.radiomics.settings import default_params

SPACING = (2.5, 0.8, 0.8)  # z, y, x mm
VOXEL_MM3 = 2.5 * 0.8 * 0.8  # 1.6
#: No resampling: voxels are counted on the CT's own grid.
NATIVE = {"imageType": {"Original": {}}, "featureClass": {"shape": [], "firstorder": []},
          "setting": {"binWidth": 25}}


def _ct(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(60, 30, shape).astype(np.int16)


def test_features_equal_pyradiomics_called_directly_on_the_whole_ct() -> None:
    """Each lesion is run on a box around it (fast); the numbers are pyradiomics' on the whole
    CT and the whole instance map, to 1e-9, with the preset's resampling to 1 mm."""
    image = _ct((40, 160, 170))
    labels = np.zeros(image.shape, np.int32)
    labels[12:19, 40:70, 50:85] = 3
    image[12:19, 40:70, 50:85] += 45
    labels[25:29, 100:112, 120:131] = 11  # labels need not start at 1 nor be dense
    labels[2:5, 3:9, 150:168] = 5  # near the CT's edge: the box is clipped there
    ct = Volume.from_array(image, spacing=SPACING, origin=(-120.5, 33.0, 7.25))
    params = default_params()
    ours = {row.lesion_id: row for row in lesion_features(ct, labels, params)}
    assert list(ours) == [3, 5, 11]

    direct = featureextractor.RadiomicsFeatureExtractor(default_params())
    image_sitk, mask_sitk = ct.to_sitk(), ct.with_array(labels).to_sitk()
    for lesion_id, row in ours.items():
        expected = {k: float(v) for k, v in
                    direct.execute(image_sitk, mask_sitk, label=lesion_id).items()
                    if not k.startswith("diagnostics_")}
        assert row.note == ""
        assert set(row.features) == set(expected)
        assert len(expected) == 107  # 14 shape, 18 firstorder, 24 glcm, 16 glrlm, ...
        for name, value in expected.items():
            assert row.features[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


def test_a_box_of_two_known_hu_values_by_hand() -> None:
    """A 4 x 10 x 10 voxel box (10 x 8 x 8 mm), half at 40 HU and half at 100 HU."""
    image = np.full((12, 30, 30), -50, np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[4:8, 10:20, 10:20] = 1
    image[4:8, 10:20, 10:15] = 40
    image[4:8, 10:20, 15:20] = 100
    ct = Volume.from_array(image, spacing=SPACING)
    (row,) = lesion_features(ct, labels, NATIVE)
    f = row.features
    assert f["original_shape_VoxelVolume"] == pytest.approx(400 * VOXEL_MM3)  # 640 mm3
    # Marching cubes cuts the box's 12 edges and 8 corners at half a voxel: with the box
    # A x B x C = 8 x 8 x 10 mm and half voxels a, b, c = 0.4, 0.4, 1.25 mm, an edge along z
    # loses a triangle of a * b / 2 over C - 2c, and a corner keeps 1/6 of its a * b * c block.
    a, b, c, big_a, big_b, big_c = 0.4, 0.4, 1.25, 8.0, 8.0, 10.0
    edges = 4 * (a * b / 2 * (big_c - 2 * c) + b * c / 2 * (big_a - 2 * a)
                 + a * c / 2 * (big_b - 2 * b))
    mesh = big_a * big_b * big_c - edges - 8 * 5 / 6 * a * b * c  # 621.87 mm3
    assert f["original_shape_MeshVolume"] == pytest.approx(mesh, rel=1e-9)
    assert f["original_firstorder_Mean"] == pytest.approx(70.0)
    assert f["original_firstorder_Minimum"] == 40.0
    assert f["original_firstorder_Maximum"] == 100.0
    assert f["original_firstorder_Median"] == pytest.approx(70.0)
    assert f["original_firstorder_Variance"] == pytest.approx(900.0)
    assert f["original_firstorder_Energy"] == pytest.approx(200 * 40**2 + 200 * 100**2)
    assert f["original_firstorder_TotalEnergy"] == pytest.approx(
        VOXEL_MM3 * (200 * 40**2 + 200 * 100**2))
    assert f["original_firstorder_RootMeanSquared"] == pytest.approx(
        math.sqrt((40**2 + 100**2) / 2))
    # Two grey levels 60 HU apart fall in two 25 HU bins, half the voxels each.
    assert f["original_firstorder_Entropy"] == pytest.approx(1.0)
    assert f["original_firstorder_Uniformity"] == pytest.approx(0.5)


def test_a_sphere_within_its_discretisation_error() -> None:
    """A sphere of radius 15 mm: the voxels whose centres lie inside it cover at least the
    sphere shrunk, and at most the sphere grown, by half a voxel's diagonal (1.37 mm)."""
    radius = 15.0
    shape = (20, 50, 50)
    z, y, x = np.indices(shape).astype(float)
    centre = (9.5 * SPACING[0], 24.3 * SPACING[1], 25.1 * SPACING[2])
    inside = ((z * SPACING[0] - centre[0]) ** 2 + (y * SPACING[1] - centre[1]) ** 2
              + (x * SPACING[2] - centre[2]) ** 2) <= radius**2
    ct = Volume.from_array(np.where(inside, 80, 0).astype(np.int16), spacing=SPACING)
    (row,) = lesion_features(ct, inside.astype(np.uint8), NATIVE)
    half_diagonal = 0.5 * math.sqrt(sum(s * s for s in SPACING))
    low, high = (4 / 3 * math.pi * (radius + d) ** 3 for d in (-half_diagonal, half_diagonal))
    for name in ("original_shape_VoxelVolume", "original_shape_MeshVolume"):
        assert low < row.features[name] < high, name
    assert row.features["original_shape_VoxelVolume"] == pytest.approx(
        4 / 3 * math.pi * radius**3, rel=0.02)  # the count itself: 1.6 mm3 a voxel
    assert row.features["original_shape_VoxelVolume"] == pytest.approx(
        int(inside.sum()) * VOXEL_MM3)
    assert row.features["original_firstorder_Mean"] == pytest.approx(80.0)


def test_lesions_too_small_get_a_note_not_a_crash() -> None:
    image = _ct((10, 30, 30))
    labels = np.zeros(image.shape, np.uint8)
    labels[2:6, 5:12, 5:12] = 1
    labels[8, 20, 20] = 2  # one voxel
    labels[8, 25, 3:9] = 4  # a line: one dimension
    rows = lesion_features(Volume.from_array(image, spacing=SPACING), labels, default_params())
    assert [r.lesion_id for r in rows] == [1, 2, 4]
    assert rows[0].note == "" and len(rows[0].features) == 107
    assert rows[1].features == {} and rows[1].note.startswith("no features: ")
    assert "1 segmented voxel" in rows[1].note
    assert rows[2].features == {} and "too few dimensions" in rows[2].note
