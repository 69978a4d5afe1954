"""One model directory for every model: ``model_index.yaml`` + one component folder each (the diffusers idea).

::

    MODEL_DIR/
      model_index.yaml   format, the component of each section (registered name + folder), generate settings
      encoder/           config.yaml + model.safetensors (save_component), the frozen part included
      layout/
      backbone/
      codec/             a fitted codec (e.g. rvq_mel's codebooks) travels with the model

Every path inside is relative, so a directory copied to another machine still loads, with no data cache and
no trainer. Training writes one into every checkpoint (``checkpoints/last/model/``, with the EMA weights when
``train.ema`` is on); :meth:`VidMusicPipeline.from_dir` is the loader (it also takes a run directory or a
checkpoint directory and finds the model inside).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf

from .devices import resolve_device
from .checkpoint import CONFIG_NAME, atomic_path, load_component, read_component_meta, save_component
from .errors import CheckpointError, ConfigError
from .model import VidMusicModel

MODEL_INDEX = "model_index.yaml"
FORMAT = "vidmusic-model/1"
SECTIONS = ("encoder", "layout", "backbone", "codec")
#: where a run directory keeps the model of its latest checkpoint
RUN_MODEL = Path("checkpoints") / "last" / "model"


def generate_settings(block: Mapping[str, Any] | None, overrides: Sequence[str] = (), where: str = "") -> Any:
    """The ``generate`` section (a read-only ``GenerateConfig`` DictConfig) from a stored ``block`` and
    ``generate.KEY=VALUE`` overrides; an unknown key is a :class:`ConfigError` listing the valid ones."""
    from .config import GenerateConfig

    valid = [f.name for f in dataclasses.fields(GenerateConfig)]
    values = dict(block or {})
    for o in overrides:
        key, sep, value = o.partition("=")
        if not key.startswith("generate.") or not sep:
            raise ConfigError(f"{o}: at generation only generate.KEY=VALUE settings can change (the rest describes "
                              "the trained model; train a new run to change it)")
        values[key[len("generate."):]] = yaml_value(value)
    bad = sorted(k for k in values if k not in valid)
    if bad:
        raise ConfigError(f"{where or 'generate'}: unknown generate setting(s) {', '.join(bad)}; valid keys: "
                          f"{', '.join(valid)}")
    try:
        out = OmegaConf.merge(OmegaConf.structured(GenerateConfig), values)
    except Exception as exc:  # omegaconf ValidationError: a wrong type
        raise ConfigError(f"{where or 'generate'}: {exc}") from exc
    OmegaConf.set_readonly(out, True)
    return out


def yaml_value(text: str) -> Any:
    """A command-line value as YAML reads it (``50`` -> 50, ``null`` -> None, ``{K1: 0}`` -> a dict)."""
    import yaml

    return yaml.safe_load(text) if text.strip() else text


class VidMusicPipeline:
    """A loaded model: ``encoder``, ``layout``, ``backbone``, ``codec`` and its ``generate`` settings.

    ``save(dir)`` writes a model directory; ``from_dir(dir)`` loads one; ``generate(videos, out_dir)`` makes
    music for videos of any length (see :func:`vidmusic_core.videos.generate_with_model`).
    """

    def __init__(self, model: VidMusicModel, codec: Any, names: Mapping[str, str], configs: Mapping[str, Any],
                 generate: Mapping[str, Any] | None = None, source: Path | None = None) -> None:
        self.model, self.codec = model, codec
        self.names, self.configs = dict(names), dict(configs)
        self.generate_block = dict(generate or {})
        self.source = source

    @property
    def encoder(self) -> Any:
        return self.model.encoder

    @property
    def layout(self) -> Any:
        return self.model.layout

    @property
    def backbone(self) -> Any:
        return self.model.backbone

    def to(self, device: str | torch.device) -> "VidMusicPipeline":
        self.model.to(device)
        self.codec.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- the directory ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
        """Write this model as a model directory (component folders first, ``model_index.yaml`` last)."""
        modules = {"encoder": self.model.encoder, "layout": self.model.layout, "backbone": self.model.backbone,
                   "codec": self.codec}
        return write_model_dir(out_dir, {k: m.state_dict() for k, m in modules.items()}, self.names, self.configs,
                               self.generate_block, provenance)

    @classmethod
    def from_dir(cls, path: str | Path, device: str | None = None) -> "VidMusicPipeline":
        """Load a model directory (or the model of a run directory's latest checkpoint, or of a checkpoint
        directory) onto ``device`` (default: CUDA when there is one, else CPU), in eval mode."""
        dev = resolve_device(device, "device")  # before any weights are read
        d = find_model_dir(path)
        index = read_index(d)
        parts, names, configs = {}, {}, {}
        for section in SECTIONS:
            entry = index["components"][section]
            sub = d / str(entry["path"])
            meta = read_component_meta(sub, expected_kind=section)
            parts[section] = load_component(sub, meta=meta)
            names[section] = str(entry["name"])
            configs[section] = meta.get("config")
        model = VidMusicModel(parts["encoder"], parts["layout"], parts["backbone"],
                              {k: names[k] for k in ("encoder", "layout", "backbone")}, {})
        model.backbone.check_codec(parts["codec"])
        pipe = cls(model, parts["codec"], names, configs, index.get("generate") or {}, source=d)
        pipe.model.eval()
        pipe.codec.eval()
        return pipe.to(dev)

    # -- generating ------------------------------------------------------------------------------
    def settings(self, overrides: Sequence[str] = ()) -> Any:
        """The stored generate settings with ``generate.KEY=VALUE`` overrides (see :func:`generate_settings`)."""
        where = f"{self.source / MODEL_INDEX}" if self.source is not None else "generate"
        return generate_settings(self.generate_block, overrides, where)

    def generate(self, videos: Sequence[str | Path], out_dir: str | Path, text: Sequence[str] | None = None,
                 seconds: float | None = None, seed: int | None = None, overrides: Sequence[str] = (),
                 progress: bool = True, meta: Mapping[str, Any] | None = None) -> list[Any]:
        """Music for each video (``<out>/<stem>.wav``, ``.mp4``, ``.json``; ``.mid`` for symbolic models) with
        this model's generate settings (``overrides``: ``generate.KEY=VALUE``). Returns one
        :class:`~vidmusic_core.videos.GeneratedMusic` per video."""
        from .clips import sampling_from_settings
        from .videos import generate_with_model

        g = self.settings(overrides)
        attributes = OmegaConf.to_container(g.attributes) if g.attributes else None
        if g.window_seconds is None:
            raise ConfigError(f"{self.source}: generate.window_seconds is unset in {MODEL_INDEX}; set it (the "
                              "length the model was trained on) or pass --set generate.window_seconds=S")
        return generate_with_model(self.model, self.codec, videos, out_dir, sampling=sampling_from_settings(g),
                                   seed=int(g.seed if seed is None else seed), window_seconds=float(g.window_seconds),
                                   overlap_seconds=float(g.overlap_seconds), text=text,
                                   seconds=g.seconds if seconds is None else seconds,
                                   meta={"model": str(self.source), **(meta or {})}, progress=progress,
                                   attributes=attributes, max_tokens=g.max_tokens, prompt_bars=int(g.prompt_bars))


def write_model_dir(out_dir: str | Path, states: Mapping[str, Mapping[str, torch.Tensor]], names: Mapping[str, str],
                    configs: Mapping[str, Any], generate: Mapping[str, Any],
                    provenance: Mapping[str, Any] | None = None) -> Path:
    """A model directory from each section's state dict, registered name and typed config; the index is
    written last, so a directory without ``model_index.yaml`` is never mistaken for a whole one."""
    out = Path(out_dir)
    for section in SECTIONS:
        save_component(out / section, dict(states[section]), section, names[section], configs[section])
    return write_model_index(out, names, generate, provenance)


def write_model_index(out_dir: str | Path, names: Mapping[str, str], generate: Mapping[str, Any],
                      provenance: Mapping[str, Any] | None = None, paths: Mapping[str, str] | None = None) -> Path:
    """``model_index.yaml`` of a directory whose component folders (``encoder/`` … ``codec/``, each written by
    ``save_component``; ``paths`` to name others, relative, e.g. ``"."`` for a component at the top) are in
    place: importers write their components, then this."""
    out = Path(out_dir)
    where = {s: str((paths or {}).get(s, s)) for s in SECTIONS}
    missing = [s for s in SECTIONS if not (out / where[s] / CONFIG_NAME).is_file()]
    if missing:
        raise CheckpointError(f"{out}: no component in {', '.join(where[s] + '/' for s in missing)}; write every "
                              "section before the index")
    generate_settings(generate, where=f"{out / MODEL_INDEX} generate")  # refuse unknown settings now, not at use
    index = {"format": FORMAT,
             "components": {s: {"name": names[s], "path": where[s]} for s in SECTIONS},
             "generate": dict(generate), **({"provenance": dict(provenance)} if provenance else {})}
    with atomic_path(out / MODEL_INDEX) as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(index)))
    return out


def find_model_dir(path: str | Path) -> Path:
    """``path`` if it holds ``model_index.yaml``; else its ``model/`` (a checkpoint) or ``checkpoints/last/model/``
    (a run directory); else a clear error."""
    p = Path(path)
    for d in (p, p / "model", p / RUN_MODEL, p / "checkpoints" / "last.old" / "model"):
        if (d / MODEL_INDEX).is_file():
            return d
    if (p / "config.yaml").is_file() and (p / "checkpoints").is_dir():
        raise CheckpointError(f"{p} is a run directory whose checkpoint has no model directory ({RUN_MODEL}/"
                              f"{MODEL_INDEX}): it was trained by an older vidmusic; `vidmusic generate RUN_DIR ...` "
                              "still reads it with its data cache")
    if (p / "vidmuse.yaml").is_file():
        raise CheckpointError(f"{p} is a VidMuse import without its audio codec (EnCodec 32 kHz), so it is no whole "
                              f"model directory (no {MODEL_INDEX}). Import it again with a local transformers EnCodec "
                              "directory (the save_pretrained layout of facebook/encodec_32khz): `vidmusic import "
                              f"vidmuse_full state_dict.bin -o {p} codec_dir=ENCODEC_DIR`. vidmusic never downloads.")
    if (p / "config.yaml").is_file():
        meta = OmegaConf.to_container(OmegaConf.load(p / "config.yaml"))
        if isinstance(meta, dict) and meta.get("kind"):
            raise CheckpointError(
                f"{p} holds one component (a {meta['kind']} {meta.get('name')!r}, as `vidmusic import` writes for a "
                f"part), not a whole model (no {MODEL_INDEX}): train with it (train.init_from={p}) or import a whole "
                "model (vidmuse_full with codec_dir=, inspiremusic with its wavtokenizer/, musecoco, musicgen of a "
                "directory with its EnCodec audio_encoder)")
    raise CheckpointError(f"{p} is not a model directory (no {MODEL_INDEX}); give a directory written by training "
                          f"(RUN_DIR or RUN_DIR/{RUN_MODEL}), by `vidmusic import` or by VidMusicPipeline.save")


def model_weights(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The weights of a model directory or of one component directory (``vidmusic import`` of a part), named as
    in ``VidMusicModel`` (``encoder.*``, ``layout.*``, ``backbone.*``; a codec has none there), for
    ``train.init_from``; ``None`` when ``path`` is neither."""
    from .checkpoint import WEIGHTS_NAME, load_weights

    p = Path(path)
    if (p / MODEL_INDEX).is_file():
        index = read_index(p)
        parts = {s: p / str(index["components"][s]["path"]) for s in ("encoder", "layout", "backbone")}
    elif (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file():
        meta = OmegaConf.to_container(OmegaConf.load(p / CONFIG_NAME))
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if kind not in ("encoder", "layout", "backbone"):
            return None
        parts = {str(kind): p}
    else:
        return None
    return {f"{s}.{k}": v for s, d in parts.items() for k, v in load_weights(d / WEIGHTS_NAME).items()}


def read_index(d: Path) -> dict[str, Any]:
    """``d/model_index.yaml`` checked: its format, and a component entry with ``name`` and ``path`` per section."""
    path = d / MODEL_INDEX
    try:
        index = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # noqa: BLE001 - OSError, yaml errors
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {index.get('format') if isinstance(index, dict) else None!r}, expected "
                              f"{FORMAT!r} (a model directory written by vidmusic)")
    comps = index.get("components") or {}
    missing = [s for s in SECTIONS if not isinstance(comps.get(s), dict) or not comps[s].get("path")]
    if missing:
        raise CheckpointError(f"{path}: no component entry for {', '.join(missing)}")
    for s in SECTIONS:
        sub = Path(str(comps[s]["path"]))
        if sub.is_absolute() or ".." in sub.parts:
            raise CheckpointError(f"{path}: components.{s}.path={str(sub)!r} must be a folder inside the model "
                                  "directory (relative, no '..'), so the directory can be moved")
        if not (d / sub / CONFIG_NAME).is_file():
            raise CheckpointError(f"{path}: components.{s} points at {d / sub}, which has no {CONFIG_NAME}; the "
                                  "directory is incomplete (copy it whole)")
    return index
