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
from typing import Any, Mapping

import torch
from torch import Tensor

from .audio import write_wav
from .errors import ConfigError
from .generation import SamplingConfig
from .types import MusicCodec, MusicTokens

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
