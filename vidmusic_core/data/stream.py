"""Training batches through ``DataLoader`` workers that each read only their own row groups.

Row group ``j`` (in the order of :meth:`CachedDataset.row_groups`) belongs to worker ``j % num_workers``. For
every micro-batch of the sampler each worker yields its part of it (the examples of the batch in the row
groups it owns, possibly none); the ``DataLoader`` returns worker outputs round-robin in the order it asked
for them, so the parts of micro-batch ``k`` arrive as outputs ``k·n … k·n + n − 1`` and are put back at their
positions. The batches are therefore those of the sampler whatever the worker count, and each worker's LRU of
row groups holds only its groups (a row group is read by one process, not by each).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .dataset import CachedDataset, collate

Part = tuple[list[int], list[dict[str, Any]], list[tuple[str, int]]]  # positions, examples, row groups loaded


class OwnedParts(IterableDataset):
    """For each micro-batch of ``sampler``: this worker's part of it (see the module docstring)."""

    def __init__(self, dataset: CachedDataset, sampler: Iterable[list[int]]) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.owner = dataset.row_groups()

    def __iter__(self) -> Iterator[Part]:
        info = get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        for batch in self.sampler:
            mine = [(pos, i) for pos, i in enumerate(batch) if self.owner[i] % n == w]
            examples = [self.dataset[i] for _, i in mine]
            yield [pos for pos, _ in mine], examples, self.dataset.take_loads()


def _as_is(x: Any) -> Any:
    return x


def _pinned(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, dict):
        return {k: _pinned(v) for k, v in obj.items()}
    return obj


class BatchStream:
    """An endless iterator of collated batches of ``sampler`` read by ``num_workers`` spawned processes
    (0: in this process). ``loads[w]`` counts the row groups worker ``w`` read from disk; with ``track``,
    ``touched[w]`` is the set of (store directory, shard, row group) it read."""

    def __init__(self, dataset: CachedDataset, sampler: Iterable[list[int]], num_workers: int = 0,
                 pin_memory: bool = False, seed: int = 0, track: bool = False) -> None:
        self.n = max(1, num_workers)
        self.pin, self.track = pin_memory, track
        self.loads: Counter[int] = Counter()
        self.touched: dict[int, set[tuple[str, int]]] = {w: set() for w in range(self.n)}
        # its own generator: the loader's worker seeds must not draw from the global RNG, whose state the
        # checkpoint saves (a resumed run would otherwise store a different RNG state)
        loader = DataLoader(OwnedParts(dataset, sampler), batch_size=None, collate_fn=_as_is,
                            num_workers=num_workers, generator=torch.Generator().manual_seed(seed),
                            persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers > 0 else None,
                            multiprocessing_context="spawn" if num_workers > 0 else None)
        self._parts = iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict[str, Any]:
        slots: dict[int, dict[str, Any]] = {}
        for w in range(self.n):
            positions, examples, loads = next(self._parts)
            slots.update(zip(positions, examples))
            self.loads[w] += len(loads)
            if self.track:
                self.touched[w].update(loads)
        batch = collate([slots[p] for p in range(len(slots))])
        return _pinned(batch) if self.pin else batch
