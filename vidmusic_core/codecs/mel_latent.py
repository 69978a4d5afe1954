"""``mel_latent``: continuous normalised log-mel frames, the embedded default latent codec (no downloads).

The analysis and the synthesis are ``rvq_mel``'s (:class:`~.rvq_mel.RVQMelCodec`, held as ``mel``: its STFT,
Slaney mel filters, ``log(mel_power + log_offset)``, and mel -> STFT inversion + Griffin-Lim), with the same
frame convention (``T = ceil(L / hop)``, frame ``t`` centred on sample ``t * hop``). Instead of quantising,
each log-mel channel is standardised with a mean and std fitted on the training audio (the pre-quantisation
latents), optionally followed by a fitted PCA to ``pca_dim`` channels, whitened (each component divided by
its std) so every latent channel has unit variance on the training data, as a flow's noise expects.

Encode: audio ``[B, C, L]`` -> latents ``[B, ceil(L / hop), latent_dim]`` (``latent_dim = pca_dim or n_mels``).
Decode: latents -> log-mel (inverse PCA, de-standardise) -> Griffin-Lim audio ``[B, 1, T * hop]``.
``fit`` stores ``mean``/``std`` (and ``components``/``scales``) as buffers, so ``save_component`` carries them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from ..components import LatentCodec
from ..errors import ConfigError
from ..types import MusicLatents, check_shapes
from .rvq_mel import NotFittedError, RVQMelCodec


@dataclass
class MelLatentConfig:
    """Options of ``mel_latent`` (``codec.*``); the analysis options mean what they mean for ``rvq_mel``."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 640  # 25 frames per second: the default preset's rvq_mel, so beat metrics compare
    n_mels: int = 128
    fmin: float = 0.0
    fmax: Optional[float] = None
    log_offset: float = 1e-5
    pca_dim: int = 0  # 0 = keep every mel channel; else a fitted (whitened) PCA to this many channels
    fit_max_frames: int = 200_000
    seed: int = 0
    mel_inversion: str = "multiplicative"
    mel_inversion_iters: int = 30
    griffin_lim_iters: int = 32
    min_std: float = 1e-3  # floor of a channel's std (silent channels)


class MelLatentCodec(LatentCodec):
    """Standardised (and optionally PCA-whitened) log-mel frames as continuous latents."""

    Config = MelLatentConfig

    def __init__(self, cfg: Optional[MelLatentConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MelLatentConfig()
        if not 0 <= cfg.pca_dim <= cfg.n_mels:
            raise ConfigError(f"codec.pca_dim={cfg.pca_dim} must lie in 0..n_mels ({cfg.n_mels}); 0 = no PCA")
        self.mel = RVQMelCodec(RVQMelCodec.Config(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop=cfg.hop, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
            log_offset=cfg.log_offset, n_codebooks=1, cardinality=2, delays=[0], fit_max_frames=cfg.fit_max_frames,
            seed=cfg.seed, mel_inversion=cfg.mel_inversion, mel_inversion_iters=cfg.mel_inversion_iters,
            griffin_lim_iters=cfg.griffin_lim_iters))  # analysis / synthesis only: its codebooks stay unused
        self.sample_rate = int(cfg.sample_rate)
        self.frame_rate = cfg.sample_rate / cfg.hop
        self.hop, self.n_mels = int(cfg.hop), int(cfg.n_mels)
        self.latent_dim = int(cfg.pca_dim or cfg.n_mels)
        M, C = self.n_mels, self.latent_dim
        self.register_buffer("mean", torch.zeros(M))
        self.register_buffer("std", torch.ones(M))
        self.register_buffer("components", torch.eye(M)[:, :C].clone())  # [M, C] orthonormal columns
        self.register_buffer("scales", torch.ones(C))  # std of each component
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.fit_info: dict[str, Any] = {}

    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @torch.no_grad()
    def fit(self, audio: Iterable[Any], max_frames: int | None = None) -> None:
        """Fit the per-channel mean/std (and the PCA) on at most ``max_frames`` log-mel frames of ``audio``
        (an iterable of ``[L]``, ``[C, L]`` or ``[B, C, L]``; a uniform reservoir sample, as ``rvq_mel.fit``)."""
        frames, seen = self.mel._collect_frames(audio, int(max_frames or self.cfg.fit_max_frames))  # [N, M]
        frames = frames.double()
        mean, std = frames.mean(0), frames.std(0).clamp_min(self.cfg.min_std)
        z = (frames - mean) / std
        info: dict[str, Any] = {"frames_used": int(frames.shape[0]), "frames_seen": seen}
        if self.cfg.pca_dim:
            cov = z.T @ z / max(1, z.shape[0] - 1)  # [M, M]
            evals, evecs = torch.linalg.eigh(cov)  # ascending
            order = torch.argsort(evals, descending=True)[: self.latent_dim]
            comps = evecs[:, order]
            comps = comps * torch.where(comps.sum(0) < 0, -1.0, 1.0)  # a sign convention: deterministic
            self.components.copy_(comps.float())
            self.scales.copy_(evals[order].clamp_min(1e-8).sqrt().float())
            info["explained_variance"] = float(evals[order].sum() / evals.sum())
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.fitted.fill_(True)
        self.fit_info = info

    def _check_fitted(self, what: str) -> None:
        if not bool(self.fitted):
            raise NotFittedError(f"mel_latent.{what}: the codec is not fitted (its per-channel statistics come from "
                                 "your training audio). Run `vidmusic prepare`, call codec.fit(audio_iterable), or "
                                 "load a fitted codec with vidmusic_core.load_component(dir).")

    def to_latents(self, log_mel: Tensor) -> Tensor:
        """Log-mel ``[B, M, T]`` -> latents ``[B, T, C]``."""
        z = (log_mel.transpose(1, 2) - self.mean) / self.std  # [B, T, M]
        if self.cfg.pca_dim:
            z = (z @ self.components) / self.scales  # [B, T, C]
        return z

    def to_log_mel(self, latents: Tensor) -> Tensor:
        """Latents ``[B, T, C]`` -> log-mel ``[B, M, T]``."""
        z = latents.to(self.mean)
        if self.cfg.pca_dim:
            z = (z * self.scales) @ self.components.T  # [B, T, M]
        return (z * self.std + self.mean).transpose(1, 2)

    @torch.no_grad()
    def encode(self, audio: Tensor) -> MusicLatents:
        """Audio ``[B, C, L]`` at ``sample_rate`` -> latents ``[B, ceil(L / hop), latent_dim]`` at ``frame_rate``."""
        self._check_fitted("encode")
        return MusicLatents(self.to_latents(self.mel.log_mel(audio)), None, self.frame_rate)

    @torch.no_grad()
    def decode_mel(self, latents: MusicLatents) -> Tensor:
        """Latents ``[B, T, C]`` -> log-mel ``[B, M, T]``; masked frames are silence (``log(log_offset)``)."""
        self._check_fitted("decode")
        check_shapes("mel_latent", "latents", latents.latents, ("B", "T", self.latent_dim))
        mel = self.to_log_mel(latents.latents)
        assert latents.mask is not None
        return mel.masked_fill(~latents.mask.to(mel.device)[:, None], math.log(self.cfg.log_offset))

    def decode(self, latents: MusicLatents) -> Tensor:  # type: ignore[override]
        """Latents ``[B, T, C]`` -> mono audio ``[B, 1, T * hop]`` at ``sample_rate`` (Griffin-Lim)."""
        return self.mel.mel_to_audio(self.decode_mel(latents))


__all__ = ["MelLatentCodec", "MelLatentConfig"]
