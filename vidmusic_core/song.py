"""What a visualizer knows about a song: one streaming pass over the audio (:func:`analyse_song`).

The audio is read in blocks (soundfile + a soxr resampling stream, mono, :data:`ANALYSIS_RATE`), and each
block becomes a few numbers per STFT frame (hop :data:`HOP`, about 43 frames/s): spectral flux (the onset
envelope), RMS, spectral centroid, 13 MFCCs and the 12-bin chroma. Only those frame features are kept
(about 30 floats per frame: 0.3 MB per minute of music), never the song's samples, so the analysis of an
hour-long song is as small as its features. From them, for the whole song:

- tempo: ``librosa.feature.tempo`` (its mean tempogram summed in blocks); beats: ``librosa.beat.beat_track``
  at that tempo on the onset envelope; onsets: ``librosa.onset.onset_detect``;
- downbeats (4/4 assumed): every fourth beat, at the phase whose beats have the strongest mean onset;
- key: Krumhansl–Schmuckler on the summed chroma (:func:`vidmusic_core.metrics.control.estimate_key`);
- sections: Foote novelty of the z-scored MFCCs 1–12 at 8 Hz with a 4 s checkerboard kernel (the
  ``section_align`` metric's detector, computed along the diagonal only so it stays linear in length);
- per section: ``density`` 1–3 (harmonic change per beat, relative to the song) and ``brightness`` 0–1
  (mean spectral centroid, relative to 4 kHz).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import VidmusicError

ANALYSIS_RATE = 22050
HOP = 512
N_FFT = 2048
N_MELS = 64
BLOCK_SECONDS = 10.0
SECTION_RATE = 8.0  # novelty frames per second
SECTION_KERNEL = 4.0  # s
SECTION_THRESHOLD = 0.05
FLOOR_DB = 80.0
FULL_SCALE = (N_FFT / 4) ** 2  # STFT power of a full-scale sine (hann window)
TEMPO_BLOCK = 2048  # onset frames (48 s) per tempogram block
MIN_SECTION = 2.0  # s: boundaries closer to the song's ends (or to each other) are dropped


class SongError(VidmusicError):
    """A song that cannot be analysed (missing, unreadable, silent, too short)."""


@dataclass
class Section:
    """One section of the song: ``[start, end)`` s, ``density`` 1–3, ``brightness`` 0–1, ``energy`` 0–1."""

    start: float
    end: float
    density: int = 2
    brightness: float = 0.5
    energy: float = 0.5


@dataclass
class SongAnalysis:
    """The analysis of the song at ``path``. Curves ``onset_env [F]`` and ``rms [F]`` (each scaled to [0, 1]
    by its 95th percentile) are sampled at ``frame_rate`` frames per second, frame ``i`` at ``i / frame_rate`` s."""

    path: Path
    duration: float
    tempo: float
    beats: np.ndarray
    downbeats: np.ndarray
    onsets: np.ndarray
    key: tuple[int, str]
    sections: list[Section]
    frame_rate: float
    onset_env: np.ndarray
    rms: np.ndarray
    meta: dict = field(default_factory=dict)

    def section_index(self, times: np.ndarray) -> np.ndarray:
        """Index of the section each time in ``times [T]`` falls in: int ``[T]``."""
        starts = np.array([s.start for s in self.sections])
        return np.clip(np.searchsorted(starts, np.asarray(times), side="right") - 1, 0, len(self.sections) - 1)

    def curve_at(self, curve: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``curve [F]`` (``onset_env`` or ``rms``) linearly interpolated at ``times [T]`` s."""
        return np.interp(np.asarray(times, dtype=np.float64) * self.frame_rate, np.arange(len(curve)), curve)

    def audio(self, start: float, end: float, sample_rate: int) -> np.ndarray:
        """Mono float32 samples ``[L]`` of the song from ``start`` to ``end`` s at ``sample_rate`` (read from the
        file, only that span)."""
        import soundfile as sf
        import soxr

        with sf.SoundFile(str(self.path)) as f:
            a, b = int(round(start * f.samplerate)), int(round(end * f.samplerate))
            f.seek(min(max(a, 0), f.frames))
            x = f.read(max(0, b - a), dtype="float32", always_2d=True).mean(axis=1)
            sr = f.samplerate
        if sr != sample_rate and len(x):
            x = soxr.resample(x, sr, sample_rate, quality="HQ").astype(np.float32)
        return x


