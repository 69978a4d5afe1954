"""Benchmark of the ``rvq_mel`` codec: fit time, encode/decode speed, reconstruction quality.

Fits on ``--clips`` x ``--seconds`` of synthetic music (chords changing every bar, a plucked melody on
eighth notes, kick + click on every beat, faint noise; random tempo and key per clip), then measures on
held-out clips of the same kind:

- fit time (residual k-means on up to ``fit_max_frames`` log-mel frames);
- encode and decode speed as x realtime (seconds of audio per second of wall time), batch ``--batch``;
- log-mel distance (mean |log-mel difference|, natural-log units) of ``decode_mel`` with 1..K codebooks,
  of Griffin-Lim audio re-analysed, and the Griffin-Lim floor (Griffin-Lim of the *unquantised* mel).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_rvq_mel.py [--clips 200 --seconds 8 --wav-dir DIR]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Iterator

import librosa
import numpy as np
import torch

from vidmusic_core.codecs.rvq_mel import RVQMelCodec, log_mel_distance
from vidmusic_core.types import MusicTokens

SR = 16000
MAJOR = (0, 4, 7)
MINOR = (0, 3, 7)


def synth_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """One clip of rule-based music at 16 kHz, float32 ``[L]``."""
    n = int(SR * seconds)
    t = np.arange(n) / SR
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 160)
    root = 48 + int(rng.integers(12))  # MIDI note of the key
    prog = [(0, MAJOR), (5, MAJOR), (7, MAJOR), (9, MINOR)] if rng.random() < 0.5 else \
        [(0, MINOR), (8, MAJOR), (3, MAJOR), (10, MAJOR)]

    def hz(m: float) -> float:
        return 440.0 * 2 ** ((m - 69) / 12)

    bar = 4 * beat
    for b in range(int(np.ceil(seconds / bar))):  # pads: one chord per bar
        s, e = int(b * bar * SR), min(n, int((b + 1) * bar * SR))
        deg, quality = prog[b % len(prog)]
        for iv in quality:
            f = hz(root + deg + iv)
            y[s:e] += 0.05 * np.sin(2 * np.pi * f * t[s:e]) * np.minimum(1, (t[s:e] - t[s]) / 0.05)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    for k in range(int(seconds / (beat / 2))):  # melody: plucked eighth notes
        if rng.random() < 0.3:
            continue
        s = int(k * beat / 2 * SR)
        L = min(n - s, int(beat / 2 * SR))
        tt = np.arange(L) / SR
        f = hz(root + 12 + scale[rng.integers(len(scale))])
        y[s:s + L] += 0.12 * np.exp(-tt / 0.12) * (np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt))
    for k in range(int(seconds / beat)):  # drums: kick (pitch drop) + click on every beat
        s = int(k * beat * SR)
        L = min(n - s, int(0.12 * SR))
        tt = np.arange(L) / SR
        y[s:s + L] += 0.5 * np.exp(-tt / 0.04) * np.sin(2 * np.pi * (60 + 80 * np.exp(-tt / 0.02)) * tt)
        C = min(L, int(0.02 * SR))
        y[s:s + C] += 0.3 * np.exp(-tt[:C] / 0.003) * rng.standard_normal(C)
    y += 1e-3 * rng.standard_normal(n)
    return (y / max(1.0, np.abs(y).max())).astype(np.float32)


def clips(n: int, seconds: float, seed: int) -> Iterator[torch.Tensor]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield torch.from_numpy(synth_clip(rng, seconds)).unsqueeze(0)  # [1, L]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--test-clips", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-mels", type=int, default=None, help="override codec.n_mels (default: the codec's)")
    ap.add_argument("--wav-dir", type=Path, default=None, help="write an original/decoded wav pair here")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    codec = RVQMelCodec(RVQMelCodec.Config() if args.n_mels is None else RVQMelCodec.Config(n_mels=args.n_mels))
    cfg = codec.cfg
    t0 = time.perf_counter()
    train = list(clips(args.clips, args.seconds, seed=0))
    t_synth = time.perf_counter() - t0
    cpu0 = time.process_time()
    codec.fit(train)
    cpu_fit = time.process_time() - cpu0
    info = codec.fit_info
    print(f"fit: {args.clips} x {args.seconds:g} s = {info['seconds_seen']:.0f} s of audio, {info['frames_used']} "
          f"frames of {cfg.n_mels} mels, K={cfg.n_codebooks} x V={cfg.cardinality}, {cfg.kmeans_iters} iters: "
          f"{info['fit_seconds']:.1f} s wall, {cpu_fit:.1f} s CPU  (synthesis {t_synth:.1f} s, not counted)")
    print("  training residual MSE per codebook: " + ", ".join(f"{m:.4f}" for m in info["residual_mse"]))

    test = torch.stack(list(clips(args.test_clips, args.seconds, seed=1)))  # [N, 1, L]
    secs = test.shape[0] * test.shape[-1] / SR

    codec.decode(codec.encode(test[:1]))  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    codes = torch.cat([codec.encode(test[i:i + args.batch]).codes for i in range(0, len(test), args.batch)])
    t_enc, c_enc = time.perf_counter() - t0, time.process_time() - c0
    tokens = MusicTokens(codes, frame_rate=codec.frame_rate)
    t0 = time.perf_counter()
    codec.decode_mel(tokens)
    t_dmel = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    audio_hat = torch.cat([codec.decode(MusicTokens(codes[i:i + args.batch]))
                           for i in range(0, len(codes), args.batch)])
    t_dec, c_dec = time.perf_counter() - t0, time.process_time() - c0
    print(f"speed on {secs:.0f} s of held-out audio (batch {args.batch}), x realtime by wall (by CPU) time: "
          f"encode {secs / t_enc:.0f}x ({secs / c_enc:.0f}x), decode_mel {secs / t_dmel:.0f}x, "
          f"decode (Griffin-Lim {cfg.griffin_lim_iters} iters) {secs / t_dec:.1f}x ({secs / c_dec:.1f}x)")

    ref = codec.log_mel(test)  # [N, M, T]
    baseline = log_mel_distance(ref.mean(-1, keepdim=True).expand_as(ref), ref)
    print(f"log-mel distance on held-out clips (mean |diff|, nats; per-clip mean frame: {baseline:.3f}):")
    for k in range(1, cfg.n_codebooks + 1):
        print(f"  decode_mel K={k}: {log_mel_distance(codec.decode_mel(tokens, n_codebooks=k), ref):.3f}")
    gl = log_mel_distance(codec.log_mel(audio_hat), ref)
    floor_audio = codec.mel_to_audio(ref[: args.batch])  # Griffin-Lim of the unquantised mel
    floor = log_mel_distance(codec.log_mel(floor_audio), ref[: args.batch])
    print(f"  Griffin-Lim audio re-analysed (K={cfg.n_codebooks}): {gl:.3f}   "
          f"Griffin-Lim floor (unquantised mel): {floor:.3f}")

    try:
        import mir_eval  # noqa: F401
    except ImportError:
        mir_eval = None  # type: ignore[assignment]
    if mir_eval is not None:
        f_scores = []
        for x, y in zip(test, audio_hat):
            ref_on = librosa.onset.onset_detect(y=x[0].numpy(), sr=SR, units="time", hop_length=160, wait=5)
            est_on = librosa.onset.onset_detect(y=y[0].numpy(), sr=SR, units="time", hop_length=160, wait=5)
            f_scores.append(mir_eval.onset.f_measure(ref_on, est_on, window=0.05)[0])
        print(f"  onset F1 (decoded vs original onsets, +-50 ms): {np.mean(f_scores):.3f}")

    def chroma_corr(a: torch.Tensor, b: torch.Tensor) -> float:
        """Correlation of the clip-mean chroma (the pitch-class profile a key estimate reads)."""
        ca = librosa.feature.chroma_stft(y=a.numpy(), sr=SR, n_fft=2048, hop_length=cfg.hop).mean(-1)
        cb = librosa.feature.chroma_stft(y=b.numpy(), sr=SR, n_fft=2048, hop_length=cfg.hop).mean(-1)
        return float(np.corrcoef(ca, cb)[0, 1])

    corr = np.mean([chroma_corr(x[0], y[0]) for x, y in zip(test, audio_hat)])
    corr_floor = np.mean([chroma_corr(x[0], y[0]) for x, y in zip(test, floor_audio)])
    print(f"  pitch: clip-mean chroma correlation with the original: decoded {corr:.2f}, "
          f"Griffin-Lim floor {corr_floor:.2f}")

    if args.wav_dir is not None:
        import soundfile as sf

        args.wav_dir.mkdir(parents=True, exist_ok=True)
        sf.write(args.wav_dir / "rvq_mel_original.wav", test[0, 0].numpy(), SR)
        sf.write(args.wav_dir / "rvq_mel_decoded.wav", audio_hat[0, 0].numpy(), SR)
        print(f"wrote {args.wav_dir}/rvq_mel_original.wav and rvq_mel_decoded.wav")


if __name__ == "__main__":
    main()
