"""``vidmusic demo``: a local web page (gradio, the ``vidmusic[demo]`` extra) over the public model API — upload a
video, generate, listen; with two or more models a blind A/B listening test whose votes go to a CSV.

:mod:`.session` holds what the page does (no gradio), :mod:`.votes` the vote CSV and its summary, :mod:`.app` the
page; gradio is imported only when the page is built."""
from __future__ import annotations

from typing import Any

from .session import MAX_SECONDS, SETTINGS, DemoInputError, DemoModel, DemoResult, generate, load_models
from .votes import PairSummary, VoteLog, format_summary, summarise_votes

__all__ = ["MAX_SECONDS", "SETTINGS", "DemoInputError", "DemoModel", "DemoResult", "PairSummary", "VoteLog",
           "build_app", "format_summary", "generate", "launch", "load_models", "summarise_votes"]


def build_app(*args: Any, **kwargs: Any) -> Any:
    """The gradio page (see :func:`vidmusic_core.demo.app.build_app`)."""
    from .app import build_app as build

    return build(*args, **kwargs)


def launch(*args: Any, **kwargs: Any) -> Any:
    """Load the models and serve the page (see :func:`vidmusic_core.demo.app.launch`)."""
    from .app import launch as serve

    return serve(*args, **kwargs)
