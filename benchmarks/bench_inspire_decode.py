"""Decode speed of the `inspire` backbone: a plain KV-cached loop vs transformers ``generate()``.

Both decode greedily (CFG off) from the same prompt of ``--prompt`` embeddings for ``--steps`` new
tokens. ``generate()`` runs a ``Qwen2ForCausalLM`` of the same Qwen2 config whose vocabulary is the
audio vocabulary + EOS (so its ``lm_head`` does the same work as our ``llm_decoder``). Each figure
includes the prefill. The bandwidth bound is the steps/s a decoder would reach if every step only read
the weights it uses (Qwen2 layers + final norm + ``llm_decoder``) at the measured copy bandwidth
(KV-cache reads, compute and Python overhead ignored); ``of bound`` = measured / bound.

    python benchmarks/bench_inspire_decode.py [--device cpu|cuda] [--steps 100] [--sizes tiny,100m] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from inspire_llm.backbone import InspireBackbone, InspireConfig
from vidmusic_core import BackboneInput

SIZES = {  # ~100M: 12 layers of D 768 (8.5M each) + decoder 3.1M; tiny: the test default
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    "100m": dict(hidden=768, layers=12, heads=12, kv_heads=2, intermediate=3072),
}
A = 4096  # audio vocabulary (upstream)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: torch.device, mbytes: int = 512) -> float:
    """Bytes/s of a large tensor copy (read + write counted)."""
    src = torch.empty(mbytes * 2**20 // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


@torch.inference_mode()
def ours(model: InspireBackbone, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy KV-cached decode: prefill, then one token per step (embed -> forward -> argmax)."""
    B = prompt.shape[0]
    cache = model.new_cache()
    ones = torch.ones(B, prompt.shape[1], dtype=torch.bool, device=prompt.device)
    logits = model(BackboneInput(prompt, ones), cache, logits_positions="last").logits  # [B, 1, 1, A+1]
    one = torch.ones(B, 1, dtype=torch.bool, device=prompt.device)
    out = []
    for _ in range(steps):
        tok = logits[:, :, -1, : model.cardinality].argmax(-1)  # [B, 1], EOS never chosen (as min_new_tokens)
        out.append(tok)
        x = model.embed(tok[:, :, None])  # [B, 1, D]
        logits = model(BackboneInput(x, one), cache, logits_positions="last").logits
    return torch.cat(out, dim=1)


@torch.inference_mode()
def hf_generate(model: Qwen2ForCausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    ones = torch.ones(prompt.shape[:2], dtype=torch.long, device=prompt.device)
    return model.generate(inputs_embeds=prompt, attention_mask=ones, max_new_tokens=steps, min_new_tokens=steps,
                          do_sample=False, pad_token_id=0, eos_token_id=None)


def timed_pair(fa, fb, device: torch.device, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``fa`` and ``fb``, alternated (a shared machine's load hits both)."""
    fa(), fb()  # warm-up
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, fn in enumerate((fa, fb)):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--sizes", default="tiny,100m")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable on a shared machine)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    bw = copy_bandwidth(device)
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {args.dtype}, copy bandwidth "
          f"{bw / 1e9:.1f} GB/s, {args.steps} steps after a {args.prompt}-token prompt, greedy, CFG off")
    print(f"{'size':>5} {'params':>8} {'B':>2} {'ours st/s':>10} {'generate st/s':>14} {'ratio':>6} "
          f"{'bound st/s':>11} {'of bound':>9}")
    for size in args.sizes.split(","):
        torch.manual_seed(0)
        model = InspireBackbone(InspireConfig(size="tiny", audio_vocab=A, text_vocab=1024, dtype=args.dtype,
                                              **SIZES[size])).to(device).eval()
        qcfg = Qwen2Config.from_dict({**model.llm.model.config.to_dict(), "vocab_size": A + 1,
                                      "tie_word_embeddings": False})
        hf = Qwen2ForCausalLM(qcfg).to(device=device, dtype=model.llm_decoder.weight.dtype).eval()
        step_params = sum(p.numel() for n, p in model.qwen.named_parameters() if not n.startswith("embed_tokens"))
        step_params += sum(p.numel() for p in model.llm_decoder.parameters())
        step_bytes = step_params * model.llm_decoder.weight.element_size()
        bound = bw / step_bytes
        for B in (int(b) for b in args.batches.split(",")):
            prompt = torch.randn(B, args.prompt, model.width, device=device, dtype=model.llm_decoder.weight.dtype)
            t_ours, t_hf = timed_pair(lambda: ours(model, prompt, args.steps),
                                      lambda: hf_generate(hf, prompt, args.steps), device, args.repeats)
            s_ours, s_hf = args.steps / t_ours, args.steps / t_hf
            print(f"{size:>5} {step_params / 1e6:>7.1f}M {B:>2} {s_ours:>10.1f} {s_hf:>14.1f} {s_ours / s_hf:>6.2f} "
                  f"{bound:>11.1f} {s_ours / bound:>9.2f}")


if __name__ == "__main__":
    main()
