"""Pretraining data for the symbolic LM from the corpus that ships inside the music21 wheel (offline).

:func:`export_corpus` parses pieces of one collection of ``music21.corpus`` (the Bach chorales, the Essen
folksongs, O'Neill's Irish tunes) and writes a folder that ``vidmusic prepare`` reads unchanged::

    NAME.mid      the piece as MIDI (music21 export: repeats expanded; tempo of the score, else 120 qpm;
                  every part on the collection's GM program; cut to ``seconds`` when given)
    NAME.mp4      a constant 32x32 video as long as the MIDI (black by default): it carries NO information,
                  it only lets the paired-data pipeline run; this is pretraining data for the symbolic LM
    NAME.json     source path in the corpus, title, composer, the collection's licence class, duration,
                  tempo/key/time signature measured on the MIDI, a caption
    splits.json   stable hash split (90/5/5; valid and test get one piece each when there are at least 3)
    dataset.json  summary: parameters, licence notes, pieces, pieces that failed to parse

music21 is optional (``pip install "vidmusic[corpus]"``) and imported only here, inside the functions.
Licences differ per collection (see :data:`COLLECTIONS` and ``docs/plugins/musecoco.md``): the Essen
folksongs are non-commercial only.
"""
from __future__ import annotations

import colorsys
import copy
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vidmusic_core import VidmusicError, atomic_path

from .attributes import tick_seconds

GENERATOR = "vidmusic.musecoco_symbolic.corpus"
VERSION = 1
DEFAULT_QPM = 120.0  # music21 writes this tempo when a score has none
SPLIT_FRACTIONS = (0.9, 0.05, 0.05)
VIDEO_SIZE = 32
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


class CorpusError(VidmusicError):
    """music21 missing, an unknown collection, or an output folder that cannot be used."""


@dataclass(frozen=True)
class Collection:
    """One exportable collection of the music21 core corpus and what its licence allows."""

    name: str
    directory: str  # folder under music21/corpus
    prefix: str  # item names: ``PREFIX-...``
    description: str
    composer: str
    program: int  # GM program every part is put on (19 church organ, 0 piano, 40 violin)
    licence: str  # licence class: public-domain | non-commercial | unclear
    research_use: str
    commercial_use: str
    licence_files: tuple[str, ...]
    licence_note: str
    extensions: tuple[str, ...] = (".abc",)


_CORPUS_NOTICE = "music21/corpus/license.txt"
COLLECTIONS: dict[str, Collection] = {c.name: c for c in (
    Collection(
        name="bach", directory="bach", prefix="bach", description="Bach chorale", composer="J.S. Bach",
        program=19, licence="public-domain", research_use="yes", commercial_use="yes (check your jurisdiction)",
        licence_files=(_CORPUS_NOTICE,), extensions=(".mxl", ".xml", ".musicxml"),  # the 3 .krn files duplicate .mxl ones
        licence_note="Four-part chorale harmonisations by J. S. Bach (d. 1750): the compositions are in the public "
                     "domain. The MusicXML encodings ship with music21 under its corpus notice, which states "
                     "no restriction for this collection (it asks users to respect any licence embedded in a "
                     "piece and says works may not be free in every jurisdiction)."),
    Collection(
        name="essenFolksong", directory="essenFolksong", prefix="essen", description="folk song (Essen collection)",
        composer="traditional", program=0, licence="non-commercial", research_use="yes (non-commercial only)",
        commercial_use="no", licence_files=(_CORPUS_NOTICE, "music21/corpus/essenFolksong/license.txt"),
        licence_note="Essen folksong database (EsAC, H. Schaffrath / E. Dahlig-Turek), ABC by S. Schlien: "
                     "permission for NON-COMMERCIAL distribution and use in music21 only; the legal status of the "
                     "data is stated to be unclear. Do not use it to train models used or sold commercially."),
    Collection(
        name="oneills1850", directory="oneills1850", prefix="oneills", description="Irish tune (O'Neill's 1850)",
        composer="traditional", program=40, licence="unclear", research_use="yes",
        commercial_use="not cleared", licence_files=(_CORPUS_NOTICE,),
        licence_note="Tunes from O'Neill's 'Music of Ireland' (1903; the tunes are traditional and the book is in "
                     "the public domain), ABC transcriptions by Norbert Paap. No licence file covers the "
                     "transcriptions; music21's corpus notice warns that some encodings carry commercial "
                     "restrictions. Treat as research-only unless you clear the transcriptions yourself."),
)}
ALIASES = {"essen": "essenFolksong", "oneills": "oneills1850", "chorales": "bach"}


