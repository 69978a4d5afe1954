"""The small public API that the CLI, notebooks and scripts call (DESIGN §4)::

    from vidmusic_core import api
    cfg = api.compose(presets=["smoke"], sugar={"encoder": "clip"})
    report = api.run(cfg)                                   # the whole loop
    results = api.generate(report.run_dir, ["my.mp4"], "out/")  # music for your own videos
    model = api.load_model(report.run_dir)                    # or any model directory: vidmusic.load(DIR)
    scores = api.evaluate(report.run_dir)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from .checkpoint import atomic_path
from .config import compose
from .data.manifest import MANIFEST_NAME, read_manifest
from .data.prepare import cache_root, data_root, load_codec, prepare
from .errors import CheckpointError, ConfigError
from .pipeline import RunReport, evaluate_run, generate_options, item_seed, run, sampling_from
from .runs import load_run_config, load_trained, run_dir_for, toy_data_dir, with_data_root, write_run_files
from .training import TrainResult
from .training import train as _train
from .types import SamplingConfig
from .model_dir import VidMusicPipeline
from .videos import GeneratedMusic, generate_with_model, write_video_outputs

__all__ = ["compose", "evaluate", "generate", "generate_from_checkpoint", "generate_with_model", "load", "load_model",
           "GeneratedMusic", "VidMusicPipeline",
           "load_vidmuse_checkpoint", "prepare", "run", "train", "RunReport"]

VIDMUSE_SETTINGS = "vidmuse.yaml"


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


def _default_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _find_codec_dir(ckpt: Path, settings: dict[str, Any], codec_dir: str | Path | None) -> Path:
    """The EnCodec directory: ``codec_dir``, else ``codec_dir:`` in vidmuse.yaml (relative to ``ckpt``), else
    ``<ckpt>/codec/``; a clear error when none is there."""
    ref = (settings.get("codec") or {}).get("pretrained", "an EnCodec model")
    if codec_dir is not None:
        where, d = "--codec-dir", Path(codec_dir)
    elif settings.get("codec_dir"):
        where, d = f"codec_dir in {ckpt / VIDMUSE_SETTINGS}", Path(str(settings["codec_dir"]))
        d = d if d.is_absolute() else ckpt / d
    elif (ckpt / "codec").is_dir():
        where, d = f"{ckpt}/codec/", ckpt / "codec"
    else:
        raise CheckpointError(
            f"{ckpt} is a VidMuse checkpoint whose audio codec ({ref}, see {VIDMUSE_SETTINGS}) is not included, so "
            "its tokens cannot be turned into sound. Give a local transformers EnCodec directory (the "
            f"save_pretrained layout, e.g. a copy of {ref}): `--codec-dir DIR`, `codec_dir: DIR` in "
            f"{ckpt / VIDMUSE_SETTINGS}, or put it at {ckpt / 'codec'}/. vidmusic never downloads.")
    if not (d / "config.json").is_file():
        raise CheckpointError(f"{where}: {d} is not a transformers EnCodec directory (no config.json); expected the "
                              f"save_pretrained layout of {ref} (config.json + model.safetensors)")
    return d


def load_vidmuse_checkpoint(checkpoint: str | Path, codec_dir: str | Path | None = None,
                            device: str | None = None) -> tuple[dict[str, Any], Any, Any]:
    """(settings of vidmuse.yaml, ``VidMusicModel``, ``encodec`` codec) of a directory written by
    ``vidmusic import vidmuse_full``; the codec directory is found as :func:`generate_from_checkpoint` says."""
    from omegaconf import OmegaConf

    from .checkpoint import CONFIG_NAME, load_component
    from .codecs.encodec import EncodecCodec
    from .model import VidMusicModel

    ckpt = Path(checkpoint)
    try:
        settings = OmegaConf.to_container(OmegaConf.load(ckpt / VIDMUSE_SETTINGS))
    except Exception as exc:  # noqa: BLE001 - OSError, yaml errors
        raise CheckpointError(f"cannot read {ckpt / VIDMUSE_SETTINGS}: {exc}") from exc
    if not isinstance(settings, dict):
        raise CheckpointError(f"{ckpt / VIDMUSE_SETTINGS} is not a mapping; re-import the checkpoint with "
                              "`vidmusic import vidmuse_full`")
    dirs = {"encoder": "encoder", "layout": "layout", "backbone": "backbone", **(settings.get("components") or {})}
    missing = [f"{ckpt / d}/" for d in dirs.values() if not (ckpt / d / CONFIG_NAME).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt} is incomplete: no component in {', '.join(missing)}; re-import it with "
                              "`vidmusic import vidmuse_full state_dict.bin -o DIR`")
    parts = {kind: load_component(ckpt / d, expected_kind=kind) for kind, d in dirs.items()}
    bb = parts["backbone"]
    delays = [int(x) for x in settings.get("delays") or range(bb.n_codebooks)]
    codec = EncodecCodec.for_codebooks(_find_codec_dir(ckpt, settings, codec_dir), bb.n_codebooks, delays)
    want_fr = float((settings.get("codec") or {}).get("frame_rate", codec.frame_rate))
    if (codec.n_codebooks, codec.cardinality) != (bb.n_codebooks, bb.cardinality) or codec.frame_rate != want_fr:
        raise CheckpointError(
            f"the EnCodec in {codec.cfg.weights} has {codec.n_codebooks} codebooks x {codec.cardinality} at "
            f"{codec.frame_rate:g} frames/s, but {ckpt / 'backbone'} predicts {bb.n_codebooks} x {bb.cardinality} at "
            f"{want_fr:g} frames/s; use the EnCodec the model was trained with")
    names = {kind: str(OmegaConf.load(ckpt / d / CONFIG_NAME).get("name", kind)) for kind, d in dirs.items()}
    model = VidMusicModel(parts["encoder"], parts["layout"], bb, names, {})
    dev = _default_device(device)
    return settings, model.to(dev).eval(), codec.to(dev).eval()


def generate_from_checkpoint(checkpoint: str | Path, videos: Sequence[str | Path], out_dir: str | Path,
                             text: Sequence[str] | None = None, seconds: float | None = None, seed: int = 0,
                             cfg_coef: float | None = None, top_k: int | None = None,
                             codec_dir: str | Path | None = None, device: str | None = None,
                             progress: bool = True) -> list[GeneratedMusic]:
    """Music for each video with an imported model directory; writes ``<stem>.wav``, ``.mp4``, ``.json``.

    * ``vidmusic import vidmuse_full`` output (``vidmuse.yaml`` + ``encoder/``, ``layout/``, ``backbone/``):
      video-to-music through the same path as :func:`generate` (windows of ``window_seconds`` with
      ``overlap_seconds`` of prompt from vidmuse.yaml), sampling from vidmuse.yaml (CFG 3.0 against the
      encoder's null condition, a black video; top-k 250). The codec is a local transformers EnCodec
      directory: ``codec_dir``, else ``codec_dir:`` in vidmuse.yaml, else ``<checkpoint>/codec/``.
    * ``vidmusic import inspiremusic`` output (a backbone with ``wavtokenizer/``): text-to-music; the video sets
      the length and receives the soundtrack. Sampling as upstream: top-k 350, CFG 3.0 against empty text,
      EOS banned before 0.9 x length.

    ``cfg_coef`` / ``top_k`` override the checkpoint's sampling settings."""
    ckpt = Path(checkpoint)
    if (ckpt / VIDMUSE_SETTINGS).is_file():
        if text:
            raise ConfigError(f"{ckpt} is a VidMuse model: it is conditioned on video only and takes no --text")
        settings, model, codec = load_vidmuse_checkpoint(ckpt, codec_dir, device)
        smp = {k: v for k, v in (settings.get("sampling") or {}).items()
               if k in {f.name for f in dataclasses.fields(SamplingConfig)}}
        smp.update({k: v for k, v in (("cfg_coef", cfg_coef), ("top_k", top_k)) if v is not None})
        return generate_with_model(model, codec, videos, out_dir, sampling=SamplingConfig(**smp), seed=seed,
                                   window_seconds=float(settings.get("window_seconds", 30.0)),
                                   overlap_seconds=float(settings.get("overlap_seconds", 0.5)), seconds=seconds,
                                   meta={"checkpoint": str(ckpt), "model": "vidmuse",
                                         "codec_dir": str(codec.cfg.weights)}, progress=progress)
    if codec_dir is not None:
        raise ConfigError(f"codec_dir / --codec-dir is for VidMuse checkpoints (with {VIDMUSE_SETTINGS}); {ckpt} has "
                          "none, and an InspireMusic directory carries its codec as wavtokenizer/")
    return _generate_inspire(ckpt, videos, out_dir, text, seconds, seed, 3.0 if cfg_coef is None else cfg_coef,
                             350 if top_k is None else top_k)


def _generate_inspire(ckpt: Path, videos: Sequence[str | Path], out_dir: str | Path, text: Sequence[str] | None,
                      seconds: float | None, seed: int, cfg_coef: float, top_k: int) -> list[GeneratedMusic]:
    """Text-to-music with an imported InspireMusic directory (see :func:`generate_from_checkpoint`)."""
    from .checkpoint import load_component
    from .layouts.prefix import PrefixLayout
    from .types import Condition, GenerationRequest
    from .video import probe_video

    if not (ckpt / "wavtokenizer" / "config.yaml").is_file():
        raise CheckpointError(
            f"{ckpt} has no wavtokenizer/ folder (an InspireMusic import) and no {VIDMUSE_SETTINGS} (a VidMuse "
            "import), so its tokens cannot be turned into sound. Import a VidMuse state_dict.bin "
            "(vidmusic import vidmuse_full state_dict.bin -o OUT) or an InspireMusic model directory that contains "
            "wavtokenizer/ (config.yaml + model.pt): vidmusic import inspiremusic MODEL_DIR -o OUT")
    backbone = load_component(ckpt, expected_kind="backbone").eval()
    codec = load_component(ckpt / "wavtokenizer", expected_kind="codec").eval()
    if backbone.cardinality > codec.cardinality:
        raise CheckpointError(f"{ckpt}: the LM predicts {backbone.cardinality} audio codes but the codec has "
                              f"{codec.cardinality}")
    layout = PrefixLayout(PrefixLayout.Config(text_only=True, cond_dim=1, width=backbone.width,
                                              own_specials=backbone.n_special_rows == 0))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, video in enumerate(videos):
        video = Path(video)
        secs = probe_video(video).duration if seconds is None else float(seconds)
        n = int(round(secs * codec.frame_rate))
        none = Condition(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1))
        s = item_seed(seed, video.stem)
        sampling = SamplingConfig(top_k=top_k, cfg_coef=cfg_coef, use_eos=True, min_frames=int(0.9 * n))
        request = GenerationRequest(none, n, [s], sampling, text=[text[i] if text else ""], seconds=torch.tensor([secs]))
        toks = backbone.generate(layout, request, codec)
        info = {"video": str(video), "checkpoint": str(ckpt), "seed": s, "seconds": secs,
                "text": text[i] if text else None, "sampling": dataclasses.asdict(sampling),
                **codec.write(toks, 0, secs, out, video.stem)}
        wav = out / info["wav"]
        write_video_outputs(video, wav, out, info)
        results.append(GeneratedMusic(video, wav, out / f"{video.stem}.mp4", out / f"{video.stem}.json", None, info))
    return results


def evaluate(run_dir: str | Path, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a run's generated test samples (and the shuffled control) with the registered metrics."""
    cfg = load_run_config(run_dir)
    items = [it for it in read_manifest(cache_root(cfg, data_root(cfg)) / MANIFEST_NAME) if it.split == "test"]
    return evaluate_run(Path(run_dir), items, list(metrics or cfg.eval.metrics))
