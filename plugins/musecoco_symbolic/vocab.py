"""Token vocabularies of the `musecoco_symbolic` plugin: fairseq specials, MuseCoco attribute tokens,
and the two music vocabularies (``remi``: miditok REMI with programs; ``musecoco``: upstream's).

Ids follow fairseq's ``Dictionary``: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2 (EOS, also the BOS that upstream
feeds first), ``<unk>`` 3, then the symbols in order. ``musecoco`` mode reproduces the order of
upstream's ``dict.txt`` (1249 symbols + 4 specials = 1253), so an imported checkpoint's rows line up.

Attribute prefix (MuseCoco ``CommandDataset.key_order``; the last class of every key is NA)::

    I1s2_{slot 0..27}_{0 yes|1 no|2 NA}  I4_v  C1_v  R1_v  R3_v  S2s1_v  S4_{slot 0..21}_{0|1|2}
    B1s1_v  TS1s1_v  K1_v  T1s1_v  P4_v  ST1_v  EM1_v  TM1_v                  -> 63 tokens, then <sep>
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BOS, PAD, EOS, UNK = 0, 1, 2, 3
SEP = "<sep>"


@dataclass(frozen=True)
class AttributeKey:
    """One MuseCoco attribute: ``n_values`` classes per slot (NA = the last), ``n_slots`` > 0 for the
    multi-hot keys (I1s2 instruments, S4 genres), 0 for single-class keys."""

    name: str
    n_values: int
    n_slots: int = 0
    objective: bool = False  # extracted from the MIDI itself (see attributes.py)

    @property
    def na(self) -> int:
        return self.n_values - 1

    @property
    def multi(self) -> bool:
        return self.n_slots > 0

    def tokens(self, value: int | Sequence[int]) -> list[str]:
        """Prefix tokens of one value: ``[KEY_v]`` or ``[KEY_slot_v for every slot]``."""
        if self.multi:
            assert not isinstance(value, int) and len(value) == self.n_slots, (self.name, value)
            return [f"{self.name}_{s}_{int(v)}" for s, v in enumerate(value)]
        assert isinstance(value, int), (self.name, value)
        return [f"{self.name}_{value}"]

    def all_tokens(self) -> list[str]:
        if self.multi:
            return [f"{self.name}_{s}_{v}" for s in range(self.n_slots) for v in range(self.n_values)]
        return [f"{self.name}_{v}" for v in range(self.n_values)]


ATTRIBUTE_KEYS: tuple[AttributeKey, ...] = (
    AttributeKey("I1s2", 3, 28, objective=True),  # instrument families: yes / no / NA per slot
    AttributeKey("I4", 29),  # legacy, NA at inference
    AttributeKey("C1", 5),  # legacy, NA at inference
    AttributeKey("R1", 3, objective=True),  # danceable: yes / no / NA
    AttributeKey("R3", 4, objective=True),  # rhythm intensity: onsets per beat <=1, (1,2), >=2, NA
    AttributeKey("S2s1", 18),  # artist (17 composers), NA
    AttributeKey("S4", 3, 22),  # genres: yes / no / NA per slot
    AttributeKey("B1s1", 5, objective=True),  # bars 1-4, 5-8, 9-12, 13-16, NA
    AttributeKey("TS1s1", 8, objective=True),  # 4/4 2/4 3/4 1/4 6/8 3/8 other NA
    AttributeKey("K1", 3, objective=True),  # major minor NA
    AttributeKey("T1s1", 4, objective=True),  # tempo <=76 slow, moderate, >=120 fast, NA
    AttributeKey("P4", 13, objective=True),  # pitch range in octaves 0..11, NA
    AttributeKey("ST1", 15),  # legacy, NA at inference
    AttributeKey("EM1", 5),  # emotion quadrants Q1..Q4, NA
    AttributeKey("TM1", 6, objective=True),  # seconds (0,15] .. >60, NA
)
KEYS = {k.name: k for k in ATTRIBUTE_KEYS}
#: tokens in the attribute prefix (without <sep>)
N_ATTRIBUTE_TOKENS = sum(max(1, k.n_slots) for k in ATTRIBUTE_KEYS)  # 63
#: the whole condition prefix: attributes + <sep>
PREFIX_LENGTH = N_ATTRIBUTE_TOKENS + 1


def attribute_tokens() -> list[str]:
    """All 268 attribute tokens, in upstream ``dict.txt`` order."""
    return [t for k in ATTRIBUTE_KEYS for t in k.all_tokens()]


def musecoco_music_tokens() -> list[str]:
    """Upstream's music symbols in ``dict.txt`` order: b o i p d v s t e (980 symbols)."""
    families = (("b", 2), ("o", 128), ("i", 129), ("p", 256), ("d", 128), ("v", 32), ("s", 254), ("t", 49), ("e", 2))
    return [f"{f}-{i}" for f, n in families for i in range(n)]


