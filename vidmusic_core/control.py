"""The shuffled-video control: which clip's video each clip is generated from.

The control is the floor a conditioning gain is measured against, so it must never give a clip its own
video. With fewer than two clips no such pairing exists; the run then says so (``results.json``,
``report.html``, the sweep table) instead of scoring a copy of the conditioned output.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TypeVar

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


def control_note(n_items: int, conditioned: Path | None = None, shuffled: Path | None = None) -> str:
    """What ``results.json`` records under :data:`RESULTS_KEY` for ``n_items`` scored clips, given the
    run's ``samples/`` (``conditioned``) and ``samples_shuffled/`` folders: how the control was made, that
    it is missing and why, or which control samples are byte-identical to their conditioned sample (the
    model did not use the video for them)."""
    if n_items < 2:
        return f"not possible with {n_items} test clip{'' if n_items == 1 else 's'}"
    if shuffled is None or not shuffled.is_dir():
        return "not generated (eval.shuffled_control is false)"
    note = "each clip generated from the video of the next test clip (by name)"
    same = identical_samples(conditioned, shuffled) if conditioned is not None else []
    if same:
        note += (f"; WARNING: {len(same)} of {n_items} control samples are identical to the conditioned ones "
                 f"(the model ignores the video for them): {', '.join(same[:5])}{', ...' if len(same) > 5 else ''}")
    return note


def identical_samples(conditioned: Path, shuffled: Path) -> list[str]:
    """Names whose ``shuffled/<name>.wav`` is byte-identical to ``conditioned/<name>.wav``."""
    out = []
    for wav in sorted(shuffled.glob("*.wav")):
        twin = conditioned / wav.name
        if twin.is_file() and twin.stat().st_size == wav.stat().st_size and twin.read_bytes() == wav.read_bytes():
            out.append(wav.stem)
    return out


def control_warning(results: dict[str, Any]) -> str | None:
    """The control note of ``results`` (a ``results.json``) when it reports a problem (no control, or
    control samples equal to the conditioned ones); ``None`` when the control is fine or the run predates
    the note."""
    note = results.get(RESULTS_KEY)
    return note if isinstance(note, str) and (note.startswith("not ") or "WARNING" in note) else None


def control_missing(results: dict[str, Any]) -> str | None:
    """Why ``results`` has no shuffled-control scores (e.g. "not possible with 1 test clip"), else ``None``."""
    note = results.get(RESULTS_KEY)
    return note if isinstance(note, str) and note.startswith("not ") else None
