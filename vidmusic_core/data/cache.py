"""Parquet shard store for cached features and tokens (pyarrow).

A store is a directory ``<cache>/<kind>-<name>-<config hash>/`` with ``store.json`` (what produced it)
and shards ``part-00000.parquet`` … Each row is one item: ``key`` (the item's content hash), ``name``,
and per array field ``<field>`` (raw bytes, ``large_binary``), ``<field>.shape`` and ``<field>.dtype``.
Floating features are stored as float16, token ids as int16 (int32 when the codebook is larger),
times as float32. Raw bytes + shape read ~4x faster than nested lists (see notes/stack.md §3g).

Reads are by row group (about ``ROW_GROUP_BYTES`` of payload), held in an LRU
bounded by ``cache_bytes``; the index reads only the ``key`` column and lengths only the ``.shape``
columns, so start-up and memory do not grow with the payload of the dataset.

Shards are written to a temporary name and renamed, so a shard that exists is complete; an
interrupted run redoes only the missing shards, and the same inputs give byte-identical shards.
"""
from __future__ import annotations

import hashlib
import json
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..checkpoint import atomic_path
from ..errors import VidmusicError

STORE_META = "store.json"
ROW_GROUP_BYTES = 1 << 20  # a row group holds about this much payload (at least one row): the unit of a read
CACHE_BYTES = 64 << 20  # default bound on the decoded row groups a reader holds (per process)
MAX_OPEN_FILES = 16


class CacheError(VidmusicError):
    """A cache directory that does not match what was asked for, or a corrupt shard."""


