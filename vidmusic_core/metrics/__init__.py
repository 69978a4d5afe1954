"""Evaluation metrics (DESIGN §8): rhythm, control and quality scores with a protocol manifest.

Every metric is a :class:`~vidmusic_core.types.Metric` registered by ``vidmusic_core.builtins`` through
the ``register_metrics`` hook; build one with ``get_component("metric", name).build(cfg)`` and call
``compute(items) -> dict[str, float]`` (scores averaged over the items) and ``protocol() -> dict``
(JSON-serialisable: metric name + version, library versions and every config field the score depends
on). Store the protocol next to the score; two scores are comparable only when their protocols match.

Item format (a plain dict per clip; a metric reads only what it needs)
---------------------------------------------------------------------
- ``audio``: generated music, ``np.ndarray`` float ``[L]`` mono (``[C, L]`` is mixed down to mono).
- ``sample_rate``: int, the rate of ``audio`` (and of ``reference_audio`` unless
  ``reference_sample_rate`` is given). Each metric resamples to its own ``sample_rate`` (soxr).
- ``midi``: generated music of a symbolic backbone: a path, a ``pretty_midi.PrettyMIDI`` or a
  ``symusic.Score``. With the default ``source="auto"`` the MIDI is used when present (note onsets are
  exact), otherwise the audio.
- ``video``: path to the source video (the reference-free metrics of :mod:`.sync` decode it when the item
  has no ``visual_*`` keys; :mod:`.visual`).
- ``reference``: the ground-truth dict of the clip, e.g. a toy clip's ``NAME.json``. Keys read (either
  spelling): ``tempo`` | ``tempo_bpm`` (bpm), ``beats`` | ``beat_times`` (s), ``key`` (``"A minor"``,
  ``"F#"``/``"Am"``, an int tonic with ``mode``, or ``{"tonic": 9, "mode": "minor"}``), ``mode``,
  ``cuts`` | ``cut_times`` (s), ``sections`` (list of ``{"start", "end"}``; cuts default to the section
  starts after the first), ``duration``.
- ``visual_beats`` / ``visual_cuts`` / ``visual_tempo``: for real data, the beats, cuts and tempo of a
  motion analysis of the video. When present they take precedence over ``reference``.
- ``reference_audio``: reference music ``np.ndarray [L]`` for ``fd_mel``/``fad`` (the reference set is
  the union over items) and for ``bcs_bhs`` with ``against="reference_audio"``.

``needs`` of a metric lists every item key it may read; ``audio`` and ``midi`` are alternatives, and
``reference`` stands for ``reference`` and its ``visual_*`` / ``reference_audio`` substitutes.

Metrics and output keys
-----------------------
- ``beat_f1`` (:mod:`.rhythm`): ``beat_precision/recall/f1`` (librosa ``beat_track``) and
  ``onset_precision/recall/f1`` (librosa ``onset_detect`` / MIDI note onsets) vs the reference beats,
  ±70 ms, ``mir_eval.onset.f_measure``.
- ``cut_hit`` (:mod:`.rhythm`): ``cut_hit_rate``, the fraction of cuts with a music onset within ±70 ms.
- ``bcs_bhs`` (:mod:`.rhythm`): ``bcs_d2m``, ``bhs``, ``bcs_loris``, ``bcs_bhs_f1_loris``,
  ``bcs_loris_std``, ``bhs_std`` (1 s bins; both published forms, see the module docstring).
- ``tempo_acc`` (:mod:`.control`): ``tempo_acc`` (±4 %), ``tempo_acc_octave`` (also ×½ ×2 ×⅓ ×3),
  ``tempo_rel_err``.
- ``key_acc`` (:mod:`.control`): ``key_acc``, ``key_acc_relaxed``, ``key_mirex``, ``mode_acc``.
- ``section_align`` (:mod:`.control`): ``section_precision/recall/f1`` of novelty boundaries vs cuts, ±0.5 s.
- ``fd_mel`` (:mod:`.quality`): ``fd_mel`` (Fréchet distance of log-mel frame statistics).
- ``fad`` (:mod:`.quality`): ``fad`` (Fréchet distance of embeddings of a local embedder, e.g. CLAP).
- ``kad`` (:mod:`.kad`): ``kad`` (kadtk's unbiased MMD² of the same embeddings, ×100).
- reference-free, against the video's own cuts and motion peaks (:mod:`.sync`): ``visual_sync``
  (``vsync_precision/recall/f1``, ``vsync_bcs``, ``vsync_bhs``), ``cut_downbeat`` (``cut_downbeat_hit``,
  ``cut_beat_hit``, ``cut_downbeat_offset``), ``event_corr`` (``event_corr``, ``event_corr_best``),
  ``seam_continuity`` (``seam_tempo_jump``, ``seam_key_change``, ``within_tempo_jump``, ``within_key_change``).
- ``transcription_f1`` (:mod:`.transcription`, judge basic-pitch): rendered audio vs its own MIDI.

Details, protocol fields and how to plug a FAD embedder: ``docs/metrics.md``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, VidmusicError

Item = Mapping[str, Any]
SOURCES = ("auto", "audio", "midi")


class MetricError(VidmusicError, ValueError):
    """Items a metric cannot score (missing key, empty audio, broken MIDI, no usable reference)."""


class MissingWeightsError(MetricError):
    """A metric that needs local model weights (``fad``) was not given a usable directory."""


# --------------------------------------------------------------------------------------------------
# protocol helpers
# --------------------------------------------------------------------------------------------------
def lib_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def base_protocol(name: str, metric_version: int, cfg: Any, libs: Sequence[str] = (),
                  exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``{"metric", "version", **config fields, "libraries": {dist: version}}`` (JSON-serialisable).

    ``exclude``: config fields that do not change the score or are machine-specific (local paths,
    device); their content enters the protocol as a hash instead."""
    fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    fields = {k: v for k, v in fields.items() if k not in exclude}
    return {"metric": name, "version": metric_version, **fields,
            "libraries": {d: lib_version(d) for d in ("numpy", *libs)}}


