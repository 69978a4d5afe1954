"""Scanning a data folder into a manifest of (video, music, text) items.

A data folder holds pairs that share a stem: ``name.mp4`` (or .mov/.mkv/.webm/.avi) plus the music as
``name.wav|flac|mp3|ogg`` or ``name.mid|midi`` — or, failing those, the video's own audio track —
and optionally ``name.txt`` (the caption) or ``name.json`` (a ``caption`` field, plus any ground truth).
Items that cannot be used are listed in the report with their reason; the rest are processed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..checkpoint import atomic_path
from ..errors import VidmusicError

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg")
MIDI_EXTS = (".mid", ".midi")
MANIFEST_NAME = "manifest.jsonl"


class DataError(VidmusicError):
    """A data folder or item that cannot be used."""


@dataclass
class Item:
    """One (video, music) pair. ``music_kind``: ``audio`` (a file), ``midi``, or ``video_audio`` (the
    video's own track). ``content_hash`` covers the bytes of the video and music files."""

    name: str
    video: str
    music: str
    music_kind: str
    text: str = ""
    duration: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    content_hash: str = ""
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)
    midi: str = ""  # ``name.mid|midi`` beside the video when there is one (symbolic codecs read it), else ""


@dataclass
class BadItem:
    name: str
    path: str
    reason: str


def file_hash(paths: Iterable[str | Path], chunk: int = 1 << 20) -> str:
    """sha256 over the bytes of ``paths`` (in order), first 16 hex digits."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _split_for(name: str, splits: dict[str, list[str]] | None, fractions: tuple[float, float, float]) -> str:
    if splits is not None:
        for split, names in splits.items():
            if name in names:
                return split
    # stable hash split, independent of folder order
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < fractions[0] else "valid" if u < fractions[0] + fractions[1] else "test"


def scan(root: str | Path, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[list[Item], list[BadItem]]:
    """Pair the files under ``root`` (not recursive) and probe each video. Returns (items, bad items).

    Splits come from ``root/splits.json`` (``{"train": [...], "valid": [...], "test": [...]}``) when it
    exists, else from a stable hash of each name.
    """
    from ..video import probe_video  # PyAV, imported only when scanning

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (create it, or run `vidmusic toy-data {root}`)")
    splits = json.loads((root / "splits.json").read_text()) if (root / "splits.json").is_file() else None
    items: list[Item] = []
    bad: list[BadItem] = []
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTS and not p.name.startswith("."))
    if not videos:
        raise DataError(f"data folder {root} holds no video files ({', '.join(VIDEO_EXTS)})")
    for video in videos:
        stem = video.stem
        music, kind = None, None
        for ext in AUDIO_EXTS + MIDI_EXTS:
            cand = video.with_suffix(ext)
            if cand.is_file():
                music, kind = cand, ("midi" if ext in MIDI_EXTS else "audio")
                break
        try:
            info = probe_video(video)
        except VidmusicError as exc:
            bad.append(BadItem(stem, str(video), str(exc)))
            continue
        if music is None:
            if not info.has_audio:
                bad.append(BadItem(stem, str(video), f"no music: no {stem}.wav/.flac/.mp3/.ogg/.mid beside the "
                                   "video and the video has no audio track"))
                continue
            music, kind = video, "video_audio"
        text, meta = "", {}
        if video.with_suffix(".json").is_file():
            try:
                meta = json.loads(video.with_suffix(".json").read_text())
            except json.JSONDecodeError as exc:
                bad.append(BadItem(stem, str(video.with_suffix(".json")), f"invalid JSON: {exc}"))
                continue
            text = str(meta.get("caption", "")) if isinstance(meta, dict) else ""
        if video.with_suffix(".txt").is_file():
            text = video.with_suffix(".txt").read_text().strip()
        midi = next((c for c in (video.with_suffix(e) for e in MIDI_EXTS) if c.is_file()), None)
        paths = [video] if music == video else [video, music]
        if midi is not None and midi != music:
            paths.append(midi)
        items.append(Item(
            name=stem, video=str(video), music=str(music), music_kind=str(kind), text=text,
            duration=float(info.duration), fps=float(info.fps), width=int(info.width), height=int(info.height),
            content_hash=file_hash(paths), split=_split_for(stem, splits, fractions),
            meta=meta if isinstance(meta, dict) else {}, midi=str(midi) if midi is not None else "",
        ))
    return items, bad


def write_manifest(items: list[Item], path: str | Path) -> None:
    """Write items as JSON lines, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(asdict(it), sort_keys=True) + "\n" for it in items))


def read_manifest(path: str | Path) -> list[Item]:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; run `vidmusic prepare` first")
    return [Item(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
