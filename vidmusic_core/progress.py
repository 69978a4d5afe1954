"""Progress bars that read well in a terminal and in a log file.

:func:`progress_bar` is a tqdm bar when stderr is a terminal (or a notebook). Otherwise, e.g. under
``nohup``, a batch scheduler or ``2> log``, a redrawn bar would fill the log with hundreds of
carriage-return updates, so it writes plain lines instead: one at most every ``interval`` seconds
(:data:`LOG_INTERVAL`, or the ``VIDMUSIC_PROGRESS_INTERVAL`` environment variable) and one when the
work ends::

    prepare: 96/200 item (48%) 30.1 s, 3.19 item/s, about 33 s left
    prepare: 200/200 item (100%) in 62.4 s, 3.21 item/s
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

#: seconds between two log lines when stderr is not a terminal
LOG_INTERVAL = 30.0


def _interactive(stream: IO[str]) -> bool:
    if "ipykernel" in sys.modules:  # notebooks: stderr is no TTY, but tqdm.auto draws a widget
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False


def progress_bar(total: int | float | None = None, desc: str = "", unit: str = "it", initial: int | float = 0,
                 disable: bool = False, interval: float | None = None, file: IO[str] | None = None,
                 **tqdm_kw: Any) -> Any:
    """A progress bar with tqdm's ``update``/``set_postfix``/``close`` (and ``with``): tqdm on a terminal,
    :class:`LogProgress` lines otherwise. ``tqdm_kw`` go to tqdm only."""
    stream = file if file is not None else sys.stderr
    if disable or _interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=file, **tqdm_kw)
    if interval is None:
        interval = float(os.environ.get("VIDMUSIC_PROGRESS_INTERVAL", LOG_INTERVAL))
    return LogProgress(total, desc, unit, initial, interval, stream)


class LogProgress:
    """Progress as plain lines: at most one every ``interval`` seconds, and a summary at :meth:`close`."""

    def __init__(self, total: int | float | None, desc: str, unit: str, initial: int | float, interval: float,
                 stream: IO[str]) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval, self.stream = interval, stream
        self.start = self.last = time.monotonic()
        self.initial = initial
        self.postfix = ""
        self.closed = False

    def update(self, n: int | float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._write(done=False)

    def set_postfix(self, refresh: bool = True, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(done=True)

    def _write(self, done: bool) -> None:
        elapsed = time.monotonic() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        count = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        line = f"{self.desc + ': ' if self.desc else ''}{count} {self.unit}{pct} "
        line += f"in {elapsed:.1f} s" if done else f"{elapsed:.1f} s"
        line += f", {rate:.3g} {self.unit}/s"
        if not done and self.total and rate > 0:
            line += f", about {(self.total - self.n) / rate:.0f} s left"
        if self.postfix:
            line += f", {self.postfix}"
        print(line, file=self.stream, flush=True)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
