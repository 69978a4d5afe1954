"""The training reader on a real parquet cache of several shards and row groups: the same batches with 0 and
2 DataLoader workers, each worker reading only its own row groups, and the row-group shuffle reading each row
group once an epoch through an LRU that holds a single group."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vidmusic_core.data.cache import ShardStore
from vidmusic_core.data.dataset import CachedDataset
from vidmusic_core.data.manifest import Item
from vidmusic_core.data.order import StepBatches, epoch_order
from vidmusic_core.data.stream import BatchStream

N, PER_SHARD = 30, 15


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """30 items in 2 shards; encoder rows of 256 KiB (float16), so a row group holds ~4 of them."""
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    enc, codec = ShardStore(root / "enc", {"e": 1}), ShardStore(root / "codec", {"c": 1})
    keys = [f"k{i:02d}" for i in range(N)]
    for k in range(N // PER_SHARD):
        part = keys[k * PER_SHARD:(k + 1) * PER_SHARD]
        enc.write_shard(k, [{"key": key, "name": f"n{key}", "clip": rng.standard_normal((256, 512)),
                             "local_times": np.arange(256, dtype=np.float32) / 8, "local_mask": np.ones(256, bool),
                             "duration": np.array([32.0])} for key in part], float_fields=("local_times",))
        codec.write_shard(k, [{"key": key, "name": f"n{key}", "codes": rng.integers(0, 16, (2, 20))} for key in part])
    items = [Item(name=f"n{key}", video="v.mp4", music="m.wav", music_kind="audio", content_hash=key) for key in keys]
    groups = [(p.name, g) for p in sorted((root / "enc").glob("part-*.parquet"))
              for g in range(pq.ParquetFile(p).metadata.num_row_groups)]
    assert len(groups) >= 6  # several row groups per shard
    return root, items, groups


def dataset(cache, cache_bytes=64 << 20):
    root, items, _ = cache
    return CachedDataset(items, ShardStore(root / "enc", cache_bytes=cache_bytes), ShardStore(root / "codec"))


def take(stream, n):
    out = [next(stream) for _ in range(n)]
    return [b["name"] for b in out], torch.cat([b["features"]["clip"] for b in out])


def test_workers_read_their_own_row_groups_and_give_the_same_batches(cache):
    _, _, groups = cache
    ds = dataset(cache)
    owner = ds.row_groups()
    assert sorted(set(owner)) == list(range(len(groups)))
    sampler = StepBatches(N, 6, 3, 2, 0, 1, 1, owner, 2)  # from step 2 (a resume), ~2 epochs
    ref_names, ref_feats = take(BatchStream(ds, sampler), 10)
    par = BatchStream(dataset(cache), sampler, num_workers=2, track=True)
    names, feats = take(par, 10)
    assert names == ref_names and torch.equal(feats, ref_feats)
    # the batches are the sampler's: the items of its micro-batches, in order
    want = [[f"n{ds.items[i].content_hash}" for i in b] for b, _ in zip(iter(sampler), range(10))]
    assert names == want
    for w in (0, 1):  # worker w read row groups j with j % 2 == w, and no other
        mine = {groups[j] for j in range(len(groups)) if j % 2 == w}
        assert par.touched[w] and par.touched[w] <= mine, (w, par.touched[w], mine)
    assert par.touched[0].isdisjoint(par.touched[1])


@pytest.mark.parametrize("world, accum", [(2, 1), (3, 2)])
def test_row_group_order_splits_over_ranks_like_the_item_order(cache, world, accum):
    ds = dataset(cache)
    owner = ds.row_groups()
    one = iter(StepBatches(N, 6, 1, 0, 0, 1, 1, owner, 2))
    ranks = [iter(StepBatches(N, 6, 1, 0, r, world, accum, owner, 2)) for r in range(world)]
    for _ in range(12):
        assert [i for it in ranks for _ in range(accum) for i in next(it)] == next(one)


def test_row_group_shuffle_reads_each_group_once_an_epoch(cache):
    """An LRU holding one row group: the row-group order reads each group once an epoch; the item order
    (shuffle_groups=0) reads a group for nearly every item."""
    _, _, groups = cache
    ds = dataset(cache, cache_bytes=300 << 10)
    order = epoch_order(N, 0, 0, ds.row_groups(), 1)
    assert sorted(order) == list(range(N)) and order != list(range(N))
    runs = [ds.row_groups()[i] for i in order]
    assert sum(a != b for a, b in zip(runs, runs[1:])) == len(groups) - 1  # each group's items together
    # a cache of at most `window` row groups: the item-level permutation (small caches keep their old order)
    assert epoch_order(N, 0, 3, ds.row_groups(), len(groups)) == epoch_order(N, 0, 3)
    per_epoch = N // 6
    grouped = BatchStream(ds, StepBatches(N, 6, 0, 0, 0, 1, 1, ds.row_groups(), 1))
    take(grouped, per_epoch)
    assert grouped.loads[0] <= len(groups)
    ds2 = dataset(cache, cache_bytes=300 << 10)
    items = BatchStream(ds2, StepBatches(N, 6, 0, 0, 0, 1))
    take(items, per_epoch)
    assert items.loads[0] >= 2 * len(groups)
