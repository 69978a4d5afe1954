"""Codec ``remi``: MIDI <-> one token stream ``[attribute prefix] <sep> [music]`` (MuseCoco's layout).

Token stream of one score (``vocab="remi"``)::

    I1s2_0_1 … TM1_0  <sep>  Bar_None TimeSig_4/4 Position_0 Tempo_135.61 Position_4 Program_-1 PitchDrum_36 …

- prefix (``attribute_prefix=True``): the 63 MuseCoco attribute tokens of the score's objective
  attributes (:mod:`.attributes`; subjective keys NA, or the values given to :meth:`RemiCodec.encode`),
  then ``<sep>``;
- music, ``vocab="remi"``: miditok REMI with programs on a symusic Score (12 positions per quarter,
  durations 1/12 quarter up to 4 quarters then 1/4, 32 velocities, 49 log-scale tempos over 16-256
  qpm = MuseCoco's tempo grid, time signatures, pitches 0-127, drums as ``Program_-1 PitchDrum_*``);
  ``vocab="musecoco"``: upstream's ``o- i- p- d- v- s- t- b-1`` grammar and ``dict.txt`` ids
  (:mod:`.remigen`), for imported checkpoints.

Ids are fairseq-style (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2 = EOS, ``<unk>`` 3). ``encode`` returns
``MusicTokens(codes [B, 1, T], mask [B, T])`` right-padded with ``<pad>``; ``decode`` returns one
``symusic.Score`` per row (the prefix is skipped, the row stops at ``</s>``, a truncated tail is repaired
as upstream's ``clean_remi_token``); ``render`` synthesises audio ``[B, 1, L]`` with the General MIDI
soundfont of the pretty_midi wheel (nothing is downloaded); ``write_midi`` writes ``.mid`` atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from vidmusic_core import ConfigError, GenerationRequest, MusicTokens, SequenceLayout, SymbolicCodec, atomic_path

from . import remigen
from .density import DEFAULT_EDGES, DENSITY_TOKENS, bars_of, check_edges, timing_after, with_bar_density
from .attributes import (Values, clip_score, extract_attributes, load_score, tick_at, tokens_to_values,
                         values_to_tokens)
from .vocab import EOS, PAD, PREFIX_LENGTH, SEP, SPECIALS, Vocab, attribute_tokens, musecoco_symbols

VOCABS = ("remi", "musecoco")
NOTE_PARTS = ("Program_", "Pitch_", "PitchDrum_", "Velocity_")


def miditok_config() -> Any:
    """The miditok ``TokenizerConfig`` of ``vocab="remi"`` (fixed: the ids depend on it)."""
    import miditok

    return miditok.TokenizerConfig(
        pitch_range=(0, 127), beat_res={(0, 4): 12, (4, 12): 4}, num_velocities=32, special_tokens=["PAD"],
        use_programs=True, one_token_stream_for_programs=True, programs=list(range(-1, 128)),
        use_time_signatures=True, use_tempos=True, num_tempos=49, tempo_range=(16, 256), log_tempos=True)


def soundfont_path() -> Path:
    """The General MIDI soundfont of the pretty_midi wheel, with the root-key fix symusic needs."""
    from vidmusic_core import fixed_soundfont_path

    return Path(fixed_soundfont_path())


def repair_remi(tokens: Sequence[str]) -> list[str]:
    """Truncated-tail repair for miditok REMI: drop everything after the last complete note
    (``… Duration_*``) when the tail holds an incomplete note or a dangling ``Position``."""
    toks = list(tokens)
    last = max((i for i, t in enumerate(toks) if t.startswith("Duration_")), default=-1)
    tail = toks[last + 1:]
    if any(t.startswith(NOTE_PARTS + ("Position_",)) for t in tail):
        toks = toks[:last + 1]
    return toks


@dataclass
class RemiConfig:
    """``codec.*`` options of ``remi``.

    ``vocab``: ``remi`` (miditok REMI + programs) | ``musecoco`` (upstream vocabulary, 1253 ids).
    ``attribute_prefix``: put the 63 attribute tokens + ``<sep>`` before the music. ``sample_rate``:
    of ``render``. ``soundfont``: an .sf2/.sf3 path (None: pretty_midi's TimGM6mb.sf2, root-key fixed).
    ``tpq``: ticks per quarter of decoded scores. ``max_tokens``: cut encoded rows to this many tokens
    (None: no limit; the cut is repaired like a generated tail). ``bar_controls`` (``vocab: remi``): after
    each ``Bar_None`` a ``BarCut_0|1`` token says whether the bar starts a new section (its set of programs
    differs from the previous bar's); at generation the video's cuts set it (CMT-style per-bar control).
    ``bar_density`` (``vocab: remi``): after each ``Bar_None`` (and its ``BarCut``) a ``BarDensity_<k>``
    token gives the bar's notes per quarter as one of 8 classes split at ``density_edges`` (None: the
    default of :mod:`.density`); at generation the ``attribute_head`` layout's density head sets it from the
    video (without one, the model picks it).
    """

    vocab: str = "remi"
    attribute_prefix: bool = True
    sample_rate: int = 32000
    soundfont: Optional[str] = None
    tpq: int = 480
    max_tokens: Optional[int] = None
    bar_controls: bool = False
    bar_density: bool = False
    density_edges: Optional[list[float]] = None


ScoreInput = Union[Any, str, os.PathLike]
DensityFn = Callable[[float, float], int]  # (bar start s, bar end s) -> density class
BAR = "Bar_None"
BAR_CONTROLS = ("BarCut_0", "BarCut_1")  # appended to the remi vocabulary (ids of the other tokens unchanged)


def with_bar_cuts(tokens: Sequence[str]) -> list[str]:
    """REMI tokens with ``BarCut_1`` after each ``Bar_None`` whose bar's set of programs differs from the
    previous non-empty bar's (a new section), else ``BarCut_0``."""
    bars: list[list[str]] = []
    for t in tokens:
        if t == BAR or not bars:
            bars.append([])
        bars[-1].append(t)
    out: list[str] = []
    prev: frozenset[str] | None = None
    for bar in bars:
        programs = frozenset(t for t in bar if t.startswith("Program_"))
        cut = prev is not None and bool(programs) and programs != prev
        if bar and bar[0] == BAR:
            out += [BAR, BAR_CONTROLS[int(cut)]] + bar[1:]
        else:
            out += bar
        prev = programs or prev
    return out


class RemiCodec(SymbolicCodec):
    """Symbolic codec: ``frame_rate`` None, one codebook of ``cardinality`` = vocabulary size."""

    Config = RemiConfig

    def __init__(self, cfg: Optional[RemiConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RemiConfig()
        if cfg.vocab not in VOCABS:
            raise ConfigError(f"codec.vocab={cfg.vocab!r}; choose one of {', '.join(VOCABS)}")
        if cfg.vocab == "remi":
            import miditok

            self.tokenizer = miditok.REMI(miditok_config())
            music = [t for t, _ in sorted(self.tokenizer.vocab.items(), key=lambda kv: kv[1]) if t != "PAD_None"]
            self.vocab = Vocab(list(SPECIALS) + music + [SEP] + attribute_tokens() + list(BAR_CONTROLS)
                               + list(DENSITY_TOKENS))
        else:
            if cfg.bar_controls or cfg.bar_density:
                raise ConfigError("codec.bar_controls / bar_density need codec.vocab=remi (MuseCoco's vocabulary has "
                                  "no control tokens)")
            self.tokenizer = None
            self.vocab = Vocab(list(SPECIALS) + musecoco_symbols())
        self.vocab_name = cfg.vocab  # the backbone's ``vocab`` must be the same
        self.sample_rate = cfg.sample_rate
        self.frame_rate = None
        self.n_codebooks = 1
        self.cardinality = len(self.vocab)
        self.delays = ()
        self.eos_id, self.pad_id, self.sep_id = EOS, PAD, self.vocab.sep
        self.prefix_length = PREFIX_LENGTH if cfg.attribute_prefix else 0
        try:
            self.density_edges = check_edges(cfg.density_edges if cfg.density_edges is not None else DEFAULT_EDGES)
        except ValueError as exc:
            raise ConfigError(f"codec.density_edges: {exc}") from None
        not_music = set(SPECIALS) | {SEP} | set(attribute_tokens()) | set(BAR_CONTROLS) | set(DENSITY_TOKENS)
        self._music_set = frozenset(s for s in self.vocab.symbols if s not in not_music)

    # -- tokens --------------------------------------------------------------------------------
    def music_tokens(self, score: Any) -> list[str]:
        """Music token strings of a Score (no prefix)."""
        if self.tokenizer is None:
            return remigen.encode_score(score)
        if not any(len(tr.notes) for tr in score.tracks):
            return []
        seq = self.tokenizer.encode(score)
        tokens = list(seq.tokens if hasattr(seq, "tokens") else seq[0].tokens)
        tokens = with_bar_cuts(tokens) if self.cfg.bar_controls else tokens
        return with_bar_density(tokens, self.density_edges) if self.cfg.bar_density else tokens

    @property
    def bar_controlled(self) -> bool:
        """Whether rows carry per-bar control tokens (``bar_controls`` or ``bar_density``)."""
        return bool(self.cfg.bar_controls or self.cfg.bar_density)

    def token_strings(self, score: ScoreInput, attributes: Optional[Mapping[str, Any]] = None,
                      seconds: Optional[float] = None) -> list[str]:
        """``[attribute tokens] <sep> [music tokens]`` of one score or ``.mid`` path. ``attributes``:
        values to use instead of the extracted ones (keys not given are extracted; see attributes.py).
        ``seconds``: keep only the notes that start before it (a clip of the piece)."""
        if isinstance(score, Tensor):
            raise TypeError("codec remi encodes MIDI (a symusic Score or a .mid path), not audio")
        score = load_score(score)
        if seconds is not None:
            score = clip_score(score, seconds)
        music = self.music_tokens(score)
        if self.cfg.max_tokens is not None and len(music) > self.cfg.max_tokens - self.prefix_length:
            music = self.repair(music[: max(0, self.cfg.max_tokens - self.prefix_length)])
        if not self.cfg.attribute_prefix:
            return music
        values = extract_attributes(score)
        if attributes:
            values.update({k: v for k, v in attributes.items() if k in values})
        return values_to_tokens(values) + [SEP] + music

    def encode(self, scores: Union[ScoreInput, Sequence[ScoreInput]],  # type: ignore[override]
               attributes: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
               seconds: Optional[float] = None) -> MusicTokens:
        """Score(s) or ``.mid`` path(s) -> ``MusicTokens(codes long [B, 1, T], mask [B, T])`` (see
        :meth:`token_strings` for ``attributes``, one mapping or None per item, and ``seconds``)."""
        items = list(scores) if isinstance(scores, (list, tuple)) else [scores]
        attrs = list(attributes) if attributes is not None else [None] * len(items)
        rows = [self.vocab.encode(self.token_strings(s, a, seconds)) for s, a in zip(items, attrs)]
        T = max(1, max(len(r) for r in rows))
        codes = torch.full((len(rows), 1, T), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.bool)
        for b, r in enumerate(rows):
            codes[b, 0, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, :len(r)] = True
        return MusicTokens(codes, mask, None)

    def rows(self, tokens: Union[MusicTokens, Tensor, Sequence[Any]]) -> list[list[str]]:
        """Token strings per row of ``MusicTokens``/``[B, 1, T]``/``[B, T]``/``[T]`` ids, or of lists of
        ids or strings (masked positions dropped)."""
        if isinstance(tokens, MusicTokens):
            assert tokens.mask is not None
            return [self.vocab.decode(tokens.codes[b, 0][tokens.mask[b]].tolist()) for b in range(tokens.codes.shape[0])]
        if isinstance(tokens, Tensor):
            t = tokens.reshape(-1, tokens.shape[-1]) if tokens.dim() != 1 else tokens[None]
            return [self.vocab.decode(r.tolist()) for r in t]
        seq = list(tokens)
        if not seq or isinstance(seq[0], (str, int, np.integer)):
            seq = [seq]
        return [[t if isinstance(t, str) else self.vocab[int(t)] for t in row] for row in seq]

    def split(self, row: Sequence[str]) -> tuple[list[str], list[str]]:
        """(attribute tokens, music tokens) of one row: the prefix ends at ``<sep>``; the music stops at
        ``</s>``; specials and stray attribute tokens are dropped from the music."""
        row = list(row)
        prefix: list[str] = []
        if SEP in row:
            i = row.index(SEP)
            prefix, row = row[:i], row[i + 1:]
        if SPECIALS[EOS] in row:
            row = row[: row.index(SPECIALS[EOS])]
        return prefix, [t for t in row if t in self._music_set]

    def repair(self, music: Sequence[str]) -> list[str]:
        """Repair a truncated tail (see :func:`repair_remi` and :func:`.remigen.repair`)."""
        return repair_remi(music) if self.tokenizer is not None else remigen.repair(music)

    def attributes_of(self, tokens: Union[MusicTokens, Tensor, Sequence[Any]]) -> list[Values]:
        """The attribute values written in each row's prefix (NA where absent)."""
        return [tokens_to_values(self.split(r)[0]) for r in self.rows(tokens)]

    # -- decode / render -----------------------------------------------------------------------
    def decode_music(self, music: Sequence[str]) -> Any:
        """Music token strings (no prefix) -> symusic Score at ``tpq`` ticks per quarter."""
        from symusic import Score

        music = self.repair(music)
        if self.tokenizer is None:
            return remigen.decode_tokens(music, self.cfg.tpq)
        if not music:
            return Score(self.cfg.tpq)
        ids = [self.tokenizer.vocab[t] for t in music if t in self.tokenizer.vocab]
        score = self.tokenizer.decode(ids)
        return score.resample(self.cfg.tpq) if score.ticks_per_quarter != self.cfg.tpq else score

    def decode(self, tokens: Union[MusicTokens, Tensor, Sequence[Any]],  # type: ignore[override]
               seconds: Optional[float] = None) -> list[Any]:
        """Tokens -> one ``symusic.Score`` per row (use :meth:`render` for audio); ``seconds``: keep
        only the notes that start before it (a generated clip cut to its video)."""
        scores = [self.decode_music(self.split(r)[1]) for r in self.rows(tokens)]
        return [clip_score(s, seconds) for s in scores] if seconds is not None else scores

    def window_cut(self, tokens: Union[MusicTokens, Sequence[Any]], limit: float, n_bars: int,
                   after: float = 0.0) -> Optional["WindowCut"]:
        """Where a long-video window of generated ``tokens`` (one row, prefix included) should end so the
        next window can continue it: the end of the last bar that is complete (another bar follows it) and ends
        by ``limit`` seconds and after ``after`` seconds (row clock, from the first ``Bar_None``), with the
        ids of the ``n_bars`` bars before that point (control tokens included, and the tempo in force when they
        do not state it) to prompt the next window.
        None when no such bar exists (``vocab: remi`` only; None for ``musecoco``)."""
        if self.tokenizer is None or n_bars < 1:
            return None
        row = self.rows(tokens)[0]
        music = row[row.index(SEP) + 1:] if SEP in row else row
        if SPECIALS[EOS] in music:
            music = music[: music.index(SPECIALS[EOS])]
        starts = [i for i, t in enumerate(music) if t == BAR]
        bars = bars_of(music)
        ends = [j for j in range(len(bars) - 1) if after + 1e-6 < bars[j].end <= limit + 1e-6]
        if not ends:
            return None
        j = ends[-1]
        first = max(0, j - n_bars + 1)
        ticks = [int(round(sum(b.quarters for b in bars[:k]) * self.cfg.tpq)) for k in (first, j + 1)]
        prompt = music[starts[first]:starts[j + 1]]
        tempos = [t for t in music[:starts[first]] if t.startswith("Tempo_")]
        if tempos and not any(t.startswith("Tempo_") for t in prompt):  # REMI writes a tempo only when it changes:
            pos = next((i for i, t in enumerate(prompt) if t.startswith("Position_")), len(prompt))  # carry it over
            if pos < len(prompt) and prompt[pos] == "Position_0":
                prompt = prompt[:pos + 1] + [tempos[-1]] + prompt[pos + 1:]
            else:
                prompt = prompt[:pos] + ["Position_0", tempos[-1]] + prompt[pos:]
        return WindowCut(seconds=bars[j].end, ticks=ticks[1], prompt=self.vocab.encode(prompt),
                         prompt_seconds=bars[j].end - bars[first].start, prompt_ticks=ticks[1] - ticks[0])

    def decode_between(self, tokens: Union[MusicTokens, Sequence[Any]], start_ticks: int,
                       end_ticks: Optional[int] = None, end_seconds: Optional[float] = None) -> Any:
        """The first row as a Score holding the notes that start in ``[start_ticks, end)`` moved to start at 0
        (tempo and time signature in force at the start kept); ``end`` is ``end_ticks``, else the tick at
        ``end_seconds``, else the end of the music. For a window that began with a prompt."""
        score = self.decode(tokens)[0]
        if end_ticks is None:
            end_ticks = tick_at(score, end_seconds) if end_seconds is not None else max(score.end(), start_ticks) + 1
        piece = score.clip(int(start_ticks), int(end_ticks), False)
        return piece.shift_time(-int(start_ticks)) if start_ticks else piece

    def n_frames(self, seconds: float) -> int:
        """The token budget for ``seconds`` of music: the attribute prefix + 100 tokens per second."""
        from .policy import token_budget

        return token_budget(self, seconds)

    def plan_request(self, request: GenerationRequest, layout: SequenceLayout,
                     videos: Optional[Sequence[Union[str, os.PathLike]]] = None,
                     spans: Optional[Sequence[tuple[float, float]]] = None) -> GenerationRequest:
        """Budget, EOS, forced prefix and per-bar controller of a request (see :mod:`.policy`)."""
        from .policy import plan_request

        return plan_request(self, request, layout, videos, spans)

    def row_meta(self, tokens: MusicTokens, row: int) -> dict[str, Any]:
        """The per-bar controls a generated row wrote (``bar_cuts`` / ``bar_density``)."""
        from .policy import bar_control_meta

        return bar_control_meta(self, tokens, row)

    def bar_controller(self, cuts: Optional[Sequence[Sequence[float]]] = None,
                       density: Optional[Sequence[Optional[DensityFn]]] = None) -> Optional["BarController"]:
        """A :class:`BarController` for rows with these video cut times and per-bar density classes
        (``density[b](start, end) -> class``; None: the model picks); None without per-bar controls."""
        if not self.bar_controlled:
            return None
        n = len(cuts) if cuts is not None else len(density) if density is not None else 0
        return BarController(self, cuts if cuts is not None else [[]] * n, density)

    def prefix_codes(self, attributes: Mapping[str, Any]) -> list[int]:
        """Ids of the prefix columns (63 attributes, ``<sep>``) that set ``attributes`` (``{key: value}``,
        e.g. ``{"T1s1": 2, "K1": 0}``; multi-slot keys take a list per slot), ``-1`` for every column left
        to the model. Unknown keys or values out of range raise :class:`ConfigError`."""
        from .vocab import ATTRIBUTE_KEYS, KEYS

        if not self.cfg.attribute_prefix:
            raise ConfigError("codec remi: attribute_prefix is false, so there is no prefix to set attributes in")
        bad = sorted(set(attributes) - set(KEYS))
        if bad:
            raise ConfigError(f"unknown attribute(s) {bad}; MuseCoco keys: {', '.join(KEYS)}")
        out: list[int] = []
        for key in ATTRIBUTE_KEYS:
            n = max(1, key.n_slots)
            if key.name not in attributes:
                out += [-1] * n
                continue
            value = attributes[key.name]
            values = list(value) if key.multi and isinstance(value, (list, tuple)) else [value]
            if len(values) != n or not all(isinstance(v, int) and 0 <= v < key.n_values for v in values):
                raise ConfigError(f"attribute {key.name}={value!r}: give {n} integer(s) in 0..{key.n_values - 1} "
                                  f"({key.n_values - 1} = NA)")
            out += self.vocab.encode(key.tokens(values if key.multi else values[0]))
        return out + [self.sep_id]

    @cached_property
    def _soundfont(self) -> str:
        path = Path(self.cfg.soundfont) if self.cfg.soundfont else soundfont_path()
        if not path.is_file():
            raise ConfigError(f"codec.soundfont={str(path)!r} does not exist; give an .sf2/.sf3 file or leave it unset")
        return str(path)

    def render(self, x: Union[MusicTokens, Tensor, Any, Sequence[Any]], sample_rate: Optional[int] = None,
               seconds: Optional[float] = None) -> Tensor:
        """Tokens or Score(s) -> mono float32 audio ``[B, 1, L]`` (peak-normalised to 0.89; rows padded
        with silence to the longest, or cut/padded to ``seconds``)."""
        from symusic import Synthesizer

        scores = self._scores(x)
        sr = int(sample_rate or self.sample_rate)
        synth = Synthesizer(sf_path=self._soundfont, sample_rate=sr, quality=0)
        outs = []
        for s in scores:
            if any(len(tr.notes) for tr in s.tracks):
                a = np.asarray(synth.render(s, stereo=False), dtype=np.float32)[0]
                peak = float(np.abs(a).max())
                a = a * (0.89 / peak) if peak > 0 else a
            else:
                a = np.zeros(0, np.float32)
            outs.append(a)
        L = int(round(seconds * sr)) if seconds is not None else max(1, max(len(a) for a in outs))
        audio = torch.zeros(len(outs), 1, L)
        for b, a in enumerate(outs):
            n = min(L, len(a))
            audio[b, 0, :n] = torch.from_numpy(a[:n].copy())
        return audio

    def write_midi(self, x: Union[MusicTokens, Tensor, Any], path: Union[str, os.PathLike]) -> Path:
        """Write the first row's Score (or the Score ``x``) as ``.mid`` (atomically)."""
        score = self._scores(x)[0]
        path = Path(path)
        with atomic_path(path) as tmp:
            score.dump_midi(str(tmp))
        return path

    def _scores(self, x: Any) -> list[Any]:
        if isinstance(x, (MusicTokens, Tensor)):
            return self.decode(x)
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        if items and all(hasattr(i, "tracks") for i in items):
            return [load_score(i) for i in items]
        return self.decode(x)


class BarController:
    """Sets the per-bar control tokens after every ``Bar_None`` the model writes: ``BarCut_1`` when one of
    the video's cut times falls inside that bar (``bar_controls``), then ``BarDensity_<k>`` with the class
    ``density[b](start, end)`` gives for the bar's span (``bar_density``; a row without a function is left
    to the model). Bar times follow the generated ``TimeSig``/``Tempo`` tokens (a new bar is assumed as long
    as the previous one until its own tokens say otherwise); the bar that ends at a ``Bar_None`` is measured
    with the TimeSig/Tempo read up to then. Call it with each sampled column ``codes [B, 1]``; it returns the
    codes to force at the next column (``-1`` = free): the ``controller`` of
    ``vidmusic_core.sampling.generate_tokens``. ``flags`` / ``densities`` keep what was set per bar."""

    def __init__(self, codec: "RemiCodec", cuts: Sequence[Sequence[float]],
                 density: Optional[Sequence[Optional[DensityFn]]] = None, default_qpm: float = 120.0) -> None:
        self.codec, self.cuts = codec, [np.asarray(c, dtype=float) for c in cuts]
        B = len(self.cuts)
        if density is not None and len(density) != B:
            raise ValueError(f"BarController: {len(density)} density functions for {B} rows")
        self.density = list(density) if density is not None else [None] * B
        self.use_cuts, self.use_density = bool(codec.cfg.bar_controls), bool(codec.cfg.bar_density)
        self.quarters = [4.0] * B  # bar length in quarters (TimeSig)
        self.qpm = [default_qpm] * B
        self.bar_start: list[Optional[float]] = [None] * B
        self.control_ids = codec.vocab.encode(list(BAR_CONTROLS))  # [BarCut_0, BarCut_1]
        self.density_ids = codec.vocab.encode(list(DENSITY_TOKENS))
        self.flags: list[list[int]] = [[] for _ in range(B)]  # cut flag set per bar
        self.densities: list[list[Optional[int]]] = [[] for _ in range(B)]  # density class forced per bar
        self.pending: list[list[int]] = [[] for _ in range(B)]  # codes still to force, one per column

    def __call__(self, column: int, codes: Tensor) -> Tensor:
        out = torch.full_like(codes, -1)
        for b, i in enumerate(codes[:, 0].tolist()):
            tok = self.codec.vocab[int(i)] if 0 <= int(i) < len(self.codec.vocab) else ""
            self.quarters[b], self.qpm[b] = timing_after(tok, self.quarters[b], self.qpm[b])
            if tok == BAR:
                length = self.quarters[b] * 60.0 / self.qpm[b]  # the bar that just ended; the new one's estimate
                prev = self.bar_start[b]
                start = self.bar_start[b] = 0.0 if prev is None else prev + length
                queue: list[int] = []
                if self.use_cuts:
                    cut = bool(((self.cuts[b] >= start) & (self.cuts[b] < start + length)).any())
                    self.flags[b].append(int(cut))
                    queue.append(self.control_ids[int(cut)])
                if self.use_density:
                    fn = self.density[b]
                    k = None if fn is None else int(fn(start, start + length))
                    self.densities[b].append(k)
                    queue.append(-1 if k is None else self.density_ids[k])
                self.pending[b] = queue
            if self.pending[b]:
                out[b, 0] = self.pending[b].pop(0)
        return out


BarCutController = BarController  # the name before the density control


@dataclass
class WindowCut:
    """Where a window's music ends and what prompts the next window (:meth:`RemiCodec.window_cut`):
    ``seconds`` / ``ticks`` on the row's clock; ``prompt`` the ids of the last bars before it, lasting
    ``prompt_seconds`` (``prompt_ticks``)."""

    seconds: float
    ticks: int
    prompt: list[int]
    prompt_seconds: float
    prompt_ticks: int
