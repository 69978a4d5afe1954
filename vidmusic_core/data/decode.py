"""Per-item decoding for ``prepare``: music checks, frame and audio decode, in isolated worker processes.

An item that cannot be used never stops a run: every task returns either its value or a
:class:`Skip` with the reason, and :class:`DecodePool` runs tasks in ``spawn``-ed worker processes
(one task per worker at a time), so a worker that dies on one item — a decoder segfault, the kernel's
out-of-memory killer — costs that item (``worker died (signal 9)``) and a fresh worker takes the next.

Music checks (:func:`check_music`), in this order, each a specific reason in ``bad_items.json``:
undecodable file; WAV whose data chunk is cut short (``truncated``); NaN/inf samples; **silence**: the
loudest sample of the clip is below ``SILENT_DBFS`` = -60 dBFS (1/1000 of full scale; 16-bit dither
is about -96 dBFS, quiet music still peaks far above -40 dBFS); **too short**: the audio lasts less
than ``MIN_FRACTION`` = 50 % of the clip (``min(clip_seconds, video duration)``).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import struct
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .manifest import Item

#: tasks each decode worker holds at once (the one it decodes and the next, already in its pipe)
DEPTH = 2
#: how much lower the decode workers' CPU priority is than the preparing process's (``os.nice``)
WORKER_NICE = 5
SILENT_DBFS = -60.0
MIN_FRACTION = 0.5


@dataclass(frozen=True)
class Skip:
    """A task that could not produce its value: ``reason`` says why (goes to ``bad_items.json``)."""

    reason: str


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file whose ``data`` chunk claims more bytes than the file holds: the reason."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos, rate, block = 12, 0, 0
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, n = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(16)
                if len(fmt) == 16:
                    _, _, rate, _, block, _ = struct.unpack("<HHIIHH", fmt)
            elif cid == b"data":
                have = size - pos - 8
                if n != 0xFFFFFFFF and have < n:  # 0xFFFFFFFF: streamed wav of unknown length
                    secs = (f"{have / (rate * block):.2f} s of the {n / (rate * block):.2f} s"
                            if rate and block else f"{have} of {n} bytes")
                    return f"truncated audio {path}: the file holds {secs} its header announces; re-export or re-download it"
                return None
            pos += 8 + n + (n & 1)


def check_music(item: Item, clip_seconds: float) -> str | None:
    """Why the item's music cannot be trained on (see the module docstring), or None when it is fine."""
    from ..audio import AudioError, load_audio

    if item.music_kind == "midi":
        return None  # symbolic codecs parse the MIDI when they encode it; failures are recorded then
    p = Path(item.music)
    if p.suffix.lower() == ".wav":
        why = _wav_truncation(p)
        if why:
            return why
    try:
        audio = load_audio(p, None, mono=True, allow_silent=True)  # [1, L], the file's own rate
    except AudioError as exc:
        return str(exc)
    from ..audio import audio_info

    sr = audio_info(p).sample_rate
    clip = audio[:, : int(round(clip_seconds * sr))]
    peak = float(np.abs(clip).max()) if clip.size else 0.0
    if peak < 10 ** (SILENT_DBFS / 20):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        return f"silent audio {p}: the loudest sample of the first {clip_seconds:g} s is {level}, below the " \
               f"{SILENT_DBFS:g} dBFS threshold; use a file with music in it"
    need = min(clip_seconds, item.duration or clip_seconds)
    have = audio.shape[1] / sr
    if have < MIN_FRACTION * need:
        return f"audio too short {p}: {have:.2f} s, the clip needs {need:.2f} s (at least {MIN_FRACTION:.0%} of it)"
    return None


def decode_item(item: Item, spec: Any, clip_seconds: float, sample_rate: int | None) -> dict[str, Any]:
    """The item's frames (``spec`` given: :class:`~vidmusic_core.video.SampledFrames` of the first
    ``clip_seconds``) and mono audio ``[1, L]`` at ``sample_rate`` (given), as numpy."""
    from ..audio import load_audio
    from ..video import FrameSampler

    out: dict[str, Any] = {}
    if spec is not None:
        out["frames"] = FrameSampler(spec).sample(item.video, 0.0, clip_seconds)
    if sample_rate is not None:
        audio = load_audio(item.music, sample_rate, mono=True)  # [1, L]
        out["audio"] = np.ascontiguousarray(audio[:, : int(round(clip_seconds * sample_rate))])
    return out


