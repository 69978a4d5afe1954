"""Training-step time and peak memory of the `prefix` layout for a 30 s clip: the full 3000-token LSTV
condition vs pooled versions (per-frame mean or CLS: 60 tokens; fixed-rate bins), with 2250 music tokens (75 Hz).

    python benchmarks/bench_prefix_memory.py [--width 128] [--layers 4]

Each setting runs in a fresh subprocess so peak RSS (ru_maxrss) is its own. Prints a table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from vidmusic_core import Condition, MusicTokens
from vidmusic_core.config import compose
from vidmusic_core.model import build_model
width, layers, reduce, rate = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
class Codec:  # what build_model reads: one codebook of 4096 at 75 Hz (InspireMusic's tokens)
    n_codebooks, cardinality, delays, frame_rate = 1, 4096, (0,), 75.0
cfg = compose(sugar={"encoder": "clip", "layout": "prefix", "backbone": "inspire"},
              overrides=[f"backbone.hidden={width}", f"backbone.layers={layers}", "backbone.heads=4",
                         "backbone.kv_heads=2", f"backbone.intermediate={2 * width}", "encoder.output=cls",
                         f"layout.reduce={reduce}", f"layout.rate={rate}", "layout.use_time=false"])
m = build_model(cfg, Codec(), seed=0)
times = (torch.arange(60) / 2.0).repeat_interleave(50)[None]          # 30 s, 2 fps, 50 tokens/frame
cond = Condition(torch.randn(1, 3000, m.encoder.dim), torch.ones(1, 3000, dtype=torch.bool), times)
music = MusicTokens(torch.randint(0, 4096, (1, 1, 2250)), None, 75.0)
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
def step():
    inp = m.layout(m.backbone, cond, music)
    loss = m.backbone.loss(inp); loss.backward(); opt.step(); opt.zero_grad()
    return inp.inputs_embeds.shape[1]
S = step()
t = time.perf_counter(); n = 3
for _ in range(n): step()
print(json.dumps({"reduce": reduce, "rate": rate, "seq": S, "step_s": (time.perf_counter() - t) / n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    a = ap.parse_args()
    print(f"prefix layout, 30 s clip, 2250 music tokens, width {a.width}, {a.layers} layers")
    print(f"{'condition':28s} {'seq len':>8s} {'step s':>8s} {'peak RSS MB':>12s}")
    for reduce, rate, label in (("none", 0, "full 3000 tokens"), ("frame_mean", 0, "per-frame mean (60)"),
                                ("frame_first", 0, "per-frame CLS (60)"), ("rate", 4.0, "4 tokens/s (120)"),
                                ("rate", 1.0, "1 token/s (30)")):
        out = subprocess.run([sys.executable, "-c", CHILD, str(a.width), str(a.layers), reduce, str(rate or 2.0)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:28s} {r['seq']:>8d} {r['step_s']:>8.2f} {r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
