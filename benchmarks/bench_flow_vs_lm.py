"""Generation wall time and peak memory: the `flow` backbone (8, 16, 32 ODE steps) vs the `inspire` token LM.

Both generate one clip length (``--seconds``, default 8 s: 200 frames at the default codecs' 25 Hz) for a
batch of ``--batch`` rows from the same random condition (LSTV-like: 12 fps x 2 tokens, D 128) through the
default run's layout (``aligned`` + ``prefix_condition``, ``reduce: rate``). The LM is the default preset's
``inspire`` (hidden 128, 3 layers, 2 codebooks x 256 of ``rvq_mel``, delays [0, 1]: 201 KV-cached decode
steps); the flow DiT has the same depth and the width whose parameter count is closest to the LM's,
over 128-channel ``mel_latent`` latents. No CFG (``cfg_coef`` 1) for either; weights are random (time and
memory do not depend on them). Each measurement runs in a fresh process (``--one`` is that child): the
median wall time of ``--reps`` generations after one warm-up, and the process's peak RSS (``ru_maxrss``)
minus its RSS just before the first generation (CUDA: ``max_memory_allocated``). Printed: each time, the
ratio flow / LM, and each peak. On a shared machine, ``--rounds R`` runs the four processes R times
alternated and keeps each one's fastest round, and ``--clock cpu --threads 1`` times process CPU time
(what other processes take of the core is left out, not their memory-bandwidth contention).

    python benchmarks/bench_flow_vs_lm.py [--seconds 8] [--batch 2] [--reps 3] [--device cpu] [--threads 0]
                                          [--rounds 1] [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

FR, COND_D, FPS = 25.0, 128, 12.0


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def build(kind: str, device: torch.device):
    """(backbone, layout, codec stub, n_frames) for ``kind`` = ``lm`` or ``flow``."""
    from flow_dit.backbone import FlowBackbone, FlowConfig
    from inspire_llm.backbone import InspireBackbone, InspireConfig
    from vidmusic_core.layouts.prefix import AlignedConfig, AlignedLayout

    torch.manual_seed(0)
    lm = InspireBackbone(InspireConfig(hidden=128, layers=3, heads=4, kv_heads=2, intermediate=256, audio_vocab=256,
                                       n_codebooks=2))
    target = sum(p.numel() for p in lm.parameters())
    if kind == "lm":
        bb, delays = lm, [0, 1]
    else:
        cands = [FlowBackbone(FlowConfig(width=w, layers=3, heads=4, ffn=2 * w, latent_dim=128))
                 for w in range(32, 257, 8)]
        bb, delays = min(cands, key=lambda m: abs(sum(p.numel() for p in m.parameters()) - target)), []
    layout = AlignedLayout(AlignedConfig(cond_dim=COND_D, width=bb.width, frame_rate=FR, prefix_condition=True,
                                         reduce="rate", delays=delays, use_text=False,
                                         own_specials=kind == "flow" or lm.n_special_rows == 0))

    class Codec:  # what the backbones' generate reads
        frame_rate = FR
        delays = tuple(layout.cfg.delays)

    return bb.to(device).eval(), layout.to(device).eval(), Codec(), sum(p.numel() for p in bb.parameters())


def one(kind: str, steps: int, seconds: float, batch: int, reps: int, device: str, clock: str = "wall") -> dict:
    from vidmusic_core import Condition, GenerationRequest, SamplingConfig

    dev = torch.device(device)
    bb, layout, codec, n_params = build(kind, dev)
    N = int(round(seconds * FPS)) * 2
    g = torch.Generator().manual_seed(0)
    cond = Condition(torch.randn(batch, N, COND_D, generator=g).to(dev), torch.ones(batch, N, dtype=torch.bool, device=dev),
                     (torch.arange(N) // 2 / FPS).repeat(batch, 1).to(dev))
    n_frames = int(round(seconds * FR))
    req = GenerationRequest(cond, n_frames, list(range(batch)), SamplingConfig(steps=steps, temperature=1.0, top_k=0),
                            seconds=torch.full((batch,), seconds, device=dev))
    before = rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    timer = time.process_time if clock == "cpu" else time.perf_counter
    for r in range(reps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = timer()
        with torch.inference_mode():
            bb.generate(layout, req, codec)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if r:
            times.append(timer() - t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    return {"kind": kind, "steps": steps, "params": n_params, "seconds": statistics.median(times), "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=1, help="alternated rounds; each configuration's fastest is kept")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time (use --threads 1)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.seconds, a.batch, a.reps, a.device, a.clock)))
        return
    configs = [("lm", 0), ("flow", 8), ("flow", 16), ("flow", 32)]
    best: dict[tuple[str, int], dict] = {}
    for _ in range(a.rounds):
        for kind, steps in configs:
            cmd = [sys.executable, __file__, "--one", kind, str(steps), "--seconds", str(a.seconds), "--batch",
                   str(a.batch), "--reps", str(a.reps), "--device", a.device, "--threads", str(a.threads),
                   "--clock", a.clock]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if (kind, steps) not in best or row["seconds"] < best[(kind, steps)]["seconds"]:
                best[(kind, steps)] = row
    rows = [best[c] for c in configs]
    lm = rows[0]
    print(f"{a.seconds:g} s clips ({int(round(a.seconds * FR))} frames at {FR:g} Hz), batch {a.batch}, {a.device}, "
          f"torch threads {a.threads or torch.get_num_threads()}, {a.clock} clock, median of {a.reps}, "
          f"best of {a.rounds} alternated round(s)")
    print(f"{'backbone':<18}{'params':>10}{'s':>10}{'÷ LM':>8}{'peak MiB':>11}")
    for r in rows:
        name = "inspire (LM)" if r["kind"] == "lm" else f"flow {r['steps']} steps"
        print(f"{name:<18}{r['params']:>10,}{r['seconds']:>10.3f}{r['seconds'] / lm['seconds']:>8.2f}{r['peak_mib']:>11.1f}")


if __name__ == "__main__":
    main()
