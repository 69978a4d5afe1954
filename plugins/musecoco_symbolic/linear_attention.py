"""Causal linear attention in pure PyTorch (MuseCoco's fast-transformers ``CausalLinearAttention``).

With the feature map phi(x) = elu(x) + 1, the output at position i is::

    out_i = phi(q_i) . sum_{j<=i} phi(k_j) v_j^T  /  (phi(q_i) . sum_{j<=i} phi(k_j) + eps)

Training runs the whole sequence at once: within chunks of ``chunk`` positions a masked
(lower-triangular) product, across chunks the running sums (``chunk=0``: one cumulative sum over the
whole sequence, which materialises ``[B, H, S, d_k, d_v]``). Generation keeps the running sums
``kv [B, H, d_k, d_v]`` and ``z [B, H, d_k]`` per layer: O(1) memory and time per new token.
Computed in float32 (upstream casts to float for its CUDA kernel too).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 (positive features)."""
    return F.elu(x) + 1.0


def causal_linear_attention(q: Tensor, k: Tensor, v: Tensor, kv: Optional[Tensor] = None, z: Optional[Tensor] = None,
                            chunk: int = 64, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """``q, k [B, H, S, d_k]`` (already feature-mapped), ``v [B, H, S, d_v]``, running sums ``kv``/``z``
    of earlier positions (None: none) -> (out ``[B, H, S, d_v]``, new ``kv``, new ``z``)."""
    B, H, S, dk = q.shape
    dv = v.shape[-1]
    if kv is None or z is None:
        kv = q.new_zeros(B, H, dk, dv)
        z = q.new_zeros(B, H, dk)
    if chunk <= 0:  # one cumulative sum over the whole sequence
        kv_s = torch.einsum("bhsd,bhse->bhsde", k, v).cumsum(2) + kv[:, :, None]  # [B, H, S, dk, dv]
        z_s = k.cumsum(2) + z[:, :, None]  # [B, H, S, dk]
        num = torch.einsum("bhsd,bhsde->bhse", q, kv_s)
        den = torch.einsum("bhsd,bhsd->bhs", q, z_s)
        return num / (den[..., None] + eps), kv_s[:, :, -1], z_s[:, :, -1]
    outs = []
    for s in range(0, S, chunk):
        qc, kc, vc = q[:, :, s:s + chunk], k[:, :, s:s + chunk], v[:, :, s:s + chunk]
        a = torch.tril(qc @ kc.transpose(-1, -2))  # [B, H, C, C] causal scores within the chunk
        num = qc @ kv + a @ vc  # [B, H, C, dv]
        den = (qc @ z[..., None])[..., 0] + a.sum(-1)  # [B, H, C]
        outs.append(num / (den[..., None] + eps))
        kv = kv + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(2)
    return torch.cat(outs, dim=2), kv, z


@dataclass
class LinearAttentionCache:
    """Generation state of the ``musecoco`` backbone: per layer the running sums ``(kv, z)``, plus how
    many positions were seen and where the music starts (for the positions). Its size does not grow
    with the sequence."""

    n_layers: int
    states: list[Optional[tuple[Tensor, Tensor]]] = field(default_factory=list)
    seen: int = 0
    music_start: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.states:
            self.states = [None] * self.n_layers

    def get_seq_length(self) -> int:
        return self.seen

    def nbytes(self) -> int:
        """Bytes held (constant in the sequence length)."""
        return sum(t.numel() * t.element_size() for s in self.states if s is not None for t in s)

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (e.g. finished rows dropped, or a beam reorder)."""
        self.states = [None if s is None else (s[0][index], s[1][index]) for s in self.states]
