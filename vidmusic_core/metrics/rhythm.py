"""Rhythm metrics: does the generated music hit the (visual) beats and cuts of the video?

``beat_f1``
    Music events vs the reference beats (``visual_beats``, else ``reference["beats"]``), one-to-one
    matching within ±``window`` s (70 ms, the mir_eval/MIREX default) with ``mir_eval.onset.f_measure``;
    precision, recall and F1 per item, averaged over items. Two event sets, both always reported:

    * *beats*: ``librosa.beat.beat_track`` on the onset envelope (MIDI: on an impulse-train envelope of
      the note onsets), ``trim=beat_trim`` — librosa's default True drops weak first/last beats, which
      costs some recall on short clips;
    * *onsets*: ``librosa.onset.onset_detect`` with librosa's default peak picking (MIDI: the distinct
      note-on times, merged within one hop).

    Unlike ``mir_eval.beat.evaluate`` the first 5 s are not trimmed (clips are short). Items without
    reference beats are skipped.

``cut_hit``
    Fraction of cuts (``visual_cuts``, else the reference cuts) with a music onset within ±``window`` s,
    averaged over items that have cuts. Only the recall is meaningful: music legitimately has onsets
    between cuts, so an onset-vs-cut precision or F1 would mostly count those. The F1 form of cut
    alignment is ``section_align`` (music section boundaries vs cuts, :mod:`.control`).

``bcs_bhs`` — Beats Coverage Score and Beats Hit Score
    Onsets are detected with ``librosa.onset.onset_detect(wait=1, delta=0.2, …, units="time")`` at
    22.05 kHz (hop 512) and quantised into ``bin_seconds`` = 1 s bins (``bin = int(t // 1 s)``; several
    onsets in one bin count once). Per clip, with ``G`` = occupied bins of the generated music, ``R`` =
    occupied bins of the reference, ``H`` = bins occupied in both:

    * **D2M-GAN form** — ``BCS = |G| / |R|`` (can exceed 1), ``BHS = |H| / |R|``. As implemented in
      ``beats_scores.py`` of L-YeZhu/Beats_Scores, the released evaluation code of D2M-GAN (Zhu et al., "Quantized
      GAN for Complex Music Generation from Dance Videos", ECCV 2022) and CDCD (Zhu et al., "Discrete
      Contrastive Diffusion for Cross-Modal Music and Image Generation", ICLR 2023); peak picking
      ``pre_max=1`` (librosa's default there), ``post_max=1``, ``pre_avg=1``, ``post_avg=1``.
    * **LORIS form** — ``BCS = |H| / |G|`` (a precision; 0 when ``G`` is empty), ``BHS = |H| / |R|``
      (a recall), ``F1 = 2·BCS·BHS / (BCS + BHS)`` of the item means, and sample standard deviations
      (ddof=1, the tables' CSD/HSD). As implemented in ``beats_scores.py`` of OpenGVLab/LORIS (Yu et al.,
      "Long-Term Rhythmic Video Soundtracker", ICML 2023); peak picking ``pre/post_max = pre/post_avg = 3``.

    The two forms share BHS and differ in BCS (``|G|/|R|`` vs ``|H|/|G|``), so the outputs are
    ``bcs_d2m``, ``bhs``, ``bcs_loris``, ``bcs_bhs_f1_loris``, ``bcs_loris_std``, ``bhs_std`` (a std of a
    single item is reported as 0). ``peak_pick`` ("d2m" | "loris") picks the detector settings for
    audio; MIDI items use their note onsets. The reference is ``against="beats"`` (the visual /
    reference beat times, binned the same way) or ``"reference_audio"`` (onsets of the item's reference
    music — the literature protocol). The number of bins is ``ceil(duration of the generated music /
    bin_seconds)`` and reference events after it are dropped (LORIS truncates the reference this way;
    the D2M script requires equal lengths). Items whose reference has no event are skipped (the D2M
    script would divide by zero, LORIS's returns 0). The score names come from Lee et al., "Dancing to
    Music" (NeurIPS 2019), where dance is scored against music beats.

    Caveat: with 1 s bins any reference whose beat period is under 1 s occupies every bin, so
    ``against="beats"`` then measures only how many seconds hold a detected onset, not their phase
    (toy music is 70–150 bpm: use ``beat_f1`` for alignment, or a smaller ``bin_seconds``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..components import Metric
from .judges import judge_manifest
from . import (SOURCES, Item, MetricError, base_protocol, check_choice, check_items, check_positive, item_audio,
               mean, midi_notes, midi_onsets, onset_envelope, pick_source, reference_beats, reference_cuts)

LIBS = ("librosa", "mir_eval")

#: onset_detect peak-picking settings of the two published BCS/BHS scripts (at 22.05 kHz, hop 512)
PEAK_PICK = {
    "d2m": {"wait": 1, "delta": 0.2, "pre_max": 1, "post_max": 1, "pre_avg": 1, "post_avg": 1},
    "loris": {"wait": 1, "delta": 0.2, "pre_max": 3, "post_max": 3, "pre_avg": 3, "post_avg": 3},
}


def f_measure(reference: np.ndarray, estimated: np.ndarray, window: float) -> tuple[float, float, float]:
    """``(precision, recall, f1)`` of one-to-one matching within ±window (``mir_eval.onset.f_measure``);
    no estimate gives 0 (mir_eval would warn and return 0 too)."""
    import mir_eval

    if not len(estimated):
        return 0.0, 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f, p, r = mir_eval.onset.f_measure(np.sort(reference), np.sort(estimated), window=window)
    return float(p), float(r), float(f)


def music_events(item: Item, source: str, sample_rate: int, hop_length: int, start_bpm: float,
                 metric: str, trim: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(onset times, beat times)`` in seconds of the item's music (audio or MIDI, see module doc)."""
    import librosa

    env, _ = onset_envelope(item, source, sample_rate, hop_length, metric)
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sample_rate, hop_length=hop_length,
                                       start_bpm=start_bpm, units="time", trim=trim)
    if source == "midi":
        onsets = midi_onsets(midi_notes(item["midi"]), merge=hop_length / sample_rate)
    else:
        onsets = librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate, hop_length=hop_length, units="time")
    return np.asarray(onsets, dtype=np.float64), np.asarray(beats, dtype=np.float64)


