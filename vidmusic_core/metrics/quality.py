"""Quality metrics: Fréchet distances between the generated set and a reference set.

Both metrics turn every clip into frames of features, pool the frames of a set, fit a Gaussian
(mean ``mu [D]``, covariance ``sigma [D, D]``) and report
``FD = |mu_g - mu_r|² + Tr(sigma_g + sigma_r - 2 (sigma_g sigma_r)^½)``, with the usual numerical fix
(pytorch-fid / fadtk): if ``scipy.linalg.sqrtm`` is not finite, ``eps·I`` is added to both covariances;
a complex square root with an imaginary diagonal above 1e-3 is an error (never a silent NaN).

Reference set: the ``reference_audio`` of the items (at ``reference_sample_rate`` or ``sample_rate``),
or precomputed statistics ``reference_stats`` (an ``.npz`` with ``mu``, ``sigma``, written by
:meth:`FrechetMetric.save_statistics` under the same protocol); its sha256 goes into the protocol, and
``reference_set`` is a free-text description (e.g. "toy test split, seed 0, n=20") stored there too.

``fd_mel``
    Features: log-mel frames, ``log(mel_power + log_offset)`` of ``librosa.feature.melspectrogram`` at
    ``sample_rate`` (16 kHz), ``n_fft`` 1024, hop 256, 64 Slaney mel bands. No weights: a cheap,
    reproducible distribution distance for ablations (not comparable with published FAD numbers).
``fad``
    Features: embeddings of a pluggable audio embedder loaded from a **local** directory ``weights``.
    Built-in ``embedder="clap"``: transformers ``ClapModel.from_pretrained(weights, local_files_only=True)``
    audio tower (``get_audio_features``, the projected L2-normalised 512-d embedding) with the
    checkpoint's own ``ClapFeatureExtractor`` at 48 kHz, on ``chunk_seconds`` windows every
    ``hop_seconds`` (fadtk's CLAP setting: 10 s windows, 1 s hop; a shorter clip is one window,
    repeat-padded by the extractor; ``truncation="fusion"`` for fused checkpoints, else
    ``"rand_trunc"``, which never crops since no window exceeds 10 s). Any other embedder:
    ``embedder="package.module:Class"``, a class
    ``Class(weights: str, device: str)`` with ``sample_rate: int`` and ``embed(audio [L]) -> [N, D]``.
    Without ``weights`` (or with a directory that does not load) ``compute`` raises
    :class:`MissingWeightsError` naming what to provide. The protocol holds the sha256 of the weights.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..components import Metric
from . import Item, MetricError, MissingWeightsError, base_protocol, check_items, check_positive, item_audio

#: config fields kept out of the protocol (local paths, device); the files enter it as sha256
MACHINE_FIELDS = ("reference_stats", "weights", "device")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz")


def gaussian_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``frames [N, D]`` -> ``(mu [D], sigma [D, D])`` (unbiased covariance)."""
    if frames.ndim != 2 or frames.shape[0] < 2:
        raise MetricError(f"Fréchet statistics need at least 2 feature frames [N, D], got shape {frames.shape}")
    return frames.mean(axis=0), np.cov(frames, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MetricError(f"Fréchet distance of statistics with different shapes: mu {mu1.shape} vs {mu2.shape}, "
                          f"sigma {sigma1.shape} vs {sigma2.shape} (different embedders or settings?)")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricError(f"Fréchet distance: sqrtm has an imaginary component "
                              f"{np.max(np.abs(covmean.imag)):.3g} (degenerate covariances?)")
        covmean = covmean.real
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    if not np.isfinite(fd):
        raise MetricError("Fréchet distance is not finite (non-finite features?)")
    return max(fd, 0.0)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """sha256 of a weights file, or of a directory's weight files (``name:sha256`` lines, sorted)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise MissingWeightsError(f"{p} holds no weight file ({', '.join(WEIGHT_SUFFIXES)})")
    lines = "".join(f"{f.relative_to(p).as_posix()}:{file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


class FrechetMetric(Metric):
    """Shared part of ``fd_mel`` and ``fad``: per-clip feature frames -> Gaussian stats -> FD."""

    version = 1
    needs = frozenset({"audio", "reference"})
    libs: tuple[str, ...] = ("librosa", "scipy")
    cfg: Any

    @property
    def sample_rate(self) -> int:
        return int(self.cfg.sample_rate)

    def frames(self, audio: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Mono audio ``[L]`` at :attr:`sample_rate` -> feature frames ``[N, D]``."""
        raise NotImplementedError

    def statistics(self, items: Sequence[Item], key: str = "audio") -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of the frames of ``item[key]`` over ``items`` (``key``: audio | reference_audio)."""
        check_items(self.name, items)
        frames = [self.frames(item_audio(item, self.sample_rate, self.name, key)) for item in items]
        return gaussian_stats(np.concatenate(frames, axis=0))

    def save_statistics(self, path: str | Path, items: Sequence[Item], key: str = "audio") -> Path:
        """Write the ``(mu, sigma)`` of ``items`` to an ``.npz`` usable as ``reference_stats``."""
        mu, sigma = self.statistics(items, key)
        path = Path(path)
        np.savez(path, mu=mu, sigma=sigma, protocol=np.array(json.dumps(self.protocol())))
        return path

    def _reference(self, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
        stats = self.cfg.reference_stats
        if stats:
            if not Path(stats).is_file():
                raise MetricError(f"metric {self.name}: reference_stats={stats!r} does not exist")
            with np.load(stats, allow_pickle=False) as z:
                if "mu" not in z or "sigma" not in z:
                    raise MetricError(f"metric {self.name}: {stats} lacks 'mu'/'sigma' arrays")
                return z["mu"], z["sigma"]
        if any(item.get("reference_audio") is None for item in items):
            raise MetricError(f"metric {self.name}: give every item a 'reference_audio' or set reference_stats")
        return self.statistics(items, "reference_audio")

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        self._ready()
        mu_g, sigma_g = self.statistics(items, "audio")
        mu_r, sigma_r = self._reference(items)
        return {self.name: frechet_distance(mu_g, sigma_g, mu_r, sigma_r)}

    def _ready(self) -> None:
        """Hook: load what ``frames`` needs (raise a clear error if it cannot)."""

    def protocol(self) -> dict[str, Any]:
        stats = self.cfg.reference_stats
        return {**base_protocol(self.name, self.version, self.cfg, self.libs, exclude=MACHINE_FIELDS),
                "pooling": "all frames",
                "reference_stats_sha256": file_sha256(stats) if stats and Path(stats).is_file() else None}


class FDMel(FrechetMetric):
    """Fréchet distance of log-mel frame statistics, generated vs reference set (no weights)."""

    name = "fd_mel"

    @dataclass
    class Config:
        sample_rate: int = 16000
        n_fft: int = 1024
        hop_length: int = 256
        n_mels: int = 64
        log_offset: float = 1e-5
        reference_set: str = ""  # free-text description of the reference set, stored in the protocol
        reference_stats: Optional[str] = None  # .npz with mu, sigma (else the items' reference_audio)

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        c = self.cfg
        check_positive(self.name, sample_rate=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
                       n_mels=c.n_mels, log_offset=c.log_offset)

    def frames(self, audio: np.ndarray) -> np.ndarray:
        import librosa

        c = self.cfg
        mel = librosa.feature.melspectrogram(y=audio, sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
                                             n_mels=c.n_mels, power=2.0)  # [M, T]
        return np.log(mel + c.log_offset).T  # [T, M]

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "features": "log(melspectrogram power + log_offset), slaney mel, hann"}


# --------------------------------------------------------------------------------------------------
# FAD with a pluggable embedder
# --------------------------------------------------------------------------------------------------
class ClapEmbedder:
    """transformers CLAP audio tower from a local directory -> ``[N, 512]`` window embeddings."""

    def __init__(self, weights: str, device: str = "cpu", chunk_seconds: float = 10.0, hop_seconds: float = 1.0,
                 batch_size: int = 8) -> None:
        from transformers import ClapFeatureExtractor, ClapModel

        self.model = ClapModel.from_pretrained(weights, local_files_only=True).to(device).eval()
        self.extractor = ClapFeatureExtractor.from_pretrained(weights, local_files_only=True)
        self.sample_rate = int(self.extractor.sampling_rate)
        # windows never exceed the extractor's max length, so neither mode crops at random
        self.truncation = "fusion" if getattr(self.model.config.audio_config, "enable_fusion", False) else "rand_trunc"
        self.device, self.chunk, self.hop, self.batch_size = device, chunk_seconds, hop_seconds, batch_size

    def embed(self, audio: np.ndarray) -> np.ndarray:
        import torch

        n, h = int(self.chunk * self.sample_rate), int(self.hop * self.sample_rate)
        chunks = [audio[s:s + n] for s in range(0, max(len(audio) - n, 0) + 1, h)]
        out = []
        for b in range(0, len(chunks), self.batch_size):
            inputs = self.extractor(chunks[b:b + self.batch_size], sampling_rate=self.sample_rate, return_tensors="pt",
                                    truncation=self.truncation, padding="repeatpad")
            with torch.inference_mode():
                emb = self.model.get_audio_features(**{k: v.to(self.device) for k, v in inputs.items()})
            emb = getattr(emb, "pooler_output", emb)  # transformers 5 returns a model output, 4.x a tensor
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out, axis=0)  # [N, D]


EMBEDDERS: dict[str, type] = {"clap": ClapEmbedder}
_WEIGHT_HINTS = {"clap": "a transformers ClapModel directory (config.json, model.safetensors, "
                         "preprocessor_config.json), e.g. a local copy of laion/clap-htsat-unfused or "
                         "laion/larger_clap_music"}


def resolve_embedder(spec: str) -> type:
    """A built-in embedder name or ``"package.module:Class"``."""
    if spec in EMBEDDERS:
        return EMBEDDERS[spec]
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"metric fad: embedder={spec!r} cannot be imported: {exc}") from exc
    raise ConfigError(f"metric fad: unknown embedder {spec!r}; use one of {sorted(EMBEDDERS)} "
                      "or 'package.module:Class'")


class FAD(FrechetMetric):
    """Fréchet Audio Distance with a pluggable embedder loaded from local weights (never downloads)."""

    name = "fad"
    libs = ("librosa", "scipy", "torch", "transformers")

    @dataclass
    class Config:
        embedder: str = "clap"  # a built-in name or "package.module:Class"
        weights: Optional[str] = None  # local directory (or file) of the embedder's weights
        device: str = "cpu"
        chunk_seconds: float = 10.0
        hop_seconds: float = 1.0
        reference_set: str = ""
        reference_stats: Optional[str] = None

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        check_positive(self.name, chunk_seconds=self.cfg.chunk_seconds, hop_seconds=self.cfg.hop_seconds)
        self._cls = resolve_embedder(self.cfg.embedder)
        self._embedder: Any = None
        self._sha: str | None = None

    @property
    def sample_rate(self) -> int:
        self._ready()
        return int(self._embedder.sample_rate)

    def _ready(self) -> None:
        if self._embedder is not None:
            return
        c = self.cfg
        hint = _WEIGHT_HINTS.get(c.embedder, f"the weights that {c.embedder} loads")
        if not c.weights:
            raise MissingWeightsError(f"metric fad: embedder {c.embedder!r} needs local weights; set "
                                      f"weights=/path/to/dir ({hint}). Nothing is downloaded.")
        if not Path(c.weights).exists():
            raise MissingWeightsError(f"metric fad: weights={c.weights!r} does not exist; point it at {hint}.")
        kwargs = {"chunk_seconds": c.chunk_seconds, "hop_seconds": c.hop_seconds} if self._cls is ClapEmbedder else {}
        try:
            self._embedder = self._cls(c.weights, c.device, **kwargs)
        except MetricError:
            raise
        except Exception as exc:  # noqa: BLE001 - report any loader failure with what to provide
            raise MissingWeightsError(f"metric fad: embedder {c.embedder!r} cannot load weights={c.weights!r} "
                                      f"({type(exc).__name__}: {exc}); it needs {hint}.") from exc

    def frames(self, audio: np.ndarray) -> np.ndarray:
        self._ready()
        emb = np.asarray(self._embedder.embed(audio), dtype=np.float64)
        if emb.ndim != 2 or not np.isfinite(emb).all():
            raise MetricError(f"metric fad: embedder {self.cfg.embedder!r} returned {emb.shape} / non-finite "
                              "values; embed(audio) must return finite [N, D]")
        return emb

    def protocol(self) -> dict[str, Any]:
        c = self.cfg
        if self._sha is None and c.weights and Path(c.weights).exists():
            self._sha = weights_sha256(c.weights)
        sr = int(self._embedder.sample_rate) if self._embedder is not None else None
        pre = Path(c.weights) / "preprocessor_config.json" if c.weights else None
        if sr is None and c.embedder == "clap" and pre is not None and pre.is_file():
            sr = json.loads(pre.read_text()).get("sampling_rate")
        return {**super().protocol(), "embedder_class": f"{self._cls.__module__}:{self._cls.__qualname__}",
                "weights_sha256": self._sha, "embedder_sample_rate": sr}