def musecoco_symbols() -> list[str]:
    """The 1249 symbols of upstream ``dict.txt`` (without fairseq's 4 specials), in order."""
    return musecoco_music_tokens() + [SEP] + attribute_tokens()


class Vocab:
    """Token strings <-> ids, fairseq style (specials first). Also the attribute-token tables used by
    the attribute dropout of the backbone (id -> key index, slot, NA id)."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if tuple(symbols[:4]) != SPECIALS:
            symbols = list(SPECIALS) + [s for s in symbols if s not in SPECIALS]
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}
        if len(self._index) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"vocabulary has duplicate symbols: {dup[:10]}")
        self.bos, self.pad, self.eos, self.unk = BOS, PAD, EOS, UNK
        self.sep = self._index.get(SEP, -1)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, tok: str) -> bool:
        return tok in self._index

    def __getitem__(self, idx: int) -> str:
        return self.symbols[idx]

    def index(self, tok: str) -> int:
        return self._index.get(tok, UNK)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self._index.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        n = len(self.symbols)
        return [self.symbols[i] if 0 <= i < n else SPECIALS[UNK] for i in ids]

    @property
    def digest(self) -> str:
        """Short hash of the symbol list (two vocabularies with the same digest have the same ids)."""
        return hashlib.sha256("\n".join(self.symbols).encode()).hexdigest()[:12]

    def attribute_table(self) -> dict[int, tuple[int, int, int]]:
        """Attribute token id -> (key index in ATTRIBUTE_KEYS, slot (0 for single keys), value)."""
        out = {}
        for ki, key in enumerate(ATTRIBUTE_KEYS):
            for tok in key.all_tokens():
                if tok in self._index:
                    parts = tok.split("_")
                    slot, value = (int(parts[1]), int(parts[2])) if key.multi else (0, int(parts[1]))
                    out[self._index[tok]] = (ki, slot, value)
        return out

    # -- fairseq dict.txt ------------------------------------------------------------------------
    @classmethod
    def from_dict_txt(cls, path: str | Path) -> "Vocab":
        """Read a fairseq ``dict.txt`` (``symbol count [#fairseq:overwrite]`` per line) as fairseq's
        ``Dictionary.load`` does: the 4 specials, then the symbols in file order."""
        symbols = list(SPECIALS)
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.rstrip()
            if not line:
                continue
            overwrite = line.endswith("#fairseq:overwrite")
            if overwrite:
                line = line[: -len("#fairseq:overwrite")].rstrip()
            word, _, count = line.rpartition(" ")
            if not word or not count.lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected '<symbol> <count>', got {line!r}")
            if word in symbols and not overwrite:
                raise ValueError(f"{path}:{n}: duplicate symbol {word!r} (fairseq needs #fairseq:overwrite)")
            if word not in symbols:
                symbols.append(word)
        return cls(symbols)

    def to_dict_txt(self) -> str:
        """This vocabulary as fairseq ``dict.txt`` text (count 1 per symbol, as upstream's)."""
        return "".join(f"{s} 1\n" for s in self.symbols[len(SPECIALS):])
