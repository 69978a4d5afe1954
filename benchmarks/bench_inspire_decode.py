"""Decode speed of the `inspire` backbone: our KV-cached decode vs transformers ``generate()``.

All paths decode greedily (CFG off) from the same ``--prompt``-position prompt for ``--steps`` new tokens
(prefill + ``steps - 1`` cached forwards each):

- ``gen_tokens``: the product path, ``vidmusic_core.sampling.generate_tokens`` with a ``prefix`` layout
  (video condition tokens between ``sos`` and ``task``, K = 1, temperature 0 = argmax), i.e.
  ``layout.step_embeds`` + ``backbone(BackboneInput, cache, logits_positions="last")`` per step plus the
  sampling loop's bookkeeping;
- ``loop``: the bare backbone loop (embed -> forward -> argmax), the backbone's own cost;
- ``generate()``: a ``Qwen2ForCausalLM`` holding the *same* weights (Qwen2 layers, ``lm_head`` =
  ``llm_decoder``, ``embed_tokens`` rows = ``speech_embedding``; ``llm_decoder.bias`` is zeroed and the EOS
  row of both heads is zero, so it is never chosen) with its default cache, ``do_sample=False`` and
  ``min_new_tokens = max_new_tokens = steps``. Its tokens must equal ours (checked, ``same``).

``st/s`` = steps / seconds of the whole call (setup and prefill included), best of ``--repeats``, the
paths alternated (a shared machine's load hits all). ``dec st/s`` = ``(steps - 1) / (t(steps) - t(1))``:
the cached steps alone, prefill and setup removed the same way for every path. The bandwidth bound is the
steps/s a decoder would reach if every step only read the weights it uses (Qwen2 layers + final norm +
``llm_decoder``) at the measured copy bandwidth (read + write bytes; KV-cache reads, compute and Python
overhead ignored); ``of bound`` = ``dec st/s`` of ``gen_tokens`` / bound.

``--kernels auto,plain`` (the default) measures our two paths once per ``backbone.decode_kernels`` value
listed: ``auto`` is the backbone's default (the packed step where it applies, see ``inspire_llm.decode``),
``plain`` the step over the model's own modules; the same model, the option switched between calls (the
packed step builds its prepared weights in the warm-up call), all alternated with ``generate()`` in the same
rounds.

    python benchmarks/bench_inspire_decode.py [--device cpu|cuda] [--steps 100] [--sizes tiny,100m] [--threads 1]
                                              [--batches 1,8] [--colmajor] [--kernels auto,plain]
                                              [--clock wall|cpu] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from inspire_llm.backbone import InspireBackbone, InspireConfig
from inspire_llm.decode import DECODE_KERNELS
from vidmusic_core import BackboneInput, Condition
from vidmusic_core.sampling import SamplingConfig, generate_tokens
from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout

SIZES = {  # ~100M: 12 layers of D 768 (8.5M each) + decoder 3.1M; tiny: the test default
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    "100m": dict(hidden=768, layers=12, heads=12, kv_heads=2, intermediate=3072),
}
A = 4096  # audio vocabulary (upstream)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: torch.device, mbytes: int = 512, repeats: int = 10) -> float:
    """Bytes/s of a large tensor copy (read + write counted), best of ``repeats``."""
    src = torch.empty(mbytes * 2**20 // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def read_bandwidth(device: torch.device, mbytes: int = 512) -> float:
    """Bytes/s of a large tensor sum (read only; informational: a decode step mostly reads)."""
    src = torch.empty(mbytes * 2**20 // 4, dtype=torch.float32, device=device).normal_()
    src.sum()
    sync(device)
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        src.sum()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return src.numel() * 4 / best


@torch.inference_mode()
def loop(model: InspireBackbone, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy KV-cached decode: prefill, then one token per step (embed -> forward -> argmax)."""
    B = prompt.shape[0]
    cache = model.new_cache()
    ones = torch.ones(B, prompt.shape[1], dtype=torch.bool, device=prompt.device)
    logits = model(BackboneInput(prompt, ones), cache, logits_positions="last").logits  # [B, 1, 1, A+1]
    one = torch.ones(B, 1, dtype=torch.bool, device=prompt.device)
    out = []
    for i in range(steps):
        tok = logits[:, :, -1, : model.cardinality].argmax(-1)  # [B, 1], EOS never chosen (as min_new_tokens)
        out.append(tok)
        if i == steps - 1:
            break  # as generate(): no forward after the last token
        x = model.embed(tok[:, :, None])  # [B, 1, D]
        logits = model(BackboneInput(x, one), cache, logits_positions="last").logits
    return torch.cat(out, dim=1)


