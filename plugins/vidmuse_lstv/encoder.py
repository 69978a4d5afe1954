"""``lstv``: VidMuse's long-short-term visual module (LSTV-M) as a vidmusic condition encoder.

Mirrors ``LMModel.__init__`` / ``compute_video_emb`` of ZeyueT/VidMuse @1e9296e
(``audiocraft/models/lm.py`` L269-386): the same sub-module names, so that the visual part of a VidMuse
``best_state`` loads 1:1 (see ``importer.py``). Our own code, not a copy (upstream is CC BY-NC).

Per video: frozen CLIP ``last_hidden_state`` of every local frame (``fps`` over the window) and of
``n_global`` frames over the whole video -> + a learned [1, P, C] position embedding per branch -> a
per-frame transformer per branch -> one cross-attention (queries: local tokens, keys/values: global
tokens) -> ``visual_feature_proj`` Linear(C -> out_dim). One token per CLIP token of each local frame:
N = T_v * P (ViT-B/32 at 2 fps: P = 50, so 100 tokens per second; 30 s -> [B, 3000, 1536]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from vidmusic_core import (
    CLIP_MEAN,
    CLIP_STD,
    Condition,
    ConditionEncoder,
    ConfigError,
    FrameSpec,
    Frames,
    ShapeError,
    check_shapes,
    normalize_frames,
)

from .modules import CrossAttention, TemporalTransformer

SAMPLINGS = ("vidmuse", "timestamps")
NULLS = ("black", "zeros")
CLIP_CHUNK = 128  # frames per CLIP call (bounds activation memory for long videos; no effect on results)


@dataclass
class LSTVConfig:
    """Options of the ``lstv`` encoder. Defaults: upstream behaviour with a tiny random CLIP (CPU toy runs).

    ``Config.vidmuse()`` gives the released model's shapes (CLIP ViT-B/32, 24 heads, 1536 out).
    """

    # frames (FrameSpec)
    fps: float = 2.0  # local frames per second over the window
    n_global: int = 32  # frames over the whole video (upstream: 32 at inference, 64 in training)
    sampling: str = "vidmuse"  # "vidmuse": every ceil(native_fps/fps)-th frame (upstream); "timestamps": exact fps
    # frozen CLIP vision tower; clip_weights = a local transformers CLIP directory (then the clip_* shape
    # fields below are ignored and read from that directory); None = random weights of the shape below
    clip_weights: Optional[str] = None
    clip_hidden: int = 48  # C (ViT-B/32: 768)
    clip_layers: int = 2  # (12)
    clip_heads: int = 2  # (12)
    clip_mlp: int = 96  # (3072)
    clip_image_size: int = 64  # frame side in pixels (224); P = (image/patch)^2 + 1 tokens per frame
    clip_patch_size: int = 32  # (32)
    clip_projection_dim: int = 16  # (512) unused by LSTV, kept so upstream's visual_projection loads
    # trainable LSTV
    heads: int = 2  # per-frame transformer heads (upstream: the LM's num_heads; 24 for medium)
    dim_head: int = 64
    mlp_ratio: int = 4  # upstream: the LM's hidden_scale
    depth: int = 2
    cross_heads: int = 3  # must divide clip_hidden
    out_dim: int = 64  # D = backbone width (1536 for VidMuse medium)
    null: str = "black"  # CFG null: "black" = encoding of an all-black video (upstream); "zeros"
    return_features: bool = False  # also return the pre-projection [B, N, C] as extras["video_hidden"]

    @classmethod
    def vidmuse(cls, **overrides: Any) -> "LSTVConfig":
        """The released VidMuse (MusicGen-medium size) shapes, random CLIP unless ``clip_weights``."""
        base: dict[str, Any] = dict(clip_hidden=768, clip_layers=12, clip_heads=12, clip_mlp=3072,
                                    clip_image_size=224, clip_patch_size=32, clip_projection_dim=512,
                                    heads=24, out_dim=1536)
        base.update(overrides)
        return cls(**base)


def build_clip(cfg: LSTVConfig) -> nn.Module:
    """A frozen transformers ``CLIPVisionModelWithProjection``: from ``cfg.clip_weights`` or random."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection  # lazy: ~4 s import

    if cfg.clip_weights:
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(cfg.clip_weights, local_files_only=True)
        except Exception as exc:  # OSError / ValueError from transformers
            raise ConfigError(f"encoder.clip_weights={cfg.clip_weights!r}: cannot load a CLIP vision model "
                              f"from it ({exc}). Point it at a local transformers CLIP directory "
                              f"(config.json + weights), e.g. a copy of openai/clip-vit-base-patch32.") from exc
    else:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=cfg.clip_hidden, num_hidden_layers=cfg.clip_layers, num_attention_heads=cfg.clip_heads,
            intermediate_size=cfg.clip_mlp, image_size=cfg.clip_image_size, patch_size=cfg.clip_patch_size,
            projection_dim=cfg.clip_projection_dim))
    model.eval()
    model.requires_grad_(False)
    return model


