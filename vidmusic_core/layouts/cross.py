"""``cross`` layout: the condition is the cross-attention memory of every backbone layer (MusicGen /
VidMuse). The decoder sequence is only ``[bos] [music col 0] …``; the memory is the (optionally
reduced) condition projected to the backbone width by ``visual_feature_proj`` (VidMuse does this
projection inside its encoder, so ``project: false`` passes LSTV's already-projected tokens through).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..components import MusicBackbone, SequenceLayout, TokenLM
from ..types import BackboneInput, Condition, MusicLatents, MusicOutput
from .music import build_music_part
from .prior import ClipPriorMixin
from .reduce import REDUCE_MODES, reduce_condition


@dataclass
class CrossConfig:
    """``layout.*`` options; ``cond_dim``, ``width``, ``delays`` are wiring filled by the model builder."""

    reduce: str = "none"
    rate: float = 2.0
    project: bool = True
    train_eos: bool = False
    cond_dim: Optional[int] = None
    width: Optional[int] = None
    delays: list[int] = field(default_factory=list)
    frame_rate: Optional[float] = None
    cardinality: Optional[int] = None  # wiring, for clip_prior
    clip_prior: bool = False  # a head predicting the clip's codes from its video, added to the logits (prior.py)
    clip_prior_hidden: int = 256
    own_specials: bool = True


class CrossLayout(ClipPriorMixin, SequenceLayout):
    """Condition as cross-attention memory; the decoder sees only music."""

    Config = CrossConfig

    def __init__(self, cfg: Optional[CrossConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or self.Config()
        if cfg.cond_dim is None or cfg.width is None:
            raise ConfigError("layout: cond_dim and width are unset; build layouts with vidmusic_core.model.build_model")
        if cfg.reduce not in REDUCE_MODES:
            raise ConfigError(f"layout.reduce={cfg.reduce!r}: use one of {', '.join(REDUCE_MODES)}")
        if not cfg.project and cfg.cond_dim != cfg.width:
            raise ConfigError(f"layout.project=false needs encoder dim ({cfg.cond_dim}) == backbone width ({cfg.width})")
        self.visual_feature_proj = nn.Linear(cfg.cond_dim, cfg.width) if cfg.project else None
        self.bos = nn.Parameter(torch.zeros(cfg.width))
        self._init_clip_prior(cfg)

    def memory(self, condition: Condition) -> tuple[Tensor, Tensor]:
        """Cross-attention memory ``[B, M, D]`` and its mask ``[B, M]``."""
        cond = reduce_condition(condition, self.cfg.reduce, self.cfg.rate)
        mem = self.visual_feature_proj(cond.tokens) if self.visual_feature_proj is not None else cond.tokens
        return mem, cond.mask

    def frame_input(self, backbone: MusicBackbone, condition: Condition, n_frames: int,
                    mask: Tensor | None = None) -> BackboneInput:
        """The condition as ``memory [B, M, D]`` for ``n_frames`` latent frames (``inputs_embeds`` are zeros)."""
        mem, mem_mask = self.memory(condition)
        B = mem.shape[0]
        if mask is None:
            mask = torch.ones(B, n_frames, dtype=torch.bool, device=mem.device)
        return BackboneInput(inputs_embeds=mem.new_zeros(B, n_frames, mem.shape[-1]), attention_mask=mask,
                             memory=mem, memory_mask=mem_mask, music_start=0)

    def forward(self, backbone: MusicBackbone, condition: Condition, music: MusicOutput,  # type: ignore[override]
                text: Sequence[str] | None = None, seconds: Tensor | None = None) -> BackboneInput:
        if isinstance(music, MusicLatents):  # a non-autoregressive backbone: memory + the target latents
            inp = self.frame_input(backbone, condition, music.length, music.mask)
            inp.target, inp.target_mask = music.latents, music.mask
            return inp
        assert isinstance(backbone, TokenLM)
        mem, mem_mask = self.memory(condition)
        mp = build_music_part(backbone, music, self.cfg.delays, self.cfg.train_eos)
        B, S_m = mp.mask.shape
        x = torch.cat([self.bos.expand(B, 1, -1).to(mp.embeds.dtype), mp.embeds], dim=1)  # [B, 1 + S_m, D]
        mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), mp.mask], dim=1)
        labels = mp.targets  # [B, K, S_m + 1]: position 0 (bos) predicts column 0
        return BackboneInput(inputs_embeds=x, attention_mask=mask, labels=labels, memory=mem,
                             memory_mask=mem_mask, music_start=1)

    def prompt(self, backbone: TokenLM, condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None, cfg_null: bool = False) -> BackboneInput:
        mem, mem_mask = self.memory(condition)
        B = mem.shape[0]
        return BackboneInput(inputs_embeds=self.bos.expand(B, 1, -1), attention_mask=torch.ones(B, 1, dtype=torch.bool,
                             device=mem.device), memory=mem, memory_mask=mem_mask, music_start=1)


