"""Hook implementations of the ``clip_frames`` plugin (entry point ``clip_frames`` in group ``vidmusic``)."""
from __future__ import annotations

from vidmusic_core import hookimpl


@hookimpl
def register_encoders(register):
    from .encoder import ClipFramesEncoder

    register("clip", ClipFramesEncoder, ClipFramesEncoder.Config, aliases=("clip_frames",))