def product_setup(model: InspireBackbone, B: int, prompt_len: int, device: torch.device):
    """A ``prefix`` layout and a condition whose prompt is ``prompt_len`` positions: [sos, sos, cond, task]."""
    D = model.width
    layout = PrefixLayout(PrefixConfig(reduce="none", use_text=False, use_time=False, cond_dim=D, width=D,
                                       delays=[0], frame_rate=75.0, own_specials=False)).to(device)
    layout = layout.to(model.llm_decoder.weight.dtype).eval()
    N = prompt_len - 3
    g = torch.Generator().manual_seed(1)
    cond = Condition(torch.randn(B, N, D, generator=g).to(device, model.llm_decoder.weight.dtype),
                     torch.ones(B, N, dtype=torch.bool, device=device),
                     (torch.arange(N, dtype=torch.float32) / 8).repeat(B, 1).to(device))
    with torch.inference_mode():
        prompt = layout.prompt(model, cond).inputs_embeds
    return layout, cond, prompt


def gen_tokens(model: InspireBackbone, layout: PrefixLayout, cond: Condition, steps: int) -> torch.Tensor:
    """The product path: ``generate_tokens`` greedy, CFG off."""
    greedy = SamplingConfig(temperature=0.0)
    return generate_tokens(layout, model, cond, steps, seeds=[0] * cond.batch_size, sampling=greedy,
                           delays=(0,)).codes[:, 0]


