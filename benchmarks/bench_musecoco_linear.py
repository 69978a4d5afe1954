"""Generation cost per token vs context length: the `musecoco` backbone's causal linear attention (a
running state per layer) next to a softmax-attention LM of the same size (a growing KV cache).

Both models are the same `musecoco` module (same weights, layers, FFN, vocabulary); the softmax one has
each layer's attention swapped for scaled-dot-product attention over a concatenated key/value cache.
For each context length N: prefill N tokens, then time ``--steps`` single-token steps (embedding,
all layers, logits of the new token). Linear attention should stay flat in N; softmax grows with N
(it reads the whole cache every step). ``cache MB`` is the generation state after the prefill.

    python benchmarks/bench_musecoco_linear.py [--size std] [--lengths 256,1024,4096] [--steps 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musecoco_symbolic.backbone import LinearAttentionLayer, MusecocoBackbone, MusecocoConfig
from vidmusic_core import BackboneInput


class SoftmaxAttentionLayer(nn.Module):
    """Softmax attention with the projections of a ``LinearAttentionLayer``; state = (keys, values)."""

    def __init__(self, lin: LinearAttentionLayer) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: Tensor, mask: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple]:
        a = self.lin
        B, S, _ = x.shape
        heads = lambda t: t.view(B, S, a.heads, a.d_k).transpose(1, 2)  # noqa: E731  [B, H, S, d_k]
        q, k, v = heads(a.q_proj(x)), heads(a.k_proj(x)), heads(a.v_proj(x))
        if state is not None:
            k, v = torch.cat([state[0], k], dim=2), torch.cat([state[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=state is None and S > 1)
        return a.out_proj(out.transpose(1, 2).reshape(B, S, -1)), (k, v)


def softmax_twin(model: MusecocoBackbone) -> MusecocoBackbone:
    import copy

    twin = copy.deepcopy(model)
    for layer in twin.decoder.layers:
        layer.self_attn = SoftmaxAttentionLayer(layer.self_attn)
    return twin


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def per_token(model: MusecocoBackbone, n_ctx: int, steps: int, device: torch.device) -> tuple[float, float, float]:
    """(prefill seconds, ms per generated token, cache MB) at context length ``n_ctx``."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.cardinality, (1, 1, n_ctx + steps), generator=g).to(device)
    cache = model.new_cache()
    t0 = time.perf_counter()
    x = model.embed(ids[..., :n_ctx])
    model(BackboneInput(x, torch.ones(1, n_ctx, dtype=torch.bool, device=device), music_start=0), cache,
          logits_positions="last")
    sync(device)
    prefill = time.perf_counter() - t0
    mb = sum(t.numel() * t.element_size() for s in cache.states for t in s) / 2**20
    one = torch.ones(1, 1, dtype=torch.bool, device=device)
    t0 = time.perf_counter()
    for i in range(steps):
        model(BackboneInput(model.embed(ids[..., n_ctx + i:n_ctx + i + 1]), one), cache, logits_positions="last")
    sync(device)
    return prefill, 1000 * (time.perf_counter() - t0) / steps, mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="std", help="backbone preset (tiny, std, large, xl, 1billion)")
    ap.add_argument("--lengths", default="256,1024,4096")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    linear = MusecocoBackbone(MusecocoConfig(size=args.size)).to(device).eval()
    softmax = softmax_twin(linear).eval()
    n_params = sum(p.numel() for p in linear.parameters()) / 1e6
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"musecoco size {args.size!r}: {len(linear.decoder.layers)} layers, width {linear.width}, "
          f"{n_params:.1f}M parameters, vocab {linear.cardinality}; device {device}, {args.threads} threads, "
          f"{args.steps} steps per length")
    print(f"{'context':>8} | {'linear ms/tok':>13} {'state MB':>9} {'prefill s':>9} | "
          f"{'softmax ms/tok':>14} {'KV MB':>8} {'prefill s':>9}")
    for n in lengths:
        lp, lt, lm = per_token(linear, n, args.steps, device)
        sp, st, sm = per_token(softmax, n, args.steps, device)
        print(f"{n:>8} | {lt:>13.2f} {lm:>9.2f} {lp:>9.2f} | {st:>14.2f} {sm:>8.1f} {sp:>9.2f}")


if __name__ == "__main__":
    main()