@dataclass
class CorpusReport:
    """What :func:`export_corpus` did."""

    out_dir: Path
    collection: str
    names: list[str] = field(default_factory=list)  # every item in the folder after this call
    written: list[str] = field(default_factory=list)  # items written by this call
    existing: list[str] = field(default_factory=list)  # items kept from an earlier call (resume)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"source", "reason"}
    splits: dict[str, list[str]] = field(default_factory=dict)
    seconds_elapsed: float = 0.0


def _music21() -> Any:
    try:
        import music21  # noqa: F401
        from music21 import corpus
    except ImportError as exc:
        raise CorpusError(f"the music21 corpus exporter needs music21 ({exc}); install it with "
                          "`pip install \"vidmusic[corpus]\"` (or `pip install \"music21>=9\"`)") from exc
    return corpus


def collection_info(collection: str) -> Collection:
    """The :class:`Collection` named ``collection`` (or one of its aliases)."""
    name = ALIASES.get(collection, collection)
    if name not in COLLECTIONS:
        raise CorpusError(f"unknown music21 collection {collection!r}; choose one of "
                          f"{', '.join(sorted(COLLECTIONS))} (aliases: {', '.join(sorted(ALIASES))})")
    return COLLECTIONS[name]


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", s).strip("_")


def list_works(collection: str) -> list[tuple[str, Optional[int], str]]:
    """``(corpus path, ABC tune number or None, item name)`` of every piece of ``collection``, sorted."""
    info = collection_info(collection)
    corpus = _music21()
    base = Path(corpus.__file__).parent  # music21/corpus
    folder = base / info.directory
    if not folder.is_dir():
        raise CorpusError(f"{folder} is missing: this music21 install has no {info.name!r} corpus folder "
                          f"(reinstall music21 from the full wheel: `pip install --force-reinstall \"music21>=9\"`)")
    works: list[tuple[str, Optional[int], str]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in info.extensions):
        rel = f"{info.directory}/{path.name}"
        if path.suffix.lower() != ".abc":
            name = f"{info.prefix}-{_safe(path.stem)}"
            if all(w[2] != name for w in works):  # one file per piece
                works.append((rel, None, name))
            continue
        seen: set[int] = set()
        for m in re.finditer(r"^X:\s*(\d+)", path.read_text(encoding="latin-1"), flags=re.M):
            x = int(m.group(1))
            if x not in seen:
                seen.add(x)
                works.append((rel, x, f"{info.prefix}-{_safe(path.stem)}-{x:04d}"))
    return works


