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

from vidmusic_core import hookimpl

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
