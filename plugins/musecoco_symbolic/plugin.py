"""Hook implementations of the `musecoco_symbolic` plugin (registered through the `vidmusic` entry-point group).

- codec ``remi`` (alias ``midi``): MIDI <-> ``[MuseCoco attribute prefix] <sep> [REMI tokens]``, render
  to audio with the pretty_midi wheel's soundfont (:class:`musecoco_symbolic.codec.RemiCodec`);
- layout ``attribute_head``: a head on the video condition predicts the attribute prefix
  (:class:`musecoco_symbolic.attribute_head.AttributeHeadLayout`);
- backbone ``musecoco``: MuseCoco's linear-attention LM (:class:`musecoco_symbolic.backbone.MusecocoBackbone`);
- importer ``musecoco``: ``vidmusic import musecoco attribute2music.pt -o OUT``
  (:func:`musecoco_symbolic.importer.import_musecoco`);
- metric ``attribute_control``: MuseCoco's attribute-control accuracy (ASA) of generated MIDI against the
  prompt and the reference (:class:`musecoco_symbolic.metric.AttributeControlMetric`).
"""
from __future__ import annotations

from vidmusic_core import hookimpl

from .attribute_head import AttributeHeadConfig, AttributeHeadLayout
from .backbone import MusecocoBackbone, MusecocoConfig
from .codec import RemiCodec, RemiConfig
from .importer import MusecocoImportConfig, import_musecoco
from .metric import AttributeControlConfig, AttributeControlMetric


@hookimpl
def register_codecs(register) -> None:  # type: ignore[no-untyped-def]
    register("remi", RemiCodec, RemiConfig, aliases=("midi",))


@hookimpl
def register_layouts(register) -> None:  # type: ignore[no-untyped-def]
    register("attribute_head", AttributeHeadLayout, AttributeHeadConfig)


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("musecoco", MusecocoBackbone, MusecocoConfig)


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("musecoco", import_musecoco, MusecocoImportConfig)


@hookimpl
def register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("attribute_control", AttributeControlMetric, AttributeControlConfig)
