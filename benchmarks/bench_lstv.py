"""LSTV encode time for one clip on the CPU at real VidMuse widths (CLIP ViT-B/32, 24 heads, 1536 out).

Random weights and random frames (speed does not depend on them). Prints the frozen CLIP part, the
trainable rest, a full encode, an encode from cached CLIP states (float16, as the prepare cache stores
them) and the one-off black-video null. Not a test.

    python benchmarks/bench_lstv.py [--seconds 30] [--n-global 32] [--batch 1] [--repeat 2] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from vidmusic_core import Frames
from vidmuse_lstv.encoder import LSTVConfig, LSTVEncoder


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall time in seconds over ``repeat`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--n-global", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    enc = LSTVEncoder(LSTVConfig.vidmuse(n_global=args.n_global)).eval()
    build = time.perf_counter() - t0
    B, T, G, S = args.batch, int(args.seconds * enc.frame_spec.fps), args.n_global, enc.frame_spec.size
    frames = Frames(torch.randint(0, 256, (B, T, S, S, 3), dtype=torch.uint8),
                    (torch.arange(T) / enc.frame_spec.fps).expand(B, T),
                    global_frames=torch.randint(0, 256, (B, G, S, S, 3), dtype=torch.uint8))
    print(f"lstv @ VidMuse-medium widths, {args.seconds:g} s clip x batch {B}: {T} local + {G} global frames "
          f"of {S}px; torch {torch.__version__}, {torch.get_num_threads()} threads; build {build:.1f} s")

    with torch.inference_mode():
        warm = Frames(frames.local[:1, :2], frames.local_times[:1, :2], global_frames=frames.global_frames[:1, :2])
        enc.forward_features(enc.frozen_features(warm), warm)  # warm-up (oneDNN/allocator first-call costs)
        enc._null_cache.clear()
        t_null, _ = timed(lambda: enc.null_tokens(T), 1)  # first call: encodes one black frame, then cached
        t_null_hit, _ = timed(lambda: enc.null_tokens(T), 1)
        t_clip, feats = timed(lambda: enc.frozen_features(frames), args.repeat)
        cached = {k: v.half() for k, v in feats.items()}  # what prepare stores
        t_rest, cond = timed(lambda: enc.forward_features(feats, frames), args.repeat)
        t_full, _ = timed(lambda: enc(frames), args.repeat)
        t_cached, _ = timed(lambda: enc.forward_features(cached, frames), args.repeat)
    n = B * (T + G)
    print(f"  CLIP (frozen_features)      {t_clip:7.2f} s  ({n / t_clip:.1f} frames/s, {n} frames)")
    print(f"  rest (forward_features)     {t_rest:7.2f} s  -> tokens {list(cond.tokens.shape)}")  # type: ignore[attr-defined]
    print(f"  full encode, no cache       {t_full:7.2f} s")
    print(f"  encode from cached features {t_cached:7.2f} s  (float16 cache; CLIP skipped)")
    print(f"  black-video null            {t_null:7.2f} s first call, {t_null_hit:.3f} s cached")
    print(f"  cached features per clip    {sum(v[0].numel() for v in cached.values()) * 2 / 2**20:7.1f} MiB (float16)")


if __name__ == "__main__":
    main()
