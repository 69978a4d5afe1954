"""The toy dataset's video: frames that carry the music, encoded to mp4 with PyAV.

- background hue = key tonic (C red, then round the colour wheel in 12 steps); brightness = mode
  (major: value 0.85, minor: value 0.35);
- a grey disc in the centre (the *pulser*) flashes white and grows on every beat, a Gaussian bump
  of width ``0.5 / fps`` s centred on the beat, bigger on downbeats;
- coloured squares (the *objects*), two per note-density level (2, 4 or 6), in the cells of a 4x4 grid
  outside the centre; their hue names the section's lead instrument (value: dark on a major, bright on
  a minor background, for contrast); at a cut (section change)
  they jump to a new layout and colour. Nothing else moves.
"""
from __future__ import annotations

import colorsys
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import VidmusicError
from .toy_music import PROGRAMS, ClipMusic

MAJOR_VALUE, MINOR_VALUE, BG_SATURATION = 0.85, 0.35, 0.55
OBJECT_VALUE = {"major": 0.45, "minor": 1.0}
PULSER_RADIUS, PULSE_GROWTH, DOWNBEAT_GROWTH = 0.12, 0.25, 0.4  # radius as a fraction of the frame size
PULSER_LOW, PULSER_HIGH = 0.15, 1.0
GRID = 4
#: lead program -> object hue, evenly spread
LEAD_HUES = {p: i / len(PROGRAMS["lead"]) for i, p in enumerate(PROGRAMS["lead"])}


class VideoWriteError(VidmusicError):
    """PyAV could not encode the toy video."""


def rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]


def background_rgb(tonic: int, mode: str) -> tuple[int, int, int]:
    return rgb(tonic / 12, BG_SATURATION, MAJOR_VALUE if mode == "major" else MINOR_VALUE)


def object_rgb(lead_program: int, mode: str) -> tuple[int, int, int]:
    """Hue from the lead program; value opposite to the background's (dark on bright, bright on dark)."""
    return rgb(LEAD_HUES[lead_program], 1.0, OBJECT_VALUE[mode])


def first_frame(t: float, fps: float) -> int:
    """Index of the first frame shown at or after ``t`` (frame k is at ``k / fps``)."""
    return int(np.ceil(t * fps - 1e-6))


def pulse(times: np.ndarray, beats: list[float], fps: float) -> np.ndarray:
    """Pulse envelope in [0, 1] at ``times``: a Gaussian bump (sigma ``0.5/fps``) on every beat."""
    if not beats:
        return np.zeros_like(times)
    d = times[:, None] - np.asarray(beats)[None, :]
    return np.exp(-0.5 * (d / (0.5 / fps)) ** 2).max(axis=1)


def pulser_box(size: int) -> list[int]:
    """[x0, y0, x1, y1) of the square the pulser never leaves."""
    r = int(np.ceil(size * PULSER_RADIUS * (1 + DOWNBEAT_GROWTH))) + 1
    c = size // 2
    return [c - r, c - r, c + r, c + r]


def layout(rng: np.random.Generator, size: int, n_objects: int, lead_program: int, mode: str) -> list[dict]:
    """Objects of one section: boxes [x0, y0, x1, y1) in random outer grid cells, one colour."""
    cell = size // GRID
    outer = [(r, c) for r in range(GRID) for c in range(GRID) if not (0 < r < GRID - 1 and 0 < c < GRID - 1)]
    side = max(4, size // 8)
    picks = rng.choice(len(outer), size=min(n_objects, len(outer)), replace=False)
    colour = list(object_rgb(lead_program, mode))
    objects = []
    for k in sorted(int(i) for i in picks):
        r, c = outer[k]
        margin = min(2, (cell - side) // 2)  # objects in neighbouring cells never touch
        x0, y0 = (int(v) for v in np.array([c, r]) * cell + rng.integers(margin, cell - side - margin + 1, size=2))
        objects.append({"box": [x0, y0, x0 + side, y0 + side], "rgb": colour})
    return objects


def render_frames(clip: ClipMusic, layouts: list[list[dict]], size: int, fps: float) -> np.ndarray:
    """uint8 frames [T, size, size, 3] at times ``k / fps``, T = round(seconds * fps)."""
    n = int(round(clip.seconds * fps))
    times = np.arange(n) / fps
    beats = clip.beat_times()
    downbeats = set(round(t, 9) for t in clip.downbeat_times())
    env = pulse(times, beats, fps)
    nearest = np.abs(times[:, None] - np.asarray(beats)[None, :]).argmin(axis=1) if beats else np.zeros(n, int)
    growth = np.array([DOWNBEAT_GROWTH if beats and round(beats[j], 9) in downbeats else PULSE_GROWTH
                       for j in nearest])
    bg = np.empty((size, size, 3), np.float32)
    bg[:] = background_rgb(clip.tonic, clip.mode)
    layers = []
    for objects in layouts:
        img = bg.copy()
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            img[y0:y1, x0:x1] = 0
            img[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = o["rgb"]
        layers.append(img)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dist = np.hypot(xx - size / 2, yy - size / 2)
    frames = np.empty((n, size, size, 3), np.uint8)
    first_frames = [first_frame(s.start, fps) for s in clip.sections]
    for k in range(n):
        sec = int(np.searchsorted(first_frames, k, side="right")) - 1
        radius = size * PULSER_RADIUS * (1 + growth[k] * env[k])
        alpha = np.clip(radius - dist, 0.0, 1.0)[..., None]  # anti-aliased disc
        grey = 255 * (PULSER_LOW + (PULSER_HIGH - PULSER_LOW) * env[k])
        frames[k] = np.round(layers[max(sec, 0)] * (1 - alpha) + grey * alpha).astype(np.uint8)
    return frames


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> str:
    """Encode frames with libx264 (yuv420p, CRF 16, one thread: deterministic), else mpeg4; returns the codec."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    errors = []
    for codec in ("libx264", "mpeg4"):
        try:
            with av.open(str(path), "w", format="mp4") as out:
                stream = out.add_stream(codec, rate=rate)
                stream.width, stream.height = frames.shape[2], frames.shape[1]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.thread_count = 1
                stream.options = ({"crf": "16", "preset": "veryfast"} if codec == "libx264"
                                  else {"qscale": "2"})
                for k, img in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = k
                    frame.time_base = 1 / rate
                    for packet in stream.encode(frame):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            return "h264" if codec == "libx264" else codec
        except (av.FFmpegError, ValueError) as exc:  # codec missing from this PyAV build
            errors.append(f"{codec}: {exc}")
    raise VideoWriteError(f"cannot encode {path}: " + "; ".join(errors))
