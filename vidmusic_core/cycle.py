"""The loop as a metric: music -> video -> music (``vidmusic cycle``, issue 22 item 4).

For each song: a visualizer renders its video (:func:`vidmusic_core.visualize.visualize`), a trained video->music
model writes new music for that video (:meth:`~vidmusic_core.model_dir.VidMusicPipeline.generate`), and the new
music is scored against the original with the registered metrics ``beat_f1``, ``tempo_acc``, ``key_acc`` and
``section_align``. The reference of a song is its own analysis (:func:`vidmusic_core.song.analyse_song`: beats,
tempo, key, section boundaries as cuts), so any song works, with or without ground truth. The control scores
each new music against another song's reference (song ``i`` against song ``i + 1``, cyclically): what a model
that ignores the video would get. A cycle-consistency score of both directions at once: a visualizer that loses
the rhythm, or a model that does not read it, brings the conditioned score down to the control.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ConfigError
from .song import SongAnalysis

METRICS = ("beat_f1", "tempo_acc", "key_acc", "section_align")
#: the score each metric's row is named by (the others are kept in the json)
HEADLINE = {"beat_f1": ("beat_f1", "onset_f1"), "tempo_acc": ("tempo_acc", "tempo_acc_octave"),
            "key_acc": ("key_acc", "key_mirex"), "section_align": ("section_f1",)}


def reference_of(song: SongAnalysis) -> dict[str, Any]:
    """A metric item's ``reference`` from a song's analysis."""
    return {"beats": [float(b) for b in song.beats], "tempo": float(song.tempo),
            "key": {"tonic": int(song.key[0]), "mode": song.key[1]},
            "cuts": [float(s.start) for s in song.sections[1:]]}


def cycle_scores(generated: Sequence[str | os.PathLike[str]], references: Sequence[Mapping[str, Any]],
                 metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """``{score: {"conditioned": x, "shuffled": y}}``: each generated wav against its own song's reference and
    against the next song's (cyclically; no ``shuffled`` with one song). Metrics that cannot score these items
    (e.g. ``section_align`` when no song has a section boundary) are left out."""
    from .audio import load_audio
    from .metrics import MetricError
    from .plugins import build

    if len(generated) != len(references) or not generated:
        raise ConfigError(f"cycle_scores: {len(generated)} generated file(s) for {len(references)} reference(s)")
    audio = [load_audio(p, 22050, allow_silent=True)[0] for p in generated]  # [L] each
    n = len(audio)
    out: dict[str, dict[str, float]] = {}
    for name in metrics:
        metric = build("metric", name)
        rows = {}
        for label, shift in (("conditioned", 0), ("shuffled", 1)):
            if label == "shuffled" and n < 2:
                continue
            items = [{"audio": audio[i], "sample_rate": 22050, "reference": dict(references[(i + shift) % n])}
                     for i in range(n)]
            try:
                rows[label] = metric.compute(items)
            except MetricError:
                rows = {}
                break
        for score in (rows.get("conditioned") or {}):
            out[score] = {label: float(r[score]) for label, r in rows.items()}
    return out


def cycle(model: Any, songs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
          visualizer: str = "reactive", overrides: Sequence[str] = (), size: int | Sequence[int] = 96,
          fps: float = 12.0, seconds: float | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run the loop for ``songs`` with ``model`` (a :class:`~vidmusic_core.model_dir.VidMusicPipeline`, or a path
    for :meth:`~vidmusic_core.model_dir.VidMusicPipeline.from_dir`); writes ``out_dir/video/<stem>.mp4`` (the
    visualizer's), ``out_dir/music/<stem>.wav`` (the model's) and ``out_dir/cycle.json``; returns that json."""
    from .model_dir import VidMusicPipeline
    from .visualize import visualize

    if not songs:
        raise ConfigError("cycle: give at least one song")
    pipe = model if isinstance(model, VidMusicPipeline) else VidMusicPipeline.from_dir(model, device="cpu")
    out = Path(out_dir)
    videos, refs = [], []
    for song in songs:
        res = visualize(song, out / "video" / f"{Path(song).stem}.mp4", visualizer=visualizer, overrides=overrides,
                        size=size, fps=fps, seed=seed, seconds=seconds, progress=progress)
        videos.append(res.mp4)
        refs.append(reference_of(res.song if seconds is None else _cut(res.song, res.seconds)))
    results = pipe.generate(videos, out / "music", seed=seed, progress=progress)
    failed = [f"{r.video}: {r.error}" for r in results if not r.ok]
    if failed:
        raise ConfigError("cycle: the model could not generate for " + "; ".join(failed))
    scores = cycle_scores([r.wav for r in results], refs)
    report = {"visualizer": visualizer, "overrides": list(overrides), "size": size if isinstance(size, int) else
              list(size), "fps": fps, "seed": seed, "model": str(pipe.source), "songs": [str(s) for s in songs],
              "references": refs, "scores": scores,
              "control": "each song's new music against the next song's reference (cyclic)"}
    (out / "cycle.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _cut(song: SongAnalysis, seconds: float) -> SongAnalysis:
    """The analysis limited to the first ``seconds`` (beats, cuts)."""
    import dataclasses

    keep = [s for s in song.sections if s.start < seconds] or song.sections[:1]
    return dataclasses.replace(song, duration=seconds, beats=song.beats[song.beats < seconds],
                               downbeats=song.downbeats[song.downbeats < seconds],
                               onsets=song.onsets[song.onsets < seconds], sections=keep)


def headline(scores: Mapping[str, Mapping[str, float]]) -> list[tuple[str, float, float | None]]:
    """``(score, conditioned, shuffled)`` rows of the headline scores present, in :data:`METRICS` order."""
    rows = []
    for metric in METRICS:
        for key in HEADLINE[metric]:
            if key in scores:
                rows.append((key, scores[key]["conditioned"], scores[key].get("shuffled")))
    return rows


__all__ = ["METRICS", "cycle", "cycle_scores", "headline", "reference_of"]