@torch.inference_mode()
def hf_generate(model: Qwen2ForCausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    ones = torch.ones(prompt.shape[:2], dtype=torch.long, device=prompt.device)
    return model.generate(inputs_embeds=prompt, attention_mask=ones, max_new_tokens=steps, min_new_tokens=steps,
                          do_sample=False, pad_token_id=0, eos_token_id=None)


def same_weights_hf(model: InspireBackbone) -> Qwen2ForCausalLM:
    """A ``Qwen2ForCausalLM`` computing exactly our decode: our Qwen2 layers, ``lm_head`` = ``llm_decoder``
    (bias zeroed here), ``embed_tokens`` rows 0..A-1 = ``speech_embedding``; row A (EOS) of both heads is 0."""
    with torch.no_grad():
        model.llm_decoder.bias.zero_()
        model.llm_decoder.weight[A].zero_()
    qcfg = Qwen2Config.from_dict({**model.llm.model.config.to_dict(), "vocab_size": A + 1,
                                  "tie_word_embeddings": False})
    qcfg._attn_implementation = model.llm.model.config._attn_implementation
    hf = Qwen2ForCausalLM(qcfg).to(device=model.llm_decoder.weight.device, dtype=model.llm_decoder.weight.dtype)
    state = {k: v for k, v in model.qwen.state_dict().items() if not k.startswith("embed_tokens")}
    hf.model.load_state_dict(state, strict=False)
    with torch.no_grad():
        hf.lm_head.weight.copy_(model.llm_decoder.weight)
        hf.model.embed_tokens.weight[:A].copy_(model.speech_embedding.weight)
        hf.model.embed_tokens.weight[A].zero_()
    return hf.eval()


def timed(fns: dict, device: torch.device, repeats: int, clock=time.perf_counter) -> dict:
    """Best-of-``repeats`` seconds of each function, alternated (a shared machine's load hits all)."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t = clock()
            fn()
            sync(device)
            best[k] = min(best[k], clock() - t)
    return best


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
    ap.add_argument("--colmajor", action="store_true",
                    help="our model with backbone.colmajor_weights=true (generate() keeps transformers' layout)")
    ap.add_argument("--kernels", default="auto,plain",
                    help="comma list of backbone.decode_kernels values to measure our paths with (auto = the "
                         "backbone's default, packed, plain)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: this process's CPU time (time.process_time), which leaves out the time other "
                         "processes hold the core; only meaningful on CPU with --threads 1")
    args = ap.parse_args()
    kernels = args.kernels.split(",")
    if any(k not in DECODE_KERNELS for k in kernels):
        ap.error(f"--kernels: choose from {', '.join(DECODE_KERNELS)}")
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        ap.error("--clock cpu needs --device cpu --threads 1")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.steps < 2 or args.prompt < 4:
        ap.error("--steps >= 2 and --prompt >= 4")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    bw, rbw = copy_bandwidth(device), read_bandwidth(device)
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {args.dtype}, copy bandwidth "
          f"{bw / 1e9:.1f} GB/s (read only {rbw / 1e9:.1f}), {args.steps} steps after a {args.prompt}-position prompt, "
          f"greedy, CFG off"
          f"{', ours colmajor_weights' if args.colmajor else ''}, {args.clock} clock")
    print(f"{'size':>5} {'params':>8} {'B':>2} {'path':>10} {'kernels':>8} {'st/s':>8} {'gen() st/s':>10} "
          f"{'ratio':>6} {'dec st/s':>9} {'gen() dec':>9} {'ratio':>6} {'bound':>7} {'of bound':>8} same")
    for size in args.sizes.split(","):
        torch.manual_seed(0)
        model = InspireBackbone(InspireConfig(size="tiny", audio_vocab=A, text_vocab=1024, dtype=args.dtype,
                                              colmajor_weights=args.colmajor, **SIZES[size])).to(device).eval()
        hf = same_weights_hf(model)
        step_params = sum(p.numel() for n, p in model.qwen.named_parameters() if not n.startswith("embed_tokens"))
        step_params += sum(p.numel() for p in model.llm_decoder.parameters())
        step_bytes = step_params * model.llm_decoder.weight.element_size()
        bw = max(bw, copy_bandwidth(device))  # re-measured: the best seen (a loaded moment must not lower the bound)
        bound = bw / step_bytes
        for B in (int(b) for b in args.batches.split(",")):
            layout, cond, prompt = product_setup(model, B, args.prompt, device)
            n = args.steps
            def ours(fn, kern):
                def run(k: int) -> torch.Tensor:
                    model.cfg.decode_kernels = kern
                    return fn(k)
                return run

            fns = {}
            for kern in kernels:
                fns[("gen_tokens", kern)] = ours(lambda k: gen_tokens(model, layout, cond, k), kern)
                fns[("loop", kern)] = ours(lambda k: loop(model, prompt, k), kern)
            fns[("generate", "")] = lambda k: hf_generate(hf, prompt, k)[:, -k:]
            ref = ("generate", "")
            toks = {k: fn(n) for k, fn in fns.items()}
            same = {k: bool(torch.equal(toks[k].cpu(), toks[ref].cpu())) for k in fns if k != ref}
            t_n = timed({k: (lambda fn=fn: fn(n)) for k, fn in fns.items()}, device, args.repeats, clock)
            t_1 = timed({k: (lambda fn=fn: fn(1)) for k, fn in fns.items()}, device, max(args.repeats, 5), clock)
            rate = {k: n / t_n[k] for k in fns}
            dec = {k: (n - 1) / max(t_n[k] - t_1[k], 1e-9) for k in fns}
            for k in same:
                of = f"{dec[k] / bound:>8.2f}" if k[0] == "gen_tokens" else f"{'':>8}"
                print(f"{size:>5} {step_params / 1e6:>7.1f}M {B:>2} {k[0]:>10} {k[1]:>8} {rate[k]:>8.1f} "
                      f"{rate[ref]:>10.1f} {rate[k] / rate[ref]:>6.2f} {dec[k]:>9.1f} {dec[ref]:>9.1f} "
                      f"{dec[k] / dec[ref]:>6.2f} {bound:>7.1f} {of} {'yes' if same[k] else 'NO'}", flush=True)
    print(f"copy bandwidth, best seen: {bw / 1e9:.1f} GB/s (the bound of every row uses the best seen so far)")


if __name__ == "__main__":
    main()
