"""The music part of a sequence, shared by every layout: delay pattern, input embeddings, labels.

With prefix length P and delayed music columns ``c = 0 .. S_m - 1`` (``S_m = T + max(delays)``), the
sequence is ``[prefix (P)] [music col 0] … [music col S_m-1]``. Labels are next-token targets: the
last prefix position predicts column 0, column ``c`` predicts column ``c + 1``, and the last real
column predicts EOS on codebook 0 (when ``eos``). Positions without a target hold IGNORE_INDEX.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..codecs.delay import apply_delays, delay_mask
from ..components import TokenLM
from ..types import IGNORE_INDEX, MusicTokens

DELAY_PAD = 0  # input code at delayed positions for backbones without a special token; never a label


def delay_pad(backbone: TokenLM) -> int:
    """Input code at delayed (not yet started / finished) positions: the backbone's ``special_id`` when it
    has one (MusicGen's id = cardinality, as upstream), else :data:`DELAY_PAD`."""
    return DELAY_PAD if backbone.special_id is None else int(backbone.special_id)


@dataclass
class MusicPart:
    embeds: Tensor  # [B, S_m, D] input embeddings of the delayed music columns
    mask: Tensor  # [B, S_m] bool, True = a real column (attend)
    targets: Tensor  # [B, K, S_m + 1] label for the position *before* each column (col 0 .. S_m, S_m = EOS)
    delayed: Tensor  # [B, K, S_m] delayed codes


def effective_delays(delays: Sequence[int], n_codebooks: int) -> list[int]:
    """The configured delays, or all zeros when none are configured."""
    return list(delays) if delays else [0] * n_codebooks


def build_music_part(backbone: TokenLM, music: MusicTokens, delays: Sequence[int], eos: bool) -> MusicPart:
    """Delay, embed and label music tokens ``[B, K, T]`` (rows may have different lengths via ``music.mask``)."""
    codes, B, K, T = music.codes, *music.codes.shape
    d = effective_delays(delays, K)
    maxd = max(d)
    assert music.mask is not None
    lengths = music.mask.long().sum(dim=1)  # [B]
    pad = delay_pad(backbone)
    delayed = apply_delays(codes, d, pad)  # [B, K, S_m]
    S_m = T + maxd
    valid = torch.stack([torch.nn.functional.pad(delay_mask(K, int(n), d, codes.device), (0, T - int(n)))
                         for n in lengths])  # [B, K, S_m]
    targets = torch.full((B, K, S_m + 1), IGNORE_INDEX, dtype=torch.long, device=codes.device)
    targets[:, :, :S_m] = torch.where(valid, delayed, torch.full_like(delayed, IGNORE_INDEX))
    if eos:
        eos_id = backbone.eos_id
        if eos_id is None:
            raise ValueError(f"{type(backbone).__name__} has no eos_id; set layout.train_eos=false")
        targets[torch.arange(B), 0, lengths + maxd] = eos_id
    col_mask = torch.arange(S_m, device=codes.device)[None] < (lengths + maxd)[:, None]  # [B, S_m]
    embeds = backbone.embed(torch.where(valid, delayed, torch.full_like(delayed, pad)))  # [B, S_m, D]
    return MusicPart(embeds, col_mask, targets, delayed)

