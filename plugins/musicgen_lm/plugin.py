"""Hook implementations of the `musicgen_lm` plugin (registered through the `vidmusic` entry-point group).

- backbone ``musicgen`` (alias ``vidmuse_lm``): MusicGen's / VidMuse's cross-attention decoder over K
  codebooks (:class:`musicgen_lm.backbone.MusicgenBackbone`), layout ``cross``;
- importer ``musicgen``: a transformers MusicGen directory -> ``musicgen`` backbone (with its EnCodec: a whole,
  unconditional model directory)
  (:func:`musicgen_lm.importer.import_musicgen`);
- importer ``vidmuse_full``: a VidMuse ``state_dict.bin`` -> ``encoder/`` (through the ``vidmuse``
  importer) + ``layout/`` + ``backbone/`` (:func:`musicgen_lm.importer.import_vidmuse_full`).
"""
from __future__ import annotations

from vidmusic_core import Preset, hookimpl

from .backbone import MusicgenBackbone, MusicgenLMConfig
from .importer import MusicgenImportConfig, VidmuseFullImportConfig, import_musicgen, import_vidmuse_full


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("musicgen", MusicgenBackbone, MusicgenLMConfig, aliases=("vidmuse_lm",))


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("musicgen", import_musicgen, MusicgenImportConfig)
    register("vidmuse_full", import_vidmuse_full, VidmuseFullImportConfig)


#: VidMuse at its released shapes (``notes/vidmuse.md``): LSTV over CLIP ViT-B/32 (2 fps local frames, 32
#: global), MusicGen-medium cross-attention LM (D 1536, 48 layers, 24 heads), EnCodec 32 kHz (4 x 2048,
#: delays 0-3), 30 s windows with 0.5 s of prompt, CFG 3.0 against the black-video null, top-k 250. Local
#: weights only: set encoder.clip_weights and codec.weights to your copies (nothing is downloaded).
VIDMUSE_RUN = {
    "encoder": {"name": "lstv", "fps": 2.0, "n_global": 32, "sampling": "vidmuse", "clip_hidden": 768,
                "clip_layers": 12, "clip_heads": 12, "clip_mlp": 3072, "clip_image_size": 224, "clip_patch_size": 32,
                "clip_projection_dim": 512, "heads": 24, "out_dim": 1536},
    "layout": {"name": "cross", "project": False, "reduce": "none"},
    "backbone": {"name": "musicgen", "size": "medium"},
    "codec": {"name": "encodec", "bandwidth": 2.2, "delays": [0, 1, 2, 3]},
    "data": {"clip_seconds": 30.0},
    "generate": {"cfg_coef": 3.0, "top_k": 250, "window_seconds": 30.0, "overlap_seconds": 0.5},
}


@hookimpl
def register_presets(register) -> None:  # type: ignore[no-untyped-def]
    register("vidmuse", lambda: Preset(VIDMUSE_RUN, description="VidMuse's released shapes (GPU; local CLIP and "
                                                                 "EnCodec via encoder.clip_weights, codec.weights)"))
