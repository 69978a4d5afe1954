"""``vidmusic prepare --workers 2`` ÷ ``--workers 1``: items/s on toy data at 8 s clips.

    python benchmarks/bench_prepare_workers.py [--n 64] [--seconds 8] [--rounds 2] [-- prepare overrides]

Generates toy clips in a temp dir, then runs the real CLI (``vidmusic prepare``, a fresh cache each time)
with 1 and 2 decode workers and prints items/s of each and the ratio (goal >= 1.6 on a 2-core machine), both
for the whole command and for its decode/encode loop alone (the summary line's "… s of it decoding and
encoding": the part that ``--workers`` parallelises; start-up, the music checks and the codec fit are the rest),
best of ``--rounds`` (the two settings alternated, so a shared machine's load hits both). It also prints how the
loop's work splits: decoding (worker processes) against encoding (this process, the frozen encoder and the
codec), measured in one process (``--workers 0``), because with one decode worker the two already run at once
on two cores, and ``--workers 2`` can only add the CPU that the slower of them leaves idle.
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
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run([str(BIN), "toy-data", str(data), "--n", str(a.n), "--seconds", str(a.seconds), "--no-progress"],
                       check=True, env=env, capture_output=True)
        speed: dict[int, float] = {}
        loop: dict[int, float] = {}
        for r in range(a.rounds):
            for workers in (1, 2):
                cache = Path(tmp) / f"cache{workers}-{r}"
                t0 = time.perf_counter()
                out = subprocess.run([str(BIN), "prepare", str(data), f"data.cache_dir={cache}",
                                      f"data.clip_seconds={a.seconds}", "--shard-size", str(a.shard_size), "--workers",
                                      str(workers), *a.overrides], check=True, env=env, capture_output=True, text=True)
                secs = time.perf_counter() - t0
                inner = float(re.search(r"([0-9.]+) s of it decoding and encoding", out.stdout).group(1))
                print(f"round {r + 1} --workers {workers}: {a.n} items in {secs:.1f} s = {a.n / secs:.2f} items/s; "
                      f"decode/encode loop {inner:.2f} s = {a.n / inner:.2f} items/s")
                speed[workers], loop[workers] = max(speed.get(workers, 0.0), a.n / secs), max(loop.get(workers, 0.0), a.n / inner)
        dec, enc = split_of_the_loop(data, a)
        print(f"the loop's work, in one process: decoding {dec:.2f} s, encoding {enc:.2f} s; the most --workers 2 "
              f"can gain over --workers 1 on 2 cores is (decode + encode) / 2 against max(decode, encode): "
              f"{max(dec, enc) / ((dec + enc) / 2):.2f}")
        print(f"items/s --workers 2 / --workers 1: whole command {speed[2] / speed[1]:.2f}, decode/encode loop "
              f"{loop[2] / loop[1]:.2f} (goal >= 1.6; {os.cpu_count()} CPUs)")


def split_of_the_loop(data: Path, a: argparse.Namespace) -> tuple[float, float]:
    """Seconds of decoding and of encoding in ``prepare --workers 0`` (one process, one thread)."""
    code = f"""
import sys, time
import vidmusic_core.data.decode as D, vidmusic_core.data.prepare as P
spent = {{"dec": 0.0, "enc": 0.0}}
def timed(fn, key):
    def run(*args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            spent[key] += time.perf_counter() - t
    return run
D.decode_item = timed(D.decode_item, "dec")
P._encoder_rows, P._codec_row = timed(P._encoder_rows, "enc"), timed(P._codec_row, "enc")
from vidmusic_core.cli import main
sys.argv = ["vidmusic", "prepare", {str(data)!r}, "data.cache_dir={data.parent / 'cache0'}",
            "data.clip_seconds={a.seconds}", "--shard-size", "{a.shard_size}", "--workers", "0", *{a.overrides!r}]
try:
    main()
except SystemExit:
    pass
print("SPLIT", spent["dec"], spent["enc"])
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    dec, enc = out.stdout.split("SPLIT")[1].split()
    return float(dec), float(enc)


if __name__ == "__main__":
    main()
