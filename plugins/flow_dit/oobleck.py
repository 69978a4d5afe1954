"""``oobleck``: a diffusers ``AutoencoderOobleck`` (the Stable Audio Open VAE format) as a latent codec.

``weights=DIR`` is a local directory written by ``AutoencoderOobleck.save_pretrained`` (``config.json`` +
weights; e.g. the ``vae/`` folder of a Stable Audio Open copy), loaded with ``local_files_only``; nothing
downloads and there is no random fallback (a VAE of random weights is no codec).

Encode: audio ``[B, C, L]`` at the VAE's ``sampling_rate`` (channels matched to ``audio_channels``: mono is
repeated, stereo averaged for a mono VAE) -> ``latent_dist`` ``[B, C_lat, T]`` -> latents ``[B, T, C_lat]``.
``encode_mode``: ``mean`` (default: deterministic, so the content-hashed cache is reproducible) or
``sample`` (``mean + std * eps`` with a generator seeded by ``seed`` — what stable-audio-tools'
``VAEBottleneck.encode`` does, always sampling). ``scale``: latents are multiplied by it after encoding
and divided before decoding (1 = raw VAE latents). Frames: ``frame_rate = sampling_rate / prod(downsampling_ratios)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from vidmusic_core import ConfigError, LatentCodec, MusicLatents, ShapeError, path_field

ENCODE_MODES = ("mean", "sample")


@dataclass
class OobleckConfig:
    """Options of ``oobleck`` (``codec.*``)."""

    weights: Optional[str] = path_field()  # a local AutoencoderOobleck directory (save_pretrained layout)
    encode_mode: str = "mean"  # mean | sample
    seed: int = 0
    scale: float = 1.0


class OobleckCodec(LatentCodec):
    """Audio ``[B, C, L]`` <-> latents ``[B, T, C_lat]`` through a local ``AutoencoderOobleck``."""

    Config = OobleckConfig

    def __init__(self, cfg: Optional[OobleckConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or OobleckConfig()
        if cfg.encode_mode not in ENCODE_MODES:
            raise ConfigError(f"codec.encode_mode={cfg.encode_mode!r}: use one of {', '.join(ENCODE_MODES)}")
        if not cfg.weights:
            raise ConfigError("codec oobleck needs codec.weights=DIR: a local diffusers AutoencoderOobleck directory "
                              "(config.json + weights, e.g. the vae/ folder of Stable Audio Open); vidmusic never "
                              "downloads. For a codec without weights use codec.name=mel_latent")
        d = Path(cfg.weights)
        if not (d / "config.json").is_file():
            raise ConfigError(f"codec.weights={cfg.weights!r}: no config.json there; expected a directory written by "
                              "diffusers' AutoencoderOobleck.save_pretrained (e.g. stable-audio-open-1.0/vae)")
        from diffusers import AutoencoderOobleck

        self.model = AutoencoderOobleck.from_pretrained(str(d), local_files_only=True)
        self.model.eval().requires_grad_(False)
        c = self.model.config
        self.sample_rate = int(c.sampling_rate)
        self.hop = int(math.prod(c.downsampling_ratios))
        self.frame_rate = self.sample_rate / self.hop
        self.latent_dim = int(c.decoder_input_channels)
        self.audio_channels = int(c.audio_channels)

    def _channels(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3:
            raise ShapeError(f"oobleck: audio expected [B, C, L], got {list(audio.shape)}")
        if audio.shape[1] == self.audio_channels:
            return audio
        if audio.shape[1] == 1:
            return audio.expand(-1, self.audio_channels, -1)
        if self.audio_channels == 1:
            return audio.mean(dim=1, keepdim=True)
        raise ShapeError(f"oobleck: {audio.shape[1]}-channel audio for a {self.audio_channels}-channel VAE")

    @torch.no_grad()
    def encode(self, audio: Tensor) -> MusicLatents:
        """Audio ``[B, C, L]`` -> latents ``[B, ceil(L / hop), C_lat]`` (zero-padded to whole frames)."""
        x = self._channels(audio).to(next(self.model.parameters()))
        pad = (-x.shape[-1]) % self.hop
        x = torch.nn.functional.pad(x, (0, pad))
        dist = self.model.encode(x).latent_dist
        if self.cfg.encode_mode == "mean":
            z = dist.mean
        else:
            g = torch.Generator(device=x.device).manual_seed(int(self.cfg.seed))
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g, device=x.device, dtype=dist.mean.dtype)
        lat = (z * self.cfg.scale).transpose(1, 2).float()  # [B, T, C_lat]
        return MusicLatents(lat, None, self.frame_rate)

    @torch.no_grad()
    def decode(self, latents: MusicLatents) -> Tensor:  # type: ignore[override]
        """Latents ``[B, T, C_lat]`` -> audio ``[B, audio_channels, T * hop]``; masked frames are silent."""
        z = latents.latents
        if z.dim() != 3 or z.shape[-1] != self.latent_dim:
            raise ShapeError(f"oobleck: latents expected [B, T, {self.latent_dim}], got {list(z.shape)}")
        p = next(self.model.parameters())
        audio = self.model.decode((z / self.cfg.scale).transpose(1, 2).to(p)).sample  # [B, C_a, L]
        if latents.mask is not None and not bool(latents.mask.all()):
            keep = latents.mask.to(audio.device).repeat_interleave(self.hop, dim=1)[:, None, : audio.shape[-1]]
            audio = audio[..., : keep.shape[-1]] * keep
        return audio.float()
