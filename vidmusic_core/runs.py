"""Run directories: naming, the files every run keeps, and loading a trained run back.

``<run.root>/<encoder>-<layout>-<backbone>-<hash>/``::

    config.yaml       the resolved run config (re-composable with ``-c``)
    env.json          versions, CPU/GPU, threads
    metrics.jsonl     training log
    checkpoints/last/ model.safetensors + train_state.pt (resume) and model/ (the model directory:
                      model_index.yaml + encoder/ layout/ backbone/ codec/, what generation loads)
    samples/          <item>.wav, <item>.mp4 (video + new soundtrack), <item>.json (seed, source)
    samples_shuffled/ the shuffled-video control (each clip generated from another clip's video)
    results.json      metric scores (conditioned, shuffled, delta) with their protocols
    report.html       the page a person opens
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from .checkpoint import atomic_path, load_component, load_state_strict, load_weights
from .devices import resolve_device
from .config import compose, config_hash, to_yaml
from .errors import ConfigError, VidmusicError


class RunError(VidmusicError):
    """A run directory that is missing pieces."""


def run_dir_for(cfg: DictConfig) -> Path:
    """Where the run of ``cfg`` lives (``run.name`` or components + hash)."""
    name = cfg.run.name or f"{cfg.encoder.name}-{cfg.layout.name}-{cfg.backbone.name}-{config_hash(cfg)}"
    return Path(cfg.run.root) / name


def toy_data_dir(cfg: DictConfig) -> Path:
    """Where ``run`` generates the toy dataset when ``data.root`` is unset (shared by all runs of a root)."""
    d = cfg.data
    return Path(cfg.run.root) / "data" / f"toy-n{d.toy_n}-s{d.toy_seconds:g}-seed{d.toy_seed}"


def with_data_root(cfg: DictConfig, root: Path) -> DictConfig:
    """A copy of ``cfg`` with ``data.root`` set (the config stays read-only)."""
    c = OmegaConf.to_container(cfg)
    assert isinstance(c, dict)
    c["data"]["root"] = str(root)
    out = OmegaConf.create(c)
    OmegaConf.set_struct(out, True)
    OmegaConf.set_readonly(out, True)
    return out


def env_info() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("vidmusic", "torch", "transformers", "numpy", "av", "pyarrow", "librosa", "symusic"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "versions": versions}


def write_run_files(run_dir: Path, cfg: DictConfig) -> None:
    """``config.yaml`` and ``env.json`` (atomic)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(to_yaml(cfg))
    with atomic_path(run_dir / "env.json") as tmp:
        tmp.write_text(json.dumps(env_info(), indent=1))


def load_run_config(run_dir: str | Path, generate_overrides: Sequence[str] = ()) -> DictConfig:
    """A run's ``config.yaml``, with ``generate.KEY=VALUE`` overrides (sampling settings only: anything else
    would not describe the trained model)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.yaml); start one with `vidmusic run`")
    bad = [o for o in generate_overrides if not o.startswith("generate.") or "=" not in o]
    if bad:
        raise ConfigError(f"{', '.join(bad)}: at generation only generate.KEY=VALUE settings can change (the rest "
                          "describes the trained model; train a new run to change it)")
    return compose(files=[path], overrides=list(generate_overrides))


def load_trained(run_dir: str | Path, device: str | None = None,
                 generate_overrides: Sequence[str] = ()) -> tuple[DictConfig, Any, Any]:
    """(config, model, codec) of a trained run on ``device`` (default: the run's ``run.device``);
    ``generate_overrides``: ``generate.KEY=VALUE`` settings to use instead of the run's. The model and codec
    come from the latest checkpoint's model directory (no data cache needed); a run trained before model
    directories existed is rebuilt from its config, weights and the codec in its data cache."""
    from .model_dir import MODEL_INDEX, VidMusicPipeline
    from .training import latest_checkpoint

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, generate_overrides)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise RunError(f"{run_dir} has no checkpoint; train it first (`vidmusic train` or `vidmusic run`)")
    device = str(resolve_device(device or str(cfg.run.device), "--device" if device else "run.device"))
    if (ckpt / "model" / MODEL_INDEX).is_file():
        pipe = VidMusicPipeline.from_dir(ckpt / "model", device=device)
        return cfg, pipe.model, pipe.codec
    return (cfg, *_load_legacy(run_dir, cfg, ckpt, device))  # before checkpoints held RUN_MODEL


def _load_legacy(run_dir: Path, cfg: DictConfig, ckpt: Path, device: str) -> tuple[Any, Any]:
    """Model and codec of a checkpoint without a model directory: config + weights + the data cache's codec."""
    from .data.prepare import cache_root, codec_store_dir, data_root
    from .model import build_model

    cdir, _ = codec_store_dir(cfg, cache_root(cfg, data_root(cfg)))
    codec = load_component(cdir / "codec", expected_kind="codec")
    model = build_model(cfg, codec)
    load_state_strict(model, load_weights(ckpt / "model.safetensors"), str(ckpt))
    if (ckpt / "ema.safetensors").is_file():  # train.ema > 0: generate with the averaged weights
        model.load_state_dict(load_weights(ckpt / "ema.safetensors"), strict=False)
    return model.to(device).eval(), codec.to(device).eval()
