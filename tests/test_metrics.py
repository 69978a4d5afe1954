"""Metrics on synthetic music whose truth is known (click tracks, chord progressions, timbre sections)."""
from __future__ import annotations

import json
import math

import numpy as np
import pretty_midi
import pytest

from metric_helpers import core, metric  # noqa: F401  (core: an autouse fixture)
from vidmusic_core.errors import ConfigError, VidmusicError
from vidmusic_core.metrics import MetricError, MissingWeightsError, midi_notes, parse_key
from vidmusic_core.metrics.control import estimate_key, tempo_hits
from vidmusic_core.metrics.quality import frechet_distance
from vidmusic_core.metrics.rhythm import bcs_bhs_counts

SR = 22050
METRICS = ("beat_f1", "cut_hit", "bcs_bhs", "tempo_acc", "key_acc", "section_align", "fd_mel", "fad")


def click_track(bpm: float, seconds: float = 8.0, offset: float = 0.5, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Decaying noise bursts at ``offset + k·60/bpm`` -> (audio [L], click times)."""
    times = np.arange(offset, seconds - 0.05, 60.0 / bpm)
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(0.02 * sr)
    burst = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / (0.003 * sr))
    for t in times:
        i = int(round(t * sr))
        y[i:i + n] += burst[: len(y) - i].astype(np.float32)
    return 0.5 * y, times


def tone(freqs, seconds: float, sr: int = SR, partials: int = 4, decay: float = 0.6) -> np.ndarray:
    """Harmonic tones (``partials`` harmonics with 1/k amplitudes) of ``freqs`` summed, with a fade."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f * k * t) / k for f in freqs for k in range(1, partials + 1))
    return (y * np.exp(-decay * t) / len(freqs)).astype(np.float32)


def progression(tonic: int, mode: str, chord_seconds: float = 1.0) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-V-i (minor) triads from ``tonic`` (pitch class), harmonic tones."""
    third = 4 if mode == "major" else 3
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    base = 48 + tonic
    return np.concatenate([tone([440 * 2 ** ((base + iv - 69) / 12) for iv in c], chord_seconds) for c in chords])


def midi_song(bpm: float = 120.0, tonic: int = 0, mode: str = "major",
              bars: int = 4) -> tuple[pretty_midi.PrettyMIDI, np.ndarray]:
    """Drums on every beat + the progression as block chords (one per bar) -> (PrettyMIDI, beat times)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    beat = 60.0 / bpm
    drums, keys = pretty_midi.Instrument(0, is_drum=True), pretty_midi.Instrument(0)
    beats = np.arange(4 * bars) * beat + 0.5
    for t in beats:
        drums.notes.append(pretty_midi.Note(100, 36, t, t + 0.1))
    third = 4 if mode == "major" else 3
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    for b in range(bars):
        start = 0.5 + 4 * b * beat
        for iv in chords[b % 4]:
            keys.notes.append(pretty_midi.Note(80, 60 + tonic + iv, start, start + 4 * beat))
    pm.instruments += [drums, keys]
    return pm, beats


# --------------------------------------------------------------------------------------------------
def test_registered_contract_and_protocols_are_json():
    from vidmusic_core.testing import check_component_contract

    for name in METRICS:
        m = check_component_contract("metric", name)
        proto = m.protocol()
        assert proto["metric"] == name and proto["version"] >= 1
        json.dumps(proto)
        assert m.needs <= {"audio", "midi", "video", "reference"}
    assert metric("beat_f1").protocol()["window"] == 0.07
    assert metric("bcs_bhs").protocol()["bin_seconds"] == 1.0
    assert metric("section_align").protocol()["window"] == 0.5
    assert metric("fd_mel", reference_set="toy test n=4").protocol()["reference_set"] == "toy test n=4"


def test_beat_f1_click_track_and_shift():
    y, beats = click_track(120, seconds=10)
    m = metric("beat_f1")
    on = m.compute([{"audio": y, "sample_rate": SR, "reference": {"beats": beats.tolist()}}])
    assert on["beat_f1"] > 0.95 and on["onset_f1"] > 0.95
    off = m.compute([{"audio": y, "sample_rate": SR, "reference": {"beat_times": (beats + 0.15).tolist()}}])
    assert off["beat_f1"] < 0.05 and off["onset_f1"] < 0.05
    # visual beats take precedence over the reference; 44.1 kHz input is resampled
    y44, _ = click_track(120, seconds=10, sr=44100)
    vis = m.compute([{"audio": y44, "sample_rate": 44100, "visual_beats": beats, "reference": {"beats": beats + 0.15}}])
    assert vis["beat_f1"] > 0.95


def test_cut_hit():
    y, beats = click_track(120)
    m = metric("cut_hit")
    assert m.compute([{"audio": y, "sample_rate": SR, "reference": {"cut_times": [beats[4], beats[10]]}}])[
        "cut_hit_rate"] == 1.0
    assert m.compute([{"audio": y, "sample_rate": SR, "visual_cuts": [beats[4] + 0.25]}])["cut_hit_rate"] == 0.0
    with pytest.raises(MetricError, match="no item has a cut"):
        m.compute([{"audio": y, "sample_rate": SR, "reference": {"cuts": []}}])


def _notes_at(times, end):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(90, 60, t, min(t + 0.1, end)) for t in times]
    inst.notes.append(pretty_midi.Note(1, 60, end - 0.05, end))  # the clip lasts until `end`
    pm.instruments.append(inst)
    return pm


