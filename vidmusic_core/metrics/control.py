"""Control metrics: does the music take the tempo, key and structure the video asks for (toy ground truth)?

``tempo_acc``
    Estimated tempo: ``librosa.feature.tempo`` (autocorrelation of the onset envelope with librosa's
    log-normal prior centred on ``start_bpm``) on the audio, or on the impulse-train envelope of the MIDI
    note onsets. Reference: ``visual_tempo`` / ``reference["tempo"|"tempo_bpm"]``, else 60 / median
    inter-beat interval of the reference beats. ``tempo_acc``: ``|est - ref| <= tolerance · ref``
    (4 %, MIREX Acc1); ``tempo_acc_octave``: the same against any of ``ref × {1, ½, 2, ⅓, 3}`` (MIREX
    Acc2); ``tempo_rel_err``: mean ``|est - ref| / ref``.

``key_acc``
    Krumhansl–Schmuckler: the 12-bin pitch-class profile (audio: ``librosa.feature.chroma_cqt`` or
    ``chroma_stft`` summed over time; MIDI: pitched notes' durations per pitch class, drums excluded) is
    correlated (Pearson) with the Krumhansl–Kessler major and minor profiles rotated to the 12 tonics;
    the best of the 24 is the estimate. ``key_acc``: exact tonic and mode; ``key_mirex``: the MIREX
    weighted score (``mir_eval.key.weighted_score``: same 1, fifth above 0.5, relative 0.3, parallel
    0.2); ``key_acc_relaxed``: the fraction scoring > 0 there (exact, fifth, relative or parallel);
    ``mode_acc``: major/minor right. ``estimator="madmom"`` replaces the profile match on audio by
    madmom's CNN key recogniser (a judge of ``vidmusic[judges]``, model files CC BY-NC-SA 4.0).

``section_align``
    Music section boundaries vs the video cuts. Features per ``feature_rate`` Hz frame, z-scored over
    the clip: ``features="timbre"`` — audio MFCC 1–12, MIDI the sounding General-MIDI instrument families
    (program // 8) and drums; ``"timbre+harmony"`` adds chroma (CQT) / sounding pitch classes (in toy
    music the chords change every 2 beats, so harmony novelty fires inside sections; timbre is the
    better cue there). Cosine self-similarity matrix → Foote
    novelty with a Gaussian-tapered checkerboard kernel of ``kernel_seconds`` (normalised by the kernel
    mass inside the clip, so the clip edges are not boundaries) → ``librosa.util.peak_pick``
    (local maximum over ±``kernel_seconds``/2, above ``threshold``). Boundaries closer than ``window``
    to the clip ends are dropped. Precision/recall/F1 at ±``window`` (0.5 s, the MIREX boundary
    window) with ``mir_eval.onset.f_measure``, averaged over items with at least one cut. Items without
    a cut are skipped (recall is undefined there), so spurious boundaries in cut-free clips are not
    counted. Defaults were chosen on 52 toy clips (8 and 20 s): ground-truth music scores F1 ≈ 0.62
    (audio) / 0.85 (MIDI), against ≈ 0.25 / 0.19 when the cuts come from another clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..components import Metric
from . import (SOURCES, Item, MetricError, base_protocol, check_choice, check_items, check_positive, item_audio,
               key_name, mean, midi_notes, onset_envelope, pick_source, reference_cuts, reference_key,
               reference_tempo)
from .rhythm import f_measure

LIBS = ("librosa", "mir_eval")
OCTAVE_FACTORS = (1.0, 0.5, 2.0, 1.0 / 3.0, 3.0)
#: Krumhansl & Kessler (1982) probe-tone profiles, index 0 = tonic
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class _Base(Metric):
    version = 1
    needs = frozenset({"audio", "midi", "reference"})
    cfg: Any

    def _check(self) -> None:
        check_choice(self.name, "source", self.cfg.source, SOURCES)
        check_positive(self.name, sample_rate=self.cfg.sample_rate, hop_length=self.cfg.hop_length)

    def protocol(self) -> dict[str, Any]:
        return base_protocol(self.name, self.version, self.cfg, LIBS)


# --------------------------------------------------------------------------------------------------
# tempo
# --------------------------------------------------------------------------------------------------
def tempo_hits(estimated: float, reference: float, tolerance: float) -> tuple[bool, bool]:
    """``(exact, octave)``: within ``tolerance·ref`` of ``ref``, of any of ``ref × OCTAVE_FACTORS``."""
    ok = [abs(estimated - f * reference) <= tolerance * f * reference for f in OCTAVE_FACTORS]
    return ok[0], any(ok)


class TempoAcc(_Base):
    """Fraction of items whose estimated tempo is within 4 % of the reference (and octave-tolerant)."""

    name = "tempo_acc"

    @dataclass
    class Config:
        sample_rate: int = 22050
        hop_length: int = 512
        tolerance: float = 0.04
        start_bpm: float = 120.0
        source: str = "auto"

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self._check()
        check_positive(self.name, tolerance=self.cfg.tolerance, start_bpm=self.cfg.start_bpm)

    def estimate(self, item: Item) -> float:
        """Tempo (bpm) of the item's music."""
        import librosa

        c = self.cfg
        env, _ = onset_envelope(item, pick_source(item, c.source, self.name), c.sample_rate, c.hop_length, self.name)
        return float(librosa.feature.tempo(onset_envelope=env, sr=c.sample_rate, hop_length=c.hop_length,
                                           start_bpm=c.start_bpm)[0])

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        exact, octave, err = [], [], []
        for item in items:
            ref = reference_tempo(item)
            if ref is None or not ref > 0:
                continue
            est = self.estimate(item)
            a, b = tempo_hits(est, ref, self.cfg.tolerance)
            exact.append(float(a))
            octave.append(float(b))
            err.append(abs(est - ref) / ref)
        if not exact:
            raise MetricError(f"metric {self.name}: no item has a reference tempo ('visual_tempo', "
                              "reference['tempo'/'tempo_bpm'] or two reference beats)")
        return {"tempo_acc": mean(exact), "tempo_acc_octave": mean(octave), "tempo_rel_err": mean(err)}

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "octave_factors": list(OCTAVE_FACTORS), "estimator": "librosa.feature.tempo"}


