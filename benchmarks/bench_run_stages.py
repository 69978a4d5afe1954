"""Wall time per stage of `vidmusic run` (the README's main command by default).

    python benchmarks/bench_run_stages.py [--preset smoke] [-- extra key=value overrides]

Runs in a fresh temporary run root (nothing reused) and prints the seconds of every stage and the
total, plus the metrics table with the shuffled-video control.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from vidmusic_core import api


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--encoder", default="lstv")
    ap.add_argument("--backbone", default="inspire")
    ap.add_argument("--layout", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cfg = api.compose(presets=args.preset, sugar={"encoder": args.encoder, "backbone": args.backbone,
                                                       "layout": args.layout},
                          overrides=[f"run.root={root}", *args.overrides])
        t = time.perf_counter()
        rep = api.run(cfg, progress=False)
        total = time.perf_counter() - t
        print(json.dumps({"stages_s": rep.seconds, "total_s": round(total, 1)}, indent=1))
        for key, v in sorted(rep.results.get("metrics", {}).items()):
            print(f"{key:22s} conditioned {v.get('conditioned', float('nan')):.3f}  "
                  f"shuffled {v.get('shuffled', float('nan')):.3f}")


if __name__ == "__main__":
    main()
