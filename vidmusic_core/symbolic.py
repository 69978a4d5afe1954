"""Generating with a symbolic codec (``frame_rate`` None: one stream of MIDI-event tokens, e.g. ``remi``).

Audio codecs fix the token count (seconds x frame rate); a symbolic row is as long as its music, so
generation samples up to a token budget and stops at the backbone's EOS. A symbolic codec provides
``decode(tokens, seconds=None) -> [Score]``, ``write_midi(score, path)``, ``render(scores, seconds=) ->
[B, 1, L]`` and, with an attribute prefix, ``prefix_length``, ``prefix_codes(attributes)`` and
``attributes_of(tokens)`` (see ``musecoco_symbolic.codec.RemiCodec``).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .audio import write_wav
from .errors import ConfigError
from .sampling import SamplingConfig
from .components import MusicCodec
from .types import MusicTokens

TOKENS_PER_SECOND = 100  # budget per second of music (toy REMI clips use ~50-90)
MIN_MUSIC_TOKENS = 8  # EOS is banned before the prefix and this many music tokens


def is_symbolic(codec: MusicCodec) -> bool:
    """True for codecs without a frame rate (token count is not a function of time)."""
    return codec.frame_rate is None


def token_budget(codec: MusicCodec, seconds: float, max_tokens: int | None = None) -> int:
    """Tokens to sample at most for ``seconds`` of music: ``max_tokens`` when set, else the codec's
    prefix + ``TOKENS_PER_SECOND`` per second."""
    if max_tokens is not None:
        if max_tokens <= 0:
            raise ConfigError(f"generate.max_tokens={max_tokens}: must be positive")
        return int(max_tokens)
    return int(getattr(codec, "prefix_length", 0)) + int(math.ceil(TOKENS_PER_SECOND * seconds))


def symbolic_sampling(sc: SamplingConfig, codec: MusicCodec) -> SamplingConfig:
    """``sc`` with EOS on (rows end with their music) after the prefix and a few music tokens."""
    return dataclasses.replace(sc, use_eos=True,
                               min_frames=int(getattr(codec, "prefix_length", 0)) + MIN_MUSIC_TOKENS)


def forced_prefix(codec: MusicCodec, attributes: Mapping[str, Any] | None, batch: int) -> Tensor | None:
    """Codes ``[B, 1, P]`` that force the attribute columns the user set (``-1`` = the model's choice),
    or None when ``attributes`` is empty."""
    if not attributes:
        return None
    if not hasattr(codec, "prefix_codes"):
        raise ConfigError(f"generate.attributes is set but codec {type(codec).__name__} has no attribute prefix")
    ids = codec.prefix_codes(dict(attributes))  # type: ignore[attr-defined]
    return torch.tensor(ids, dtype=torch.long)[None, None].expand(batch, 1, -1).clone()


def merge_forced(*parts: Tensor | None) -> Tensor | None:
    """Overlay forced-code tensors ``[B, K, F_i]`` (``-1`` = free): later parts win where they are set."""
    given = [p for p in parts if p is not None]
    if not given:
        return None
    n = max(p.shape[2] for p in given)
    out = torch.full((*given[0].shape[:2], n), -1, dtype=torch.long, device=given[0].device)
    for p in given:
        out[:, :, : p.shape[2]] = torch.where(p >= 0, p.to(out.device), out[:, :, : p.shape[2]])
    return out


def layout_forced(layout: Any, condition: Any) -> Tensor | None:
    """Codes a layout forces at the start of the music (e.g. ``attribute_head``'s predicted prefix)."""
    fn = getattr(layout, "forced_codes", None)
    return fn(condition) if fn is not None else None


def uses_bar_controls(codec: MusicCodec) -> bool:
    """Whether the codec writes per-bar control tokens that the video sets at generation (remi
    ``bar_controls`` / ``bar_density``)."""
    return bool(getattr(codec, "bar_controlled", False)) and hasattr(codec, "bar_controller")


def bar_controller(codec: MusicCodec, layout: Any, condition: Any, videos: Sequence[Path | str],
                   spans: Sequence[tuple[float, float]]) -> Any:
    """The per-bar controller of a batch (None without per-bar controls): the cuts of each row's video in
    its span ``(start, end)`` s, and the per-bar density classes of the layout's density head
    (``layout.bar_density(condition)``, times relative to the span start) when it has one."""
    if not uses_bar_controls(codec):
        return None
    cuts = [video_cuts(v, t0, t1) for v, (t0, t1) in zip(videos, spans)]
    fn = getattr(layout, "bar_density", None)
    density = fn(condition) if fn is not None and getattr(getattr(codec, "cfg", None), "bar_density", False) else None
    return codec.bar_controller(cuts, density)  # type: ignore[attr-defined]


def video_cuts(video: Path | str, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Hard cuts (seconds from ``start``) of ``video`` in ``[start, end)``, detected by the ``motion``
    encoder's frame-difference detector at its frame rate (30 fps, 32 px)."""
    from .encoders.motion import MotionConfig, MotionEncoder, detect_beats_and_cuts
    from .video import load_frames

    frames = load_frames([video], MotionEncoder(MotionConfig()).frame_spec, start, end)
    n = int(frames.local_mask[0].sum())
    _, cuts = detect_beats_and_cuts(frames.local[0, :n].numpy(), frames.local_times[0, :n].numpy())
    return np.asarray(cuts, dtype=float) - start


def bar_flags(codec: MusicCodec, tokens: MusicTokens, row: int) -> list[int]:
    """The per-bar cut control of each bar of a generated row (1 = ``BarCut_1`` after its ``Bar_None``)."""
    return [int(c[0] == "BarCut_1") for c in bar_control_tokens(codec, tokens, row) if c and c[0].startswith("BarCut_")]


def bar_densities(codec: MusicCodec, tokens: MusicTokens, row: int) -> list[int | None]:
    """The density class written after each ``Bar_None`` of a generated row (None where there is none)."""
    out: list[int | None] = []
    for c in bar_control_tokens(codec, tokens, row):
        d = [t for t in c if t.startswith("BarDensity_")]
        out.append(int(d[0].split("_", 1)[1]) if d else None)
    return out


def bar_control_meta(codec: MusicCodec, tokens: MusicTokens, row: int) -> dict[str, Any]:
    """What a clip's json records of its per-bar controls: ``bar_cuts`` and/or ``bar_density`` per bar."""
    cfg = getattr(codec, "cfg", None)
    out: dict[str, Any] = {}
    if getattr(cfg, "bar_controls", False):
        out["bar_cuts"] = bar_flags(codec, tokens, row)
    if getattr(cfg, "bar_density", False):
        out["bar_density"] = bar_densities(codec, tokens, row)
    return out


def bar_control_tokens(codec: MusicCodec, tokens: MusicTokens, row: int) -> list[list[str]]:
    """Per bar of a generated row, the control tokens right after its ``Bar_None``."""
    toks = codec.rows(MusicTokens(tokens.codes[row:row + 1], tokens.mask[row:row + 1], None))[0]  # type: ignore[attr-defined,index]
    out = []
    for i, t in enumerate(toks):
        if t == "Bar_None":
            j = i + 1
            while j < len(toks) and toks[j].startswith(("BarCut_", "BarDensity_")):
                j += 1
            out.append(list(toks[i + 1:j]))
    return out


def write_outputs(codec: MusicCodec, tokens: MusicTokens, row: int, seconds: float, out_dir: Path,
                  name: str) -> tuple[Path, Path, dict[str, Any] | None]:
    """Row ``row`` of generated ``tokens`` -> ``<name>.mid`` (cut to ``seconds``) and its rendering
    ``<name>.wav``; returns (wav, midi, the attribute values of the row's prefix or None)."""
    assert tokens.mask is not None
    one = MusicTokens(tokens.codes[row:row + 1], tokens.mask[row:row + 1], None)
    scores = codec.decode(one, seconds=seconds)  # type: ignore[call-arg]
    midi = codec.write_midi(scores[0], out_dir / f"{name}.mid")  # type: ignore[attr-defined]
    audio = codec.render(scores, seconds=seconds)  # type: ignore[attr-defined]  # [1, 1, L]
    wav = write_wav(out_dir / f"{name}.wav", audio[0].cpu().numpy(), codec.sample_rate)
    attrs = codec.attributes_of(one)[0] if getattr(codec, "prefix_length", 0) else None  # type: ignore[attr-defined]
    return Path(wav), Path(midi), attrs


def generate_long_symbolic(model: Any, codec: MusicCodec, video: Path, window_s: float, *, seed: int,
                           sampling: SamplingConfig, out_dir: Path, stem: str, seconds: float | None = None,
                           attributes: Mapping[str, Any] | None = None, max_tokens: int | None = None,
                           progress: bool = True, prompt_bars: int = 1) -> dict[str, Any]:
    """A video longer than one window with a symbolic codec, in windows of up to ``window_s`` seconds, each
    conditioned on its own frames (plus the whole video's global frames). Every window after the first keeps
    the first window's attribute prefix, so instruments, key and tempo class stay (``attributes`` still win).

    Continuation (``prompt_bars`` > 0, codecs with ``window_cut``): a window ends at the end of its last
    complete bar inside its span, and the next window starts with that window's last ``prompt_bars`` bars
    forced as its first music tokens (its frames start where those bars start), so the music continues
    across the boundary; the prompt bars are left out of the next window's MIDI. When a window has no
    complete bar to end on (bars longer than the window, or ``prompt_bars`` 0), it is cut at its span's end
    and the next one starts afresh, as independent windows. Writes ``<stem>.wNNN.mid`` per window and
    ``<stem>.wav`` (the renders back to back, written window by window). Returns the metadata to store
    (window seeds, starts, prompt lengths, MIDI names, the attribute prefix every window used, the per-bar
    controls of each window)."""
    import soundfile as sf
    from tqdm.auto import tqdm

    from .sampling import generate_tokens
    from .longform import _window_frames, window_seed
    from .video import FrameSampler, probe_video

    full = probe_video(video).duration
    dur = full if seconds is None else min(float(seconds), full)
    if window_s <= 0:
        raise ConfigError(f"generate.window_seconds={window_s}: must be positive")
    device = next(model.parameters()).device
    sampler = FrameSampler(model.encoder.frame_spec)
    wav, tmp = out_dir / f"{stem}.wav", out_dir / f".{stem}.wav.tmp"
    user = forced_prefix(codec, attributes, 1)
    n_prefix = int(getattr(codec, "prefix_length", 0))
    cut_fn = getattr(codec, "window_cut", None) if prompt_bars > 0 else None
    sc = symbolic_sampling(sampling, codec)
    prefix: Tensor | None = None
    meta: dict[str, list[Any]] = {"window_seeds": [], "window_starts": [], "window_prompt_tokens": [],
                                  "midi_windows": [], "window_attributes": [], "window_bar_controls": []}
    origin, prompt, prompt_s, prompt_ticks = 0.0, [], 0.0, 0  # the music continues from `origin` (s)
    bar = tqdm(total=round(dur, 2), unit="s", desc=video.name, disable=not progress)
    with sf.SoundFile(str(tmp), "w", samplerate=int(codec.sample_rate), channels=1, subtype="PCM_16",
                      format="WAV") as writer:
        index = 0
        while origin < dur - 1e-3:
            if prompt_s > 0.5 * window_s:  # a prompt that long would leave too little new music: start afresh
                prompt, prompt_s, prompt_ticks = [], 0.0, 0
            t0 = origin - prompt_s  # the window's clock starts with its prompt
            t1 = min(t0 + window_s, dur)
            frames = _window_frames(sampler, video, t0, t1, device)
            with torch.inference_mode():
                cond = model.encoder(frames)
            s = window_seed(seed, index)
            ctl = bar_controller(codec, model.layout, cond, [video], [(t0, t1)])
            cont = None
            if prompt:
                cont = torch.full((1, 1, n_prefix + len(prompt)), -1, dtype=torch.long)
                cont[0, 0, n_prefix:] = torch.tensor(prompt)
            budget = token_budget(codec, t1 - t0, max_tokens) + (len(prompt) if max_tokens is not None else 0)
            toks = generate_tokens(model.layout, model.backbone, cond, budget, [s],
                                   dataclasses.replace(sc, min_frames=sc.min_frames + len(prompt)),
                                   delays=codec.delays, frame_rate=None, controller=ctl,
                                   forced=merge_forced(layout_forced(model.layout, cond), prefix, user, cont))
            if prefix is None and n_prefix:
                prefix = toks.codes[:, :, :n_prefix].clone()
            last = t1 >= dur - 1e-3
            cut = None if last or cut_fn is None else cut_fn(toks, t1 - t0, prompt_bars, after=prompt_s)
            if cut is not None:  # end on a bar line; its last bars prompt the next window
                score = codec.decode_between(toks, prompt_ticks, end_ticks=cut.ticks)  # type: ignore[attr-defined]
                end = cut.seconds
            elif prompt:
                score = codec.decode_between(toks, prompt_ticks, end_seconds=t1 - t0)  # type: ignore[attr-defined]
                end = t1 - t0
            else:
                score = codec.decode(toks, seconds=t1 - t0)[0]  # type: ignore[call-arg]
                end = t1 - t0
            length = end - prompt_s
            midi = codec.write_midi(score, out_dir / f"{stem}.w{index:03d}.mid")  # type: ignore[attr-defined]
            audio = codec.render([score], seconds=length)[0, 0]  # type: ignore[attr-defined]
            writer.write(np.clip(audio.cpu().numpy(), -1.0, 1.0))
            meta["window_seeds"].append(s)
            meta["window_starts"].append(round(origin, 6))
            meta["window_prompt_tokens"].append(len(prompt))
            meta["midi_windows"].append(Path(midi).name)
            meta["window_bar_controls"].append(bar_control_meta(codec, toks, 0))
            if n_prefix:
                meta["window_attributes"].append(codec.attributes_of(toks)[0])  # type: ignore[attr-defined]
            origin = t0 + end
            prompt, prompt_s, prompt_ticks = ((cut.prompt, cut.prompt_seconds, cut.prompt_ticks) if cut is not None
                                              else ([], 0.0, 0))
            bar.update(round(length, 2))
            index += 1
    bar.close()
    tmp.replace(wav)
    attrs = meta["window_attributes"]
    out: dict[str, Any] = {**meta, "window_seconds": window_s, "prompt_bars": prompt_bars,
                           "attributes": attrs[0] if attrs else None}
    if not any(meta["window_bar_controls"]):
        out.pop("window_bar_controls")
    return out
