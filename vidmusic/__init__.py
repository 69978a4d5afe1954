"""vidmusic — music generation conditioned on video. The short way in::

    import vidmusic
    model = vidmusic.load("runs/lstv-aligned-inspire-<hash>")   # a run, or any model directory
    for result in model.generate(["my_clip.mp4"], "out/"):
        print(result.wav, result.mp4, result.meta["seed"])

:func:`load` reads a model directory (``model_index.yaml``, see :mod:`vidmusic_core.model_dir`); the
framework itself (components, config, training, the CLI) is :mod:`vidmusic_core`.
"""
from __future__ import annotations

from pathlib import Path

from vidmusic_core import __version__
from vidmusic_core.model_dir import VidMusicPipeline
from vidmusic_core.videos import GeneratedMusic

__all__ = ["GeneratedMusic", "VidMusicPipeline", "__version__", "load"]


def load(path: str | Path, device: str | None = None) -> VidMusicPipeline:
    """The model in ``path`` (a model directory, a run directory or a checkpoint directory) on ``device``
    (default: CUDA when there is one, else CPU)."""
    return VidMusicPipeline.from_dir(path, device=device)
