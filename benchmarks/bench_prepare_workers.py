"""``vidmusic prepare --workers 2`` ÷ ``--workers 1``: items/s on toy data at 8 s clips.

    python benchmarks/bench_prepare_workers.py [--n 16] [--seconds 8] [-- prepare overrides]

Generates toy clips in a temp dir, then runs the real CLI (``vidmusic prepare``, a fresh cache each time)
with 1 and 2 decode workers and prints items/s of each and the ratio (goal >= 1.6 on a 2-core machine), both
for the whole command and for its decode/encode loop alone (the summary line's "… s of it decoding and
encoding": the part that ``--workers`` parallelises; start-up, the music checks and the codec fit are the rest).
The default encoder is the embedded default's; pass overrides after ``--`` to change it, e.g.
``-- --encoder clip encoder.output=cls encoder.image_size=32 encoder.patch_size=16``.
"""
from __future__ import annotations

import argparse
import os
import re
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
        speed, loop = {}, {}
        for workers in (1, 2):
            cache = Path(tmp) / f"cache{workers}"
            t0 = time.perf_counter()
            out = subprocess.run([str(BIN), "prepare", str(data), f"data.cache_dir={cache}",
                                  f"data.clip_seconds={a.seconds}", "--shard-size", str(a.shard_size), "--workers",
                                  str(workers), *a.overrides], check=True, env=env, capture_output=True, text=True)
            secs = time.perf_counter() - t0
            inner = float(re.search(r"([0-9.]+) s of it decoding and encoding", out.stdout).group(1))
            speed[workers], loop[workers] = a.n / secs, a.n / inner
            print(f"--workers {workers}: {a.n} items in {secs:.1f} s = {speed[workers]:.2f} items/s; "
                  f"decode/encode loop {inner:.2f} s = {loop[workers]:.2f} items/s")
        print(f"items/s --workers 2 / --workers 1: whole command {speed[2] / speed[1]:.2f}, decode/encode loop "
              f"{loop[2] / loop[1]:.2f} (goal >= 1.6; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
