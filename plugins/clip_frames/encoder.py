"""``clip``: per-frame CLIP features as the condition (the baseline encoder).

Every local frame goes through a frozen transformers ``CLIPVisionModel``; the condition is either all
patch tokens of each frame (``last_hidden_state``, 1 + (size/patch)^2 tokens per frame), the pooled
CLS token (``cls``: ``pooler_output``, post-layernorm applied) or the mean of the patch tokens
(``mean``). Every token carries its frame's presentation time.

Weights: ``weights=/path/to/dir`` loads a local transformers CLIP directory (a ``CLIPVisionModel`` or
a full ``CLIPModel``) with ``local_files_only``; with no weights the model is built at random from the
tiny ``CLIPVisionConfig`` fields below (the embedded default, no download).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor

from vidmusic_core import CLIP_MEAN, CLIP_STD, Condition, ConditionEncoder, ConfigError, FrameSpec, Frames, normalize_frames

OUTPUTS = ("last_hidden_state", "cls", "mean")


class ClipFramesEncoder(ConditionEncoder):
    """Frames ``[B, T_v, H, W, 3]`` -> Condition ``[B, T_v * P', D]`` (P' = 50, 1 or 1 tokens per frame)."""

    @dataclass
    class Config:
        weights: Optional[str] = None  # local transformers CLIP directory; None = random tiny model
        output: str = "last_hidden_state"  # last_hidden_state | cls | mean
        fps: float = 2.0
        image_size: int = 224  # ignored when weights are given (the checkpoint's size is used)
        patch_size: int = 32
        hidden_size: int = 64
        num_hidden_layers: int = 2
        num_attention_heads: int = 4
        intermediate_size: int = 128
        seed: int = 0  # initialisation of the random tiny model

    def __init__(self, cfg: "ClipFramesEncoder.Config | None" = None) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel  # heavy import, only when built

        self.cfg = cfg = cfg or self.Config()
        if cfg.output not in OUTPUTS:
            raise ConfigError(f"encoder.output={cfg.output!r} is not one of {', '.join(OUTPUTS)}")
        if cfg.weights:
            self.clip = _load_local_clip(cfg.weights)
        else:
            vcfg = CLIPVisionConfig(
                hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                image_size=cfg.image_size, patch_size=cfg.patch_size,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                self.clip = CLIPVisionModel(vcfg)
        self.clip.requires_grad_(False).eval()
        vc = self.clip.config
        self.image_size = int(vc.image_size)
        self.tokens_per_frame = 1 + (self.image_size // int(vc.patch_size)) ** 2 if cfg.output == "last_hidden_state" else 1
        self.dim = int(vc.hidden_size)
        self.frame_spec = FrameSpec(fps=cfg.fps, n_global=0, size=self.image_size, resize="squash",
                                    mean=CLIP_MEAN, std=CLIP_STD)

    def train(self, mode: bool = True) -> "ClipFramesEncoder":
        super().train(mode)
        self.clip.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        """CLIP outputs per local frame: ``{"clip": [B, T_v, P', D]}``."""
        B, T = frames.local.shape[:2]
        x = frames.local.reshape(B * T, *frames.local.shape[2:])  # [B*T_v, H, W, 3]
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            x = _resize_u8(x, self.image_size)
        dtype = next(self.clip.parameters()).dtype
        pixels = normalize_frames(x, self.frame_spec.mean, self.frame_spec.std, dtype)  # [B*T_v, 3, S, S]
        out = self.clip(pixel_values=pixels)
        if self.cfg.output == "last_hidden_state":
            feats = out.last_hidden_state  # [B*T_v, P, D]
        elif self.cfg.output == "cls":
            feats = out.pooler_output[:, None]  # [B*T_v, 1, D]
        else:
            feats = out.last_hidden_state[:, 1:].mean(dim=1, keepdim=True)  # [B*T_v, 1, D]
        return {"clip": feats.reshape(B, T, feats.shape[1], feats.shape[2]).float()}

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        if frames is None:
            raise ConfigError("clip encoder needs the frames' times (pass frames with the cached features)")
        feats = features["clip"]  # [B, T_v, P', D]
        B, T, P, D = feats.shape
        tokens = feats.reshape(B, T * P, D)
        times = frames.local_times.to(tokens.device).float().repeat_interleave(P, dim=1)  # [B, T_v*P']
        assert frames.local_mask is not None
        mask = frames.local_mask.to(tokens.device).repeat_interleave(P, dim=1)
        return Condition(tokens=tokens, mask=mask, times=times)

    def feature_config(self) -> dict[str, object]:
        c = self.cfg
        return {"weights": c.weights, "output": c.output, "image_size": self.image_size,
                **({} if c.weights else {"patch_size": c.patch_size, "hidden_size": c.hidden_size,
                                         "num_hidden_layers": c.num_hidden_layers, "seed": c.seed,
                                         "num_attention_heads": c.num_attention_heads,
                                         "intermediate_size": c.intermediate_size})}


def _load_local_clip(path: str) -> torch.nn.Module:
    """A ``CLIPVisionModel`` from a local directory (a vision-only or full CLIP checkpoint), offline."""
    from pathlib import Path

    from transformers import CLIPVisionModel

    d = Path(path)
    if not (d / "config.json").is_file():
        raise ConfigError(
            f"encoder.weights={path!r}: expected a local transformers CLIP directory with config.json "
            f"(e.g. written by save_pretrained); vidmusic never downloads weights"
        )
    return CLIPVisionModel.from_pretrained(str(d), local_files_only=True)


def _resize_u8(x: Tensor, size: int) -> Tensor:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, size, size, 3]`` (bilinear, antialiased; aspect not kept)."""
    y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear",
                                        antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
