"""The training data order: an epoch permutation shuffled by row group, one global batch per optimizer step,
and each rank's share of it.

The order is a function of (seed, epoch, global batch size) and the cache's row-group layout only, never of
the world size or the reader worker count, so a run resumed at step ``s`` under any of them reads the batches an
uninterrupted run would.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..errors import BatchError


def epoch_order(n_items: int, seed: int, epoch: int, groups: Sequence[int] | None = None,
                window: int = 0) -> list[int]:
    """A permutation of ``range(n_items)`` from (seed, epoch).

    ``groups[i]`` is the row group item ``i`` is stored in. With ``window`` > 0 the row groups are shuffled,
    taken ``window`` at a time, and the items of those groups shuffled together: a batch then reads a few row
    groups, each read about once an epoch, instead of one random row group per item (what makes an LRU of
    row groups useless on a large cache). ``window`` = 0, no ``groups``, or at most ``window`` row groups: every
    item shuffled with every other (the same permutation in all three cases).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if groups is None or window <= 0:
        return torch.randperm(n_items, generator=g).tolist()
    if len(groups) != n_items:
        raise ValueError(f"{len(groups)} row-group ids for {n_items} items")
    members: dict[int, list[int]] = {}
    for i, gid in enumerate(groups):
        members.setdefault(gid, []).append(i)
    ids = sorted(members)
    # the groups' order from a generator of its own, and each pool in item order: a cache of at most
    # ``window`` row groups gets exactly the item-level permutation
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)).tolist()
    out: list[int] = []
    for s in range(0, len(perm), window):
        pool = sorted(i for j in perm[s:s + window] for i in members[ids[j]])
        out += [pool[k] for k in torch.randperm(len(pool), generator=g).tolist()]
    return out


def batches(n_items: int, batch_size: int, seed: int, epoch: int, groups: Sequence[int] | None = None,
            window: int = 0) -> list[list[int]]:
    """The epoch's batches: :func:`epoch_order` cut into full batches of ``batch_size``."""
    order = epoch_order(n_items, seed, epoch, groups, window)
    bs = min(batch_size, n_items)
    return [order[i:i + bs] for i in range(0, n_items - bs + 1, bs)]


class StepBatches:
    """This rank's micro-batches for optimizer steps ``start_step, start_step + 1, …``: step ``s`` takes the
    global batch ``s`` of the epoch order; rank ``r`` takes the ``r``-th contiguous ``1/world`` of it and cuts
    that into ``grad_accum`` micro-batches. So the examples of a step do not depend on the world size, and a
    run resumed at step ``s`` under any world size reads exactly the batches an uninterrupted one would. An
    endless batch sampler."""

    def __init__(self, n_items: int, global_batch: int, seed: int, start_step: int, rank: int, world: int,
                 grad_accum: int = 1, groups: Sequence[int] | None = None, window: int = 0) -> None:
        if global_batch % (world * grad_accum) or not 0 < global_batch <= n_items:
            raise BatchError(f"a global batch of {global_batch} does not split over {world} rank(s) × "
                             f"{grad_accum} micro-step(s) of {n_items} items")
        self.n, self.g, self.seed, self.start = n_items, global_batch, seed, start_step
        self.rank, self.world, self.accum = rank, world, grad_accum
        self.groups, self.window = (list(groups) if groups is not None else None), window
        self.per_epoch = n_items // global_batch
        self.micro = global_batch // (world * grad_accum)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (item indices over all ranks)."""
        return batches(self.n, self.g, self.seed, epoch, self.groups, self.window)

    def __iter__(self) -> Iterator[list[int]]:
        step, cached = self.start, (-1, [])
        share = self.g // self.world
        while True:
            epoch, i = divmod(step, self.per_epoch)
            if cached[0] != epoch:
                cached = (epoch, self.epoch_batches(epoch))
            mine = cached[1][i][self.rank * share:(self.rank + 1) * share]
            for a in range(self.accum):
                yield mine[a * self.micro:(a + 1) * self.micro]
            step += 1
