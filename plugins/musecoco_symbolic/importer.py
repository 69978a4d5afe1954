"""``vidmusic import musecoco CHECKPOINT -o OUT``: MuseCoco's fairseq checkpoint -> a ``musecoco`` backbone at the
top of ``OUT``, which is also an attribute-to-music model directory (``none`` encoder, ``musecoco_prompt`` layout,
``remi`` codec with the upstream vocabulary; :func:`_write_model_dir`).

Upstream (microsoft/muzic ``musecoco/2-attribute2music_model``) saves fairseq 0.10.2 checkpoints:
``{"args": argparse.Namespace, "model": state dict, "optimizer_history": [...], "extra_state": {...},
"last_optimizer_state": {...}}`` (the released ``attribute2music.pt`` holds the Adam state too, 14.5 GB).
It is read with ``torch.load(weights_only=True, mmap=True)``, allow-listing only ``argparse.Namespace``
(``allow_numpy_scalars=true`` adds numpy's scalar and dtype classes, for files whose training metrics are
numpy numbers); nothing else is unpickled, and the mapped file is not read into memory whole.

Sizes come from ``args`` (``decoder_layers``, ``decoder_embed_dim``, ``decoder_attention_heads``,
``decoder_ffn_embed_dim`` …; without args: from the tensor shapes, heads from the upstream preset of that
width); the layer order and the final LayerNorm are read separately (:func:`layer_norm_placement`).
Parameter names are kept (our module uses fairseq's); ``decoder.version`` and
``decoder.embed_positions._float_tensor`` are fairseq bookkeeping buffers and are dropped with a note. The
vocabulary is fairseq's ``dict.txt`` (``dict_file``, default: beside the checkpoint; absent: upstream's
dict, which our ``musecoco`` vocabulary reproduces): rows of ``embed_tokens``/``output_projection`` are
reordered to our ``musecoco`` ids; our symbols missing from the dict are reported as missing
``vocab:<symbol>``, dict symbols we do not have as unexpected.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from vidmusic_core import CheckpointError, ImportReport, get_component, save_component, write_model_index

from .backbone import PRESETS, MusecocoBackbone, MusecocoConfig
from .vocab import Vocab, musecoco_symbols

BOOKKEEPING = ("decoder.version", "decoder.embed_positions._float_tensor")
ROW_TABLES = ("decoder.embed_tokens.weight", "decoder.output_projection.weight")
HEADS_BY_WIDTH = {p[1]: p[2] for p in PRESETS.values()}


@dataclass
class MusecocoImportConfig:
    """Options of ``vidmusic import musecoco`` (``key=value``).

    ``dict_file``: fairseq ``dict.txt`` (None: ``dict.txt`` beside the checkpoint, else upstream's).
    ``dtype``: fp32 | bf16 | fp16 of the written weights. ``positions_from``: ``sep`` | ``last_attribute``
    (see the backbone). ``allow_numpy_scalars``: also allow-list numpy scalars/dtypes when unpickling.
    ``normalize_before``: the layer order (pre-LN true, post-LN false) for a checkpoint without
    ``args.decoder_normalize_before`` (None: args, else inferred, see :func:`layer_norm_placement`).
    """

    dict_file: Optional[str] = None
    dtype: str = "fp32"
    positions_from: str = "sep"
    allow_numpy_scalars: bool = False
    normalize_before: Optional[bool] = None


def _safe_globals(allow_numpy: bool) -> list[Any]:
    allowed: list[Any] = [argparse.Namespace]
    if allow_numpy:
        import numpy as np

        core = getattr(np, "_core", None) or np.core  # numpy 2 / 1
        allowed += [core.multiarray.scalar, np.dtype] + [type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "b1")]
    return allowed


def load_fairseq_checkpoint(path: Path, allow_numpy: bool = False) -> dict[str, Any]:
    """The checkpoint dict, read with ``weights_only=True`` (+ ``argparse.Namespace``), memory-mapped."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; expected MuseCoco's fairseq checkpoint (e.g. attribute2music.pt)")
    with torch.serialization.safe_globals(_safe_globals(allow_numpy)):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {exc}") from exc
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
        except Exception as exc:  # noqa: BLE001 - UnpicklingError names the global that is not allowed
            hint = (" If the global it names is a numpy scalar or dtype, pass allow_numpy_scalars=true."
                    if "numpy" in str(exc) else "")
            raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {exc}.{hint}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path} is not a fairseq checkpoint (a dict with a 'model' state dict)")
    return ckpt


