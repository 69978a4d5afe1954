"""Stopping a generation cleanly from another thread, and seeing how far it got.

The generation loops call :func:`generation_step` once per step (a token column of a token LM, an ODE step of a
flow backbone), and the long-video loop calls :func:`generation_part` before each of its windows. Outside
:func:`controlled` both are no-ops. Inside it, the step is recorded on the
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
    """A stop flag and the progress of the generation that runs under it: ``done`` of ``total`` steps of the
    current loop (``what`` names it), and ``part_done`` of ``part_total`` ``part_unit`` of the long-video loop
    (windows, or seconds of a symbolic video) before the current window."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.done, self.total, self.what = 0, 0, ""
        self.part_done, self.part_total, self.part_unit = 0.0, 0.0, ""
        self.running = False  # set by whoever runs the generation (e.g. the demo's worker thread)
        self.interrupted = False  # set when a loop raised Interrupted (a stop after the last step is too late)

    def stop(self) -> None:
        """Ask the generation to stop at its next step (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def fraction(self) -> float | None:
        """Progress in [0, 1] (of the whole video when it has several windows, the current window counted as one
        unit of them), None before the first step of a one-window video."""
        if self.part_total <= 1:
            return min(1.0, self.done / self.total) if self.total else None
        step = min(1.0, self.done / self.total) if self.total else 0.0
        return min(1.0, (self.part_done + step * min(1.0, self.part_total - self.part_done)) / self.part_total)

    def describe(self) -> str:
        """Where the generation is, e.g. ``window 3 of 8, token column 10 of 14`` (the window only when there
        are several; empty before the first step)."""
        where = [f"{self.what} {self.done} of {self.total}"] if self.total else []
        if self.part_total > 1 and self.part_unit == "window":
            where.insert(0, f"window {int(self.part_done) + 1} of {int(self.part_total)}")
        elif self.part_done > 0:
            where.insert(0, f"{self.part_done:g} of {self.part_total:g} {self.part_unit} made")
        return ", ".join(where)


_CURRENT: ContextVar[GenerationControl | None] = ContextVar("vidmusic_generation_control", default=None)


@contextmanager
def controlled(control: GenerationControl) -> Iterator[GenerationControl]:
    """Generation loops in this context (this thread) report to ``control`` and stop when it is stopped."""
    token = _CURRENT.set(control)
    try:
        yield control
    finally:
        _CURRENT.reset(token)


def generation_part(done: float, total: float, unit: str = "window") -> None:
    """The long-video loop is about to make its next window, with ``done`` of ``total`` ``unit`` made: recorded on
    the current control, and :class:`Interrupted` raised when it was stopped. A no-op outside :func:`controlled`."""
    control = _CURRENT.get()
    if control is None:
        return
    control.part_done, control.part_total, control.part_unit = float(done), float(total), unit
    control.done = control.total = 0
    if control.stopped:
        control.interrupted = True
        raise Interrupted(f"generation stopped before {control.describe() or f'{unit} {done:g} of {total:g}'}")


def generation_step(done: int, total: int, what: str = "step") -> None:
    """One step of a generation loop (``done`` of ``total``): recorded on the current control, and
    :class:`Interrupted` raised when it was stopped. A no-op outside :func:`controlled`."""
    control = _CURRENT.get()
    if control is None:
        return
    control.done, control.total, control.what = done, total, what
    if control.stopped:
        control.interrupted = True
        raise Interrupted(f"generation stopped at {control.describe()}")
