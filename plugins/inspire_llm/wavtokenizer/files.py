"""Reading an upstream WavTokenizer directory (``config.yaml`` + Lightning-style ``model.pt``), safely.

InspireMusic ships ``<model dir>/wavtokenizer/{config.yaml, model.pt}``; upstream loads them with
``WavTokenizer.from_pretrained_feat`` (``inspiremusic/wavtokenizer/decoder/pretrained.py``): the classes and
arguments come from ``model.init_args.{feature_extractor,backbone,head}`` of the yaml (``class_path`` +
``init_args``, Lightning CLI style), the weights from ``model.pt``'s ``state_dict`` keeping the keys
that start with ``feature_extractor.``, ``backbone.`` or ``head.``.

Here: the yaml is read as plain data (``yaml.safe_load``; nothing named in it is imported); the
checkpoint with ``torch.load(weights_only=True)`` (tensors and plain containers only). If a checkpoint
holds other objects, the error names them; ``allow_globals`` lets the user allow-list exactly those, for
files they trust. The encoder widths that upstream hard-codes in ``EncodecFeatures`` (``n_filters`` 32,
``dimension`` 512, 2 LSTM layers) are read off the checkpoint's shapes.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from vidmusic_core import CheckpointError, ConfigError

PREFIXES = ("feature_extractor.", "backbone.", "head.")
#: upstream keys that WavTokenizer never uses at inference (EnCodec's SEANet decoder): dropped by name
IGNORED_PREFIXES = ("feature_extractor.encodec.decoder.",)
SUPPORTED = {"feature_extractor": "EncodecFeatures", "backbone": "VocosBackbone", "head": "ISTFTHead"}
ENC = "feature_extractor.encodec.encoder.model."
VQ = "feature_extractor.encodec.quantizer.vq.layers."


def _is_wavtokenizer_config(path: Path) -> bool:
    """Upstream's yaml (``model:`` or ``feature_extractor:``) or ours for this codec (``kind: codec``)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and ("model" in doc or "feature_extractor" in doc or doc.get("kind") == "codec")


def find_wavtokenizer_dir(model_dir: str | Path, config_file: str = "config.yaml") -> Path:
    """The folder holding ``config_file``: ``model_dir`` itself, or its ``wavtokenizer/`` subfolder (an
    InspireMusic model directory). Raises :class:`CheckpointError` naming what is missing."""
    d = Path(model_dir).expanduser()
    if not d.is_dir():
        raise CheckpointError(f"codec.model_dir={str(model_dir)!r}: directory {d} does not exist. Point it at "
                              "InspireMusic's wavtokenizer/ folder (config.yaml + model.pt), e.g. "
                              "pretrained_models/InspireMusic-Base/wavtokenizer")
    sub = d / "wavtokenizer"
    if (d / config_file).is_file() and (_is_wavtokenizer_config(d / config_file) or not (sub / config_file).is_file()):
        return d
    if (sub / config_file).is_file():  # an InspireMusic model dir, or one written by `vidmusic import inspiremusic`
        return sub
    hint = (f"{d / 'wavtokenizer'} has no {config_file} either" if (d / "wavtokenizer").is_dir()
            else f"nor a wavtokenizer/ folder")
    raise CheckpointError(f"{d} has no {config_file} ({hint}); expected WavTokenizer's config.yaml + model.pt "
                          "as in InspireMusic-*/wavtokenizer/")


