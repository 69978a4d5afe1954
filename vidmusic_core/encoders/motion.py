"""``motion``: a weight-free rhythm encoder (visual motion, onsets, beats and cuts on a token grid).

Analysis of one clip (:func:`analyse_motion`, numpy, no weights; frames at the video's full rate):

1. distinct frames (the sampler repeats a frame when ``fps`` exceeds the video's rate), RGB in [0, 1],
   area-downscaled to ``size`` x ``size``;
2. motion energy ``e_i = mean |x_i - x_{i-1}|`` (frame difference, placed at the midpoint of the pair);
3. novelty (onset strength) on a 5 ms grid: ``e`` summed under a Gaussian of ``smooth`` s (at least 1.25
   frame intervals, so a flash's rise and fall merge into one peak) minus its baseline, the running
   minimum over ``context`` s of the same curve compensated for the frames missing near the ends. A
   burst of change (a flash, a hit, a cut) gives a peak at its centre; steady motion gives 0;
4. cuts: at the boundary between frames ``i-1`` and ``i`` the score is the fraction of pixels whose colour
   ranges over the ``cut_window`` s before and after the boundary are more than ``pixel_threshold`` apart
   (a flash comes back, a cut stays). A cut is a score >= ``cut_threshold`` that is the largest within
   ±``cut_window`` and >= ``cut_ratio`` x its median over ±1 s; only boundaries with ``cut_window`` s of
   video on both sides can be confirmed. The cut's time is that of the first frame after it;
5. visual beats: novelty peaks >= ``beat_threshold``, >= ``min_beat_interval`` s apart, refined by a parabola.

The encoder puts these on a grid of ``rate`` tokens per second with exact times ``k / rate`` (k integer),
from the first frame to the end of the sampled window (:func:`token_grid`): tokens ``[B, N, D]`` with
one feature per name in ``features`` (:data:`FEATURES`). ``frozen_features`` computes everything
(cacheable); ``forward_features`` only re-derives the token times and mask from the frame times and packs
the Condition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, VidmusicError
from ..components import ConditionEncoder
from ..types import Condition, FrameSpec, Frames

#: token features, in this order when selected: log-compressed motion energy and novelty, Gaussian
#: impulses at visual beats and cuts, beat phase (sin, cos; 0 at a beat), local beat period in seconds
FEATURES = ("energy", "novelty", "beat", "cut", "phase_sin", "phase_cos", "period")
GRID_STEP = 0.005  # s, resolution of the novelty curve
TIME_EPS = 1e-3  # in token units: float32 times of the cache must give the same grid


class MotionError(VidmusicError):
    """Frames the motion analysis cannot use (e.g. times that go backwards)."""


@dataclass
class MotionAnalysis:
    """Rhythm of one clip. ``times [U]`` distinct frame times, ``energy [U]`` (0 for the first frame),
    ``cut_score [U]`` (score of the boundary before each frame), ``grid [G]``/``novelty [G]`` the onset
    curve, ``beats [n_b]`` and ``beat_strength [n_b]`` (novelty at the peak), ``cuts [n_c]`` (s)."""

    times: np.ndarray
    energy: np.ndarray
    cut_score: np.ndarray
    grid: np.ndarray
    novelty: np.ndarray
    beats: np.ndarray
    beat_strength: np.ndarray
    cuts: np.ndarray

    @property
    def frame_interval(self) -> float:
        """Median interval between distinct frames (s); 0 for a single frame."""
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.0

    @property
    def tempo(self) -> float | None:
        """Visual tempo in bpm from the median inter-beat interval (None with fewer than 2 beats)."""
        return 60.0 / float(np.median(np.diff(self.beats))) if len(self.beats) > 1 else None


@dataclass
class MotionConfig:
    """Options of the ``motion`` encoder (times in seconds)."""

    fps: float = 30.0  # frames sampled per second: >= the video's rate gives every frame (repeats are dropped)
    size: int = 32  # frame side in pixels
    rate: float = 50.0  # tokens per second (50 = the audio frame rate of most codecs)
    features: List[str] = field(default_factory=lambda: list(FEATURES))  # D = len(features)
    smooth: float = 0.06  # sigma of the novelty's Gaussian (at least 1.25 frame intervals)
    context: float = 1.0  # window of the running-minimum baseline subtracted from it
    beat_threshold: float = 0.008  # least novelty of a beat (mean |RGB change| summed over the burst)
    min_beat_interval: float = 0.25  # s between beats (240 bpm)
    cut_window: float = 0.3  # s of video each side of a boundary that must differ for a cut
    pixel_threshold: float = 0.15  # colour change (0-1, any channel) that counts for a cut
    cut_threshold: float = 0.02  # least fraction of changed pixels at a cut
    cut_ratio: float = 3.0  # a cut's score over its median in ±1 s
    beat_width: float = 0.03  # sigma of the beat and cut impulses on the token grid
    gain: float = 100.0  # energy/novelty features are log1p(gain x) / log1p(gain)


def _as_numpy(x: Any, dtype: Any) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)).astype(dtype, copy=False)


def _prepare(frames_u8: Any, times: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[T, H, W, 3]``, times ``[T]`` -> distinct frames float ``[U, size, size, 3]`` in [0, 1], ``[U]``."""
    x = frames_u8 if isinstance(frames_u8, Tensor) else torch.from_numpy(np.asarray(frames_u8))
    t = _as_numpy(times, np.float64)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3 or t.shape != (x.shape[0],) or not len(t):
        raise ShapeError(f"motion: frames must be uint8 [T, H, W, 3] with times [T], T >= 1; got "
                         f"{list(x.shape)} and {list(t.shape)}")
    if np.any(np.diff(t) < -1e-6):
        raise MotionError("motion: frame times go backwards; give frames in presentation order")
    keep = np.concatenate([[True], np.diff(t) > 1e-6])  # the sampler repeats frames above the native rate
    idx = torch.from_numpy(np.flatnonzero(keep))
    y = x.detach().cpu().index_select(0, idx).permute(0, 3, 1, 2).float() / 255.0  # [U, 3, H, W]
    if y.shape[-2:] != (size, size):
        y = torch.nn.functional.interpolate(y, size=(size, size), mode="area")
    return y.permute(0, 2, 3, 1).numpy(), t[keep]


