"""``vidmusic run``: toy data → prepare → train → generate → eval → report, each stage skipped when
its outputs exist (a re-run resumes). Also the generate and eval stages on their own."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from .checkpoint import atomic_path
from .control import RESULTS_KEY as CONTROL_KEY, control_note, shuffled_sources
from .data.manifest import MANIFEST_NAME, Item, read_manifest
from .data.prepare import cache_root, data_root
from .clips import generate_clips, item_seed, sampling_from_settings
from .errors import VidmusicError
from .runs import load_trained, run_dir_for, toy_data_dir, with_data_root, write_run_files
from .types import SamplingConfig

STAGES = ("data", "prepare", "train", "generate", "eval", "report")


@dataclass
class RunReport:
    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def sampling_from(cfg: DictConfig) -> SamplingConfig:
    """The sampling settings of a run config's ``generate`` section."""
    return sampling_from_settings(cfg.generate)


def generate_options(cfg: DictConfig) -> dict[str, Any]:
    """The codec-specific generate settings of a run (symbolic ``attributes`` and ``max_tokens``)."""
    attributes = OmegaConf.to_container(cfg.generate.attributes) if cfg.generate.attributes else None
    return {"attributes": attributes, "max_tokens": cfg.generate.max_tokens}


def generate_samples(run_dir: Path, items: Sequence[Item], out_dir: Path, shuffle: bool = False,
                     batch_size: int = 8, progress: bool = True) -> list[Path]:
    """Generate music for ``items`` into ``out_dir`` (wav + muxed mp4 + json per item); existing items are
    skipped. ``shuffle``: each item is generated from another item's video (the control, see
    :func:`~vidmusic_core.control.shuffled_sources`); nothing is written for fewer than 2 items."""
    from .progress import progress_bar

    from .video import load_frames, mux_audio

    items = sorted(items, key=lambda it: it.name)
    sources = shuffled_sources(items) if shuffle else items
    if sources is None:  # under 2 clips: no control without pairing a clip with itself (results.json says so)
        return []
    cfg, model, codec = load_trained(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [(it, src) for it, src in zip(items, sources) if not (out_dir / f"{it.name}.json").is_file()]
    clip = float(cfg.data.clip_seconds)
    options = generate_options(cfg)
    written = []
    bar = progress_bar(total=len(todo), desc="generate" + (" (shuffled)" if shuffle else ""), unit="clip", disable=not progress)
    for s in range(0, len(todo), batch_size):
        chunk = todo[s:s + batch_size]
        frames = load_frames([src.video for _, src in chunk], model.encoder.frame_spec, 0.0, clip)
        with torch.inference_mode():
            cond = model.encoder(frames)
        secs = torch.tensor([min(it.duration, clip) for it, _ in chunk])
        seeds = [item_seed(cfg.generate.seed, it.name) for it, _ in chunk]
        music = generate_clips(model, codec, cond, secs, seeds, sampling_from(cfg), text=[src.text for _, src in chunk],
                               options=options, videos=[src.video for _, src in chunk])
        for b, (it, src) in enumerate(chunk):
            files = codec.write(music, b, float(secs[b]), out_dir, it.name)
            wav = out_dir / files["wav"]
            mux_audio(src.video, wav, out_dir / f"{it.name}.mp4")
            meta = {"item": it.name, "video": src.video, "shuffled_from": src.name if shuffle else None,
                    "seed": seeds[b], "seconds": float(secs[b]), "reference": it.name, **files}
            with atomic_path(out_dir / f"{it.name}.json") as tmp:
                tmp.write_text(json.dumps(meta, indent=1))
            written.append(wav)
            bar.update(1)
    bar.close()
    return written


def evaluate_run(run_dir: Path, items: Sequence[Item], metrics: Sequence[Any]) -> dict[str, Any]:
    """Score ``samples/`` and ``samples_shuffled/`` with the registered ``metrics`` (``eval.metrics`` entries:
    names, or ``{name, options}``); write ``results.json`` and ``bad_items.json``: an item whose generated
    sample or reference music cannot be read (in either folder) is skipped in both, with its reason."""
    from .bad_items import culprit, load_music, reason, write_bad_items
    from .config import metric_specs

    specs = metric_specs(metrics)
    items = sorted(items, key=lambda i: i.name)
    variants = [v for v in ("samples", "samples_shuffled") if (run_dir / v).is_dir()
                and not (v == "samples_shuffled" and shuffled_sources(items) is None)]
    entries: dict[str, dict[str, dict[str, Any]]] = {v: {} for v in variants}
    bad: list[dict[str, str]] = []
    for it in items:
        try:  # an unreadable file costs its item, not the evaluation
            reference = None if it.music_kind == "midi" else load_music(it.music)
            for variant in variants:
                entries[variant][it.name] = _sample_entry(run_dir / variant, it, reference)
        except Exception as exc:  # noqa: BLE001 - decoders raise anything on a broken file
            paths = [run_dir / v / f"{it.name}.wav" for v in variants]
            bad.append({"name": it.name, "path": str(culprit(exc, [it.music, *paths])), "reason": reason(exc)})
    names = [it.name for it in items if all(it.name in entries[v] for v in variants)]
    results: dict[str, Any] = {"metrics": {}, "protocols": {}, "n_items": len(names), "bad_items": bad}
    for variant in variants:
        batch = [entries[variant][n] for n in names]
        if not batch:
            continue
        for comp, options in specs:
            metric = comp.build(options)
            scores = metric.compute(batch)
            results["protocols"][comp.name] = metric.protocol()
            for key, value in scores.items():
                results["metrics"].setdefault(key, {})["conditioned" if variant == "samples" else "shuffled"] = value
    results[CONTROL_KEY] = control_note(len(items), run_dir / "samples", run_dir / "samples_shuffled")
    for key, v in results["metrics"].items():
        if "conditioned" in v and "shuffled" in v:
            v["delta"] = v["conditioned"] - v["shuffled"]
    write_bad_items(run_dir, bad)
    with atomic_path(run_dir / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    return results


def _sample_entry(folder: Path, it: Item, reference: Any) -> dict[str, Any]:
    """One metric input: the generated sample of ``it`` in ``folder`` with its video and reference."""
    from .bad_items import load_music

    meta_path = folder / f"{it.name}.json"
    if not meta_path.is_file():
        raise VidmusicError(f"no generated sample for {it.name} in {folder} (generation failed or was stopped)")
    meta = json.loads(meta_path.read_text())
    wav = folder / f"{it.name}.wav"
    entry = {"name": it.name, "audio": load_music(wav, allow_silent=True), "sample_rate": _wav_rate(wav),
             "video": meta["video"], "reference": it.meta, "reference_audio": reference}
    if meta.get("midi"):  # symbolic: metrics read the generated MIDI itself
        entry.update(midi=str(folder / meta["midi"]), attributes=meta.get("attributes"),
                     bar_density=meta.get("bar_density"),
                     reference_midi=it.midi or (it.music if it.music_kind == "midi" else None))
    return entry


def _wav_rate(path: Path) -> int:
    import soundfile as sf

    return int(sf.info(str(path)).samplerate)


def run(cfg: DictConfig, progress: bool = True, stages: Sequence[str] = STAGES) -> RunReport:
    """The whole loop for one config; every stage resumes or is skipped when its outputs exist."""
    from .data.prepare import prepare
    from .data.toy import make_toy_dataset
    from .training import latest_checkpoint, train

    if cfg.data.root is None:
        cfg = with_data_root(cfg, toy_data_dir(cfg))
    run_dir = run_dir_for(cfg)
    report = RunReport(run_dir)
    write_run_files(run_dir, cfg)

    def timed(stage: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        report.seconds[stage] = round(time.perf_counter() - t, 2)
        return out

    root = data_root(cfg)
    if "data" in stages:
        if (root / "dataset.json").is_file() or (root.is_dir() and any(root.glob("*.mp4"))):
            report.skipped.append("data")
        else:
            d = cfg.data
            timed("data", lambda: make_toy_dataset(root, n=d.toy_n, seconds=d.toy_seconds, seed=d.toy_seed,
                                                   progress=progress))
    if "prepare" in stages:
        timed("prepare", lambda: prepare(cfg, progress=progress))
    items = read_manifest(cache_root(cfg, root) / MANIFEST_NAME)
    if "train" in stages:
        ckpt = latest_checkpoint(run_dir)
        done = ckpt is not None and int(torch.load(ckpt / "train_state.pt", weights_only=True)["step"]) >= cfg.train.steps
        if done:
            report.skipped.append("train")
        else:
            from .data.prepare import load_codec

            timed("train", lambda: train(cfg, run_dir, load_codec(cfg, progress), resume=True, progress=progress))
    test = [it for it in items if it.split == "test"]
    if not test:
        raise VidmusicError(f"the data under {root} has no test split items")
    if "generate" in stages:
        timed("generate", lambda: (generate_samples(run_dir, test, run_dir / "samples", progress=progress),
                                   generate_samples(run_dir, test, run_dir / "samples_shuffled", shuffle=True,
                                                    progress=progress) if cfg.eval.shuffled_control else None))
    if "eval" in stages and cfg.eval.metrics:
        report.results = timed("eval", lambda: evaluate_run(run_dir, test, list(cfg.eval.metrics)))
    if "report" in stages:
        from .report import write_report

        timed("report", lambda: write_report(run_dir))
    with atomic_path(run_dir / "timings.json") as tmp:
        tmp.write_text(json.dumps({"seconds": report.seconds, "skipped": report.skipped}, indent=1))
    return report
