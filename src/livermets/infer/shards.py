"""Share a cohort's cases among processes: `predict --shard K/N`, torchrun ranks, job arrays.

A case's share depends only on the case ids, never on the order of the manifest's rows or on
the machine: the ids are sorted (Python's code-point order) and dealt out in turn, the first
to share 1, the second to share 2, ..., the (N+1)-th to share 1 again. So the shares differ
by at most one case, and a re-run of the same command gives every share the same cases (a
crashed rank, re-run, finds its finished cases and skips them). A hash of each id (sha256
mod N) would keep a case's share when other cases are added, but with a few dozen CTs it
leaves shares uneven (8 cases in 2 shares: 6 and 2 happen); dealing in turn keeps them even,
and a manifest that changes between runs is still safe, because every share skips the cases
that finished before, whoever predicted them.

`predict` and `radiomics` share their cases this way. torch is imported only by the two
functions that talk to the other ranks, so `radiomics` (and its worker processes) load no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from livermets.errors import InputError

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
#: How long a rank that finished its share waits for the slowest one (torch's default, 30
#: minutes, is shorter than one share of a large cohort); a rank that dies ends the run
#: sooner, since torchrun stops the others.
RANK_WAIT = timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    """Share `k` of `n` (1 <= k <= n), as written `K/N` on the command line."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def parse_shard(text: str) -> Shard:
    """`K/N` (e.g. "2/4") as a `Shard`; `InputError` unless 1 <= K <= N."""
    match = _SHARD.fullmatch(text)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. 1/4 for the "
                         "first of four shares")
    return Shard(int(match[1]), int(match[2]))


def shard_of(case_ids: Sequence[str], k: int, n: int) -> list[str]:
    """The ids of share `k` of `n` (1-based), in the order given.

    The distinct ids, sorted, are dealt out in turn: sorted position i goes to share
    i mod n + 1. Every id lands in exactly one share, whatever the order of `case_ids`.
    `ValueError` unless 1 <= k <= n.
    """
    if not 1 <= k <= n:
        raise ValueError(f"share {k} of {n}: need 1 <= k <= n")
    ordered = sorted(set(case_ids))
    mine = set(ordered[k - 1::n])
    return [case_id for case_id in case_ids if case_id in mine]


def rank_threads(cpus: int, local_world_size: int) -> int:
    """Torch threads for each of `local_world_size` processes on a machine of `cpus` cores,
    so that processes x threads fits the cores (at least 1)."""
    return max(1, cpus // max(1, local_world_size))


def start_ranks(timeout: timedelta = RANK_WAIT) -> None:
    """Join torchrun's process group (gloo: the ranks only exchange their case outcomes)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=timeout)


def gather_from_ranks(items: list[Any]) -> list[Any]:
    """Every rank's `items`, concatenated in rank order, on every rank; it waits for all
    ranks to get here (the barrier before rank 0 writes the cohort's summary), then leaves
    the process group."""
    import torch.distributed as dist

    gathered: list[list[Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    dist.destroy_process_group()
    return [item for part in gathered for item in (part or [])]
