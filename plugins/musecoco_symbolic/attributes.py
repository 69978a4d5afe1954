"""MuseCoco attributes of a MIDI score: extraction (the objective ones), prefix tokens, the training-time
"step mask" (attribute dropout to NA) and the attribute-control accuracy (ASA) of generated music.

Values are a dict ``key -> class index`` (``key -> list of per-slot values`` for I1s2 and S4, each
0 yes / 1 no / 2 NA); the last class of every key is NA (:mod:`.vocab`). Objective attributes, as
upstream ``midi_data_extractor/attribute_unit`` defines them, measured on the 12-per-quarter grid:

==========  =========================================================================================
I1s2        instrument families of the non-empty tracks (28 families, drums = family 27); others "no"
R1          danceable: drum notes on strong beats (1 and 3 in 4/4, 1 in 3/4 and 2/4) outnumber the others
R3          distinct onset positions per quarter note over the bars: <=1 -> 0, (1, 2) -> 1, >=2 -> 2
B1s1        bars 1-4 / 5-8 / 9-12 / 13-16 (more: NA)
TS1s1       the one time signature: 4/4 2/4 3/4 1/4 6/8 3/8, other; several -> NA
K1          major / minor: Krumhansl-Kessler profiles on the duration-weighted pitch-class histogram
T1s1        the one tempo: <=76 slow, >=120 fast, else moderate; several tempos -> NA
P4          ceil((highest - lowest pitch) / 12) octaves (no drums), at most 11
TM1         seconds of the bars: (0,15] (15,30] (30,45] (45,60] >60
==========  =========================================================================================

The subjective keys (S2s1 artist, S4 genre, EM1 emotion) and the legacy I4, C1, ST1 are NA.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from vidmusic_core import VidmusicError

from .vocab import ATTRIBUTE_KEYS, KEYS, N_ATTRIBUTE_TOKENS

GRID = 12  # positions per quarter note (MuseCoco's pos_resolution)
#: GM program (128 = drums) -> I1s2 instrument family (upstream ``UnitI1s2.inst_id_to_inst_class_id``)
FAMILY_OF_PROGRAM: dict[int, int] = {}
for _family, _programs in enumerate((
    range(0, 6), range(6, 10), (11, 12, 13, 14, 15, 47, 55, 112, 113, 115, 117, 119), range(16, 24),
    range(24, 32), (*range(32, 40), 43), (40,), (41,), (42,), (46,), (44, 45, 48, 49, 50, 51), (52, 53, 54),
    (56, 59), (57,), (58,), (60, 69), (61, 62, 63), range(64, 68), (68,), (70,), (71,), (72,), (73, 75),
    (74, 76, 77, 78, 79), range(80, 96), range(104, 112), (10, *range(120, 128), *range(96, 104)),
    (128, 118, 114, 116))):
    for _p in _programs:
        FAMILY_OF_PROGRAM[_p] = _family
FAMILY_NAMES = ("piano", "keyboard", "percussion", "organ", "guitar", "bass", "violin", "viola", "cello", "harp",
                "strings", "voice", "trumpet", "trombone", "tuba", "horn", "brass", "sax", "oboe", "bassoon",
                "clarinet", "piccolo", "flute", "pipe", "synthesizer", "ethnic instrument", "sound effect", "drum")
TIME_SIGNATURES = ((4, 4), (2, 4), (3, 4), (1, 4), (6, 8), (3, 8))
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
STRONG_BEATS = {(4, 4): (0, 2), (3, 4): (0,), (2, 4): (0,)}

Values = dict[str, Union[int, list[int]]]
ScoreLike = Union["Any", str, os.PathLike]  # symusic.Score | path


class MidiError(VidmusicError, ValueError):
    """A MIDI file that cannot be read (names the file and says what to do)."""


def load_score(x: ScoreLike) -> Any:
    """A ``symusic.Score`` in ticks from a Score or a ``.mid`` path (broken files raise :class:`MidiError`)."""
    from symusic import Score

    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.is_file():
            raise MidiError(f"{path}: no such MIDI file")
        try:
            return Score(str(path))
        except Exception as exc:  # noqa: BLE001 - symusic raises RuntimeError/ValueError on bad files
            raise MidiError(f"{path}: cannot read as MIDI ({exc}); check the file is a complete .mid") from exc
    if not hasattr(x, "tracks") or not hasattr(x, "ticks_per_quarter"):
        raise TypeError(f"expected a symusic Score or a MIDI path, got {type(x).__name__}")
    return x if str(getattr(x, "ttype", "Tick")).lower().endswith("tick") else x.to("tick")


def na_values() -> Values:
    """Every attribute NA."""
    return {k.name: ([k.na] * k.n_slots if k.multi else k.na) for k in ATTRIBUTE_KEYS}


@dataclass
class Measures:
    """What the objective attributes are computed from (also useful as metrics on their own)."""

    programs: list[int] = field(default_factory=list)  # sorted GM programs, 128 = drums
    n_bars: int = 0
    time_signatures: list[tuple[int, int]] = field(default_factory=list)
    tempos: list[float] = field(default_factory=list)  # distinct qpm values (2 decimals)
    seconds: float = 0.0  # duration of the bars
    onsets_per_beat: float | None = None
    strong_weak_drum_notes: tuple[int, int] | None = None
    pitch_low: int | None = None
    pitch_high: int | None = None
    key: tuple[int, str] | None = None  # (tonic pitch class, "major" | "minor")


def tick_seconds(tempos: Sequence[tuple[int, float]], tpq: int, tick: int) -> float:
    """Seconds at ``tick`` under a tempo map ``[(tick, qpm), ...]`` (sorted, first at 0)."""
    secs, (t0, qpm) = 0.0, tempos[0]
    for t1, q1 in tempos[1:]:
        if t1 >= tick:
            break
        secs += (t1 - t0) / tpq * 60.0 / qpm
        t0, qpm = t1, q1
    return secs + (tick - t0) / tpq * 60.0 / qpm


def tick_at(score: Any, seconds: float) -> int:
    """The tick of a score at ``seconds`` (through its tempo map; 120 qpm when it has none)."""
    tpq = score.ticks_per_quarter
    tempos = sorted(((int(t.time), float(t.qpm)) for t in score.tempos), key=lambda x: x[0]) or [(0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, tempos[0][1]))
    secs = 0.0
    for (t0, q), nxt in zip(tempos, tempos[1:] + [(None, None)]):
        span = None if nxt[0] is None else (nxt[0] - t0) / tpq * 60.0 / q
        if span is None or secs + span >= seconds:
            return int(round(t0 + (seconds - secs) * q / 60.0 * tpq))
        secs += span
    return 0  # unreachable


def clip_score(score: Any, seconds: float) -> Any:
    """The notes of ``score`` that start before ``seconds`` (durations kept)."""
    return score.clip(0, tick_at(score, seconds), False)


def bars_of(score: Any) -> list[tuple[int, int, tuple[int, int]]]:
    """Bars ``(start tick, end tick, (num, den))`` covering the notes (time signatures change at bar starts)."""
    tpq = score.ticks_per_quarter
    end = max((int(n.time + n.duration) for tr in score.tracks for n in tr.notes), default=0)
    ts = sorted(((int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures), key=lambda x: x[0])
    if not ts or ts[0][0] > 0:
        ts.insert(0, (0, 4, 4))
    bars: list[tuple[int, int, tuple[int, int]]] = []
    start = 0
    for i, (_, num, den) in enumerate(ts):
        seg_end = ts[i + 1][0] if i + 1 < len(ts) else max(end, start + 1)
        length = max(1, round(tpq * 4 * num / den))
        while start < seg_end and start < max(end, 1):
            bars.append((start, start + length, (num, den)))
            start += length
    return bars


def measure(score: ScoreLike) -> Measures:
    """Raw measurements of a score (see the module doc)."""
    score = load_score(score)
    tpq = score.ticks_per_quarter
    m = Measures()
    notes = [(tr, n) for tr in score.tracks for n in tr.notes]
    m.programs = sorted({128 if tr.is_drum else int(tr.program) for tr in score.tracks if len(tr.notes)})
    bars = bars_of(score) if notes else []
    m.n_bars = len(bars)
    m.time_signatures = sorted({b[2] for b in bars})
    tempo_map = sorted(((int(t.time), float(t.qpm)) for t in score.tempos), key=lambda x: x[0])
    if not tempo_map or tempo_map[0][0] > 0:
        tempo_map.insert(0, (0, tempo_map[0][1] if tempo_map else 120.0))
    last = bars[-1][1] if bars else 0
    m.tempos = sorted({round(q, 2) for t, q in tempo_map if t < max(last, 1)})
    m.seconds = tick_seconds(tempo_map, tpq, last)
    if not notes:
        return m
    onsets = {round(int(n.time) * GRID / tpq) for _, n in notes}
    m.onsets_per_beat = len(onsets) / ((last - bars[0][0]) / tpq)
    drums = [int(n.time) for tr, n in notes if tr.is_drum]
    if drums:
        strong = weak = 0
        starts = [b[0] for b in bars]
        for t in drums:
            b = bars[int(np.searchsorted(starts, t, side="right")) - 1]
            if b[2] in STRONG_BEATS:
                beat = (t - b[0]) * b[2][1] // (4 * tpq)
                strong, weak = (strong + 1, weak) if beat in STRONG_BEATS[b[2]] else (strong, weak + 1)
        m.strong_weak_drum_notes = (strong, weak)
    pitched = [(int(n.pitch), int(n.duration)) for tr, n in notes if not tr.is_drum]
    if pitched:
        m.pitch_low, m.pitch_high = min(p for p, _ in pitched), max(p for p, _ in pitched)
        hist = np.zeros(12)
        for p, d in pitched:
            hist[p % 12] += max(d, 1)
        if hist.std() > 0:
            scores = {(t, mode): float(np.corrcoef(np.roll(prof, t), hist)[0, 1])
                      for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)) for t in range(12)}
            m.key = max(scores, key=scores.__getitem__)
    return m


def classify(m: Measures) -> Values:
    """Objective attribute classes of :class:`Measures` (subjective keys NA)."""
    v = na_values()
    if m.programs:
        families = {FAMILY_OF_PROGRAM[p] for p in m.programs}
        v["I1s2"] = [0 if f in families else 1 for f in range(KEYS["I1s2"].n_slots)]
    if m.strong_weak_drum_notes is not None and m.strong_weak_drum_notes[0] != m.strong_weak_drum_notes[1]:
        v["R1"] = 0 if m.strong_weak_drum_notes[0] > m.strong_weak_drum_notes[1] else 1
    if m.onsets_per_beat is not None:
        d = m.onsets_per_beat
        v["R3"] = 0 if d <= 1 else (1 if d < 2 else 2)
    if 0 < m.n_bars <= 16:
        v["B1s1"] = (m.n_bars - 1) // 4
    if len(m.time_signatures) == 1:
        ts = m.time_signatures[0]
        v["TS1s1"] = TIME_SIGNATURES.index(ts) if ts in TIME_SIGNATURES else len(TIME_SIGNATURES)
    if m.key is not None:
        v["K1"] = 0 if m.key[1] == "major" else 1
    if len(m.tempos) == 1:
        q = m.tempos[0]
        v["T1s1"] = 2 if q >= 120 else (0 if q <= 76 else 1)
    if m.pitch_low is not None and m.pitch_high is not None:
        v["P4"] = min(11, math.ceil((m.pitch_high - m.pitch_low) / 12))
    if m.n_bars:
        s = m.seconds
        v["TM1"] = 0 if s <= 15 else 1 if s <= 30 else 2 if s <= 45 else 3 if s <= 60 else 4
    return v


def extract_attributes(score: ScoreLike) -> Values:
    """The objective MuseCoco attributes of a score or ``.mid`` path (subjective keys NA)."""
    return classify(measure(score))


# -- tokens ----------------------------------------------------------------------------------------
def values_to_tokens(values: Mapping[str, Any]) -> list[str]:
    """The 63 prefix tokens (MuseCoco key order); keys missing from ``values`` are NA."""
    na = na_values()
    out = [t for k in ATTRIBUTE_KEYS for t in k.tokens(values.get(k.name, na[k.name]))]
    assert len(out) == N_ATTRIBUTE_TOKENS
    return out


def tokens_to_values(tokens: Sequence[str]) -> Values:
    """Parse attribute tokens (any order, any subset; others are ignored) into values (missing = NA)."""
    v = na_values()
    for tok in tokens:
        parts = tok.split("_")
        key = KEYS.get(parts[0])
        if key is None or len(parts) != (3 if key.multi else 2) or not all(p.isdigit() for p in parts[1:]):
            continue
        if key.multi:
            slot, val = int(parts[1]), int(parts[2])
            if slot < key.n_slots and val < key.n_values:
                v[key.name][slot] = val  # type: ignore[index]
        elif int(parts[1]) < key.n_values:
            v[key.name] = int(parts[1])
    return v


def step_mask(values: Mapping[str, Any], rng: np.random.Generator) -> Values:
    """Upstream's "step mask" (``A2M_task_new.get_input_command_token_v3``, ``command_mask_prob=-1``):
    keep a random number of keys (1-4 favoured), set the rest to NA; in a kept multi-hot key reveal a
    non-empty random subset of the "yes" slots and of the other slots (as "no"), the rest NA.

    Unlike upstream, a key whose value is unknown (NA, or a multi-hot key with no "yes" slot) stays NA,
    so unknown genres are never revealed as "no".
    """
    names = [k.name for k in ATTRIBUTE_KEYS]
    pool = list(range(1, 5)) * 5 + list(range(6, 9)) * 3 + list(range(9, len(names))) * 2
    chosen = set(rng.choice(names, int(rng.choice(pool)), replace=False).tolist())
    out = na_values()
    for k in ATTRIBUTE_KEYS:
        if k.name not in chosen:
            continue
        val = values.get(k.name)
        if not k.multi:
            out[k.name] = int(val) if val is not None else k.na  # type: ignore[arg-type]
            continue
        slots = list(val) if val is not None else [k.na] * k.n_slots  # type: ignore[arg-type]
        yes = [i for i, s in enumerate(slots) if s == 0]
        if not yes:
            continue
        other = [i for i, s in enumerate(slots) if s != 0]
        keep_yes = rng.choice(yes, int(rng.integers(1, len(yes) + 1)), replace=False)
        keep_no = rng.choice(other, int(rng.integers(min(1, len(other)), len(other) + 1)), replace=False) if other else []
        row = [k.na] * k.n_slots
        for i in keep_yes:
            row[int(i)] = 0
        for i in keep_no:
            row[int(i)] = 1
        out[k.name] = row
    return out


def attribute_accuracy(prompts: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Attribute-control accuracy of generated music (MuseCoco's ASA, ``evaluation/eval_acc_v3.py`` idea).

    For each pair (prompt values, values re-extracted from the output), every objective key the prompt
    sets (not NA) scores 1 when the output has the same class; for I1s2, the share of revealed slots
    (yes/no) the output matches. ``asa``: mean over items of the mean over their set keys;
    ``acc_<key>``: mean over the items that set the key.
    """
    per_key: dict[str, list[float]] = {}
    per_item = []
    for p, o in zip(prompts, outputs):
        scores = []
        for k in ATTRIBUTE_KEYS:
            if not k.objective:
                continue
            pv, ov = p.get(k.name), o.get(k.name)
            if k.multi:
                shown = [i for i, s in enumerate(pv or []) if s != k.na]
                if not shown:
                    continue
                s = float(np.mean([(pv[i] == 0) == (ov is not None and ov[i] == 0) for i in shown]))  # type: ignore[index]
            else:
                if pv is None or pv == k.na:
                    continue
                s = float(pv == ov)
            scores.append(s)
            per_key.setdefault(k.name, []).append(s)
        if scores:
            per_item.append(float(np.mean(scores)))
    out = {"asa": float(np.mean(per_item)) if per_item else float("nan")}
    out.update({f"acc_{k}": float(np.mean(v)) for k, v in per_key.items()})
    return out
