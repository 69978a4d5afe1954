"""Importers of the `musicgen_lm` plugin: MusicGen (transformers directory) and full VidMuse checkpoints.

``vidmusic import musicgen DIR -o OUT``: a transformers MusicGen directory (``config.json`` with
``model_type`` ``musicgen`` or ``musicgen_decoder`` + ``model.safetensors`` / ``pytorch_model.bin``, sharded
or not). The decoder's names are mapped back to audiocraft's by inverting transformers'
``convert_musicgen_transformers.py`` (``rename_keys`` + the q/k/v split of ``in_proj_weight``); T5 and
``enc_to_dec_proj`` are skipped unread. A composite directory (``MusicgenForConditionalGeneration``) with a
mono EnCodec ``audio_encoder`` makes ``OUT`` a whole model directory: **unconditional MusicGen** (the ``none``
encoder, a ``cross`` layout whose zero projection gives the all-zero memory that is MusicGen's null
condition, the backbone at the top of ``OUT``, the EnCodec in ``codec/``, audiocraft's sampling defaults in
``model_index.yaml``), the baseline a video model is compared with and a start for ``train.init_from``.
A decoder-only directory writes the ``musicgen`` backbone component alone to ``OUT``.

``vidmusic import vidmuse_full state_dict.bin -o OUT``: the whole VidMuse model. The visual keys go through
the registered ``vidmuse`` importer (plugin ``vidmuse_lstv``); the LM keys (``emb``, ``transformer``,
``out_norm``, ``linears``; ZeyueT/VidMuse ``audiocraft/models/lm.py``) are mapped here. ``OUT`` holds::

    encoder/   lstv component (model.safetensors + config.yaml), written by the vidmuse importer
    layout/    cross layout: project=false (LSTV already projects to D), bos = the special-token frame
    backbone/  musicgen component
    vidmuse.yaml  settings from xp.cfg: delays, sampling (cfg coef, top-k), codec reference, config overrides

Nothing is written when keys are missing, unexpected or mis-shaped (``allow_partial=true`` overrides).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from vidmusic_core import (CheckpointError, ImportReport, atomic_path, get_component, load_state_strict,
                           save_component, write_model_index)

from .backbone import DTYPES, MusicgenBackbone, MusicgenLMConfig

SIZE_BY_WIDTH = {1024: "small", 1536: "medium", 2048: "large"}
VISUAL_PREFIXES = ("visual_encoder_model.", "local_pos_embedding", "global_pos_embedding", "local_temporal_transformer.",
                   "global_temporal_transformer.", "multi_head_cross_attention.", "visual_feature_proj.")
LM_PREFIXES = ("emb.", "transformer.", "out_norm.", "linears.")
T5_STUB = "condition_provider."  # upstream keeps an unused T5 output projection


# -- transformers MusicGen names -> audiocraft names ------------------------------------------------
_HF_LAYER = re.compile(r"model\.decoder\.layers\.(\d+)\.(.+)")
_HF_RENAME = {"self_attn.out_proj.weight": "self_attn.out_proj.weight",
              "encoder_attn.out_proj.weight": "cross_attention.out_proj.weight",
              "fc1.weight": "linear1.weight", "fc2.weight": "linear2.weight"}
_HF_NORMS = {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm_cross", "final_layer_norm": "norm2"}


def hf_to_audiocraft(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """transformers ``MusicgenForCausalLM`` state (``model.decoder.*``, ``lm_heads.*``) -> our names.

    Returns (state, unexpected HF keys, notes). q/k/v projections are stacked into ``in_proj_weight``
    (rows q | k | v); an incomplete triple leaves that key missing and is noted.
    """
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in state.items():
        if m := re.fullmatch(r"model\.decoder\.embed_tokens\.(\d+)\.weight", key):
            out[f"emb.{m.group(1)}.weight"] = v
        elif m := re.fullmatch(r"lm_heads\.(\d+)\.weight", key):
            out[f"linears.{m.group(1)}.weight"] = v
        elif m := re.fullmatch(r"model\.decoder\.layer_norm\.(weight|bias)", key):
            out[f"out_norm.{m.group(1)}"] = v
        elif key == "model.decoder.embed_positions.weights":
            continue  # sinusoidal table, no weights
        elif m := _HF_LAYER.fullmatch(key):
            i, rest = m.group(1), m.group(2)
            p = f"transformer.layers.{i}."
            if pm := re.fullmatch(r"(self_attn|encoder_attn)\.([qkv])_proj\.weight", rest):
                attn = "self_attn" if pm.group(1) == "self_attn" else "cross_attention"
                qkv.setdefault(f"{p}{attn}.in_proj_weight", {})[pm.group(2)] = v
            elif rest in _HF_RENAME:
                out[p + _HF_RENAME[rest]] = v
            elif (nm := rest.rsplit(".", 1)) and nm[0] in _HF_NORMS:
                out[f"{p}{_HF_NORMS[nm[0]]}.{nm[1]}"] = v
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    notes = []
    for key, parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        else:
            notes.append(f"{key}: only {sorted(parts)} of q/k/v projections present; left missing")
    return out, unexpected, notes


def audiocraft_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> transformers ``MusicgenForCausalLM`` names (the inverse of :func:`hf_to_audiocraft`)."""
    back_norms = {v: k for k, v in _HF_NORMS.items()}
    back = {v: k for k, v in _HF_RENAME.items()}
    out: dict[str, torch.Tensor] = {}
    for key, v in state.items():
        if m := re.fullmatch(r"emb\.(\d+)\.weight", key):
            out[f"model.decoder.embed_tokens.{m.group(1)}.weight"] = v
        elif m := re.fullmatch(r"linears\.(\d+)\.weight", key):
            out[f"lm_heads.{m.group(1)}.weight"] = v
        elif m := re.fullmatch(r"out_norm\.(weight|bias)", key):
            out[f"model.decoder.layer_norm.{m.group(1)}"] = v
        elif m := re.fullmatch(r"transformer\.layers\.(\d+)\.(.+)", key):
            p, rest = f"model.decoder.layers.{m.group(1)}.", m.group(2)
            if rest.endswith("in_proj_weight"):
                attn = "self_attn" if rest.startswith("self_attn") else "encoder_attn"
                for name, part in zip("qkv", v.chunk(3, dim=0)):
                    out[f"{p}{attn}.{name}_proj.weight"] = part
            elif rest in back:
                out[p + back[rest]] = v
            else:
                norm, leaf = rest.rsplit(".", 1)
                out[f"{p}{back_norms[norm]}.{leaf}"] = v
    return out