def test_bcs_bhs_hand_computed_both_forms():
    # clip 1: generated bins {0,1,4} (4.45 s -> 5 bins), reference {0,1,2,3} (5.5 s dropped): G=3 R=4 H=2
    assert bcs_bhs_counts(np.array([0.3, 1.9, 4.2]), np.array([0.1, 0.6, 1.2, 2.5, 3.3, 5.5]), 4.5) == (3, 4, 2)
    items = [{"midi": _notes_at([0.3, 1.9, 4.2], 4.5), "reference": {"beats": [0.1, 0.6, 1.2, 2.5, 3.3, 5.5]}},
             # clip 2: generated {0,1,2}, reference {0,2}: G=3 R=2 H=2
             {"midi": _notes_at([0.5, 1.5, 2.5], 3.0), "reference": {"beats": [0.2, 2.2]}}]
    out = metric("bcs_bhs").compute(items)
    # D2M-GAN: BCS = G/R, BHS = H/R ; LORIS: BCS = H/G, BHS = H/R, F1 of the means, std ddof=1
    assert out["bcs_d2m"] == pytest.approx((3 / 4 + 3 / 2) / 2)
    assert out["bhs"] == pytest.approx((2 / 4 + 2 / 2) / 2)
    assert out["bcs_loris"] == pytest.approx(2 / 3)
    assert out["bcs_bhs_f1_loris"] == pytest.approx(2 * (2 / 3) * 0.75 / (2 / 3 + 0.75))
    assert out["bhs_std"] == pytest.approx(np.std([0.5, 1.0], ddof=1)) and out["bcs_loris_std"] == pytest.approx(0.0)


def test_bcs_bhs_audio_onsets_and_reference_audio():
    y, _ = click_track(30, seconds=10, offset=0.5)  # a click every 2 s: bins 0,2,4,6,8
    every_second = np.arange(0.25, 10, 1.0)  # reference beats in every bin
    for peak_pick in ("d2m", "loris"):
        out = metric("bcs_bhs", peak_pick=peak_pick).compute(
            [{"audio": y, "sample_rate": SR, "reference": {"beats": every_second}}])
        assert out["bcs_d2m"] == pytest.approx(0.5) and out["bhs"] == pytest.approx(0.5)
        assert out["bcs_loris"] == pytest.approx(1.0)
    ref, _ = click_track(60, seconds=10, offset=0.5)
    item = {"audio": y, "sample_rate": SR, "reference_audio": ref}  # reference onsets: one per second
    out = metric("bcs_bhs", against="reference_audio").compute([item])
    assert out["bcs_d2m"] == pytest.approx(0.5) and out["bhs"] == pytest.approx(0.5)