def _hash_unit(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def hash_splits(names: list[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[str]]:
    """Stable split by a hash of each name (independent of the other names); when there are at least
    three names and valid or test is empty, the train name(s) with the highest hash move there."""
    split: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for n in names:
        u = _hash_unit(n)
        split["train" if u < fractions[0] else "valid" if u < fractions[0] + fractions[1] else "test"].append(n)
    for key in ("test", "valid"):
        if not split[key] and len(split["train"]) > 1 and len(names) >= 3:
            top = max(split["train"], key=_hash_unit)
            split["train"].remove(top)
            split[key].append(top)
    return {k: sorted(v) for k, v in split.items()}


def _dedupe_context(score: Any) -> Any:
    """Give every measure its own TimeSignature/KeySignature/Clef object (music21's ABC reader can share one
    between a pickup and the next bar, which its MIDI writer rejects)."""
    from music21 import clef, key, meter, stream

    seen: set[int] = set()
    for m in score.recurse().getElementsByClass(stream.Measure):
        for el in list(m.getElementsByClass((meter.TimeSignature, key.KeySignature, clef.Clef))):
            if id(el) in seen:
                m.replace(el, copy.deepcopy(el))
            seen.add(id(el))
    return score


def _strip_repeats(score: Any) -> Any:
    """Drop repeat barlines and repeat expressions (for scores whose repeats music21 cannot expand)."""
    from music21 import bar, repeat, spanner, stream

    for m in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = None
        for el in list(m.getElementsByClass(repeat.RepeatExpression)):
            m.remove(el)
    for sp in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        for site in list(sp.sites.get()):
            if hasattr(site, "remove"):
                try:
                    site.remove(sp)
                except Exception:  # noqa: BLE001 - not in that site's elements
                    pass
    return score


def _to_midi_bytes(score: Any) -> tuple[bytes, str]:
    """music21 score -> (MIDI bytes, how repeats were handled)."""
    from music21.midi.translate import streamToMidiFile
    from music21.repeat import ExpanderException

    note, deduped = "expanded", False
    while True:  # each repair at most once
        try:
            return bytes(streamToMidiFile(score).writestr()), note
        except ExpanderException:
            if note != "expanded":
                raise
            score, note = _strip_repeats(score), "ignored (music21 cannot expand them)"
        except Exception as exc:  # noqa: BLE001 - music21 raises StreamException for shared context objects
            if deduped or "already found" not in str(exc):
                raise
            score, deduped = _dedupe_context(score), True


def _prepare_score(data: bytes, program: int, seconds: Optional[float]) -> tuple[Any, float]:
    """MIDI bytes -> symusic Score on ``program`` (cut to ``seconds``) and its duration in seconds."""
    from symusic import Score

    from .attributes import tick_at

    sc = Score.from_midi(data)
    for tr in sc.tracks:
        if not tr.is_drum:
            tr.program = program
    if seconds is not None:
        end = tick_at(sc, seconds)
        sc = sc.clip(0, end, False)
        for tr in sc.tracks:
            for n in tr.notes:
                if n.time + n.duration > end:
                    n.duration = max(1, end - n.time)
    duration = float(sc.to("second").end())
    return sc, duration


def _truth(sc: Any, duration: float) -> dict[str, Any]:
    """Tempo, time signature, key (measured on the MIDI) and a nominal beat grid."""
    from .attributes import measure

    tpq = sc.ticks_per_quarter
    tempos = sorted(((int(t.time), float(t.qpm)) for t in sc.tempos), key=lambda x: x[0]) or [(0, DEFAULT_QPM)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, tempos[0][1]))
    tss = sorted(((int(t.time), int(t.numerator), int(t.denominator)) for t in sc.time_signatures))
    num, den = (tss[0][1], tss[0][2]) if tss else (4, 4)
    step = max(1, round(tpq * 4 / den))
    beats, tick = [], 0
    while (s := tick_seconds(tempos, tpq, tick)) < duration - 1e-6:
        beats.append(round(s, 6))
        tick += step
    m = measure(sc)
    key = None
    if m.key is not None:
        tonic, mode = m.key
        key = {"tonic": tonic, "tonic_name": PITCH_NAMES[tonic], "mode": mode, "name": f"{PITCH_NAMES[tonic]} {mode}"}
    return {"tempo_bpm": round(tempos[0][1], 3), "tempos_bpm": sorted({round(q, 3) for _, q in tempos}),
            "time_signature": [num, den], "beat_times": beats, "key": key, "programs": m.programs}


def _colour(key: Optional[dict[str, Any]], colour: str) -> tuple[int, int, int]:
    if colour == "black" or key is None:
        return (0, 0, 0)
    r, g, b = colorsys.hsv_to_rgb(key["tonic"] / 12.0, 0.8, 0.9 if key["mode"] == "major" else 0.45)
    return (int(r * 255), int(g * 255), int(b * 255))


def _write_json(path: Path, obj: dict[str, Any], only_if_changed: bool = False) -> bool:
    # one top-level key per line, values compact: readable and diff-friendly
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in obj.items()) + "\n}\n"
    if only_if_changed and path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def _title(score: Any, rel: str, number: Optional[int]) -> str:
    md = getattr(score, "metadata", None)
    for attr in ("title", "movementName"):
        v = getattr(md, attr, None) if md is not None else None
        if v and not str(v).lower().endswith((".mxl", ".xml", ".krn", ".abc")):
            return str(v).strip()
    stem = Path(rel).stem
    if stem.lower().startswith("bwv"):
        return "BWV " + stem[3:]
    return stem + (f" #{number}" if number is not None else "")


