"""Decode-step time of the `musicgen` backbone: cross-attention K/V cached once vs re-projected every step.

Upstream (audiocraft/VidMuse ``StreamingMultiheadAttention._complete_kv``) re-projects the whole memory
(3000 video tokens for 30 s) to keys/values in every layer at every decoding step; our cache projects it
once with the prompt. Both runs decode ``--steps`` single-frame steps for a CFG batch of 2 (conditional +
null) after a 1-token prompt, from the same weights, with ``--memory`` memory tokens; the figure is the
median step time (the prompt excluded). The goal in issue 10 is a ratio <= 0.2.

    python benchmarks/bench_musicgen_cross_kv.py [--device cpu|cuda] [--sizes tiny,100m] [--steps 8] [--threads 0]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from musicgen_lm.backbone import MusicgenBackbone, MusicgenLMConfig
from vidmusic_core import BackboneInput

SIZES = {  # 100m: 10 layers x 16 D^2 (9.4M) + embeddings/heads 12.6M = 107M parameters
    "tiny": dict(width=64, layers=2, heads=4, audio_vocab=256),
    "100m": dict(width=768, layers=10, heads=12, audio_vocab=2048),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def step_times(model: MusicgenBackbone, memory: torch.Tensor, steps: int, cache_cross_kv: bool) -> list[float]:
    """Seconds of each of ``steps`` decoding steps after a 1-token prompt that carries ``memory``."""
    device, B = memory.device, memory.shape[0]
    ones = torch.ones(B, 1, dtype=torch.bool, device=device)
    cache = model.new_cache(cache_cross_kv=cache_cross_kv)
    x = torch.randn(B, 1, model.width, device=device, dtype=memory.dtype)
    model(BackboneInput(x, ones, memory=memory), cache, logits_positions="last")
    out = []
    codes = torch.zeros(B, model.n_codebooks, 1, dtype=torch.long, device=device)
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        logits = model(BackboneInput(model.embed(codes), ones), cache, logits_positions="last").logits
        codes = logits[:, :, -1].argmax(-1)[:, :, None]
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="tiny,100m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--memory", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, memory {args.memory} tokens, batch {args.batch}, {args.steps} steps, {args.dtype}")
    print(f"{'size':>6} {'params':>9} {'cached ms/step':>15} {'recompute ms/step':>18} {'ratio':>7}")
    for size in args.sizes.split(","):
        torch.manual_seed(0)
        model = MusicgenBackbone(MusicgenLMConfig(dtype=args.dtype, **SIZES[size])).to(device).eval()
        n = sum(p.numel() for p in model.parameters())
        memory = torch.randn(args.batch, args.memory, model.width, device=device).to(model.out_norm.weight.dtype)
        step_times(model, memory, 2, True)  # warm-up
        cached = statistics.median(step_times(model, memory, args.steps, True))
        recompute = statistics.median(step_times(model, memory, args.steps, False))
        print(f"{size:>6} {n / 1e6:8.1f}M {cached * 1e3:15.2f} {recompute * 1e3:18.2f} {cached / recompute:7.3f}")


if __name__ == "__main__":
    main()
