"""vidmusic_core.audio on real files written here: wav/flac round trips, soxr resampling, mp3 and the audio
track of an mp4 through PyAV, and the specific errors for bad audio."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from vidmusic_core.audio import (AudioDecodeError, AudioNotFoundError, NoAudioStreamError, NonFiniteAudioError,
                                 SilentAudioError, audio_duration, audio_info, load_audio, write_wav)
from vidmusic_core.errors import VidmusicError
from vidmusic_core.video import write_video


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spectrum.argmax()])


def test_wav_round_trip_stereo_and_mono(tmp_path: Path) -> None:
    x = np.stack([sine(440, 1.0, 16000), sine(660, 1.0, 16000, 0.25)])  # [2, L]
    path = write_wav(tmp_path / "a.wav", x, 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # atomic: no temp file left
    assert sf.info(str(path)).subtype == "PCM_16"
    back = load_audio(path, 16000, mono=False)
    assert back.shape == (2, 16000) and back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=1e-4)
    mono = load_audio(path, 16000)  # mono=True averages the channels
    np.testing.assert_allclose(mono[0], x.mean(axis=0), atol=1e-4)
    # [L] torch input and FLAC by suffix, float kept with subtype FLOAT in wav
    write_wav(tmp_path / "b.flac", torch.from_numpy(x[0]), 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "b.flac", 16000), x[:1], atol=1e-4)
    write_wav(tmp_path / "c.wav", x * 1.5, 16000, subtype="FLOAT")
    assert load_audio(tmp_path / "c.wav", None, mono=False).max() == pytest.approx(0.75, abs=1e-3)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration) == (16000, 2, 1.0)


def test_resampling_keeps_frequency_length_and_level(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", sine(1000, 1.0, 44100), 44100, subtype="FLOAT")
    for sr in (16000, 32000, 48000):
        y = load_audio(path, sr)
        assert y.shape == (1, sr)
        assert peak_hz(y[0], sr) == pytest.approx(1000, abs=2)
        assert np.abs(y[0, sr // 10: -sr // 10]).max() == pytest.approx(0.5, abs=0.01)
    # a tone above the new Nyquist frequency is removed, not aliased
    high = write_wav(tmp_path / "h.wav", sine(10000, 1.0, 44100), 44100, subtype="FLOAT")
    assert np.abs(load_audio(high, 16000, allow_silent=True)[0, 1600:-1600]).max() < 0.01


def test_audio_track_of_an_mp4(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, np.zeros((50, 48, 64, 3), np.uint8), 25)
    # add a 2 s 440 Hz AAC track to a copy of that video
    x = sine(440, 2.0, 44100)
    wav = write_wav(tmp_path / "m.wav", x, 44100)
    from vidmusic_core.video import mux_audio

    out = mux_audio(path, wav, tmp_path / "with_audio.mp4")
    y = load_audio(out, 32000)
    assert y.shape[0] == 1 and abs(y.shape[1] - 64000) < 2000  # AAC priming/padding is small
    assert peak_hz(y[0, 4000:60000], 32000) == pytest.approx(440, abs=2)
    assert audio_duration(out) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(NoAudioStreamError, match="clip.mp4.*no audio stream"):
        load_audio(path, 32000)


@pytest.mark.skipif("libmp3lame" not in av.codecs_available, reason="this PyAV wheel has no mp3 encoder")
def test_mp3(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    x = sine(523.25, 1.5, 44100)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libmp3lame", rate=44100)
        s.layout = "mono"
        for i in range(0, len(x), 1152):
            f = av.AudioFrame.from_ndarray(x[None, i:i + 1152].copy(), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    y = load_audio(path, 22050)
    assert abs(y.shape[1] - int(1.5 * 22050)) < 2500
    assert peak_hz(y[0, 2000:-2000], 22050) == pytest.approx(523.25, abs=3)
    assert audio_duration(path) == pytest.approx(1.5, abs=0.1)


def test_bad_audio_raises_specific_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 16000)
    assert issubclass(AudioNotFoundError, FileNotFoundError) and issubclass(AudioNotFoundError, VidmusicError)

    silent = write_wav(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    with pytest.raises(SilentAudioError, match="silent.wav.*silent"):
        load_audio(silent, 16000)
    assert load_audio(silent, 16000, allow_silent=True).shape == (1, 8000)

    bad = sine(440, 0.5, 16000)
    bad[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), bad, 16000, subtype="FLOAT")  # written directly: write_wav refuses NaN
    with pytest.raises(NonFiniteAudioError, match="nan.wav.*1 of 8000 samples"):
        load_audio(tmp_path / "nan.wav", 16000)
    with pytest.raises(NonFiniteAudioError):
        write_wav(tmp_path / "out.wav", bad, 16000)
    assert not (tmp_path / "out.wav").exists()

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav" * 50)
    with pytest.raises(AudioDecodeError, match="junk.wav"):
        load_audio(junk, 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(write_wav(tmp_path / "full.flac", sine(440, 1.0, 16000), 16000).read_bytes()[:60])
    with pytest.raises(AudioDecodeError, match="cut.flac"):
        load_audio(cut, 16000)