def _cut_scores(x: np.ndarray, dt: float, window: float, pixel_threshold: float, chunk: int = 512) -> np.ndarray:
    """``[U]``: for the boundary before frame i, the fraction of pixels whose colour ranges over the ``k``
    frames before and the ``k`` frames from i on are > ``pixel_threshold`` apart (0 where either side has
    fewer than k frames; k = ``window`` s, at least 3 frames). Computed in chunks of boundaries."""
    U = len(x)
    k = max(3, int(round(window / dt))) if dt > 0 else 3
    score = np.zeros(U)
    for i0 in range(k, U - k + 1, chunk):
        i1 = min(i0 + chunk, U - k + 1)
        win = np.lib.stride_tricks.sliding_window_view(x[i0 - k:i1 + k - 1], k, axis=0)  # [n+k, S, S, 3, k]
        lo, hi = win.min(axis=-1), win.max(axis=-1)  # window j holds frames i0-k+j .. i0+j-1
        n = i1 - i0
        gap = np.maximum(lo[k:k + n] - hi[:n], lo[:n] - hi[k:k + n]).max(axis=-1)  # [n, S, S]
        score[i0:i1] = (gap > pixel_threshold).mean(axis=(1, 2))
    return score


def _pick_cuts(score: np.ndarray, dt: float, cfg: MotionConfig) -> np.ndarray:
    """Indices of frames that start a new shot."""
    k = max(3, int(round(cfg.cut_window / dt))) if dt > 0 else 3
    m = max(k, int(round(1.0 / dt))) if dt > 0 else k
    out = []
    for i in np.flatnonzero(score >= cfg.cut_threshold):
        if np.argmax(score[max(0, i - k):i + k + 1]) != min(i, k):  # not the largest (first of ties) nearby
            continue
        if score[i] >= cfg.cut_ratio * np.median(score[max(0, i - m):i + m + 1]):
            out.append(i)
    return np.asarray(out, dtype=int)


