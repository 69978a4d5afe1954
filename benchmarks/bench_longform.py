"""Peak memory and wall time of long-video generation: a 1-minute vs a 10-minute video (issue #10).

    python benchmarks/bench_longform.py [--preset smoke] [--minutes 1 10] [--model DIR]

Writes procedural test videos (96 px, 12 fps: a hue that changes every 8 s, a disc flashing on every beat),
then generates music for each in a **fresh subprocess** through the path `vidmusic generate` takes
(`api.generate_with_model`: windows of `generate.window_seconds` (default `data.clip_seconds`) with
`generate.overlap_seconds` of token prompt, frames sampled per window, audio decoded and written per window,
then muxed into the mp4). The model is the preset's (default `smoke`: LSTV + aligned + inspire, tiny) with
random weights and an `rvq_mel` codec fitted on a few seconds of tones, so the figures are about the
machinery, not the music. `--model` benchmarks a model directory instead (e.g. an imported VidMuse, through `vidmusic.load`).

Per length it prints the generation wall time, the child's peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss` at
exit) and its RSS after building the model, then the 10-min / 1-min ratios. Goals: RSS ratio <= 1.2 (memory
flat in video length) and a time ratio near the length ratio (linear).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_test_video(path: Path, seconds: float, fps: int = 12, size: int = 96, bpm: float = 120.0) -> Path:
    """Stream a procedural video to ``path`` frame by frame (memory does not grow with its length)."""
    import av

    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 6) ** 2
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(int(round(seconds * fps))):
            t = i / fps
            section = int(t // 8)
            rgb = np.array([(37 * section) % 256, (91 * section + 60) % 256, (151 * section + 120) % 256], np.uint8)
            frame = np.broadcast_to(rgb, (size, size, 3)).copy()
            if (t * bpm / 60.0) % 1.0 < 0.25:  # flash on the beat
                frame[disc] = 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(s.encode(None))
    return path


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One measurement: build the model, generate for one video, print a JSON line."""
    import torch

    from vidmusic_core import api

    torch.manual_seed(0)
    out = Path(args.out)
    if args.model:
        # load the model once so the RSS baseline includes it; then generate for real
        pipe = api.load_model(args.model, "cpu")
        base = _rss_mib()
        t = time.perf_counter()
        pipe.generate([args.video], out, seed=0, progress=False)
        window = float(pipe.settings().window_seconds)
    else:
        from vidmusic_core.model import build_codec, build_model
        from vidmusic_core.pipeline import sampling_from

        cfg = api.compose(presets=args.preset, overrides=args.overrides)
        codec = build_codec(cfg)
        if hasattr(codec, "fit"):  # rvq_mel: fit on 20 s of tones (the benchmark needs a codec, not music)
            sr = codec.sample_rate
            tt = np.arange(20 * sr) / sr
            tones = 0.3 * np.sin(2 * np.pi * (220 + 220 * (tt // 0.5 % 8)) * tt)
            codec.fit([torch.from_numpy(tones).float()[None]])
        model = build_model(cfg, codec, seed=0).eval()
        codec.eval()
        window = float(cfg.generate.window_seconds or cfg.data.clip_seconds)
        base = _rss_mib()
        t = time.perf_counter()
        api.generate_with_model(model, codec, [args.video], out, sampling=sampling_from(cfg), seed=0,
                                window_seconds=window, overlap_seconds=float(cfg.generate.overlap_seconds),
                                progress=False)
    wall = time.perf_counter() - t
    print(json.dumps({"wall_s": round(wall, 2), "rss_before_mib": round(base, 1), "peak_rss_mib": round(_peak_mib(), 1),
                      "window_s": window, "wav_bytes": (out / f"{Path(args.video).stem}.wav").stat().st_size}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", default=None, help="run-config preset(s) (default: smoke)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--model", default=None, help="a model directory (e.g. a vidmuse_full import) instead of a preset")
    ap.add_argument("--workdir", default=None, help="keep videos and outputs here (default: a temporary directory)")
    ap.add_argument("--child", nargs=2, metavar=("VIDEO", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="run-config key=value overrides")
    args = ap.parse_args()
    args.preset = args.preset or ["smoke"]
    if args.child:
        args.video, args.out = args.child
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for minutes in args.minutes:
            video = work / f"video_{minutes:g}min.mp4"
            if not video.is_file():
                t = time.perf_counter()
                write_test_video(video, minutes * 60)
                print(f"wrote {video.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            cmd = [sys.executable, __file__, "--child", str(video), str(work / f"out_{minutes:g}min")]
            cmd += [f"--preset={p}" for p in args.preset]
            if args.model:
                cmd += ["--model", args.model]
            cmd += list(args.overrides)
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                sys.exit(f"child for {minutes:g} min failed:\n{res.stderr[-3000:]}")
            rows.append({"minutes": minutes, **json.loads(res.stdout.strip().splitlines()[-1])})

    what = f"model {args.model}" if args.model else f"preset {'+'.join(args.preset)}"
    print(f"\nlong-form generation, {what}, window {rows[0]['window_s']:g} s, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, fresh process per length\n")
    print("| video | generate wall s | peak RSS MiB | RSS after model build MiB | wav MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
              f"{r['wav_bytes'] / 1e6:.1f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        length = b["minutes"] / a["minutes"]
        print(f"\n{b['minutes']:g} min / {a['minutes']:g} min: time x{b['wall_s'] / a['wall_s']:.2f} "
              f"(length x{length:g}), peak RSS x{b['peak_rss_mib'] / a['peak_rss_mib']:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
