"""Stopping a generation cleanly from another thread, and seeing how far it got.

The generation loops call :func:`generation_step` once per step (a token column of a token LM, an ODE step of a
flow backbone). Outside :func:`controlled` that is a no-op. Inside it, the step is recorded on the
:class:`GenerationControl` (for a progress bar) and, once :meth:`GenerationControl.stop` was called, the loop
raises :class:`Interrupted` at its next step: no half-written file, the caller decides what to show::

    control = GenerationControl()
    with controlled(control):          # in the worker thread
        model.generate([video], out)   # raises Interrupted soon after control.stop() (any thread)
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from .errors import VidmusicError


class Interrupted(VidmusicError):
    """A generation stopped on request (:meth:`GenerationControl.stop`) before it finished."""


class GenerationControl:
    """A stop flag and the progress of the generation that runs under it (``done`` of ``total`` steps of the
    current loop, ``what`` names it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.done, self.total, self.what = 0, 0, ""
        self.running = False  # set by whoever runs the generation (e.g. the demo's worker thread)

    def stop(self) -> None:
        """Ask the generation to stop at its next step (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def fraction(self) -> float | None:
        """Progress of the current loop in [0, 1], None before its first step."""
        return min(1.0, self.done / self.total) if self.total else None


_CURRENT: ContextVar[GenerationControl | None] = ContextVar("vidmusic_generation_control", default=None)


@contextmanager
def controlled(control: GenerationControl) -> Iterator[GenerationControl]:
    """Generation loops in this context (this thread) report to ``control`` and stop when it is stopped."""
    token = _CURRENT.set(control)
    try:
        yield control
    finally:
        _CURRENT.reset(token)


def generation_step(done: int, total: int, what: str = "step") -> None:
    """One step of a generation loop (``done`` of ``total``): recorded on the current control, and
    :class:`Interrupted` raised when it was stopped. A no-op outside :func:`controlled`."""
    control = _CURRENT.get()
    if control is None:
        return
    control.done, control.total, control.what = done, total, what
    if control.stopped:
        raise Interrupted(f"generation stopped at {what} {done} of {total}")
