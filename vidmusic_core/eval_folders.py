"""``vidmusic eval --videos DIR --music DIR``: score music that any system made for a folder of videos.

Pairs are matched by file stem (``clip01.mp4`` ↔ ``clip01.wav``; ``--reference`` adds reference music by
the same stem for ``fd_mel`` / ``fad`` / ``kad`` / ``bcs_bhs against=reference_audio``). Each video is
analysed once (:func:`~vidmusic_core.metrics.visual.analyse_video`: motion peaks, cuts, features) and the
registered metrics score every pair ("conditioned") and the **shuffled pairing** — each music file
against the video of the next pair by name, the same rotation as a run's shuffled-video control — so a
score that does not drop under the shuffle says the metric (or the music) ignores the video.

A pair whose video or music cannot be read (undecodable, truncated, NaN samples, a video that fails
mid-decode) is skipped: ``bad_items.json`` in ``out`` names it with the reason, the rest are scored.

Writes into ``out``: ``results.json`` (the run format: ``metrics.<key>.{conditioned, shuffled, delta}``,
``protocols``, ``n_items``, ``shuffled_control``, plus ``pairs``, ``skipped``, ``bad_items`` and ``inputs``),
``bad_items.json``,
``protocol.json`` (every metric's protocol and every judge with version, licence of its weights and
settings), ``table.md`` and ``report.html``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .bad_items import BAD_ITEMS, culprit as _culprit, load_music, reason as _reason, write_bad_items
from .checkpoint import atomic_path
from .control import RESULTS_KEY as CONTROL_KEY, shuffled_sources
from .errors import VidmusicError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
#: music files; a video file's audio track counts too (released samples often come as mp4 with the soundtrack)
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", *VIDEO_SUFFIXES)
#: metrics scored when none are given (all reference-free); ``fd_mel`` joins them with ``--reference``
DEFAULT_METRICS = ("visual_sync", "cut_downbeat", "event_corr", "beat_f1", "cut_hit", "bcs_bhs",
                   "seam_continuity")


class FolderEvalError(VidmusicError):
    """Folders that cannot be paired (missing, empty, unmatched or duplicate stems)."""


def _by_stem(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FolderEvalError(f"--{what} {folder} is not a directory")
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in suffixes:
            if f.stem in out:
                raise FolderEvalError(f"--{what} {folder}: two files share the stem {f.stem!r} "
                                      f"({out[f.stem].name}, {f.name}); keep one")
            out[f.stem] = f
    if not out:
        raise FolderEvalError(f"--{what} {folder} holds no {'/'.join(s[1:] for s in suffixes)} file")
    return out


def match_folders(videos: Path, music: Path, reference: Path | None = None
                  ) -> list[tuple[str, Path, Path, Path | None]]:
    """``(stem, video, music, reference or None)`` per pair, sorted by stem; unmatched stems are a
    :class:`FolderEvalError` listing them."""
    vids, mus = _by_stem(videos, VIDEO_SUFFIXES, "videos"), _by_stem(music, AUDIO_SUFFIXES, "music")
    refs = _by_stem(reference, AUDIO_SUFFIXES, "reference") if reference is not None else {}
    problems = []
    for label, names in (("videos without music", set(vids) - set(mus)), ("music without a video", set(mus) - set(vids)),
                         ("videos without reference music", (set(vids) - set(refs)) if reference is not None else set())):
        if names:
            problems.append(f"{label}: {', '.join(sorted(names)[:20])}{' ...' if len(names) > 20 else ''}")
    if problems:
        raise FolderEvalError("pairs are matched by file stem and some do not match — " + "; ".join(problems))
    return [(s, vids[s], mus[s], refs.get(s)) for s in sorted(vids)]


def _judges(protocols: dict[str, Any]) -> list[dict[str, Any]]:
    """Every judge named in the protocols, once: package, version, licence, the metrics that used it and
    its settings per metric."""
    seen: dict[str, dict[str, Any]] = {}
    for metric, proto in protocols.items():
        for j in proto.get("judges", []):
            entry = seen.setdefault(j["judge"], {**{k: v for k, v in j.items() if k != "settings"},
                                                 "metrics": [], "settings": {}})
            entry["metrics"].append(metric)
            entry["settings"][metric] = j.get("settings", {})
    return list(seen.values())


def evaluate_folders(videos: str | Path, music: str | Path, out: str | Path, reference: str | Path | None = None,
                     metrics: Sequence[Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score ``music`` against ``videos`` (and ``reference``) with ``metrics`` (``eval.metrics`` entries:
    names or ``{name, options}``; default :data:`DEFAULT_METRICS`); write the files listed in the module
    docstring into ``out`` and return the results."""
    from .config import metric_specs
    from .metrics import MetricError
    from .metrics.judges import MissingJudgeError, judge_manifest
    from .metrics.visual import analyse_video, visual_item_keys
    from .progress import progress_bar
    from .report import write_folder_report

    pairs = match_folders(Path(videos), Path(music), Path(reference) if reference is not None else None)
    entries = list(metrics) if metrics else [*DEFAULT_METRICS, *(("fd_mel",) if reference is not None else ())]
    specs = metric_specs(entries)  # a typo in a name or option fails before any decoding
    items, bad, good = [], [], []
    bar = progress_bar(total=len(pairs), desc="analyse", unit="pair", disable=not progress)
    for stem, video, wav, ref in pairs:
        try:  # an undecodable file costs its pair, not the evaluation
            audio = load_music(wav, allow_silent=True)
            item: dict[str, Any] = {"name": stem, "audio": audio, "sample_rate": _rate(wav), "video": str(video),
                                    "reference": {}, **visual_item_keys(analyse_video(video))}
            if ref is not None:
                item.update(reference_audio=load_music(ref), reference_sample_rate=_rate(ref))
        except Exception as exc:  # noqa: BLE001 - decoders raise anything on a broken file
            bad.append({"name": stem, "path": str(_culprit(exc, (video, wav, ref))), "reason": _reason(exc)})
        else:
            items.append(item)
            good.append((stem, video, wav, ref))
        bar.update(1)
    bar.close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_bad_items(out, bad)
    if not items:
        raise FolderEvalError(f"no pair could be read ({len(bad)} skipped: see {out / BAD_ITEMS})")
    pairs = good
    sources = shuffled_sources(items)
    shuffled = None if sources is None else [
        {**it, "video": src["video"], "shuffled_from": src["name"],
         **{k: v for k, v in src.items() if k.startswith("visual_")}} for it, src in zip(items, sources)]

    results: dict[str, Any] = {"mode": "folders", "metrics": {}, "protocols": {}, "skipped": {}, "n_items": len(items),
                               "bad_items": bad,
                               "inputs": {"videos": str(videos), "music": str(music),
                                          "reference": None if reference is None else str(reference)},
                               "pairs": [{"name": s, "video": v.name, "music": m.name,
                                          "reference": r.name if r else None} for s, v, m, r in pairs]}
    for comp, options in specs:
        metric = comp.build(options)
        for variant, batch in (("conditioned", items), ("shuffled", shuffled)):
            if batch is None:
                continue
            try:
                scores = metric.compute(batch)
            except MissingJudgeError:
                raise
            except MetricError as exc:  # e.g. no clip long enough for a window seam: said, not hidden
                results["skipped"][comp.name] = str(exc)
                break
            for key, value in scores.items():
                results["metrics"].setdefault(key, {})[variant] = float(value)
        if comp.name not in results["skipped"]:
            results["protocols"][comp.name] = metric.protocol()
    for v in results["metrics"].values():
        if "conditioned" in v and "shuffled" in v:
            v["delta"] = v["conditioned"] - v["shuffled"]
    results[CONTROL_KEY] = (f"not possible with {len(items)} pair" if sources is None else
                            "each music file scored against the video of the next pair (by name)")
    results["judges"] = _judges(results["protocols"])
    # every pair's visual_beats / visual_cuts (read by beat_f1, cut_hit, bcs_bhs, ...) come from this analysis
    results["visual_events"] = judge_manifest("motion", fps=30, size=32, features="8x8 RGB thumbnails")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    with atomic_path(out / "protocol.json") as tmp:
        tmp.write_text(json.dumps({"judges": results["judges"], "visual_events": results["visual_events"],
                                   "metrics": results["protocols"]}, indent=1, default=str))
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(results_table(results))
    write_folder_report(out, results)
    return results


