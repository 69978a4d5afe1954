"""``colour_stats``: each frame's mean and standard deviation of R, G, B, projected to ``dim``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from vidmusic_core import Condition, ConditionEncoder, FrameSpec, Frames


class ColourStatsEncoder(ConditionEncoder):
    """Frames ``[B, T_v, H, W, 3]`` -> Condition ``[B, T_v, dim]`` (one token per frame)."""

    @dataclass
    class Config:
        fps: float = 4.0
        size: int = 32
        dim: int = 16

    def __init__(self, cfg: "ColourStatsEncoder.Config") -> None:
        super().__init__()
        self.cfg = cfg
        self.frame_spec = FrameSpec(fps=cfg.fps, size=cfg.size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.dim = cfg.dim
        self.proj = nn.Linear(6, cfg.dim)  # the trainable part

    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        x = frames.local.float() / 255.0  # [B, T_v, H, W, 3]
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=-1)  # [B, T_v, 6]
        return {"stats": stats}

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        assert frames is not None and frames.local_mask is not None
        tokens = self.proj(features["stats"])  # [B, T_v, dim]
        return Condition(tokens=tokens, mask=frames.local_mask, times=frames.local_times.float())