class LSTVEncoder(ConditionEncoder):
    """Frames -> Condition ``tokens [B, T_v*P, out_dim]``, ``times``/``mask [B, T_v*P]``.

    Each local frame's P tokens carry that frame's time and mask. ``null_tokens`` ``[1, T_v*P, D]`` is the
    encoding of an all-black video (cached per weight version, no gradient). Frozen part (cacheable):
    ``{"local_hidden": [B, T_v, P, C], "global_hidden": [B, G, P, C]}``.
    """

    Config = LSTVConfig

    def __init__(self, cfg: LSTVConfig) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        # -- frozen (upstream: LMModel.visual_encoder_model, loaded from openai/clip-vit-base-patch32)
        self.visual_encoder_model = build_clip(cfg)
        vc = self.visual_encoder_model.config
        C, P = vc.hidden_size, (vc.image_size // vc.patch_size) ** 2 + 1
        if C % cfg.cross_heads:
            raise ConfigError(f"encoder.cross_heads={cfg.cross_heads} must divide the CLIP width {C}")
        self.width, self.tokens_per_frame = C, P
        # -- trainable, names as upstream LMModel
        mlp = C * cfg.mlp_ratio
        self.local_pos_embedding = nn.Parameter(torch.randn(1, P, C))
        self.local_temporal_transformer = TemporalTransformer(C, cfg.depth, cfg.heads, cfg.dim_head, mlp)
        self.global_pos_embedding = nn.Parameter(torch.randn(1, P, C))
        self.global_temporal_transformer = TemporalTransformer(C, cfg.depth, cfg.heads, cfg.dim_head, mlp)
        self.multi_head_cross_attention = CrossAttention(C, cfg.cross_heads)
        self.visual_feature_proj = nn.Linear(C, cfg.out_dim)

        self.frame_spec = FrameSpec(fps=cfg.fps, n_global=cfg.n_global, size=vc.image_size, resize="squash",
                                    sampling=cfg.sampling, mean=CLIP_MEAN, std=CLIP_STD)
        self.dim = cfg.out_dim
        self._null_cache: dict[tuple[Any, ...], tuple[tuple[int, ...], Tensor]] = {}  # not state

    # ------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "LSTVEncoder":
        super().train(mode)
        self.visual_encoder_model.eval()  # frozen, always in eval mode
        return self

    def feature_config(self) -> dict[str, Any]:
        """What ``frozen_features`` depends on: the CLIP model and the frames (not the trainable part)."""
        vc = self.visual_encoder_model.config
        return dict(clip_weights=self.cfg.clip_weights, clip_hidden=vc.hidden_size,
                    clip_layers=vc.num_hidden_layers, clip_heads=vc.num_attention_heads,
                    clip_mlp=vc.intermediate_size, clip_image_size=vc.image_size, clip_patch_size=vc.patch_size,
                    fps=self.cfg.fps, n_global=self.cfg.n_global, sampling=self.cfg.sampling)

    # -- frozen part -------------------------------------------------------------------------------
    @torch.no_grad()
    def clip_hidden(self, frames_u8: Tensor) -> Tensor:
        """uint8 ``[B, T, H, W, 3]`` -> CLIP ``last_hidden_state`` ``[B, T, P, C]`` (before post-layernorm)."""
        B, T, H, W, _ = frames_u8.shape
        S = self.frame_spec.size
        if (H, W) != (S, S):
            raise ShapeError(f"lstv: frames are {H}x{W} but CLIP expects {S}x{S}; sample them with the "
                             f"encoder's frame_spec (size={S}, resize='squash')")
        p = next(self.visual_encoder_model.parameters())
        x = frames_u8.reshape(B * T, H, W, 3).to(p.device)
        out = [self.visual_encoder_model.vision_model(
                   pixel_values=normalize_frames(x[i:i + CLIP_CHUNK], CLIP_MEAN, CLIP_STD, p.dtype)
               ).last_hidden_state for i in range(0, B * T, CLIP_CHUNK)]  # [(B*T), P, C]
        return torch.cat(out).view(B, T, self.tokens_per_frame, self.width)

    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        """``{"local_hidden": [B, T_v, P, C], "global_hidden": [B, G, P, C]}`` (CLIP, no gradient)."""
        if frames.global_frames is None:
            raise ShapeError(f"lstv needs global frames (Frames.global_frames is None); sample the video with "
                             f"the encoder's frame_spec (n_global={self.frame_spec.n_global})")
        return {"local_hidden": self.clip_hidden(frames.local), "global_hidden": self.clip_hidden(frames.global_frames)}

    # -- trainable part ----------------------------------------------------------------------------
    def lstv(self, local: Tensor, glob: Tensor) -> tuple[Tensor, Tensor]:
        """CLIP states ``[B, T, P, C]``, ``[B, G, P, C]`` -> (``video_emb [B, T*P, D]``, ``video_hidden [B, T*P, C]``)."""
        B, T, P, C = local.shape
        G = glob.shape[1]
        x = self.local_temporal_transformer((local + self.local_pos_embedding).reshape(B * T, P, C))  # [B*T, P, C]
        g = self.global_temporal_transformer((glob + self.global_pos_embedding).reshape(B * G, P, C))  # [B*G, P, C]
        hidden = self.multi_head_cross_attention(x.reshape(B, T * P, C), g.reshape(B, G * P, C))  # [B, T*P, C]
        return self.visual_feature_proj(hidden), hidden

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        """Cached CLIP states (+ times/mask of ``frames``) -> Condition ``[B, T_v*P, D]``."""
        p = self.visual_feature_proj.weight
        local = features["local_hidden"].to(p.device, p.dtype)
        glob = features["global_hidden"].to(p.device, p.dtype)
        dims = check_shapes("lstv", "local_hidden", local, ("B", "T_v", self.tokens_per_frame, self.width))
        check_shapes("lstv", "global_hidden", glob, ("B", "G", self.tokens_per_frame, self.width), dims)
        B, T, P = dims["B"], dims["T_v"], self.tokens_per_frame
        tokens, hidden = self.lstv(local, glob)
        if frames is not None:
            check_shapes("lstv", "frames.local_times", frames.local_times, (B, T))
            times = frames.local_times.to(p.device, torch.float32)
            mask = frames.local_mask.to(p.device)  # type: ignore[union-attr]
        else:  # features alone: nominal times of a clip starting at 0
            times = (torch.arange(T, device=p.device, dtype=torch.float32) / self.cfg.fps).expand(B, T)
            mask = torch.ones(B, T, dtype=torch.bool, device=p.device)
        null = self.null_tokens(T) if self.cfg.null == "black" else None
        extras = {"video_hidden": hidden} if self.cfg.return_features else {}
        return Condition(tokens, mask.repeat_interleave(P, dim=1), times.repeat_interleave(P, dim=1), null, extras)

    # -- CFG null ------------------------------------------------------------------------------
    def null_tokens(self, n_frames: int) -> Tensor:
        """Encoding of an all-black video (zeros before normalisation) with ``n_frames`` local frames: ``[1, n_frames*P, D]``.

        Every black frame gives the same CLIP states, so each local frame gets the same P tokens whatever
        the number of local or global frames (attention over G identical global frames equals attention
        over one). We therefore encode one black frame with one global frame and tile it. Cached until a
        weight changes (optimizer step, ``load_state_dict``); computed without gradient.
        """
        p = self.visual_feature_proj.weight
        key = (p.device, p.dtype)
        version = _param_versions(self)
        hit = self._null_cache.get(key)
        if hit is None or hit[0] != version:
            with torch.inference_mode(False), torch.no_grad():
                S = self.frame_spec.size
                black = self.clip_hidden(torch.zeros(1, 1, S, S, 3, dtype=torch.uint8, device=p.device))
                hit = (version, self.lstv(black.to(p.dtype), black.to(p.dtype))[0])  # [1, P, D]
            self._null_cache[key] = hit
        return hit[1].repeat(1, n_frames, 1)  # [1, n_frames*P, D]


def _param_versions(module: nn.Module) -> tuple[int, ...]:
    """In-place version counters of all parameters (change on optimizer steps and weight loading)."""
    out = []
    for prm in module.parameters():
        out.append(-1 if prm.is_inference() else prm._version)
    return tuple(out)


def _check_config(cfg: LSTVConfig) -> None:
    if cfg.sampling not in SAMPLINGS:
        raise ConfigError(f"encoder.sampling={cfg.sampling!r}: expected one of {', '.join(SAMPLINGS)}")
    if cfg.null not in NULLS:
        raise ConfigError(f"encoder.null={cfg.null!r}: expected one of {', '.join(NULLS)}")
    if cfg.n_global < 1:
        raise ConfigError(f"encoder.n_global={cfg.n_global}: lstv needs at least one global frame")
    if cfg.fps <= 0:
        raise ConfigError(f"encoder.fps={cfg.fps}: must be positive")
    if not cfg.clip_weights and cfg.clip_image_size % cfg.clip_patch_size:
        raise ConfigError(f"encoder.clip_image_size={cfg.clip_image_size} is not a multiple of "
                          f"encoder.clip_patch_size={cfg.clip_patch_size}")
