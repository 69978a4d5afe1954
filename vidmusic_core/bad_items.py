"""Items that cannot be read are skipped, not fatal: the reason of each, and ``bad_items.json`` beside the outputs.

``prepare`` records its own (``<cache>/bad_items.json``, see :mod:`vidmusic_core.data.prepare`); evaluation
(folder and run mode) uses these helpers for the same file format: a JSON list of ``{name, path, reason}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .checkpoint import atomic_path
from .errors import VidmusicError

BAD_ITEMS = "bad_items.json"


def load_music(path: str | Path, allow_silent: bool = False) -> np.ndarray:
    """Mono float32 ``[L]`` at the file's own rate; a truncated WAV (a data chunk longer than the file), an
    undecodable file or non-finite samples raise an :class:`~vidmusic_core.audio.AudioError` naming why."""
    from .audio import AudioDecodeError, load_audio
    from .data.decode import _wav_truncation

    p = Path(path)
    if p.suffix.lower() == ".wav" and p.is_file():
        why = _wav_truncation(p)
        if why:
            raise AudioDecodeError(why)
    return load_audio(p, None, mono=True, allow_silent=allow_silent)[0]


def reason(exc: BaseException) -> str:
    """The message of a vidmusic error, else ``Type: message`` (a decoder's own exception)."""
    return str(exc) if isinstance(exc, VidmusicError) else f"{type(exc).__name__}: {exc}"


def culprit(exc: BaseException, paths: Iterable[str | Path | None]) -> Path | None:
    """The first of ``paths`` that the error message names (by path, else by file name), else the first path."""
    given = [Path(p) for p in paths if p is not None]
    text = str(exc)
    return next((p for p in given if str(p) in text), next((p for p in given if p.name in text),
                                                           given[0] if given else None))


def write_bad_items(folder: str | Path, bad: Sequence[Mapping[str, Any]]) -> Path:
    """``folder/bad_items.json`` (written also when empty, so a clean run says so)."""
    path = Path(folder) / BAD_ITEMS
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps([dict(b) for b in bad], indent=1))
    return path
