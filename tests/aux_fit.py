"""Test helper: fit a layout's auxiliary head (``aux_loss``) with Adam."""
from __future__ import annotations

from typing import Any, Iterable

import torch


def fit_aux_loss(layout: Any, params: Iterable[torch.nn.Parameter], cond: Any, music: Any, steps: int,
                 lr: float = 1e-2) -> tuple[float, float]:
    """(loss before, loss after ``steps`` Adam steps) of ``layout.aux_loss(cond, music)``."""
    opt = torch.optim.Adam(params, lr=lr)
    first = float(layout.aux_loss(cond, music).detach())
    for _ in range(steps):
        opt.zero_grad()
        loss = layout.aux_loss(cond, music)
        loss.backward()
        opt.step()
    return first, float(loss.detach())