@dataclass
class _EventConfig:
    sample_rate: int = 22050
    hop_length: int = 512
    window: float = 0.07
    source: str = "auto"  # auto (MIDI when the item has it) | audio | midi
    start_bpm: float = 120.0  # beat_track's tempo prior centre
    beat_trim: bool = True  # beat_track(trim=...): drop weak beats at the start and end


class _EventMetric(Metric):
    version = 1
    Config: type = _EventConfig

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        check_choice(self.name, "source", self.cfg.source, SOURCES)
        check_positive(self.name, sample_rate=self.cfg.sample_rate, hop_length=self.cfg.hop_length,
                       window=self.cfg.window, start_bpm=self.cfg.start_bpm)

    def _events(self, item: Item) -> tuple[np.ndarray, np.ndarray, str]:
        c = self.cfg
        src = pick_source(item, c.source, self.name)
        onsets, beats = music_events(item, src, c.sample_rate, c.hop_length, c.start_bpm, self.name, c.beat_trim)
        return onsets, beats, src

    def protocol(self) -> dict[str, Any]:
        return {**base_protocol(self.name, self.version, self.cfg, LIBS), "matching": "mir_eval.onset.f_measure",
                "judges": [judge_manifest("librosa")]}


class BeatF1(_EventMetric):
    """Beat and onset precision/recall/F1 of the music vs the visual/reference beats (±70 ms)."""

    name = "beat_f1"
    needs = frozenset({"audio", "midi", "reference"})

    @dataclass
    class Config(_EventConfig):
        pass

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        per: dict[str, list[tuple[float, float, float]]] = {"beat": [], "onset": []}
        for item in items:
            ref = reference_beats(item)
            if not len(ref):
                continue
            onsets, beats, _ = self._events(item)
            per["beat"].append(f_measure(ref, beats, self.cfg.window))
            per["onset"].append(f_measure(ref, onsets, self.cfg.window))
        if not per["beat"]:
            raise MetricError(f"metric {self.name}: no item has reference beats ('visual_beats' or "
                              "reference['beats'/'beat_times'])")
        out: dict[str, float] = {}
        for kind, scores in per.items():
            p, r, f = np.mean(np.asarray(scores), axis=0)
            out.update({f"{kind}_precision": float(p), f"{kind}_recall": float(r), f"{kind}_f1": float(f)})
        return out


class CutHit(_EventMetric):
    """Fraction of video cuts that the music marks with an onset within ±70 ms."""

    name = "cut_hit"
    needs = frozenset({"audio", "midi", "reference"})

    @dataclass
    class Config(_EventConfig):
        pass

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        rates = []
        for item in items:
            cuts = reference_cuts(item)
            if cuts is None or not len(cuts):
                continue
            onsets, _, _ = self._events(item)
            rates.append(f_measure(cuts, onsets, self.cfg.window)[1])  # recall = cuts hit / cuts
        if not rates:
            raise MetricError(f"metric {self.name}: no item has a cut ('visual_cuts', reference['cuts'/"
                              "'cut_times'] or two reference sections)")
        return {"cut_hit_rate": mean(rates)}


