"""``kad``: Kernel Audio Distance (Chung et al., arXiv 2502.15602; the kadtk toolkit), beside ``fad``.

The unbiased estimate of the squared MMD between the embedding frames of the generated set ``X [m, D]``
and the reference set ``Y [n, D]`` under a Gaussian kernel ``k(a, b) = exp(-|a - b|² / (2 σ²))``::

    KAD = scale · ( Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (n(n-1)) - 2 Σ_{i,j} k(x_i, y_j) / (mn) )

with ``σ`` = the median pairwise distance of the reference frames and ``scale`` = 100, as kadtk's
``calc_kernel_audio_distance`` / ``median_pairwise_distance`` (``SCALE_FACTOR = 100``). No Gaussian is
fitted, so the estimate is unbiased at small n and may be slightly negative for two samples of one
distribution. The embedder and its local weights are those of ``fad`` (``embedder``, ``weights``; a
``"package.module:Class"`` embedder too), so FAD and KAD of one embedder can sit side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from . import Item, MetricError, check_items
from .quality import FAD

SCALE = 100.0  # kadtk SCALE_FACTOR


def median_pairwise_distance(x: np.ndarray) -> float:
    """Median Euclidean distance over all pairs of rows of ``x [n, D]``."""
    from scipy.spatial.distance import pdist

    return float(np.median(pdist(x))) if len(x) > 1 else 0.0


def kernel_audio_distance(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None,
                          scale: float = SCALE) -> float:
    """Unbiased MMD² (Gaussian kernel) between ``x [m, D]`` and ``y [n, D]``, times ``scale``; bandwidth
    defaults to the median pairwise distance of ``y`` (1.0 when that is ~0, as kadtk)."""
    from scipy.spatial.distance import cdist

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise MetricError(f"KAD needs two sets of >= 2 frames [N, D] of one width, got {x.shape} and {y.shape}")
    sigma = median_pairwise_distance(y) if bandwidth is None else float(bandwidth)
    if not np.isfinite(sigma) or sigma < 1e-6:
        sigma = 1.0
    gamma = 1.0 / (2.0 * sigma ** 2)
    m, n = len(x), len(y)
    k_xx = np.exp(-gamma * cdist(x, x, "sqeuclidean"))
    k_yy = np.exp(-gamma * cdist(y, y, "sqeuclidean"))
    k_xy = np.exp(-gamma * cdist(x, y, "sqeuclidean"))
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(scale * (xx + yy - 2.0 * k_xy.mean()))


class KAD(FAD):
    """Kernel Audio Distance (unbiased MMD², kadtk) on the frames of a local embedder."""

    name = "kad"

    @dataclass
    class Config(FAD.Config):
        bandwidth: Optional[float] = None  # None: median pairwise distance of the reference frames

    def __init__(self, cfg: Config | None = None) -> None:
        super().__init__(cfg)
        if self.cfg.reference_stats:
            raise ConfigError("metric kad: reference_stats is a FAD option (Gaussian statistics); KAD needs "
                              "the reference audio itself")

    def _frames_of(self, items: Sequence[Item], key: str) -> np.ndarray:
        return np.concatenate([self.frames(self._audio(item, key)) for item in items], axis=0)

    def _audio(self, item: Item, key: str) -> np.ndarray:
        from . import item_audio

        return item_audio(item, self.sample_rate, self.name, key)

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        self._ready()
        if any(item.get("reference_audio") is None for item in items):
            raise MetricError(f"metric {self.name}: give every item a 'reference_audio' (KAD has no "
                              "precomputed-statistics form)")
        x, y = self._frames_of(items, "audio"), self._frames_of(items, "reference_audio")
        return {"kad": kernel_audio_distance(x, y, self.cfg.bandwidth)}

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "estimator": "unbiased MMD^2, gaussian kernel, x100 (kadtk)",
                "bandwidth_rule": "median pairwise distance of the reference frames" if self.cfg.bandwidth is None
                else "fixed"}
