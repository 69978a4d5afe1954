"""Training-loader peak RSS on a cache of N vs 10·N items, and examples/s of the streaming reader ÷ the old one.

    python benchmarks/bench_loader_memory.py [--n 40] [--feature 16,50,256] [--epochs 2] [--workers 2]

Writes two synthetic caches (the layout `prepare` writes: float16 features ``[T_v, tokens, D]`` per item,
by default CLIP-like patch tokens of an 8 s clip at 2 fps, plus int16 codes ``[4, 400]``) with
:class:`ShardStore`, then, each in a fresh process, reads shuffled epochs through

* ``new``: :class:`CachedDataset` over the streaming :class:`ShardStore` (row groups, LRU bound), in the
  training process (``--workers 0``) and through ``DataLoader`` workers (``--workers N``);
* ``grouped``: the same with the row-group shuffle of training (``data.shuffle_groups=8``), which reads each
  row group about once an epoch; for ``new`` and ``grouped`` the row groups read from disk are counted;
* ``old``: the reader as of commit ``OLD`` (``git show OLD:vidmusic_core/data/cache.py``), which keeps every
  shard it touched in memory and reads items one by one.

Prints peak RSS (``ru_maxrss``, the reading process; DataLoader workers are reported separately) at N and
10·N (goal: ratio <= 1.2 for the new reader), examples/s new ÷ old and row-group reads per epoch.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OLD = "b48528f"
ROOT = Path(__file__).resolve().parents[1]


def READERS(workers: int) -> list[tuple[str, int]]:  # noqa: N802
    return [("old", 0), ("new", 0), ("new", workers), ("grouped", 0), ("grouped", workers)]


def write_cache(root: Path, n: int, feature: tuple[int, ...]) -> None:
    from vidmusic_core.data.cache import ShardStore

    rng = np.random.default_rng(0)
    enc, cod = ShardStore(root / "enc", {"kind": "encoder"}), ShardStore(root / "cod", {"kind": "codec"})
    feat = rng.standard_normal(feature).astype(np.float16)
    for k in range(0, n, 32):
        keys = [f"{i:08d}" for i in range(k, min(n, k + 32))]
        enc.write_shard(k // 32, [{"key": key, "name": key, "clip": feat, "local_times": np.arange(feature[0]) / 2.0,
                                   "local_mask": np.ones(feature[0], bool), "duration": np.array([8.0])}
                                  for key in keys], float_fields=("local_times", "duration"))
        cod.write_shard(k // 32, [{"key": key, "name": key, "codes": rng.integers(0, 1000, (4, 400))} for key in keys])


def measure(root: Path, reader: str, epochs: int, workers: int) -> dict[str, float]:
    """One run in this process: read ``epochs`` shuffled epochs; peak RSS and examples/s."""
    import torch

    from vidmusic_core.data.dataset import CachedDataset, collate
    from vidmusic_core.data.manifest import Item
    from vidmusic_core.training import StepBatches, batch_stream

    if reader == "old":
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD}:vidmusic_core/data/cache.py"], check=True,
                             capture_output=True, text=True).stdout
        path = root / "old_cache.py"
        path.write_text(src.replace("from ..checkpoint", "from vidmusic_core.checkpoint")
                        .replace("from ..errors", "from vidmusic_core.errors"))
        spec = importlib.util.spec_from_file_location("old_cache", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        Store = mod.ShardStore
    else:
        from vidmusic_core.data.cache import ShardStore as Store
    enc, cod = Store(root / "enc"), Store(root / "cod")
    keys = sorted(enc.index())
    items = [Item(name=k, video="", music="", music_kind="audio", content_hash=k) for k in keys]
    bs = 4
    steps = epochs * (len(items) // bs)
    t0 = time.perf_counter()
    if reader == "old":  # today's loop: examples read one by one in the training process
        def example(i: int) -> dict:
            row, music = enc.read(keys[i]), cod.read(keys[i])
            return {"name": keys[i], "key": keys[i], "text": "", "index": i,
                    "local_times": torch.from_numpy(row["local_times"].astype(np.float32)),
                    "local_mask": torch.from_numpy(row["local_mask"].astype(bool)),
                    "duration": float(row["duration"][0]),
                    "features": {"clip": torch.from_numpy(row["clip"].astype(np.float32))},
                    "codes": torch.from_numpy(music["codes"].astype(np.int64))}
        it = iter(StepBatches(len(items), bs, 0, 0, 0, 1))
        for _ in range(steps):
            collate([example(i) for i in next(it)])
    else:
        ds = CachedDataset(items, enc, cod, split=None)
        stream = batch_stream(ds, bs, 0, 0, 0, 1, num_workers=workers, shuffle_groups=8 if reader == "grouped" else 0)
        for _ in range(steps):
            next(stream)
    secs = time.perf_counter() - t0
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
           "examples_per_s": steps * bs / secs, "items": len(items)}
    if reader != "old":
        out.update(loads_per_epoch=sum(stream.loads.values()) / epochs, row_groups=len(set(ds.row_groups())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--feature", default="16,50,256", help="per-item feature shape T_v,tokens,D (float16)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--measure", nargs=3, metavar=("CACHE", "READER", "WORKERS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(Path(a.measure[0]), a.measure[1], a.epochs, int(a.measure[2]))))
        return
    feature = tuple(int(x) for x in a.feature.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for n in (a.n, 10 * a.n):
            root = Path(tmp) / f"n{n}"
            write_cache(root, n, feature)
            for reader, w in READERS(a.workers):
                out = subprocess.run([sys.executable, __file__, "--epochs", str(a.epochs), "--measure", str(root),
                                      reader, str(w)], check=True, capture_output=True, text=True).stdout
                res[(n, reader, w)] = json.loads(out.splitlines()[-1])
                r = res[(n, reader, w)]
                reads = (f", {r['loads_per_epoch']:.0f} row-group reads/epoch of {r['row_groups']} row groups"
                         if "row_groups" in r else "")
                print(f"N={n:5d} {reader} workers={w}: peak RSS {r['peak_rss_mb']:.0f} MB "
                      f"(loader workers {r['workers_peak_rss_mb']:.0f} MB), {r['examples_per_s']:.0f} examples/s{reads}")
        mb = np.prod(feature) * 2 / 2 ** 20
        print(f"features {mb:.2f} MB/item float16; cache {10 * a.n * mb:.0f} MB at 10·N")
        for reader, w in READERS(a.workers):
            ratio = res[(10 * a.n, reader, w)]["peak_rss_mb"] / res[(a.n, reader, w)]["peak_rss_mb"]
            print(f"peak RSS 10·N / N, {reader} workers={w}: {ratio:.2f}" + (" (goal <= 1.2)" if reader == "new" else ""))
        for reader, w in READERS(a.workers)[1:]:
            speed = res[(10 * a.n, reader, w)]["examples_per_s"] / res[(10 * a.n, "old", 0)]["examples_per_s"]
            print(f"examples/s {reader} (workers={w}) / old at 10·N: {speed:.2f}")


if __name__ == "__main__":
    main()
