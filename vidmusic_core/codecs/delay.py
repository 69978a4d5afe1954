"""MusicGen's delay pattern: codebook ``k`` is shifted right by ``delays[k]`` frames.

With delays ``(0, 1, 2, 3)`` the backbone predicts, at step ``s``, codebook 0 of frame ``s``, codebook
1 of frame ``s - 1`` … so each coarse code is known before the finer codes of the same frame::

    codes [K=3, T=3]     delayed [K=3, T + 2]
    a0 a1 a2             a0 a1 a2 P  P
    b0 b1 b2      ->     P  b0 b1 b2 P
    c0 c1 c2             P  P  c0 c1 c2        (P = pad_id)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import ShapeError


def _check_delays(delays: Sequence[int], n_codebooks: int, where: str) -> tuple[int, ...]:
    d = tuple(int(x) for x in delays)
    if len(d) != n_codebooks:
        raise ShapeError(f"{where}: {len(d)} delays {list(d)} for {n_codebooks} codebooks; give one delay per codebook")
    if any(x < 0 for x in d):
        raise ShapeError(f"{where}: delays must be >= 0, got {list(d)}")
    return d


def apply_delays(codes: Tensor, delays: Sequence[int], pad_id: int) -> Tensor:
    """``codes [B, K, T]`` -> delayed ``[B, K, T + max(delays)]``; row ``k`` holds ``codes[:, k]`` at
    positions ``delays[k] .. delays[k] + T - 1`` and ``pad_id`` elsewhere."""
    if codes.dim() != 3:
        raise ShapeError(f"apply_delays: codes expected [B, K, T], got shape {list(codes.shape)}")
    b, k, t = codes.shape
    d = _check_delays(delays, k, "apply_delays")
    out = codes.new_full((b, k, t + max(d, default=0)), pad_id)
    for i, di in enumerate(d):
        out[:, i, di:di + t] = codes[:, i]
    return out


def undo_delays(delayed: Tensor, delays: Sequence[int], length: int | None = None) -> Tensor:
    """Inverse of :func:`apply_delays`: delayed ``[B, K, S]`` -> ``codes [B, K, T]``.

    ``T = length`` if given, else ``S - max(delays)`` (the frames for which every codebook is present).
    """
    if delayed.dim() != 3:
        raise ShapeError(f"undo_delays: delayed codes expected [B, K, S], got shape {list(delayed.shape)}")
    b, k, s = delayed.shape
    d = _check_delays(delays, k, "undo_delays")
    t = s - max(d, default=0) if length is None else int(length)
    if t < 0 or t + max(d, default=0) > s:
        raise ShapeError(f"undo_delays: cannot take {t} frames with delays {list(d)} from {s} positions")
    return torch.stack([delayed[:, i, di:di + t] for i, di in enumerate(d)], dim=1)


def delay_mask(n_codebooks: int, length: int, delays: Sequence[int],
               device: torch.device | str | None = None) -> Tensor:
    """Bool ``[K, T + max(delays)]``: True where :func:`apply_delays` puts a real code (not padding)."""
    d = _check_delays(delays, n_codebooks, "delay_mask")
    pos = torch.arange(length + max(d, default=0), device=device)  # [S]
    start = torch.tensor(d, device=device).unsqueeze(1)  # [K, 1]
    return (pos >= start) & (pos < start + length)


__all__ = ["apply_delays", "delay_mask", "undo_delays"]
