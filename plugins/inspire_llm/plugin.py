"""Hook implementations of the `inspire_llm` plugin (registered through the `vidmusic` entry-point group).

- backbone ``inspire`` (alias ``inspiremusic``): InspireMusic's Qwen2 LM over audio tokens
  (:class:`inspire_llm.backbone.InspireBackbone`);
- importer ``inspiremusic``: ``vidmusic import inspiremusic MODEL_DIR -o OUT`` reads upstream ``llm.pt``
  + yaml + Qwen ``config.json`` (:func:`inspire_llm.importer.import_inspiremusic`), and its ``wavtokenizer/``
  folder when present;
- codec ``wavtokenizer``: InspireMusic's audio tokens, 75 Hz x 4096 codes, 24 kHz mono
  (:class:`inspire_llm.wavtokenizer.WavTokenizerCodec`).
"""
from __future__ import annotations

from vidmusic_core import Preset, hookimpl

from .backbone import InspireBackbone, InspireConfig
from .importer import InspireImportConfig, import_inspiremusic


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("inspire", InspireBackbone, InspireConfig, aliases=("inspiremusic",))


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("inspiremusic", import_inspiremusic, InspireImportConfig)


@hookimpl
def register_codecs(register) -> None:  # type: ignore[no-untyped-def]
    from .wavtokenizer import WavTokenizerCodec  # local: torch modules built only when asked for

    register("wavtokenizer", WavTokenizerCodec, WavTokenizerCodec.Config)


#: InspireMusic-Base's LM (Qwen2-0.5B shape, D 896) over WavTokenizer tokens (75 Hz x 4096, 24 kHz), driven by
#: video through the prefix layout ([sos, time rows, text, sos, condition, video task]), with upstream's
#: inference rules: top-k 350, CFG 3.0, EOS banned before 0.9 of the length; the video through LSTV over CLIP
#: ViT-B/32. Local weights only: set encoder.clip_weights, backbone.qwen_dir and codec.model_dir (InspireMusic's
#: wavtokenizer/ folder), or warm-start the LM from an import (train.init_from).
INSPIREMUSIC_BASE_RUN = {
    "encoder": {"name": "lstv", "fps": 2.0, "n_global": 32, "sampling": "vidmuse", "clip_hidden": 768,
                "clip_layers": 12, "clip_heads": 12, "clip_mlp": 3072, "clip_image_size": 224, "clip_patch_size": 32,
                "clip_projection_dim": 512, "heads": 12, "out_dim": 768},
    "layout": {"name": "prefix"},
    # the embedded default's toy sizes are cleared so the preset's Qwen2-0.5B shape applies
    "backbone": {"name": "inspire", "size": "base", "video_task": True, "hidden": None, "layers": None, "heads": None,
                 "kv_heads": None, "intermediate": None},
    "codec": {"name": "wavtokenizer"},
    "data": {"clip_seconds": 30.0},
    "generate": {"top_k": 350, "cfg_coef": 3.0, "eos": True, "min_length": 0.9, "window_seconds": 30.0},
}


@hookimpl
def register_presets(register) -> None:  # type: ignore[no-untyped-def]
    register("inspiremusic-base", lambda: Preset(INSPIREMUSIC_BASE_RUN, description="InspireMusic-Base's LM "
                                                  "conditioned on video (GPU; local Qwen and WavTokenizer)"))
