"""Reference-free metrics for real videos: the music against the video's own events (no ground truth).

Visual events come from :mod:`.visual` (motion peaks and cuts of the video, or TransNetV2 cuts with
``cut_detector="transnetv2"``); music beats and downbeats from a tracker of :mod:`.judges`
(``tracker="librosa"`` by default, ``"madmom"`` / ``"beatnet"`` with ``vidmusic[judges]``). Every
protocol names the tracker and cut detector with version and licence.

``visual_sync``
    Music beats (or onsets, ``music="onsets"``) vs visual events (``events``: ``cuts``, ``beats`` = motion
    peaks, or ``all`` = both, merged within ``window``): precision / recall / F1 of one-to-one matching
    within ±``window`` s (``mir_eval.onset.f_measure``, 100 ms by default), and the LORIS-form BCS / BHS
    on ``bin_seconds`` bins (``|H|/|G|``, ``|H|/|R|``, see :mod:`.rhythm`). Keys ``vsync_*``.
``cut_downbeat``
    The transition–beat sync of VeM / JenBridge: the fraction of the video's cuts with a music downbeat
    within ±``window`` s (``cut_downbeat_hit``), with any beat (``cut_beat_hit``), and the mean distance of a
    cut to its nearest downbeat in beats (``cut_downbeat_offset``, 0 on the downbeat, 0.5 half a beat off;
    capped at ``beats_per_bar / 2``).
``event_corr``
    Event curves in the spirit of V2M-Zero: per modality, a cosine self-similarity matrix of z-scored
    features at ``feature_rate`` Hz (video: 8x8 RGB thumbnails; music: MFCC 1–13 + chroma) and its Foote
    checkerboard novelty (kernel ``kernel_seconds``); the score is the Pearson correlation of the two
    novelty curves (``event_corr``) and the best one within ±``max_lag`` s (``event_corr_best``). No
    paired model: each curve comes from its own modality alone.
``seam_continuity``
    Long-form generation in windows of ``window_seconds`` with ``overlap_seconds`` of prompt has seams at
    ``k · (window_seconds - overlap_seconds)``. For each seam with ``span`` s of music on both sides:
    tempo (``librosa.feature.tempo``) and key (Krumhansl–Schmuckler on chroma) before and after.
    ``seam_tempo_jump``: mean ``|t_after - t_before| / t_before``; ``seam_key_change``: the fraction of
    seams where the key changes; the same two at the window midpoints (``within_*``) as the baseline the
    seams are judged against. Items without a seam are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..components import Metric
from ..errors import ConfigError
from . import (Item, MetricError, base_protocol, check_choice, check_items, check_positive, item_audio, mean)
from .judges import BEAT_TRACKERS, CUT_DETECTORS, judge_manifest, track_beats
from .rhythm import bcs_bhs_counts, f_measure
from .visual import visual_of

LIBS = ("librosa", "mir_eval")


def merge_events(times: np.ndarray, within: float) -> np.ndarray:
    """Sorted ``times`` with events closer than ``within`` s to the previous kept one dropped."""
    kept: list[float] = []
    for t in np.sort(np.asarray(times, dtype=np.float64)):
        if not kept or t - kept[-1] >= within:
            kept.append(float(t))
    return np.asarray(kept)


class _SyncMetric(Metric):
    version = 1
    needs = frozenset({"audio", "video"})
    cfg: Any

    def _check(self) -> None:
        check_choice(self.name, "tracker", self.cfg.tracker, BEAT_TRACKERS)
        check_choice(self.name, "cut_detector", self.cfg.cut_detector, CUT_DETECTORS)

    def protocol(self) -> dict[str, Any]:
        c = self.cfg
        return {**base_protocol(self.name, self.version, c, LIBS),
                "judges": [judge_manifest(c.tracker, sample_rate=c.sample_rate),
                           judge_manifest(c.cut_detector)]}


class VisualSync(_SyncMetric):
    """Music beats vs the video's cuts and motion peaks: F1 within a tolerance and BCS/BHS."""

    name = "visual_sync"

    @dataclass
    class Config:
        events: str = "all"  # cuts | beats (motion peaks) | all
        music: str = "beats"  # beats (tracker) | onsets (librosa onset_detect)
        tracker: str = "librosa"  # librosa | madmom | beatnet
        cut_detector: str = "motion"  # motion | transnetv2
        window: float = 0.1  # s, matching tolerance
        bin_seconds: float = 1.0  # BCS/BHS bins
        sample_rate: int = 22050

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self._check()
        check_choice(self.name, "events", self.cfg.events, ("cuts", "beats", "all"))
        check_choice(self.name, "music", self.cfg.music, ("beats", "onsets"))
        check_positive(self.name, window=self.cfg.window, bin_seconds=self.cfg.bin_seconds)

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        import librosa

        check_items(self.name, items)
        c = self.cfg
        rows = []
        for item in items:
            v = visual_of(item, c.cut_detector, self.name)
            ev = {"cuts": v.cuts, "beats": v.beats, "all": np.concatenate([v.cuts, v.beats])}[c.events]
            ev = merge_events(ev, c.window)
            if not len(ev):
                continue
            y = item_audio(item, c.sample_rate, self.name)
            if c.music == "beats":
                music = track_beats(y, c.sample_rate, c.tracker)[0]
            else:
                music = librosa.onset.onset_detect(y=y, sr=c.sample_rate, units="time")
            p, r, f = f_measure(ev, music, c.window)
            n_g, n_r, n_h = bcs_bhs_counts(music, ev, len(y) / c.sample_rate, c.bin_seconds)
            rows.append((p, r, f, n_h / n_g if n_g else 0.0, n_h / n_r if n_r else 0.0))
        if not rows:
            raise MetricError(f"metric {self.name}: no video has a visual event ({c.events})")
        p, r, f, bcs, bhs = np.mean(np.asarray(rows), axis=0)
        return {"vsync_precision": float(p), "vsync_recall": float(r), "vsync_f1": float(f),
                "vsync_bcs": float(bcs), "vsync_bhs": float(bhs)}


