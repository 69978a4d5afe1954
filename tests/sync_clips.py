"""Synthetic clips with a known answer for the reference-free metrics: videos with hard cuts (written
with PyAV) and music whose clicks or sections sit on the cuts, or off them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vidmusic_core.video import write_video

SR = 22050


def cut_video(path: Path, seconds: float = 8.0, seg: float = 0.5, fps: int = 24, seed: int = 0) -> Path:
    """A 64x64 video of flat colours that change (a hard cut) every ``seg`` s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    colours = rng.integers(0, 256, (int(np.ceil(seconds / seg)), 3))
    frames = np.repeat(colours[(np.arange(n) / fps / seg).astype(int)][:, None, None, :], 64, 1).repeat(64, 2)
    return write_video(path, frames.astype(np.uint8), fps)


def clicks(times: np.ndarray, seconds: float = 8.0, accents: np.ndarray | None = None, sr: int = SR) -> np.ndarray:
    """1.5 kHz clicks at ``times`` (s); with ``accents`` (bool per click) the others are 9 dB softer."""
    y = np.zeros(int(seconds * sr), np.float32)
    k = np.arange(300)
    click = np.sin(2 * np.pi * 1500 * k / sr) * np.exp(-k / 60)
    for j, t in enumerate(times):
        s = int(t * sr)
        if 0 <= s < len(y) - len(k):
            y[s:s + len(k)] += (1.0 if accents is None or accents[j] else 0.35) * click
    return y


def tone_sections(bounds: list[float], seconds: float = 10.0, seed: int = 1, sr: int = SR) -> np.ndarray:
    """A different harmonic tone in each section between successive ``bounds`` (s)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros(len(t), np.float32)
    edges = [0.0, *bounds, seconds]
    for a, b in zip(edges[:-1], edges[1:]):
        m = (t >= a) & (t < b)
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        y[m] = 0.2 * sum(np.sin(2 * np.pi * f0 * h * t[m]) / h for h in (1, 2, 3, 5))
    return y
