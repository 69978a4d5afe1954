"""``none``: no video conditioning — one zero token per clip, for text-to-music models (e.g. an imported
InspireMusic) so they load and generate through the same model directory and path as video models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from ..components import ConditionEncoder
from ..types import Condition, FrameSpec, Frames


@dataclass
class BlankConfig:
    """No options that change the condition; ``fps`` / ``size`` only keep the (unused) frame decoding cheap."""

    fps: float = 1.0
    size: int = 8


class BlankEncoder(ConditionEncoder):
    """Any video -> ``tokens [B, 1, 1]`` of zeros (``dim`` 1), mask True, time 0."""

    Config = BlankConfig

    def __init__(self, cfg: BlankConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or BlankConfig()
        self.frame_spec = FrameSpec(fps=cfg.fps, size=cfg.size)
        self.dim = 1

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        B = frames.batch_size if frames is not None else 1
        dev = frames.local.device if frames is not None else torch.device("cpu")
        return Condition(torch.zeros(B, 1, 1, device=dev), torch.ones(B, 1, dtype=torch.bool, device=dev),
                         torch.zeros(B, 1, device=dev))
