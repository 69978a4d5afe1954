"""Hook implementations of the `musicgen_lm` plugin (registered through the `vidmusic` entry-point group).

- backbone ``musicgen`` (alias ``vidmuse_lm``): MusicGen's / VidMuse's cross-attention decoder over K
  codebooks (:class:`musicgen_lm.backbone.MusicgenBackbone`), layout ``cross``;
- importer ``musicgen``: a transformers MusicGen directory -> ``musicgen`` backbone
  (:func:`musicgen_lm.importer.import_musicgen`);
- importer ``vidmuse_full``: a VidMuse ``state_dict.bin`` -> ``encoder/`` (through the ``vidmuse``
  importer) + ``layout/`` + ``backbone/`` (:func:`musicgen_lm.importer.import_vidmuse_full`).
"""
from __future__ import annotations

from vidmusic_core import hookimpl

from .backbone import MusicgenBackbone, MusicgenLMConfig
from .importer import MusicgenImportConfig, VidmuseFullImportConfig, import_musicgen, import_vidmuse_full


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("musicgen", MusicgenBackbone, MusicgenLMConfig, aliases=("vidmuse_lm",))


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("musicgen", import_musicgen, MusicgenImportConfig)
    register("vidmuse_full", import_vidmuse_full, VidmuseFullImportConfig)
