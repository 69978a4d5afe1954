"""Video I/O with PyAV: probe a file, sample frames by presentation time (streaming), write, mux audio.

Frames are uint8 ``[T, H, W, 3]`` RGB. Times are seconds from the start of the video stream. A video is
decoded as a stream: only the frames that are kept (already resized to ``FrameSpec.size``) stay in
memory, and a window that starts late is reached by seeking to the keyframe before it.
"""
from __future__ import annotations

import bisect
import collections
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np
import torch

from .checkpoint import atomic_path
from .errors import VidmusicError
from .types import FrameSpec, Frames

PathLike = str | os.PathLike[str]
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


class VideoError(VidmusicError):
    """A video file that cannot be used; the message names the file, the problem and what to do."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video file does not exist."""


class NoVideoStreamError(VideoError):
    """The file has no video stream (e.g. an audio-only file)."""


class ZeroDurationError(VideoError):
    """The video stream has no frames or a duration of zero."""


class VideoDecodeError(VideoError):
    """The file cannot be opened or decoded (corrupt, truncated, not a video)."""


class VideoTooShortError(VideoError):
    """The video is shorter than one frame interval of the requested sampling rate."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from the header and the first frame.

    ``duration`` seconds of the video stream; ``fps`` its average frame rate; ``n_frames`` the frame count
    from the header (or ``round(duration * fps)`` when the header has none); ``width``/``height`` of the
    decoded (stored) picture; ``rotation`` counter-clockwise degrees to turn it for display (display
    matrix); ``start_time`` seconds of the stream's first timestamp (frame times are relative to it).
    """

    path: Path
    duration: float
    fps: float
    n_frames: int
    width: int
    height: int
    rotation: int
    has_audio: bool
    codec: str
    start_time: float = 0.0

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the rotation."""
        return (self.height, self.width) if round(self.rotation / 90) % 2 else (self.width, self.height)


@contextmanager
def _open(path: PathLike) -> Iterator[Any]:
    """Open ``path`` for reading; a missing or unreadable file becomes a :class:`VideoError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise VideoNotFoundError(f"video {p} does not exist (check the path; relative paths start at {Path.cwd()})")
    try:
        container = av.open(str(p))
    except av.FFmpegError as exc:
        raise VideoDecodeError(f"cannot open video {p}: {exc}. The file is corrupt, truncated or not a "
                               "video; re-export or re-download it") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: Any, path: Path) -> Any:
    if container.streams.video:
        return container.streams.video[0]
    if container.streams.audio:
        raise NoVideoStreamError(f"{path} has no video stream (it holds only audio); give the video file, and "
                                 "pass audio files as the music side of a pair")
    raise VideoDecodeError(f"{path}: no stream could be read; the file is truncated or not a video")


def probe_video(path: PathLike) -> VideoInfo:
    """Read the header and the first frame of ``path``; raise a specific :class:`VideoError` if unusable."""
    p = Path(path)
    with _open(p) as c:
        s = _video_stream(c, p)
        tb = s.time_base
        size = p.stat().st_size
        ends = [e.pos + e.size for e in s.index_entries if e.pos >= 0]
        if ends and max(ends) > size:
            raise VideoDecodeError(f"{p} is truncated: its index refers to byte {max(ends)} but the file has "
                                   f"{size} bytes; re-export or re-download it")
        first, n_packets = None, 0
        try:
            for pk in c.demux(s):  # the last packet is empty: decoding it flushes the decoder
                n_packets += bool(pk.size)
                frames = s.decode(pk)
                if frames:
                    first = frames[0]
                    break
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot decode the first frame of {p}: {exc}; the file is corrupt") from exc
        if first is None:
            if n_packets == 0:
                raise ZeroDurationError(f"{p} has a video stream with no frames (zero duration); use a clip that "
                                        "contains at least one second of video")
            raise VideoDecodeError(f"{p}: {n_packets} video packets but none decodes; the file is corrupt")
        start = float(s.start_time * tb) if s.start_time is not None else float(first.time or 0.0)
        if s.duration:
            duration = float(s.duration * tb)
        elif c.duration:
            duration = c.duration / av.time_base - start
        else:  # no duration in the header: demux (no decoding) to the last packet
            c.seek(0)
            duration = max((float((pk.pts + (pk.duration or 0)) * tb) for pk in c.demux(s) if pk.pts is not None),
                           default=0.0) - start
        if not duration > 0:
            raise ZeroDurationError(f"{p} has a video stream of zero duration; the header is broken or the clip "
                                    "is empty; re-export it")
        rotation = 180 if int(first.rotation) == -180 else int(first.rotation)  # in (-180, 180]
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else (s.frames / duration if s.frames else 25.0)
        return VideoInfo(path=p, duration=duration, fps=fps, n_frames=int(s.frames) or round(duration * fps),
                         width=int(first.width), height=int(first.height), rotation=rotation,
                         has_audio=bool(c.streams.audio), codec=s.codec_context.name, start_time=start)


@dataclass
class SampledFrames:
    """Frames of one video: ``local`` uint8 ``[T, S, S, 3]`` at ``local_times`` float ``[T]`` seconds,
    ``global_frames`` ``[G, S, S, 3]`` at ``global_times`` ``[G]`` over the whole video, ``duration``
    seconds of the video and ``n_decoded`` frames the decoder produced to get them."""

    local: np.ndarray
    local_times: np.ndarray
    global_frames: np.ndarray
    global_times: np.ndarray
    duration: float
    n_decoded: int = 0


class _Decoder:
    """Decodes one stream forward; seeks to the keyframe before a target when that skips decoding.

    With ``targets`` (sorted times) set, a packet whose frame cannot be the nearest to any target is sent
    with ``skip_frame="NONREF"``: the decoder drops it if no other frame refers to it. Nearness is judged
    from the presentation times of the packets demuxed so far plus a look-ahead of ``LOOKAHEAD`` packets
    (conservatively: an unknown neighbour counts as far away), so every nearest frame is still decoded.
    """

    LOOKAHEAD = 16
    SEEK_GAP = 5.0  # without a keyframe index: seek (blindly) when the next target is this many seconds ahead

    def __init__(self, container: Any, info: VideoInfo, targets: np.ndarray | None = None) -> None:
        self.c, self.info = container, info
        self.s = container.streams.video[0]
        self.s.thread_type = "AUTO"
        self.n_decoded = 0
        self.frames: Iterator[Any] | None = None
        self.targets = None if targets is None else np.sort(np.asarray(targets, dtype=float))
        self.known: list[float] = []  # sorted presentation times of the packets seen so far
        self._known_set: set[float] = set()
        # keyframes: estimated presentation time s, timestamp to seek to, index in presentation order
        self.key_t: list[float] = []
        self.key_ts: list[int] = []
        self.key_i: list[int] = []
        entries, tb = list(self.s.index_entries), self.s.time_base
        if entries:
            shift = (self.s.start_time - entries[0].timestamp) if self.s.start_time is not None else 0
            n_discard = 0
            for i, e in enumerate(entries):
                n_discard += bool(e.is_discard)
                if e.is_keyframe and not e.is_discard:
                    ts = e.timestamp + shift  # index timestamps are decode times; seeking wants presentation
                    self.key_t.append(float(ts * tb) - info.start_time)
                    self.key_ts.append(ts)
                    self.key_i.append(i - n_discard)
        # an index of every frame (mp4/mov) also maps presentation indices; cue-style indices (matroska) only
        # list some keyframes; with none, seeking is blind (by time, checked, at most once backwards)
        self.complete = bool(self.s.frames) and len(entries) >= self.s.frames
        self.indexed = self.complete or len(self.key_t) >= 2
        self.blind = not self.indexed

    def seek(self, k: int) -> None:
        """Restart decoding at keyframe ``k`` (-1: the start of the file)."""
        if k < 0:
            self.c.seek(0)
        else:
            self.c.seek(self.key_ts[k], stream=self.s, backward=True)
        self.frames = self._decode()

    def worth_seeking(self, t: float, now: float) -> bool:
        """Would a seek skip decoding on the way from the frame at ``now`` to target ``t``?"""
        if self.indexed:
            k = self.key_before(t)
            return k >= 0 and self.key_t[k] > now + 1e-9
        return self.blind and t - now > self.SEEK_GAP

    def start_at(self, t: float, now: float | None) -> tuple[Any, float] | None:
        """Restart decoding at a keyframe at or before ``t`` (``now=None``: nothing decoded yet, then near the
        start just decode from the beginning); returns the first frame."""
        if self.indexed:
            k = self.key_before(t)
            if now is None and k <= 0:
                return self.next()
            while True:  # the keyframe time is estimated: if it lands after t, step back one keyframe
                self.seek(k)
                first = self.next()
                if k < 0 or first is None or first[1] <= t + 1e-9:
                    return first
                k -= 1
        if now is None and t < self.SEEK_GAP:
            return self.next()
        back = 0.0
        while True:
            if t - back <= 0:
                self.seek(-1)
                return self.next()
            self.c.seek(int((t - back + self.info.start_time) / self.s.time_base), stream=self.s, backward=True)
            self.frames = self._decode()
            first = self.next()
            if first is None or first[1] <= t + 1e-9:
                if first is not None and now is not None and first[1] <= now:
                    self.blind = False  # landed behind where we were: keyframes are too sparse to gain
                return first
            back = max(2 * back, self.SEEK_GAP)

    def _needed(self, t: float) -> bool:
        """Can the frame at time ``t`` be the nearest to a target (ties included)?"""
        assert self.targets is not None
        i = bisect.bisect_left(self.known, t)
        lo = (self.known[i - 1] + t) / 2 if i > 0 else -math.inf
        hi = (self.known[i + 1] + t) / 2 if i + 1 < len(self.known) else math.inf
        j = bisect.bisect_left(self.targets, lo - 1e-9)
        return j < len(self.targets) and self.targets[j] <= hi + 1e-9

    def _decode(self) -> Iterator[Any]:
        cc, tb, t0 = self.s.codec_context, self.s.time_base, self.info.start_time
        packets, buf, done = self.c.demux(self.s), collections.deque(), False
        while True:
            while not done and len(buf) < self.LOOKAHEAD:
                pk = next(packets, None)
                if pk is None:
                    done = True
                    break
                buf.append(pk)
                if pk.pts is not None and (t := float(pk.pts * tb) - t0) not in self._known_set:
                    self._known_set.add(t)
                    bisect.insort(self.known, t)
            if not buf:
                return
            pk = buf.popleft()
            if self.targets is not None:
                skip = pk.size and pk.pts is not None and not self._needed(float(pk.pts * tb) - t0)
                cc.skip_frame = "NONREF" if skip else "DEFAULT"
            yield from self.s.decode(pk)

    def next(self) -> tuple[Any, float] | None:
        """The next decoded frame and its time (seconds from the start of the video), or None at the end."""
        if self.frames is None:
            self.frames = self._decode()
        try:
            f = next(self.frames, None)
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"decoding {self.info.path} failed after {self.n_decoded} frames: {exc}; "
                                   "the file is corrupt or truncated") from exc
        if f is None:
            return None
        self.n_decoded += 1
        t = f.time - self.info.start_time if f.time is not None else self.n_decoded / self.info.fps
        return f, t

    def key_before(self, t: float, by_index: bool = False) -> int:
        """Index of the last keyframe at or before time (or presentation index) ``t``; -1 if none."""
        if by_index and not self.complete:
            return -1
        return bisect.bisect_right(self.key_i if by_index else self.key_t, t + 1e-9) - 1


#: swscale filter for resizing: area averaging (anti-aliased when shrinking, ~4x faster than the default)
INTERPOLATION = "AREA"
_REFORMATTERS = threading.local()  # one PyAV VideoReformatter per thread (it is not thread-safe)


def frame_to_rgb(frame: Any, width: int, height: int, interpolation: str | None = INTERPOLATION) -> np.ndarray:
    """av.VideoFrame -> uint8 ``[height, width, 3]`` RGB, resized by swscale.

    Through one reused ``av.video.reformatter.VideoReformatter`` per thread: ``frame.to_ndarray(width=...)``
    makes a new swscale context for every frame, which cost ~2 ms a frame against ~0.1 ms reused (96x96 ->
    64x64, PyAV 18); the pixels are the same."""
    from av.video.reformatter import VideoReformatter

    fmt = getattr(_REFORMATTERS, "r", None)
    if fmt is None:
        fmt = _REFORMATTERS.r = VideoReformatter()
    return fmt.reformat(frame, width=width, height=height, format="rgb24", interpolation=interpolation).to_ndarray()


def _to_array(frame: Any, spec: FrameSpec) -> np.ndarray:
    """av.VideoFrame -> uint8 ``[S, S, 3]``: PyAV resize (``squash``, or short side to S + centre crop),
    then the display rotation (resizing first is equivalent because the output is square)."""
    s = spec.size
    if spec.resize == "squash":
        arr = frame_to_rgb(frame, s, s)
    else:  # center_crop (FrameSampler validated the spec)
        scale = s / min(frame.width, frame.height)
        w, h = max(s, round(frame.width * scale)), max(s, round(frame.height * scale))
        arr = frame_to_rgb(frame, w, h)
        y, x = (h - s) // 2, (w - s) // 2
        arr = arr[y:y + s, x:x + s]
    k = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k) if k else arr)


def _pick_by_time(dec: _Decoder, targets: np.ndarray, spec: FrameSpec) -> tuple[np.ndarray, np.ndarray]:
    """For each target time the frame with the nearest presentation time (ties: the earlier one):
    uint8 ``[N, S, S, 3]`` and float ``[N]`` seconds."""
    out = np.empty((len(targets), spec.size, spec.size, 3), np.uint8)
    times = np.zeros(len(targets))
    prev = cur = None
    last: tuple[Any, np.ndarray] | None = None  # (frame, its array): repeated picks of one frame reuse it
    started = False
    for j in np.argsort(targets, kind="stable"):
        t = float(targets[j])
        if not started or (cur is not None and dec.worth_seeking(t, cur[1])):
            prev, cur = None, dec.start_at(t, cur[1] if started and cur is not None else None)
            started = True
        while cur is not None and cur[1] < t:
            prev, cur = cur, dec.next()
        if prev is None and cur is None:
            raise VideoDecodeError(f"{dec.info.path}: no frame could be decoded near {t:.3f} s; the file is "
                                   "corrupt or truncated")
        pick = prev if cur is None or (prev is not None and t - prev[1] <= cur[1] - t) else cur
        if last is None or last[0] is not pick[0]:
            last = (pick[0], _to_array(pick[0], spec))
        out[j], times[j] = last[1], pick[1]
    return out, times


def _pick_by_index(dec: _Decoder, indices: Sequence[int],
                   spec: FrameSpec) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """The frames with these indices in presentation order (closed GOPs), as decord indexes them."""
    arrays: dict[int, np.ndarray] = {}
    times: dict[int, float] = {}
    pos = 0  # presentation index of the next frame the decoder returns
    for i in sorted(set(indices)):
        k = dec.key_before(i, by_index=True)
        if k >= 0 and dec.key_i[k] > pos:
            dec.seek(k)
            pos = dec.key_i[k]
        nxt = None
        while pos <= i:
            nxt = dec.next()
            if nxt is None:
                return arrays, times
            pos += 1
        assert nxt is not None
        arrays[i], times[i] = _to_array(nxt[0], spec), nxt[1]
    return arrays, times


class FrameSampler:
    """Samples the frames a :class:`FrameSpec` asks for, streaming through the file.

    ``sampling="timestamps"``: local targets ``start + k / fps`` for every ``k`` with target < ``end``, each
    answered by the frame with the nearest presentation time (correct for any and variable frame rates;
    targets past the last frame get the last frame). Global: ``n_global`` targets evenly spaced from the
    first to the last frame of the whole video. ``sampling="vidmuse"`` (upstream parity): every
    ``ceil(native_fps / fps)``-th frame from frame ``int(start * native_fps)``, ``floor((end - start) * fps)``
    of them, padded by repeating the last; global frames ``linspace(0, n_frames - 1, n_global).long()``.
    The global frames of the last video sampled are cached (windows of one long video reuse them).
    """

    def __init__(self, spec: FrameSpec) -> None:
        if spec.sampling not in ("timestamps", "vidmuse"):
            raise VideoError(f"FrameSpec.sampling must be 'timestamps' or 'vidmuse', got {spec.sampling!r}")
        if spec.resize not in ("squash", "center_crop"):
            raise VideoError(f"FrameSpec.resize must be 'squash' or 'center_crop', got {spec.resize!r}")
        if not spec.fps > 0 or spec.size < 1 or spec.n_global < 0:
            raise VideoError(f"FrameSpec needs fps > 0, size >= 1 and n_global >= 0, got {spec}")
        self.spec = spec
        self._global_cache: tuple[tuple[Any, ...], np.ndarray, np.ndarray] | None = None

    def sample(self, path: PathLike, start: float = 0.0, end: float | None = None) -> SampledFrames:
        """Local frames over ``[start, end)`` seconds plus global frames; ``end`` (None: the whole video) is
        clipped to the video's duration, so a short clip yields fewer local frames."""
        spec, info = self.spec, probe_video(path)
        if info.duration < 1.0 / spec.fps:
            raise VideoTooShortError(f"{info.path} lasts {info.duration:.3f} s, shorter than one frame interval "
                                     f"({1 / spec.fps:.3f} s at fps={spec.fps}); use a longer clip or a higher fps")
        end = info.duration if end is None else min(float(end), info.duration)  # no frames past the end
        if not 0 <= start < info.duration or end <= start:
            raise VideoError(f"window [{start}, {end}) s is outside {info.path} (0 to {info.duration:.3f} s); "
                             "give 0 <= start < duration and end > start")
        st = info.path.stat()
        key = (str(info.path.resolve()), st.st_mtime_ns, st.st_size)
        cached = self._global_cache if self._global_cache and self._global_cache[0] == key else None
        with _open(path) as c:
            run = self._by_time if spec.sampling == "timestamps" else self._by_index
            local, local_times, glob, glob_times, n_decoded = run(c, info, start, end, cached is None)
        if cached is not None:
            glob, glob_times = cached[1], cached[2]
        self._global_cache = (key, glob, glob_times)
        return SampledFrames(local, local_times, glob, glob_times, info.duration, n_decoded)

    def _by_time(self, c: Any, info: VideoInfo, start: float, end: float, with_global: bool) -> tuple[Any, ...]:
        spec = self.spec
        loc_t = start + np.arange(max(1, math.ceil((end - start) * spec.fps - 1e-6))) / spec.fps
        glob_t = np.linspace(0.0, max(0.0, info.duration - 1.0 / info.fps), spec.n_global * with_global)
        targets = np.concatenate([loc_t, glob_t])
        dec = _Decoder(c, info, targets)
        arrays, times = _pick_by_time(dec, targets, spec)
        n = len(loc_t)
        return arrays[:n], times[:n], arrays[n:].copy(), times[n:], dec.n_decoded

    def _by_index(self, c: Any, info: VideoInfo, start: float, end: float, with_global: bool) -> tuple[Any, ...]:
        spec = self.spec
        stride = math.ceil(info.fps / spec.fps - 1e-9)
        n = max(1, math.floor((end - start) * spec.fps + 1e-6))
        first = int(start * info.fps)
        ids = [i for i in range(first, first + stride * n, stride) if i < info.n_frames]
        gids = torch.linspace(0, info.n_frames - 1, spec.n_global * with_global).long().tolist()
        dec = _Decoder(c, info)
        arr_d, t_d = _pick_by_index(dec, (ids or [first]) + gids, spec)
        ids = [i for i in ids if i in arr_d] or sorted(arr_d)[-1:]
        if not ids:
            raise VideoDecodeError(f"{info.path}: no frame at or after {start} s could be decoded; the file is "
                                   "corrupt or truncated")
        ids += [ids[-1]] * (n - len(ids))  # pad by repeating the last frame, as upstream
        gids = [g if g in arr_d else max(arr_d) for g in gids]
        glob = (np.stack([arr_d[g] for g in gids]) if gids else np.zeros((0, spec.size, spec.size, 3), np.uint8))
        return (np.stack([arr_d[i] for i in ids]), np.array([t_d[i] for i in ids]), glob,
                np.array([t_d[g] for g in gids]), dec.n_decoded)


def load_frames(paths: Sequence[PathLike], spec: FrameSpec, start: float = 0.0,
                end: float | None = None) -> Frames:
    """Sample several videos into one :class:`Frames` batch: local ``[B, T_v, S, S, 3]`` padded to the
    longest (``local_mask`` False on padding, which repeats each clip's last time and holds zeros)."""
    sampler = FrameSampler(spec)
    return frames_from_samples([sampler.sample(p, start, end) for p in paths], spec)


def frames_from_samples(items: Sequence[SampledFrames], spec: FrameSpec) -> Frames:
    """One :class:`Frames` batch from per-video samples (padded as in :func:`load_frames`)."""
    if not items:
        raise VideoError("load_frames needs at least one video path")
    t_max = max(len(x.local) for x in items)
    s = spec.size
    local = torch.zeros(len(items), t_max, s, s, 3, dtype=torch.uint8)
    times = torch.zeros(len(items), t_max, dtype=torch.float32)
    mask = torch.zeros(len(items), t_max, dtype=torch.bool)
    for b, x in enumerate(items):
        n = len(x.local)
        local[b, :n] = torch.from_numpy(x.local)
        times[b, :n] = torch.from_numpy(x.local_times)
        times[b, n:] = float(x.local_times[-1])
        mask[b, :n] = True
    glob = torch.from_numpy(np.stack([x.global_frames for x in items])) if spec.n_global else None
    glob_t = (torch.from_numpy(np.stack([x.global_times for x in items])).float() if spec.n_global else None)
    return Frames(local=local, local_times=times, local_mask=mask, global_frames=glob, global_times=glob_t,
                  duration=torch.tensor([x.duration for x in items], dtype=torch.float32))


def _container_format(path: PathLike) -> str:
    return _FORMATS.get(Path(path).suffix.lower(), "mp4")


def write_video(path: PathLike, frames: Any, fps: float | Fraction, codec: str = "libx264", *,
                times: Sequence[float] | None = None, rotation: int = 0, faststart: bool = False,
                options: dict[str, str] | None = None) -> Path:
    """Encode uint8 ``frames [T, H, W, 3]`` (numpy or torch) to ``path`` atomically; returns ``path``.

    ``fps`` may be a Fraction (``Fraction(30000, 1001)``). ``times``: presentation time of each frame in
    seconds for a variable-frame-rate file (libx264 then runs without B-frames). ``rotation``:
    counter-clockwise degrees stored as the display matrix. ``options``: encoder options (e.g. ``{"g": "10"}``).
    """
    arr = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
        raise VideoError(f"write_video({path}): frames must be uint8 [T, H, W, 3] with T >= 1, got "
                         f"{arr.dtype} {list(arr.shape)}")
    if arr.shape[1] % 2 or arr.shape[2] % 2:
        raise VideoError(f"write_video({path}): yuv420p needs even width and height, got {arr.shape[2]}x{arr.shape[1]}")
    if times is not None and len(times) != len(arr):
        raise VideoError(f"write_video({path}): {len(times)} times for {len(arr)} frames")
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    opts = dict(options or {})
    if times is not None and codec == "libx264":
        opts.setdefault("bf", "0")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=_container_format(path),
                     options={"movflags": "faststart"} if faststart else {}) as c:
            s = c.add_stream(codec, rate=rate)
            s.width, s.height, s.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
            s.options = opts
            if times is not None:
                s.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                s.set_display_rotation(rotation)
            for i, a in enumerate(arr):
                f = av.VideoFrame.from_ndarray(a, format="rgb24")
                if times is not None:
                    f.pts, f.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
                c.mux(s.encode(f))
            c.mux(s.encode(None))
    return Path(path)


@contextmanager
def video_writer(path: PathLike, width: int, height: int, fps: float | Fraction, codec: str = "libx264",
                 options: dict[str, str] | None = None) -> Iterator[Callable[[np.ndarray], None]]:
    """Stream frames into ``path`` (atomic, video only): yields ``write(frames)`` taking uint8 ``[T, H, W, 3]``
    blocks, encoded as they come, so a long video is never whole in memory (:func:`write_video` takes them all)."""
    if width % 2 or height % 2 or width < 2 or height < 2:
        raise VideoError(f"video_writer({path}): yuv420p needs an even width and height, got {width}x{height}")
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=_container_format(path)) as c:
            s = c.add_stream(codec, rate=rate)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            s.options = dict(options or {})

            def write(frames: np.ndarray) -> None:
                arr = np.asarray(frames)
                if arr.ndim != 4 or arr.shape[1:] != (height, width, 3) or arr.dtype != np.uint8:
                    raise VideoError(f"video_writer({path}): frames must be uint8 [T, {height}, {width}, 3], got "
                                     f"{arr.dtype} {list(arr.shape)}")
                for a in arr:
                    c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))

            yield write
            c.mux(s.encode(None))


@contextmanager
def _audio_blocks(audio_path: PathLike, codec: str) -> Iterator[tuple[int, int, Any]]:
    """``(sample rate, channels, read)`` where ``read(n)`` gives the next float32 ``[C, n]`` block of
    ``audio_path`` (zeros past its end). Files soundfile reads at a rate the codec takes are streamed
    (memory does not grow with their length); others are loaded whole and resampled (AAC: to 48 kHz)."""
    import soundfile as sf

    from .audio import AudioError, audio_info, load_audio

    try:
        f = sf.SoundFile(str(audio_path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        f = None
    if f is not None and (codec != "aac" or f.samplerate in _AAC_RATES):
        with f:
            def read_file(want: int) -> np.ndarray:
                x = f.read(want, dtype="float32", always_2d=True).T  # [C, <= want]
                if not np.isfinite(x).all():
                    raise AudioError(f"{audio_path} contains NaN or infinite samples; nothing was muxed")
                return np.ascontiguousarray(np.pad(x, ((0, 0), (0, want - x.shape[1]))))

            yield int(f.samplerate), int(f.channels), read_file
        return
    if f is not None:
        f.close()
    sr = audio_info(audio_path).sample_rate
    if codec == "aac" and sr not in _AAC_RATES:
        sr = 48000  # resampled by load_audio
    audio = load_audio(audio_path, sr, mono=False, allow_silent=True)  # [C, L]
    pos = 0

    def read_loaded(want: int) -> np.ndarray:
        nonlocal pos
        x = audio[:, pos:pos + want]
        pos += x.shape[1]
        return np.ascontiguousarray(np.pad(x, ((0, 0), (0, want - x.shape[1]))), dtype=np.float32)

    yield sr, int(audio.shape[0]), read_loaded


def mux_audio(video_path: PathLike, audio_path: PathLike, out_path: PathLike, *, codec: str = "aac",
              bit_rate: int = 192_000) -> Path:
    """Write ``out_path``: the video stream of ``video_path`` copied packet by packet (not re-encoded) plus
    ``audio_path`` encoded with ``codec``, trimmed or zero-padded to the video's length. The audio is read
    in blocks (a long soundtrack is never whole in memory) unless it must be resampled. Atomic."""
    from .audio import AudioError

    info = probe_video(video_path)
    with _audio_blocks(audio_path, codec) as (sr, channels, read):
        if channels > 2:
            raise AudioError(f"{audio_path} has {channels} channels; mux_audio takes mono or stereo")
        n = int(round(info.duration * sr))
        layout = "mono" if channels == 1 else "stereo"
        fmt = _container_format(out_path)
        with _open(video_path) as src, atomic_path(out_path) as tmp:
            with av.open(str(tmp), "w", format=fmt,
                         options={"movflags": "faststart"} if fmt in ("mp4", "mov") else {}) as dst:
                vin = src.streams.video[0]
                vout = dst.add_stream_from_template(vin)
                aout = dst.add_stream(codec, rate=sr)
                aout.layout, aout.bit_rate = layout, bit_rate
                pos, chunk = 0, 1024

                def encode_until(sample: int) -> None:
                    nonlocal pos
                    while pos < min(sample, n):
                        want = min(chunk, n - pos)
                        fr = av.AudioFrame.from_ndarray(read(want), format="fltp", layout=layout)
                        fr.sample_rate, fr.pts, fr.time_base = sr, pos, Fraction(1, sr)
                        dst.mux(aout.encode(fr))
                        pos += want

                for pkt in src.demux(vin):
                    if pkt.dts is None:
                        continue
                    if pkt.pts is not None:  # interleave: audio up to one second past this video packet
                        encode_until(int((float(pkt.pts * pkt.time_base) - info.start_time + 1.0) * sr))
                    pkt.stream = vout
                    dst.mux(pkt)
                encode_until(n)
                dst.mux(aout.encode(None))
    return Path(out_path)
