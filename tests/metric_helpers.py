"""Shared by the metric test modules: ``from metric_helpers import core, metric`` (importing ``core`` puts
its autouse fixture into that module only, unlike conftest, where it would reach every test)."""
from __future__ import annotations

from typing import Any

import pytest

from vidmusic_core import builtins
from vidmusic_core.plugins import get_component


@pytest.fixture(autouse=True)
def core(vidmusic_host):  # type: ignore[no-untyped-def]
    """The core plugin registered on the test's plugin host (its metrics)."""
    vidmusic_host.register_plugin(builtins, name="core")
    return vidmusic_host


def metric(name: str, **cfg: Any) -> Any:
    """The registered metric ``name`` built with config fields ``cfg``."""
    comp = get_component("metric", name)
    return comp.build(comp.config_cls(**cfg))
