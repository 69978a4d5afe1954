"""Reading cached frozen features for one epoch ÷ recomputing them (video decode + frozen encoder).

    python benchmarks/bench_cache_read.py [--n 24] [--seconds 8] [-- encoder overrides, e.g. encoder.fps=2]

Generates a toy dataset in a temp dir, runs `prepare` with the embedded default encoder (lstv), then
times (a) one pass over the CachedDataset (parquet read + float16 -> float32) and (b) the same items
recomputed with FrameSampler + encoder.frozen_features. Goal: ratio <= 0.1.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vidmusic_core.config import compose, component_from_config
from vidmusic_core.data.cache import ShardStore
from vidmusic_core.data.dataset import CachedDataset
from vidmusic_core.data.manifest import read_manifest
from vidmusic_core.data.prepare import encoder_store_dir, prepare
from vidmusic_core.data.toy import make_toy_dataset
from vidmusic_core.video import load_frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_toy_dataset(data, n=a.n, seconds=a.seconds, progress=False)
        cfg = compose(overrides=[f"data.root={data}", f"data.clip_seconds={a.seconds}", "codec.name=null",
                                 *a.overrides])
        rep = prepare(cfg, progress=False)
        items = read_manifest(rep.cache_dir / "manifest.jsonl")
        comp, ecfg = component_from_config(cfg, "encoder")
        torch.manual_seed(0)
        enc = comp.build(ecfg).eval()
        edir, _ = encoder_store_dir(cfg, rep.cache_dir, enc)
        t = time.perf_counter()
        ds = CachedDataset(items, ShardStore(edir), None, split=None)
        n_bytes = 0
        for i in range(len(ds)):
            n_bytes += sum(v.numel() * 2 for v in ds[i]["features"].values())
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        with torch.inference_mode():
            for it in items:
                enc.frozen_features(load_frames([it.video], enc.frame_spec, 0.0, a.seconds))
        compute_s = time.perf_counter() - t
        print(f"encoder {cfg.encoder.name}, {len(items)} clips of {a.seconds:g} s, {n_bytes / 2**20:.1f} MiB of float16 features")
        print(f"read cached features (one epoch): {read_s:.3f} s")
        print(f"recompute (decode + frozen encoder): {compute_s:.3f} s")
        print(f"ratio read / recompute: {read_s / compute_s:.3f} (goal <= 0.1)")


if __name__ == "__main__":
    main()