def check_choice(metric: str, key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"metric {metric}: {key}={value!r} is not one of {list(choices)}")


def check_positive(metric: str, **values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, (int, float)) and value > 0):
            raise ConfigError(f"metric {metric}: {key} must be > 0, got {value!r}")


def check_items(metric: str, items: Sequence[Item]) -> None:
    if isinstance(items, Mapping) or not len(items):
        raise MetricError(f"metric {metric}: compute() needs a non-empty list of item dicts, "
                          f"got {type(items).__name__}")


def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


# --------------------------------------------------------------------------------------------------
# reference fields
# --------------------------------------------------------------------------------------------------
_ALIASES = {"tempo": ("tempo", "tempo_bpm"), "beats": ("beats", "beat_times"), "cuts": ("cuts", "cut_times")}


def ref_field(item: Item, field: str) -> Any:
    """``item["visual_<field>"]`` if present, else ``item["reference"][field or its alias]``, else None."""
    if item.get(f"visual_{field}") is not None:
        return item[f"visual_{field}"]
    ref = item.get("reference") or {}
    for key in _ALIASES.get(field, (field,)):
        if ref.get(key) is not None:
            return ref[key]
    return None


def _times(value: Any) -> np.ndarray:
    arr = np.sort(np.asarray(value if value is not None else [], dtype=np.float64).ravel())
    return arr[np.isfinite(arr) & (arr >= 0)]


def reference_beats(item: Item) -> np.ndarray:
    """Beat times (s, sorted) the music should follow: ``visual_beats`` or the reference beats."""
    return _times(ref_field(item, "beats"))


def reference_cuts(item: Item) -> np.ndarray | None:
    """Cut times (s): ``visual_cuts``, the reference cuts, or the starts of the sections after the first;
    None when the item has none of these (an empty array means "no cut in this clip")."""
    cuts = ref_field(item, "cuts")
    if cuts is None:
        sections = (item.get("reference") or {}).get("sections")
        if sections is None:
            return None
        cuts = [s["start"] for s in sections[1:]]
    return _times(cuts)


