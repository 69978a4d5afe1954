"""Benchmark of the ``wavtokenizer`` codec at the released model's widths (random weights, nothing downloaded).

Builds :class:`WavTokenizerCodec` with ``UPSTREAM_75HZ`` (SEANet n_filters 32 / dim 512 / 2-layer LSTM, 4096
codes, Vocos backbone 768 wide x 12 ConvNeXt blocks + attention, ISTFT n_fft 1280 hop 320) and times
``encode`` and ``decode`` of ``--seconds`` of audio (default 30 s, batch 1, float32, ``torch.inference_mode``).
Prints the real-time factor RTF = wall seconds / audio seconds (lower is faster; < 1 is faster than real
time), best of ``--repeats`` runs after one warm-up, and peak RSS.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_wavtokenizer.py [--seconds 30 --threads 2 --device cpu]``.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from inspire_llm.wavtokenizer import UPSTREAM_75HZ, WavTokenizerCodec


def timed(fn, repeats: int, device: str) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    codec = WavTokenizerCodec(WavTokenizerCodec.Config(**UPSTREAM_75HZ)).to(args.device).eval()
    n_params = {part: sum(p.numel() for p in getattr(codec, part).parameters())
                for part in ("feature_extractor", "backbone", "head")}
    sr = codec.sample_rate
    audio = 0.1 * torch.randn(1, 1, int(args.seconds * sr), device=args.device)
    with torch.inference_mode():
        t_enc, toks = timed(lambda: codec.encode(audio), args.repeats, args.device)
        t_dec, wav = timed(lambda: codec.decode(toks), args.repeats, args.device)  # type: ignore[arg-type]
    T = toks.codes.shape[-1]  # type: ignore[attr-defined]
    print(f"wavtokenizer (released 75 Hz widths, random weights), device {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print("params: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in n_params.items())
          + "  (feature_extractor: SEANet encoder only; + 4096 x 512 codebook buffers)")
    print(f"audio {args.seconds:g} s -> {T} tokens -> {wav.shape[-1] / sr:g} s")  # type: ignore[attr-defined]
    print(f"encode: {t_enc:.2f} s  RTF {t_enc / args.seconds:.4f}  ({args.seconds / t_enc:.1f}x real time)")
    print(f"decode: {t_dec:.2f} s  RTF {t_dec / args.seconds:.4f}  ({args.seconds / t_dec:.1f}x real time)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
