"""The per-bar onset-density control of the remi codec: BarDensity tokens from the music, the generation
controller, the attribute_head layout's density head and the bar_density metric."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from aux_fit import fit_aux_loss

from musecoco_symbolic.attribute_head import AttributeHeadConfig, AttributeHeadLayout
from musecoco_symbolic.codec import BarController, RemiCodec, RemiConfig
from musecoco_symbolic.density import (DEFAULT_EDGES, DENSITY_TOKENS, N_DENSITY, bar_classes, bars_of, density_class,
                                       score_bars, token_targets, with_bar_density)
from musecoco_symbolic.metric import BarDensityMetric
from vidmusic_core import Condition, ConfigError, MusicTokens


def notes(n: int, program: int = 0) -> list[str]:
    out = []
    for k in range(n):
        out += [f"Position_{(k * 48 // max(n, 1)) % 48}", f"Program_{program}", f"Pitch_{60 + k % 12}", "Velocity_63",
                "Duration_1.0.12"]
    return out


def bar(n: int, program: int = 0) -> list[str]:
    return ["Bar_None", "TimeSig_4/4", *notes(n, program)]


def test_density_classes_and_tokens_from_the_music():
    assert [density_class(x) for x in (0.0, 0.99, 1.0, 5.0, 6.0, 7.5, 20.0)] == [0, 0, 1, 4, 5, 6, 7]
    assert N_DENSITY == len(DEFAULT_EDGES) + 1 == len(DENSITY_TOKENS)
    # 4/4 at 120 qpm: 2 s bars; 4 notes -> 1 per quarter (class 1), 20 -> 5 (class 4), 32 -> 8 (class 6)
    toks = ["Bar_None", "TimeSig_4/4", "Position_0", "Tempo_120.0", *notes(4)[1:], *bar(20), *bar(32)]
    bars = bars_of(toks)
    assert [(b.start, b.end, b.notes) for b in bars] == [(0.0, 2.0, 4), (2.0, 4.0, 20), (4.0, 6.0, 32)]
    marked = with_bar_density(toks)
    assert bar_classes(marked) == [1, 4, 6]
    codec = RemiCodec(RemiConfig(bar_controls=True, bar_density=True))
    assert len(codec.vocab) == len(RemiCodec().vocab)  # the density tokens are always in the vocabulary
    music = codec.split(marked)[1]  # controls stay out of the MIDI
    assert music.count("Bar_None") == 3 and not any(t.startswith("BarDensity_") for t in music)
    targets = token_targets(marked, np.array([0.5, 1.99, 2.0, 5.9, 6.5]))
    assert targets.tolist() == [1, 1, 4, 6, -1]
    with pytest.raises(ConfigError, match="density_edges"):
        RemiCodec(RemiConfig(bar_density=True, density_edges=[3.0, 2.0]))


def test_codec_writes_cut_then_density_after_every_bar(tmp_path):
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(480)
    score.tempos.append(Tempo(0, mspq=500000))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    tr = Track(program=0)
    for q in range(4):  # bar 1: one note per quarter; bar 2: six per quarter (a 3-note chord every 8th)
        tr.notes.append(Note(q * 480, 240, 60, 80))
    for e in range(8):
        for p in (60, 64, 67):
            tr.notes.append(Note(4 * 480 + e * 240, 240, p, 80))
    score.tracks.append(tr)
    path = tmp_path / "two_bars.mid"
    score.dump_midi(str(path))
    codec = RemiCodec(RemiConfig(bar_controls=True, bar_density=True))
    toks = codec.token_strings(path)
    bars = [i for i, t in enumerate(toks) if t == "Bar_None"]
    assert [toks[i + 1][:7] for i in bars] == ["BarCut_"] * 2
    assert [toks[i + 2] for i in bars] == ["BarDensity_1", "BarDensity_5"]
    measured = score_bars(codec.decode([codec.vocab.encode(toks)])[0])
    assert [b.notes for b in measured] == [4, 24] and [density_class(b.notes_per_quarter) for b in measured] == [1, 5]


def test_controller_forces_cut_then_density_from_the_video():
    codec = RemiCodec(RemiConfig(bar_controls=True, bar_density=True))
    spans = []

    def density(start: float, end: float) -> int:
        spans.append((round(start, 4), round(end, 4)))
        return 3 if start < 2.0 else 6

    ctl = BarController(codec, [[2.5]], [density])
    cut0, cut1 = codec.vocab.encode(["BarCut_0", "BarCut_1"])
    d3, d6 = codec.vocab.encode(["BarDensity_3", "BarDensity_6"])
    stream = ["Bar_None", "BarCut_0", "BarDensity_3", "TimeSig_4/4", "Tempo_120.0", "Pitch_60",
              "Bar_None", "BarCut_1", "BarDensity_6", "Pitch_60"]
    forced = [int(ctl(c, torch.tensor([[codec.vocab.encode([t])[0]]]))[0, 0]) for c, t in enumerate(stream)]
    assert forced == [cut0, d3, -1, -1, -1, -1, cut1, d6, -1, -1]  # each returned for the next column
    assert spans == [(0.0, 2.0), (2.0, 4.0)] and ctl.flags == [[0, 1]] and ctl.densities == [[3, 6]]
    free = BarController(RemiCodec(RemiConfig(bar_density=True)), [[]], [None])  # no density source: model picks
    assert int(free(0, torch.tensor([[codec.vocab.encode(["Bar_None"])[0]]]))[0, 0]) == -1
    assert free.densities == [[None]]


def _layout(density: bool = True) -> AttributeHeadLayout:
    torch.manual_seed(0)
    return AttributeHeadLayout(AttributeHeadConfig(cond_dim=N_DENSITY, width=16, hidden=32, density_head=density,
                                                   use_text=False))


def test_density_head_learns_the_class_of_each_bar_from_the_condition():
    codec = RemiCodec(RemiConfig(bar_density=True))
    # two rows of 2 s bars: row 0 busy then sparse, row 1 the other way round
    rows = [with_bar_density(["Bar_None", "TimeSig_4/4", "Position_0", "Tempo_120.0", *notes(32)[1:], *bar(4)]),
            with_bar_density(["Bar_None", "TimeSig_4/4", "Position_0", "Tempo_120.0", *notes(4)[1:], *bar(32)])]
    assert [bar_classes(r) for r in rows] == [[6, 1], [1, 6]]
    n = max(len(r) for r in rows)
    codes = torch.full((2, 1, n), codec.pad_id)
    mask = torch.zeros(2, n, dtype=torch.bool)
    for b, r in enumerate(rows):
        codes[b, 0, :len(r)] = torch.tensor(codec.vocab.encode(r))
        mask[b, :len(r)] = True
    music = MusicTokens(codes, mask, None)
    times = torch.arange(0.25, 4.0, 0.5).repeat(2, 1)  # 8 tokens per row, 4 per bar
    truth = torch.tensor([token_targets(r, times[0].numpy()).tolist() for r in rows])
    feats = torch.nn.functional.one_hot(truth, N_DENSITY).float() + 0.1 * torch.randn(2, 8, N_DENSITY)
    cond = Condition(feats, torch.ones(2, 8, dtype=torch.bool), times)
    layout = _layout()
    first, last = fit_aux_loss(layout, layout.density_head.parameters(), cond, music, 150)
    assert last < 0.2 * first
    fns = layout.bar_density(cond)
    assert fns is not None and [fns[0](0.0, 2.0), fns[0](2.0, 4.0), fns[1](0.0, 2.0), fns[1](2.0, 4.0)] == [6, 1, 1, 6]
    assert fns[0](10.0, 12.0) == 1  # no token inside: the nearest one decides
    assert _layout(density=False).bar_density(cond) is None
    plain = MusicTokens(torch.tensor([[codec.vocab.encode(bar(4))]]), None, None)
    with pytest.raises(ConfigError, match="codec.bar_density=true"):
        layout.aux_loss(Condition(feats[:1], cond.mask[:1], times[:1]), plain)


def _score(per_bar: list[int], bars_tpq: int = 480):
    from symusic import Note, Score, Tempo, TimeSignature, Track

    s = Score(bars_tpq)
    s.tempos.append(Tempo(0, mspq=500000))
    s.time_signatures.append(TimeSignature(0, 4, 4))
    tr = Track(program=0)
    for b, n in enumerate(per_bar):
        for k in range(n):
            tr.notes.append(Note(b * 4 * bars_tpq + k * 4 * bars_tpq // n, 60, 60 + k % 12, 80))
    s.tracks.append(tr)
    return s


def test_bar_density_metric_against_the_reference_and_the_forced_classes():
    sr = 100
    ref = _score([4, 32, 4])  # 2 s bars: classes 1, 6, 1
    same = {"midi": _score([4, 32, 4]), "reference_midi": ref, "audio": np.zeros(6 * sr), "sample_rate": sr,
            "bar_density": [1, 6, 1]}
    flat = {"midi": _score([20, 20, 20]), "reference_midi": ref, "audio": np.zeros(6 * sr), "sample_rate": sr,
            "bar_density": [1, 6, 1]}
    m = BarDensityMetric()
    s = m.compute([same])
    assert s["density_ref_acc"] == 1.0 and s["density_control_acc"] == 1.0 and s["density_ref_mae"] == 0.0
    assert s["density_ref_corr"] == pytest.approx(1.0)
    f = m.compute([flat])
    assert f["density_ref_acc"] == 0.0 and f["density_control_acc"] == 0.0 and "density_ref_corr" not in f
    assert f["density_ref_mae"] == pytest.approx((4 + 3 + 4) / 3)
    short = {**same, "midi": _score([4])}  # the generated music stops after one bar: silence counts as 0
    assert m.compute([short])["density_ref_acc"] == pytest.approx(1 / 3)
    assert m.protocol()["edges_notes_per_quarter"] == list(DEFAULT_EDGES)