def config_from(args: Any, state: dict[str, torch.Tensor], where: Path,
                normalize_before: Optional[bool] = None) -> tuple[MusecocoConfig, list[str]]:
    """Backbone sizes from fairseq ``args`` (or, without them, the tensor shapes); layer norms: see
    :func:`layer_norm_placement`."""
    notes = []
    get = (lambda k, d=None: getattr(args, k, d)) if args is not None else (lambda k, d=None: d)
    emb = state.get("decoder.embed_tokens.weight")
    if emb is None:
        raise CheckpointError(f"{where}: no decoder.embed_tokens.weight; not a fairseq LM checkpoint")
    V, D = emb.shape
    layers = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"decoder\.layers\.(\d+)\.", k))), default=-1)
    heads = get("decoder_attention_heads") or HEADS_BY_WIDTH.get(D)
    if heads is None:
        raise CheckpointError(f"{where}: no args and width {D} is not an upstream size; cannot tell the head count")
    ffn = get("decoder_ffn_embed_dim") or state["decoder.layers.0.fc1.weight"].shape[0]
    if args is None:
        notes.append(f"{where.name}: no fairseq args; sizes read from the tensor shapes (heads {heads} by width)")
    pre, final = layer_norm_placement(args, state, where, notes, normalize_before)
    cfg = MusecocoConfig(
        size="tiny", layers=layers, width=D, heads=int(heads), ffn=int(ffn), vocab="musecoco",
        dropout=float(get("dropout", 0.1) or 0.0), activation_dropout=float(get("activation_dropout", 0.0) or 0.0),
        normalize_before=pre, final_norm=final, learned_pos=bool(get("decoder_learned_pos", False)),
        share_input_output_embed=bool(get("share_decoder_input_output_embed", False)),
        no_scale_embedding=bool(get("no_scale_embedding", False)))
    if (get("activation_fn") or "gelu") != "gelu":
        notes.append(f"args.activation_fn={get('activation_fn')!r}; this backbone uses gelu")
    if get("arch"):
        notes.append(f"fairseq arch {get('arch')}: {layers} layers, width {D}, {heads} heads, FFN {ffn}, vocabulary {V}, "
                     f"{'pre' if pre else 'post'}-LN, {'a' if final else 'no'} final LayerNorm")
    return cfg, notes


def layer_norm_placement(args: Any, state: dict[str, torch.Tensor], where: Path, notes: list[str],
                         normalize_before: Optional[bool] = None) -> tuple[bool, bool]:
    """(pre-LN layers, final LayerNorm) of a fairseq decoder: two settings, read separately.

    fairseq (``TransformerDecoder.__init__``; MuseCoco's ``linear/transformer.py`` L110) orders every layer by
    ``decoder_normalize_before`` and builds ``decoder.layer_norm`` only when ``decoder_normalize_before and not
    no_decoder_final_norm``; its forward applies that norm whenever it exists. So the final norm is whatever the
    weights hold (a ``decoder.version`` <= 2 checkpoint has it dropped, as fairseq's
    ``upgrade_state_dict_named`` does) and the layer order is ``args.decoder_normalize_before``. Without args
    (or the option ``normalize_before``, which wins) the order is inferred: a final norm means pre-LN (only
    pre-LN builds one); none means post-LN (fairseq's ``transformer_lm`` default), with a note, as a pre-LN
    model trained with ``no_decoder_final_norm`` looks the same.
    """
    final = "decoder.layer_norm.weight" in state
    version = state.get("decoder.version")
    if final and version is not None and float(version.flatten()[0]) <= 2:
        for k in ("decoder.layer_norm.weight", "decoder.layer_norm.bias"):
            state.pop(k, None)
        final = False
        notes.append(f"{where.name}: decoder.version {float(version.flatten()[0]):g} <= 2: fairseq drops the final "
                     "LayerNorm of such checkpoints (upgrade_state_dict_named), and so do we")
    nb = getattr(args, "decoder_normalize_before", None) if args is not None else None
    if normalize_before is not None:
        pre = bool(normalize_before)
        if nb is not None and bool(nb) != pre:
            notes.append(f"option normalize_before={pre} overrides args.decoder_normalize_before={nb}")
    elif nb is not None:
        pre = bool(nb)
    else:
        pre = final
        notes.append(f"{where.name}: no decoder_normalize_before in the checkpoint: {'pre' if pre else 'post'}-LN "
                     f"layers inferred from the {'presence' if final else 'absence'} of decoder.layer_norm"
                     + ("" if final else " (a pre-LN model trained with no_decoder_final_norm looks the same: "
                        "pass normalize_before=true for it)"))
    if nb is not None:
        built = bool(nb) and not bool(getattr(args, "no_decoder_final_norm", False))
        if built != final:
            notes.append(f"args (decoder_normalize_before={nb}, no_decoder_final_norm="
                         f"{getattr(args, 'no_decoder_final_norm', False)}) say {'a' if built else 'no'} final "
                         f"LayerNorm but the weights hold {'one' if final else 'none'}; following the weights")
    return pre, final