def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(*args)``, or a :class:`Skip` naming the error: one item's failure is that item's only."""
    try:
        return fn(*args)
    except MemoryError:
        return Skip("out of memory while decoding")
    except Exception as exc:  # a decoder may raise anything on a broken file; the run goes on
        from ..errors import VidmusicError

        return Skip(str(exc) if isinstance(exc, VidmusicError) else f"{type(exc).__name__}: {exc}")


def _worker(conn: Any) -> None:
    try:  # the parent's encoding is what the decoders feed: on a busy machine it should get the CPU first
        os.nice(WORKER_NICE)
    except OSError:
        pass
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone (e.g. killed): stop
            return
        if msg is None:
            return
        i, fn, args = msg
        conn.send((i, _run(fn, args)))


class DecodePool:
    """``workers`` spawned processes, one task each at a time; ``workers=0`` runs tasks in this process
    (no isolation: a crash there ends the run). Use as a context manager."""

    def __init__(self, workers: int) -> None:
        self.workers = max(0, int(workers))
        self._ctx = mp.get_context("spawn")
        self._procs: list[tuple[Any, Any]] = []
        self._stop = False

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "DecodePool":
        """Start the workers now, without waiting: they import in the background (~3 s of CPU each) while this
        process does other work (the first :meth:`imap` otherwise starts them and waits)."""
        while len(self._procs) < self.workers:
            self._procs.append(self._spawn())
        return self

    def _spawn(self) -> tuple[Any, Any]:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, args=(child,), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*t) for t in tasks]`` in order, each entry the value or a :class:`Skip`."""
        return list(self.imap(fn, tasks))

    def imap(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], ahead: int | None = None) -> Iterator[Any]:
        """Like :meth:`map`, yielding in order; the workers keep decoding up to ``ahead`` (default
        ``4 * workers``) tasks beyond the one consumed, so decoding overlaps the caller's encoding."""
        if self.workers == 0:
            for t in tasks:
                yield _run(fn, t)
            return
        ahead = ahead or 4 * self.workers
        results: dict[int, Any] = {}
        cond = threading.Condition()
        state = {"consumed": 0, "error": None}
        self._stop = False

        def schedule() -> None:
            try:
                self._schedule(fn, tasks, ahead, results, cond, state)
            except BaseException as exc:  # surfaces in the consumer
                with cond:
                    state["error"] = exc
                    cond.notify_all()

        thread = threading.Thread(target=schedule, daemon=True)
        thread.start()
        try:
            for i in range(len(tasks)):
                with cond:
                    while i not in results and state["error"] is None:
                        cond.wait()
                    if state["error"] is not None:
                        raise state["error"]
                    res = results.pop(i)
                    state["consumed"] = i + 1
                yield res
        finally:
            self._stop = True
            thread.join()
            if state["consumed"] < len(tasks):  # abandoned: workers may still hold tasks of this call
                for proc, conn in self._procs:
                    proc.kill()
                    proc.join()
                    conn.close()
                self._procs = []

    def _schedule(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], ahead: int,
                  results: dict[int, Any], cond: threading.Condition, state: dict[str, Any]) -> None:
        """Feed the workers, :data:`DEPTH` tasks each in flight (so a worker never waits for this thread,
        which shares the GIL with the caller's encoding, between two items), and collect their results.

        A worker answers its tasks in the order sent, so when one dies the oldest task it held is the one
        that killed it: that task becomes a :class:`Skip`; the others it held go to a fresh worker."""
        while len(self._procs) < min(self.workers, len(tasks)):
            self._procs.append(self._spawn())
        nxt, done = 0, 0
        if not tasks:
            return
        retry: deque[int] = deque()  # tasks a dead worker held behind the one that killed it
        busy: dict[int, deque[int]] = {s: deque() for s in range(len(self._procs))}  # slot -> tasks in flight

        def send(slot: int, i: int) -> None:
            try:
                self._procs[slot][1].send((i, fn, tasks[i]))
            except (BrokenPipeError, OSError):  # the worker died while idle: a fresh one takes it
                self._procs[slot][0].join()
                self._procs[slot] = self._spawn()
                self._procs[slot][1].send((i, fn, tasks[i]))
            busy[slot].append(i)

        while done < len(tasks) and not self._stop:
            for _ in range(DEPTH):
                for slot in range(len(self._procs)):
                    if len(busy[slot]) >= DEPTH:
                        continue
                    if retry:
                        send(slot, retry.popleft())
                    elif nxt < len(tasks) and nxt < state["consumed"] + ahead:
                        send(slot, nxt)
                        nxt += 1
            live = [s for s in busy if busy[s]]
            if not live:  # waiting for the consumer to catch up
                with cond:
                    cond.wait(timeout=0.05)
                continue
            ready = wait([self._procs[s][1] for s in live] + [self._procs[s][0].sentinel for s in live], timeout=0.5)
            for slot in live:
                proc, conn = self._procs[slot]
                got, first = False, conn in ready
                while busy[slot] and (first or conn.poll()):
                    first = False  # after the first recv only poll() says whether more is there
                    try:
                        i, res = conn.recv()
                    except (EOFError, OSError):
                        break
                    busy[slot].remove(i)
                    done += 1
                    got = True
                    with cond:
                        results[i] = res
                        cond.notify_all()
                if got or not busy[slot]:
                    continue
                if proc.sentinel in ready or not proc.is_alive():
                    proc.join()
                    code = proc.exitcode
                    why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    i = busy[slot].popleft()
                    retry.extend(busy[slot])
                    busy[slot].clear()
                    done += 1
                    conn.close()
                    self._procs[slot] = self._spawn()
                    with cond:
                        results[i] = Skip(f"the decoding worker died ({why}: a decoder crash or out of memory); "
                                          "this item was skipped")
                        cond.notify_all()

    def close(self) -> None:
        self._stop = True
        for proc, conn in self._procs:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc, conn in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._procs = []
