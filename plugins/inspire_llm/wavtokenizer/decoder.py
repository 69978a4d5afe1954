"""WavTokenizer's decoder: Vocos ConvNeXt backbone with WavTokenizer's attention blocks + ISTFT head.

Our code; parameter layout of FunAudioLLM/InspireMusic @0aefb55 (Apache-2.0):
``inspiremusic/wavtokenizer/decoder/models.py`` (``VocosBackbone``: ``embed``, ``pos_net`` = ResnetBlock,
ResnetBlock, AttnBlock, ResnetBlock, ResnetBlock, GroupNorm; ``norm``, ``convnext``, ``final_layer_norm``),
``decoder/modules.py`` (``ConvNeXtBlock``, ``AdaLayerNorm``), ``decoder/heads.py`` (``ISTFTHead``: ``out``,
``istft``) and ``decoder/spectral_ops.py`` (``ISTFT`` with its ``window`` buffer). Keys, under
``backbone.`` and ``head.``::

    embed.{weight,bias}  norm.{scale,shift}.weight (AdaLayerNorm) | norm.{weight,bias} (LayerNorm)
    pos_net.{0,1,3,4}.{norm1,conv1,norm2,conv2}.{weight,bias}   pos_net.2.{norm,q,k,v,proj_out}.{weight,bias}
    pos_net.5.{weight,bias}   convnext.{i}.{dwconv,norm…,pwconv1,pwconv2}.*, convnext.{i}.gamma
    final_layer_norm.{weight,bias}        head.out.{weight,bias}   head.istft.window

Inference only: the ResnetBlocks' dropout (0.1 upstream) is an identity here.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)  # upstream Normalize(): 32 groups, so width % 32 == 0


class ResnetBlock(nn.Module):
    """``x + conv2(swish(gn2(conv1(swish(gn1(x))))))`` on ``[B, C, T]`` (k3 convs, no time embedding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm2 = _group_norm(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class AttnBlock(nn.Module):
    """Single-head self-attention over time with 1x1-conv projections: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv1d(channels, channels, 1)
        self.k = nn.Conv1d(channels, channels, 1)
        self.v = nn.Conv1d(channels, channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = (m(h).transpose(1, 2).unsqueeze(1) for m in (self.q, self.k, self.v))  # [B, 1, T, C]
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v, as upstream's bmm
        return x + self.proj_out(a.squeeze(1).transpose(1, 2))


class AdaLayerNorm(nn.Module):
    """LayerNorm (no affine) whose scale/shift are rows of embeddings picked by ``cond_id`` (bandwidth id)."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps, self.dim = eps, dim
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, cond_id: Tensor) -> Tensor:
        return F.layer_norm(x, (self.dim,), eps=self.eps) * self.scale(cond_id) + self.shift(cond_id)


def _norm(dim: int, adanorm: Optional[int]) -> nn.Module:
    return AdaLayerNorm(adanorm, dim) if adanorm else nn.LayerNorm(dim, eps=1e-6)


def _apply_norm(norm: nn.Module, x: Tensor, cond_id: Tensor) -> Tensor:
    return norm(x, cond_id) if isinstance(norm, AdaLayerNorm) else norm(x)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv k7 -> (Ada)LayerNorm -> Linear(D, I) -> GELU -> Linear(I, D) -> x gamma, residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float, adanorm: Optional[int]) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = _norm(dim, adanorm)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale > 0 else None

    def forward(self, x: Tensor, cond_id: Tensor) -> Tensor:
        h = _apply_norm(self.norm, self.dwconv(x).transpose(1, 2), cond_id)  # [B, T, D]
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Features ``[B, C_in, T]`` -> hidden ``[B, T, D]``: embed conv k7, ``pos_net`` (4 ResnetBlocks around
    one AttnBlock, then GroupNorm), (Ada)LayerNorm, ``num_layers`` ConvNeXt blocks, final LayerNorm."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init_value: Optional[float] = None, adanorm_num_embeddings: Optional[int] = None) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, 7, padding=3)
        self.norm = _norm(dim, adanorm_num_embeddings)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, scale, adanorm_num_embeddings)
                                       for _ in range(num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.pos_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim), AttnBlock(dim), ResnetBlock(dim),
                                     ResnetBlock(dim), _group_norm(dim))

    def forward(self, x: Tensor, bandwidth_id: int = 0) -> Tensor:
        cond = torch.tensor([bandwidth_id], device=x.device)
        x = self.pos_net(self.embed(x))  # [B, D, T]
        x = _apply_norm(self.norm, x.transpose(1, 2), cond).transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond)
        return self.final_layer_norm(x.transpose(1, 2))  # [B, T, D]


class ISTFT(nn.Module):
    """Complex spectrogram ``[B, n_fft/2+1, T]`` -> audio ``[B, L]``, Hann window of ``n_fft``.

    ``padding="center"``: ``torch.istft(center=True)``, ``L = (T - 1) * hop``.
    ``padding="same"`` (WavTokenizer's): inverse FFT of every frame, window, overlap-add, divide by the
    summed squared window, and trim ``(n_fft - hop) / 2`` samples from each end, so ``L = T * hop``.
    ``torch.istft`` cannot do this: with ``center=False`` its NOLA check sees the zero envelope at
    sample 0 and refuses, though those samples are trimmed; so this mode does the overlap-add itself
    (``F.fold``). On the samples both can give it equals ``torch.istft(center=True)`` shifted by hop/2.
    """

    def __init__(self, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        if padding not in ("center", "same"):
            raise ValueError(f"ISTFT padding must be 'center' or 'same', got {padding!r}")
        self.n_fft, self.hop, self.padding = n_fft, hop_length, padding
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: Tensor) -> Tensor:
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop, self.n_fft, self.window, center=True)
        T = spec.shape[-1]
        pad = (self.n_fft - self.hop) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]  # [B, n_fft, T]
        size = (T - 1) * self.hop + self.n_fft

        def overlap_add(x: Tensor) -> Tensor:  # [B, n_fft, T] -> [B, size]
            return F.fold(x, (1, size), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]

        y = overlap_add(frames)[:, pad:size - pad]
        env = overlap_add(self.window.square()[None, :, None].expand(1, -1, T))[0, pad:size - pad]
        return y / env.clamp_min(1e-11)


class ISTFTHead(nn.Module):
    """Hidden ``[B, T, D]`` -> audio ``[B, T * hop]`` (``same``): Linear to ``n_fft + 2`` = log-magnitude and
    phase of ``n_fft/2 + 1`` bins; magnitude ``exp`` clipped at 100; ``S = mag * (cos p + i sin p)``."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, padding)

    def spectrogram(self, x: Tensor) -> Tensor:
        """Hidden ``[B, T, D]`` -> complex spectrogram ``[B, n_fft/2 + 1, T]``."""
        mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(mag).clamp(max=1e2)
        return torch.polar(mag, phase)

    def forward(self, x: Tensor) -> Tensor:
        return self.istft(self.spectrogram(x))
