"""Connected components and instance labels, on arrays small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from livermets.labels import (
    connected_components,
    instance_labels,
    lesion_ids,
    relabel_by_volume,
)


def _diagonal_pair() -> np.ndarray:
    mask = np.zeros((3, 3, 3), np.uint8)
    mask[0, 0, 0] = 1
    mask[1, 1, 1] = 1  # touches (0, 0, 0) by a corner only
    return mask


@pytest.mark.parametrize(("connectivity", "expected"), [(6, 2), (18, 2), (26, 1)])
def test_connectivity_of_a_corner_touch(connectivity: int, expected: int) -> None:
    _, count = connected_components(_diagonal_pair(), connectivity=connectivity)
    assert count == expected


def test_edge_touch_joins_at_18() -> None:
    mask = np.zeros((2, 2, 2), np.uint8)
    mask[0, 0, 0] = mask[0, 1, 1] = 1  # share an edge, not a face
    assert connected_components(mask, connectivity=6)[1] == 2
    assert connected_components(mask, connectivity=18)[1] == 1


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_a_sparse_mask_gets_scipys_labels(connectivity: int) -> None:
    """Labelled in its bounding box only, a sparse mask gets scipy's labels on the whole
    array, numbers included (scan order), also with a component on the box's every face."""
    rng = np.random.default_rng(2)
    volume = np.zeros((30, 40, 50), dtype=bool)
    volume[5:17, 8:30, 10:35] = ndimage.gaussian_filter(rng.normal(size=(12, 22, 25)), 1) > 0.3
    volume[5, 20, 20] = volume[16, 9, 11] = volume[10, 29, 34] = True
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    expected, count = ndimage.label(volume, structure=structure)
    labels, found = connected_components(volume, connectivity=connectivity)
    assert found == count > 3
    assert labels.dtype == np.int32 and labels.shape == volume.shape
    assert np.array_equal(labels, expected)


def test_bad_connectivity() -> None:
    with pytest.raises(ValueError, match="6, 18 or 26"):
        connected_components(np.zeros((2, 2, 2)), connectivity=8)


def test_relabel_by_volume_orders_largest_first_and_drops_small() -> None:
    labels = np.zeros((1, 1, 10), np.int32)
    labels[0, 0, :2] = 5  # 2 voxels
    labels[0, 0, 2:7] = 3  # 5 voxels
    labels[0, 0, 7] = 9  # 1 voxel
    out, counts = relabel_by_volume(labels, min_voxels=2)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [2, 2, 1, 1, 1, 1, 1, 0, 0, 0]
    assert counts == [5, 2]


def test_instance_labels_splits_binary_and_drops_by_volume() -> None:
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[0:2, 0:2, 0:2] = 1  # 8 voxels = 8 * 0.5 mm3 = 4 mm3
    mask[2:4, 5:10, 5:10] = 1  # 50 voxels = 25 mm3
    mask[0, 9, 0] = 1  # 1 voxel = 0.5 mm3
    spacing = (2.0, 0.5, 0.5)
    out = instance_labels(mask, spacing)
    assert sorted(np.unique(out).tolist()) == [0, 1, 2, 3]
    assert (out == 1).sum() == 50 and (out == 2).sum() == 8 and (out == 3).sum() == 1
    out = instance_labels(mask, spacing, min_volume_mm3=4.0)  # keeps the 4 mm3 cube exactly
    assert sorted(np.unique(out).tolist()) == [0, 1, 2]
    assert (out == 2).sum() == 8


def test_instance_map_keeps_its_instances() -> None:
    labels = np.zeros((1, 1, 6), np.uint16)
    labels[0, 0, :2] = 7
    labels[0, 0, 2:3] = 2  # touches label 7 but stays its own lesion
    labels[0, 0, 5] = 7  # a second, separate part of lesion 7 stays with it
    out = instance_labels(labels, (1.0, 1.0, 1.0))
    assert out[0, 0].tolist() == [1, 1, 2, 0, 0, 1]


def test_lesion_ids_keep_an_instance_maps_own_labels() -> None:
    labels = np.zeros((1, 1, 10), np.uint16)
    labels[0, 0, :1] = 3  # 1 voxel, the smallest
    labels[0, 0, 2:7] = 1  # 5 voxels, the largest
    labels[0, 0, 8:10] = 9  # 2 voxels
    out = lesion_ids(labels, (1.0, 1.0, 1.0))
    assert out.dtype == np.int32
    assert out[0, 0].tolist() == [3, 0, 1, 1, 1, 1, 1, 0, 9, 9]
    # Instances under 2 mm3 (1 voxel of 1 mm3) are dropped; the others keep their ids.
    out = lesion_ids(labels, (1.0, 1.0, 1.0), min_volume_mm3=2.0)
    assert out[0, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 9, 9]
    assert labels[0, 0, 0] == 3  # the input is not modified


def test_lesion_ids_number_a_binary_masks_components_by_volume() -> None:
    mask = np.zeros((1, 1, 10), bool)
    mask[0, 0, :2] = True
    mask[0, 0, 4:9] = True
    assert lesion_ids(mask, (1.0, 1.0, 1.0))[0, 0].tolist() == [2, 2, 0, 0, 1, 1, 1, 1, 1, 0]
