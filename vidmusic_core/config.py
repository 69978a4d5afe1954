"""Run configuration: omegaconf structured configs, presets, overrides, and the run hash.

A run config has component sections (``encoder``, ``layout``, ``backbone``, ``codec``) whose ``name``
picks a registered component; the rest of the section holds the fields of that component's config
dataclass. The other sections (``data``, ``train``, ``generate``, ``eval``, ``run``) are fixed dataclasses
below. Everything is checked in struct mode, so a typo is an error that lists the valid keys.

Composition order (later wins): the ``default`` preset, ``--preset`` files, ``-c`` YAML files, the
``--encoder``/``--layout``/``--backbone``/``--codec`` sugar, then ``key=value`` overrides. When a layer
changes a section's ``name``, the fields set by earlier layers for the previous component are dropped
(they belonged to another component).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .plugins import Component, Registry, get_registry

#: section name -> component kind
COMPONENT_SECTIONS = {"encoder": "encoder", "layout": "layout", "backbone": "backbone", "codec": "codec"}
NO_HASH = {"hash": False}  # dataclass field metadata: the field does not change results


@dataclass
class DataConfig:
    """Where the data lives and how clips are cut."""

    root: Optional[str] = None  # folder of (video, audio/MIDI) pairs; None = the toy dataset of the run
    cache_dir: Optional[str] = field(default=None, metadata=NO_HASH)  # feature cache; None = <root>/.cache
    clip_seconds: float = 8.0
    toy_n: int = 200
    toy_seconds: float = 8.0
    toy_seed: int = 0
    num_workers: int = field(default=0, metadata=NO_HASH)  # training reader processes, each owning row groups
    # the training order shuffles the cache's row groups and mixes the items of this many at a time (each row
    # group is then read about once an epoch); 0 = every item with every other (random reads: small caches)
    shuffle_groups: int = 8


@dataclass
class TrainConfig:
    """Optimisation settings."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 16  # examples per rank and micro-step (train.global_batch_size unset)
    # examples per optimizer step over all ranks and micro-steps: each rank takes global / (world size ×
    # grad_accum) of them (an error if that does not divide); the global batches depend on the step only,
    # so a run resumes under another world size with the same data. None = batch_size × world × grad_accum
    global_batch_size: Optional[int] = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    grad_accum: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast where the device supports it; CPU stays fp32)
    # the fraction of training examples whose video is replaced by the encoder's CFG null (e.g. 0.1), so that
    # generate.cfg_coef > 1 has a learned unconditional model to guide away from
    condition_dropout: float = 0.0
    ema: float = 0.0  # > 0: keep an exponential moving average of the weights (e.g. 0.999), used to generate
    compile: bool = field(default=False, metadata=NO_HASH)  # torch.compile the model for training
    fsdp: bool = field(default=False, metadata=NO_HASH)  # under torchrun: shard params/grads/optimizer (FSDP2)
    tensorboard: bool = field(default=False, metadata=NO_HASH)  # also log to <run>/tensorboard (pip install tensorboard)
    log_every: int = field(default=10, metadata=NO_HASH)
    ckpt_every: int = field(default=200, metadata=NO_HASH)
    # every ``eval_every`` steps: the loss on the ``valid`` split, and the same with each clip's video swapped
    # for another's (``val_loss_shuffled``), into metrics.jsonl. The gap between them is what the model takes
    # from *unseen* videos; a falling train loss with a flat gap is memorisation. 0 = off
    eval_every: int = field(default=0, metadata=NO_HASH)
    # warm start (a fresh run only; --resume wins): another run's directory or a checkpoint directory holding
    # model.safetensors (e.g. a symbolic LM pretrained on `vidmusic corpus` data). Tensors whose name and shape
    # match load; ``init_modules`` limits them to these top-level parts (encoder, layout, backbone; [] = all)
    init_from: Optional[str] = None
    init_modules: list[str] = field(default_factory=list)


@dataclass
class GenerateConfig:
    """Sampling settings."""

    seed: int = 0
    seconds: Optional[float] = None  # None = the video's duration
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    cfg_coef: float = 1.0
    prior_weight: float = 1.0  # the layout's clip prior (layout.clip_prior) added to the logits; 0 = off
    ras_window: int = 0  # repetition-aware sampling window (InspireMusic: 10); 0 = off
    ras_tau: float = 0.1
    eos: bool = False  # audio token LMs trained with an EOS: each row ends at it (InspireMusic)
    min_length: float = 0.0  # with eos: EOS banned before this fraction of the requested length (upstream 0.9)
    steps: int = 16  # ODE / diffusion backbones (e.g. flow): solver steps per generation
    # backbones with a structure embedding (InspireMusic): intro | verse | chorus | outro; None = layout.structure
    structure: Optional[str] = None
    window_seconds: Optional[float] = None  # long videos: window length (None = data.clip_seconds)
    overlap_seconds: float = 0.5  # audio-token prompt carried into the next window
    # symbolic codecs (no frame rate): token budget per clip; None = the attribute prefix + 100 per second
    max_tokens: Optional[int] = None
    # symbolic codecs with an attribute prefix: values to force, e.g. {T1s1: 2, K1: 0}; the rest come
    # from the model (predicted from the video)
    attributes: Optional[dict[str, Any]] = None
    # symbolic codecs, long videos: bars of the previous window that prompt the next one (0 = independent
    # windows); only `vidmusic generate` of videos past window_seconds reads it, so it is not hashed
    prompt_bars: int = field(default=1, metadata=NO_HASH)


