"""Music -> video (issue 22): the visualizer kind, `vidmusic visualize`, and `reactive` as the inverse of the toy data."""
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from vidmusic_core import Visualizer, hookimpl
from vidmusic_core.data import toy_video as tv
from vidmusic_core.data.toy import make_toy_dataset
from vidmusic_core.song import SongError, analyse_song
from vidmusic_core.testing import check_component_contract, write_test_song
from vidmusic_core.visualize import visualize

BIN = Path(sys.executable).parent


def decode(path):
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
        rate = c.streams.audio[0].rate
    return frames, audio, rate


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_toy_dataset(out, n=2, seconds=6, size=96, fps=12, progress=False, workers=1)
    return out


def test_cli_writes_an_mp4_with_the_song_and_beats_that_pulse(tmp_path):
    song = write_test_song(tmp_path / "song.wav", seconds=4.0, bpm=120)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(BIN / "vidmusic"), "visualize", str(song), "-o", str(tmp_path / "out.mp4"), "--size", "64x48",
                        "--fps", "12", "--no-progress"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    frames, audio, rate = decode(tmp_path / "out.mp4")
    assert frames.shape == (48, 48, 64, 3)
    assert abs(audio.shape[1] / rate - 4.0) < 0.05 and np.abs(audio).max() > 0.1  # the song is the soundtrack
    centre = frames[:, 20:28, 28:36].astype(float).mean(axis=(1, 2, 3))  # the disc
    peaks = [k for k in range(1, 47) if centre[k] > centre[k - 1] and centre[k] >= centre[k + 1] and centre[k] > 120]
    beats = 0.25 + 0.5 * np.arange(8)
    assert len(peaks) >= 6
    assert all(np.abs(beats - k / 12).min() <= 1 / 12 + 1e-6 for k in peaks)


def test_reactive_draws_the_toy_picture_of_the_toy_music(toy, tmp_path):
    """The toy clip's audio alone gives back its video's background (key, mode) and beat flashes."""
    hits, bg_ok = [], 0
    for name in ("toy_00000", "toy_00001"):
        truth = json.loads((toy / f"{name}.json").read_text())
        res = visualize(toy / f"{name}.wav", tmp_path / f"{name}.mp4", size=96, fps=12, progress=False)
        frames, _, _ = decode(res.mp4)
        bg_ok += int(np.abs(frames[0, 1:3, 40:56].mean(axis=(0, 1)) - truth["video"]["background_rgb"]).max() < 6)
        x0, y0, x1, y1 = truth["video"]["pulser_box"]
        centre = frames[:, y0:y1, x0:x1].astype(float).mean(axis=(1, 2, 3))
        peaks = np.array([k for k in range(1, len(centre) - 1) if centre[k] > centre[k - 1] and
                          centre[k] >= centre[k + 1] and centre[k] > centre.min() + 20]) / 12
        beats = np.array(truth["beat_times"])
        hits += [np.abs(peaks - b).min() <= 1 / 12 + 1e-6 for b in beats if b < 6 - 1 / 12]
    assert bg_ok == 2, "background hue/brightness must name the clip's key and mode as the toy video does"
    assert np.mean(hits) >= 0.8, np.mean(hits)


def test_midi_song(toy, tmp_path):
    res = visualize(toy / "toy_00000.mid", tmp_path / "m.mp4", size=64, fps=8, progress=False)
    frames, audio, rate = decode(res.mp4)
    assert len(frames) == res.frames and res.seconds > 5 and np.abs(audio).max() > 0.1


def test_song_in_an_mp4(toy, tmp_path):
    """A soundtrack soundfile cannot read (AAC in mp4) is decoded with PyAV first."""
    from vidmusic_core.video import mux_audio

    mux_audio(toy / "toy_00001.mp4", toy / "toy_00001.wav", tmp_path / "clip.mp4")
    res = visualize(tmp_path / "clip.mp4", tmp_path / "v.mp4", size=64, fps=8, progress=False)
    truth = json.loads((toy / "toy_00001.json").read_text())
    assert res.song.key == (truth["key"]["tonic"], truth["key"]["mode"]) and abs(res.seconds - 6.0) < 0.2


def test_memory_is_flat_in_song_length(tmp_path):
    peaks = []
    for seconds in (60.0, 180.0):
        song = write_test_song(tmp_path / f"s{seconds:g}.wav", seconds=seconds)
        tracemalloc.start()
        visualize(song, tmp_path / f"s{seconds:g}.mp4", size=96, fps=24, window_seconds=2.0, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    # three times the song; its frames alone would grow by 120 s * 24 * 96 * 96 * 3 B = 80 MiB
    assert peaks[1] < peaks[0] * 1.2 + 4, peaks


def test_reactive_contract():
    check_component_contract("visualizer", "reactive")


class WindowDependent(Visualizer):
    """Broken: brightness follows the position inside the window, not the time."""

    def render(self, plan, times):
        T = len(times)
        _, (W, H), _, _ = plan
        return np.broadcast_to((np.arange(T) * 7 % 255).astype(np.uint8)[:, None, None, None], (T, H, W, 3)).copy()


def test_contract_catches_a_window_dependent_visualizer(vidmusic_host):
    class Plugin:
        @hookimpl
        def register_visualizers(self, register):
            register("broken", WindowDependent)

    vidmusic_host.register_plugin(Plugin())
    with pytest.raises(AssertionError, match="two consecutive windows"):
        check_component_contract("visualizer", "broken")


def test_bad_inputs(tmp_path):
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    with pytest.raises(SongError, match="silent"):
        analyse_song(silent)
    with pytest.raises(SongError, match="does not exist"):
        visualize(tmp_path / "nope.wav", tmp_path / "o.mp4", progress=False)
    song = write_test_song(tmp_path / "s.wav", seconds=2.0)
    from vidmusic_core import ConfigError

    with pytest.raises(ConfigError, match="even"):
        visualize(song, tmp_path / "o.mp4", size=63, progress=False)
    with pytest.raises(ConfigError, match="motion"):
        visualize(song, tmp_path / "o.mp4", overrides=["motion=3"], progress=False)
    r = subprocess.run([str(BIN / "vidmusic"), "visualize", str(song), "-o", str(tmp_path / "o.mp4"), "--set", "nope=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "nope" in r.stderr and "motion" in r.stderr
