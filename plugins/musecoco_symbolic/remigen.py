"""MuseCoco's own music vocabulary (``REMIGEN2``, midiprocessor's grammar), on symusic scores.

Per bar: ``s-<ts> t-<tempo>``, then per onset ``o-<pos>`` and per instrument (ascending program,
drums 128 last) ``i-<prog>`` with its notes high to low as ``p-<pitch> d-<dur> v-<vel>`` triples; ``b-1``
ends the bar. Grid: 12 positions per quarter. Decoding also accepts the older ``REMIGEN`` order
(``t-`` after every ``o-``). Quantisation (midiprocessor ``vocab_manager.py``):

- ``s-``: index of (n, 2^k) in the list k = 0..6, n = 1..2*2^k (``s-9`` = 4/4); longer bars are
  reduced as upstream (halve n/d above 1/64, split n when the bar exceeds two whole notes);
- ``t-``: round(12 * log2(qpm / 16)), qpm clamped to 16..256 (decodes to 16 * 2^(id/12));
- ``p-``: pitch, drums 128 + pitch; ``v-``: velocity // 4 (decodes to 4 id + 2);
- ``d-``: positions on a piecewise-log grid: ids 0-11 step 1, then 12 ids per octave of step (2, 4 …
  128 positions); ``d-12`` = one quarter. Decoded durations are at least one position.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

GRID = 12
TS_LIST = [(n, 2 ** k) for k in range(7) for n in range(1, 2 * 2 ** k + 1)]  # 254 entries
TS_INDEX = {ts: i for i, ts in enumerate(TS_LIST)}
MIN_TEMPO, MAX_TEMPO, TEMPO_QUANT = 16.0, 256.0, 12
DUR_DEC: list[int] = []  # duration id -> positions
DUR_ENC: list[int] = []  # positions -> duration id
for _i in range(8):
    for _j in range(GRID):
        DUR_DEC.append(len(DUR_ENC))
        DUR_ENC.extend([len(DUR_DEC) - 1] * 2 ** _i)
N_POS, N_DUR, N_TEMPO = 128, 128, 49  # id ranges of the upstream dict (o-, d-, t-)


def reduce_ts(num: int, den: int) -> tuple[int, int]:
    """A time signature that the ``s-`` vocabulary has (midiprocessor ``reduce_time_signature``)."""
    while den > 64 and den % 2 == 0 and num % 2 == 0:
        num, den = num // 2, den // 2
    while num > 2 * den:
        for i in range(2, num + 1):
            if num % i == 0:
                num //= i
                break
    return (num, den) if (num, den) in TS_INDEX else (4, 4)


def tempo_id(qpm: float) -> int:
    return int(round(math.log2(min(max(qpm, MIN_TEMPO), MAX_TEMPO) / MIN_TEMPO) * TEMPO_QUANT))


def tempo_of(tid: int) -> float:
    return MIN_TEMPO * 2 ** (tid / TEMPO_QUANT)


def duration_id(positions: int) -> int:
    return DUR_ENC[positions] if positions < len(DUR_ENC) else DUR_ENC[-1]


def duration_of(did: int) -> int:
    return max(1, DUR_DEC[did] if did < len(DUR_DEC) else DUR_DEC[-1])


def encode_score(score: Any) -> list[str]:
    """A symusic Score (ticks) -> REMIGEN2 token strings (no attribute prefix)."""
    tpq = score.ticks_per_quarter
    pos = lambda t: int(round(int(t) * GRID / tpq))  # noqa: E731
    events: dict[int, dict[int, list[tuple[int, int, int]]]] = {}  # onset pos -> program -> notes
    end = 0
    for tr in score.tracks:
        prog = 128 if tr.is_drum else int(tr.program)
        for n in tr.notes:
            o = pos(n.time)
            d = max(1, pos(int(n.time) + int(n.duration)) - o)
            end = max(end, o + d)
            events.setdefault(o, {}).setdefault(prog, []).append(
                (int(n.pitch) + (128 if prog == 128 else 0), duration_id(d), min(int(n.velocity), 127) // 4))
    if not events:
        return []
    ts_events = sorted((pos(t.time), reduce_ts(int(t.numerator), int(t.denominator))) for t in score.time_signatures)
    tempos = sorted((pos(t.time), float(t.qpm)) for t in score.tempos) or [(0, 120.0)]
    out: list[str] = []
    bar_start, ts = 0, (4, 4)
    last = max(events) + 1
    while bar_start < last:
        for p, t in ts_events:  # the time signature in force at the bar start
            if p <= bar_start:
                ts = t
        bar_len = max(1, int(round(ts[0] * 4 * GRID / ts[1])))
        qpm = [q for p, q in tempos if p <= bar_start] or [tempos[0][1]]
        out += [f"s-{TS_INDEX[ts]}", f"t-{tempo_id(qpm[-1])}"]
        for o in sorted(p for p in events if bar_start <= p < bar_start + bar_len):
            out.append(f"o-{min(o - bar_start, N_POS - 1)}")
            for prog in sorted(events[o]):
                out.append(f"i-{prog}")
                for p, d, v in sorted(events[o][prog], reverse=True):
                    out += [f"p-{p}", f"d-{d}", f"v-{v}"]
        out.append("b-1")
        bar_start += bar_len
    return out


def repair(tokens: Sequence[str]) -> list[str]:
    """Upstream ``clean_remi_token`` for a truncated tail: a trailing ``o`` becomes ``b-1``; a trailing
    ``p``/``d`` (incomplete note) is cut back to the last ``o`` and gets ``b-1``; a trailing ``v`` gets
    ``b-1``. Extension: a trailing ``i`` is treated like ``p``, trailing ``s``/``t`` are dropped."""
    toks = list(tokens)
    while toks and toks[-1][0] in "st":
        toks.pop()
    if not toks:
        return toks
    last = toks[-1][0]
    if last == "o":
        toks[-1] = "b-1"
    elif last in "pdi":
        i = len(toks) - 1
        while i >= 0 and toks[i][0] != "o":
            i -= 1
        toks = toks[:max(i, 0)] + ["b-1"]
    elif last == "v":
        toks.append("b-1")
    return toks


def decode_tokens(tokens: Sequence[str], tpq: int = 480) -> Any:
    """REMIGEN/REMIGEN2 token strings -> symusic Score (one track per program, 128 = drums)."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(tpq)
    tick = lambda p: int(round(p * tpq / GRID))  # noqa: E731
    tracks: dict[int, Any] = {}
    bar_start, bar_len, onset = 0, 4 * GRID, 0
    ts_at_bar: tuple[int, int] | None = None
    prog, pitch, dur = 0, None, None
    last_tempo = None
    for tok in tokens:
        kind, _, num = tok.partition("-")
        if not num.isdigit():
            continue
        x = int(num)
        if kind == "b":
            bar_start += bar_len
            onset, ts_at_bar = bar_start, None
        elif kind == "s" and x < len(TS_LIST):
            ts = TS_LIST[x]
            bar_len = max(1, int(round(ts[0] * 4 * GRID / ts[1])))
            if ts != ts_at_bar and (not len(score.time_signatures) or
                                    (score.time_signatures[-1].numerator, score.time_signatures[-1].denominator) != ts):
                score.time_signatures.append(TimeSignature(tick(bar_start), ts[0], ts[1]))
            ts_at_bar = ts
        elif kind == "t":
            q = tempo_of(x)
            if last_tempo is None or abs(q - last_tempo) > 1e-6:
                score.tempos.append(Tempo(tick(onset), qpm=q))
                last_tempo = q
        elif kind == "o":
            onset = bar_start + x
        elif kind == "i":
            prog = min(x, 128)
        elif kind == "p":
            pitch, dur = x, None
        elif kind == "d" and pitch is not None:
            dur = duration_of(x)
        elif kind == "v" and pitch is not None and dur is not None:
            drum = prog == 128
            p = pitch - 128 if pitch >= 128 else pitch
            if prog not in tracks:
                tracks[prog] = Track(name="drums" if drum else f"program {prog}", program=0 if drum else prog,
                                     is_drum=drum)
            tracks[prog].notes.append(Note(tick(onset), tick(dur), p, min(127, 4 * x + 2)))
            pitch, dur = None, None
    if not len(score.tempos):
        score.tempos.append(Tempo(0, qpm=120.0))
    for p in sorted(tracks):
        score.tracks.append(tracks[p])
    return score
