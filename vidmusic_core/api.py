"""The small public API that the CLI, notebooks and scripts call (DESIGN §4)::

    from vidmusic_core import api
    cfg = api.compose(presets=["smoke"], sugar={"encoder": "clip"})
    report = api.run(cfg)                                   # the whole loop
    results = api.generate(report.run_dir, ["my.mp4"], "out/")  # music for your own videos
    model = api.load_model(report.run_dir)                    # or any model directory: vidmusic.load(DIR)
    scores = api.evaluate(report.run_dir)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from .config import compose
from .data.manifest import MANIFEST_NAME, read_manifest
from .data.prepare import cache_root, data_root, load_codec, prepare
from .pipeline import RunReport, evaluate_run, generate_options, run, sampling_from
from .runs import load_run_config, load_trained, run_dir_for, toy_data_dir, with_data_root, write_run_files
from .training import TrainResult
from .training import train as _train
from .model_dir import VidMusicPipeline
from .videos import GeneratedMusic, generate_with_model

__all__ = ["compose", "evaluate", "generate", "generate_with_model", "load", "load_model", "GeneratedMusic",
           "VidMusicPipeline", "prepare", "run", "train", "RunReport"]


def load(run_dir: str | Path, device: str | None = None) -> tuple[DictConfig, Any, Any]:
    """(config, model, codec) of a trained run (on ``device``, default the run's ``run.device``)."""
    return load_trained(run_dir, device)


def train(cfg: DictConfig, run_dir: str | Path | None = None, resume: bool = True, progress: bool = True,
          max_steps: int | None = None) -> TrainResult:
    """Train on the prepared data of ``cfg`` (run ``prepare`` first)."""
    if cfg.data.root is None:
        cfg = with_data_root(cfg, toy_data_dir(cfg))
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    write_run_files(run_dir, cfg)
    return _train(cfg, run_dir, load_codec(cfg, progress), resume=resume, progress=progress, max_steps=max_steps)


def load_model(path: str | Path, device: str | None = None) -> VidMusicPipeline:
    """The model in ``path`` (a model directory, a run or a checkpoint directory): ``vidmusic.load``."""
    return VidMusicPipeline.from_dir(path, device=device)


def generate(run_dir: str | Path, videos: Sequence[str | Path], out_dir: str | Path, text: Sequence[str] | None = None,
             seconds: float | None = None, seed: int | None = None, progress: bool = True,
             overrides: Sequence[str] = (), device: str | None = None) -> list[GeneratedMusic]:
    """Music for each video with a trained run: ``<out>/<stem>.wav``, ``<stem>.mp4`` (the video with the new
    soundtrack) and ``<stem>.json`` (seeds, settings). ``seconds`` defaults to the whole video; videos longer
    than ``generate.window_seconds`` (default ``data.clip_seconds``, the trained length) are generated in
    windows, each conditioned on its own frames, with ``generate.overlap_seconds`` of token prompt.
    ``overrides``: ``generate.KEY=VALUE`` settings instead of the run's (sampling, windows, attributes);
    ``device``: where to generate (default the run's ``run.device``). Returns one
    :class:`~vidmusic_core.videos.GeneratedMusic` per video (paths + metadata, or the error of a video that
    could not be used)."""
    cfg, model, codec = load_trained(run_dir, device=device, generate_overrides=overrides)
    return generate_with_model(model, codec, videos, out_dir, sampling=sampling_from(cfg),
                               seed=int(cfg.generate.seed if seed is None else seed),
                               window_seconds=float(cfg.generate.window_seconds or cfg.data.clip_seconds),
                               overlap_seconds=float(cfg.generate.overlap_seconds), text=text, seconds=seconds,
                               meta={"run": str(run_dir)}, progress=progress, **generate_options(cfg),
                               prompt_bars=int(cfg.generate.prompt_bars))


def evaluate(run_dir: str | Path, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a run's generated test samples (and the shuffled control) with the registered metrics."""
    cfg = load_run_config(run_dir)
    items = [it for it in read_manifest(cache_root(cfg, data_root(cfg)) / MANIFEST_NAME) if it.split == "test"]
    return evaluate_run(Path(run_dir), items, list(metrics or cfg.eval.metrics))
