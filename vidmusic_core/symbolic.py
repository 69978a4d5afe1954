"""Long videos with a symbolic codec (``representation`` ``symbolic``: one stream of MIDI-event tokens).

The codec owns its generation rules (:meth:`~vidmusic_core.components.MusicCodec.plan_request`: token
budget, EOS, forced prefix, per-bar controls) and its files (:meth:`~vidmusic_core.components.SymbolicCodec.
write`); this module windows a long video for it, continuing each window from the previous one's last bars
where the codec can cut on a bar line (:meth:`~vidmusic_core.components.SymbolicCodec.window_cut`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .components import SymbolicCodec
from .errors import ConfigError
from .sampling import merge_forced
from .types import MusicTokens

if TYPE_CHECKING:
    from .longform import Span


class BarWindows:
    """Windows of a symbolic codec's music, for :func:`~vidmusic_core.longform.generate_windows`: up to
    ``window_s`` seconds each, every window after the first keeping the first window's attribute prefix (so
    instruments, key and tempo class stay; the user's ``attributes`` still win).

    Continuation (``prompt_bars`` > 0, codecs whose ``window_cut`` finds a cut): a window ends at the end of its
    last complete bar inside its span, and the next window starts with that window's last ``prompt_bars`` bars
    forced as its first music tokens (its frames start where those bars start), so the music continues across
    the boundary; the prompt bars are left out of the next window's MIDI. When a window has no complete bar to end
    on (bars longer than the window, or ``prompt_bars`` 0), it is cut at its span's end and the next one starts
    afresh. Writes ``<stem>.wNNN.mid`` per window; :meth:`meta` is what the clip's json records (window seeds,
    starts, prompt lengths, MIDI names, the attribute prefix every window used, the per-bar controls)."""

    progress_unit = "s"

    def __init__(self, codec: SymbolicCodec, dur: float, window_s: float, out_dir: Path, stem: str,
                 prompt_bars: int = 1) -> None:
        if window_s <= 0:
            raise ConfigError(f"generate.window_seconds={window_s}: must be positive")
        self.codec, self.dur, self.window_s, self.out_dir, self.stem = codec, dur, window_s, out_dir, stem
        self.prompt_bars, self.n_prefix = prompt_bars, int(codec.prefix_length)
        self.progress_total = round(dur, 2)
        self.prefix: Tensor | None = None
        self.origin, self.prompt, self.prompt_s, self.prompt_ticks = 0.0, [], 0.0, 0  # music continues from origin
        self.index = 0
        self._meta: dict[str, list[Any]] = {"window_starts": [], "window_prompt_tokens": [], "midi_windows": [],
                                            "window_attributes": [], "window_bar_controls": []}

    def next_span(self) -> "Span | None":
        from .longform import Span

        if self.origin >= self.dur - 1e-3:
            return None
        if self.prompt_s > 0.5 * self.window_s:  # a prompt that long would leave too little new music: start afresh
            self.prompt, self.prompt_s, self.prompt_ticks = [], 0.0, 0
        t0 = self.origin - self.prompt_s  # the window's clock starts with its prompt
        t1 = min(t0 + self.window_s, self.dur)
        cont = None
        if self.prompt:
            cont = torch.full((1, 1, self.n_prefix + len(self.prompt)), -1, dtype=torch.long)
            cont[0, 0, self.n_prefix:] = torch.tensor(self.prompt)
        return Span(self.index, t0, t1, self.codec.n_frames(t1 - t0), forced=merge_forced(self.prefix, cont))

    def finish(self, span: "Span", toks: MusicTokens, device: Any) -> tuple[list[Tensor], float]:
        """This window's MIDI written and rendered: its audio ``[1, L]`` and the seconds of music it added."""
        codec, t0, t1 = self.codec, span.t0, span.t1
        if self.prefix is None and self.n_prefix:
            self.prefix = toks.codes[:, :, :self.n_prefix].clone()
        last = t1 >= self.dur - 1e-3
        cut = None if last or self.prompt_bars < 1 else codec.window_cut(toks, t1 - t0, self.prompt_bars,
                                                                         after=self.prompt_s)
        if cut is not None:  # end on a bar line; its last bars prompt the next window
            score, end = codec.decode_between(toks, self.prompt_ticks, end_ticks=cut.ticks), cut.seconds
        elif self.prompt:
            score, end = codec.decode_between(toks, self.prompt_ticks, end_seconds=t1 - t0), t1 - t0
        else:
            score, end = codec.decode(toks, seconds=t1 - t0)[0], t1 - t0
        length = end - self.prompt_s
        midi = codec.write_midi(score, self.out_dir / f"{self.stem}.w{self.index:03d}.mid")
        audio = codec.render([score], seconds=length)[0]  # [1, L]
        m = self._meta
        m["window_starts"].append(round(self.origin, 6))
        m["window_prompt_tokens"].append(len(self.prompt))
        m["midi_windows"].append(Path(midi).name)
        m["window_bar_controls"].append(codec.row_meta(toks, 0))
        if self.n_prefix:
            m["window_attributes"].append(codec.attributes_of(toks)[0])
        self.origin = t0 + end
        self.prompt, self.prompt_s, self.prompt_ticks = ((cut.prompt, cut.prompt_seconds, cut.prompt_ticks)
                                                         if cut is not None else ([], 0.0, 0))
        self.index += 1
        return [audio], round(length, 2)

    def meta(self) -> dict[str, Any]:
        attrs = self._meta["window_attributes"]
        out: dict[str, Any] = {**self._meta, "window_seconds": self.window_s, "prompt_bars": self.prompt_bars,
                               "attributes": attrs[0] if attrs else None}
        if not any(self._meta["window_bar_controls"]):
            out.pop("window_bar_controls")
        return out
