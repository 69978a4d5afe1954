"""``vidmusic prepare --workers 2`` ÷ ``--workers 1``: items/s on toy data at 8 s clips.

    python benchmarks/bench_prepare_workers.py [--n 16] [--seconds 8] [-- prepare overrides]

Generates toy clips in a temp dir, then runs the real CLI (``vidmusic prepare``, a fresh cache each time)
with 1 and 2 decode workers and prints items/s of each and the ratio (goal >= 1.6 on a 2-core machine).
The default encoder is the embedded default's; pass overrides after ``--`` to change it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "vidmusic"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run([str(BIN), "toy-data", str(data), "--n", str(a.n), "--seconds", str(a.seconds), "--no-progress"],
                       check=True, env=env, capture_output=True)
        speed = {}
        for workers in (1, 2):
            cache = Path(tmp) / f"cache{workers}"
            t0 = time.perf_counter()
            subprocess.run([str(BIN), "prepare", str(data), f"data.cache_dir={cache}", f"data.clip_seconds={a.seconds}",
                            "--shard-size", str(a.shard_size), "--workers", str(workers), *a.overrides],
                           check=True, env=env, capture_output=True)
            secs = time.perf_counter() - t0
            speed[workers] = a.n / secs
            print(f"--workers {workers}: {a.n} items in {secs:.1f} s = {speed[workers]:.2f} items/s")
        print(f"items/s --workers 2 / --workers 1: {speed[2] / speed[1]:.2f} (goal >= 1.6; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