# --------------------------------------------------------------------------------------------------
# BCS / BHS
# --------------------------------------------------------------------------------------------------
def occupied_bins(times: np.ndarray, n_bins: int, bin_seconds: float) -> np.ndarray:
    """Bool ``[n_bins]``: bin ``int(t // bin_seconds)`` holds at least one event (later ones dropped)."""
    bins = np.zeros(n_bins, dtype=bool)
    idx = np.floor(np.asarray(times, dtype=np.float64) / bin_seconds).astype(int)
    bins[idx[(idx >= 0) & (idx < n_bins)]] = True
    return bins


def bcs_bhs_counts(generated: np.ndarray, reference: np.ndarray, duration: float,
                   bin_seconds: float = 1.0) -> tuple[int, int, int]:
    """``(|G|, |R|, |H|)``: occupied generated, reference and common bins over ``ceil(duration / bin)`` bins."""
    n_bins = max(1, int(math.ceil(duration / bin_seconds - 1e-9)))
    g, r = occupied_bins(generated, n_bins, bin_seconds), occupied_bins(reference, n_bins, bin_seconds)
    return int(g.sum()), int(r.sum()), int((g & r).sum())


class BCSBHS(Metric):
    """Beats Coverage / Hit Scores in the D2M-GAN and LORIS forms (1 s bins); see the module docstring."""

    name = "bcs_bhs"
    version = 1
    needs = frozenset({"audio", "midi", "reference"})

    @dataclass
    class Config:
        sample_rate: int = 22050
        hop_length: int = 512
        bin_seconds: float = 1.0
        peak_pick: str = "d2m"  # d2m | loris: onset_detect settings for audio
        against: str = "beats"  # beats (visual/reference beat times) | reference_audio (its onsets)
        source: str = "auto"

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        c = self.cfg
        check_choice(self.name, "peak_pick", c.peak_pick, tuple(PEAK_PICK))
        check_choice(self.name, "against", c.against, ("beats", "reference_audio"))
        check_choice(self.name, "source", c.source, SOURCES)
        check_positive(self.name, sample_rate=c.sample_rate, hop_length=c.hop_length, bin_seconds=c.bin_seconds)

    def _audio_onsets(self, item: Item, key: str) -> tuple[np.ndarray, float]:
        import librosa

        c = self.cfg
        y = item_audio(item, c.sample_rate, self.name, key)
        onsets = librosa.onset.onset_detect(y=y, sr=c.sample_rate, hop_length=c.hop_length, units="time",
                                            **PEAK_PICK[c.peak_pick])
        return np.asarray(onsets, dtype=np.float64), len(y) / c.sample_rate

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        check_items(self.name, items)
        c = self.cfg
        d2m, hit, loris = [], [], []
        for item in items:
            if pick_source(item, c.source, self.name) == "midi":
                notes = midi_notes(item["midi"])
                gen, duration = midi_onsets(notes, 0.0), float(notes[:, 1].max()) if len(notes) else 0.0
            else:
                gen, duration = self._audio_onsets(item, "audio")
            ref = reference_beats(item) if c.against == "beats" else self._audio_onsets(item, "reference_audio")[0]
            n_gen, n_ref, n_hit = bcs_bhs_counts(gen, ref, duration, c.bin_seconds)
            if n_ref == 0:
                continue
            d2m.append(n_gen / n_ref)
            hit.append(n_hit / n_ref)
            loris.append(n_hit / n_gen if n_gen else 0.0)
        if not hit:
            raise MetricError(f"metric {self.name}: no item has a reference event inside the generated music "
                              f"(against={c.against!r})")
        cover, h = mean(loris), mean(hit)
        std = (lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0)  # noqa: E731
        return {"bcs_d2m": mean(d2m), "bhs": h, "bcs_loris": cover,
                "bcs_bhs_f1_loris": 2 * cover * h / (cover + h) if cover + h > 0 else 0.0,
                "bcs_loris_std": std(loris), "bhs_std": std(hit)}

    def protocol(self) -> dict[str, Any]:
        return {**base_protocol(self.name, self.version, self.cfg, LIBS), "judges": [judge_manifest("librosa")],
                "onset_detect": {**PEAK_PICK[self.cfg.peak_pick], "units": "time"},
                "forms": {"bcs_d2m": "|G|/|R| (L-YeZhu/Beats_Scores: D2M-GAN, CDCD)",
                          "bhs": "|H|/|R| (both)", "bcs_loris": "|H|/|G| (OpenGVLab/LORIS)"}}