def results_table(results: dict[str, Any]) -> str:
    """Markdown: one row per score (paired, shuffled pairing, difference), then the judges used."""
    fmt = (lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "–")  # noqa: E731
    lines = [f"{results['n_items']} pairs; shuffled pairing: {results.get(CONTROL_KEY)}", "",
             "| metric | paired | shuffled pairing | difference |", "|---|---|---|---|"]
    lines += [f"| {k} | {fmt(v.get('conditioned'))} | {fmt(v.get('shuffled'))} | {fmt(v.get('delta'))} |"
              for k, v in sorted(results["metrics"].items())]
    for name, why in sorted(results.get("skipped", {}).items()):
        lines.append(f"| {name} | skipped: {why} | | |")
    ve = results.get("visual_events")
    if ve:
        lines += ["", f"Visual events of every pair (the `visual_*` keys): {ve['judge']} ({ve['what']})."]
    lines += ["", "| judge | package | version | licence of weights | metrics |", "|---|---|---|---|---|"]
    lines += [f"| {j['judge']} | {j['package']} | {j['version']} | {j['licence']} | {', '.join(j['metrics'])} |"
              for j in results.get("judges", [])]
    return "\n".join(lines) + "\n"


def _rate(path: Path) -> int:
    """Sample rate of an audio file (soundfile, or PyAV for compressed containers)."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except RuntimeError:
        import av

        with av.open(str(path)) as c:
            return int(c.streams.audio[0].rate)
