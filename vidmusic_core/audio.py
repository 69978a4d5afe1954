"""Audio I/O: load any file soundfile or PyAV reads (wav, flac, mp3, the audio track of an mp4) as float32
``[C, L]`` at a requested sample rate (resampled with soxr), write wav/flac atomically, check the content."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
import soxr

from .checkpoint import atomic_path
from .errors import VidmusicError

PathLike = str | os.PathLike[str]


class AudioError(VidmusicError):
    """An audio file or array that cannot be used; the message names the file, the problem and what to do."""


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio file does not exist."""


class NoAudioStreamError(AudioError):
    """The file has no audio stream (e.g. a video without sound)."""


class AudioDecodeError(AudioError):
    """Neither soundfile nor PyAV can decode the file (corrupt, truncated, unknown format, empty)."""


class SilentAudioError(AudioError):
    """Every sample is (almost) zero: ``max |x| < 1e-6``."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


SILENCE = 1e-6


@dataclass(frozen=True)
class AudioInfo:
    """``sample_rate`` Hz, ``channels``, ``duration`` seconds (from the header) of an audio file or track."""

    path: Path
    sample_rate: int
    channels: int
    duration: float


def _exists(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AudioNotFoundError(f"audio {p} does not exist (check the path; relative paths start at {Path.cwd()})")
    return p


def _soundfile_info(p: Path) -> Any | None:
    """soundfile's header info, or None when libsndfile cannot read the format (then PyAV tries)."""
    try:
        return sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None


def _audio_stream(c: Any, p: Path) -> Any:
    if not c.streams.audio:
        what = "a video without sound" if c.streams.video else "no stream"
        raise NoAudioStreamError(f"{p} has no audio stream ({what}); give a file with an audio track or a "
                                 "separate wav/flac/mp3")
    return c.streams.audio[0]


def _open_av(p: Path) -> Any:
    try:
        return av.open(str(p))
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"cannot decode audio {p}: {exc}; the file is corrupt, truncated or not "
                               "audio (readable: wav, flac, ogg, mp3, and audio tracks of mp4/mkv/webm)") from exc


def audio_info(path: PathLike) -> AudioInfo:
    """Sample rate, channel count and duration of an audio file or of a video's first audio track."""
    p = _exists(path)
    info = _soundfile_info(p)
    if info is not None:
        return AudioInfo(p, int(info.samplerate), int(info.channels), float(info.frames) / info.samplerate)
    with _open_av(p) as c:
        s = _audio_stream(c, p)
        if s.duration:
            dur = float(s.duration * s.time_base)
        elif c.duration:
            dur = c.duration / av.time_base
        else:
            dur = 0.0
        return AudioInfo(p, int(s.rate), int(s.channels), dur)


def audio_duration(path: PathLike) -> float:
    """Duration in seconds of an audio file or a video's audio track (from the header)."""
    return audio_info(path).duration


def _decode(p: Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 ``[C, L]`` at its own sample rate."""
    if _soundfile_info(p) is not None:
        try:
            x, sr = sf.read(str(p), dtype="float32", always_2d=True)  # [L, C]
            return np.ascontiguousarray(x.T), int(sr)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioDecodeError(f"cannot decode audio {p}: {exc}; the file is corrupt or truncated") from exc
    with _open_av(p) as c:
        s = _audio_stream(c, p)
        # format conversion only (to planar float); the sample rate is changed by soxr afterwards
        resampler = av.AudioResampler(format="fltp", layout=s.layout.name, rate=s.rate)
        chunks = []
        try:
            for frame in c.decode(s):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as exc:
            raise AudioDecodeError(f"decoding the audio of {p} failed: {exc}; the file is corrupt or "
                                   "truncated") from exc
        channels = len(s.layout.channels)
        x = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), int(s.rate)


def check_audio(audio: np.ndarray, where: str, allow_silent: bool = False) -> None:
    """Raise :class:`NonFiniteAudioError` on NaN/inf samples and :class:`SilentAudioError` when every
    sample is below 1e-6 in magnitude (unless ``allow_silent``); ``where`` names the file in messages."""
    finite = np.isfinite(audio)
    if not finite.all():
        bad = int(audio.size - finite.sum())
        raise NonFiniteAudioError(f"{where}: {bad} of {audio.size} samples are NaN or infinite; the audio was "
                                  "written by a diverged model or is corrupt; regenerate or re-export it")
    if not allow_silent and (audio.size == 0 or float(np.abs(audio).max()) < SILENCE):
        raise SilentAudioError(f"{where} is silent (all {audio.size} samples below {SILENCE:g} in magnitude); "
                               "use a file with sound, or check that the right track was exported")


def load_audio(path: PathLike, sample_rate: int | None, mono: bool = True, *,
               allow_silent: bool = False) -> np.ndarray:
    """Load ``path`` as float32 ``[C, L]`` at ``sample_rate`` (None: the file's own rate).

    ``mono=True`` averages the channels (``C == 1``); otherwise the file's channels are kept. Reads
    wav/flac/ogg/mp3 with soundfile and anything else (e.g. the audio track of an mp4) with PyAV;
    resamples with soxr (high quality). Raises a specific :class:`AudioError` for a missing file, no
    audio stream, an undecodable file, NaN/inf samples, or silence (unless ``allow_silent``).
    """
    p = _exists(path)
    x, sr = _decode(p)
    if x.shape[1] == 0:
        raise AudioDecodeError(f"{p} contains no audio samples; re-export it")
    check_audio(x, str(p), allow_silent)
    if mono and x.shape[0] > 1:
        x = x.mean(axis=0, keepdims=True)
    if sample_rate is not None and int(sample_rate) != sr:
        if sample_rate <= 0:
            raise AudioError(f"load_audio({p}): sample_rate must be positive, got {sample_rate}")
        y = soxr.resample(np.ascontiguousarray(x.T), sr, int(sample_rate), quality="HQ")  # [L', C]
        x = np.ascontiguousarray(y.reshape(len(y), -1).T, dtype=np.float32)
    return x


def write_wav(path: PathLike, audio: Any, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write float ``audio [C, L]`` or ``[L]`` (numpy or torch, range [-1, 1]) atomically; returns ``path``.

    The container follows the suffix (``.wav`` or ``.flac``); PCM subtypes clip to [-1, 1]; ``subtype="FLOAT"``
    keeps float32. NaN/inf samples raise :class:`NonFiniteAudioError` and nothing is written.
    """
    x = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] > x.shape[1] or x.shape[1] == 0:
        raise AudioError(f"write_wav({path}): audio must be [C, L] or [L] with L > C, got shape {list(x.shape)}")
    check_audio(x, f"audio for {path}", allow_silent=True)
    if subtype.startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    fmt = {".flac": "FLAC", ".wav": "WAV"}.get(Path(path).suffix.lower(), "WAV")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x.T, int(sample_rate), subtype=subtype, format=fmt)
    return Path(path)