@dataclass
class EvalConfig:
    """Which metrics to compute."""

    # metric names, or {name: NAME, options: {...}} to configure one (options of its config dataclass)
    metrics: list[Any] = field(default_factory=list)
    shuffled_control: bool = True


@dataclass
class RunSection:
    """Where outputs go and on which device (none of it changes results)."""

    root: str = field(default="runs", metadata=NO_HASH)
    name: Optional[str] = field(default=None, metadata=NO_HASH)
    device: str = field(default="cpu", metadata=NO_HASH)


FIXED_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "generate": GenerateConfig,
    "eval": EvalConfig,
    "run": RunSection,
}
SECTIONS = (*COMPONENT_SECTIONS, *FIXED_SECTIONS)


# --------------------------------------------------------------------------------------------------
# presets and layers
# --------------------------------------------------------------------------------------------------
@dataclass
class Preset:
    """A registered run preset (hook ``register_presets``): ``sections`` (run-config sections as a mapping, or
    the path of a YAML file holding them), ``default_for`` (a backbone name: applied after ``default``
    whenever that backbone is chosen), ``description`` (one line for ``vidmusic plugins``)."""

    sections: Any
    default_for: Optional[str] = None
    description: str = ""

    def load(self, where: str) -> DictConfig:
        if isinstance(self.sections, (str, Path)) or hasattr(self.sections, "read_text"):
            text = self.sections.read_text() if hasattr(self.sections, "read_text") else Path(self.sections).read_text()
            return _as_dict(OmegaConf.create(text), where)
        return _as_dict(OmegaConf.create(dict(self.sections)), where)


def shipped_preset(name: str) -> Preset:
    """A YAML preset of the core package (``vidmusic_core/presets/<name>.yaml``)."""
    return Preset(resources.files("vidmusic_core.presets") / f"{name}.yaml")


def _shipped_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vidmusic_core.presets").iterdir() if p.name.endswith(".yaml"))


def preset_names(registry: Registry | None = None) -> list[str]:
    """Registered presets (every plugin's ``register_presets``; the core's shipped YAML files always)."""
    return sorted({*(registry or get_registry()).names("preset"), *_shipped_names()})


def _preset(reg: Registry, name: str) -> Preset:
    preset = reg.get("preset", name).build()
    if not isinstance(preset, Preset):
        raise ConfigError(f"preset {name!r}: its factory returned {type(preset).__name__}, not a "
                          "vidmusic_core.config.Preset")
    return preset


def load_preset(name: str, registry: Registry | None = None) -> DictConfig:
    """A registered preset by name, or a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _load_yaml(path)
    reg = registry or get_registry()
    if name in reg.names("preset"):
        return _preset(reg, name).load(f"preset {name}")
    if name in _shipped_names():  # the core's own presets, also on a host without the core plugin
        return shipped_preset(name).load(f"preset {name}")
    raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names(reg))} (or a YAML file path)")


def backbone_presets(reg: Registry, backbone: str) -> list[str]:
    """The presets registered with ``default_for`` = ``backbone`` (its run choices), in name order."""
    name = reg.get("backbone", backbone).name
    return [p for p in reg.names("preset") if _preset(reg, p).default_for == name]


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return _as_dict(OmegaConf.load(path), str(path))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def _as_dict(cfg: Any, where: str) -> DictConfig:
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(cfg).__name__}")
    return cfg


def _dotlist(overrides: Sequence[str]) -> DictConfig:
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value (e.g. train.steps=100)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------------
def component_config(comp: Component, values: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate ``comp.config_cls`` from ``values`` with struct-mode checks (typos list valid keys)."""
    if comp.config_cls is None:
        if values:
            raise ConfigError(f"{where or comp.kind}: {comp.kind} {comp.name!r} takes no options, got {sorted(values)}")
        return None
    schema = OmegaConf.structured(comp.config_cls)
    valid = [f.name for f in dataclasses.fields(comp.config_cls)]
    for key in values:
        if key not in valid:
            raise ConfigError(_unknown_key_msg(f"{where}.{key}" if where else key, key, valid,
                                               f"{comp.kind} {comp.name!r} ({comp.config_cls.__qualname__})"))
    try:
        merged = OmegaConf.merge(schema, OmegaConf.create(dict(values)))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where or comp.kind}: {_omegaconf_msg(exc)}") from exc