def reference_tempo(item: Item) -> float | None:
    """Tempo (bpm): ``visual_tempo``, the reference tempo, else 60 / median inter-beat interval."""
    tempo = ref_field(item, "tempo")
    if tempo is not None:
        return float(tempo)
    beats = reference_beats(item)
    if len(beats) >= 2:
        return 60.0 / float(np.median(np.diff(beats)))
    return None


PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_PC = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def parse_key(key: Any, mode: Any = None) -> tuple[int, str]:
    """``(tonic pitch class, "major"|"minor")`` from ``"A minor"``, ``"Am"``, ``"Bb major"``, ``"F#"``,
    an int tonic (with ``mode``) or ``{"tonic": .., "mode": ..}``."""
    if isinstance(key, Mapping):
        return parse_key(key.get("tonic", key.get("tonic_name")), key.get("mode", mode))
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        tonic, m = int(key) % 12, mode
    else:
        s = str(key).strip()
        match = re.fullmatch(r"([A-Ga-g])([#b♯♭]?)\s*(:?\s*(major|minor|maj|min|m|M)?)", s)
        if not match:
            raise MetricError(f"cannot read the key {key!r}: use e.g. 'A minor', 'Am', 'F# major' "
                              "or an int tonic + mode")
        tonic = (_PC[match.group(1).lower()] + {"#": 1, "♯": 1, "b": -1, "♭": -1, "": 0}[match.group(2)]) % 12
        m = match.group(4) or mode or "major"
    m = {"maj": "major", "M": "major", "min": "minor", "m": "minor"}.get(str(m), str(m)).lower() if m else "major"
    if m not in ("major", "minor"):
        raise MetricError(f"key mode {m!r} is not 'major' or 'minor'")
    return tonic, m


def reference_key(item: Item) -> tuple[int, str] | None:
    ref = item.get("reference") or {}
    if ref.get("key") is None:
        return None
    return parse_key(ref["key"], ref.get("mode"))


def key_name(tonic: int, mode: str) -> str:
    """mir_eval key string, e.g. ``"A minor"``."""
    return f"{PITCH_NAMES[tonic % 12]} {mode}"


# --------------------------------------------------------------------------------------------------
# music of an item: audio or MIDI
# --------------------------------------------------------------------------------------------------
def pick_source(item: Item, source: str, metric: str) -> str:
    """``"midi"`` or ``"audio"`` for this item under the ``source`` setting (auto: MIDI when present)."""
    has_midi, has_audio = item.get("midi") is not None, item.get("audio") is not None
    if source == "midi" or (source == "auto" and has_midi):
        if not has_midi:
            raise MetricError(f"metric {metric}: source='midi' but the item has no 'midi'")
        return "midi"
    if not has_audio:
        raise MetricError(f"metric {metric}: the item has no 'audio' (np.ndarray [L] + 'sample_rate')"
                          + ("" if source == "audio" else " and no 'midi'"))
    return "audio"


