"""Slice-local steps run by slabs of z slices on threads give the same array as one call."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from livermets.labels import fill_holes
from livermets.slabs import by_slabs, machine_cpus, set_slab_threads, slab_threads


@pytest.fixture
def threads() -> Iterator[None]:
    """Restore the default thread count after a test that sets it."""
    yield
    set_slab_threads(None)


def _in_plane_mean(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(ndimage.uniform_filter(values, size=[1, 5, 5]))


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_slabs_equal_one_call(count: int, threads: None) -> None:
    set_slab_threads(count)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(43, 20, 21)).astype(np.float32)  # 43: slabs of 14-15 slices
    assert np.array_equal(by_slabs(_in_plane_mean, values), _in_plane_mean(values))
    mask = ndimage.gaussian_filter(rng.normal(size=(43, 20, 21)), 1.0) > 0.1
    sliced = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    assert np.array_equal(fill_holes(mask, in_plane=True), sliced)


def test_slabs_split_z_into_contiguous_parts(threads: None) -> None:
    set_slab_threads(2)
    seen: list[tuple[int, int]] = []

    def first_and_depth(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
                        ) -> npt.NDArray[np.int64]:
        seen.append((int(a[0, 0]), a.shape[0]))
        return a + b

    z = np.arange(33)[:, None] * np.ones((1, 4), dtype=np.int64)
    assert np.array_equal(by_slabs(first_and_depth, z, z), 2 * z)
    assert sorted(seen) == [(0, 16), (16, 17)]  # 33 slices: 16 + 17, in order, all covered
    seen.clear()
    by_slabs(first_and_depth, z[:15], z[:15])  # under 2 x 8 slices: one call
    assert seen == [(0, 15)]


def test_a_step_across_slices_differs_by_slabs(threads: None) -> None:
    """The precondition matters: a filter along z sees the slab's edge (why only slice-local
    steps go through `by_slabs`)."""
    set_slab_threads(2)
    values = np.random.default_rng(1).normal(size=(32, 6, 6)).astype(np.float32)

    def mean_3d(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(ndimage.uniform_filter(v, size=3))

    assert not np.array_equal(by_slabs(mean_3d, values), mean_3d(values))


def test_thread_count_defaults_to_the_cores(threads: None) -> None:
    assert slab_threads() == machine_cpus()
    set_slab_threads(3)
    assert slab_threads() == 3
    set_slab_threads(0)
    assert slab_threads() == 1
