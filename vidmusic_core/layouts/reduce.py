"""Condition token reduction and time resampling (shared by the layouts).

All functions keep the whole clip in view: they pool tokens, they never cut the sequence.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..types import Condition

REDUCE_MODES = ("none", "frame_mean", "frame_first", "rate")


def group_by_time(cond: Condition) -> Condition:
    """Mean-pool the tokens that share a time (one group per video frame): ``[B, N, D] -> [B, U, D]``.

    ``U`` is the largest number of distinct token times in a row; shorter rows are padded (mask False).
    Works whatever the token order inside a frame (e.g. LSTV's local and cross-attended halves).
    """
    B, N, D = cond.tokens.shape
    out_tokens, out_times = [], []
    for b in range(B):
        keep = cond.mask[b]
        t = cond.times[b][keep]
        x = cond.tokens[b][keep]
        uniq, inv = torch.unique(t, sorted=True, return_inverse=True)  # [U], [n]
        summed = torch.zeros(len(uniq), D, dtype=x.dtype, device=x.device).index_add_(0, inv, x)
        counts = torch.bincount(inv, minlength=len(uniq)).clamp(min=1).to(x.dtype)[:, None]
        out_tokens.append(summed / counts)
        out_times.append(uniq)
    U = max(1, max(len(t) for t in out_times))
    tokens = cond.tokens.new_zeros(B, U, D)
    times = cond.times.new_zeros(B, U)
    mask = torch.zeros(B, U, dtype=torch.bool, device=cond.tokens.device)
    for b in range(B):
        n = len(out_times[b])
        tokens[b, :n], times[b, :n], mask[b, :n] = out_tokens[b], out_times[b], True
    null = None
    if cond.null_tokens is not None:  # the null condition pools the same way
        null = group_by_time(Condition(cond.null_tokens.expand(B, N, D), cond.mask, cond.times)).tokens
    return Condition(tokens, mask, times, null)


def first_token_per_time(cond: Condition) -> Condition:
    """Keep the first token of each time group (e.g. the CLS token of each CLIP frame)."""
    B, N, D = cond.tokens.shape
    first = torch.ones_like(cond.mask)
    first[:, 1:] = cond.times[:, 1:] != cond.times[:, :-1]
    keep = first & cond.mask
    n = int(keep.sum(dim=1).max().clamp(min=1))
    idx = torch.zeros(B, n, dtype=torch.long, device=cond.tokens.device)
    mask = torch.zeros(B, n, dtype=torch.bool, device=cond.tokens.device)
    for b in range(B):
        pos = keep[b].nonzero().flatten()
        idx[b, : len(pos)], mask[b, : len(pos)] = pos, True
    take = idx[..., None].expand(B, n, D)
    null = None
    if cond.null_tokens is not None:
        nt = cond.null_tokens.expand(B, -1, -1)
        null = nt.gather(1, take)
    return Condition(cond.tokens.gather(1, take), mask, cond.times.gather(1, idx), null)


def pool_to_rate(cond: Condition, rate: float) -> Condition:
    """Average tokens into bins of ``1 / rate`` seconds (by token time): ``[B, N, D] -> [B, ceil(dur*rate), D]``."""
    if rate <= 0:
        raise ValueError(f"pool rate must be > 0, got {rate}")
    B, N, D = cond.tokens.shape
    span = float(cond.times.masked_fill(~cond.mask, 0).max()) if cond.mask.any() else 0.0
    n_bins = max(1, int(span * rate) + 1)
    bins = (cond.times * rate).floor().long().clamp(0, n_bins - 1)  # [B, N]

    def pool(x: Tensor) -> Tensor:
        w = cond.mask.to(x.dtype)[..., None]
        summed = x.new_zeros(B, n_bins, D).scatter_add_(1, bins[..., None].expand(B, N, D), x * w)
        count = x.new_zeros(B, n_bins, 1).scatter_add_(1, bins[..., None], w)
        return summed / count.clamp(min=1)

    count = torch.zeros(B, n_bins, device=cond.tokens.device).scatter_add_(1, bins, cond.mask.float())
    times = (torch.arange(n_bins, device=cond.tokens.device, dtype=cond.times.dtype) / rate).expand(B, n_bins)
    null = pool(cond.null_tokens.expand(B, N, D).to(cond.tokens)) if cond.null_tokens is not None else None
    return Condition(pool(cond.tokens), count > 0, times.clone(), null)


def clip_mean(cond: Condition) -> Tensor:
    """The mean of each row's valid tokens: ``[B, N, D] -> [B, D]`` (a clip-level summary of the video)."""
    m = cond.mask[..., None].to(cond.tokens.dtype)  # [B, N, 1]
    return (cond.tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def reduce_condition(cond: Condition, mode: str, rate: float = 2.0) -> Condition:
    """``none`` | ``frame_mean`` (one token per frame, mean) | ``frame_first`` (first/CLS token per frame)
    | ``rate`` (bins of 1/rate seconds)."""
    if mode == "none":
        return cond
    if mode == "frame_mean":
        return group_by_time(cond)
    if mode == "frame_first":
        return first_token_per_time(cond)
    if mode == "rate":
        return pool_to_rate(cond, rate)
    raise ValueError(f"condition reduction {mode!r}: use none, frame_mean, frame_first or rate")


def resample_to_frames(tokens: Tensor, times: Tensor, mask: Tensor, frame_times: Tensor) -> Tensor:
    """For each music frame time pick the latest condition token at or before it (sample-and-hold).

    ``tokens [B, U, D]`` sorted by ``times [B, U]``; ``frame_times [T]`` or ``[B, T]`` -> ``[B, T, D]``.
    Before the first token the first token is used.
    """
    B, U, D = tokens.shape
    ft = frame_times.expand(B, -1) if frame_times.dim() == 1 else frame_times
    t = times.masked_fill(~mask, float("inf")).contiguous()
    idx = torch.searchsorted(t, ft.contiguous().to(t.dtype), right=True) - 1  # [B, T]
    idx = idx.clamp(0, U - 1)
    return tokens.gather(1, idx[..., None].expand(B, idx.shape[1], D))