class CutDownbeat(_SyncMetric):
    """Do the video's cuts fall on music downbeats (VeM / JenBridge transition–beat sync)?"""

    name = "cut_downbeat"

    @dataclass
    class Config:
        tracker: str = "librosa"
        cut_detector: str = "motion"
        window: float = 0.1
        beats_per_bar: int = 4  # the librosa tracker's bar length (madmom/beatnet infer 3 or 4)
        sample_rate: int = 22050

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self._check()
        check_positive(self.name, window=self.cfg.window, beats_per_bar=self.cfg.beats_per_bar)

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        c = self.cfg
        down_hit, beat_hit, offset = [], [], []
        for item in items:
            cuts = visual_of(item, c.cut_detector, self.name).cuts
            if not len(cuts):
                continue
            y = item_audio(item, c.sample_rate, self.name)
            beats, downs = track_beats(y, c.sample_rate, c.tracker, beats_per_bar=c.beats_per_bar)
            if len(beats) < 2 or not len(downs):  # no pulse in the music: every cut misses
                down_hit.append(0.0)
                beat_hit.append(0.0)
                offset.append(c.beats_per_bar / 2)
                continue
            period = float(np.median(np.diff(beats)))
            d_down = np.min(np.abs(cuts[:, None] - downs[None, :]), axis=1)  # [n_c]
            d_beat = np.min(np.abs(cuts[:, None] - beats[None, :]), axis=1)
            down_hit.append(float(np.mean(d_down <= c.window)))
            beat_hit.append(float(np.mean(d_beat <= c.window)))
            offset.append(float(np.mean(np.minimum(d_down / period, c.beats_per_bar / 2))))
        if not down_hit:
            raise MetricError(f"metric {self.name}: no video has a cut (cut_detector={c.cut_detector!r})")
        return {"cut_downbeat_hit": mean(down_hit), "cut_beat_hit": mean(beat_hit),
                "cut_downbeat_offset": mean(offset)}


