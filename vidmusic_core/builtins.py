"""Components the core provides (layouts, codecs, metrics, weight-free encoders), registered through
the same hooks and entry-point group as every other plugin (entry point ``core``)."""
from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def register_codecs(register):  # type: ignore[no-untyped-def]
    from .codecs.encodec import EncodecCodec
    from .codecs.mel_latent import MelLatentCodec
    from .codecs.rvq_mel import RVQMelCodec

    register("encodec", EncodecCodec, EncodecCodec.Config)
    register("rvq_mel", RVQMelCodec, RVQMelCodec.Config)
    register("mel_latent", MelLatentCodec, MelLatentCodec.Config)


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from .encoders.blank import BlankEncoder
    from .encoders.concat import ConcatEncoder
    from .encoders.motion import MotionEncoder

    register("motion", MotionEncoder, MotionEncoder.Config)
    register("concat", ConcatEncoder, ConcatEncoder.Config)
    register("none", BlankEncoder, BlankEncoder.Config)


@hookimpl
def register_layouts(register):  # type: ignore[no-untyped-def]
    from .layouts.cross import CrossLayout
    from .layouts.prefix import AlignedLayout, PrefixLayout

    register("prefix", PrefixLayout, PrefixLayout.Config)
    register("aligned", AlignedLayout, AlignedLayout.Config)
    register("cross", CrossLayout, CrossLayout.Config)


@hookimpl
def register_metrics(register):  # type: ignore[no-untyped-def]
    from .metrics import register_all

    register_all(register)  # beat_f1 … fad kad visual_sync cut_downbeat event_corr seam_continuity


@hookimpl
def register_presets(register):  # type: ignore[no-untyped-def]
    from .config import _shipped_names, shipped_preset

    for name in _shipped_names():  # default (the embedded default), smoke, toy
        register(name, lambda name=name: shipped_preset(name))


@hookimpl
def register_visualizers(register):  # type: ignore[no-untyped-def]
    from .visualizers.reactive import ReactiveVisualizer

    register("reactive", ReactiveVisualizer, ReactiveVisualizer.Config)
