"""Music for videos of any length: windows with an audio-token prompt, memory flat in video length (DESIGN §7).

A video of N music frames is cut into windows of at most ``W = window_s · frame_rate`` frames. Window 0
generates frames ``[0, W)``; window i > 0 re-uses the last ``O = overlap_s · frame_rate`` frames already
generated as its prompt (MusicGen/VidMuse continuation: upstream ``vidmuse.py::_generate_tokens``, 0.5 s)
and generates ``W - O`` new ones. Each window is conditioned on **its own** video span ``[prompt start,
window end)`` (local frames, times relative to that start, as in training) plus the global frames of the
whole video; upstream conditions its last window on the wrong frames. Frames are sampled per window
(PyAV seeks; global frames are sampled once), new tokens are appended, and audio is decoded per window in
pieces of ``decode_s`` (10 s; codes either side as context) and appended to the wav file, so memory does not
grow with the video.

Generation uses the one sampling loop (:func:`vidmusic_core.generation.generate_tokens`) through
:class:`ContinuationLayout`, a layout adapter that puts the prompt's delayed columns after the base
layout's prompt and feeds the known prompt codes where the delay pattern still needs them.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .codecs.delay import apply_delays
from .errors import ConfigError
from .generation import SamplingConfig, generate_tokens
from .layouts.music import delay_pad, effective_delays
from .types import Backbone, BackboneInput, Condition, Frames, MusicTokens, SequenceLayout
from .video import FrameSampler, PathLike, probe_video


class ContinuationLayout(SequenceLayout):
    """``base`` layout continuing from music ``prompt_codes [B, K, P]`` (undelayed).

    ``prompt`` = base prompt + the embeddings of delayed columns ``0 .. P-1`` (every code in them is known);
    ``step_embeds`` at local column ``c`` is the base's at column ``P + c``, with codebook k's code taken from
    the prompt while ``c < delays[k]`` (the sampling loop holds the pad there). Rows are repeated when the
    loop doubles the batch for CFG.
    """

    def __init__(self, base: SequenceLayout, prompt_codes: Tensor, delays: Sequence[int]) -> None:
        super().__init__()
        self.base = base
        self.prompt_codes = prompt_codes
        self.delays = effective_delays(delays, prompt_codes.shape[1])

    def _rows(self, n: int) -> Tensor:
        p = self.prompt_codes
        if n % p.shape[0]:
            raise ConfigError(f"ContinuationLayout: {n} rows for a prompt of {p.shape[0]}")
        return p.repeat(n // p.shape[0], 1, 1)

    def forward(self, backbone: Backbone, condition: Condition, music: MusicTokens,  # type: ignore[override]
                text: Sequence[str] | None = None, **kw: Any) -> BackboneInput:
        return self.base(backbone, condition, music, text, **kw)

    def prompt(self, backbone: Backbone, condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None) -> BackboneInput:
        inp = self.base.prompt(backbone, condition, text, seconds)  # type: ignore[call-arg]
        B, P = inp.inputs_embeds.shape[0], self.prompt_codes.shape[2]
        delayed = apply_delays(self._rows(B), self.delays, delay_pad(backbone))[:, :, :P]  # [B, K, P]
        cols = [self.base.step_embeds(backbone, delayed[:, :, c:c + 1], c, condition) for c in range(P)]
        x = torch.cat([inp.inputs_embeds, *[c.to(inp.inputs_embeds.dtype) for c in cols]], dim=1)  # [B, S0 + P, D]
        mask = torch.cat([inp.attention_mask, inp.attention_mask.new_ones(B, P)], dim=1)
        pos = inp.position_ids
        if pos is not None:
            pos = torch.cat([pos, pos[:, -1:] + torch.arange(1, P + 1, device=pos.device)], dim=1)
        return BackboneInput(x, mask, memory=inp.memory, memory_mask=inp.memory_mask, position_ids=pos,
                             music_start=inp.music_start)

    def step_embeds(self, backbone: Backbone, codes: Tensor, position: int, condition: Condition) -> Tensor:
        P = self.prompt_codes.shape[2]
        if position < max(self.delays):
            codes = codes.clone()
            rows = self._rows(codes.shape[0])
            for k, d in enumerate(self.delays):
                if position < d:
                    codes[:, k, 0] = rows[:, k, P + position - d]
        return self.base.step_embeds(backbone, codes, P + position, condition)


@dataclass
class Window:
    """Music frames ``[start - prompt, end)`` of one window: ``prompt`` frames re-used, ``[start, end)`` new."""

    index: int
    start: int
    end: int
    prompt: int

    def seconds(self, frame_rate: float) -> tuple[float, float]:
        """Video span conditioning this window: ``[(start - prompt) / fr, end / fr)``."""
        return (self.start - self.prompt) / frame_rate, self.end / frame_rate


def plan_windows(n_frames: int, window: int, overlap: int) -> list[Window]:
    """Windows covering ``[0, n_frames)`` with at most ``window`` frames each (prompt included)."""
    if window < 1 or not 0 <= overlap < window:
        raise ConfigError(f"long-form windows: need window >= 1 frame and 0 <= overlap < window, got {window}, {overlap}")
    out, start = [], 0
    while start < n_frames:
        prompt = min(overlap, start)
        end = min(start + window - prompt, n_frames)
        out.append(Window(len(out), start, end, prompt))
        start = end
    return out


@dataclass
class LongResult:
    """``tokens``: ``MusicTokens [1, K, N]``; ``windows``; ``seeds`` (one per window); ``wav`` (or None);
    ``peak_local_frames``: most local video frames held at once (flat in video length)."""

    tokens: MusicTokens
    windows: list[Window]
    seeds: list[int]
    wav: Optional[Path] = None
    peak_local_frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _window_frames(sampler: FrameSampler, video: PathLike, t0: float, t1: float, device: Any) -> Frames:
    s = sampler.sample(video, t0, t1)
    glob = torch.from_numpy(s.global_frames)[None] if len(s.global_frames) else None
    return Frames(torch.from_numpy(s.local)[None], torch.from_numpy(s.local_times).float()[None] - t0, None,
                  glob, torch.from_numpy(s.global_times).float()[None] if glob is not None else None,
                  torch.tensor([t1 - t0])).to(device)


def window_seed(seed: int, index: int) -> int:
    """Seed of window ``index`` (a stable function of the item seed; no global RNG)."""
    return (int(seed) * 1_000_003 + 7919 * index) % (2**31 - 1)


def decode_frames(codec: Any, codes: Tensor, start: int, end: int, chunk: int, context: int,
                  device: Any = None) -> Iterator[Tensor]:
    """Audio ``[C, samples]`` of music frames ``[start, end)`` of ``codes [1, K, n]``, yielded in pieces of at most
    ``chunk`` frames; each piece is decoded with up to ``context`` frames of codes on either side (those that
    exist) and trimmed to its own samples, so peak memory is that of ``chunk + 2 context`` frames."""
    hop = int(round(codec.sample_rate / codec.frame_rate))
    for a in range(start, end, chunk):
        b = min(a + chunk, end)
        left, right = min(context, a), min(context, codes.shape[2] - b)
        piece = codes[:, :, a - left:b + right].to(device)
        yield codec.decode(MusicTokens(piece, None, float(codec.frame_rate)))[0, :, left * hop:(left + b - a) * hop]


@torch.inference_mode()
def generate_long(model: Any, codec: Any, video_path: PathLike, window_s: float, overlap_s: float, *, seed: int = 0,
                  sampling: Optional[SamplingConfig] = None, text: Optional[str] = None, seconds: Optional[float] = None,
                  out_wav: Optional[PathLike] = None, progress: bool = True,
                  log: Optional[Callable[[str], None]] = None, decode_s: Optional[float] = 10.0,
                  decode_context_s: float = 1.0) -> LongResult:
    """Music for the whole of ``video_path`` (or its first ``seconds``) in windows of ``window_s`` seconds
    with ``overlap_s`` seconds of audio-token prompt. ``model``: a ``VidMusicModel`` (encoder, layout,
    backbone); ``codec``: its codec. ``out_wav``: decode and write the audio there, window by window, in
    pieces of ``decode_s`` seconds (None: a window at once) each decoded with up to ``decode_context_s`` of
    codes either side, so the decoder's activations stay small. ``log``: where the cost estimate goes
    (default stderr)."""
    from tqdm.auto import tqdm

    log = log or (lambda msg: print(msg, file=sys.stderr))
    fr = float(codec.frame_rate)
    full = probe_video(video_path).duration
    dur = full if seconds is None else min(float(seconds), full)
    n_frames = int(round(dur * fr))
    W, O = int(round(window_s * fr)), int(round(overlap_s * fr))
    ctx = getattr(model.backbone, "context_length", None)
    d = effective_delays(codec.delays, model.backbone.n_codebooks)
    if ctx is not None and W > ctx:  # context_length counts music frames (MusicGen: 1500 = 30 s; the delay
        # pattern's extra columns come on top, as upstream's max_duration=30 windows)
        raise ConfigError(f"window_s={window_s} is {W} music frames > backbone context_length {ctx}; "
                          "use a shorter window")
    windows = plan_windows(n_frames, W, O)
    steps = sum(w.end - w.start + max(d) for w in windows)
    log(f"long-form: {dur:.1f} s -> {n_frames} frames in {len(windows)} windows of <= {window_s:g} s "
        f"({overlap_s:g} s prompt): {steps} decoding steps")
    device = next(model.parameters()).device
    sampler = FrameSampler(model.encoder.frame_spec)
    codes = torch.zeros(1, len(d), 0, dtype=torch.long)  # all tokens so far [1, K, n] (int64: 1 MB per 10 min)
    seeds = [window_seed(seed, w.index) for w in windows]
    chunk = W if decode_s is None else max(1, int(round(decode_s * fr)))
    context = max(O, int(round(decode_context_s * fr)))
    writer = None
    if out_wav is not None:
        import soundfile as sf

        out_wav = Path(out_wav)
        out_wav.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_wav.with_name(f".{out_wav.name}.tmp")
    peak, t_start = 0, time.perf_counter()
    bar = tqdm(total=len(windows), unit="window", desc=Path(video_path).name, disable=not progress)
    try:
        for w in windows:
            t0, t1 = w.seconds(fr)
            frames = _window_frames(sampler, video_path, t0, t1, device)
            peak = max(peak, int(frames.local.shape[1]))
            cond = model.encoder(frames)
            layout = model.layout
            if w.prompt:
                layout = ContinuationLayout(model.layout, codes[:, :, -w.prompt:].to(device), d)
            toks = generate_tokens(layout, model.backbone, cond, w.end - w.start, [seeds[w.index]], sampling,
                                   text=None if text is None else [text], seconds=torch.tensor([t1 - t0]),
                                   delays=d, frame_rate=fr)
            codes = torch.cat([codes, toks.codes.cpu()], dim=2)
            if out_wav is not None:  # decode the new frames (codes before and after them as context)
                for audio in decode_frames(codec, codes, w.start, w.end, chunk, context, device):
                    if writer is None:
                        writer = sf.SoundFile(str(tmp), "w", samplerate=int(codec.sample_rate),
                                              channels=int(audio.shape[0]), subtype="PCM_16", format="WAV")
                    writer.write(np.clip(audio.float().cpu().numpy().T, -1.0, 1.0))
            bar.update(1)
            if w.index == 0 and len(windows) > 1:
                rate = (w.end - w.start + max(d)) / max(time.perf_counter() - t_start, 1e-9)
                log(f"long-form: {rate:.1f} steps/s -> about {math.ceil(steps / rate)} s in all")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if writer is not None:
        tmp.replace(out_wav)  # atomic: a crash never leaves a half-written wav under the final name
    return LongResult(MusicTokens(codes, None, fr), windows, seeds, Path(out_wav) if writer is not None else None,
                      peak, {"total": round(time.perf_counter() - t_start, 3)})


__all__ = ["ContinuationLayout", "LongResult", "Window", "decode_frames", "generate_long",
           "plan_windows", "window_seed"]
