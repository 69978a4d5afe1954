"""Per-bar onset density: the second CMT-style per-bar control of the ``remi`` codec.

A bar's density is its number of notes (every track, drums included) per quarter note, put in one of
``N_DENSITY`` classes by ``edges`` (notes per quarter; default :data:`DEFAULT_EDGES`). With
``codec.bar_density=true`` the codec writes ``BarDensity_<class>`` after each ``Bar_None`` (after its
``BarCut`` when both controls are on); training sees the music's own class, generation forces the class the
video asks for (``BarController`` in :mod:`.codec`, the video's classes from the ``attribute_head``
layout's density head).

Bar times from tokens follow the same rule as the generation controller: a bar lasts ``TimeSig``
quarters at the ``Tempo`` read up to its end; the next bar starts where it ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .attributes import tick_seconds

BAR = "Bar_None"
#: notes per quarter at the class boundaries: class k holds [edges[k-1], edges[k])
DEFAULT_EDGES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.5, 7.0, 9.0)
N_DENSITY = len(DEFAULT_EDGES) + 1
DENSITY_TOKENS: tuple[str, ...] = tuple(f"BarDensity_{k}" for k in range(N_DENSITY))
POSITIONS_PER_QUARTER = 12  # the remi codec's grid in its first 4 beats (beat_res {(0, 4): 12})


def check_edges(edges: Sequence[float]) -> tuple[float, ...]:
    """``edges`` as a tuple, if it has ``N_DENSITY - 1`` increasing positive values; else ValueError."""
    e = tuple(float(x) for x in edges)
    if len(e) != N_DENSITY - 1 or any(b <= a for a, b in zip(e, e[1:])) or e[0] <= 0:
        raise ValueError(f"density edges must be {N_DENSITY - 1} increasing positive numbers (notes per quarter), "
                         f"got {list(edges)}")
    return e


def density_class(notes_per_quarter: float, edges: Sequence[float] = DEFAULT_EDGES) -> int:
    """Class 0..N_DENSITY-1 of a density (notes per quarter)."""
    return int(density_classes([notes_per_quarter], edges)[0])


def density_classes(notes_per_quarter: Any, edges: Sequence[float] = DEFAULT_EDGES) -> np.ndarray:
    """Classes of an array of densities (notes per quarter): the index of the first edge above each."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(notes_per_quarter, dtype=float), side="right")


@dataclass
class BarInfo:
    """One bar of a token row: ``start``/``end`` seconds (token clock), its length in quarters (``quarters``,
    shortened for a final bar cut short), and its number of notes."""

    start: float
    end: float
    quarters: float
    notes: int

    @property
    def notes_per_quarter(self) -> float:
        return self.notes / max(self.quarters, 1e-6)


def timing_after(tok: str, quarters: float, qpm: float) -> tuple[float, float]:
    """(bar length in quarters, tempo in qpm) after the token ``tok``: ``TimeSig_n/d`` sets the first,
    ``Tempo_q`` the second, any other token neither."""
    if tok.startswith("TimeSig_"):
        num, den = tok.split("_", 1)[1].split("/")
        return int(num) * 4.0 / int(den), qpm
    if tok.startswith("Tempo_"):
        return quarters, float(tok.split("_", 1)[1])
    return quarters, qpm


