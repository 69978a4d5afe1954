"""Parquet shard store and dynamic batching."""
import numpy as np
import pytest
import torch

from vidmusic_core.data.cache import CacheError, ShardStore, config_key
from vidmusic_core.data.dataset import TokenBudgetSampler, collate


def test_shard_roundtrip_dtypes_and_atomic_files(tmp_path):
    store = ShardStore(tmp_path / "s", {"kind": "encoder", "x": 1})
    rows = [{"key": f"k{i}", "name": f"n{i}", "feat": np.random.randn(3, 4).astype(np.float32),
             "times": np.array([0.0, 0.5, 1.0 + 1e-4], dtype=np.float32), "mask": np.array([True, True, False]),
             "codes": np.arange(6).reshape(2, 3)} for i in range(3)]
    store.write_shard(0, rows, float_fields=("times",))
    assert store.has_shard(0) and not list((tmp_path / "s").glob("*.tmp"))
    again = ShardStore(tmp_path / "s")
    assert len(again) == 3 and "k1" in again
    got = again.read("k1")
    assert got["feat"].dtype == np.float16 and np.allclose(got["feat"], rows[1]["feat"], atol=1e-2)
    assert got["times"].dtype == np.float32 and np.array_equal(got["times"], rows[1]["times"])
    assert got["mask"].tolist() == [1, 1, 0] and got["codes"].dtype == np.int16
    assert np.array_equal(got["codes"], rows[1]["codes"])


def test_store_identity_mismatch_and_missing_key(tmp_path):
    ShardStore(tmp_path / "s", {"a": 1})
    with pytest.raises(CacheError, match="another configuration"):
        ShardStore(tmp_path / "s", {"a": 2})
    with pytest.raises(CacheError, match="not a vidmusic cache"):
        ShardStore(tmp_path / "other")
    with pytest.raises(CacheError, match="not in cache"):
        ShardStore(tmp_path / "s").read("nope")


def test_same_rows_give_identical_bytes(tmp_path):
    rows = [{"key": "a", "name": "a", "codes": np.arange(10)}]
    for d in ("x", "y"):
        ShardStore(tmp_path / d, {"m": 1}).write_shard(0, rows)
    assert (tmp_path / "x" / "part-00000.parquet").read_bytes() == (tmp_path / "y" / "part-00000.parquet").read_bytes()


def test_corrupt_shard_is_reported(tmp_path):
    store = ShardStore(tmp_path / "s", {"m": 1})
    store.write_shard(0, [{"key": "a", "name": "a", "codes": np.arange(3)}])
    p = store.shard_path(0)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(CacheError, match="unreadable"):
        ShardStore(tmp_path / "s").read("a")


def test_config_key_is_order_independent():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_token_budget_sampler():
    lengths = [10, 50, 20, 40, 30, 5, 60, 15]
    s = TokenBudgetSampler(lengths, max_tokens=100, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 100
    assert list(TokenBudgetSampler(lengths, 100, seed=3)) == batches  # deterministic
    s.set_epoch(1)
    assert list(s) != batches or len(batches) == 1
    with pytest.raises(ValueError, match="longest item"):
        TokenBudgetSampler([200], max_tokens=100)


def test_collate_pads_with_masks():
    ex = [{"name": "a", "key": "a", "text": "", "index": 0, "codes": torch.ones(2, 3, dtype=torch.long)},
          {"name": "b", "key": "b", "text": "", "index": 1, "codes": torch.ones(2, 5, dtype=torch.long)}]
    b = collate(ex)
    assert b["codes"].shape == (2, 2, 5)
    assert b["codes_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert b["codes"][0, :, 3:].sum() == 0


def test_opening_for_writing_removes_a_killed_writers_temp_files(tmp_path):
    store = ShardStore(tmp_path / "s", {"m": 1})
    store.write_shard(0, [{"key": "a", "name": "a", "codes": np.arange(3)}])
    stale = tmp_path / "s" / ".part-00001.parquet.abc123.tmp"  # what SIGKILL mid-write leaves
    stale.write_bytes(b"half a shard")
    ShardStore(tmp_path / "s")  # read-only opening leaves the directory alone
    assert stale.exists()
    again = ShardStore(tmp_path / "s", {"m": 1})
    assert not stale.exists() and len(again) == 1 and again.read("a")["codes"].tolist() == [0, 1, 2]


def test_reader_reads_row_groups_within_its_memory_bound(tmp_path):
    """Reads go by row group through an LRU bounded in bytes; lengths come from the shape column alone."""
    import pickle

    import pyarrow.parquet as pq

    store = ShardStore(tmp_path / "s", {"m": 1})
    rng = np.random.default_rng(0)
    rows = [{"key": f"k{i}", "name": f"n{i}", "feat": rng.standard_normal((128, 1024)).astype(np.float32),  # 256 KiB each
             "codes": np.zeros((2, 10 + i), np.int64)} for i in range(8)]
    store.write_shard(0, rows)
    meta = pq.ParquetFile(store.shard_path(0)).metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 8  # about 1 MiB of payload (3 rows) per row group
    reader = ShardStore(tmp_path / "s", cache_bytes=1 << 20)
    assert reader.shapes("codes") == {f"k{i}": [2, 10 + i] for i in range(8)} and reader._held == 0  # no payload read
    for r in (rows * 2):
        assert np.allclose(reader.read(r["key"])["feat"], r["feat"], atol=1e-2)
        assert reader._held <= 1 << 20 and len(reader._groups) == 1  # bounded whatever was read
    clone = pickle.loads(pickle.dumps(reader))  # what a DataLoader worker receives: no open files or cached groups
    assert clone._groups == {} and clone._files == {} and np.array_equal(clone.read("k3")["codes"], rows[3]["codes"])


def test_all_items_skipped_shard_and_skipped_list(tmp_path):
    store = ShardStore(tmp_path / "s", {"m": 1})
    store.write_shard(0, [], skipped=[{"name": "a", "key": "ka", "path": "a.mp4", "reason": "why"}])
    store.write_shard(1, [{"key": "kb", "name": "b", "codes": np.arange(3)}])
    again = ShardStore(tmp_path / "s")
    assert len(again) == 1 and again.skipped() == {"ka": {"name": "a", "key": "ka", "path": "a.mp4", "reason": "why"}}
