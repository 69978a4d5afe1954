"""Music for video files with a loaded model: a clip at once, a long video in windows; per video a wav, the
video with its new soundtrack (mp4) and a json of everything that made it (:func:`generate_with_model`)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .checkpoint import atomic_path
from .errors import ConfigError, VidmusicError
from .clips import item_seed
from .interrupt import Interrupted
from .types import SamplingConfig


@dataclass
class GeneratedMusic:
    """What :func:`generate_with_model` made for one video: ``wav``, ``mp4`` (the video with the new
    soundtrack), ``json`` (its metadata file) and ``midi`` (symbolic models) paths, ``meta`` (the json's
    content: seed, seconds, sampling settings, windows, …); or ``error`` (why this video got nothing, the
    paths None). Path-like: ``os.fspath(result)`` is the wav."""

    video: Path
    wav: Path | None = None
    mp4: Path | None = None
    json: Path | None = None
    midi: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __fspath__(self) -> str:
        if self.wav is None:
            raise VidmusicError(f"{self.video}: no music was generated ({self.error})")
        return os.fspath(self.wav)


def write_video_outputs(video: Path, wav: Path, out: Path, meta: dict[str, Any]) -> None:
    """``<out>/<stem>.mp4`` (``video`` with ``wav`` as its soundtrack, read in blocks) and ``<out>/<stem>.json``."""
    from .video import mux_audio

    mux_audio(video, wav, out / f"{video.stem}.mp4")
    with atomic_path(out / f"{video.stem}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def generate_with_model(model: Any, codec: Any, videos: Sequence[str | Path], out_dir: str | Path, *,
                        sampling: SamplingConfig, seed: int, window_seconds: float, overlap_seconds: float,
                        text: Sequence[str] | None = None, seconds: float | None = None,
                        meta: dict[str, Any] | None = None, progress: bool = True,
                        attributes: dict[str, Any] | None = None, max_tokens: int | None = None,
                        prompt_bars: int = 1) -> list[GeneratedMusic]:
    """Music for each video with a loaded model (``VidMusicModel``: encoder, layout, backbone) and its codec:
    ``<out>/<stem>.wav``, ``<stem>.mp4`` (the video with the new soundtrack) and ``<stem>.json`` (``meta`` +
    seed, seconds, sampling settings, and what the codec records). ``seconds`` defaults to the whole video. A
    video up to ``window_seconds`` is generated at once (:func:`vidmusic_core.clips.generate_clips`, files by
    ``codec.write``); a longer one in windows, each conditioned on its own frames, through the one long-video loop
    (:func:`longform.generate_windows`) with the codec's window policy (``codec.windows``: audio codecs continue
    ``overlap_seconds`` of prompt; symbolic codecs end windows on bar lines and continue the last ``prompt_bars``
    bars, one ``<stem>.wNNN.mid`` per window); audio is written window by window, one progress bar per video. Item seeds:
    ``item_seed(seed, stem)``. Symbolic codecs: ``attributes`` forces attribute-prefix values, ``max_tokens``
    the token budget.

    Returns one :class:`GeneratedMusic` per video, in order. A video that cannot be used (undecodable, no video
    stream, …) does not stop the others: its result has ``error`` set and no files; an output folder this call
    created stays only if something was written into it."""
    if text is not None and len(text) != len(videos):
        raise ConfigError(f"{len(text)} text prompt(s) for {len(videos)} video(s); give one per video or none")
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    options = {"attributes": attributes, "max_tokens": max_tokens}
    results: list[GeneratedMusic] = []
    try:
        for i, video in enumerate(videos):
            video = Path(video)
            try:
                results.append(_one_video(model, codec, video, out, device, options, sampling=sampling, seed=seed,
                                          window_seconds=window_seconds, overlap_seconds=overlap_seconds,
                                          caption=text[i] if text else None, seconds=seconds, meta=meta,
                                          progress=progress, prompt_bars=prompt_bars))
            except Interrupted:  # a stop request (vidmusic_core.interrupt) stops every video, not this one
                raise
            except VidmusicError as exc:  # this video only: the others still get their music
                results.append(GeneratedMusic(video, error=str(exc)))
    finally:
        if created and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind
    return results


def _one_video(model: Any, codec: Any, video: Path, out: Path, device: Any, options: dict[str, Any], *,
               sampling: SamplingConfig, seed: int, window_seconds: float, overlap_seconds: float,
               caption: str | None, seconds: float | None, meta: dict[str, Any] | None, progress: bool,
               prompt_bars: int) -> GeneratedMusic:
    """The files of one video (see :func:`generate_with_model`)."""
    from .clips import generate_clips
    from .longform import generate_windows
    from .video import load_frames, probe_video

    dur = probe_video(video).duration
    secs = dur if seconds is None else min(dur, float(seconds))
    s = item_seed(seed, video.stem)
    wav = out / f"{video.stem}.wav"
    info: dict[str, Any] = {"video": str(video), "seconds": secs, **(meta or {}), "text": caption, "seed": s,
                            "sampling": dataclasses.asdict(sampling)}
    if secs <= window_seconds + 1e-6:
        frames = load_frames([video], model.encoder.frame_spec, 0.0, secs).to(device)
        with torch.inference_mode():
            cond = model.encoder(frames)
        music = generate_clips(model, codec, cond, torch.tensor([secs]), [s], sampling,
                               text=None if caption is None else [caption], options=options, videos=[str(video)])
        info.update(codec.write(music, 0, secs, out, video.stem))
    else:  # one loop for every codec; the codec's window policy says where windows end and what they continue
        policy = codec.windows(model.backbone, secs, window_seconds, overlap_seconds, out, video.stem, prompt_bars)
        run = generate_windows(model, codec, video, policy, seed=s, sampling=sampling, text=caption, options=options,
                               out_wav=wav, progress=progress)
        info.update(window_seeds=run.seeds, **policy.meta())
    write_video_outputs(video, wav, out, info)
    return GeneratedMusic(video, wav, out / f"{video.stem}.mp4", out / f"{video.stem}.json",
                          out / info["midi"] if info.get("midi") else None, info)