def _gauss_sum(grid0: float, n: int, at: np.ndarray, values: np.ndarray, sigma: float) -> np.ndarray:
    """``sum_i values_i exp(-(g - at_i)^2 / 2 sigma^2)`` on the grid ``g = grid0 + j * GRID_STEP``, j < n
    (impulses within 4 sigma outside the grid count too)."""
    half = int(math.ceil(4 * sigma / GRID_STEP))
    j = np.round((at - grid0) / GRID_STEP).astype(int) + half
    ok = (j >= 0) & (j < n + 2 * half)
    imp = np.zeros(n + 2 * half)
    np.add.at(imp, j[ok], values[ok])
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * GRID_STEP / sigma) ** 2)
    return np.convolve(imp, kernel, mode="full")[2 * half:2 * half + n]  # [n]


def analyse_motion(frames_u8: Any, times: Any, cfg: MotionConfig | None = None) -> MotionAnalysis:
    """Motion energy, novelty, visual beats and cuts of one clip: uint8 ``[T, H, W, 3]`` at ``times [T]`` s."""
    cfg = cfg or MotionConfig()
    x, t = _prepare(frames_u8, times, cfg.size)
    U = len(t)
    dt = float(np.median(np.diff(t))) if U > 1 else 1.0 / cfg.fps
    energy = np.zeros(U)
    if U > 1:
        energy[1:] = np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3))
    cut_score = _cut_scores(x, dt, cfg.cut_window, cfg.pixel_threshold)
    cut_idx = _pick_cuts(cut_score, dt, cfg)
    # novelty: energy impulses at the pair midpoints under a Gaussian, minus the running-minimum baseline
    from scipy.ndimage import minimum_filter1d

    g0 = math.floor(t[0] / GRID_STEP) * GRID_STEP
    n = int(math.ceil((t[-1] + dt - g0) / GRID_STEP)) + 1
    grid = g0 + np.arange(n) * GRID_STEP
    sigma, mids = max(cfg.smooth, 1.25 * dt), (t[1:] + t[:-1]) / 2
    coverage = _gauss_sum(g0, n, mids, np.ones(len(mids)), sigma) * dt / (sigma * math.sqrt(2 * math.pi))
    smooth = _gauss_sum(g0, n, mids, energy[1:], sigma)
    level = smooth / np.maximum(coverage, 1e-6)  # kernel-weighted mean: no dip where frames run out
    base = minimum_filter1d(level, size=int(round(cfg.context / GRID_STEP)) + 1, mode="nearest")
    novelty = np.maximum(smooth - base, 0.0)  # peaks where they are, no false rise near the ends
    beats, strength = _pick_beats(grid, novelty, cfg)
    return MotionAnalysis(t, energy, cut_score, grid, novelty, beats, strength, t[cut_idx])