# --------------------------------------------------------------------------------------------------
# key
# --------------------------------------------------------------------------------------------------
def estimate_key(profile: np.ndarray) -> tuple[int, str]:
    """Krumhansl–Schmuckler: ``(tonic, mode)`` whose rotated KK profile correlates best with ``profile [12]``."""
    profile = np.asarray(profile, dtype=np.float64)
    if not np.isfinite(profile).all() or np.ptp(profile) <= 0:
        raise MetricError("key estimation needs a pitch-class profile with some variation (silent music?)")
    best = (-np.inf, 0, "major")
    for mode, kk in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(kk, tonic))[0, 1])
            if r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def midi_pitch_classes(notes: np.ndarray) -> np.ndarray:
    """Duration-weighted pitch-class histogram ``[12]`` of the pitched notes of ``midi_notes`` rows."""
    pitched = notes[notes[:, 4] == 0]
    return np.bincount(pitched[:, 2].astype(int) % 12, weights=pitched[:, 1] - pitched[:, 0], minlength=12)


class KeyAcc(_Base):
    """Key accuracy of the music (Krumhansl–Schmuckler) vs the reference key: exact, relaxed, MIREX."""

    name = "key_acc"

    @dataclass
    class Config:
        sample_rate: int = 22050
        hop_length: int = 512
        chroma: str = "cqt"  # cqt | stft
        source: str = "auto"
        estimator: str = "krumhansl"  # krumhansl | madmom (the CNN key judge, audio only; vidmusic[judges])

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self._check()
        check_choice(self.name, "chroma", self.cfg.chroma, ("cqt", "stft"))
        check_choice(self.name, "estimator", self.cfg.estimator, ("krumhansl", "madmom"))

    def estimate(self, item: Item) -> tuple[int, str]:
        """``(tonic, mode)`` of the item's music by the configured estimator."""
        if self.cfg.estimator == "madmom" and pick_source(item, self.cfg.source, self.name) == "audio":
            from .judges import madmom_key

            return madmom_key(item_audio(item, self.cfg.sample_rate, self.name), self.cfg.sample_rate)
        return estimate_key(self.profile(item))

    def profile(self, item: Item) -> np.ndarray:
        """Pitch-class profile ``[12]`` of the item's music (chroma sum, or MIDI histogram)."""
        import librosa

        c = self.cfg
        if pick_source(item, c.source, self.name) == "midi":
            return midi_pitch_classes(midi_notes(item["midi"]))
        y = item_audio(item, c.sample_rate, self.name)
        fn = librosa.feature.chroma_cqt if c.chroma == "cqt" else librosa.feature.chroma_stft
        return fn(y=y, sr=c.sample_rate, hop_length=c.hop_length).sum(axis=1)  # [12, T] -> [12]

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        import mir_eval

        check_items(self.name, items)
        exact, weighted, mode_ok = [], [], []
        for item in items:
            ref = reference_key(item)
            if ref is None:
                continue
            est = self.estimate(item)
            exact.append(float(est == ref))
            weighted.append(float(mir_eval.key.weighted_score(key_name(*ref), key_name(*est))))
            mode_ok.append(float(est[1] == ref[1]))
        if not exact:
            raise MetricError(f"metric {self.name}: no item has reference['key']")
        return {"key_acc": mean(exact), "key_acc_relaxed": mean([float(w > 0) for w in weighted]),
                "key_mirex": mean(weighted), "mode_acc": mean(mode_ok)}

    def protocol(self) -> dict[str, Any]:
        from .judges import judge_manifest

        judge = ({"judges": [judge_manifest("madmom", processor="CNNKeyRecognitionProcessor")]}
                 if self.cfg.estimator == "madmom" else {})
        return {**super().protocol(), **judge, "profiles": "Krumhansl-Kessler 1982", "correlation": "pearson",
                "midi_profile": "duration-weighted pitch classes, drums excluded",
                "weights": {"same": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2}}


