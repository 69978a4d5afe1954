"""``vidmusic import vidmuse PATH/state_dict.bin -o OUT``: the visual part of a VidMuse checkpoint -> ``lstv``.

Upstream format (ZeyueT/VidMuse, ``audiocraft/utils/export.py::export_lm``): a torch pickle
``{"best_state": LMModel.state_dict(), "xp.cfg": <Hydra config as YAML>, "version", "exported"}``.
``best_state`` holds the LM (``emb.*``, ``transformer.*``, ``linears.*`` …, left for the musicgen
backbone's importer) and the visual keys that we take: ``visual_encoder_model.*`` (the frozen CLIP,
saved by transformers 4 as ``visual_encoder_model.vision_model.*``, maybe with ``position_ids``),
``{local,global}_pos_embedding``, ``{local,global}_temporal_transformer.*``,
``multi_head_cross_attention.*``, ``visual_feature_proj.*``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from vidmusic_core import CheckpointError, ImportReport, save_component

from .encoder import LSTVConfig, LSTVEncoder

VISUAL_PREFIXES = ("visual_encoder_model.", "local_pos_embedding", "global_pos_embedding",
                   "local_temporal_transformer.", "global_temporal_transformer.",
                   "multi_head_cross_attention.", "visual_feature_proj.")
CLIP = "visual_encoder_model."


@dataclass
class VidmuseImportConfig:
    """Options of ``vidmusic import vidmuse`` (``key=value`` on the command line)."""

    n_global: Optional[int] = None  # None: xp.cfg video.add_global.num_frames (64 in upstream training; 32 at inference)
    clip_heads: Optional[int] = None  # CLIP heads are not in the shapes; None: width // 64 (12 for ViT-B/32)
    sampling: str = "vidmuse"  # frame sampling of the imported encoder ("vidmuse" = upstream)
    return_features: bool = False
    allow_partial: bool = False  # write the files even if keys are missing/unexpected/mis-shaped


def import_vidmuse(source: Path, out_dir: Path, cfg: Optional[VidmuseImportConfig] = None) -> ImportReport:
    """Read ``source`` (``state_dict.bin`` or its directory), write ``lstv`` weights + config to ``out_dir``."""
    cfg = cfg or VidmuseImportConfig()
    path = Path(source)
    if path.is_dir():
        path = path / "state_dict.bin"
    best, xp, pkg = _read_checkpoint(path)
    visual = {k: v for k, v in best.items() if k.startswith(VISUAL_PREFIXES)}
    lm_keys = sorted(k for k in best if not k.startswith(VISUAL_PREFIXES))
    if not visual:
        raise CheckpointError(f"{path}: best_state has no visual keys ({', '.join(VISUAL_PREFIXES)}); "
                              f"is this a VidMuse checkpoint and not a plain MusicGen one?")

    enc_cfg, notes = _encoder_config(path, xp, visual, cfg)
    model = LSTVEncoder(enc_cfg)
    state, dropped = _map_keys(visual, clip_prefix=_clip_prefix(model))
    own = model.state_dict()
    report = ImportReport(out_dir=Path(out_dir), notes=notes)
    report.missing = sorted(set(own) - set(state))
    report.unexpected = sorted(set(state) - set(own))
    report.shape_mismatches = sorted(f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
                                     for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if dropped:
        report.notes.append(f"ignored {len(dropped)} non-persistent buffers: {', '.join(dropped)}")
    if lm_keys:
        report.notes.append(f"left {len(lm_keys)} LM keys for the musicgen backbone importer "
                            f"(e.g. {', '.join(lm_keys[:4])})")
    report.notes.append(f"upstream version {pkg.get('version')!r}; heads={enc_cfg.heads}, out_dim={enc_cfg.out_dim}, "
                        f"clip={enc_cfg.clip_hidden}x{enc_cfg.clip_layers} layers/{enc_cfg.clip_heads} heads, "
                        f"fps={enc_cfg.fps}, n_global={enc_cfg.n_global}")
    if not report.ok and not cfg.allow_partial:
        report.notes.append(f"nothing written to {out_dir} because of the mismatches above "
                            f"(allow_partial=true writes the model anyway, with random weights where keys are missing)")
        return report
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    save_component(out_dir, model, "encoder", "lstv", enc_cfg)
    return report


# --------------------------------------------------------------------------------------------------
def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], Any, dict[str, Any]]:
    """``torch.load(weights_only=True)`` + format checks -> (best_state, parsed xp.cfg, package)."""
    if not path.is_file():
        raise CheckpointError(f"VidMuse checkpoint {path} does not exist (expected state_dict.bin)")
    try:
        pkg = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip), EOFError …
        raise CheckpointError(f"cannot read {path} as a VidMuse state_dict.bin with torch.load(weights_only=True): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        found = sorted(map(str, pkg)) if isinstance(pkg, dict) else type(pkg).__name__
        raise CheckpointError(f"{path} is not a VidMuse export: expected keys best_state and xp.cfg, found {found}")
    best = pkg["best_state"]
    if not isinstance(best, dict) or not all(isinstance(v, torch.Tensor) for v in best.values()):
        raise CheckpointError(f"{path}: best_state is not a dict of tensors")
    try:
        xp = OmegaConf.create(pkg["xp.cfg"]) if isinstance(pkg["xp.cfg"], str) else OmegaConf.create(dict(pkg["xp.cfg"]))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot parse xp.cfg as YAML: {exc}") from exc
    return best, xp, pkg


def _select(xp: Any, key: str, default: Any) -> Any:
    value = OmegaConf.select(xp, key, default=default, throw_on_resolution_failure=False)
    return default if value is None else value


def _encoder_config(path: Path, xp: Any, visual: dict[str, torch.Tensor],
                    opts: VidmuseImportConfig) -> tuple[LSTVConfig, list[str]]:
    """LSTV config from ``xp.cfg`` (heads, dims, frames) and the CLIP tensor shapes."""
    notes: list[str] = []
    encoder = _select(xp, "video.visual_encoder", "clip")
    if encoder != "clip":
        raise CheckpointError(f"{path}: xp.cfg video.visual_encoder={encoder!r}; only VidMuse's 'clip' is supported")
    if not _select(xp, "video.add_global.if_add_gobal", True):
        raise CheckpointError(f"{path}: xp.cfg video.add_global.if_add_gobal is false; VidMuse requires global frames")
    heads = _select(xp, "transformer_lm.num_heads", None)
    if heads is None:
        raise CheckpointError(f"{path}: xp.cfg has no transformer_lm.num_heads (the LSTV head count)")

    def shape(key: str) -> list[int]:
        for k in (f"{CLIP}vision_model.{key}", f"{CLIP}{key}"):
            if k in visual:
                return list(visual[k].shape)
        raise CheckpointError(f"{path}: best_state has no {CLIP}vision_model.{key}, cannot size the CLIP model")

    hidden = shape("embeddings.class_embedding")[0]
    patch = shape("embeddings.patch_embedding.weight")[-1]
    grid = math.isqrt(shape("embeddings.position_embedding.weight")[0] - 1)
    layers = 1 + max((int(m.group(1)) for k in visual
                      if k.startswith(CLIP) and (m := re.search(r"encoder\.layers\.(\d+)\.", k))), default=-1)
    clip_heads = opts.clip_heads or hidden // 64
    if hidden % clip_heads:
        raise CheckpointError(f"{path}: CLIP width {hidden} is not divisible by clip_heads={clip_heads}; "
                              f"pass the CLIP head count as clip_heads=N")
    proj = list(visual[f"{CLIP}visual_projection.weight"].shape)[0] if f"{CLIP}visual_projection.weight" in visual \
        else hidden
    n_global = opts.n_global or int(_select(xp, "video.add_global.num_frames", 32))
    if opts.n_global is None and n_global != 32:
        notes.append(f"n_global={n_global} from xp.cfg (training); upstream inference uses 32: pass n_global=32 to match it")
    cfg = LSTVConfig(
        fps=float(_select(xp, "video.video_fps", 2)), n_global=n_global, sampling=opts.sampling,
        clip_hidden=hidden, clip_layers=layers, clip_heads=clip_heads, clip_mlp=shape("encoder.layers.0.mlp.fc1.weight")[0],
        clip_image_size=grid * patch, clip_patch_size=patch, clip_projection_dim=proj,
        heads=int(heads), dim_head=int(_select(xp, "transformer_lm.dim_head", 64)),
        mlp_ratio=int(_select(xp, "transformer_lm.hidden_scale", 4)), depth=int(_select(xp, "transformer_lm.depth", 2)),
        out_dim=int(_select(xp, "transformer_lm.dim", 0)) or int(visual["visual_feature_proj.weight"].shape[0]),
        return_features=opts.return_features,
    )
    return cfg, notes


def _clip_prefix(model: LSTVEncoder) -> str:
    """Where our transformers version keeps the vision tower inside ``CLIPVisionModelWithProjection``."""
    return f"{CLIP}vision_model." if any(k.startswith(f"{CLIP}vision_model.") for k in model.state_dict()) else CLIP


def _map_keys(visual: dict[str, torch.Tensor], clip_prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Upstream visual keys -> ours. Returns (state, dropped buffer names).

    CLIP: transformers 4 saved ``visual_encoder_model.vision_model.<tower key>`` (+ persistent
    ``embeddings.position_ids``). transformers 5 keeps ``vision_model.`` inside
    ``CLIPVisionModelWithProjection`` but flattened ``CLIPVisionModel``; we map the tower keys explicitly
    onto whichever prefix our model has, and drop ``position_ids`` (a non-persistent buffer now).
    The LSTV keys are identical by construction.
    """
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in visual.items():
        if key.endswith("position_ids"):
            dropped.append(key)
            continue
        if key.startswith(CLIP) and not key.startswith(f"{CLIP}visual_projection."):
            tower = key[len(CLIP):]
            tower = tower[len("vision_model."):] if tower.startswith("vision_model.") else tower
            key = clip_prefix + tower
        state[key] = value
    return state, dropped