def test_tempo_accuracy_and_octave_errors():
    m = metric("tempo_acc")
    items = []
    for bpm in (70, 90, 100, 150):
        y, beats = click_track(bpm)
        items.append({"audio": y, "sample_rate": SR, "reference": {"tempo_bpm": bpm}})
    out = m.compute(items)
    assert out["tempo_acc"] == 1.0 and out["tempo_acc_octave"] == 1.0 and out["tempo_rel_err"] < 0.04
    y, beats = click_track(120)
    for ref, exact, octave in ((60, 0.0, 1.0), (40, 0.0, 1.0), (240, 0.0, 1.0), (90, 0.0, 0.0)):
        out = m.compute([{"audio": y, "sample_rate": SR, "reference": {"tempo": ref}}])
        assert (out["tempo_acc"], out["tempo_acc_octave"]) == (exact, octave), ref
    # the reference tempo can come from the beats alone
    assert m.compute([{"audio": y, "sample_rate": SR, "visual_beats": beats}])["tempo_acc"] == 1.0
    # librosa's 120-bpm prior halves a 180-bpm click track: the octave-tolerant score still counts it
    y, _ = click_track(180)
    assert m.compute([{"audio": y, "sample_rate": SR, "reference": {"tempo": 180}}])["tempo_acc_octave"] == 1.0
    assert tempo_hits(103.0, 100.0, 0.04) == (True, True) and tempo_hits(105.0, 100.0, 0.04) == (False, False)


@pytest.mark.parametrize("tonic,mode", [(0, "major"), (7, "major"), (3, "major"),
                                        (9, "minor"), (4, "minor"), (6, "minor")])
def test_key_accuracy_on_synthesized_progressions(tonic, mode):
    y = progression(tonic, mode)
    ref = {"key": {"tonic": tonic, "mode": mode}}  # the toy json's form
    out = metric("key_acc").compute([{"audio": y, "sample_rate": SR, "reference": ref}])
    assert out == {"key_acc": 1.0, "key_acc_relaxed": 1.0, "key_mirex": 1.0, "mode_acc": 1.0}


def test_key_relaxed_and_mirex_scores():
    y = progression(0, "major")  # C major music
    m = metric("key_acc", chroma="stft")
    expect = {"G major": 0.0, "F major": 0.5, "A minor": 0.3, "C minor": 0.2, "F# major": 0.0}  # ref key -> MIREX
    for ref, score in expect.items():
        out = m.compute([{"audio": y, "sample_rate": SR, "reference": {"key": ref}}])
        assert out["key_acc"] == 0.0
        assert out["key_mirex"] == pytest.approx(score), ref
        assert out["key_acc_relaxed"] == float(score > 0)
    assert parse_key("Am") == (9, "minor") == parse_key(9, "minor") == parse_key("A:minor")
    assert parse_key("Bb major") == (10, "major") == parse_key({"tonic_name": "A#", "mode": "major"})
    d_minor = np.roll([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17], 2)
    assert estimate_key(d_minor) == (2, "minor")
    with pytest.raises(MetricError):
        parse_key("H major")


def test_section_align_on_timbre_sections():
    parts = [tone([220.0], 4.0, partials=1, decay=0.0), tone([220.0], 4.0, partials=12, decay=0.0),
             0.3 * np.random.default_rng(1).standard_normal(4 * SR).astype(np.float32)]
    y = np.concatenate(parts)
    m = metric("section_align")
    good = m.compute([{"audio": y, "sample_rate": SR, "reference": {"sections": [
        {"start": 0.0, "end": 4.0}, {"start": 4.0, "end": 8.0}, {"start": 8.0, "end": 12.0}]}}])
    assert good["section_f1"] == 1.0
    bad = m.compute([{"audio": y, "sample_rate": SR, "visual_cuts": [2.0, 6.0, 10.0]}])
    assert bad["section_recall"] == 0.0


