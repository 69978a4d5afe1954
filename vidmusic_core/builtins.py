"""Components the core provides (layouts, codecs, metrics, weight-free encoders), registered through
the same hooks and entry-point group as every other plugin (entry point ``core``)."""
from __future__ import annotations

from .hookspecs import hookimpl  # noqa: F401  (used as components land)
