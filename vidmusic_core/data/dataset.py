"""A torch ``Dataset`` over the manifest and the prepare cache, and batching by token count.

Each example is a dict: ``name``, ``key``, ``text``, ``features`` (the encoder's frozen features,
each ``[T_v, ...]``, float32), ``local_times`` ``[T_v]``, ``local_mask`` ``[T_v]``, ``duration``,
``codes`` ``[K, T_a]`` (long) or, for latent codecs, ``latents`` ``[T_a, C]`` (float32). :func:`collate` pads a list of examples into a batch with masks.
"""
from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .cache import ShardStore
from .manifest import Item

ENC_RESERVED = ("local_times", "local_mask", "duration", "global_times")


class CachedDataset(Dataset):
    """Items of one split with their cached encoder features and codec tokens."""

    def __init__(self, items: Sequence[Item], encoder_store: ShardStore | None, codec_store: ShardStore | None,
                 split: str | None = "train") -> None:
        skipped = {k for store in (encoder_store, codec_store) if store is not None for k in store.skipped()}
        # items that prepare could not encode (a manifest written by a parallel --shard run may still list them)
        self.items = [it for it in items if (split is None or it.split == split) and it.content_hash not in skipped]
        self.encoder_store = encoder_store
        self.codec_store = codec_store
        missing = [it.name for it in self.items
                   if (encoder_store is not None and it.content_hash not in encoder_store)
                   or (codec_store is not None and it.content_hash not in codec_store)]
        if missing:
            from .cache import CacheError

            raise CacheError(f"{len(missing)} item(s) of split {split!r} are not in the cache (e.g. {missing[:3]}); "
                             "run `vidmusic prepare` to complete it")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        ex: dict[str, Any] = {"name": it.name, "key": it.content_hash, "text": it.text, "index": i}
        if self.encoder_store is not None:
            row = self.encoder_store.read(it.content_hash)
            ex["local_times"] = torch.from_numpy(row["local_times"].astype(np.float32))
            ex["local_mask"] = torch.from_numpy(row["local_mask"].astype(bool))
            ex["duration"] = float(row["duration"].reshape(-1)[0])
            if "global_times" in row:
                ex["global_times"] = torch.from_numpy(row["global_times"].astype(np.float32))
            ex["features"] = {k: torch.from_numpy(v.astype(np.float32)) for k, v in row.items() if k not in ENC_RESERVED}
        if self.codec_store is not None:
            music = self.codec_store.read(it.content_hash)
            if "latents" in music:  # a latent codec: float16 [T_a, C] on disk
                ex["latents"] = torch.from_numpy(music["latents"].astype(np.float32))
            else:
                ex["codes"] = torch.from_numpy(music["codes"].astype(np.int64))
        return ex

    def _layout_store(self) -> ShardStore | None:
        """The store whose row groups define read locality: the encoder's (the large payload), else the codec's."""
        return self.encoder_store if self.encoder_store is not None else self.codec_store

    def row_groups(self) -> list[int]:
        """Per item, the ordinal of the row group holding it (shards and row groups in file order; all 0
        without a store): what the shuffle and the per-worker reads group by. Read from the index only."""
        store = self._layout_store()
        if store is None:
            return [0] * len(self)
        where = [store.row_group_of(it.content_hash) for it in self.items]
        ordinal = {g: j for j, g in enumerate(sorted(set(where)))}
        return [ordinal[g] for g in where]

    def take_loads(self) -> list[tuple[str, int]]:
        """The row groups of the layout store read from disk since the last call (the other store's are dropped)."""
        for store in (self.encoder_store, self.codec_store):
            if store is not None and store is not self._layout_store():
                store.take_loads()
        store = self._layout_store()
        return store.take_loads() if store is not None else []

    def lengths(self) -> list[int]:
        """Music frames per item (for token-count batching), from the codec cache."""
        if self.codec_store is None:
            return [1] * len(self)
        codes, latents = self.codec_store.shapes("codes"), self.codec_store.shapes("latents")  # no payload read
        return [int(latents[k][0]) if k in latents else int(codes[k][-1])
                for k in (it.content_hash for it in self.items)]


def _pad_stack(tensors: Sequence[torch.Tensor], value: float = 0) -> torch.Tensor:
    """Stack tensors whose first dim differs, padding at the end of dim 0."""
    n = max(t.shape[0] for t in tensors)
    out = torch.full((len(tensors), n, *tensors[0].shape[1:]), value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def collate(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad examples into a batch: features ``[B, T_v, ...]``, times/mask ``[B, T_v]``, codes ``[B, K, T_a]``
    with ``codes_mask [B, T_a]``, or latents ``[B, T_a, C]`` with ``latents_mask [B, T_a]``."""
    batch: dict[str, Any] = {k: [e[k] for e in examples] for k in ("name", "key", "text", "index")}
    if "features" in examples[0]:
        batch["features"] = {k: _pad_stack([e["features"][k] for e in examples]) for k in examples[0]["features"]}
        batch["local_times"] = _pad_stack([e["local_times"] for e in examples])
        batch["local_mask"] = _pad_stack([e["local_mask"] for e in examples], False)
        batch["duration"] = torch.tensor([e["duration"] for e in examples])
        if "global_times" in examples[0]:
            batch["global_times"] = _pad_stack([e["global_times"] for e in examples])
    if "codes" in examples[0]:
        lens = [e["codes"].shape[-1] for e in examples]
        codes = _pad_stack([e["codes"].transpose(0, 1) for e in examples]).transpose(1, 2)  # [B, K, T_a]
        batch["codes"] = codes
        batch["codes_mask"] = torch.arange(codes.shape[-1])[None] < torch.tensor(lens)[:, None]
    if "latents" in examples[0]:
        lens = [e["latents"].shape[0] for e in examples]
        batch["latents"] = _pad_stack([e["latents"] for e in examples])  # [B, T_a, C]
        batch["latents_mask"] = torch.arange(batch["latents"].shape[1])[None] < torch.tensor(lens)[:, None]
    return batch


class TokenBudgetSampler(Sampler[list[int]]):
    """Batches whose padded size (items × longest item) stays within ``max_tokens`` (dynamic batching).

    Items are sorted by length within shuffled buckets so batches pad little; order is a function of
    ``seed`` and ``epoch`` only (resumable, identical across DDP ranks).
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, shuffle: bool = True, seed: int = 0,
                 max_batch: int | None = None) -> None:
        if max(lengths, default=0) > max_tokens:
            raise ValueError(f"max_tokens={max_tokens} is smaller than the longest item ({max(lengths)} tokens)")
        self.lengths, self.max_tokens, self.shuffle, self.seed = list(lengths), max_tokens, shuffle, seed
        self.max_batch = max_batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 100003 + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
        bucket = 50 * max(1, self.max_batch or 8)
        order = [i for s in range(0, len(order), bucket)
                 for i in sorted(order[s:s + bucket], key=lambda j: self.lengths[j])]
        batches, cur, longest = [], [], 0
        for i in order:
            longest_new = max(longest, self.lengths[i])
            full = (len(cur) + 1) * longest_new > self.max_tokens or (self.max_batch and len(cur) >= self.max_batch)
            if cur and full:
                batches.append(cur)
                cur, longest_new = [], self.lengths[i]
            cur.append(i)
            longest = longest_new
        if cur:
            batches.append(cur)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
