"""Long videos with a symbolic codec (``representation`` ``symbolic``: one stream of MIDI-event tokens).

The codec owns its generation rules (:meth:`~vidmusic_core.components.MusicCodec.plan_request`: token
budget, EOS, forced prefix, per-bar controls) and its files (:meth:`~vidmusic_core.components.SymbolicCodec.
write`); this module windows a long video for it, continuing each window from the previous one's last bars
where the codec can cut on a bar line (:meth:`~vidmusic_core.components.SymbolicCodec.window_cut`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .components import SymbolicCodec
from .errors import ConfigError
from .sampling import merge_forced
from .types import GenerationRequest, SamplingConfig


def generate_long_symbolic(model: Any, codec: SymbolicCodec, video: Path, window_s: float, *, seed: int,
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

    from .longform import _window_frames, window_seed
    from .video import FrameSampler, probe_video

    full = probe_video(video).duration
    dur = full if seconds is None else min(float(seconds), full)
    if window_s <= 0:
        raise ConfigError(f"generate.window_seconds={window_s}: must be positive")
    device = next(model.parameters()).device
    sampler = FrameSampler(model.encoder.frame_spec)
    wav, tmp = out_dir / f"{stem}.wav", out_dir / f".{stem}.wav.tmp"
    n_prefix = int(codec.prefix_length)
    options = {"attributes": attributes, "max_tokens": max_tokens}
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
            cont = None
            if prompt:
                cont = torch.full((1, 1, n_prefix + len(prompt)), -1, dtype=torch.long)
                cont[0, 0, n_prefix:] = torch.tensor(prompt)
            request = GenerationRequest(cond, codec.n_frames(t1 - t0), [s], sampling, seconds=torch.tensor([t1 - t0]),
                                        forced=merge_forced(prefix, cont), options=options)
            request = codec.plan_request(request, model.layout, [video], [(t0, t1)])
            toks = model.backbone.generate(model.layout, request, codec)
            if prefix is None and n_prefix:
                prefix = toks.codes[:, :, :n_prefix].clone()
            last = t1 >= dur - 1e-3
            cut = None if last or prompt_bars < 1 else codec.window_cut(toks, t1 - t0, prompt_bars, after=prompt_s)
            if cut is not None:  # end on a bar line; its last bars prompt the next window
                score = codec.decode_between(toks, prompt_ticks, end_ticks=cut.ticks)
                end = cut.seconds
            elif prompt:
                score = codec.decode_between(toks, prompt_ticks, end_seconds=t1 - t0)
                end = t1 - t0
            else:
                score = codec.decode(toks, seconds=t1 - t0)[0]
                end = t1 - t0
            length = end - prompt_s
            midi = codec.write_midi(score, out_dir / f"{stem}.w{index:03d}.mid")
            audio = codec.render([score], seconds=length)[0, 0]
            writer.write(np.clip(audio.cpu().numpy(), -1.0, 1.0))
            meta["window_seeds"].append(s)
            meta["window_starts"].append(round(origin, 6))
            meta["window_prompt_tokens"].append(len(prompt))
            meta["midi_windows"].append(Path(midi).name)
            meta["window_bar_controls"].append(codec.row_meta(toks, 0))
            if n_prefix:
                meta["window_attributes"].append(codec.attributes_of(toks)[0])
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
