"""A DiT-style transformer over a sequence of latent frames, conditioned on the flow time by adaLN-zero.

Mirrors the block of facebookresearch/DiT ``models.py`` (``DiTBlock``: ``adaLN_modulation`` = SiLU +
Linear(D, 6 D) giving shift/scale/gate for attention and MLP, zero-initialised so every block starts as
the identity; ``FinalLayer``: adaLN shift/scale + a zero-initialised output Linear; ``TimestepEmbedder``:
sinusoidal features of ``t`` -> MLP), applied to a 1-D sequence as in Stability-AI/stable-audio-tools
``stable_audio_tools/models/transformer.py`` ``TransformerBlock`` (the ``global_cond`` adaLN path, with an
unmodulated pre-norm cross-attention to a context between self-attention and the feed-forward) and
``models/dit.py`` ``DiffusionTransformer``. Differences: DiT's linear gate (stable-audio-tools uses
``sigmoid(1 - gate)``), rotary positions on self-attention only, and a per-row cross-attention ``keep``
flag (0 = attend to nothing: the classifier-free-guidance null, see :mod:`flow_dit.backbone`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of times ``t [B]`` (DiT ``TimestepEmbedder.timestep_embedding``) -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimeEmbedder(nn.Module):
    """Flow time ``t in [0, 1]`` -> ``[B, D]``: sinusoidal features of ``t * scale`` (the scheduler's
    ``timestep = sigma * num_train_timesteps``) through SiLU MLP, as DiT's ``TimestepEmbedder``."""

    def __init__(self, width: int, freq_dim: int, scale: float) -> None:
        super().__init__()
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t * self.scale, self.freq_dim))


def rotary(length: int, dim: int, device: torch.device, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos / sin ``[length, dim]`` of rotary position embeddings (the ``rotate_half`` convention)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv)  # [T, dim / 2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [B, H, T, d]`` by positions (``cos``/``sin`` ``[T, d]``)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention (``F.scaled_dot_product_attention``); self-attention when ``context`` is None."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor | None, key_mask: Tensor,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``x [B, T, D]`` attends to ``context [B, M, D]`` (or itself) where ``key_mask [B, M]`` is True."""
        B, T, D = x.shape
        src = x if context is None else context
        H = self.heads
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)  # [B, H, T, d]
        k, v = self.kv(src).view(B, src.shape[1], 2, H, D // H).permute(2, 0, 3, 1, 4)  # [B, H, M, d] each
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask = key_mask[:, None, None, :]  # [B, 1, 1, M]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """DiT's ``modulate``: ``x [B, T, D] * (1 + scale [B, D]) + shift [B, D]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """adaLN-zero self-attention + (optional) cross-attention + MLP."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads, dropout)
        self.cross_norm = nn.LayerNorm(width, eps=1e-6) if cross else None
        self.cross = Attention(width, heads, dropout) if cross else None
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, ffn), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(ffn, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor, rope: tuple[Tensor, Tensor],
                memory: Tensor | None, memory_mask: Tensor | None, keep: Tensor | None) -> Tensor:
        """``x [B, T, D]``, time embedding ``c [B, D]``, frame ``mask [B, T]``; ``memory [B, M, D]`` with
        ``memory_mask [B, M]`` and per-row ``keep [B]`` (0 = no memory for that row)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), None, mask, rope)
        if self.cross is not None and memory is not None:
            assert memory_mask is not None and keep is not None and self.cross_norm is not None
            safe = memory_mask | ~memory_mask.any(dim=1, keepdim=True)  # a row with no key attends to all, then is zeroed
            y = self.cross(self.cross_norm(x), memory, safe)
            x = x + y * (keep * memory_mask.any(dim=1).to(y.dtype))[:, None, None]
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """DiT's ``FinalLayer``: adaLN shift/scale, then a zero-initialised Linear to the latent channels."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        for lin in (self.linear, self.adaLN_modulation[-1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