# --------------------------------------------------------------------------------------------------
# cut -> section alignment
# --------------------------------------------------------------------------------------------------
def checkerboard(half: int) -> np.ndarray:
    """Gaussian-tapered checkerboard kernel ``[2·half, 2·half]`` (Foote 2000), +1 within, -1 across."""
    x = np.arange(-half, half) + 0.5
    sign = np.sign(x)
    taper = np.exp(-0.5 * (x / (0.5 * half)) ** 2)
    return np.outer(sign * taper, sign * taper)


def foote_novelty(features: np.ndarray, half: int) -> np.ndarray:
    """Novelty ``[T]`` of ``features [D, T]``: checkerboard correlation along the diagonal of the cosine
    self-similarity matrix, normalised by the kernel mass that lies inside the matrix."""
    f = features / np.maximum(np.linalg.norm(features, axis=0, keepdims=True), 1e-9)
    ssm = f.T @ f  # [T, T]
    T = ssm.shape[0]
    kernel = checkerboard(half)
    pad = np.full((T + 2 * half, T + 2 * half), np.nan)
    pad[half:half + T, half:half + T] = ssm
    nov = np.zeros(T)
    for t in range(T):  # boundary between frames t-1 and t
        win = pad[t:t + 2 * half, t:t + 2 * half]
        valid = np.isfinite(win)
        mass = np.abs(kernel[valid]).sum()
        nov[t] = (kernel[valid] * win[valid]).sum() / mass if mass > 0 else 0.0
    nov[0] = 0.0
    return np.maximum(nov, 0.0)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)