def _export_one(corpus: Any, info: Collection, rel: str, number: Optional[int], name: str, out: Path,
                seconds: Optional[float], program: int, fps: float, colour: str) -> dict[str, Any]:
    from vidmusic_core import write_video

    score = corpus.parse(rel, number=number) if number is not None else corpus.parse(rel)
    if hasattr(score, "scores"):  # an Opus: take its first score
        score = score.scores[0]
    has_tempo = bool(list(score.recurse().getElementsByClass("MetronomeMark")))
    data, repeats = _to_midi_bytes(score)
    sc, duration = _prepare_score(data, program, seconds)
    n_notes = sum(len(tr.notes) for tr in sc.tracks)
    if n_notes == 0 or duration <= 0:
        raise CorpusError("no notes after export")
    truth = _truth(sc, duration)
    with atomic_path(out / f"{name}.mid") as tmp:
        sc.dump_midi(str(tmp))
    n_frames = max(1, math.ceil(duration * fps - 1e-6))
    frames = np.zeros((n_frames, VIDEO_SIZE, VIDEO_SIZE, 3), np.uint8)
    frames[:] = _colour(truth["key"], colour)
    write_video(out / f"{name}.mp4", frames, fps)
    md = getattr(score, "metadata", None)
    title = _title(score, rel, number)
    composer = str(getattr(md, "composer", None) or info.composer)
    import pretty_midi

    inst = pretty_midi.program_to_instrument_name(program).lower()
    parts = len([tr for tr in sc.tracks if len(tr.notes)])
    key_txt = truth["key"]["name"] if truth["key"] else "no clear key"
    caption = (f"{info.description} '{title}' ({composer}): {parts} part{'s' if parts != 1 else ''} on {inst}, "
               f"{key_txt}, {truth['time_signature'][0]}/{truth['time_signature'][1]}, {truth['tempo_bpm']:g} BPM.")
    import music21

    meta = {
        "name": name, "generator": GENERATOR, "version": VERSION, "purpose": "symbolic LM pretraining "
        "(the video is constant and carries no information)",
        "files": {k: f"{name}.{k}" for k in ("mid", "mp4")},
        "source": {"corpus": "music21 core corpus", "music21": music21.__version__, "path": rel, "number": number,
                   "collection": info.name},
        "title": title, "composer": composer,
        "locale": str(getattr(md, "localeOfComposition", None) or "") or None,
        "licence": {"class": info.licence, "research_use": info.research_use, "commercial_use": info.commercial_use,
                    "files": list(info.licence_files), "note": info.licence_note},
        "duration": round(duration, 6), "cut_to_seconds": None if seconds is None else float(seconds),
        "tempo_source": "score" if has_tempo else f"default {DEFAULT_QPM:g} qpm", "repeats": repeats,
        "program": program, "n_notes": n_notes, **truth, "caption": caption,
        "video": {"fps": fps, "size": VIDEO_SIZE, "frames": n_frames, "rgb": list(_colour(truth["key"], colour))},
    }
    _write_json(out / f"{name}.json", meta)
    return meta