def import_musecoco(source: Path, out_dir: Path, cfg: Optional[MusecocoImportConfig] = None) -> ImportReport:
    """Convert a MuseCoco attribute-to-music checkpoint into a ``musecoco`` backbone and a model directory."""
    cfg = cfg or MusecocoImportConfig()
    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        found = sorted(source.glob("*.pt"))
        if len(found) != 1:
            raise CheckpointError(f"{source} holds {len(found)} .pt files; pass the checkpoint file itself")
        source = found[0]
    report = ImportReport(out_dir=out_dir)
    ckpt = load_fairseq_checkpoint(source, cfg.allow_numpy_scalars)
    state = dict(ckpt["model"])
    bcfg, notes = config_from(ckpt.get("args"), state, source, cfg.normalize_before)  # reads decoder.version
    for k in BOOKKEEPING:
        if state.pop(k, None) is not None:
            report.notes.append(f"dropped fairseq buffer {k}")
    report.notes += notes
    bcfg.positions_from, bcfg.dtype = cfg.positions_from, cfg.dtype

    # vocabulary: dict.txt rows -> our musecoco ids
    dict_path = Path(cfg.dict_file) if cfg.dict_file else source.parent / "dict.txt"
    if dict_path.is_file():
        theirs = Vocab.from_dict_txt(dict_path)
    elif cfg.dict_file:
        raise CheckpointError(f"dict_file={cfg.dict_file!r} does not exist")
    else:
        theirs = Vocab(musecoco_symbols())
        report.notes.append(f"no dict.txt beside {source.name}: assuming upstream's dict.txt (1253 ids)")
    ours = Vocab(musecoco_symbols())
    V = state["decoder.embed_tokens.weight"].shape[0]
    if V < len(theirs):
        report.shape_mismatches.append(f"decoder.embed_tokens.weight has {V} rows but {dict_path.name} has {len(theirs)} ids")
    if V > len(theirs):
        report.notes.append(f"{V - len(theirs)} embedding rows beyond the dictionary (fairseq padding) dropped")
    report.missing += [f"vocab:{s}" for s in ours.symbols if s not in theirs]
    report.unexpected += [f"vocab:{s}" for s in theirs.symbols if s not in ours]
    if theirs.symbols != ours.symbols and not report.missing:
        report.notes.append(f"{dict_path.name} orders the symbols differently: embedding rows reordered to our ids")
    if report.ok:
        order = torch.tensor([theirs.index(s) for s in ours.symbols])
        for k in ROW_TABLES:
            if k in state:
                state[k] = state[k][order].clone()

    model = MusecocoBackbone(bcfg)
    own = model.state_dict()
    report.missing += sorted(set(own) - set(state))
    report.unexpected += sorted(set(state) - set(own))
    report.shape_mismatches += sorted(f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
                                      for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if not report.ok:
        report.notes.append("nothing written: the checkpoint does not match the model built from its args")
        return report
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    hist = ckpt.get("optimizer_history") or [{}]
    report.notes.append(f"{source.name}: {len(state)} tensors loaded strictly (num_updates "
                        f"{hist[-1].get('num_updates', '?')}); use codec remi with vocab=musecoco")
    save_component(out_dir, model, "backbone", "musecoco", bcfg)
    if dict_path.is_file():
        shutil.copyfile(dict_path, out_dir / "dict.txt")
    _write_model_dir(out_dir, model)
    report.notes.append(f"whole model directory (attributes -> music, upstream's prompt; the video sets the length): "
                        f"vidmusic generate VIDEO --model {out_dir} --set 'generate.attributes={{T1s1: 1}}'; "
                        f"or train from it with train.init_from={out_dir}")
    return report


#: upstream's sampling as docs/plugins/musecoco.md records it (top-k 15, temperature 1.0, at most 2560 new
#: tokens); no guidance (the attributes are in the sequence, there is no null branch)
UPSTREAM_GENERATE = {"top_k": 15, "temperature": 1.0, "cfg_coef": 1.0, "max_tokens": 2560, "window_seconds": 30.0}


def _write_model_dir(out_dir: Path, backbone: MusecocoBackbone) -> None:
    """Make ``out_dir`` (the backbone at its top) a model directory: ``encoder/`` (``none``), ``layout/``
    (``musecoco_prompt``: ``</s>`` then the codec's attribute prefix, as upstream), ``codec/`` (``remi`` with
    the upstream vocabulary) and ``model_index.yaml``."""
    enc = get_component("encoder", "none")
    save_component(out_dir / "encoder", enc.build(enc.default_config()), "encoder", "none", enc.default_config())
    codec_comp = get_component("codec", "remi")
    ccfg = dataclasses.replace(codec_comp.default_config(), vocab="musecoco",
                               attribute_prefix=bool(backbone.prefix_length))
    codec = codec_comp.build(ccfg)
    lay = get_component("layout", "musecoco_prompt")
    lcfg = dataclasses.replace(lay.default_config(), cond_dim=1, width=int(backbone.width), delays=list(codec.delays),
                               frame_rate=codec.frame_rate, cardinality=int(codec.cardinality))
    save_component(out_dir / "layout", lay.build(lcfg), "layout", "musecoco_prompt", lcfg)
    save_component(out_dir / "codec", codec, "codec", "remi", ccfg)
    write_model_index(out_dir, {"encoder": "none", "layout": "musecoco_prompt", "backbone": "musecoco", "codec": "remi"},
                      UPSTREAM_GENERATE, {"imported": "musecoco", "conditioning": "attributes (generate.attributes)"},
                      paths={"backbone": "."})
