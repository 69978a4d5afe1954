"""Hook implementations of the ``clip_guided`` plugin (entry point ``clip_guided`` in group ``vidmusic``)."""
from __future__ import annotations

from vidmusic_core import hookimpl


@hookimpl
def register_visualizers(register):
    from .visualizer import ClipGuidedVisualizer

    register("clip_guided", ClipGuidedVisualizer, ClipGuidedVisualizer.Config, aliases=("metamusic",))


@hookimpl
def register_importers(register):
    from .wav2clip import ImportConfig, import_wav2clip

    register("wav2clip", import_wav2clip, ImportConfig)
