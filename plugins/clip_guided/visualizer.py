"""``clip_guided``: MetaMusic's music video method as a visualizer, with real models from local directories only.

Per section of the song (:class:`vidmusic_core.SongAnalysis`): the target is the Wav2CLIP embedding of up to
``segment_seconds`` of the section's audio (its middle), mixed with CLIP text embeddings of ``prompts``
(``text_weight``), normalised. A keyframe latent of a VQGAN decoder (diffusers ``VQModel``, the
taming-transformers layout) is optimised with Adam for ``steps`` steps so that CLIP's image embedding of the
decoded image (``cutouts`` seeded random crops, resized to CLIP's input) has the highest cosine similarity to the
target; each keyframe starts from the previous one (continuity, as VQGAN-CLIP animations do). Frames between two
keyframe times (the sections' middles) decode a latent interpolated between them (cosine ease), so the optimisation
cost grows with the number of sections, not of frames; a beat brightens the frame by ``pulse``. Seeded: the same
seed and models give the same video.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidmusic_core import CLIP_MEAN, CLIP_STD, ConfigError, SongAnalysis, Visualizer

from .wav2clip import SAMPLE_RATE, Wav2CLIP


def _dir(value: str | None, option: str, what: str) -> Path:
    if not value:
        raise ConfigError(f"visualizer clip_guided: set {option} to a local {what} directory (nothing is downloaded)")
    d = Path(value).expanduser()
    if not d.is_dir():
        raise ConfigError(f"visualizer clip_guided: {option}={value} is not a directory ({what})")
    return d


@dataclass
class ClipGuidedPlan:
    """Keyframe latents ``[K, C, h, w]`` at ``key_times [K]`` s, plus what rendering needs."""

    song: SongAnalysis
    width: int
    height: int
    fps: float
    key_times: np.ndarray
    latents: Tensor
    losses: list[float] = field(default_factory=list)  # per keyframe: 1 - cosine at its last step


class ClipGuidedVisualizer(Visualizer):
    """Wav2CLIP target per section -> CLIP-guided VQGAN keyframe -> latent interpolation between keyframes."""

    @dataclass
    class Config:
        clip_dir: str | None = None  # transformers CLIP directory (CLIPModel: vision + text, with projections)
        wav2clip_dir: str | None = None  # written by `vidmusic import wav2clip ResNet_CX.ckpt DIR`
        vqgan_dir: str | None = None  # diffusers VQModel directory (save_pretrained layout)
        prompts: list[str] = field(default_factory=list)  # optional text prompts, mixed into every target
        text_weight: float = 0.3  # share of the text embedding in the target (with prompts)
        steps: int = 100  # Adam steps per keyframe
        lr: float = 0.1
        cutouts: int = 8  # random crops per step scored by CLIP
        latent_scale: float = 1.0  # latent size = output size / decoder upsampling x latent_scale
        segment_seconds: float = 6.0  # audio per keyframe embedding (the section's middle)
        pulse: float = 0.15  # brightness added on each beat (0: none)
        device: str = "cpu"
        decode_batch: int = 8  # frames decoded at once

    def __init__(self, cfg: "ClipGuidedVisualizer.Config | None" = None) -> None:
        from diffusers import VQModel
        from transformers import CLIPModel

        self.cfg = c = cfg if cfg is not None else self.Config()
        if c.steps < 0 or c.cutouts < 1 or c.lr <= 0 or c.segment_seconds <= 0 or not 0 <= c.text_weight <= 1:
            raise ConfigError("visualizer clip_guided: steps >= 0, cutouts >= 1, lr > 0, segment_seconds > 0 and "
                              f"0 <= text_weight <= 1 are required, got {c}")
        clip_dir = _dir(c.clip_dir, "clip_dir", "transformers CLIP")
        self.device = torch.device(c.device)
        self.clip = CLIPModel.from_pretrained(str(clip_dir), local_files_only=True)
        self.clip = self.clip.to(self.device).eval().requires_grad_(False)
        self.image_size = int(self.clip.config.vision_config.image_size)
        self.audio = Wav2CLIP.from_dir(_dir(c.wav2clip_dir, "wav2clip_dir", "Wav2CLIP")).to(self.device)
        self.vq = VQModel.from_pretrained(str(_dir(c.vqgan_dir, "vqgan_dir", "diffusers VQModel")),
                                          local_files_only=True).to(self.device).eval().requires_grad_(False)
        self.upsample = 2 ** (len(self.vq.config.block_out_channels) - 1)
        dim = int(self.clip.config.projection_dim)
        if self.audio.dim != dim:
            raise ConfigError(f"visualizer clip_guided: the Wav2CLIP embedding has {self.audio.dim} values but CLIP's "
                              f"image embedding has {dim}; use the CLIP that Wav2CLIP was distilled from (ViT-B/32)")
        self.tokenizer = None
        if c.prompts:
            from transformers import CLIPTokenizer

            self.tokenizer = CLIPTokenizer.from_pretrained(str(clip_dir), local_files_only=True)

    # -- targets ------------------------------------------------------------------------------------
    @torch.no_grad()
    def targets(self, song: SongAnalysis) -> Tensor:
        """One unit target embedding per section: ``[K, D]``."""
        c = self.cfg
        rows = []
        for s in song.sections:
            mid, half = (s.start + s.end) / 2, min(c.segment_seconds, s.end - s.start) / 2
            audio = song.audio(mid - half, mid + half, SAMPLE_RATE)
            if len(audio) < 1024:
                audio = np.pad(audio, (0, 1024 - len(audio)))
            rows.append(F.normalize(self.audio(torch.from_numpy(audio)[None].to(self.device)), dim=-1)[0])
        target = torch.stack(rows)  # [K, D]
        if self.tokenizer is not None:
            ids = self.tokenizer(list(c.prompts), padding=True, return_tensors="pt").to(self.device)
            pooled = self.clip.text_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).pooler_output
            text = F.normalize(self.clip.text_projection(pooled), dim=-1).mean(0, keepdim=True)  # [1, D]
            target = (1 - c.text_weight) * target + c.text_weight * F.normalize(text, dim=-1)
        return F.normalize(target, dim=-1)

    # -- optimisation -------------------------------------------------------------------------------
    def _decode(self, z: Tensor) -> Tensor:
        """Latents ``[B, C, h, w]`` -> images in [0, 1] ``[B, 3, h * up, w * up]`` (quantised, straight-through)."""
        return ((self.vq.decode(z).sample + 1) / 2).clamp(0, 1)

    def _clip_embed(self, images: Tensor, g: torch.Generator) -> Tensor:
        """Unit CLIP embeddings ``[B * cutouts, D]`` of seeded random crops of ``images [B, 3, H, W]``."""
        B, _, H, W = images.shape
        crops = []
        for _ in range(self.cfg.cutouts):
            frac = float(torch.empty(1).uniform_(0.5, 1.0, generator=g))
            h, w = max(2, int(H * frac)), max(2, int(W * frac))
            y = int(torch.randint(0, H - h + 1, (1,), generator=g))
            x = int(torch.randint(0, W - w + 1, (1,), generator=g))
            crops.append(F.interpolate(images[:, :, y:y + h, x:x + w], size=(self.image_size, self.image_size),
                                       mode="bilinear", align_corners=False))
        x = torch.cat(crops)  # [B * cutouts, 3, S, S]
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        pooled = self.clip.vision_model(pixel_values=(x - mean) / std).pooler_output  # [B * cutouts, width]
        return F.normalize(self.clip.visual_projection(pooled), dim=-1)

    def plan(self, song: SongAnalysis, size: tuple[int, int], fps: float, seed: int) -> ClipGuidedPlan:
        c = self.cfg
        W, H = int(size[0]), int(size[1])
        h = max(1, int(round(H / self.upsample * c.latent_scale)))
        w = max(1, int(round(W / self.upsample * c.latent_scale)))
        g = torch.Generator().manual_seed(int(seed))
        target = self.targets(song)  # [K, D]
        C = int(self.vq.config.latent_channels)
        z = torch.randn(1, C, h, w, generator=g).to(self.device)
        keys, losses = [], []
        for k in range(len(target)):
            z = z.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=c.lr)
            loss = torch.zeros(())
            for _ in range(c.steps):
                emb = self._clip_embed(self._decode(z), g)  # [cutouts, D]
                loss = (1 - emb @ target[k]).mean()  # 1 - cosine similarity
                opt.zero_grad()
                loss.backward()
                opt.step()
            keys.append(z.detach().cpu()[0])
            losses.append(float(loss.detach()))
        key_times = np.array([(s.start + s.end) / 2 for s in song.sections])
        return ClipGuidedPlan(song, W, H, float(fps), key_times, torch.stack(keys), losses)

    # -- frames -------------------------------------------------------------------------------------
    def latents_at(self, plan: ClipGuidedPlan, times: np.ndarray) -> Tensor:
        """Latents ``[T, C, h, w]`` at ``times``: cosine-eased interpolation between neighbouring keyframes."""
        kt = plan.key_times
        j = np.clip(np.searchsorted(kt, times, side="right") - 1, 0, len(kt) - 1)  # keyframe before
        nxt = np.minimum(j + 1, len(kt) - 1)
        span = np.maximum(kt[nxt] - kt[j], 1e-9)
        a = np.where(nxt > j, np.clip((times - kt[j]) / span, 0.0, 1.0), 0.0)
        a = torch.from_numpy((1 - np.cos(np.pi * a)) / 2).float().view(-1, 1, 1, 1)
        return plan.latents[j] * (1 - a) + plan.latents[nxt] * a

    @torch.no_grad()
    def render(self, plan: ClipGuidedPlan, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        z = self.latents_at(plan, times)
        out = np.empty((len(times), plan.height, plan.width, 3), np.uint8)
        song = plan.song
        beat = np.zeros(len(times))
        beats = song.beats[(song.beats > times.min() - 1.0) & (song.beats < times.max() + 1.0)] if len(times) else []
        if len(beats) and self.cfg.pulse > 0:
            d = np.abs(times[:, None] - beats[None, :]).min(axis=1)  # [T] s to the nearest beat
            beat = self.cfg.pulse * np.exp(-0.5 * (d / (0.5 / plan.fps)) ** 2)
        for a in range(0, len(times), self.cfg.decode_batch):
            img = self._decode(z[a:a + self.cfg.decode_batch].to(self.device))  # [b, 3, h', w']
            if img.shape[-2:] != (plan.height, plan.width):
                img = F.interpolate(img, size=(plan.height, plan.width), mode="bilinear", align_corners=False,
                                    antialias=True)
            img = (img + torch.from_numpy(beat[a:a + len(img)]).float().view(-1, 1, 1, 1).to(img)).clamp(0, 1)
            out[a:a + len(img)] = (img.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return out


__all__ = ["ClipGuidedPlan", "ClipGuidedVisualizer"]