def _novelty(features: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty ``[T]`` of z-scored ``features [T, D]``."""
    from .control import foote_novelty

    z = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    return foote_novelty(z.T, half)


def _resample_rows(x: np.ndarray, rate: float, target: float, n: int) -> np.ndarray:
    """Rows of ``x [T, D]`` at ``rate`` /s averaged into ``n`` frames of ``1 / target`` s -> ``[n, D]``."""
    idx = np.minimum((np.arange(len(x)) / rate * target).astype(int), n - 1)
    out = np.zeros((n, x.shape[1]))
    np.add.at(out, idx, x)
    counts = np.bincount(idx, minlength=n)[:, None]
    filled = counts[:, 0] > 0
    out[filled] /= counts[filled]
    if not filled.all():  # frames with no source row take the previous one
        last = np.maximum.accumulate(np.where(filled, np.arange(n), 0))
        out = out[last]
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


class EventCorr(Metric):
    """Correlation of the video's and the music's self-similarity novelty curves (V2M-Zero's event curves)."""

    name = "event_corr"
    version = 1
    needs = frozenset({"audio", "video"})

    @dataclass
    class Config:
        feature_rate: float = 10.0  # Hz of both curves
        kernel_seconds: float = 1.0  # half-width of the checkerboard kernel
        max_lag: float = 0.5  # s, for event_corr_best
        sample_rate: int = 22050

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        check_positive(self.name, feature_rate=self.cfg.feature_rate, kernel_seconds=self.cfg.kernel_seconds)
        if self.cfg.max_lag < 0:
            raise ConfigError(f"metric {self.name}: max_lag must be >= 0, got {self.cfg.max_lag}")

    def curves(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """``(video novelty [n], music novelty [n])`` at ``feature_rate`` over the shorter of the two."""
        import librosa

        c = self.cfg
        v = visual_of(item, "motion", self.name)
        if v.features.size == 0:  # precomputed beats/cuts without the thumbnails
            v = visual_of({"video": item.get("video")}, "motion", self.name)
        y = item_audio(item, c.sample_rate, self.name)
        hop = 512
        mf = librosa.feature.mfcc(y=y, sr=c.sample_rate, n_mfcc=14, hop_length=hop)[1:]  # [13, T]
        ch = librosa.feature.chroma_stft(y=y, sr=c.sample_rate, hop_length=hop)  # [12, T]
        music = np.concatenate([mf, ch], axis=0).T  # [T, 25]
        seconds = min(len(y) / c.sample_rate, len(v.features) / v.feature_rate)
        n = int(seconds * c.feature_rate)
        half = max(1, int(round(c.kernel_seconds * c.feature_rate)))
        if n < 2 * half + 2:
            raise MetricError(f"metric {self.name}: {seconds:.1f} s is too short for kernel_seconds="
                              f"{c.kernel_seconds}")
        vn = _novelty(_resample_rows(v.features, v.feature_rate, c.feature_rate, n), half)
        mn = _novelty(_resample_rows(music, c.sample_rate / hop, c.feature_rate, n), half)
        return vn, mn

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        lag = int(round(self.cfg.max_lag * self.cfg.feature_rate))
        zero, best = [], []
        for item in items:
            vn, mn = self.curves(item)
            zero.append(pearson(vn, mn))
            best.append(max(pearson(vn[max(0, -k):len(vn) - max(0, k)], mn[max(0, k):len(mn) - max(0, -k)])
                            for k in range(-lag, lag + 1)))
        return {"event_corr": mean(zero), "event_corr_best": mean(best)}

    def protocol(self) -> dict[str, Any]:
        return {**base_protocol(self.name, self.version, self.cfg, LIBS),
                "judges": [judge_manifest("motion", features="8x8 RGB thumbnails")],
                "video_features": "8x8 RGB thumbnails at the video's rate",
                "music_features": "librosa MFCC 1-13 + chroma_stft, hop 512", "novelty": "Foote checkerboard"}


class SeamContinuity(Metric):
    """Tempo and key jumps across the window seams of long-form music, against the jumps inside windows."""

    name = "seam_continuity"
    version = 1
    needs = frozenset({"audio"})

    @dataclass
    class Config:
        window_seconds: float = 30.0
        overlap_seconds: float = 0.5
        span: float = 6.0  # s of music analysed on each side of a seam
        sample_rate: int = 22050

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        c = self.cfg
        check_positive(self.name, window_seconds=c.window_seconds, span=c.span)
        if not 0 <= c.overlap_seconds < c.window_seconds:
            raise ConfigError(f"metric {self.name}: overlap_seconds must be in [0, window_seconds)")

    def _tempo_key(self, y: np.ndarray) -> tuple[float, tuple[int, str]]:
        import librosa

        from .control import estimate_key

        sr = self.cfg.sample_rate
        tempo = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr))[0])
        return tempo, estimate_key(librosa.feature.chroma_cqt(y=y, sr=sr).sum(axis=1))

    def _jumps(self, y: np.ndarray, points: Sequence[float]) -> list[tuple[float, float]]:
        sr, span = self.cfg.sample_rate, self.cfg.span
        out = []
        for t in points:
            a, b, e = int((t - span) * sr), int(t * sr), int((t + span) * sr)
            (t0, k0), (t1, k1) = self._tempo_key(y[a:b]), self._tempo_key(y[b:e])
            out.append((abs(t1 - t0) / max(t0, 1e-6), float(k0 != k1)))
        return out

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        c = self.cfg
        hop = c.window_seconds - c.overlap_seconds
        seam, within = [], []
        for item in items:
            y = item_audio(item, c.sample_rate, self.name)
            dur = len(y) / c.sample_rate
            seams = [k * hop for k in range(1, int(dur / hop) + 1) if c.span <= k * hop <= dur - c.span]
            mids = [k * hop + c.window_seconds / 2 for k in range(int(dur / hop) + 1)
                    if c.span <= k * hop + c.window_seconds / 2 <= dur - c.span]
            if not seams:
                continue
            seam += self._jumps(y, seams)
            within += self._jumps(y, mids)
        if not seam:
            raise MetricError(f"metric {self.name}: no item is long enough to have a window seam with {c.span} s "
                              f"of music either side (window_seconds={c.window_seconds})")
        s, w = np.asarray(seam), np.asarray(within).reshape(-1, 2)
        return {"seam_tempo_jump": float(s[:, 0].mean()), "seam_key_change": float(s[:, 1].mean()),
                "within_tempo_jump": float(w[:, 0].mean()) if len(w) else float("nan"),
                "within_key_change": float(w[:, 1].mean()) if len(w) else float("nan")}

    def protocol(self) -> dict[str, Any]:
        return {**base_protocol(self.name, self.version, self.cfg, LIBS),
                "tempo": "librosa.feature.tempo", "key": "Krumhansl-Schmuckler on chroma_cqt"}
