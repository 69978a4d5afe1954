"""Music -> video: :func:`visualize` (``vidmusic visualize SONG -o OUT.mp4``).

One pass: the song (wav/flac/ogg/mp3, or MIDI rendered with the toy data's fixed General-MIDI soundfont) is
analysed once in a stream (:func:`vidmusic_core.song.analyse_song`), the visualizer plans once, then renders
``window_seconds`` of frames at a time, each window encoded (libx264, yuv420p) before the next is drawn; the
song is muxed in at the end (:func:`vidmusic_core.video.mux_audio`, which copies the video packets and reads the
audio in blocks). Memory does not grow with the song's length: at 512x512 and 24 fps one second of frames is
19 MB, and only one window of them exists at a time.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError
from .song import SongAnalysis, SongError, analyse_song

MIDI_SUFFIXES = (".mid", ".midi")
MIDI_RATE = 32000


@dataclass
class VisualizeResult:
    """What :func:`visualize` wrote: ``mp4`` (video + the song), its length, frame count and timing."""

    mp4: Path
    seconds: float
    frames: int
    fps: float
    size: tuple[int, int]
    visualizer: str
    elapsed: float
    song: SongAnalysis
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_second(self) -> float:
        """Wall seconds spent per second of output video."""
        return self.elapsed / max(self.seconds, 1e-9)


def render_midi(path: str | os.PathLike[str], out_wav: str | os.PathLike[str], sample_rate: int = MIDI_RATE) -> Path:
    """Render the MIDI file ``path`` to ``out_wav`` (symusic with the fixed TimGM6mb soundfont, as the toy data)."""
    from symusic import Score

    from .audio import write_wav
    from .data.toy_music import render
    from .data.toy_soundfont import fixed_soundfont_path

    try:
        score = Score(str(path))
    except Exception as exc:  # symusic raises RuntimeError/ValueError on broken files
        raise SongError(f"cannot read the MIDI file {path}: {exc}") from exc
    seconds = float(score.to("second").end()) + 1.0
    if seconds <= 1.0:
        raise SongError(f"MIDI file {path} has no notes")
    audio = render(score, sample_rate, seconds, fixed_soundfont_path())
    return write_wav(out_wav, audio, sample_rate)


def song_wav(src: Path, tmp: Path) -> Path:
    """A file the streaming analysis reads: ``src`` itself when soundfile opens it, a MIDI rendered to wav, or the
    audio of anything PyAV decodes (m4a, an mp4's soundtrack, …) written once to ``tmp/song.wav``."""
    import soundfile as sf

    if src.suffix.lower() in MIDI_SUFFIXES:
        return render_midi(src, tmp / "song.wav")
    try:
        sf.info(str(src))
        return src
    except (sf.LibsndfileError, RuntimeError, TypeError):
        from .audio import AudioError, audio_info, load_audio, write_wav

        try:
            audio = load_audio(src, None, mono=False, allow_silent=True)  # [C, L] at the file's rate
            rate = audio_info(src).sample_rate
        except AudioError as exc:
            raise SongError(f"cannot read the song {src}: {exc}") from exc
        return write_wav(tmp / "song.wav", audio, rate, subtype="FLOAT")


def visualizer_config(name: str, overrides: Sequence[str] = (), cfg: Any = None) -> Any:
    """The config dataclass of visualizer ``name`` (``cfg``, else its defaults) with ``KEY=VALUE`` overrides;
    an unknown key is a :class:`ConfigError` listing the valid ones."""
    from omegaconf import OmegaConf

    from .plugins import get_component

    comp = get_component("visualizer", name)
    cfg = comp.default_config() if cfg is None else cfg
    if not overrides:
        return cfg
    if cfg is None:
        raise ConfigError(f"visualizer {name!r} has no options; remove {', '.join(overrides)}")
    base = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist([o.removeprefix("visualizer.") for o in overrides]))
    except Exception as exc:  # omegaconf: unknown key or wrong type
        fields = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise ConfigError(f"visualizer {name!r}: {str(exc).splitlines()[0]}; its options are {fields}") from exc
    return OmegaConf.to_object(merged)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    w, h = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ConfigError(f"visualize: size must be even and >= 16 (yuv420p), got {w}x{h}")
    return w, h


def visualize(song: str | os.PathLike[str], out: str | os.PathLike[str], visualizer: str = "reactive",
              config: Any = None, overrides: Sequence[str] = (), size: int | Sequence[int] = 512, fps: float = 24.0,
              seed: int = 0, seconds: float | None = None, window_seconds: float = 10.0,
              progress: bool = True) -> VisualizeResult:
    """Render ``song`` with ``visualizer`` into ``out`` (an mp4 with the song as its soundtrack).

    ``config``: the visualizer's config dataclass (default: its defaults) and ``overrides`` (``KEY=VALUE``) on
    top; ``size``: an int (square) or ``(W, H)``; ``seconds``: only the first ``seconds`` of the song;
    ``window_seconds``: frames rendered and encoded per window. Raises :class:`~vidmusic_core.song.SongError`
    for a song that cannot be used and :class:`ConfigError` for bad options."""
    from .plugins import get_component
    from .video import mux_audio, video_writer

    start = time.perf_counter()
    W, H = _size(size)
    if not 1.0 <= float(fps) <= 120.0:
        raise ConfigError(f"visualize: fps must be in [1, 120], got {fps}")
    if window_seconds <= 0:
        raise ConfigError(f"visualize: window_seconds must be > 0, got {window_seconds}")
    src = Path(song)
    if not src.is_file():
        raise SongError(f"song {src} does not exist")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    comp = get_component("visualizer", visualizer)
    vis = comp.build(visualizer_config(comp.name, overrides, config))
    with tempfile.TemporaryDirectory(prefix="vidmusic-vis-") as tmp:
        wav = song_wav(src, Path(tmp))
        analysis = analyse_song(wav)
        total = analysis.duration if seconds is None else min(float(seconds), analysis.duration)
        if total <= 0:
            raise ConfigError(f"visualize: seconds must be > 0, got {seconds}")
        plan = vis.plan(analysis, (W, H), float(fps), int(seed))
        n = max(1, int(round(total * fps)))
        per = max(1, int(round(window_seconds * fps)))
        bar = None
        if progress:
            from .progress import progress_bar

            bar = progress_bar(total=n, desc=f"visualize {src.name}", unit="frame")
        silent = Path(tmp) / "video.mp4"
        try:
            with video_writer(silent, W, H, fps) as write:
                for a in range(0, n, per):
                    times = np.arange(a, min(n, a + per)) / float(fps)  # [T] s
                    frames = vis.render(plan, times)  # uint8 [T, H, W, 3]
                    if frames.shape != (len(times), H, W, 3) or frames.dtype != np.uint8:
                        raise ConfigError(f"visualizer {comp.name!r} returned {frames.dtype} {list(frames.shape)} for "
                                          f"{len(times)} frames of {W}x{H}; it must return uint8 [T, H, W, 3]")
                    write(frames)
                    if bar is not None:
                        bar.update(len(times))
        finally:
            if bar is not None:
                bar.close()
        mux_audio(silent, wav, out)
    elapsed = time.perf_counter() - start
    meta = {"song": str(src), "visualizer": comp.name, "seed": int(seed), "key": list(analysis.key),
            "tempo": analysis.tempo, "sections": [s.start for s in analysis.sections]}
    return VisualizeResult(out, n / float(fps), n, float(fps), (W, H), comp.name, elapsed, analysis, meta)


__all__ = ["VisualizeResult", "render_midi", "visualize", "visualizer_config"]
