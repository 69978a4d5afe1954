"""The reference-free metrics and KAD on synthetic inputs with known answers (videos written with PyAV)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sync_clips import SR, clicks, cut_video, tone_sections
from metric_helpers import core, metric  # noqa: F401  (core: an autouse fixture)
from vidmusic_core.errors import ConfigError
from vidmusic_core.metrics import MetricError
from vidmusic_core.metrics.kad import kernel_audio_distance
from vidmusic_core.metrics.visual import analyse_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("v")
    return {"half": cut_video(d / "half.mp4", seg=0.5), "bars": cut_video(d / "bars.mp4", seg=2.0, seed=1),
            "sections": cut_video(d / "sections.mp4", seconds=10.0, seg=2.0, seed=3)}


def test_video_analysis_finds_the_cuts(videos):
    v = analyse_video(videos["half"])
    np.testing.assert_allclose(v.cuts, np.arange(0.5, 8.0, 0.5), atol=0.05)
    assert v.features.shape[1] == 3 * 8 * 8 and v.duration == pytest.approx(8.0, abs=0.05)


def test_visual_sync_clicks_on_the_cuts_score_high_and_half_a_beat_off_low(videos):
    m = metric("visual_sync")
    on = m.compute([{"audio": clicks(np.arange(0.5, 8, 0.5)), "sample_rate": SR, "video": str(videos["half"])}])
    off = m.compute([{"audio": clicks(np.arange(0.75, 8, 0.5)), "sample_rate": SR, "video": str(videos["half"])}])
    assert on["vsync_f1"] > 0.9 and on["vsync_recall"] == 1.0
    assert off["vsync_f1"] == 0.0
    proto = m.protocol()
    assert [j["judge"] for j in proto["judges"]] == ["librosa", "motion"]
    json.dumps(proto)


def test_cut_downbeat_accents_on_the_cuts_vs_on_beat_two_vs_half_a_beat_off(videos):
    beats = np.arange(0, 8, 0.5)  # 120 bpm, cuts every 2 s = every bar of 4
    item = lambda y: {"audio": y, "sample_rate": SR, "video": str(videos["bars"])}  # noqa: E731
    m = metric("cut_downbeat")
    down = m.compute([item(clicks(beats, accents=np.arange(16) % 4 == 0))])
    two = m.compute([item(clicks(beats, accents=np.arange(16) % 4 == 1))])
    half = m.compute([item(clicks(beats + 0.25, accents=np.arange(16) % 4 == 0))])
    assert down["cut_downbeat_hit"] == 1.0 and down["cut_downbeat_offset"] < 0.1
    assert two["cut_downbeat_hit"] == 0.0 and two["cut_beat_hit"] == 1.0
    assert half["cut_beat_hit"] == 0.0 and half["cut_downbeat_offset"] == pytest.approx(0.5, abs=0.1)


def test_event_corr_sections_on_the_cuts_vs_between_them(videos):
    m = metric("event_corr")
    item = lambda y: {"audio": y, "sample_rate": SR, "video": str(videos["sections"])}  # noqa: E731
    same = m.compute([item(tone_sections([2, 4, 6, 8]))])["event_corr"]
    shifted = m.compute([item(tone_sections([1, 3, 5, 7, 9]))])["event_corr"]
    assert same > 0.8 and shifted < 0.0


def test_seam_continuity_a_tempo_and_key_jump_at_the_seam():
    a = clicks(np.arange(0, 10, 0.5), seconds=10) + tone_sections([], seed=5)  # 120 bpm, one key
    b = clicks(np.arange(0, 10, 60 / 90), seconds=10) + tone_sections([], seed=9)  # 90 bpm, another key
    m = metric("seam_continuity", window_seconds=10.5, overlap_seconds=0.5, span=4.0)  # seam at 10 s
    cont = m.compute([{"audio": np.concatenate([a, a]), "sample_rate": SR}])
    jump = m.compute([{"audio": np.concatenate([a, b]), "sample_rate": SR}])
    assert cont["seam_tempo_jump"] == 0.0 and cont["seam_key_change"] == 0.0
    assert jump["seam_tempo_jump"] == pytest.approx(0.25, abs=0.03) and jump["seam_key_change"] == 1.0
    assert jump["within_tempo_jump"] == 0.0
    with pytest.raises(MetricError, match="long enough"):
        m.compute([{"audio": a[: 5 * SR], "sample_rate": SR}])


def test_kad_matches_a_direct_sum_and_separates_distributions():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((50, 3))
    sigma = np.median([np.linalg.norm(a - b) for i, a in enumerate(y) for b in y[i + 1:]])
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma ** 2))  # noqa: E731
    xx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (40 * 39)
    yy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (50 * 49)
    xy = sum(k(a, b) for a in x for b in y) / (40 * 50)
    assert kernel_audio_distance(x, y) == pytest.approx(100 * (xx + yy - 2 * xy), rel=1e-9)
    assert abs(kernel_audio_distance(x, y)) < 2.0  # one distribution: ~0 (unbiased, may be < 0)
    assert kernel_audio_distance(x + 2.0, y) > 20.0


def test_kad_metric_with_a_plugged_embedder_from_a_local_directory(tmp_path, monkeypatch):
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "w.safetensors").write_bytes(b"fake weights")
    (tmp_path / "kad_embedder.py").write_text(
        "import numpy as np\n"
        "class E:\n"
        "    sample_rate = 8000\n"
        "    def __init__(self, weights, device): pass\n"
        "    def embed(self, audio):\n"
        "        w = audio[: len(audio) // 400 * 400].reshape(-1, 400)\n"
        "        return np.stack([np.log((w ** 2).mean(1) + 1e-9), (np.diff(np.sign(w), axis=1) != 0).mean(1)], 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    items = [{"audio": (0.1 * rng.standard_normal(SR)).astype(np.float32), "sample_rate": SR} for _ in range(3)]
    m = metric("kad", embedder="kad_embedder:E", weights=str(tmp_path / "emb"))
    other = [(0.1 * rng.standard_normal(SR)).astype(np.float32) for _ in items]  # same distribution
    same = m.compute([dict(it, reference_audio=o) for it, o in zip(items, other)])["kad"]
    louder = m.compute([dict(it, reference_audio=0.3 * o) for it, o in zip(items, other)])["kad"]
    assert abs(same) < 2.0 and louder > 20.0
    proto = m.protocol()
    assert proto["embedder_class"] == "kad_embedder:E" and "kadtk" in proto["estimator"]
    with pytest.raises(ConfigError, match="reference_stats"):
        metric("kad", embedder="kad_embedder:E", reference_stats="x.npz")


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="tracker"):
        metric("visual_sync", tracker="aubio")
    with pytest.raises(ConfigError, match="events"):
        metric("visual_sync", events="faces")
