"""How well the default trackers agree with the established judges (``vidmusic[judges]``).

    python benchmarks/bench_judges_agreement.py [--n 12] [--seconds 8] [--beatnet]

On toy clips (generated here, with ground truth) and on "real-style" versions of them (the music cropped
at a random offset, smeared and mixed with noise at 10 dB SNR; the video panned, noisy and drifting in
brightness), it runs the default trackers (librosa beats/downbeats, Krumhansl key, motion cuts) and the
judges (madmom beats/downbeats/key, TransNetV2 cuts; BeatNet with ``--beatnet``) on the same inputs and
prints, per set: beat and downbeat F1 (±70 ms) between default and judge and of each against the
ground truth, the bar position each tracker puts the downbeat on (0 = the label's; toy music does not
mark the bar audibly, see docs/metrics.md), key agreement, and cut F1 (±0.1 s). ``docs/metrics.md``
records one run of it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def real_style(root: Path, out: Path, seed: int) -> None:
    """Degraded copies of the toy clips in ``root`` into ``out`` (ground truth shifted to match)."""
    import av
    import soundfile as sf
    from scipy.signal import fftconvolve

    from vidmusic_core.video import write_video

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for meta_path in sorted(root.glob("toy_*.json")):
        meta = json.loads(meta_path.read_text())
        y, sr = sf.read(root / meta["files"]["wav"], dtype="float32")
        crop = float(rng.uniform(0.3, 1.3))
        y = y[int(crop * sr):]
        tail = np.exp(-np.arange(int(0.3 * sr)) / (0.08 * sr)) * rng.standard_normal(int(0.3 * sr)) * 0.05
        tail[0] = 1.0
        y = fftconvolve(y, tail)[: len(y)]  # a short room
        noise = rng.standard_normal(len(y)).astype(np.float32)
        y = y + noise * np.sqrt(np.mean(y ** 2) / 10.0)  # 10 dB SNR
        sf.write(out / f"{meta['name']}.wav", (y / (np.abs(y).max() + 1e-9) * 0.9).astype(np.float32), sr)
        with av.open(str(root / meta["files"]["mp4"])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = meta["video"]["fps"]
        first = int(round(crop * fps))
        v = np.stack(frames[first:]).astype(np.float32)  # [T, H, W, 3]
        t = np.arange(len(v))[:, None, None, None]
        v = np.stack([np.roll(f, int(k), axis=1) for f, k in zip(v, np.arange(len(v)) * 0.5)])  # slow pan
        v = v * (1.0 + 0.2 * np.sin(2 * np.pi * t / (4 * fps))) + rng.normal(0, 8, v.shape)  # drift + noise
        write_video(out / f"{meta['name']}.mp4", np.clip(v, 0, 255).astype(np.uint8), fps)
        shift = first / fps
        for key in ("beat_times", "downbeat_times", "cut_times"):
            meta[key] = [x - shift for x in meta[key] if x - shift > 0]
        meta["files"] = {"wav": f"{meta['name']}.wav", "mp4": f"{meta['name']}.mp4"}
        (out / meta_path.name).write_text(json.dumps(meta))


def f1(ref: np.ndarray, est: np.ndarray, window: float) -> float:
    from vidmusic_core.metrics.rhythm import f_measure

    if not len(ref) and not len(est):
        return 1.0
    if not len(ref):
        return 0.0
    return f_measure(np.asarray(ref), np.asarray(est), window)[2]


def bar_offset(gt_beats: np.ndarray, gt_downbeats: np.ndarray, est_downbeats: np.ndarray) -> int | None:
    """Beats (0-3) by which the estimated bar line sits after the labelled one: the most common bar position of
    the estimated downbeats that fall within 70 ms of a labelled beat (None: none does)."""
    if not len(gt_downbeats) or not len(gt_beats):
        return None
    first = int(np.argmin(np.abs(gt_beats - gt_downbeats[0])))
    idx = [int(np.argmin(np.abs(gt_beats - d))) for d in est_downbeats if np.abs(gt_beats - d).min() < 0.07]
    return int(np.bincount([(i - first) % 4 for i in idx], minlength=4).argmax()) if idx else None


def score_set(root: Path, beatnet: bool) -> dict[str, float]:
    import soundfile as sf

    from vidmusic_core.encoders.motion import video_cuts
    from vidmusic_core.metrics import parse_key
    from vidmusic_core.metrics.control import estimate_key
    from vidmusic_core.metrics.judges import madmom_key, track_beats, transnet_cuts

    import librosa

    rows: dict[str, list[float]] = {}
    add = lambda k, v: rows.setdefault(k, []).append(float(v))  # noqa: E731
    seconds: dict[str, float] = {}
    for meta_path in sorted(root.glob("toy_*.json")):
        meta = json.loads(meta_path.read_text())
        y, sr = sf.read(root / meta["files"]["wav"], dtype="float32")
        gt_b, gt_d = np.asarray(meta["beat_times"]), np.asarray(meta["downbeat_times"])
        gt_key = parse_key(meta["key"])
        t = time.perf_counter()
        lb, ld = track_beats(y, sr, "librosa")
        seconds["librosa"] = seconds.get("librosa", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        mb, md = track_beats(y, sr, "madmom")
        seconds["madmom"] = seconds.get("madmom", 0.0) + time.perf_counter() - t
        add("beat F1 librosa vs madmom", f1(mb, lb, 0.07))
        add("beat F1 librosa vs truth", f1(gt_b, lb, 0.07))
        add("beat F1 madmom vs truth", f1(gt_b, mb, 0.07))
        add("downbeat F1 librosa vs madmom", f1(md, ld, 0.07))
        add("downbeat F1 librosa vs truth", f1(gt_d, ld, 0.07))
        add("downbeat F1 madmom vs truth", f1(gt_d, md, 0.07))
        for name, est in (("librosa", ld), ("madmom", md)):  # the bar position it puts the downbeat on
            off = bar_offset(gt_b, gt_d, est)
            add(f"downbeats {name}: on the bar line (share of clips)", off == 0)
            add(f"downbeats {name}: on the half bar, 2 beats off", off == 2)
            add(f"downbeats {name}: 1 or 3 beats off", off in (1, 3))
        if beatnet:
            bb, bd = track_beats(y, sr, "beatnet")
            add("beat F1 beatnet vs madmom", f1(mb, bb, 0.07))
            add("beat F1 beatnet vs truth", f1(gt_b, bb, 0.07))
            add("downbeat F1 beatnet vs truth", f1(gt_d, bd, 0.07))
        y22 = librosa.resample(y, orig_sr=sr, target_sr=22050)
        ks = estimate_key(librosa.feature.chroma_cqt(y=y22, sr=22050).sum(axis=1))
        km = madmom_key(y, sr)
        add("key krumhansl == madmom", ks == km)
        add("key krumhansl == truth", ks == gt_key)
        add("key madmom == truth", km == gt_key)
        video = root / meta["files"]["mp4"]
        gt_c = np.asarray(meta["cut_times"])
        mc, tc = video_cuts(video), transnet_cuts(video)
        add("cut F1 motion vs transnetv2", f1(tc, mc, 0.1))
        add("cut F1 motion vs truth", f1(gt_c, mc, 0.1))
        add("cut F1 transnetv2 vs truth", f1(gt_c, tc, 0.1))
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out.update({f"seconds {k} (all clips)": v for k, v in seconds.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beatnet", action="store_true", help="also BeatNet (pip install --no-deps BeatNet)")
    args = ap.parse_args()
    from vidmusic_core.data.toy import make_toy_dataset

    with tempfile.TemporaryDirectory() as d:
        toy, real = Path(d) / "toy", Path(d) / "real"
        make_toy_dataset(toy, n=args.n, seconds=args.seconds, seed=args.seed, progress=False)
        real_style(toy, real, args.seed)
        results = {"toy": score_set(toy, args.beatnet), "real-style": score_set(real, args.beatnet)}
    print(f"{args.n} clips of {args.seconds:g} s, seed {args.seed}\n")
    print("| measure | toy | real-style |\n|---|---|---|")
    for key in results["toy"]:
        print(f"| {key} | {results['toy'][key]:.3f} | {results['real-style'][key]:.3f} |")


if __name__ == "__main__":
    main()