def test_fd_mel_identical_zero_and_gain_shift():
    rng = np.random.default_rng(0)
    ref = [(0.1 * rng.standard_normal(SR)).astype(np.float32) for _ in range(3)]
    m = metric("fd_mel")
    same = m.compute([{"audio": r, "reference_audio": r, "sample_rate": SR} for r in ref])["fd_mel"]
    assert same == pytest.approx(0.0, abs=1e-6)
    fds = [m.compute([{"audio": g * r, "reference_audio": r, "sample_rate": SR} for r in ref])["fd_mel"]
           for g in (1.1, 1.5, 2.0)]
    assert fds[0] < fds[1] < fds[2]
    # a gain g shifts every log-mel band by 2 ln g and leaves the covariance: FD = n_mels (2 ln g)^2
    assert fds[2] == pytest.approx(64 * (2 * math.log(2.0)) ** 2, rel=0.02)
    assert frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)) == pytest.approx(2.0)


def test_fd_mel_reference_stats_file(tmp_path):
    rng = np.random.default_rng(0)
    ref = [{"audio": (0.1 * rng.standard_normal(SR)).astype(np.float32), "sample_rate": SR} for _ in range(2)]
    m = metric("fd_mel")
    path = m.save_statistics(tmp_path / "ref.npz", ref)
    m2 = metric("fd_mel", reference_stats=str(path), reference_set="two noise clips")
    assert m2.compute(ref)["fd_mel"] == pytest.approx(0.0, abs=1e-6)
    assert len(m2.protocol()["reference_stats_sha256"]) == 64
    with pytest.raises(MetricError, match="reference_audio"):
        m.compute(ref)


def test_fad_without_weights_raises_clear_error(tmp_path):
    items = [{"audio": np.zeros(SR, np.float32), "reference_audio": np.zeros(SR, np.float32), "sample_rate": SR}]
    with pytest.raises(MissingWeightsError, match="weights=") as err:
        metric("fad").compute(items)
    assert "ClapModel" in str(err.value) and isinstance(err.value, VidmusicError)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        metric("fad", weights=str(tmp_path / "nope")).compute(items)
    with pytest.raises(MissingWeightsError, match="cannot load"):
        metric("fad", weights=str(tmp_path)).compute(items)
    with pytest.raises(ConfigError, match="unknown embedder"):
        metric("fad", embedder="vggish")


