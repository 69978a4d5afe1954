"""How the ``remi`` codec generates (its :meth:`~vidmusic_core.SymbolicCodec.plan_request` and ``row_meta``).

Audio codecs fix the token count (seconds x frame rate); a symbolic row is as long as its music, so a
request samples up to a token budget (``generate.max_tokens``, else the attribute prefix + ``TOKENS_PER_SECOND``
per second) and each row stops at the backbone's EOS (banned before the prefix and ``MIN_MUSIC_TOKENS``
music tokens, and before any forced continuation). Forced codes, later ones winning: the layout's (e.g.
``attribute_head``'s predicted prefix), the request's own (a long video's first-window prefix and
continuation bars), the user's ``generate.attributes``. With per-bar controls, a :class:`BarController`
sets each bar's cut flag from the cuts of the row's video in its span and its density class from the
``attribute_head`` layout's density head.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from vidmusic_core import ConfigError, GenerationRequest, MusicTokens, SequenceLayout, merge_forced, video_cuts

if TYPE_CHECKING:
    from .codec import RemiCodec

TOKENS_PER_SECOND = 100  # budget per second of music (toy REMI clips use ~50-90)
MIN_MUSIC_TOKENS = 8  # EOS is banned before the prefix and this many music tokens


def token_budget(codec: "RemiCodec", seconds: float, max_tokens: int | None = None) -> int:
    """Tokens to sample at most for ``seconds`` of music: ``max_tokens`` when set, else the codec's
    prefix + ``TOKENS_PER_SECOND`` per second."""
    if max_tokens is not None:
        if max_tokens <= 0:
            raise ConfigError(f"generate.max_tokens={max_tokens}: must be positive")
        return int(max_tokens)
    return int(codec.prefix_length) + int(math.ceil(TOKENS_PER_SECOND * seconds))


def forced_prefix(codec: "RemiCodec", attributes: Mapping[str, Any] | None, batch: int) -> Tensor | None:
    """Codes ``[B, 1, P]`` that force the attribute columns the user set (``-1`` = the model's choice),
    or None when ``attributes`` is empty."""
    if not attributes:
        return None
    ids = codec.prefix_codes(dict(attributes))
    return torch.tensor(ids, dtype=torch.long)[None, None].expand(batch, 1, -1).clone()


def plan_request(codec: "RemiCodec", request: GenerationRequest, layout: SequenceLayout,
                 videos: Sequence[str | Path] | None, spans: Sequence[tuple[float, float]] | None) -> GenerationRequest:
    """``request`` with the symbolic rules (see the module docstring). ``request.forced`` columns past the
    prefix are a continuation: the budget (with ``max_tokens``) and the EOS ban grow by their number."""
    from .attribute_head import AttributeHeadLayout

    B, cond = request.batch_size, request.condition
    opts = request.options
    n_prefix = int(codec.prefix_length)
    carried = 0 if request.forced is None else max(0, int(request.forced.shape[2]) - n_prefix)
    max_tokens = opts.get("max_tokens")
    n = request.n_frames if max_tokens is None else token_budget(codec, 0.0, max_tokens) + carried
    sampling = dataclasses.replace(request.sampling, use_eos=True, min_frames=n_prefix + MIN_MUSIC_TOKENS + carried)
    forced = merge_forced(layout.forced_codes(cond), request.forced, forced_prefix(codec, opts.get("attributes"), B))
    controller = None
    if codec.bar_controlled and videos is not None:
        spans = spans or [(0.0, float(s)) for s in (request.seconds.tolist() if request.seconds is not None else [])]
        cuts = [video_cuts(v, t0, t1) for v, (t0, t1) in zip(videos, spans)]
        density = None
        if codec.cfg.bar_density and isinstance(layout, AttributeHeadLayout):
            density = layout.bar_density(cond)
        controller = codec.bar_controller(cuts, density)
    return dataclasses.replace(request, n_frames=n, sampling=sampling, forced=forced, controller=controller)


def bar_control_tokens(codec: "RemiCodec", tokens: MusicTokens, row: int) -> list[list[str]]:
    """Per bar of a generated row, the control tokens right after its ``Bar_None``."""
    assert tokens.mask is not None
    toks = codec.rows(MusicTokens(tokens.codes[row:row + 1], tokens.mask[row:row + 1], None))[0]
    out = []
    for i, t in enumerate(toks):
        if t == "Bar_None":
            j = i + 1
            while j < len(toks) and toks[j].startswith(("BarCut_", "BarDensity_")):
                j += 1
            out.append(list(toks[i + 1:j]))
    return out


def bar_flags(codec: "RemiCodec", tokens: MusicTokens, row: int) -> list[int]:
    """The per-bar cut control of each bar of a generated row (1 = ``BarCut_1`` after its ``Bar_None``)."""
    return [int(c[0] == "BarCut_1") for c in bar_control_tokens(codec, tokens, row) if c and c[0].startswith("BarCut_")]


def bar_densities(codec: "RemiCodec", tokens: MusicTokens, row: int) -> list[int | None]:
    """The density class written after each ``Bar_None`` of a generated row (None where there is none)."""
    out: list[int | None] = []
    for c in bar_control_tokens(codec, tokens, row):
        d = [t for t in c if t.startswith("BarDensity_")]
        out.append(int(d[0].split("_", 1)[1]) if d else None)
    return out


def bar_control_meta(codec: "RemiCodec", tokens: MusicTokens, row: int) -> dict[str, Any]:
    """What a clip's json records of its per-bar controls: ``bar_cuts`` and/or ``bar_density`` per bar."""
    out: dict[str, Any] = {}
    if codec.cfg.bar_controls:
        out["bar_cuts"] = bar_flags(codec, tokens, row)
    if codec.cfg.bar_density:
        out["bar_density"] = bar_densities(codec, tokens, row)
    return out