def config_key(payload: Mapping[str, Any], length: int = 12) -> str:
    """Stable hash of a JSON-serialisable mapping (the component options that determine a cache)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _storage_dtype(a: np.ndarray, int_bits: int) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float16)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int16 if int_bits <= 16 else np.int32)
    raise CacheError(f"cannot cache arrays of dtype {a.dtype}")


class ShardStore:
    """Rows of named numpy arrays keyed by item content hash, in parquet shards."""

    def __init__(self, root: str | Path, meta: Mapping[str, Any] | None = None,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.root = Path(root)
        meta_path = self.root / STORE_META
        if meta is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            # A writer killed mid-shard (SIGKILL skips cleanup) leaves ``.part-*.tmp``; one writer per
            # cache directory is the contract, so opening for writing removes those leftovers.
            for stale in self.root.glob(".part-*.tmp"):
                stale.unlink(missing_ok=True)
            if meta_path.is_file():
                old = json.loads(meta_path.read_text())
                if old != json.loads(json.dumps(meta, sort_keys=True, default=str)):
                    raise CacheError(f"cache {self.root} was written by another configuration:\n  on disk: {old}"
                                     f"\n  asked:   {dict(meta)}\nDelete the directory or use another cache_dir.")
            else:
                with atomic_path(meta_path) as tmp:
                    tmp.write_text(json.dumps(meta, sort_keys=True, indent=1, default=str))
        elif not meta_path.is_file():
            raise CacheError(f"{self.root} is not a vidmusic cache (no {STORE_META}); run `vidmusic prepare`")
        self.meta = json.loads(meta_path.read_text())
        self.cache_bytes = int(cache_bytes)
        self._index: dict[str, tuple[Path, int, int]] | None = None
        self._files: dict[Path, pq.ParquetFile] = {}  # LRU of open shards
        self._groups: dict[tuple[Path, int], pa.Table] = {}  # LRU of decoded row groups
        self._held = 0
        self._loads: deque[tuple[str, int]] = deque(maxlen=4096)  # row groups read from disk, see take_loads

    # -- writing -------------------------------------------------------------------------------
    def shard_path(self, k: int) -> Path:
        return self.root / f"part-{k:05d}.parquet"

    def has_shard(self, k: int) -> bool:
        return self.shard_path(k).is_file()

    def skipped_path(self, k: int) -> Path:
        return self.root / f"part-{k:05d}.skipped.json"

    def write_shard(self, k: int, rows: Sequence[Mapping[str, Any]], int_bits: int = 16,
                    float_fields: Sequence[str] = (), skipped: Sequence[Mapping[str, str]] = ()) -> Path:
        """Write rows (``key``, ``name`` and numpy arrays) as shard ``k`` atomically.

        Fields in ``float_fields`` keep float32 (e.g. times); other floating arrays become float16.
        ``skipped`` (``name``, ``key``, ``path``, ``reason`` of the shard's items that could not be encoded)
        goes to ``part-k.skipped.json``, written before the shard, so a shard on disk has its complete list.
        A shard whose items were all skipped holds no rows.
        """
        side = self.skipped_path(k)
        if skipped:
            with atomic_path(side) as tmp:
                tmp.write_text(json.dumps(list(skipped), indent=1, sort_keys=True))
        else:
            side.unlink(missing_ok=True)
        fields = sorted(k2 for k2 in rows[0] if k2 not in ("key", "name")) if rows else []
        cols: dict[str, list[Any]] = {"key": [str(r["key"]) for r in rows], "name": [str(r["name"]) for r in rows]}
        for f in fields:
            arrays = [np.asarray(r[f]) for r in rows]
            stored = [a.astype(np.float32) if f in float_fields and np.issubdtype(a.dtype, np.floating)
                      else _storage_dtype(a, int_bits) for a in arrays]
            cols[f] = [np.ascontiguousarray(s).tobytes() for s in stored]
            cols[f + ".shape"] = [list(a.shape) for a in arrays]
            cols[f + ".dtype"] = [str(s.dtype) for s in stored]
        schema = pa.schema([("key", pa.string()), ("name", pa.string())] + [
            field for f in fields for field in (pa.field(f, pa.large_binary()), pa.field(f + ".shape", pa.list_(pa.int32())),
                                                pa.field(f + ".dtype", pa.string()))])
        table = pa.table(cols, schema=schema)
        path = self.shard_path(k)
        with atomic_path(path) as tmp:
            payload = sum(len(b) for f in fields for b in cols[f])
            per_group = max(1, ROW_GROUP_BYTES * len(rows) // max(1, payload))
            pq.write_table(table, tmp, compression="zstd", use_dictionary=False, write_statistics=False,
                           row_group_size=per_group)
        self._index = None
        return path

    # -- reading -------------------------------------------------------------------------------
    def skipped(self) -> dict[str, dict[str, str]]:
        """key -> {name, key, path, reason} of every item a written shard skipped."""
        out: dict[str, dict[str, str]] = {}
        for path in sorted(self.root.glob("part-*.skipped.json")):
            if path.with_name(path.name.replace(".skipped.json", ".parquet")).is_file():
                out.update({r["key"]: r for r in json.loads(path.read_text())})
        return out

    def shards(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet"))

    def _file(self, path: Path) -> pq.ParquetFile:
        f = self._files.pop(path, None)
        if f is None:
            try:
                f = pq.ParquetFile(path)  # read, not mmap: mapped pages would count in RSS
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError on corrupt files
                raise CacheError(f"cache shard {path} is unreadable ({exc}); delete it and re-run prepare") from exc
            while len(self._files) >= MAX_OPEN_FILES:
                self._files.pop(next(iter(self._files)))
        self._files[path] = f  # most recently used last
        return f

    def _row_group(self, path: Path, group: int) -> pa.Table:
        """One row group, held in an LRU bounded by ``cache_bytes`` (the reader's memory does not grow
        with the dataset)."""
        key = (path, group)
        table = self._groups.pop(key, None)
        if table is None:
            f = self._file(path)
            try:
                table = f.read_row_group(group)
            except Exception as exc:
                raise CacheError(f"cache shard {path} is unreadable ({exc}); delete it and re-run prepare") from exc
            self._held += table.nbytes
            self._loads.append((path.name, group))
            while self._groups and self._held > self.cache_bytes:
                self._held -= self._groups.pop(next(iter(self._groups))).nbytes
        self._groups[key] = table
        return table

    def index(self) -> dict[str, tuple[Path, int, int]]:
        """key -> (shard, row group, row within it), from the ``key`` column only (no payload is read)."""
        if self._index is None:
            self._index = {}
            for path in self.shards():
                f = self._file(path)
                keys = f.read(columns=["key"]).column("key").to_pylist()
                row = 0
                for g in range(f.metadata.num_row_groups):
                    for r in range(f.metadata.row_group(g).num_rows):
                        self._index[keys[row]] = (path, g, r)
                        row += 1
        return self._index

    def shapes(self, field: str) -> dict[str, list[int]]:
        """key -> the stored shape of ``field`` (e.g. ``codes`` ``[K, T_a]``), from the small ``.shape``
        column only: lengths for token-count batching without reading any item."""
        out: dict[str, list[int]] = {}
        for path in self.shards():
            f = self._file(path)
            if field + ".shape" not in f.schema_arrow.names:
                continue
            t = f.read(columns=["key", field + ".shape"])
            out.update(zip(t.column("key").to_pylist(), t.column(field + ".shape").to_pylist()))
        return out

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get the store without open files/caches
        state = dict(self.__dict__)
        state.update(_files={}, _groups={}, _held=0, _loads=deque(maxlen=4096))
        return state

    def take_loads(self) -> list[tuple[str, int]]:
        """The (shard file, row group) pairs read from disk since the last call (the latest 4096 at most)."""
        out = list(self._loads)
        self._loads.clear()
        return out

    def row_group_of(self, key: str) -> tuple[str, int]:
        """(shard file name, row group) that holds ``key``."""
        path, group, _ = self.index()[key]
        return path.name, group

    def __contains__(self, key: str) -> bool:
        return key in self.index()

    def __len__(self) -> int:
        return len(self.index())

    def read(self, key: str) -> dict[str, np.ndarray]:
        """The arrays stored for ``key`` (float16/int16 as stored; cast at use)."""
        try:
            path, group, row = self.index()[key]
        except KeyError:
            raise CacheError(f"item {key} is not in cache {self.root}; run `vidmusic prepare` again") from None
        table = self._row_group(path, group)
        out = {}
        names = [c for c in table.column_names if c not in ("key", "name") and "." not in c]
        for f in names:
            buf = table.column(f)[row].as_py()
            shape = table.column(f + ".shape")[row].as_py()
            dtype = table.column(f + ".dtype")[row].as_py()
            out[f] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
        return out

    def rows(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for key in self.index():
            yield key, self.read(key)