def export_corpus(out_dir: Union[str, Path], collection: str = "bach", n: Optional[int] = None,
                  seconds: Optional[float] = None, seed: int = 0, progress: bool = True,
                  program: Optional[int] = None, fps: float = 2.0, colour: str = "black") -> CorpusReport:
    """Export ``n`` pieces (all when None) of a music21 corpus ``collection`` into ``out_dir`` for
    ``vidmusic prepare`` (see the module doc). ``n`` pieces are picked in a ``seed``-shuffled order;
    pieces that fail to parse are skipped, reported, and replaced by the next ones. ``seconds`` cuts
    every piece (MIDI and video) to that length. ``program``: GM program of every part (default: the
    collection's). ``colour``: ``black`` or ``key`` (hue from the measured key; the video then carries
    the key). Resumable: items whose ``NAME.json`` exists are kept as they are."""
    info = collection_info(collection)
    corpus = _music21()
    if n is not None and n < 1:
        raise CorpusError(f"n must be at least 1, got {n}")
    if seconds is not None and not seconds > 0:
        raise CorpusError(f"seconds must be positive, got {seconds}")
    if colour not in ("black", "key"):
        raise CorpusError(f"colour must be 'black' or 'key', got {colour!r}")
    if not fps > 0:
        raise CorpusError(f"fps must be positive, got {fps}")
    prog = info.program if program is None else int(program)
    if not 0 <= prog <= 127:
        raise CorpusError(f"program must be a GM program 0-127, got {prog}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} exists and is not a directory; pass a new folder")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    works = list_works(info.name)
    if n is not None and n < len(works):
        order = np.random.default_rng(seed).permutation(len(works))
        works = [works[i] for i in order]
    want = len(works) if n is None else min(n, len(works))
    report = CorpusReport(out, info.name)
    bar = None
    if progress:
        from vidmusic_core import progress_bar

        bar = progress_bar(total=want, desc=f"corpus {info.name}", unit="piece")
    try:
        for rel, number, name in works:
            if len(report.names) >= want:
                break
            if (out / f"{name}.json").is_file():
                report.existing.append(name)
            else:
                try:
                    _export_one(corpus, info, rel, number, name, out, seconds, prog, fps, colour)
                except Exception as exc:  # noqa: BLE001 - a piece music21 cannot read or export is skipped
                    src = rel + (f" #{number}" if number is not None else "")
                    report.failed.append({"source": src, "reason": f"{type(exc).__name__}: {exc}"[:300]})
                    continue
                report.written.append(name)
            report.names.append(name)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    # items of earlier calls with other n/seed stay in the folder, so the summary lists every item there
    names = sorted({p.stem for p in out.glob(f"{info.prefix}-*.json")} | set(report.names))
    report.splits = hash_splits(names)
    _write_json(out / "splits.json", report.splits, only_if_changed=True)
    _write_json(out / "dataset.json", {
        "generator": GENERATOR, "version": VERSION,
        "purpose": "pretraining data for the symbolic LM (musecoco backbone, remi codec); every video is a "
                   "constant frame and carries no information",
        "collection": info.name, "description": info.description,
        "licence": {"class": info.licence, "research_use": info.research_use, "commercial_use": info.commercial_use,
                    "files": list(info.licence_files), "note": info.licence_note},
        "parameters": {"n": n, "seconds": seconds, "seed": seed, "program": prog, "fps": fps, "colour": colour,
                       "video_size": VIDEO_SIZE, "split_fractions": list(SPLIT_FRACTIONS)},
        "items": names, "split_sizes": {k: len(v) for k, v in report.splits.items()},
        "failed": report.failed,
    }, only_if_changed=True)
    report.seconds_elapsed = time.perf_counter() - start
    if not names:
        raise CorpusError(f"no piece of {info.name!r} could be exported to {out}: " +
                          "; ".join(f"{f['source']}: {f['reason']}" for f in report.failed[:3]))
    return report