def item_audio(item: Item, sample_rate: int, metric: str, key: str = "audio") -> np.ndarray:
    """``item[key]`` as float32 mono ``[L]`` at ``sample_rate`` (librosa/soxr resampling)."""
    import librosa

    if item.get(key) is None:
        raise MetricError(f"metric {metric}: the item has no {key!r} (np.ndarray [L])")
    y = np.asarray(item[key], dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)  # [C, L] -> [L]
    if y.ndim != 1 or y.size == 0:
        raise MetricError(f"metric {metric}: item[{key!r}] must be a non-empty [L] or [C, L] array, "
                          f"got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise MetricError(f"metric {metric}: item[{key!r}] holds NaN or inf samples")
    own_rate = key == "reference_audio" and item.get("reference_sample_rate")
    sr = item.get("reference_sample_rate" if own_rate else "sample_rate")
    if not sr:
        raise MetricError(f"metric {metric}: item[{key!r}] given without 'sample_rate'")
    if int(sr) != sample_rate:
        y = librosa.resample(y, orig_sr=int(sr), target_sr=sample_rate, res_type="soxr_hq")
    return y


def midi_notes(midi: Any) -> np.ndarray:
    """Notes of a path / ``pretty_midi.PrettyMIDI`` / ``symusic.Score`` -> float ``[N, 6]`` sorted by
    onset, columns ``(onset s, offset s, pitch, velocity, is_drum, program)``."""
    rows: list[tuple[float, ...]] = []
    if isinstance(midi, (str, os.PathLike)):
        import symusic

        path = Path(midi)
        if not path.is_file():
            raise MetricError(f"MIDI file {path} does not exist")
        try:
            midi = symusic.Score(str(path))
        except Exception as exc:  # noqa: BLE001 - any parser failure means a broken file
            raise MetricError(f"cannot read MIDI file {path}: {exc}") from exc
    if hasattr(midi, "instruments"):  # pretty_midi
        for inst in midi.instruments:
            rows += [(n.start, n.end, n.pitch, n.velocity, float(inst.is_drum), inst.program) for n in inst.notes]
    elif hasattr(midi, "tracks") and hasattr(midi, "to"):  # symusic Score (any time unit)
        score = midi.to("second")
        for track in score.tracks:
            a = track.notes.numpy()
            for t, d, p, v in zip(a["time"], a["duration"], a["pitch"], a["velocity"]):
                rows.append((float(t), float(t + d), float(p), float(v), float(track.is_drum), float(track.program)))
    else:
        raise MetricError(f"item['midi'] must be a path, a pretty_midi.PrettyMIDI or a symusic.Score, "
                          f"got {type(midi).__name__}")
    notes = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return notes[np.argsort(notes[:, 0], kind="stable")]


def midi_onsets(notes: np.ndarray, merge: float) -> np.ndarray:
    """Distinct note-on times (s): onsets closer than ``merge`` s to the previous kept one are merged."""
    kept: list[float] = []
    for t in notes[:, 0]:
        if not kept or t - kept[-1] >= merge:
            kept.append(float(t))
    return np.asarray(kept)


def onset_envelope(item: Item, source: str, sample_rate: int, hop_length: int,
                   metric: str) -> tuple[np.ndarray, float]:
    """Onset-strength envelope ``[T]`` at ``sample_rate / hop_length`` frames/s and the music duration (s).

    Audio: ``librosa.onset.onset_strength``. MIDI: an impulse train, ``velocity / 127`` summed in the
    frame of each note onset (drums included), smoothed by a Gaussian of one frame (an audio onset peak
    is a few frames wide; on toy MIDI this takes tempo accuracy from 90 % to 100 %), so beat tracking
    and tempo estimation run the same code.
    """
    import librosa
    from scipy.ndimage import gaussian_filter1d

    if source == "audio":
        y = item_audio(item, sample_rate, metric)
        return librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop_length), len(y) / sample_rate
    notes = midi_notes(item["midi"])
    if not len(notes):
        raise MetricError(f"metric {metric}: the item's MIDI has no notes")
    duration = float(notes[:, 1].max())
    frames = librosa.time_to_frames(notes[:, 0], sr=sample_rate, hop_length=hop_length)
    env = np.zeros(int(math.ceil(duration * sample_rate / hop_length)) + 1)
    np.add.at(env, frames, notes[:, 3] / 127.0)
    return gaussian_filter1d(env, sigma=1.0, mode="constant"), duration


def register_all(register: Callable[..., None]) -> None:
    """Register every built-in metric (called by ``vidmusic_core.builtins.register_metrics``)."""
    from .control import KeyAcc, SectionAlign, TempoAcc
    from .quality import FAD, FDMel
    from .kad import KAD
    from .rhythm import BCSBHS, BeatF1, CutHit
    from .sync import CutDownbeat, EventCorr, SeamContinuity, VisualSync
    from .transcription import TranscriptionF1

    for cls in (BeatF1, CutHit, BCSBHS, TempoAcc, KeyAcc, SectionAlign, FDMel, FAD, KAD,
                VisualSync, CutDownbeat, EventCorr, SeamContinuity, TranscriptionF1):
        register(cls.name, cls, cls.Config)
