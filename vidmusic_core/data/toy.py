"""The procedural toy dataset: paired clips in which the video carries the music (DESIGN §5).

``make_toy_dataset(out)`` writes, per clip ``toy_00042``: ``.mp4`` (video only, no audio track, so a
model cannot read the answer off the file), ``.wav`` (mono PCM-16), ``.mid`` and ``.json`` (ground
truth), plus ``splits.json`` and ``dataset.json``. The visual and musical rules are in
:mod:`.toy_video`, :mod:`.toy_music` and ``docs/toy-data.md``. Clip ``i`` of seed ``s`` depends only on
``(s, i)`` and the generation parameters (not on ``n`` or on the number of workers).
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_path
from ..errors import VidmusicError
from . import toy_music as tm
from . import toy_video as tv
from .toy_soundfont import bundled_soundfont, fixed_soundfont_path

GENERATOR = "vidmusic.toy"
VERSION = 1
AUDIO_KEY_TRIES = 10
RULES = [
    {"visual": "background hue (12 steps round the colour wheel, C = red)", "music": "key tonic"},
    {"visual": "background brightness (value 0.85 / 0.35)", "music": "mode (major / minor)"},
    {"visual": "centre disc flashes white and grows, peak at the beat; grows more on downbeats",
     "music": "every beat (kick + hi-hat; tempo and phase), downbeats (4/4)"},
    {"visual": "hard cut: the squares jump to a new layout and colour", "music": "section change: new chord "
     "progression, new harmony and lead programs, maybe a new density"},
    {"visual": "number of squares (2, 4, 6)", "music": "note density 1-3 (sparse, steady, busy)"},
    {"visual": "hue of the squares (their value: dark on major, bright on minor backgrounds)",
     "music": "lead program of the section"},
]


class ToyDataError(VidmusicError):
    """Invalid toy-dataset parameters or an output directory that cannot be written."""


@dataclass
class ToyDatasetSummary:
    """What :func:`make_toy_dataset` wrote."""

    out_dir: Path
    names: list[str]
    splits: dict[str, list[str]]
    seconds_elapsed: float
    parameters: dict = field(default_factory=dict)


def clip_name(index: int) -> str:
    return f"toy_{index:05d}"


def _check(n: int, seconds: float, size: int, fps: float, sample_rate: int, splits: tuple[float, ...]) -> None:
    problems = []
    if n < 1:
        problems.append(f"n must be >= 1, got {n}")
    if not 2.0 <= seconds <= 600.0:
        problems.append(f"seconds must be in [2, 600] (room for a few beats at 70 bpm), got {seconds}")
    if size < 32 or size % 2:
        problems.append(f"size must be an even number >= 32 (yuv420p video), got {size}")
    if not 4 <= fps <= 60:
        problems.append(f"fps must be in [4, 60], got {fps}")
    if not 8000 <= sample_rate <= 96000:
        problems.append(f"sample_rate must be in [8000, 96000], got {sample_rate}")
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        problems.append(f"splits must be 3 non-negative fractions (train, valid, test) summing to 1, got {splits}")
    if problems:
        raise ToyDataError("toy dataset: " + "; ".join(problems))


def split_names(names: list[str], fractions: tuple[float, ...], seed: int) -> dict[str, list[str]]:
    """Shuffle ``names`` with ``seed`` and cut train/valid/test (largest remainder; a positive fraction
    gets at least one clip when there are enough clips)."""
    n = len(names)
    counts = [int(np.floor(f * n)) for f in fractions]
    for i in sorted(range(3), key=lambda i: -(fractions[i] * n - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    for i in (1, 2):
        if fractions[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i], counts[0] = 1, counts[0] - 1
    order = list(np.random.default_rng([seed, 1 << 20]).permutation(n))
    shuffled = [names[i] for i in order]
    a, b = counts[0], counts[0] + counts[1]
    return {"train": sorted(shuffled[:a]), "valid": sorted(shuffled[a:b]), "test": sorted(shuffled[b:])}


def _write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        # one top-level key per line, values compact: readable and diff-friendly
        tmp.write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()) + "\n}\n")


def _caption(clip: tm.ClipMusic) -> str:
    import pretty_midi

    def inst(p: int) -> str:
        return pretty_midi.program_to_instrument_name(p).lower()

    pace = "slow" if clip.bpm < 90 else "moderate" if clip.bpm < 120 else "fast"
    mood = "bright" if clip.mode == "major" else "dark"
    parts = [f"{tm.DENSITY_NAMES[s.density]} {inst(s.programs['lead'])} over {inst(s.programs['harmony'])}"
             for s in clip.sections]
    return (f"A {pace} {mood} {clip.key_name} piece at {clip.bpm} BPM with drums and "
            f"{inst(clip.sections[0].programs['bass'])}: " + ", then ".join(parts) + ".")


def make_clip(out_dir: str | os.PathLike[str], index: int, seed: int, seconds: float, size: int, fps: float,
              sample_rate: int, soundfont: str | os.PathLike[str]) -> dict:
    """Write the four files of clip ``index`` and return its ground truth (the json content)."""
    import soundfile as sf

    out = Path(out_dir)
    name = clip_name(index)
    music_rng, video_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(2))
    for _ in range(AUDIO_KEY_TRIES):  # until a key finder on the audio chroma names the planned key
        clip = tm.plan_clip(music_rng, seconds)
        score = tm.to_score(clip)
        audio = tm.render(score, sample_rate, seconds, soundfont)
        audio_key_ok = tm.estimate_key(tm.audio_chroma(audio, sample_rate)) == (clip.tonic, clip.mode)
        if audio_key_ok:
            break
    with atomic_path(out / f"{name}.mid") as tmp:
        score.dump_midi(str(tmp))
    with atomic_path(out / f"{name}.wav") as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")
    layouts = [tv.layout(video_rng, size, 2 * s.density, s.programs["lead"], clip.mode) for s in clip.sections]
    frames = tv.render_frames(clip, layouts, size, fps)
    with atomic_path(out / f"{name}.mp4") as tmp:
        codec = tv.write_mp4(tmp, frames, fps)
    beats = clip.beat_times()
    r6 = lambda x: round(float(x), 6)  # noqa: E731
    sections = []
    for s, objects in zip(clip.sections, layouts):
        n_pitched = sum(1 for part in ("bass", "harmony", "lead") for t, *_ in clip.notes[part]
                        if s.start - 1e-9 <= t * clip.sec_per_tick < s.end - 1e-9)
        sections.append({
            "start": r6(s.start), "end": r6(s.end), "beats": s.end_beat - s.start_beat,
            "progression": list(s.progression),
            "chords": [tm.chord_symbol(clip.tonic, clip.mode, r) for r in s.progression],
            "programs": dict(s.programs), "density": s.density, "density_name": tm.DENSITY_NAMES[s.density],
            "notes_per_beat": r6(n_pitched / max(1, s.end_beat - s.start_beat)),
            "n_objects": len(objects), "objects": objects})
    truth = {
        "name": name, "generator": GENERATOR, "version": VERSION, "seed": seed, "index": index,
        "duration": r6(seconds), "files": {k: f"{name}.{k}" for k in ("mp4", "wav", "mid")},
        "tempo_bpm": r6(clip.tempo), "time_signature": [4, 4],
        "beat_times": [r6(t) for t in beats], "downbeat_times": [r6(t) for t in clip.downbeat_times()],
        "key": {"tonic": clip.tonic, "tonic_name": tm.NAMES[clip.tonic], "mode": clip.mode, "name": clip.key_name},
        "cut_times": [r6(s.start) for s in clip.sections[1:]],
        "cut_frames": [tv.first_frame(s.start, fps) for s in clip.sections[1:]],
        "sections": sections,
        "programs": sorted({p for s in clip.sections for p in s.programs.values()}),
        "drums": {"kick": tm.KICK, "snare": tm.SNARE, "hihat": tm.HAT},
        "chords": clip.chords,
        "caption": _caption(clip),
        "audio": {"sample_rate": sample_rate, "channels": 1, "samples": len(audio)},
        "video": {"fps": fps, "size": size, "frames": len(frames), "codec": codec,
                  "background_rgb": list(tv.background_rgb(clip.tonic, clip.mode)),
                  "pulser_box": tv.pulser_box(size)},
        "midi": {"tpq": tm.TPQ, "mspq": clip.mspq, "first_beat_tick": clip.first_beat_tick},
        "checks": {"key_from_audio": audio_key_ok},
    }
    _write_json(out / f"{name}.json", truth)
    return truth


def _clip_job(args: tuple) -> str:
    make_clip(*args)
    return clip_name(args[1])


def _workers(requested: int | None, n: int) -> int:
    if requested is not None:
        return max(1, min(requested, n))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n))


def _default_sigterm() -> None:
    """A forked worker must die on the SIGTERM of ``Pool.terminate``: under a parent that handles SIGTERM
    (submitit jobs log and ignore it) an inherited handler left ``terminate`` waiting forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def make_toy_dataset(out_dir: str | os.PathLike[str], n: int = 200, seconds: float = 8.0, seed: int = 0,
                     size: int = 96, fps: int = 12, sample_rate: int = 32000,
                     splits: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: bool = True,
                     workers: int | None = None) -> ToyDatasetSummary:
    """Generate ``n`` toy clips into ``out_dir`` with a process pool (``workers``: default one per
    usable CPU) and print the elapsed time. Same arguments -> identical .mid/.json/.wav files."""
    splits = tuple(float(f) for f in splits)  # type: ignore[assignment]
    _check(n, seconds, size, fps, sample_rate, splits)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ToyDataError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    soundfont = str(fixed_soundfont_path())
    jobs = [(str(out), i, seed, float(seconds), size, fps, sample_rate, soundfont) for i in range(n)]
    procs = _workers(workers, n)
    warm_up = np.sin(2 * np.pi * 440 * np.arange(4 * sample_rate) / sample_rate).astype(np.float32)
    tm.audio_chroma(warm_up, sample_rate)  # librosa's first call (1-2 s) once, before forking
    # the pool forks before tqdm starts its monitor thread
    pool = (get_context("fork" if hasattr(os, "fork") else "spawn").Pool(procs, initializer=_default_sigterm)
            if procs > 1 else None)
    bar = None
    try:
        if progress:
            from ..progress import progress_bar

            bar = progress_bar(total=n, desc="toy clips", unit="clip")
        done = (pool.imap_unordered(_clip_job, jobs, chunksize=max(1, min(8, n // (4 * procs))))
                if pool is not None else map(_clip_job, jobs))
        for _ in done:
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    names = [clip_name(i) for i in range(n)]
    split = split_names(names, splits, seed)
    _write_json(out / "splits.json", split)
    params = {"n": n, "seconds": float(seconds), "seed": seed, "size": size, "fps": fps,
              "sample_rate": sample_rate, "splits": list(splits)}
    _write_json(out / "dataset.json", {
        "generator": GENERATOR, "version": VERSION, "parameters": params, "rules": RULES,
        "tempo_range_bpm": list(tm.TEMPO_RANGE), "programs": {k: list(v) for k, v in tm.PROGRAMS.items()},
        "soundfont": {"file": bundled_soundfont().name, "source": "pretty_midi wheel",
                      "patch": "sample root keys set from the zones' overridingRootKey (see toy_soundfont.py)"},
        "renderer": "symusic Synthesizer (prestosynth), mono", "clips": names,
        "split_sizes": {k: len(v) for k, v in split.items()}})
    elapsed = time.perf_counter() - start
    print(f"toy dataset: {n} clips of {seconds:g} s in {elapsed:.1f} s ({procs} workers) -> {out}")
    return ToyDatasetSummary(out, names, split, elapsed, params)
