"""The trainable blocks of VidMuse's long-short-term visual module (LSTV-M).

Parameter names mirror upstream so that a VidMuse ``best_state`` loads 1:1 (ZeyueT/VidMuse @1e9296e,
``audiocraft/models/transformer_module.py`` for ``PreNorm``/``Attention``/``FeedForward`` and
``audiocraft/models/lm.py`` for ``Transformer`` and ``MultiHeadCrossAttention``). The code is our own.

Shape letters: B batch (or frames, for the per-frame transformers), L/M sequence lengths, C width.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``; the residual is added by the caller (upstream names ``norm``, ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    """Multi-head self-attention: ``to_qkv`` (no bias) and ``to_out.0`` (``to_out.1`` is dropout).

    Upstream drops ``to_out`` (Identity) when there is one head as wide as the model; so do we.
    """

    def __init__(self, dim: int, heads: int, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout)) if project_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # 3 x [B, L, h*d], heads outermost as upstream
        q, k, v = (t.view(B, L, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # [B, h, L, d]
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, no mask
        y = y.transpose(1, 2).reshape(B, L, -1)  # [B, L, h*d]
        return self.to_out(y)


class FeedForward(nn.Module):
    """``net`` = Linear, exact GELU, Dropout, Linear, Dropout (weights at ``net.0`` and ``net.3``)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TemporalTransformer(nn.Module):
    """Pre-norm transformer: per layer ``x += attn(norm(x)); x += ff(norm(x))``, then a final ``norm``.

    In LSTV it runs on the P tokens of one frame at a time (despite the upstream name "temporal"):
    ``[B*T, P, C] -> [B*T, P, C]``. Names: ``layers.{i}.0`` (attention), ``layers.{i}.1`` (MLP), ``norm``.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, Attention(dim, heads, dim_head, dropout)),
                           PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        for attn, ff in self.layers:  # type: ignore[misc]
            x = x + attn(x)
            x = x + ff(x)
        return self.norm(x)


class CrossAttention(nn.Module):
    """Upstream ``MultiHeadCrossAttention``: queries from ``a`` (local), keys/values from ``b`` (global).

    ``y = norm1(attn(a, b) + a)``; ``out = norm2(final_linear(y) + y)``. ``final_linear`` starts at zero.
    ``[B, L, C], [B, M, C] -> [B, L, C]``; ``heads`` must divide C (VidMuse: 3 heads x 256).
    """

    def __init__(self, dim: int, heads: int = 3) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by its {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.final_linear = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        B, L, C = a.shape
        M = b.shape[1]
        q = self.query(a).view(B, L, self.heads, -1).transpose(1, 2)  # [B, h, L, C/h]
        k = self.key(b).view(B, M, self.heads, -1).transpose(1, 2)  # [B, h, M, C/h]
        v = self.value(b).view(B, M, self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, C)  # [B, L, C]
        y = self.norm1(y + a)
        return self.norm2(self.final_linear(y) + y)