def _blocks(path: Path, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` resampled to ``sample_rate`` (soxr stream: no seams between blocks)."""
    import soundfile as sf
    import soxr

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise SongError(f"cannot read the song {path}: {exc}; give a wav/flac/ogg/mp3 file (or a MIDI file)") from exc
    with f:
        block = max(1, int(block_seconds * f.samplerate))
        stream = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ") \
            if f.samplerate != sample_rate else None
        while True:
            x = f.read(block, dtype="float32", always_2d=True).mean(axis=1)  # [<= block]
            last = len(x) < block
            if not np.isfinite(x).all():
                raise SongError(f"{path} contains NaN or infinite samples")
            y = stream.resample_chunk(x, last=last) if stream is not None else x
            if len(y):
                yield np.asarray(y, dtype=np.float32)
            if last:
                return


def frame_features(path: Path, sample_rate: int = ANALYSIS_RATE,
                   block_seconds: float = BLOCK_SECONDS) -> tuple[dict[str, np.ndarray], float]:
    """Per-frame features of the song, streamed: ``{"flux" [F], "rms" [F], "centroid" [F], "mfcc" [13, F],
    "chroma" [12, F]}`` (frame ``i`` centred at ``i·HOP`` samples, as librosa's ``center=True``) and the
    duration in seconds."""
    import librosa
    import scipy.fft

    mel_fb = librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS)  # [M, 1 + N_FFT/2]
    chroma_fb = librosa.filters.chroma(sr=sample_rate, n_fft=N_FFT)  # [12, 1 + N_FFT/2]
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=N_FFT)
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("flux", "rms", "centroid", "mfcc", "chroma")}
    buf = np.zeros(N_FFT // 2, np.float32)  # centre padding before the first sample
    prev_mel: np.ndarray | None = None
    n_samples = 0

    def consume(buf: np.ndarray) -> np.ndarray:
        nonlocal prev_mel
        n = (len(buf) - N_FFT) // HOP + 1 if len(buf) >= N_FFT else 0
        if n <= 0:
            return buf
        frames = np.lib.stride_tricks.sliding_window_view(buf[:(n - 1) * HOP + N_FFT], N_FFT)[::HOP]  # [n, N_FFT]
        power = (np.abs(scipy.fft.rfft(frames * window, axis=1)) ** 2).T  # [1 + N_FFT/2, n]
        # dB re a full-scale sine, floored at -FLOOR_DB (librosa's top_db, fixed so it streams)
        mel_db = 10 * np.log10(np.maximum(mel_fb @ power / FULL_SCALE, 10 ** (-FLOOR_DB / 10)))  # [M, n]
        prev = mel_db[:, :1] if prev_mel is None else prev_mel
        out["flux"].append(np.maximum(0.0, np.diff(np.concatenate([prev, mel_db], axis=1), axis=1)).mean(axis=0))
        prev_mel = mel_db[:, -1:]
        out["rms"].append(np.sqrt(power.sum(axis=0) * 2) / N_FFT)
        out["centroid"].append((freqs @ power) / np.maximum(power.sum(axis=0), 1e-12))
        out["mfcc"].append(scipy.fft.dct(mel_db, axis=0, type=2, norm="ortho")[:13])
        chroma = chroma_fb @ power
        out["chroma"].append(chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-12))
        return buf[n * HOP:]

    for block in _blocks(path, sample_rate, block_seconds):
        n_samples += len(block)
        buf = consume(np.concatenate([buf, block]))
    consume(np.concatenate([buf, np.zeros(N_FFT // 2, np.float32)]))  # centre padding after the last
    if not out["flux"]:
        raise SongError(f"{path} is too short to analyse ({n_samples} samples)")
    feats = {k: np.concatenate(v, axis=-1).astype(np.float32) for k, v in out.items()}
    return feats, n_samples / sample_rate


def _norm(x: np.ndarray) -> np.ndarray:
    top = float(np.percentile(x, 95)) if len(x) else 0.0
    return np.clip(x / top, 0.0, 1.0) if top > 0 else np.zeros_like(x)


def banded_novelty(features: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty ``[T]`` of ``features [D, T]`` (as :func:`~vidmusic_core.metrics.control.foote_novelty`)
    from the self-similarity near the diagonal only: O(T·half²) time, O(D·T) memory."""
    from .metrics.control import checkerboard

    f = features / np.maximum(np.linalg.norm(features, axis=0, keepdims=True), 1e-9)
    T = f.shape[1]
    kernel = checkerboard(half)
    nov = np.zeros(T)
    for t in range(1, T):  # boundary between frames t-1 and t
        a, b = max(0, t - half), min(T, t + half)
        w = f[:, a:b]
        k = kernel[a - (t - half):b - (t - half), a - (t - half):b - (t - half)]
        mass = np.abs(k).sum()
        nov[t] = (k * (w.T @ w)).sum() / mass if mass > 0 else 0.0
    return np.maximum(nov, 0.0)


def _sections(feats: dict[str, np.ndarray], rate: float, duration: float, beats: np.ndarray) -> list[Section]:
    import librosa

    mfcc = feats["mfcc"][1:]  # [12, F]
    step = max(1, int(round(rate / SECTION_RATE)))
    n = mfcc.shape[1] // step
    starts = [0.0]
    if n >= 3:
        coarse = mfcc[:, : n * step].reshape(12, n, step).mean(axis=2)  # [12, n]
        coarse = (coarse - coarse.mean(axis=1, keepdims=True)) / (coarse.std(axis=1, keepdims=True) + 1e-6)
        r = rate / step
        half = max(1, int(round(SECTION_KERNEL * r / 2)))
        nov = banded_novelty(coarse, half)
        peaks = librosa.util.peak_pick(nov, pre_max=half, post_max=half + 1, pre_avg=half, post_avg=half + 1,
                                       delta=SECTION_THRESHOLD, wait=half)
        for t in sorted(peaks / r):
            if len(beats):  # a cut lands on the nearest beat
                t = float(beats[np.abs(beats - t).argmin()]) if np.abs(beats - t).min() < 0.3 else float(t)
            if MIN_SECTION <= t <= duration - MIN_SECTION and t - starts[-1] >= MIN_SECTION:
                starts.append(float(t))
    edges = starts + [duration]
    sections = [Section(a, b) for a, b in zip(edges[:-1], edges[1:])]
    chroma, centroid, rms = feats["chroma"], feats["centroid"], feats["rms"]
    change = np.r_[0.0, np.abs(np.diff(chroma, axis=1)).sum(axis=0)]  # harmonic change per frame
    period = 60.0 / 120.0 if len(beats) < 2 else float(np.median(np.diff(beats)))
    flux = []
    for s in sections:
        a, b = int(s.start * rate), max(int(s.start * rate) + 1, int(s.end * rate))
        flux.append(change[a:b].mean() * rate * period)  # harmonic change per beat
        s.brightness = float(np.clip(np.mean(centroid[a:b]) / 4000.0, 0.0, 1.0))
        s.energy = float(np.mean(rms[a:b]))
    flux_arr = np.asarray(flux)
    mid = float(np.median(flux_arr))
    for s, x in zip(sections, flux_arr):  # relative to the song: >25 % above the median busy, below sparse
        s.density = 3 if x > 1.25 * mid else 1 if x < 0.8 * mid else 2
    top = max(s.energy for s in sections) or 1.0
    for s in sections:
        s.energy = s.energy / top
    return sections


def song_tempo(env: np.ndarray, sample_rate: int, block: int = TEMPO_BLOCK) -> float:
    """``librosa.feature.tempo`` of the onset envelope ``env [F]``, with the mean tempogram summed over blocks of
    ``block`` frames (librosa's whole tempogram is 384 floats per frame; this keeps one block of it)."""
    import librosa

    total, n = None, 0
    for a in range(0, len(env), block):
        tg = librosa.feature.tempogram(onset_envelope=env[a:a + block], sr=sample_rate, hop_length=HOP)  # [384, f]
        total = tg.sum(axis=1) if total is None else total + tg.sum(axis=1)
        n += tg.shape[1]
    assert total is not None
    return float(librosa.feature.tempo(tg=(total / max(n, 1))[:, None], sr=sample_rate, hop_length=HOP)[0])


def analyse_song(path: str | os.PathLike[str], sample_rate: int = ANALYSIS_RATE) -> SongAnalysis:
    """Analyse the audio file ``path`` (see the module doc). Raises :class:`SongError` for a missing, unreadable,
    silent or too short file."""
    import librosa

    from .metrics.control import estimate_key

    p = Path(path)
    if not p.is_file():
        raise SongError(f"song {p} does not exist")
    feats, duration = frame_features(p, sample_rate)
    if duration < 1.0:
        raise SongError(f"song {p} is {duration:.2f} s long; visualizing needs at least 1 s")
    if float(feats["rms"].max()) < 1e-5:
        raise SongError(f"song {p} is silent; nothing to visualize")
    rate = sample_rate / HOP
    shift = N_FFT // (2 * HOP)  # librosa.onset.onset_strength's centring: the flux peak lags the onset
    env = np.concatenate([np.zeros(shift, np.float32), feats["flux"]])[: len(feats["flux"])]
    tempo = song_tempo(env, sample_rate)
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sample_rate, hop_length=HOP, bpm=tempo, units="time")
    beats = np.asarray(beats, dtype=np.float64)
    onsets = np.asarray(librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate, hop_length=HOP,
                                                   units="time"), dtype=np.float64)
    if len(beats) >= 4:
        strength = np.interp(beats * rate, np.arange(len(env)), env)
        phase = int(np.argmax([strength[p::4].mean() for p in range(4)]))
        downbeats = beats[phase::4]
    else:
        downbeats = beats[:1]
    chroma_sum = feats["chroma"].sum(axis=1)
    try:
        key = estimate_key(chroma_sum)
    except VidmusicError:
        key = (0, "major")
    sections = _sections(feats, rate, duration, beats)
    return SongAnalysis(path=p, duration=float(duration), tempo=tempo, beats=beats,
                        downbeats=downbeats, onsets=onsets, key=(int(key[0]), str(key[1])), sections=sections,
                        frame_rate=rate, onset_env=_norm(env), rms=_norm(feats["rms"]),
                        meta={"sample_rate": sample_rate, "hop": HOP, "frames": int(len(env))})


__all__ = ["ANALYSIS_RATE", "Section", "SongAnalysis", "SongError", "analyse_song", "banded_novelty",
           "frame_features"]