def test_fad_plugged_embedder(tmp_path, monkeypatch):
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "w.safetensors").write_bytes(b"fake weights")
    (tmp_path / "my_embedder.py").write_text(  # a third-party embedder: log energy + zero crossings per 0.1 s
        "import numpy as np\n"
        "class E:\n"
        "    sample_rate = 8000\n"
        "    def __init__(self, weights, device): pass\n"
        "    def embed(self, audio):\n"
        "        w = audio[: len(audio) // 800 * 800].reshape(-1, 800)\n"
        "        return np.stack([np.log((w ** 2).mean(1) + 1e-9), (np.diff(np.sign(w), axis=1) != 0).mean(1)], 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    items = [{"audio": (0.1 * rng.standard_normal(SR)).astype(np.float32), "sample_rate": SR} for _ in range(3)]
    m = metric("fad", embedder="my_embedder:E", weights=str(tmp_path / "emb"))
    same = m.compute([dict(it, reference_audio=it["audio"]) for it in items])["fad"]
    louder = m.compute([dict(it, reference_audio=0.5 * it["audio"]) for it in items])["fad"]
    assert same == pytest.approx(0.0, abs=1e-6) and louder > 0.1
    proto = m.protocol()
    assert proto["embedder_class"] == "my_embedder:E" and len(proto["weights_sha256"]) == 64
    assert proto["embedder_sample_rate"] == 8000
    json.dumps(proto)


def test_fad_clap_from_a_local_directory(tmp_path):
    """A tiny random-weight ClapModel written locally goes through the real CLAP loading path."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ClapConfig(
        text_config=dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=40),
        audio_config=dict(hidden_size=32, patch_embeds_hidden_size=4, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1], num_classes=4), projection_dim=8)
    torch.manual_seed(0)
    transformers.ClapModel(cfg).save_pretrained(tmp_path)
    transformers.ClapFeatureExtractor().save_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(2 * 16000)).astype(np.float32) for _ in range(3)]
    m = metric("fad", weights=str(tmp_path), hop_seconds=1.0, chunk_seconds=1.0)
    out = m.compute([{"audio": a, "reference_audio": a, "sample_rate": 16000} for a in audio])
    assert out["fad"] == pytest.approx(0.0, abs=1e-5)
    proto = m.protocol()
    assert proto["embedder_sample_rate"] == 48000 and len(proto["weights_sha256"]) == 64
    json.dumps(proto)


def test_symbolic_items_through_beat_f1_key_acc_and_tempo(tmp_path):
    pm, beats = midi_song(bpm=100, tonic=9, mode="minor", bars=4)
    ref = {"beats": beats.tolist(), "key": "A minor", "tempo": 100}
    out = metric("beat_f1").compute([{"midi": pm, "reference": ref}])
    # every tracked beat is right; librosa's trim drops weak first/last beats (3 of 16 here)
    assert out["onset_f1"] == 1.0 and out["beat_precision"] == 1.0 and out["beat_f1"] > 0.85
    late = metric("beat_f1").compute([{"midi": pm, "reference": dict(ref, beats=(beats + 0.15).tolist())}])
    assert late["onset_f1"] == 0.0
    assert metric("key_acc").compute([{"midi": pm, "reference": ref}])["key_acc"] == 1.0
    assert metric("tempo_acc").compute([{"midi": pm, "reference": ref}])["tempo_acc"] == 1.0
    # a path and a symusic Score give the same notes; the MIDI wins over audio with source=auto
    pm.write(str(tmp_path / "song.mid"))
    import symusic

    by_path = midi_notes(tmp_path / "song.mid")
    by_score = midi_notes(symusic.Score(str(tmp_path / "song.mid")))
    np.testing.assert_allclose(by_path, by_score)
    np.testing.assert_allclose(by_path[:, :3], midi_notes(pm)[:, :3], atol=2e-3)
    silent = {"audio": np.zeros(SR, np.float32), "sample_rate": SR}
    both = {**silent, "midi": str(tmp_path / "song.mid"), "reference": ref}
    assert metric("key_acc").compute([both])["key_acc"] == 1.0


def test_bad_inputs_are_specific_errors(tmp_path):
    with pytest.raises(MetricError, match="no 'audio'"):
        metric("beat_f1").compute([{"reference": {"beats": [1.0]}}])
    with pytest.raises(MetricError, match="no item has reference beats"):
        metric("beat_f1").compute([{"audio": np.ones(SR, np.float32), "sample_rate": SR, "reference": {}}])
    with pytest.raises(MetricError, match="non-empty list"):
        metric("tempo_acc").compute([])
    with pytest.raises(MetricError, match="sample_rate"):
        metric("key_acc").compute([{"audio": np.ones(SR, np.float32), "reference": {"key": "C"}}])
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(MetricError, match="broken.mid"):
        metric("key_acc").compute([{"midi": str(bad), "reference": {"key": "C"}}])
    with pytest.raises(ConfigError, match="source"):
        metric("beat_f1", source="video")
    with pytest.raises(ConfigError, match="against"):
        metric("bcs_bhs", against="nothing")


def test_toy_ground_truth_beats_its_shuffled_control(tmp_path):
    """The toy clips' own music, scored against their json (key names as the generator writes them),
    scores high; the same music against the next clip's truth (shuffled control) scores lower."""
    toy = pytest.importorskip("vidmusic_core.data.toy")
    import soundfile as sf

    toy.make_toy_dataset(tmp_path, n=4, seconds=6.0, seed=1, workers=1, progress=False)
    items = []
    for name in [toy.clip_name(i) for i in range(4)]:
        y, sr = sf.read(tmp_path / f"{name}.wav", dtype="float32")
        items.append({"audio": y, "sample_rate": sr, "midi": str(tmp_path / f"{name}.mid"),
                      "reference": json.loads((tmp_path / f"{name}.json").read_text())})
    shuffled = [dict(it, reference=items[(i + 1) % 4]["reference"]) for i, it in enumerate(items)]
    for source in ("audio", "midi"):
        for name, key, floor in (("beat_f1", "beat_f1", 0.8), ("tempo_acc", "tempo_acc", 1.0),
                                 ("key_acc", "key_acc", 1.0)):
            m = metric(name, source=source)
            truth, control = m.compute(items)[key], m.compute(shuffled)[key]
            assert truth >= floor and truth > control, (source, name, truth, control)