class SectionAlign(_Base):
    """Music section boundaries (self-similarity novelty) vs the video cuts: P/R/F1 at ±0.5 s."""

    name = "section_align"

    @dataclass
    class Config:
        sample_rate: int = 22050
        hop_length: int = 512
        window: float = 0.5
        feature_rate: float = 8.0  # novelty frames per second
        kernel_seconds: float = 4.0
        threshold: float = 0.05
        features: str = "timbre"  # timbre | timbre+harmony
        source: str = "auto"

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self._check()
        c = self.cfg
        check_positive(self.name, window=c.window, feature_rate=c.feature_rate, kernel_seconds=c.kernel_seconds)
        check_choice(self.name, "features", c.features, ("timbre", "timbre+harmony"))

    def features(self, item: Item) -> tuple[np.ndarray, float, float]:
        """``(features [D, T], frames per second, duration s)`` of the item's music."""
        import librosa

        c = self.cfg
        harmony = c.features == "timbre+harmony"
        if pick_source(item, c.source, self.name) == "midi":
            notes = midi_notes(item["midi"])
            if not len(notes):
                raise MetricError(f"metric {self.name}: the item's MIDI has no notes")
            duration = float(notes[:, 1].max())
            feats = np.zeros((17 + 12, max(1, int(np.ceil(duration * c.feature_rate)))))  # [families+drums+pcs, T]
            for on, off, pitch, _, drum, program in notes:
                a = int(on * c.feature_rate)
                b = max(a + 1, int(np.ceil(off * c.feature_rate)))
                feats[16 if drum else int(program) // 8, a:b] += 1.0  # GM family (program // 8) or drums
                if not drum:
                    feats[17 + int(pitch) % 12, a:b] += 1.0
            return _zscore(feats if harmony else feats[:17]), c.feature_rate, duration
        y = item_audio(item, c.sample_rate, self.name)
        frames = _zscore(librosa.feature.mfcc(y=y, sr=c.sample_rate, hop_length=c.hop_length, n_mfcc=13)[1:])
        if harmony:
            chroma = librosa.feature.chroma_cqt(y=y, sr=c.sample_rate, hop_length=c.hop_length)  # [12, F]
            frames = np.vstack([frames, _zscore(chroma)])  # [24, F]
        step = max(1, int(round(c.sample_rate / c.hop_length / c.feature_rate)))
        feats = librosa.util.sync(frames, np.arange(0, frames.shape[1], step), aggregate=np.mean, pad=False)  # [D, T]
        return feats, c.sample_rate / c.hop_length / step, len(y) / c.sample_rate

    def boundaries(self, item: Item) -> np.ndarray:
        """Estimated section boundary times (s) of the item's music."""
        import librosa

        c = self.cfg
        feats, rate, duration = self.features(item)
        half = max(1, int(round(c.kernel_seconds * rate / 2)))
        nov = foote_novelty(feats, half)
        if nov.size < 3:
            return np.zeros(0)
        peaks = librosa.util.peak_pick(nov, pre_max=half, post_max=half + 1, pre_avg=half, post_avg=half + 1,
                                       delta=c.threshold, wait=half)
        times = peaks / rate
        return times[(times >= c.window) & (times <= duration - c.window)]

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        scores = []
        for item in items:
            cuts = reference_cuts(item)
            if cuts is None or not len(cuts):
                continue
            scores.append(f_measure(cuts, self.boundaries(item), self.cfg.window))
        if not scores:
            raise MetricError(f"metric {self.name}: no item has a cut ('visual_cuts', reference['cuts'/"
                              "'cut_times'] or two reference sections)")
        p, r, f = np.mean(np.asarray(scores), axis=0)
        return {"section_precision": float(p), "section_recall": float(r), "section_f1": float(f)}

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "novelty": "foote checkerboard (gaussian taper) on cosine SSM",
                "audio_features": "z-scored mfcc[1:13] (+ chroma_cqt with timbre+harmony)",
                "midi_features": "sounding GM instrument families + drums (+ pitch classes with timbre+harmony)"}
