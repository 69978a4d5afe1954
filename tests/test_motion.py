"""Tests of the built-in ``motion`` (weight-free rhythm) and ``concat`` encoders.

The acceptance test (issue 6) generates real toy clips, decodes them with PyAV and checks that the
visual beats and cuts found by ``motion`` match the clips' json ground truth with F1 >= 0.9 at ±1 frame.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import torch

from vidmusic_core import ConfigError, Frames, ShapeError, VidmusicError, get_registry
from vidmusic_core.data.toy import make_toy_dataset
from vidmusic_core.encoders.concat import ConcatConfig, ConcatEncoder, derive_frames
from vidmusic_core.encoders.motion import FEATURES, MotionConfig, MotionEncoder, analyse_motion, detect_beats_and_cuts
from vidmusic_core.layouts.prefix import AlignedConfig, AlignedLayout
from vidmusic_core.testing import check_component_contract
from vidmusic_core.types import FrameSpec
from vidmusic_core.video import load_frames


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict]]:
    """Three 6 s toy clips (12 fps, 96 px): (mp4 path, ground truth)."""
    out = tmp_path_factory.mktemp("toy_motion")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_toy_dataset(out, n=3, seconds=6, workers=1, progress=False)
    return [(out / f"toy_{i:05d}.mp4", json.loads((out / f"toy_{i:05d}.json").read_text())) for i in range(3)]


def f1(reference: list[float], estimated: np.ndarray, window: float) -> float:
    """mir_eval onset F-measure (one-to-one matching within ±window); two empty lists agree perfectly."""
    if not len(reference) and not len(estimated):
        return 1.0
    if not len(reference) or not len(estimated):
        return 0.0
    return float(mir_eval.onset.f_measure(np.asarray(reference), np.sort(estimated), window=window)[0])


def placeholder(frames: Frames) -> Frames:
    """What the training path hands ``forward_features``: times, mask, duration, no pixels."""
    B, T = frames.local_times.shape
    return Frames(torch.zeros(B, T, 1, 1, 3, dtype=torch.uint8), frames.local_times, frames.local_mask,
                  duration=frames.duration)


# --------------------------------------------------------------------------------------------------
# registration and contracts
# --------------------------------------------------------------------------------------------------
def test_registered_by_the_core_plugin():
    reg = get_registry()
    for name in ("motion", "concat"):
        assert reg.get("encoder", name).plugin == "core"


def test_motion_contract():
    enc = check_component_contract("encoder", "motion")
    assert enc.dim == len(FEATURES) and not list(enc.parameters())
    assert enc.frame_spec.n_global == 0 and enc.frame_spec.sampling == "timestamps"
    sub = check_component_contract("encoder", "motion", MotionConfig(features=["beat", "phase_cos"], rate=25.0))
    assert sub.dim == 2


@pytest.mark.parametrize("mode", ["concat_tokens", "concat_features"])
def test_concat_contract(mode):
    cfg = ConcatConfig(second_options={"rate": 10.0, "features": ["beat", "cut"]}, mode=mode)
    enc = check_component_contract("encoder", "concat", cfg)
    assert enc.dim == len(FEATURES) + 2


def test_concat_of_lstv_and_motion_contract():
    assert "lstv" in get_registry().names("encoder")  # a built-in plugin of this distribution
    cfg = ConcatConfig(first="lstv", first_options={"sampling": "timestamps"}, second="motion")
    enc = check_component_contract("encoder", "concat", cfg)
    lstv = enc.first
    assert enc.dim == lstv.dim + len(FEATURES)
    spec = enc.frame_spec  # the union: motion's rate, lstv's size and global frames
    assert (spec.fps, spec.size, spec.n_global) == (30.0, lstv.frame_spec.size, lstv.frame_spec.n_global)
    with pytest.raises(ConfigError, match="sampling: timestamps"):
        ConcatEncoder(ConcatConfig(first="lstv", second="motion"))  # upstream's vidmuse sampling


def test_config_errors():
    with pytest.raises(ConfigError, match="features"):
        MotionEncoder(MotionConfig(features=["beat", "tempo"]))
    with pytest.raises(ConfigError, match="rate"):
        MotionEncoder(MotionConfig(rate=0.0))
    with pytest.raises(ConfigError, match="mode"):
        ConcatEncoder(ConcatConfig(mode="stack"))
    with pytest.raises(ConfigError, match="nest"):
        ConcatEncoder(ConcatConfig(first="concat"))
    with pytest.raises(ConfigError, match="Did you mean 'rate'"):
        ConcatEncoder(ConcatConfig(second_options={"rat": 10}))
    with pytest.raises(VidmusicError, match="unknown encoder"):
        ConcatEncoder(ConcatConfig(second="motoin"))


# --------------------------------------------------------------------------------------------------
# the acceptance test: beats and cuts of real toy clips
# --------------------------------------------------------------------------------------------------
def test_motion_finds_toy_beats_and_cuts(toy):
    spec = MotionEncoder().frame_spec
    scores = []
    for path, truth in toy:
        frames = load_frames([path], spec)
        assert frames.local.shape[1] == 180  # 6 s at 30 fps: every 12 fps frame, each picked 2-3 times
        beats, cuts = detect_beats_and_cuts(frames.local[0], frames.local_times[0])
        window = 1.0 / truth["video"]["fps"]  # ±1 frame
        fb, fc = f1(truth["beat_times"], beats, window), f1(truth["cut_times"], cuts, window)
        scores.append((fb, fc))
        print(f"{path.name}: beat F1 {fb:.3f} ({len(beats)} found, {len(truth['beat_times'])} true), "
              f"cut F1 {fc:.3f} ({len(cuts)} found, {len(truth['cut_times'])} true)")
        assert fb >= 0.9 and fc >= 0.9, (path.name, truth["beat_times"], beats, truth["cut_times"], cuts)
    assert sum(len(t["cut_times"]) for _, t in toy) >= 2  # the clips do have cuts to find


def test_static_pan_and_hard_cut_synthetic():
    """No rhythm in a still or a steady pan; one cut, at the first frame of the new shot, in a hard cut."""
    g = torch.Generator().manual_seed(0)
    times = torch.arange(60) / 30.0
    still = torch.randint(0, 256, (1, 32, 32, 3), generator=g, dtype=torch.uint8).expand(60, -1, -1, -1)
    assert all(len(x) == 0 for x in detect_beats_and_cuts(still, times))
    ramp = torch.linspace(0, 2 * np.pi, 64)
    pan = torch.stack([(127 + 100 * torch.sin(ramp[:32, None] + 0.05 * k)).expand(32, 32) for k in range(60)])
    beats, cuts = detect_beats_and_cuts(pan[..., None].expand(-1, -1, -1, 3).to(torch.uint8), times)
    assert len(beats) == 0 and len(cuts) == 0
    other = torch.randint(0, 256, (1, 32, 32, 3), generator=g, dtype=torch.uint8).expand(30, -1, -1, -1)
    beats, cuts = detect_beats_and_cuts(torch.cat([still[:30], other]), times)
    np.testing.assert_allclose(cuts, [1.0], atol=1e-6)
    assert len(beats) == 1 and abs(beats[0] - 29.5 / 30) < 0.02  # the change itself is the one accent


def test_bad_times_and_shapes():
    x = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(VidmusicError, match="backwards"):
        analyse_motion(x, torch.tensor([0.0, 0.2, 0.1, 0.3]))
    with pytest.raises(ShapeError):
        analyse_motion(x[..., :2], torch.arange(4.0))


# --------------------------------------------------------------------------------------------------
# the token grid
# --------------------------------------------------------------------------------------------------
def test_tokens_times_rate_and_cache_path(toy):
    enc = MotionEncoder()
    frames = load_frames([p for p, _ in toy], enc.frame_spec)
    cond = enc(frames)
    assert cond.tokens.shape == (3, 300, len(FEATURES))  # 6 s at 50 Hz
    assert cond.mask.all()
    exact = (torch.arange(300, dtype=torch.float64) / 50).float()
    assert all(torch.equal(cond.times[b], exact) for b in range(3))  # exact k / rate, hence monotone
    assert torch.isfinite(cond.tokens).all()
    # the training path: cached features (float16 in parquet) + times/mask/duration, no pixels
    feats = {k: v.half().float() for k, v in enc.frozen_features(frames).items()}
    again = enc.forward_features(feats, placeholder(frames))
    assert torch.equal(again.times, cond.times) and torch.equal(again.mask, cond.mask)
    torch.testing.assert_close(again.tokens, cond.tokens, atol=2e-3, rtol=1e-3)
    # the beat channel peaks and the phase is 0 at every beat the analysis found
    col = {f: i for i, f in enumerate(FEATURES)}
    a = analyse_motion(frames.local[0], frames.local_times[0])
    k = np.round(a.beats * 50).astype(int)
    assert (cond.tokens[0, k, col["beat"]] > 0.6).all() and (cond.tokens[0, k, col["phase_cos"]] > 0.9).all()
    k = np.round(a.cuts * 50).astype(int)
    assert len(k) and (cond.tokens[0, k, col["cut"]] > 0.6).all()
    slow = MotionEncoder(MotionConfig(rate=25.0))(frames)
    assert slow.tokens.shape[1] == 150 and torch.equal(slow.times[0], (torch.arange(150) / 25.0).float())


def test_window_and_padding_times(toy):
    enc = MotionEncoder()
    win = load_frames([toy[0][0]], enc.frame_spec, start=2.0, end=4.0)
    cond = enc(win)
    assert cond.tokens.shape[1] == 100 and abs(float(cond.times[0, 0]) - 2.0) < 1e-6
    assert torch.equal(cond.times[0], (torch.arange(100, 200, dtype=torch.float64) / 50).float())
    # a shorter clip in a batch: its tokens stop at its end and the padding is masked, times non-decreasing
    frames = load_frames([toy[0][0]], enc.frame_spec, end=6.0)
    short = Frames(frames.local.clone(), frames.local_times.clone(), frames.local_mask.clone(),
                   duration=torch.tensor([6.0]))
    short.local_mask[0, 90:] = False
    both = enc(Frames(torch.cat([frames.local, short.local]), torch.cat([frames.local_times, short.local_times]),
                      torch.cat([frames.local_mask, short.local_mask]), duration=torch.tensor([6.0, 6.0])))
    assert both.mask[0].all() and int(both.mask[1].sum()) == 150  # 90 frames at 30 fps = 3 s
    assert (both.times.diff(dim=1) >= 0).all() and float(both.times[1].max()) < 3.0


def test_aligned_layout_sees_the_token_of_its_music_frame(toy):
    enc = MotionEncoder()
    cond = enc(load_frames([toy[0][0]], enc.frame_spec))
    layout = AlignedLayout(AlignedConfig(cond_dim=enc.dim, width=enc.dim, frame_rate=50.0))
    with torch.no_grad():
        layout.aligned_proj.weight.copy_(torch.eye(enc.dim))
    cols = torch.arange(300)
    torch.testing.assert_close(layout.aligned_embeds(cond, cols), cond.tokens)


# --------------------------------------------------------------------------------------------------
# concat
# --------------------------------------------------------------------------------------------------
def test_derived_frames_equal_direct_sampling(toy):
    path = toy[1][0]
    union = FrameSpec(fps=30.0, size=32, n_global=0)
    frames = load_frames([path], union)
    for want in (FrameSpec(fps=2.0, size=32), FrameSpec(fps=12.0, size=32), FrameSpec(fps=5.0, size=16)):
        direct = load_frames([path], want)
        derived = derive_frames(frames, union, want)
        assert torch.equal(derived.local_times, direct.local_times), want
        diff = (derived.local.float() - direct.local.float()).abs()
        # same size: the very same frames; 16 px: torch area of the 32 px frame vs swscale from 96 px (yuv)
        assert diff.max() == 0 if want.size == 32 else diff.mean() < 8, want


def test_concat_on_toy_frames(toy):
    second = {"rate": 10.0, "features": ["beat", "cut"]}
    tok = ConcatEncoder(ConcatConfig(second_options=second))
    assert tok.frame_spec.fps == 30.0
    frames = load_frames([p for p, _ in toy[:2]], tok.frame_spec)
    a, b = tok.first(frames), tok.second(frames)
    cond = tok(frames)
    assert cond.tokens.shape == (2, 300 + 60, 9)
    torch.testing.assert_close(cond.tokens[:, :300, :7], a.tokens)
    torch.testing.assert_close(cond.tokens[:, 300:, 7:], b.tokens)
    assert not cond.tokens[:, :300, 7:].any() and not cond.tokens[:, 300:, :7].any()
    assert torch.equal(cond.times, torch.cat([a.times, b.times], dim=1))
    feat = ConcatEncoder(ConcatConfig(second_options=second, mode="concat_features"))
    joined = feat(frames)
    assert joined.tokens.shape == (2, 300, 9) and torch.equal(joined.times, a.times)  # 10 Hz is on the 50 Hz grid
    torch.testing.assert_close(joined.tokens[..., :7], a.tokens)
    torch.testing.assert_close(joined.tokens[:, ::5, 7:], b.tokens)  # held between the 10 Hz tokens
    torch.testing.assert_close(joined.tokens[:, 4::5, 7:], b.tokens)
    # training path: cached sub-features under prefixed keys, times re-derived from the union's
    feats = feat.frozen_features(frames)
    assert sorted(feats) == ["first__motion", "second__motion"]
    again = feat.forward_features(feats, placeholder(frames))
    torch.testing.assert_close(again.tokens, joined.tokens)
    assert torch.equal(again.times, joined.times)