def read_upstream_config(path: Path) -> dict[str, dict[str, Any]]:
    """``{feature_extractor, backbone, head}`` -> their ``init_args`` (from ``model.init_args`` or the top level)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} is not a mapping")
    root = doc.get("model", {}).get("init_args", doc) if isinstance(doc.get("model"), dict) else doc
    out: dict[str, dict[str, Any]] = {}
    for part, cls in SUPPORTED.items():
        node = root.get(part) if isinstance(root, dict) else None
        if not isinstance(node, dict):
            raise CheckpointError(f"{path}: no model.init_args.{part} (class_path + init_args) section")
        class_path = str(node.get("class_path", ""))
        if class_path.rsplit(".", 1)[-1] != cls:
            raise CheckpointError(f"{path}: {part}.class_path is {class_path!r}; only {cls} is supported "
                                  f"(WavTokenizer = {', '.join(SUPPORTED.values())})")
        out[part] = dict(node.get("init_args") or {})
    return out


def _resolve_globals(names: Sequence[str]) -> list[Any]:
    objs = []
    for name in names:
        module, _, attr = str(name).rpartition(".")
        try:
            objs.append((getattr(importlib.import_module(module), attr), str(name)))
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"codec.allow_globals: cannot import {name!r} ({exc})") from exc
    return objs


def load_checkpoint(path: Path, allow_globals: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning-style checkpoint (or a bare state dict), ``weights_only=True``."""
    if not path.is_file():
        here = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise CheckpointError(f"{path} does not exist (codec.checkpoint_file); {path.parent} holds "
                              f"{', '.join(here) or 'nothing'}")
    try:
        with torch.serialization.safe_globals(_resolve_globals(allow_globals)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError …
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # noqa: BLE001 - not a zip checkpoint at all
            unsafe = []
        hint = (f" It holds objects other than tensors: {', '.join(unsafe)}. If you trust the file, allow "
                f"exactly these with codec.allow_globals=[{', '.join(unsafe)}]") if unsafe else ""
        raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): "
                              f"{str(exc).splitlines()[0]}.{hint}") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (expected a Lightning checkpoint with "
                              "'state_dict' or a plain state dict)")
    return dict(state)


def split_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(WavTokenizer's keys, ignored SEANet-decoder keys, other keys dropped as upstream does)."""
    keep, ignored, other = {}, [], []
    for k, v in state.items():
        if k.startswith(IGNORED_PREFIXES):
            ignored.append(k)
        elif k.startswith(PREFIXES):
            keep[k] = v
        else:
            other.append(k)
    return keep, sorted(ignored), sorted(other)


def arch_from_upstream(parts: Mapping[str, Mapping[str, Any]], state: Mapping[str, torch.Tensor],
                       where: str) -> dict[str, Any]:
    """Codec config fields from the yaml's ``init_args`` and, for what upstream hard-codes, the weights."""
    fe, bb, hd = parts["feature_extractor"], parts["backbone"], parts["head"]
    if str(fe.get("encodec_model", "encodec_24khz")) != "encodec_24khz":
        raise CheckpointError(f"{where}: feature_extractor.encodec_model {fe.get('encodec_model')!r} is not supported "
                              "(only encodec_24khz, as upstream)")
    first = f"{ENC}0.conv.conv.weight_v"
    conv_re = re.compile(re.escape(ENC) + r"(\d+)\.conv\.conv\.weight_v$")
    convs = sorted((int(m.group(1)), k) for k in state if (m := conv_re.match(k)))
    lstm = {int(m.group(1)) for k in state if (m := re.match(re.escape(ENC) + r"\d+\.lstm\.weight_ih_l(\d+)$", k))}
    if first not in state or not convs:
        raise CheckpointError(f"{where}: no {first} in the checkpoint; is this a WavTokenizer (EncodecFeatures) model?")
    arch = dict(
        sample_rate=24000,
        downsamples=[int(r) for r in fe.get("dowmsamples", [8, 5, 4, 2])],  # sic, upstream's spelling
        n_filters=int(state[first].shape[0]),
        dimension=int(state[convs[-1][1]].shape[0]),
        lstm_layers=(max(lstm) + 1) if lstm else 0,
        vq_bins=int(fe.get("vq_bins", 16384)),
        num_quantizers=int(fe.get("num_quantizers", 1)),
        backbone_dim=int(bb["dim"]),
        intermediate_dim=int(bb["intermediate_dim"]),
        num_layers=int(bb["num_layers"]),
        adanorm_num_embeddings=_opt(bb.get("adanorm_num_embeddings"), int),
        layer_scale_init_value=_opt(bb.get("layer_scale_init_value"), float),
        n_fft=int(hd["n_fft"]),
        hop_length=int(hd["hop_length"]),
        padding=str(hd.get("padding", "same")),
    )
    if int(bb["input_channels"]) != arch["dimension"]:
        raise CheckpointError(f"{where}: backbone.input_channels {bb['input_channels']} != encoder dimension "
                              f"{arch['dimension']} (from {convs[-1][1]})")
    if int(hd["dim"]) != arch["backbone_dim"]:
        raise CheckpointError(f"{where}: head.dim {hd['dim']} != backbone.dim {arch['backbone_dim']}")
    return arch


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def compare_keys(own: Mapping[str, torch.Tensor],
                 state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape mismatches), each sorted, by name."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    return missing, unexpected, shapes