def _unknown_key_msg(path: str, key: str, valid: Sequence[str], owner: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {path!r}: {key!r} is not a field of {owner}.{hint} Valid keys: {', '.join(valid)}."


def _omegaconf_msg(exc: OmegaConfBaseException) -> str:
    msg = str(exc).split("\n")[0]
    key = getattr(exc, "full_key", None)
    return f"{msg} (key {key})" if key else msg


def compose(
    *,
    presets: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    sugar: Mapping[str, str | None] | None = None,
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    base: str | None = "default",
) -> DictConfig:
    """Compose a run config and check it against the registered components' config dataclasses.

    Returns a read-only DictConfig with every section filled (component names canonicalised, aliases
    resolved). Raises :class:`ConfigError` on typos, wrong types, or unknown sections.
    """
    reg = registry or get_registry()
    layers: list[tuple[str, DictConfig]] = []
    if base:
        layers.append((f"preset {base}", load_preset(base, reg)))
    layers += [(f"preset {p}", load_preset(p, reg)) for p in presets]
    layers += [(str(f), _load_yaml(Path(f))) for f in files]
    sugar_layer = {s: {"name": v} for s, v in (sugar or {}).items() if v is not None}
    if sugar_layer:
        layers.append(("command-line options", OmegaConf.create(sugar_layer)))
    if overrides:
        layers.append(("overrides", _dotlist(overrides)))

    # 1. merge layers section by section; the chosen backbone's presets (``default_for``) go in right after
    #    the base preset, so they replace the embedded default's choices but nothing the user set
    merged, name_from = _merge_layers(layers, reg)
    backbone = merged["backbone"].get("name")
    own = backbone_presets(reg, str(backbone)) if backbone else []
    if own:
        at = 1 if base else 0
        layers[at:at] = [(f"preset {p} (backbone {backbone})", load_preset(p, reg)) for p in own
                         if f"preset {p}" not in {w for w, _ in layers}]
        merged, name_from = _merge_layers(layers, reg)
    _follow_backbone_layouts(merged, name_from, reg, layers)

    # 2. type-check each section
    out: dict[str, Any] = {}
    for section, kind in COMPONENT_SECTIONS.items():
        values = dict(merged[section])
        name = values.pop("name", None)
        if name is None:
            if values:
                raise ConfigError(f"{section}: options {sorted(values)} given but no {section}.name selects a component")
            out[section] = {"name": None}
            continue
        comp = reg.get(kind, str(name))
        cfg = component_config(comp, values, where=section)
        out[section] = {"name": comp.name, **(dataclasses.asdict(cfg) if cfg is not None else {})}
    for section, cls in FIXED_SECTIONS.items():
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in merged[section]:
            if key not in valid:
                raise ConfigError(_unknown_key_msg(f"{section}.{key}", key, valid, f"section {section!r}"))
        try:
            obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), merged[section]))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{section}: {_omegaconf_msg(exc)}") from exc
        out[section] = dataclasses.asdict(obj)
    metric_specs(out["eval"]["metrics"], reg)  # a typo in a metric or its options fails now, not after training
    cfg = OmegaConf.create(out)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _merge_layers(layers: Sequence[tuple[str, DictConfig]], reg: Registry
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Merge config layers section by section (untyped), resetting a component section when its name
    changes. Returns (merged sections, component section -> the layer that set its name)."""
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    name_from: dict[str, str] = {}  # component section -> the layer that set its name
    for where, layer in layers:
        raw = OmegaConf.to_container(layer, resolve=False)
        assert isinstance(raw, dict)
        for section, values in raw.items():
            if section not in merged:
                raise ConfigError(_unknown_key_msg(str(section), str(section), list(SECTIONS), f"the run config (in {where})"))
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: section {section!r} must be a mapping, got {values!r}")
            if section in COMPONENT_SECTIONS and "name" in values:
                new = values["name"]
                old = merged[section].get("name")
                if old is not None and (new is None or _canonical(reg, section, new) != _canonical(reg, section, old)):
                    merged[section] = {}  # another component (or none): the old one's options no longer apply
            merged[section] = _deep_merge(merged[section], values)
            if section in COMPONENT_SECTIONS and "name" in values:
                name_from[section] = where
    return merged, name_from


def _follow_backbone_layouts(merged: dict[str, dict[str, Any]], name_from: dict[str, str], reg: Registry,
                             layers: Sequence[tuple[str, DictConfig]] = ()) -> None:
    """A layout chosen only by a preset yields to the backbone: if the backbone does not support it,
    take the backbone's first supported layout (with its defaults, and the layout options the user set
    outside presets, e.g. ``layout.clip_prior=true``: those are never dropped silently; one the new layout
    lacks is then an error). A layout the user chose explicitly is kept (and an unsupported pairing is then
    an error when the model is built)."""
    layout, backbone = merged["layout"].get("name"), merged["backbone"].get("name")
    if layout is None or backbone is None or not name_from.get("layout", "").startswith("preset "):
        return
    supported = _backbone_class(reg, backbone).supported_layouts
    if supported and _canonical(reg, "layout", layout) not in supported:
        user: dict[str, Any] = {}
        for where, layer in layers:
            values = OmegaConf.to_container(layer, resolve=False).get("layout")  # type: ignore[union-attr]
            if not where.startswith("preset ") and isinstance(values, dict):
                user = _deep_merge(user, values)
        merged["layout"] = {**user, "name": supported[0]}


def _backbone_class(reg: Any, name: Any) -> Any:
    """The registered class of backbone ``name`` (a :class:`~vidmusic_core.components.MusicBackbone`)."""
    from .components import MusicBackbone

    factory = reg.get("backbone", str(name)).factory
    if not (isinstance(factory, type) and issubclass(factory, MusicBackbone)):
        raise ConfigError(f"backbone {name!r} is registered with {factory!r}, which is not a MusicBackbone subclass "
                          "(register the class itself: register(name, MyBackbone, MyBackbone.Config))")
    return factory


def _canonical(reg: Registry, section: str, name: Any) -> str:
    try:
        return reg.get(COMPONENT_SECTIONS[section], str(name)).name
    except KeyError:
        return str(name)


def _deep_merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def component_from_config(cfg: DictConfig, section: str, registry: Registry | None = None) -> tuple[Component, Any]:
    """The component selected by ``cfg[section]`` and its typed config instance."""
    reg = registry or get_registry()
    values = OmegaConf.to_container(cfg[section])
    assert isinstance(values, dict)
    name = values.pop("name", None)
    if name is None:
        raise ConfigError(f"no {section} selected: set {section}.name (e.g. --{section} NAME)")
    comp = reg.get(COMPONENT_SECTIONS[section], str(name))
    return comp, component_config(comp, values, where=section)


# --------------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------------
def _hash_relevant(cfg: DictConfig, registry: Registry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in SECTIONS:
        values = OmegaConf.to_container(cfg[section], resolve=True)
        assert isinstance(values, dict)
        if section in COMPONENT_SECTIONS:
            if values.get("name") is None:
                out[section] = None
                continue
            cls = registry.get(COMPONENT_SECTIONS[section], values["name"]).config_cls
        else:
            cls = FIXED_SECTIONS[section]
        skip = {f.name for f in dataclasses.fields(cls) if f.metadata.get("hash") is False} if cls else set()
        out[section] = {k: v for k, v in values.items() if k not in skip}
    return out


def config_hash(cfg: DictConfig, registry: Registry | None = None, length: int = 10) -> str:
    """A stable hash of the result-relevant fields (fields marked ``metadata={"hash": False}`` and the
    ``run`` section are left out). Key order, aliases and YAML formatting do not change it."""
    payload = json.dumps(_hash_relevant(cfg, registry or get_registry()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what ``vidmusic config`` prints and every run directory saves)."""
    return OmegaConf.to_yaml(cfg)


def metric_specs(entries: Sequence[Any], registry: Registry | None = None) -> list[tuple[Component, Any]]:
    """``eval.metrics`` entries -> (metric component, typed options) each: a name, or ``{name, options}``.
    Unknown metrics, keys or options are a :class:`ConfigError` naming the entry."""
    reg = registry or get_registry()
    out = []
    for i, entry in enumerate(entries):
        where = f"eval.metrics[{i}]"
        if isinstance(entry, str):
            name, options = entry, {}
        elif isinstance(entry, Mapping) or isinstance(entry, DictConfig):
            entry = dict(entry)
            extra = sorted(set(entry) - {"name", "options"})
            if "name" not in entry or extra:
                raise ConfigError(f"{where}: expected a metric name or {{name: NAME, options: {{...}}}}, got keys "
                                  f"{sorted(entry)}")
            name, options = str(entry["name"]), dict(entry.get("options") or {})
        else:
            raise ConfigError(f"{where}: expected a metric name or {{name, options}}, got {entry!r}")
        comp = reg.get("metric", name)
        out.append((comp, component_config(comp, options, where=f"{where}.options")))
    return out
