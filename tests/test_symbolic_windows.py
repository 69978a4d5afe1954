"""Long videos with a symbolic codec: where a window ends (a bar line), what prompts the next one, and
forced prompt codes winning over the per-bar controller."""
from __future__ import annotations

import torch

from musecoco_symbolic.backbone import MusecocoBackbone
from musecoco_symbolic.codec import RemiCodec, RemiConfig
from musecoco_symbolic.vocab import PREFIX_LENGTH
from vidmusic_core import Condition
from vidmusic_core.sampling import SamplingConfig, generate_tokens
from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout


def _tempo(codec: RemiCodec) -> tuple[str, float]:
    """The vocabulary's tempo token nearest 120 qpm and the length of a 4/4 bar at it (s)."""
    tok = min((t for t in codec.vocab.symbols if t.startswith("Tempo_")), key=lambda t: abs(float(t[6:]) - 120))
    return tok, 4 * 60.0 / float(tok[6:])


def _row(codec: RemiCodec, pitches: list[int]) -> list[str]:
    """4/4 bars, one quarter note of pitch p on each beat of bar i, with the cut/density controls."""
    tempo, _ = _tempo(codec)
    out: list[str] = []
    for i, p in enumerate(pitches):
        out += ["Bar_None", "BarCut_0", "BarDensity_1", "TimeSig_4/4"]
        for beat in range(4):
            out += [f"Position_{12 * beat}"] + ([tempo] if i == 0 and beat == 0 else [])
            out += ["Program_0", f"Pitch_{p}", "Velocity_63", "Duration_1.0.12"]
    return out


def test_window_cut_ends_on_the_last_complete_bar_and_prompts_with_it():
    codec = RemiCodec(RemiConfig(bar_controls=True, bar_density=True))
    _, L = _tempo(codec)
    row = _row(codec, [60, 62, 64])
    ids = codec.vocab.encode(row)
    cut = codec.window_cut([ids], 2.5 * L, 1)
    assert cut is not None and abs(cut.seconds - 2 * L) < 1e-6 and cut.ticks == 2 * 4 * 480
    second = row[row.index("Bar_None", 1):]
    second = second[: second.index("Bar_None", 1)]
    tempo, _ = _tempo(codec)  # bar 2 states no tempo: the one in force is carried into the prompt
    assert codec.vocab.decode(cut.prompt) == second[:5] + [tempo] + second[5:] and cut.prompt_ticks == 4 * 480
    alone = codec.decode([cut.prompt])[0]
    assert abs(alone.tempos[0].qpm - 240 / L) < 1e-3 and [n.pitch for tr in alone.tracks for n in tr.notes] == [62] * 4
    assert abs(cut.prompt_seconds - L) < 1e-6
    two = codec.window_cut([ids], 10 * L, 2)  # the last bar has nothing after it: not complete
    assert two is not None and abs(two.seconds - 2 * L) < 1e-6 and two.prompt_ticks == 2 * 4 * 480
    assert codec.window_cut([ids], 0.9 * L, 1) is None  # no bar ends inside the limit
    assert codec.window_cut([ids], 2.5 * L, 1, after=2 * L) is None  # ... after the prompt
    assert codec.window_cut([ids], 2.5 * L, 0) is None
    piece = codec.decode_between([ids], cut.prompt_ticks, end_ticks=cut.ticks)  # bar 2 alone, moved to 0
    notes = [(n.time, n.pitch) for tr in piece.tracks for n in tr.notes]
    assert notes == [(0, 62), (480, 62), (960, 62), (1440, 62)]
    assert abs(piece.tempos[0].qpm - 240 / L) < 1e-3 and int(piece.tempos[0].time) == 0
    tail = codec.decode_between([ids], 4 * 480, end_seconds=2.5 * L)  # bars 2 and the first half of 3
    assert [n.pitch for tr in tail.tracks for n in tr.notes] == [62] * 4 + [64] * 2


def test_forced_prompt_codes_win_over_the_controller():
    torch.manual_seed(0)
    codec = RemiCodec(RemiConfig(bar_controls=True))
    bb = MusecocoBackbone().eval()
    layout = PrefixLayout(PrefixConfig(cond_dim=8, width=bb.width, use_text=False)).eval()
    cond = Condition(torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), torch.arange(3.0)[None])
    prompt = codec.vocab.encode(_row(codec, [60])[:8])  # Bar_None BarCut_0 BarDensity_1 TimeSig ... Program_0
    forced = torch.full((1, 1, PREFIX_LENGTH + len(prompt)), -1, dtype=torch.long)
    forced[0, 0, PREFIX_LENGTH:] = torch.tensor(prompt)
    cut1 = codec.vocab.encode(["BarCut_1"])[0]
    calls = []

    def always_cut(column: int, codes: torch.Tensor) -> torch.Tensor:
        calls.append(column)
        return torch.full_like(codes, cut1)

    toks = generate_tokens(layout, bb, cond, PREFIX_LENGTH + len(prompt) + 4, [0], SamplingConfig(top_k=15),
                           forced=forced, controller=always_cut)
    got = toks.codes[0, 0].tolist()
    assert got[PREFIX_LENGTH:PREFIX_LENGTH + len(prompt)] == prompt  # the prompt, although the controller said cut
    assert got[PREFIX_LENGTH + len(prompt):] == [cut1] * 4  # after it the controller's codes stand
    assert calls[:3] == [0, 1, 2]
