"""``reactive``: an audio-reactive renderer with no weights, the inverse of the toy data's video rules.

The toy video carries the music (``docs/toy-data.md``); this renderer draws the same picture from a song's
analysis (:mod:`vidmusic_core.song`), so a model trained on toy data hears the song's rhythm, key and
structure in it:

| music (analysis) | picture (as the toy data draws it) |
|---|---|
| key tonic | background hue, ``tonic / 12`` (C red), saturation 0.55 |
| mode | background brightness: value 0.85 major, 0.35 minor |
| every beat; downbeats | the centre disc flashes white and grows (Gaussian, sigma ``0.5 / fps``); more on downbeats |
| section boundary | hard cut: the squares jump to a new layout (seeded by the section) |
| section density 1–3 | 2, 4 or 6 squares |
| section timbre (spectral centroid) | hue of the squares (value dark on major, bright on minor) |
| onsets / energy | the squares shake by ``motion`` x a grid cell x the onset envelope (0 = still, as in the toy data) |

Frames of any ``(W, H)``: the toy picture is laid out in the centred ``min(W, H)`` square, the background fills the
rest. Every frame depends only on its time, so windows render independently.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..components import Visualizer
from ..data import toy_video as tv
from ..errors import ConfigError
from ..song import SongAnalysis


@dataclass
class ReactivePlan:
    """Per-song state: background colour, one layout per section, the square's shake directions."""

    song: SongAnalysis
    width: int
    height: int
    fps: float
    background: tuple[int, int, int]
    layouts: list[list[tuple[int, int, int, tuple[int, int, int]]]]  # per section: (x0, y0, side, rgb) per square
    directions: np.ndarray  # [n_sections, 6, 2] unit shake directions


class ReactiveVisualizer(Visualizer):
    """Beats -> pulses, key -> hue, mode -> brightness, sections -> cuts, density -> squares, onsets -> shake."""

    @dataclass
    class Config:
        motion: float = 0.1  # shake amplitude in grid cells at full onset strength (0: only the disc moves)
        downbeats: bool = True  # downbeats grow the disc more (as in the toy data)

    def __init__(self, cfg: "ReactiveVisualizer.Config | None" = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        if not 0.0 <= float(self.cfg.motion) <= 1.0:
            raise ConfigError(f"visualizer reactive: motion must be in [0, 1] grid cells, got {self.cfg.motion}")

    def plan(self, song: SongAnalysis, size: tuple[int, int], fps: float, seed: int) -> ReactivePlan:
        W, H = int(size[0]), int(size[1])
        side = min(W, H)
        tonic, mode = song.key
        layouts, directions = [], []
        for i, sec in enumerate(song.sections):
            rng = np.random.default_rng([int(seed), i])
            hue = float(sec.brightness)  # timbre -> square hue
            rgb = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue % 1.0, 1.0, tv.OBJECT_VALUE[mode]))
            objects = tv.layout(rng, side, 2 * int(sec.density), tv.PROGRAMS["lead"][0], mode)
            x_off, y_off = (W - side) // 2, (H - side) // 2
            layouts.append([(o["box"][0] + x_off, o["box"][1] + y_off, o["box"][2] - o["box"][0], rgb)
                            for o in objects])
            ang = rng.uniform(0, 2 * np.pi, size=6)
            directions.append(np.stack([np.cos(ang), np.sin(ang)], axis=1))
        return ReactivePlan(song, W, H, float(fps), tv.background_rgb(tonic, mode), layouts, np.stack(directions))

    def render(self, plan: ReactivePlan, times: np.ndarray) -> np.ndarray:
        p, song = plan, plan.song
        times = np.asarray(times, dtype=np.float64)
        W, H, side = p.width, p.height, min(p.width, p.height)
        near = (song.beats > times.min() - 1.0) & (song.beats < times.max() + 1.0) if len(times) else song.beats < 0
        beats = song.beats[near]  # only the window's beats: the cost of a window does not grow with the song
        env = tv.pulse(times, list(beats), p.fps)  # [T] in [0, 1]
        if len(beats) and self.cfg.downbeats:
            nearest = np.abs(times[:, None] - beats[None, :]).argmin(axis=1)
            down = np.isin(np.round(beats[nearest], 9), np.round(song.downbeats, 9))
            growth = np.where(down, tv.DOWNBEAT_GROWTH, tv.PULSE_GROWTH)
        else:
            growth = np.full(len(times), tv.PULSE_GROWTH)
        shake = self.cfg.motion * (side // tv.GRID) * song.curve_at(song.onset_env, times)  # [T] pixels
        # the toy data's cut rule: frame k shows the section that has started by k / fps
        section = song.section_index(times + 1e-6)
        x0, y0, x1, y1 = tv.pulser_box(side)
        cx, cy = (W - side) // 2, (H - side) // 2
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dist = np.hypot(xx - side / 2, yy - side / 2)  # [h, w] within the pulser box
        frames = np.empty((len(times), H, W, 3), np.uint8)
        frames[:] = np.asarray(p.background, np.uint8)
        for k in range(len(times)):
            img = frames[k]
            for j, (ox, oy, s, rgb) in enumerate(p.layouts[section[k]]):
                dx, dy = np.round(shake[k] * p.directions[section[k], j]).astype(int)
                ax, ay = int(np.clip(ox + dx, 0, W - s)), int(np.clip(oy + dy, 0, H - s))
                img[ay:ay + s, ax:ax + s] = 0
                img[ay + 1:ay + s - 1, ax + 1:ax + s - 1] = rgb
            radius = side * tv.PULSER_RADIUS * (1 + growth[k] * env[k])
            alpha = np.clip(radius - dist, 0.0, 1.0)[..., None]  # anti-aliased disc
            grey = 255 * (tv.PULSER_LOW + (tv.PULSER_HIGH - tv.PULSER_LOW) * env[k])
            box = img[cy + y0:cy + y1, cx + x0:cx + x1]
            box[:] = np.round(box * (1 - alpha) + grey * alpha).astype(np.uint8)
        return frames
