"""InspireMusic's token files (``utt2semantic_token.pt``, ``utt2acoustic_token.pt``), read and written safely.

Upstream (``tools/extract_semantic_token.py``) writes ``torch.save({utt: np.ndarray int16 [1, T]})``: a
torch pickle of **numpy** arrays (acoustic tokens: ``[T, 4]``), and reads it with a bare ``torch.load``
(``make_parquet_list.py``, which only calls ``.tolist()`` on each value).

- :func:`read_token_file` never unpickles arbitrary objects: ``torch.load(weights_only=True)`` with an
  explicit allow-list of only what a numpy integer array needs (``numpy.ndarray``, ``numpy.dtype``, the
  ``_reconstruct`` function under its numpy 1 and numpy 2 names, and the integer dtype classes), then every
  value is checked to be an integer array of 1 or 2 dims. ``.npz`` files are read with
  ``np.load(allow_pickle=False)``.
- :func:`write_token_file` writes int16 **torch tensors** by default: upstream's ``torch.load`` + ``.tolist()``
  gives the same lists, and unlike numpy arrays they load under torch >= 2.6's default
  ``weights_only=True``. ``as_numpy=True`` writes numpy arrays exactly as upstream does; a ``.npz`` path
  writes an npz archive. Writes are atomic.

Training data for vidmusic itself lives in ``prepare``'s parquet shards (int16 tokens, content-hash keyed);
these files are for moving tokens to and from upstream's tools.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from vidmusic_core import CheckpointError, atomic_path

_INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)


def _numpy_allow_list() -> list[Any]:
    from numpy._core.multiarray import _reconstruct  # numpy >= 2 (numpy 1: numpy.core.multiarray)

    entries: list[Any] = [np.ndarray, np.dtype,
                          (_reconstruct, "numpy._core.multiarray._reconstruct"),
                          (_reconstruct, "numpy.core.multiarray._reconstruct")]  # files written under numpy 1
    entries += [type(np.dtype(t)) for t in _INT_DTYPES]  # numpy.dtypes.Int16DType …
    return entries


def _as_tokens(value: Any, key: str, where: Path) -> np.ndarray:
    arr = value.numpy() if isinstance(value, torch.Tensor) else value
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.integer) or arr.ndim not in (1, 2):
        kind = f"{type(value).__name__} {getattr(value, 'dtype', '')} {list(getattr(value, 'shape', []))}"
        raise CheckpointError(f"{where}: value of {key!r} is {kind.strip()}; expected an integer array [T] or [K, T]")
    return arr


def read_token_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``{utt: integer array}`` from an upstream ``utt2*_token.pt`` (or ``.npz``); arrays as stored
    (semantic ``[1, T]``, acoustic ``[T, 4]``), dtype kept."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"token file {p} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                data: Any = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {p} with np.load(allow_pickle=False): {exc}") from exc
    else:
        try:
            with torch.serialization.safe_globals(_numpy_allow_list()):
                data = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError …
            raise CheckpointError(f"cannot read {p} with torch.load(weights_only=True) (only tensors and numpy integer "
                                  f"arrays are allowed): {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{p}: expected a dict {{utt: tokens}}, got {type(data).__name__}")
    return {k: _as_tokens(v, k, p) for k, v in data.items()}


def write_token_file(tokens: Mapping[str, Any], path: str | os.PathLike[str], as_numpy: bool = False) -> Path:
    """Write ``{utt: tokens}`` (arrays/tensors/lists, ``[T]`` becomes ``[1, T]``) as int16, atomically.

    ``.npz`` path: a numpy archive. Otherwise ``torch.save`` of int16 tensors, or of numpy arrays with
    ``as_numpy`` (upstream's exact types). Values outside int16 are an error.
    """
    p = Path(path)
    out: dict[str, Any] = {}
    for utt, value in tokens.items():
        arr = np.asarray(value.cpu().numpy() if isinstance(value, torch.Tensor) else value)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"write_token_file: tokens of {utt!r} must be integers [T] or [K, T], got "
                             f"{arr.dtype} {list(arr.shape)}")
        if arr.size and (arr.min() < -(2 ** 15) or arr.max() >= 2 ** 15):
            raise ValueError(f"write_token_file: tokens of {utt!r} do not fit int16 ([{arr.min()}, {arr.max()}])")
        arr = np.ascontiguousarray(arr, dtype=np.int16)
        out[str(utt)] = arr if (as_numpy or p.suffix == ".npz") else torch.from_numpy(arr)
    with atomic_path(p) as tmp:
        if p.suffix == ".npz":  # what np.savez writes, without its keyword-name clashes ("file", …)
            with zipfile.ZipFile(tmp, "w") as z:
                for utt, arr in out.items():
                    with z.open(f"{utt}.npy", "w") as fh:
                        np.lib.format.write_array(fh, arr, allow_pickle=False)
        else:
            torch.save(out, tmp)
    return p
