"""``vidmusic import inspiremusic MODEL_DIR -o OUT``: an upstream InspireMusic ``llm.pt`` -> our format.

An InspireMusic model directory (e.g. ``InspireMusic-Base/``) holds ``llm.pt`` (a flat
``LLM.state_dict()``), ``inspiremusic.yaml`` (HyperPyYAML) and the Qwen ``config.json`` + tokenizer
files (upstream loads Qwen2 from the same directory, ``basemodel_path``). We read:

- ``llm.pt`` with ``torch.load(weights_only=True)`` (tensors only, nothing unpickled);
- from the yaml: ``llm.llm_input_size``, ``llm.llm_output_size``, ``llm.audio_token_size``, the sampler
  and the CFG ratios (for the report). Its custom tags (``!new:``, ``!name:``, ``!apply:``, ``!ref``) are
  read as plain data; nothing is imported or called;
- ``config.json`` for the Qwen2 sizes (without it, the sizes are inferred from ``llm.pt`` shapes).

The backbone is built with those sizes, the weights are checked key by key and loaded strictly, and
``model.safetensors`` + ``config.yaml`` are written (plus ``qwen/``: a copy of config.json and the
tokenizer files, which ``backbone.qwen_dir: qwen`` names relative to OUT, so OUT can be moved or copied).
Nothing is written when keys do not match.
When the model directory has a ``wavtokenizer/`` folder (``config.yaml`` + ``model.pt``) it is imported into
``OUT/wavtokenizer/`` as a ``wavtokenizer`` codec (``inspire_llm.wavtokenizer``); without one, a note says so.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from vidmusic_core import CheckpointError, ImportReport, save_component

from .backbone import PRESETS, InspireBackbone, InspireConfig, grow_llm_embedding, read_qwen_config
from .tokenizer import has_tokenizer_files

QWEN_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
              "special_tokens_map.json", "added_tokens.json", "generation_config.json")
EMBED_KEYS = ("text_embedding.weight", "llm.model.model.embed_tokens.weight")
LM_HEAD = "llm.model.lm_head.weight"


@dataclass
class InspireImportConfig:
    """Options of ``vidmusic import inspiremusic`` (``key=value``).

    ``llm_file``: the checkpoint inside the model directory. ``yaml_file``: None = ``inspiremusic.yaml``
    (else the only ``*.yaml`` there). ``qwen_dir``: where ``config.json`` and the tokenizer are (None = the
    model directory). ``dtype``: fp32 | bf16 | fp16 of the written weights. ``video_task``: grow
    ``llm_embedding`` [2, D] -> [3, D] (rows 0-1 kept) for the video task.
    """

    llm_file: str = "llm.pt"
    yaml_file: Optional[str] = None
    qwen_dir: Optional[str] = None
    dtype: str = "fp32"
    video_task: bool = False


# -- HyperPyYAML as plain data ---------------------------------------------------------------------
class _Ref(str):
    """A ``!ref <key>`` value, resolved against the top level of the document."""


def _hyper_loader() -> type:
    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            return _Ref(value) if node.tag == "!ref" else value
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        value["_tag"] = node.tag  # e.g. !name:inspiremusic.utils.common.topk_sampling
        return value

    Loader.add_multi_constructor("!", tagged)
    return Loader


def read_hyperpyyaml(path: Path) -> dict[str, Any]:
    """Read an upstream yaml as data; ``!ref <key>`` values that name one top-level key are resolved."""
    try:
        doc = yaml.load(path.read_text(), Loader=_hyper_loader())  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} is not a mapping of settings")

    def resolve(v: Any, depth: int = 0) -> Any:
        if isinstance(v, _Ref):
            m = re.fullmatch(r"\s*<([\w.\-]+)>\s*", v)
            return resolve(doc.get(m.group(1), str(v)), depth + 1) if m and depth < 8 else str(v)
        if isinstance(v, dict):
            return {k: resolve(x, depth) for k, x in v.items()}
        if isinstance(v, list):
            return [resolve(x, depth) for x in v]
        return v

    return resolve(doc)


# -- the importer ----------------------------------------------------------------------------------
def _find_yaml(model_dir: Path, name: Optional[str]) -> Optional[Path]:
    if name is not None:
        p = model_dir / name
        if not p.is_file():
            raise CheckpointError(f"{p} does not exist (option yaml_file)")
        return p
    if (model_dir / "inspiremusic.yaml").is_file():
        return model_dir / "inspiremusic.yaml"
    found = sorted(model_dir.glob("*.yaml"))
    return found[0] if len(found) == 1 else None


def load_llm_pt(path: Path) -> dict[str, torch.Tensor]:
    """``llm.pt`` as a flat ``{name: tensor}`` (``weights_only=True``; a ``module.`` prefix is dropped)."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; expected InspireMusic's llm.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError …
        raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {exc}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _sizes_from_state(state: dict[str, torch.Tensor], where: Path) -> dict[str, Any]:
    """Qwen2 sizes when config.json is absent: the preset of the width (head counts cannot be read off
    the shapes), with depth, FFN and vocabulary read from ``llm.pt``."""
    D = state[EMBED_KEYS[1]].shape[1]
    preset = {896: "base", 1536: "1.5b"}.get(D)
    if preset is None:
        raise CheckpointError(f"{where} has no config.json and width {D} is not a known InspireMusic size "
                              "(896, 1536); pass qwen_dir=DIR with the Qwen config.json")
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"llm\.model\.model\.layers\.(\d+)\.", key)))
    return dict(hidden=D, layers=layers, heads=PRESETS[preset]["heads"], kv_heads=PRESETS[preset]["kv_heads"],
                intermediate=state["llm.model.model.layers.0.mlp.up_proj.weight"].shape[0],
                text_vocab=state[EMBED_KEYS[1]].shape[0])


