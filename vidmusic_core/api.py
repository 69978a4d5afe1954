"""The small public API that the CLI, notebooks and scripts call (DESIGN §4)::

    from vidmusic_core import api
    cfg = api.compose(presets=["smoke"], sugar={"encoder": "clip"})
    report = api.run(cfg)                                   # the whole loop
    paths = api.generate(report.run_dir, ["my.mp4"], "out/")  # music for your own videos
    scores = api.evaluate(report.run_dir)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from .checkpoint import atomic_path
from .config import compose
from .data.manifest import MANIFEST_NAME, read_manifest
from .data.prepare import cache_root, data_root, load_codec, prepare
from .pipeline import RunReport, evaluate_run, item_seed, run, sampling_from
from .runs import load_run_config, load_trained, run_dir_for, toy_data_dir, with_data_root, write_run_files
from .training import TrainResult
from .training import train as _train

__all__ = ["compose", "evaluate", "generate", "generate_from_checkpoint", "load", "prepare", "run", "train",
           "RunReport"]


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


def generate(run_dir: str | Path, videos: Sequence[str | Path], out_dir: str | Path, text: Sequence[str] | None = None,
             seconds: float | None = None, seed: int | None = None) -> list[Path]:
    """Music for each video: ``<out>/<stem>.wav``, ``<stem>.mp4`` (the video with the new soundtrack) and
    ``<stem>.json`` (seeds, settings). ``seconds`` defaults to the whole video; videos longer than
    ``generate.window_seconds`` (default ``data.clip_seconds``, the trained length) are generated in
    windows, each conditioned on its own frames, with ``generate.overlap_seconds`` of token prompt."""
    from .audio import write_wav
    from .generation import generate_tokens
    from .video import load_frames, mux_audio, probe_video

    cfg, model, codec = load_trained(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    window = float(cfg.generate.window_seconds or cfg.data.clip_seconds)
    for i, video in enumerate(videos):
        video = Path(video)
        dur = probe_video(video).duration
        secs = dur if seconds is None else min(dur, float(seconds))
        s = item_seed(cfg.generate.seed if seed is None else seed, video.stem)
        wav = out / f"{video.stem}.wav"
        meta: dict[str, Any] = {"video": str(video), "seconds": secs, "run": str(run_dir),
                                "text": text[i] if text else None}
        if secs > window + 1e-6:  # long video: windows, each conditioned on its own frames
            from .longform import generate_long

            res = generate_long(model, codec, video, window, float(cfg.generate.overlap_seconds), seed=s,
                                sampling=sampling_from(cfg), text=text[i] if text else None, seconds=secs,
                                out_wav=wav)
            meta.update(seed=s, window_seeds=res.seeds, window_seconds=window,
                        overlap_seconds=float(cfg.generate.overlap_seconds))
        else:
            frames = load_frames([video], model.encoder.frame_spec, 0.0, secs)
            with torch.inference_mode():
                cond = model.encoder(frames)
            toks = generate_tokens(model.layout, model.backbone, cond, int(round(secs * codec.frame_rate)), [s],
                                   sampling_from(cfg), text=[text[i]] if text else None,
                                   seconds=torch.tensor([secs]), delays=codec.delays, frame_rate=codec.frame_rate)
            with torch.inference_mode():
                audio = codec.decode(toks)[0, :, : int(round(secs * codec.sample_rate))]
            write_wav(wav, audio.cpu().numpy(), codec.sample_rate)
            meta["seed"] = s
        mux_audio(video, wav, out / f"{video.stem}.mp4")
        with atomic_path(out / f"{video.stem}.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        written.append(Path(wav))
    return written


def generate_from_checkpoint(checkpoint: str | Path, videos: Sequence[str | Path], out_dir: str | Path,
                             text: Sequence[str] | None = None, seconds: float | None = None, seed: int = 0,
                             cfg_coef: float = 3.0, top_k: int = 350) -> list[Path]:
    """Text-to-music with an imported backbone directory (e.g. ``vidmusic import inspiremusic``) for each
    video: the video sets the length and receives the soundtrack; the music follows ``text``. The
    directory needs its codec as ``<checkpoint>/wavtokenizer/`` (InspireMusic's audio tokens).
    Sampling as upstream: top-k 350, CFG 3.0 against empty text, EOS banned before 0.9 x length."""
    from .audio import write_wav
    from .checkpoint import load_component
    from .errors import CheckpointError
    from .generation import SamplingConfig, generate_tokens
    from .layouts.prefix import PrefixLayout
    from .types import Condition
    from .video import mux_audio, probe_video

    ckpt = Path(checkpoint)
    if not (ckpt / "wavtokenizer" / "config.yaml").is_file():
        raise CheckpointError(
            f"{ckpt} has no wavtokenizer/ folder, so its tokens cannot be turned into sound. Import an "
            "InspireMusic model directory that contains wavtokenizer/ (config.yaml + model.pt): "
            "vidmusic import inspiremusic MODEL_DIR -o OUT")
    backbone = load_component(ckpt, expected_kind="backbone").eval()
    codec = load_component(ckpt / "wavtokenizer", expected_kind="codec").eval()
    if backbone.cardinality > codec.cardinality:
        raise CheckpointError(f"{ckpt}: the LM predicts {backbone.cardinality} audio codes but the codec has "
                              f"{codec.cardinality}")
    layout = PrefixLayout(PrefixLayout.Config(text_only=True, cond_dim=1, width=backbone.width,
                                              own_specials=not hasattr(backbone, "special")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, video in enumerate(videos):
        video = Path(video)
        secs = probe_video(video).duration if seconds is None else float(seconds)
        n = int(round(secs * codec.frame_rate))
        none = Condition(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1))
        s = item_seed(seed, video.stem)
        sampling = SamplingConfig(top_k=top_k, cfg_coef=cfg_coef, use_eos=True, min_frames=int(0.9 * n))
        toks = generate_tokens(layout, backbone, none, n, [s], sampling, text=[text[i] if text else ""],
                               seconds=torch.tensor([secs]), delays=codec.delays, frame_rate=codec.frame_rate)
        with torch.inference_mode():
            audio = codec.decode(toks)[0, :, : int(round(secs * codec.sample_rate))]
        wav = write_wav(out / f"{video.stem}.wav", audio.cpu().numpy(), codec.sample_rate)
        mux_audio(video, wav, out / f"{video.stem}.mp4")
        with atomic_path(out / f"{video.stem}.json") as tmp:
            tmp.write_text(json.dumps({"video": str(video), "checkpoint": str(ckpt), "seed": s, "seconds": secs,
                                       "text": text[i] if text else None, "frames": int(toks.mask.sum())}, indent=1))
        written.append(Path(wav))
    return written


def evaluate(run_dir: str | Path, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a run's generated test samples (and the shuffled control) with the registered metrics."""
    cfg = load_run_config(run_dir)
    items = [it for it in read_manifest(cache_root(cfg, data_root(cfg)) / MANIFEST_NAME) if it.split == "test"]
    return evaluate_run(Path(run_dir), items, list(metrics or cfg.eval.metrics))
