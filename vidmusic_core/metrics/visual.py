"""Visual events of a real video for the reference-free metrics (no ground truth needed).

:func:`analyse_video` decodes a video once (PyAV, 30 fps, 32x32 px, the ``motion`` encoder's settings)
and returns its motion peaks (visual beats), its cuts (the motion detector's, or TransNetV2's with
``cut_detector="transnetv2"``), the motion tempo and per-frame features ``[T, D]`` (8x8 RGB thumbnails)
for the event-curve metric. Results are cached per (path, size, mtime, detector). Items may carry the
same keys precomputed (``visual_beats``, ``visual_cuts``, ``visual_tempo``, ``visual_features`` with
``visual_feature_rate``); :func:`visual_of` prefers them and falls back to decoding ``item["video"]``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import Item, MetricError

FEATURE_SIDE = 8  # thumbnails of FEATURE_SIDE x FEATURE_SIDE RGB pixels


@dataclass(frozen=True)
class VisualEvents:
    """``beats [n_b]`` motion peaks, ``cuts [n_c]`` (s), ``tempo`` (bpm or None), ``features [T, D]`` at
    ``feature_rate`` frames/s from t = 0, ``duration`` (s)."""

    beats: np.ndarray
    cuts: np.ndarray
    tempo: float | None
    features: np.ndarray
    feature_rate: float
    duration: float


@functools.lru_cache(maxsize=64)
def _analyse(path: str, size: int, mtime: float, cut_detector: str) -> VisualEvents:
    import torch

    from ..encoders.motion import MotionConfig, MotionEncoder, analyse_motion
    from ..video import load_frames

    cfg = MotionConfig()
    frames = load_frames([path], MotionEncoder(cfg).frame_spec, 0.0, None)
    n = int(frames.local_mask[0].sum())  # type: ignore[index]
    x, t = frames.local[0, :n], frames.local_times[0, :n].double().numpy()  # [T, H, W, 3] uint8, [T]
    a = analyse_motion(x.numpy(), t, cfg)
    keep = np.concatenate([[True], np.diff(t) > 1e-6])  # distinct frames
    thumbs = torch.nn.functional.interpolate(x[torch.from_numpy(keep)].permute(0, 3, 1, 2).float() / 255.0,
                                             size=(FEATURE_SIDE, FEATURE_SIDE), mode="area")  # [U, 3, s, s]
    feats = thumbs.flatten(1).numpy().astype(np.float64)  # [U, 3·s·s]
    duration = float(frames.duration[0]) if frames.duration is not None else float(t[-1])
    rate = cfg.fps if len(t) < 2 else 1.0 / float(np.median(np.diff(t[keep])))
    if cut_detector == "transnetv2":
        from .judges import transnet_cuts

        cuts = transnet_cuts(path)
    else:
        cuts = np.asarray(a.cuts, dtype=np.float64)
    return VisualEvents(np.asarray(a.beats, dtype=np.float64), cuts, a.tempo, feats, rate, duration)


def analyse_video(path: str | os.PathLike, cut_detector: str = "motion") -> VisualEvents:
    """The visual events of ``path`` (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise MetricError(f"video {p} does not exist")
    st = p.stat()
    return _analyse(str(p.resolve()), st.st_size, st.st_mtime, cut_detector)


def visual_of(item: Item, cut_detector: str = "motion", metric: str = "") -> VisualEvents:
    """The item's precomputed ``visual_*`` keys when it has beats and cuts, else :func:`analyse_video` of
    ``item["video"]``."""
    has = item.get("visual_beats") is not None and item.get("visual_cuts") is not None
    if has and cut_detector == "motion":
        feats = item.get("visual_features")
        return VisualEvents(np.sort(np.asarray(item["visual_beats"], dtype=np.float64)),
                            np.sort(np.asarray(item["visual_cuts"], dtype=np.float64)), item.get("visual_tempo"),
                            np.zeros((0, 0)) if feats is None else np.asarray(feats, dtype=np.float64),
                            float(item.get("visual_feature_rate") or 0.0), float(item.get("visual_duration") or 0.0))
    if item.get("video") is None:
        raise MetricError(f"metric {metric}: the item has neither 'visual_beats'/'visual_cuts' nor a 'video' path")
    return analyse_video(item["video"], cut_detector)


def visual_item_keys(events: VisualEvents) -> dict[str, Any]:
    """The item keys that carry ``events`` (what :func:`visual_of` reads back)."""
    return {"visual_beats": events.beats, "visual_cuts": events.cuts, "visual_tempo": events.tempo,
            "visual_features": events.features, "visual_feature_rate": events.feature_rate,
            "visual_duration": events.duration}
