"""Hook implementations of the `vidmuse_lstv` plugin (registered through the `vidmusic` entry-point group).

- encoder ``lstv`` (alias ``vidmuse``): VidMuse's long-short-term visual module (:mod:`.encoder`).
- importer ``vidmuse``: the visual part of a VidMuse ``state_dict.bin`` -> ``lstv`` (:mod:`.importer`).
"""
from __future__ import annotations

from vidmusic_core import hookimpl

from .encoder import LSTVEncoder
from .importer import VidmuseImportConfig, import_vidmuse


@hookimpl
def register_encoders(register) -> None:  # type: ignore[no-untyped-def]
    register("lstv", LSTVEncoder, LSTVEncoder.Config, aliases=("vidmuse",))


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("vidmuse", import_vidmuse, VidmuseImportConfig)
