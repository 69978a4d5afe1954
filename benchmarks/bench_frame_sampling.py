"""Frame sampling speed and memory: 2 fps local + 32 global frames vs decoding every frame.

Generates a 60 s 1280x720 25 fps H.264 video (x264 preset superfast: B-frames, CABAC, 10 s GOPs) in a
temporary folder, then times, each in a fresh child process (so peak RSS is per method):

  decode+rgb  decode every frame and convert it to an RGB array (a naive "read all frames" loader,
              without keeping them)
  decode      decode every frame, no conversion (the floor for any full pass over an H.264 stream)
  sampler     FrameSampler(fps=2, n_global=32, size=224) over the whole video
  window      the same for a 10 s window at 40-50 s (fresh sampler: the 32 global frames are sampled too)
  window+gc   the same window when the global frames are already cached (sliding windows of one video)

Prints wall and CPU seconds (best of ``--repeats``; CPU time sums the decoder threads and is the steadier
figure on a shared machine), frames decoded, peak RSS (resource.getrusage) and ratios. Not a test.
Usage: python benchmarks/bench_frame_sampling.py [--seconds 60] [--repeats 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def make_video(path: Path, seconds: int, fps: int = 25, w: int = 1280, h: int = 720) -> float:
    t0 = time.perf_counter()
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((xx // 80 + yy // 80) % 2) * 90).astype(np.uint8)
    ramp = (xx * 255 // w).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "superfast"}
        for i in range(seconds * fps):
            a = np.empty((h, w, 3), np.uint8)
            a[..., 0] = np.roll(checker, 4 * i, axis=1)
            a[..., 1] = np.roll(ramp, 8 * i, axis=1)
            a[..., 2] = (i * 3) % 256
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode(None))
    return time.perf_counter() - t0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


def child(method: str, path: str, repeats: int) -> dict:
    """Run one method ``repeats`` times in this (fresh) process; best wall and CPU seconds, peak RSS."""
    from vidmusic_core.types import FrameSpec
    from vidmusic_core.video import FrameSampler

    spec = FrameSpec(fps=2.0, n_global=32, size=224)
    best = {"seconds": float("inf"), "cpu_seconds": float("inf")}
    for _ in range(repeats):
        n = kept = 0
        sampler = FrameSampler(spec)
        if method == "window+gc":
            sampler.sample(path, 0.0, 0.5)  # fills the global-frame cache
        t0, c0 = time.perf_counter(), _cpu()
        if method in ("decode+rgb", "decode"):
            with av.open(path) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"  # same decoder threading as the sampler
                for f in c.decode(s):
                    if method == "decode+rgb":
                        f.to_ndarray(format="rgb24")
                    n += 1
        else:
            out = sampler.sample(path) if method == "sampler" else sampler.sample(path, 40.0, 50.0)
            n, kept = out.n_decoded, len(out.local) + len(out.global_frames)
        best["seconds"] = min(best["seconds"], time.perf_counter() - t0)
        best["cpu_seconds"] = min(best["cpu_seconds"], _cpu() - c0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"method": method, **best, "decoded": n, "kept": kept, "peak_rss_mib": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--keep", type=Path, default=None, help="keep the video in DIR (reused by later runs)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method (best is reported)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / "bench_720p.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        made = "reused" if path.is_file() else f"generated in {make_video(path, args.seconds):.1f} s"
        print(f"video: {path}, {args.seconds} s 1280x720 25 fps h264, {path.stat().st_size / 1e6:.1f} MB, {made}")
        base = subprocess.run([sys.executable, "-c", "import resource, vidmusic_core.video, vidmusic_core.types;"
                               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                              capture_output=True, text=True, check=True)
        print(f"peak RSS of a process that only imports vidmusic_core.video: {float(base.stdout):.0f} MiB")
        res = {}
        for method in ("decode+rgb", "decode", "sampler", "window", "window+gc"):
            out = subprocess.run([sys.executable, __file__, "--child", method, str(path), "--repeats",
                                  str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            r = res[method] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{method:>11}: wall {r['seconds']:6.2f} s  CPU {r['cpu_seconds']:6.2f} s  decoded "
                  f"{r['decoded']:5d}  kept {r['kept']:4d}  peak RSS {r['peak_rss_mib']:5.0f} MiB")
        for key, label in (("seconds", "wall"), ("cpu_seconds", "CPU")):
            ratio = {m: res[m][key] / res["decode+rgb"][key] for m in res}
            print(f"{label:>4} ratio to decode+rgb: sampler {ratio['sampler']:.2f} (goal <= 0.5), decode-only "
                  f"{ratio['decode']:.2f}, window {ratio['window']:.2f}, window+gc {ratio['window+gc']:.2f}")
        print(f"all {args.seconds * 25} frames as RGB arrays would hold "
              f"{args.seconds * 25 * 1280 * 720 * 3 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
