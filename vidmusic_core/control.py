"""The shuffled-video control: which clip's video each clip is generated from.

The control is the floor a conditioning gain is measured against, so it must never give a clip its own
video. With fewer than two clips no such pairing exists; the run then says so (``results.json``,
``report.html``, the sweep table) instead of scoring a copy of the conditioned output.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")

#: ``results.json`` key holding how the control was made, or why it could not be
RESULTS_KEY = "shuffled_control"


def shuffled_sources(items: Sequence[T]) -> list[T] | None:
    """For ``items`` (in the order given) the item whose video each one is generated from: item i takes
    the video of item (i + 1) mod n, a rotation that never maps an item to itself. ``None`` when there are
    fewer than 2 items (no control is possible)."""
    n = len(items)
    if n < 2:
        return None
    return [items[(i + 1) % n] for i in range(n)]


def control_note(n_items: int, generated: bool = True) -> str:
    """What ``results.json`` records under :data:`RESULTS_KEY` for ``n_items`` scored clips
    (``generated``: whether the run has a ``samples_shuffled/`` folder)."""
    if n_items < 2:
        return f"not possible with {n_items} test clip{'' if n_items == 1 else 's'}"
    if not generated:
        return "not generated (eval.shuffled_control is false)"
    return "each clip generated from the video of the next test clip (by name)"


def control_missing(results: dict) -> str | None:
    """Why ``results`` (a ``results.json``) has no shuffled-control scores, or ``None`` when it has them
    (or comes from a run older than the note)."""
    note = results.get(RESULTS_KEY)
    return note if isinstance(note, str) and note.startswith("not ") else None
