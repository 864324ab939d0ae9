"""Slice-by-slice work on a (z, y, x) volume, split into slabs of z slices run on threads.

A step whose output on each z slice depends only on that slice's input (a filter of size 1
along z, a labelling within slices) gives the same voxels whether it runs on the whole volume
or slab by slab. scipy.ndimage's C loops release the GIL, so slabs on `slab_threads()`
threads use the cores torch used for the networks: about twice as fast on 2 cores.

`slab_threads()` is the cores this process may use (its CPU affinity), or what
`set_slab_threads` set: a torchrun rank sets its share of the machine.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import numpy.typing as npt

#: Slabs thinner than this many slices are not worth a thread.
MIN_SLAB_SLICES = 8

_threads: int | None = None

_Scalar = TypeVar("_Scalar", bound=np.generic)


def machine_cpus() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_slab_threads(threads: int | None) -> None:
    """Run slabs on `threads` threads from now on (None: `machine_cpus()`)."""
    global _threads
    _threads = None if threads is None else max(1, int(threads))


def slab_threads() -> int:
    """How many threads `by_slabs` uses."""
    return _threads if _threads is not None else machine_cpus()


def by_slabs(step: Callable[..., npt.NDArray[_Scalar]],
             *volumes: npt.NDArray[np.generic]) -> npt.NDArray[_Scalar]:
    """`step(*volumes)` for a slice-local `step` (each z slice of its output depends only on
    the same z slice of each input; all inputs and the output (z, ...) share z), computed on
    contiguous slabs of z slices, one thread each, and joined along z: the same array.

    One slab (a plain call) with one thread or fewer than 2 x `MIN_SLAB_SLICES` slices.
    """
    depth = volumes[0].shape[0]
    count = min(slab_threads(), depth // MIN_SLAB_SLICES)
    if count < 2:
        return step(*volumes)
    edges = np.linspace(0, depth, count + 1).round().astype(int)
    slabs = [tuple(v[a:b] for v in volumes) for a, b in itertools.pairwise(edges)]
    with ThreadPoolExecutor(count) as pool:
        parts = list(pool.map(lambda inputs: step(*inputs), slabs))
    return np.concatenate(parts, axis=0)