def bars_of(tokens: Sequence[str], default_qpm: float = 120.0) -> list[BarInfo]:
    """The bars of a remi token row (strings; prefix, control and unknown tokens are ignored)."""
    bars: list[BarInfo] = []
    quarters, qpm, t = 4.0, default_qpm, 0.0
    notes, last_pos, open_ = 0, -1, False

    def close(final: bool) -> None:
        nonlocal t
        length_q = quarters
        seconds = length_q * 60.0 / qpm
        eff = min(length_q, last_pos // POSITIONS_PER_QUARTER + 1.0) if final and last_pos >= 0 else length_q
        bars.append(BarInfo(t, t + seconds, eff, notes))
        t += seconds

    for tok in tokens:
        if tok == BAR:
            if open_:
                close(final=False)
            open_, notes, last_pos = True, 0, -1
        elif not open_:
            continue
        elif tok.startswith(("Pitch_", "PitchDrum_")):
            notes += 1
        elif tok.startswith("Position_"):
            last_pos = max(last_pos, int(tok.split("_", 1)[1]))
        else:
            quarters, qpm = timing_after(tok, quarters, qpm)
    if open_:
        close(final=True)
    return bars


def with_bar_density(tokens: Sequence[str], edges: Sequence[float] = DEFAULT_EDGES) -> list[str]:
    """Tokens with ``BarDensity_<class>`` after each ``Bar_None`` (after its ``BarCut_*`` when present)."""
    classes = iter(density_class(b.notes_per_quarter, edges) for b in bars_of(tokens))
    out: list[str] = []
    toks = list(tokens)
    i = 0
    while i < len(toks):
        out.append(toks[i])
        if toks[i] == BAR:
            if i + 1 < len(toks) and toks[i + 1].startswith("BarCut_"):
                i += 1
                out.append(toks[i])
            out.append(DENSITY_TOKENS[next(classes)])
        i += 1
    return out


def score_bars(score: Any, seconds: float | None = None) -> list[BarInfo]:
    """The bars of a ``symusic.Score`` (first time signature, tempo map in seconds); notes counted at
    their onset over every track. ``seconds``: the clip's length: bars up to it (silent ones too; the
    last is shortened to it); None: up to the last onset."""
    tpq = int(score.ticks_per_quarter)
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    quarters = (ts.numerator * 4.0 / ts.denominator) if ts is not None else 4.0
    bar_ticks = int(round(quarters * tpq))
    onsets = np.sort(np.concatenate([np.asarray([n.time for n in tr.notes], dtype=np.int64)
                                     for tr in score.tracks] or [np.zeros(0, np.int64)]))
    tempos = sorted((int(t.time), float(t.qpm)) for t in score.tempos) or [(0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, tempos[0][1]))

    def to_seconds(tick: int) -> float:
        return tick_seconds(tempos, tpq, tick)

    end_tick = int(onsets[-1]) + 1 if len(onsets) else 0
    bars: list[BarInfo] = []
    b0 = 0
    while b0 < end_tick if seconds is None else to_seconds(b0) < seconds:
        start, end = to_seconds(b0), to_seconds(b0 + bar_ticks)
        n = int(np.count_nonzero((onsets >= b0) & (onsets < b0 + bar_ticks)))
        q = quarters if seconds is None or end <= seconds else quarters * (seconds - start) / max(end - start, 1e-9)
        bars.append(BarInfo(start, end, q, n))
        b0 += bar_ticks
    return bars


def density_at(bars: Sequence[BarInfo], times: np.ndarray) -> np.ndarray:
    """Notes per quarter of the bar holding each time (NaN outside every bar)."""
    out = np.full(len(times), np.nan)
    for b in bars:
        out[(times >= b.start) & (times < b.end)] = b.notes_per_quarter
    return out


def bar_classes(tokens: Sequence[str]) -> list[int | None]:
    """The ``BarDensity`` class written after each ``Bar_None`` of a row (None where there is none);
    aligned with :func:`bars_of`."""
    out: list[int | None] = []
    toks = list(tokens)
    for i, t in enumerate(toks):
        if t != BAR:
            continue
        k: int | None = None
        j = i + 1
        while j < len(toks) and toks[j].startswith(("BarCut_", "BarDensity_")):
            if toks[j].startswith("BarDensity_"):
                k = int(toks[j].split("_", 1)[1])
            j += 1
        out.append(k)
    return out


def token_targets(tokens: Sequence[str], times: np.ndarray) -> np.ndarray:
    """Per time (s, token clock), the density class of the bar holding it as the row writes it
    (``BarDensity_<k>``), -1 outside every bar or where the bar has no class."""
    out = np.full(len(times), -1, dtype=np.int64)
    for bar, k in zip(bars_of(tokens), bar_classes(tokens)):
        if k is not None:
            out[(times >= bar.start) & (times < bar.end)] = k
    return out


def span_class(probs: np.ndarray, times: np.ndarray, start: float, end: float) -> int:
    """The class of the mean of ``probs [N, C]`` over the tokens at ``times [N]`` in ``[start, end)``
    (the token nearest the span's middle when none falls inside)."""
    inside = (times >= start) & (times < end)
    if not inside.any():
        inside = np.zeros(len(times), bool)
        inside[int(np.abs(times - 0.5 * (start + end)).argmin())] = True
    return int(probs[inside].mean(axis=0).argmax())