def _pick_beats(grid: np.ndarray, novelty: np.ndarray, cfg: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of ``novelty`` (zero-padded, so a peak may sit at an end), parabola-refined: times, heights."""
    from scipy.signal import find_peaks

    padded = np.concatenate([[0.0], novelty, [0.0]])
    peaks, _ = find_peaks(padded, height=cfg.beat_threshold,
                          distance=max(1, int(round(cfg.min_beat_interval / GRID_STEP))))
    a, b, c = padded[peaks - 1], padded[peaks], padded[peaks + 1]
    den = a - 2 * b + c
    shift = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1.0), 0.0).clip(-0.5, 0.5)
    times = grid[0] + (peaks - 1 + shift) * GRID_STEP
    return times.clip(grid[0], grid[-1]), b - 0.25 * (a - c) * shift


def detect_beats_and_cuts(frames_u8: Any, times: Any, cfg: MotionConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Visual beats and cuts (seconds, sorted) of one clip: uint8 frames ``[T, H, W, 3]`` at ``times [T]``.

    Sample the frames at (at least) the video's own rate, e.g. ``load_frames([path], encoder.frame_spec)``.
    """
    a = analyse_motion(frames_u8, times, cfg)
    return a.beats, a.cuts


# --------------------------------------------------------------------------------------------------
# token grid
# --------------------------------------------------------------------------------------------------
def token_grid(local_times: Tensor, local_mask: Tensor, duration: Tensor | None, rate: float,
               fps: float) -> tuple[Tensor, Tensor]:
    """Token times ``[B, N]`` and mask ``[B, N]`` from the times and mask ``[B, T_v]`` of frames sampled at
    ``fps`` (FrameSpec, ``timestamps``): exact multiples of ``1 / rate`` from the first frame to the end of
    the window (first time + T_v / fps), of the last frame and of the video, whichever comes first;
    padding repeats the row's last time."""
    B = local_times.shape[0]
    ranges = []
    for b in range(B):
        t = local_times[b][local_mask[b]].double().cpu().numpy()
        if len(t) == 0:
            ranges.append((0, 1))
            continue
        u = t[np.concatenate([[True], np.diff(t) > 1e-6])]
        dt = float(np.median(np.diff(u))) if len(u) > 1 else 1.0 / fps
        end = min(u[-1] + dt, u[0] + len(t) / fps)
        if duration is not None and float(duration[b]) > u[-1]:
            end = min(end, float(duration[b]))
        k0 = int(math.ceil(u[0] * rate - TIME_EPS))
        ranges.append((k0, max(k0 + 1, int(math.ceil(end * rate - TIME_EPS)))))
    N = max(k1 - k0 for k0, k1 in ranges)
    ks = torch.zeros(B, N, dtype=torch.float64)
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, (k0, k1) in enumerate(ranges):
        ks[b] = torch.arange(k0, k0 + N, dtype=torch.float64).clamp(max=k1 - 1)
        mask[b, :k1 - k0] = True
    return (ks / rate).float().to(local_times.device), mask.to(local_times.device)


def token_features(a: MotionAnalysis, times: np.ndarray, cfg: MotionConfig) -> np.ndarray:
    """The ``cfg.features`` of analysis ``a`` at token ``times [N]``: ``[N, D]`` float32."""
    comp = lambda v: np.log1p(cfg.gain * np.maximum(v, 0.0)) / math.log1p(cfg.gain)  # noqa: E731

    def impulses(events: np.ndarray) -> np.ndarray:
        if not len(events):
            return np.zeros(len(times))
        j = np.searchsorted(events, times).clip(1, len(events) - 1) if len(events) > 1 else np.zeros(len(times), int)
        d = np.abs(times - events[j]) if len(events) == 1 else \
            np.minimum(np.abs(times - events[j - 1]), np.abs(times - events[j]))
        return np.exp(-0.5 * (d / cfg.beat_width) ** 2)

    cols: dict[str, np.ndarray] = {
        "energy": comp(np.interp(times, a.times, a.energy)),
        "novelty": comp(np.interp(times, a.grid, a.novelty)),
        "beat": impulses(a.beats),
        "cut": impulses(a.cuts),
    }
    if len(a.beats) > 1:  # phase within the current inter-beat interval (extrapolated outside)
        j = (np.searchsorted(a.beats, times, side="right") - 1).clip(0, len(a.beats) - 2)
        period = a.beats[j + 1] - a.beats[j]
        phase = 2 * np.pi * (times - a.beats[j]) / period
        cols.update(phase_sin=np.sin(phase), phase_cos=np.cos(phase), period=period)
    else:
        cols.update(phase_sin=np.zeros(len(times)), phase_cos=np.zeros(len(times)), period=np.zeros(len(times)))
    return np.stack([cols[f] for f in cfg.features], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------------
class MotionEncoder(ConditionEncoder):
    """Frames at the video's rate -> Condition ``tokens [B, N, D]``, ``times``/``mask [B, N]``.

    ``N ~ rate * seconds``; ``D = len(cfg.features)``; times are exact multiples of ``1 / rate``; mask all
    true but for batch padding. No weights. Frozen part: ``{"motion": [B, N, D]}`` (the whole analysis).
    """

    Config = MotionConfig

    def __init__(self, cfg: MotionConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MotionConfig()
        bad = [f for f in cfg.features if f not in FEATURES]
        if bad or not cfg.features or len(set(cfg.features)) != len(cfg.features):
            raise ConfigError(f"encoder.features={list(cfg.features)}: give distinct names out of "
                              f"{', '.join(FEATURES)}")
        for name in ("fps", "rate", "smooth", "context", "min_beat_interval", "cut_window", "beat_width", "gain"):
            if not getattr(cfg, name) > 0:
                raise ConfigError(f"encoder.{name}={getattr(cfg, name)}: must be > 0")
        if cfg.size < 4:
            raise ConfigError(f"encoder.size={cfg.size}: must be >= 4 pixels")
        self.frame_spec = FrameSpec(fps=cfg.fps, n_global=0, size=cfg.size, resize="squash",
                                    sampling="timestamps", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.dim = len(cfg.features)

    def feature_config(self) -> dict[str, Any]:
        """Every option but nothing else: the whole token matrix is cached."""
        return {"encoder": "motion", **{k: (list(v) if isinstance(v, (list, tuple)) else v)
                                        for k, v in vars(self.cfg).items()}}

    def _grid(self, frames: Frames) -> tuple[Tensor, Tensor]:
        assert frames.local_mask is not None
        return token_grid(frames.local_times, frames.local_mask, frames.duration, self.cfg.rate, self.cfg.fps)

    @torch.no_grad()
    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        """``{"motion": [B, N, D]}`` float32: the token features on the grid of :func:`token_grid`."""
        times, mask = self._grid(frames)
        out = torch.zeros(frames.batch_size, times.shape[1], self.dim)
        for b in range(frames.batch_size):
            keep = frames.local_mask[b].cpu()  # type: ignore[index]
            if not keep.any():
                continue
            a = analyse_motion(frames.local[b].cpu()[keep], frames.local_times[b].cpu()[keep], self.cfg)
            n = int(mask[b].sum())
            out[b, :n] = torch.from_numpy(token_features(a, times[b, :n].double().cpu().numpy(), self.cfg))
        return {"motion": out.to(frames.local.device)}

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        """Pack cached ``{"motion": [B, N', D]}`` with the token times/mask re-derived from ``frames``."""
        feats = features["motion"]
        if feats.ndim != 3 or feats.shape[-1] != self.dim:
            raise ShapeError(f"motion: features['motion'] must be [B, N, {self.dim}], got {list(feats.shape)}")
        B = feats.shape[0]
        if frames is None:  # features alone: a clip starting at 0, every token real
            times = (torch.arange(feats.shape[1], dtype=torch.float64) / self.cfg.rate).float().expand(B, -1)
            mask = torch.ones(B, feats.shape[1], dtype=torch.bool)
        else:
            times, mask = self._grid(frames)
        N = times.shape[1]
        if feats.shape[1] < N:
            raise ShapeError(f"motion: {feats.shape[1]} cached tokens but the frames' times give {N} "
                             f"(rate={self.cfg.rate}); the cache was written with other frames or options")
        tokens = feats[:, :N].float()
        return Condition(tokens, mask.to(tokens.device), times.to(tokens.device).contiguous())


def video_cuts(video: "str | Path", start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Hard cuts (seconds from ``start``) of ``video`` in ``[start, end)``, detected by this encoder's
    frame-difference detector at its frame rate (30 fps, 32 px)."""
    from ..video import load_frames

    frames = load_frames([video], MotionEncoder(MotionConfig()).frame_spec, start, end)
    n = int(frames.local_mask[0].sum())  # type: ignore[index]
    _, cuts = detect_beats_and_cuts(frames.local[0, :n].numpy(), frames.local_times[0, :n].numpy())
    return np.asarray(cuts, dtype=float) - start
