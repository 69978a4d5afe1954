"""InspireMusic's training shards as a data source (``tools/make_parquet_list.py``; files are named
``parquet_{:09d}.tar`` but hold plain Parquet).

Columns (checked on upstream's ``examples/music_generation/data/samples/parquet/parquet_000000000.tar``):
``utt`` (string), ``text`` (caption), ``chorus`` (string, comma-separated structure labels),
``time_start``/``time_end`` (double, seconds), ``semantic_token`` (list<list<int64>> [1][T], WavTokenizer
codes at 75 Hz), ``acoustic_token`` (list<list<int64>> [T][4], optional here).

:func:`read_upstream_shard` returns typed records; :func:`to_token_store` writes their semantic tokens
into our parquet :class:`~vidmusic_core.data.cache.ShardStore` format (``codes [1, T]`` keyed by utt), the
documented vidmusic format for codec tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from vidmusic_core import VidmusicError

from .backbone import STRUCTURE_LABELS

REQUIRED = ("utt", "text", "chorus", "time_start", "time_end", "semantic_token")


class UpstreamDataError(VidmusicError):
    """An upstream parquet shard that does not have InspireMusic's layout."""


@dataclass
class UpstreamUtterance:
    utt: str
    text: str
    chorus: list[str]  # structure labels, e.g. ["verse"]; ids via structure_ids()
    time_start: float
    time_end: float
    semantic_token: np.ndarray  # int64 [1, T] (75 Hz WavTokenizer codes)
    acoustic_token: Optional[np.ndarray] = None  # int64 [T, 4] when present

    def structure_ids(self) -> list[int]:
        """``chorus`` as ``chorus_embedding`` rows (our documented map; unknown labels raise)."""
        try:
            return [STRUCTURE_LABELS[c.strip().lower()] for c in self.chorus]
        except KeyError as exc:
            raise UpstreamDataError(f"utterance {self.utt}: unknown structure label {exc.args[0]!r}; known: "
                                    f"{', '.join(STRUCTURE_LABELS)}") from None


def read_upstream_shard(path: str | Path) -> list[UpstreamUtterance]:
    """Read one upstream shard (Parquet, whatever its suffix) into records."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UpstreamDataError(f"upstream shard {path} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid on a non-parquet file
        raise UpstreamDataError(f"{path} is not a Parquet file ({exc})") from exc
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise UpstreamDataError(f"{path} lacks InspireMusic columns {missing}; it has {table.column_names}")
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    out = []
    for i, utt in enumerate(cols["utt"]):
        sem = np.asarray(cols["semantic_token"][i], dtype=np.int64)
        if sem.ndim == 1:
            sem = sem[None]
        if sem.ndim != 2 or sem.shape[0] != 1:
            raise UpstreamDataError(f"{path} row {i} ({utt}): semantic_token has shape {sem.shape}, expected [1, T]")
        ac = cols.get("acoustic_token", [None] * len(cols["utt"]))[i]
        out.append(UpstreamUtterance(
            utt=str(utt), text=str(cols["text"][i] or ""),
            chorus=[c for c in str(cols["chorus"][i] or "").split(",") if c.strip()],
            time_start=float(cols["time_start"][i]), time_end=float(cols["time_end"][i]), semantic_token=sem,
            acoustic_token=None if ac is None else np.asarray(ac, dtype=np.int64)))
    return out


def to_token_store(utterances: Sequence[UpstreamUtterance], store_dir: str | Path, shard_size: int = 1000) -> Path:
    """Write the semantic tokens as our token cache (``codes [1, T]`` int16, keyed and named by utt)."""
    from vidmusic_core import ShardStore

    store = ShardStore(store_dir, {"kind": "codec", "source": "inspiremusic-parquet", "codec": "wavtokenizer",
                                   "frame_rate": 75.0, "cardinality": 4096})
    rows = [{"key": u.utt, "name": u.utt, "codes": u.semantic_token} for u in utterances]
    for k, start in enumerate(range(0, len(rows), shard_size)):
        store.write_shard(k, rows[start:start + shard_size], int_bits=16)
    return Path(store_dir)