def import_inspiremusic(source: Path, out_dir: Path, cfg: Optional[InspireImportConfig] = None) -> ImportReport:
    """Convert an InspireMusic model directory (or its ``llm.pt``) into an `inspire` backbone checkpoint."""
    cfg = InspireImportConfig() if cfg is None else cfg
    source, out_dir = Path(source), Path(out_dir)
    model_dir, llm_path = (source.parent, source) if source.is_file() else (source, source / cfg.llm_file)
    report = ImportReport(out_dir=out_dir)
    state = load_llm_pt(llm_path)

    # sizes: yaml (D, A), Qwen config.json (the rest)
    A = D = None
    yaml_path = _find_yaml(model_dir, cfg.yaml_file)
    if yaml_path is not None:
        llm = read_hyperpyyaml(yaml_path).get("llm") or {}
        A, D, D_out = llm.get("audio_token_size"), llm.get("llm_input_size"), llm.get("llm_output_size")
        if D_out is not None and D_out != D:
            report.shape_mismatches.append(f"{yaml_path.name}: llm_input_size {D} != llm_output_size {D_out}")
        samp = llm.get("sampling") or {}
        report.notes.append(
            f"{yaml_path.name}: audio_token_size {A}, llm_input_size {D}, sampler "
            f"{str(samp.get('_tag', '?')).rsplit('.', 1)[-1]} "
            f"{ {k: v for k, v in samp.items() if k != '_tag'} }, train_cfg_ratio {llm.get('train_cfg_ratio')}, "
            f"infer_cfg_ratio {llm.get('infer_cfg_ratio')}")
    else:
        report.notes.append(f"no yaml in {model_dir}: audio_token_size read from llm.pt shapes")
    if A is None and "speech_embedding.weight" in state:
        A = state["speech_embedding.weight"].shape[0]

    qwen_dir = Path(cfg.qwen_dir) if cfg.qwen_dir is not None else model_dir
    if (qwen_dir / "config.json").is_file():
        q = read_qwen_config(qwen_dir)
        sizes = dict(hidden=q.hidden_size, layers=q.num_hidden_layers, heads=q.num_attention_heads,
                     kv_heads=q.num_key_value_heads, intermediate=q.intermediate_size, text_vocab=q.vocab_size)
        extra = dict(tie_word_embeddings=bool(q.tie_word_embeddings), rms_norm_eps=float(q.rms_norm_eps),
                     rope_theta=float((q.rope_parameters or {}).get("rope_theta", 1e6)))
    else:
        sizes, extra = _sizes_from_state(state, qwen_dir), dict(tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1e6)
        report.notes.append(f"no config.json in {qwen_dir}: Qwen2 sizes inferred from llm.pt shapes {sizes}")
    if D is not None and D != sizes["hidden"]:
        report.shape_mismatches.append(f"yaml llm_input_size {D} != Qwen hidden_size {sizes['hidden']}")

    # tied lm_head: only when the checkpoint really holds one tensor under both names
    if extra["tie_word_embeddings"] and LM_HEAD in state and EMBED_KEYS[1] in state \
            and not torch.equal(state[LM_HEAD], state[EMBED_KEYS[1]]):
        extra["tie_word_embeddings"] = False
        report.notes.append("config.json ties lm_head to embed_tokens but llm.pt holds different values: built untied")
    if all(k in state for k in EMBED_KEYS) and not torch.equal(state[EMBED_KEYS[0]], state[EMBED_KEYS[1]]):
        report.shape_mismatches.append(f"{EMBED_KEYS[0]} and {EMBED_KEYS[1]} differ; upstream saves one tensor twice")

    size = {896: "base", 1536: "1.5b"}.get(sizes["hidden"], "tiny")
    bcfg = InspireConfig(size=size, audio_vocab=A, n_codebooks=1, video_task=cfg.video_task, dtype=cfg.dtype,
                         **sizes, **extra)
    if cfg.video_task and "llm_embedding.weight" in state:
        state["llm_embedding.weight"] = grow_llm_embedding(state["llm_embedding.weight"], 3)
        report.notes.append("llm_embedding grown [2, D] -> [3, D] for the video task (row 2 = copy of the task row)")

    model = InspireBackbone(bcfg)
    own = model.state_dict()
    report.missing = sorted(set(own) - set(state))
    report.unexpected = sorted(set(state) - set(own))
    report.shape_mismatches += sorted(f"{k}: llm.pt {list(state[k].shape)} vs model {list(own[k].shape)}"
                                      for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if not report.ok:
        report.notes.append("nothing written: the checkpoint does not match the model built from its config")
        return report

    model.load_state_dict(state, strict=True)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    report.notes.append(f"llm.pt: {len(state)} tensors ({', '.join(dtypes)}), loaded strictly; written as {cfg.dtype}")
    if has_tokenizer_files(qwen_dir) or (qwen_dir / "config.json").is_file():
        qdst = out_dir / "qwen"
        qdst.mkdir(parents=True, exist_ok=True)
        for name in QWEN_FILES:
            if (qwen_dir / name).is_file():
                shutil.copyfile(qwen_dir / name, qdst / name)
        bcfg.qwen_dir = qdst.name  # relative: load_component resolves it against OUT (movable, copyable)
    save_component(out_dir, model, "backbone", "inspire", bcfg)
    from .wavtokenizer import import_wavtokenizer_folder  # local: only when importing

    import_wavtokenizer_folder(model_dir, out_dir, report)  # MODEL_DIR/wavtokenizer/ -> OUT/wavtokenizer/
    return report
