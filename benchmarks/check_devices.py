"""A model trained on one device generates on another (issue 16): the device check to run where a GPU is lent.

    python benchmarks/check_devices.py [--root /tmp/vidmusic_devices]

Trains the ``smoke`` preset twice (``run.device=cpu`` and ``run.device=cuda``), then samples each model's
directory on both devices, greedily (``generate.top_k=1``) with the same seed, and prints per (trained on,
sampled on): the seconds it took, the wav's length, and how far the wav is from the one sampled on the training
device (max |difference| and correlation; greedy fp32 decoding should pick the same tokens, so the audio agrees
up to the codec's float noise). Without CUDA it says so and checks only that ``--device cuda`` is refused with a
clear error. Needs the embedded toy data only (made under ``--root``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def vm(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vidmusic")
    return subprocess.run([str(exe), *args], capture_output=True, text=True)


def main() -> None:
    import soundfile as sf
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/vidmusic_devices")
    root = Path(ap.parse_args().root)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        res = vm("generate", __file__, "--model", str(Path(__file__).parent), "--device", "cuda", "-o", str(root / "x"))
        print(f"no CUDA here (torch {torch.__version__}); --device cuda exits {res.returncode}: "
              f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")
    runs = {}
    for dev in devices:
        t = time.perf_counter()
        res = vm("run", "-p", "smoke", f"run.root={root / dev}", f"run.device={dev}", "--stage", "data",
                 "--stage", "prepare", "--stage", "train")
        if res.returncode:
            sys.exit(f"training on {dev} failed:\n{res.stderr[-3000:]}")
        runs[dev] = next(p.parent for p in (root / dev).glob("*/config.yaml"))
        print(f"trained on {dev}: {time.perf_counter() - t:.1f} s")
    video = sorted((root / "cpu").rglob("toy_*.mp4"))[0]
    print("\n| trained on | sampled on | seconds | wav s | max abs diff | correlation |\n|---|---|---|---|---|---|")
    for trained, run in runs.items():
        wavs = {}
        for dev in devices:
            out = root / f"gen_{trained}_on_{dev}"
            t = time.perf_counter()
            res = vm("generate", str(video), "--model", str(run / "checkpoints" / "last" / "model"), "-o", str(out),
                     "--device", dev, "--seed", "0", "--set", "generate.top_k=1", "--no-progress")
            if res.returncode:
                sys.exit(f"sampling the {trained} model on {dev} failed:\n{res.stderr[-3000:]}")
            secs = time.perf_counter() - t
            wavs[dev], sr = sf.read(str(out / f"{video.stem}.wav"))
            ref = wavs[trained]
            n = min(len(ref), len(wavs[dev]))
            diff = float(np.abs(ref[:n] - wavs[dev][:n]).max()) if n else float("nan")
            corr = float(np.corrcoef(ref[:n], wavs[dev][:n])[0, 1]) if n and np.std(ref[:n]) > 0 else float("nan")
            print(f"| {trained} | {dev} | {secs:.1f} | {len(wavs[dev]) / sr:.2f} | {diff:.2e} | {corr:.4f} |")


if __name__ == "__main__":
    main()