# -- shared ------------------------------------------------------------------------------------------
def _check_against_model(model: MusicgenBackbone, state: dict[str, torch.Tensor], report: ImportReport,
                         label: str = "") -> None:
    own = model.state_dict()
    report.missing += sorted(label + k for k in set(own) - set(state))
    report.unexpected += sorted(label + k for k in set(state) - set(own))
    report.shape_mismatches += sorted(f"{label}{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
                                      for k in set(own) & set(state) if state[k].shape != own[k].shape)


def _load_into(model: MusicgenBackbone, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items() if k in own and v.shape == own[k].shape},
                          strict=False)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist (expected {what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip archive -> no mmap; retry plainly
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError …
            raise CheckpointError(f"cannot read {path} as {what} with torch.load(weights_only=True): "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


# -- MusicGen (transformers directory) ---------------------------------------------------------------
@dataclass
class MusicgenImportConfig:
    """Options of ``vidmusic import musicgen`` (``key=value``): ``dtype`` of the written weights (fp32 |
    bf16 | fp16); ``allow_partial``: write even with missing/unexpected/mis-shaped keys."""

    dtype: str = "fp32"
    allow_partial: bool = False


def _read_hf_decoder_weights(model_dir: Path, composite: bool, prefix: str = "decoder.") -> dict[str, torch.Tensor]:
    """Decoder tensors of a transformers directory, names without the composite ``decoder.`` prefix (``prefix``:
    another part of a composite directory, e.g. ``audio_encoder.``)."""
    prefix = prefix if composite else ""

    def wanted(k: str) -> bool:
        return k.startswith(prefix) if composite else not k.startswith(("text_encoder.", "audio_encoder.", "enc_to_dec_proj."))

    files: list[Path] = []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (model_dir / index).is_file():
            wmap = _read_json(model_dir / index).get("weight_map", {})
            files = sorted({model_dir / f for k, f in wmap.items() if wanted(k)})
            break
    else:
        files = [p for p in (model_dir / "model.safetensors", model_dir / "pytorch_model.bin") if p.is_file()][:1]
    if not files:
        raise CheckpointError(f"{model_dir} has no model.safetensors or pytorch_model.bin (or their index.json); "
                              "expected a transformers MusicGen directory (save_pretrained output)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(f), framework="pt") as sf:
                    state.update({k: sf.get_tensor(k) for k in sf.keys() if wanted(k)})
            except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError
                raise CheckpointError(f"cannot read {f}: {exc}") from exc
        else:
            sd = _torch_load(f, "a transformers pytorch_model.bin")
            if not isinstance(sd, dict):
                raise CheckpointError(f"{f} is not a state dict")
            state.update({k: v for k, v in sd.items() if wanted(k)})
    return {k[len(prefix):]: v for k, v in state.items()}


def import_musicgen(source: Path, out_dir: Path, cfg: Optional[MusicgenImportConfig] = None) -> ImportReport:
    """Convert a transformers MusicGen directory into a ``musicgen`` backbone component in ``out_dir``."""
    cfg = cfg or MusicgenImportConfig()
    if cfg.dtype not in DTYPES:
        raise CheckpointError(f"import option dtype={cfg.dtype!r}; choose one of {', '.join(DTYPES)}")
    model_dir, out_dir = Path(source), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir} has no config.json; expected a transformers MusicGen directory")
    conf = _read_json(model_dir / "config.json")
    mtype = conf.get("model_type")
    if mtype == "musicgen_melody":
        raise CheckpointError(f"{model_dir}: MusicGen-Melody prepends its conditions and has no cross-attention; "
                              "only model_type musicgen / musicgen_decoder can be imported")
    if mtype not in ("musicgen", "musicgen_decoder"):
        raise CheckpointError(f"{model_dir}/config.json: model_type {mtype!r}, expected 'musicgen' or 'musicgen_decoder'")
    dec = conf.get("decoder", {}) if mtype == "musicgen" else conf
    report = ImportReport(out_dir=out_dir)
    if dec.get("activation_function", "gelu") != "gelu" or dec.get("scale_embedding", False):
        raise CheckpointError(f"{model_dir}/config.json: decoder activation_function "
                              f"{dec.get('activation_function')!r} / scale_embedding {dec.get('scale_embedding')} "
                              "differ from MusicGen's (gelu, false); this backbone cannot reproduce them")
    D, ffn = int(dec.get("hidden_size", 1024)), int(dec.get("ffn_dim", 4096))
    if ffn % D:
        raise CheckpointError(f"{model_dir}/config.json: ffn_dim {ffn} is not a multiple of hidden_size {D}")
    bcfg = MusicgenLMConfig(size=SIZE_BY_WIDTH.get(D, "tiny"), width=D, layers=int(dec.get("num_hidden_layers", 24)),
                            heads=int(dec.get("num_attention_heads", 16)), hidden_scale=ffn // D,
                            n_codebooks=int(dec.get("num_codebooks", 4)), audio_vocab=int(dec.get("vocab_size", 2048)),
                            dtype=cfg.dtype)
    hf_state = _read_hf_decoder_weights(model_dir, composite=mtype == "musicgen")
    state, unexpected, notes = hf_to_audiocraft(hf_state)
    report.notes += notes
    model = MusicgenBackbone(bcfg)
    _check_against_model(model, state, report)
    report.unexpected += unexpected
    if int(dec.get("audio_channels", 1)) == 2:
        report.notes.append("stereo MusicGen: codebooks interleave left/right (K = 8); use its delay pattern "
                            "[0, 0, 1, 1, 2, 2, 3, 3] in the codec")
    audio = conf.get("audio_encoder") or {}
    if audio:
        hop = 1
        for r in audio.get("upsampling_ratios", []):
            hop *= int(r)
        report.notes.append(f"codec: EnCodec {audio.get('sampling_rate')} Hz, {bcfg.n_codebooks} x "
                            f"{audio.get('codebook_size')}, {audio.get('sampling_rate', 0) / max(hop, 1):g} frames/s, "
                            "delays [0, 1, 2, 3]")
    report.notes.append(f"decoder: D {D}, {bcfg.layers} layers, {bcfg.heads} heads, K {bcfg.n_codebooks}, "
                        f"V {bcfg.audio_vocab}; T5 text encoder and enc_to_dec_proj skipped (the cross "
                        "layout's visual_feature_proj replaces enc_to_dec_proj)")
    if not report.ok and not cfg.allow_partial:
        report.notes.append(f"nothing written to {out_dir} because of the mismatches above (allow_partial=true "
                            "writes the model anyway, with random weights where keys are missing)")
        return report
    _load_into(model, state)
    codec = _composite_codec(model_dir, conf, model, report) if mtype == "musicgen" else None
    save_component(out_dir, model, "backbone", "musicgen", bcfg)
    if codec is None:
        return report
    _write_unconditional(out_dir, model, codec, conf["audio_encoder"])
    report.notes.append(f"whole model directory (unconditional MusicGen: no text encoder): vidmusic generate VIDEO "
                        f"--model {out_dir}; or train from it with train.init_from={out_dir}")
    return report


def _composite_codec(model_dir: Path, conf: dict[str, Any], backbone: MusicgenBackbone, report: ImportReport) -> Any:
    """The ``encodec`` codec of a composite directory's ``audio_encoder`` (its config + ``audio_encoder.*``
    tensors), or None with a note on why the import stays one component."""
    import tempfile

    audio = dict(conf.get("audio_encoder") or {})
    if int(audio.get("audio_channels", 1)) != 1 or backbone.n_codebooks != 4:
        report.notes.append("one component only: a whole model directory needs a mono EnCodec with 4 codebooks")
        return None
    tensors = _read_hf_decoder_weights(model_dir, composite=True, prefix="audio_encoder.")
    encodec = get_component("codec", "encodec").factory
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(audio))
        try:
            codec = encodec.for_codebooks(Path(tmp), backbone.n_codebooks, [0, 1, 2, 3])
            load_state_strict(codec.model, tensors, f"{model_dir} audio_encoder.*")
        except (CheckpointError, ValueError, TypeError, KeyError) as exc:
            report.notes.append(f"one component only: the audio_encoder does not load as an EnCodec ({exc})")
            return None
    if codec.cardinality != backbone.cardinality:
        report.notes.append(f"one component only: the audio_encoder has {codec.cardinality} codes per codebook, "
                            f"the decoder predicts {backbone.cardinality}")
        return None
    return codec


#: audiocraft's MusicGen.set_generation_params defaults (audiocraft/models/musicgen.py): top-k 250, temperature 1,
#: 30 s windows extended with a stride of 18 s (12 s of prompt). No condition, so no guidance (cfg_coef 1).
UNCONDITIONAL_GENERATE = {"top_k": 250, "temperature": 1.0, "cfg_coef": 1.0, "window_seconds": 30.0,
                          "overlap_seconds": 12.0}


def _write_unconditional(out_dir: Path, backbone: MusicgenBackbone, codec: Any, audio_config: dict[str, Any]) -> None:
    """``encoder/`` (``none``), ``layout/`` (cross, zero projection), ``codec/`` and ``model_index.yaml``
    (the backbone is at the top of ``out_dir``, where a one-component import has it)."""
    enc = get_component("encoder", "none")
    save_component(out_dir / "encoder", enc.build(enc.default_config()), "encoder", "none", enc.default_config())
    _write_layout(out_dir / "layout", backbone, [0, 1, 2, 3], cond_dim=1)
    (out_dir / "codec" / "hf").mkdir(parents=True, exist_ok=True)
    (out_dir / "codec" / "hf" / "config.json").write_text(json.dumps(audio_config))
    save_component(out_dir / "codec", codec, "codec", "encodec", dataclasses.replace(codec.cfg, weights="hf"))
    write_model_index(out_dir, {"encoder": "none", "layout": "cross", "backbone": "musicgen", "codec": "encodec"},
                      UNCONDITIONAL_GENERATE, {"imported": "musicgen", "conditioning": "none (unconditional)"},
                      paths={"backbone": "."})


# -- VidMuse (state_dict.bin: LSTV + LM) -------------------------------------------------------------
@dataclass
class VidmuseFullImportConfig:
    """Options of ``vidmusic import vidmuse_full``. ``n_global``, ``clip_heads``, ``sampling``: passed to the
    ``vidmuse`` (visual) importer. ``dtype``: of the written backbone. ``allow_partial``: write despite
    mismatches. ``codec_dir``: a local transformers EnCodec directory (VidMuse's ``facebook/encodec_32khz``);
    with it the output is also a whole model directory (``codec/`` + ``model_index.yaml``: ``vidmusic generate
    VIDEO --model OUT``), its architecture copied to ``codec/hf/config.json`` and its weights into ``codec/``."""

    n_global: Optional[int] = None
    clip_heads: Optional[int] = None
    sampling: str = "vidmuse"
    dtype: str = "fp32"
    allow_partial: bool = False
    codec_dir: Optional[str] = None


def _select(xp: Any, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(xp, key, default=default, throw_on_resolution_failure=False)
    return default if value is None else value


def _read_vidmuse(path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    pkg = _torch_load(path, "a VidMuse state_dict.bin")
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        found = sorted(map(str, pkg)) if isinstance(pkg, dict) else type(pkg).__name__
        raise CheckpointError(f"{path} is not a VidMuse export: expected keys best_state and xp.cfg, found {found}")
    try:
        xp = OmegaConf.create(pkg["xp.cfg"]) if isinstance(pkg["xp.cfg"], str) else OmegaConf.create(dict(pkg["xp.cfg"]))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot parse xp.cfg as YAML: {exc}") from exc
    return dict(pkg["best_state"]), xp


def vidmuse_lm_config(path: Path, xp: Any, lm: dict[str, torch.Tensor], dtype: str) -> MusicgenLMConfig:
    """Backbone config from ``xp.cfg`` ``transformer_lm.*`` (shapes fill what it lacks; heads are required)."""
    tl = "transformer_lm."
    fixed = {"norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False, "positional_embedding": "sin",
             "activation": "gelu", "layer_scale": None, "qk_layer_norm": False, "qk_layer_norm_cross": False,
             "kv_repeat": 1, "norm": "layer_norm"}
    for key, want in fixed.items():
        got = _select(xp, tl + key, want)
        if got != want:
            raise CheckpointError(f"{path}: xp.cfg {tl}{key}={got!r}; the musicgen backbone implements only "
                                  f"{want!r} (MusicGen's musicgen_lm.yaml)")
    if "emb.0.weight" not in lm or "transformer.layers.0.linear1.weight" not in lm:
        raise CheckpointError(f"{path}: best_state has no emb.0.weight / transformer.layers.0.linear1.weight; "
                              "not a MusicGen-style LM")
    heads = _select(xp, tl + "num_heads")
    if heads is None:
        raise CheckpointError(f"{path}: xp.cfg has no {tl}num_heads (the LM head count is not in the shapes)")
    D = int(_select(xp, tl + "dim", lm["emb.0.weight"].shape[1]))
    layers = 1 + max(int(m.group(1)) for k in lm if (m := re.match(r"transformer\.layers\.(\d+)\.", k)))
    return MusicgenLMConfig(
        size=SIZE_BY_WIDTH.get(D, "tiny"), width=D, heads=int(heads), layers=int(_select(xp, tl + "num_layers", layers)),
        hidden_scale=int(_select(xp, tl + "hidden_scale", lm["transformer.layers.0.linear1.weight"].shape[0] // D)),
        n_codebooks=int(_select(xp, tl + "n_q", sum(1 for k in lm if re.fullmatch(r"emb\.\d+\.weight", k)))),
        audio_vocab=int(_select(xp, tl + "card", lm["emb.0.weight"].shape[0] - 1)), dtype=dtype)


def _vidmuse_settings(path: Path, xp: Any, bcfg: MusicgenLMConfig) -> dict[str, Any]:
    """Delays, sampling defaults and the codec reference (``compression_state_dict.bin`` beside the file)."""
    K = bcfg.n_codebooks
    modeling = _select(xp, "codebooks_pattern.modeling", "delay")
    if modeling != "delay":
        raise CheckpointError(f"{path}: xp.cfg codebooks_pattern.modeling={modeling!r}; only the delay pattern is supported")
    delays = [int(d) for d in _select(xp, "codebooks_pattern.delay.delays", list(range(K)))]
    codec = str(_select(xp, "compression_model_checkpoint", "//pretrained/facebook/encodec_32khz")).replace("//pretrained/", "")
    comp = path.parent / "compression_state_dict.bin"
    if comp.is_file():
        pkg = _torch_load(comp, "a compression_state_dict.bin")
        if isinstance(pkg, dict) and isinstance(pkg.get("pretrained"), str):
            codec = pkg["pretrained"]
    return {
        "delays": delays,
        "sampling": {"cfg_coef": float(_select(xp, "classifier_free_guidance.inference_coef", 3.0)),
                     "top_k": int(_select(xp, "generate.lm.top_k", 250)), "top_p": float(_select(xp, "generate.lm.top_p", 0.0)),
                     "temperature": float(_select(xp, "generate.lm.temp", 1.0))},
        "codec": {"pretrained": codec, "sample_rate": int(_select(xp, "sample_rate", 32000)),
                  "n_codebooks": K, "cardinality": bcfg.audio_vocab, "frame_rate": 50.0},
        "window_seconds": 30.0, "overlap_seconds": 0.5,
        "components": {"encoder": "encoder", "layout": "layout", "backbone": "backbone"},
        "overrides": ["encoder.name=lstv", "layout.name=cross", "layout.project=false", "layout.reduce=none",
                      "backbone.name=musicgen"],
    }


def _write_layout(out: Path, backbone: MusicgenBackbone, delays: list[int], cond_dim: Optional[int] = None) -> None:
    """The cross layout VidMuse implies: no projection (LSTV projects), bos = the all-special frame. ``cond_dim``:
    a zero projection from that width instead (the memory is all zeros: MusicGen's null condition)."""
    comp = get_component("layout", "cross")
    lcfg = comp.default_config()
    values = {"project": cond_dim is not None, "reduce": "none", "train_eos": False,
              "cond_dim": cond_dim or backbone.width, "width": backbone.width, "delays": list(delays), "frame_rate": 50.0}
    lcfg = dataclasses.replace(lcfg, **{k: v for k, v in values.items() if hasattr(lcfg, k)})
    layout = comp.build(lcfg)
    with torch.no_grad():
        layout.bos.copy_(backbone.special_embedding().float())
        if cond_dim is not None:
            layout.visual_feature_proj.weight.zero_()
            layout.visual_feature_proj.bias.zero_()
    save_component(out, layout, "layout", comp.name, lcfg)


def import_vidmuse_full(source: Path, out_dir: Path, cfg: Optional[VidmuseFullImportConfig] = None) -> ImportReport:
    """A VidMuse ``state_dict.bin`` (or its directory) -> ``encoder/``, ``layout/``, ``backbone/`` in ``out_dir``."""
    cfg = cfg or VidmuseFullImportConfig()
    path, out_dir = Path(source), Path(out_dir)
    if path.is_dir():
        path = path / "state_dict.bin"
    best, xp = _read_vidmuse(path)
    lm = {k.replace(".mha.", "."): v for k, v in best.items() if k.startswith(LM_PREFIXES)}
    other = sorted(k for k in best if not k.startswith(LM_PREFIXES + VISUAL_PREFIXES + (T5_STUB,)))
    report = ImportReport(out_dir=out_dir)
    bcfg = vidmuse_lm_config(path, xp, lm, cfg.dtype)
    backbone = MusicgenBackbone(bcfg)
    _check_against_model(backbone, lm, report, "backbone: ")
    report.unexpected += [f"best_state: {k}" for k in other]
    settings = _vidmuse_settings(path, xp, bcfg)
    stub = sorted(k for k in best if k.startswith(T5_STUB))
    report.notes.append(f"LM: {len(lm)} tensors, D {bcfg.width}, {bcfg.layers} layers, {bcfg.heads} heads, "
                        f"K {bcfg.n_codebooks}, V {bcfg.audio_vocab}; delays {settings['delays']}; ignored the unused "
                        f"T5 stub ({', '.join(stub) or 'absent'})")
    if not report.ok and not cfg.allow_partial:
        report.notes.append(f"nothing written to {out_dir}: the LM keys do not match (allow_partial=true writes anyway)")
        return report

    visual = get_component("importer", "vidmuse")
    vvals = {"n_global": cfg.n_global, "clip_heads": cfg.clip_heads, "sampling": cfg.sampling,
             "allow_partial": cfg.allow_partial}
    vcfg = visual.default_config()
    vcfg = dataclasses.replace(vcfg, **{k: v for k, v in vvals.items() if hasattr(vcfg, k)})
    enc = visual.factory(path, out_dir / "encoder", vcfg)
    report.missing += [f"encoder: {k}" for k in enc.missing]
    report.unexpected += [f"encoder: {k}" for k in enc.unexpected]
    report.shape_mismatches += [f"encoder: {k}" for k in enc.shape_mismatches]
    report.notes += [f"encoder: {n}" for n in enc.notes if not n.startswith("left ")]
    if not enc.ok and not cfg.allow_partial:
        report.notes.append(f"nothing written to {out_dir}: the visual keys do not match")
        return report

    _load_into(backbone, lm)
    save_component(out_dir / "backbone", backbone, "backbone", "musicgen", bcfg)
    _write_layout(out_dir / "layout", backbone, settings["delays"])
    with atomic_path(out_dir / "vidmuse.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(settings)))
    if cfg.codec_dir is None:
        report.notes.append(f"codec: {settings['codec']['pretrained']} (not imported; reference written to vidmuse.yaml; "
                            "give codec_dir=ENCODEC_DIR to make OUT a whole model directory)")
        return report
    _write_model_dir(out_dir, Path(cfg.codec_dir), backbone, settings)
    report.notes.append(f"codec: {cfg.codec_dir} -> codec/ (model directory: vidmusic generate VIDEO --model {out_dir})")
    return report


def _write_model_dir(out_dir: Path, codec_dir: Path, backbone: MusicgenBackbone, settings: dict[str, Any]) -> None:
    """``codec/`` (the EnCodec: ``hf/config.json`` + its weights in our format) and ``model_index.yaml`` with
    VidMuse's sampling (CFG against the black-video null, top-k 250) and windows (30 s, 0.5 s prompt)."""
    import shutil

    codec = get_component("codec", "encodec").factory.for_codebooks(codec_dir, backbone.n_codebooks,
                                                                     settings["delays"])
    if (codec.n_codebooks, codec.cardinality) != (backbone.n_codebooks, backbone.cardinality):
        raise CheckpointError(f"codec_dir={codec_dir}: this EnCodec has {codec.n_codebooks} codebooks x "
                              f"{codec.cardinality}, the VidMuse LM predicts {backbone.n_codebooks} x "
                              f"{backbone.cardinality}; use the EnCodec VidMuse was trained with")
    (out_dir / "codec" / "hf").mkdir(parents=True, exist_ok=True)
    shutil.copy(codec_dir / "config.json", out_dir / "codec" / "hf" / "config.json")
    save_component(out_dir / "codec", codec, "codec", "encodec",
                   dataclasses.replace(codec.cfg, weights="hf"))  # relative: the directory can move
    names = {s: str(OmegaConf.load(out_dir / s / "config.yaml").name) for s in ("encoder", "layout", "backbone")}
    generate = {**settings["sampling"], "window_seconds": float(settings["window_seconds"]),
                "overlap_seconds": float(settings["overlap_seconds"])}
    write_model_index(out_dir, {**names, "codec": "encodec"}, generate, {"imported": "vidmuse_full"})
