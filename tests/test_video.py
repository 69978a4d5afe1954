"""vidmusic_core.video on real files written here with PyAV: frame rates, VFR, rotation, seeking, bad files,
batching and muxing. Each frame's index is written into the picture as 8 black/white blocks (bit b of the
index = block b of the top half), so the tests check WHICH frame was sampled, not only how many."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidmusic_core.audio import load_audio, write_wav
from vidmusic_core.errors import VidmusicError
from vidmusic_core.types import FrameSpec, Frames
from vidmusic_core.video import (FrameSampler, NoVideoStreamError, VideoDecodeError, VideoError,
                                 VideoNotFoundError, VideoTooShortError, ZeroDurationError, load_frames,
                                 frame_to_rgb, mux_audio, probe_video, write_video)

H, W = 48, 64


def pattern(i: int) -> np.ndarray:
    """A 48x64 RGB frame whose top half spells ``i`` in 8 binary blocks (white = 1); bottom half green."""
    a = np.zeros((H, W, 3), np.uint8)
    for b in range(8):
        if (i >> b) & 1:
            a[: H // 2, b * 8:(b + 1) * 8] = 255
    a[H // 2:, :, 1] = 128
    return a


def index_of(frame: np.ndarray) -> int:
    """Read back the index spelled by :func:`pattern` (works after a squash resize to any size)."""
    h, w = frame.shape[:2]
    return sum(1 << b for b in range(8) if frame[: h // 2, b * w // 8:(b + 1) * w // 8].mean() > 128)


def frames(n: int) -> np.ndarray:
    return np.stack([pattern(i) for i in range(n)])


def spec(**kw) -> FrameSpec:
    kw.setdefault("size", 64)
    return FrameSpec(**kw)


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001), Fraction(60)])
def test_timestamp_sampling_picks_the_nearest_frame(tmp_path: Path, rate: Fraction) -> None:
    n = int(rate * 3)  # 3 s
    path = write_video(tmp_path / "v.mp4", frames(n), rate)
    info = probe_video(path)
    assert (info.n_frames, info.width, info.height, info.rotation, info.codec) == (n, W, H, 0, "h264")
    assert info.fps == pytest.approx(float(rate)) and info.duration == pytest.approx(n / float(rate), abs=1e-3)
    assert not info.has_audio

    out = FrameSampler(spec(fps=2, n_global=5)).sample(path, 0.0, 2.9)
    assert out.local.shape == (6, 64, 64, 3) and out.local.dtype == np.uint8
    half = 0.5 / float(rate)
    np.testing.assert_allclose(out.local_times, np.arange(6) * 0.5, atol=half + 1e-6)
    # the content is the frame whose presentation time is reported
    assert [index_of(f) for f in out.local] == [round(t * float(rate)) for t in out.local_times]
    # global frames: evenly spread from the first to the last frame of the whole video
    np.testing.assert_allclose(out.global_times, np.linspace(0, (n - 1) / float(rate), 5), atol=half + 1e-6)
    assert [index_of(f) for f in out.global_frames] == [round(t * float(rate)) for t in out.global_times]
    assert out.global_frames[0].tolist() == out.local[0].tolist()


def test_window_to_the_end_counts_and_pads_with_the_last_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames(120), Fraction(30000, 1001))  # 4.004 s
    out = FrameSampler(spec(fps=2)).sample(path)
    assert len(out.local) == 9  # targets 0, 0.5, ..., 4.0 s, all < 4.004 s
    assert [index_of(f) for f in out.local] == [0, 15, 30, 45, 60, 75, 90, 105, 119]


def test_variable_frame_rate(tmp_path: Path) -> None:
    times = np.array([0.0, 0.04, 0.3, 0.35, 0.9, 1.0, 1.05, 1.6, 2.0, 2.5])
    path = write_video(tmp_path / "vfr.mp4", frames(len(times)), 25, times=times.tolist())
    got = [f.time for f in av.open(str(path)).decode(video=0)]
    np.testing.assert_allclose(got, times, atol=1e-3)  # the file really is VFR
    out = FrameSampler(spec(fps=2)).sample(path, 0.0, 2.6)
    targets = np.arange(6) * 0.5
    expected = [int(np.argmin(np.abs(times - t))) for t in targets]  # nearest by presentation time
    assert [index_of(f) for f in out.local] == expected == [0, 3, 5, 7, 8, 9]
    np.testing.assert_allclose(out.local_times, times[expected], atol=1e-3)


def test_vidmuse_stride_and_padding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames(75), 25)  # 3 s
    out = FrameSampler(spec(fps=4, n_global=4, sampling="vidmuse")).sample(path)
    # stride ceil(25 / 4) = 7 over decoded frames; 12 slots; ids 0..70 exist, slot 12 repeats frame 70
    assert [index_of(f) for f in out.local] == list(range(0, 75, 7)) + [70]
    assert [index_of(f) for f in out.global_frames] == torch.linspace(0, 74, 4).long().tolist() == [0, 24, 49, 74]


@pytest.mark.parametrize("sampling,suffix", [("timestamps", "mp4"), ("vidmuse", "mp4"), ("timestamps", "mkv")])
def test_late_window_seeks_instead_of_decoding_from_the_start(tmp_path: Path, sampling: str, suffix: str) -> None:
    # keyframe every <= 10 frames; mp4 has an index of every frame, this matroska file none (blind seek)
    path = write_video(tmp_path / f"v.{suffix}", frames(200), 25, options={"g": "10"})
    out = FrameSampler(spec(fps=2, sampling=sampling)).sample(path, 6.0, 7.0)
    want = [150, 162] if sampling == "timestamps" else [150, 163]  # nearest to 6.5 s is 162 (tie: earlier)
    assert [index_of(f) for f in out.local] == want
    assert out.n_decoded < 30  # decoding from the start would take >= 163 frames


@pytest.mark.parametrize("rotation,corner", [(90, "bottom_left"), (-90, "top_right"), (180, "bottom_right")])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int, corner: str) -> None:
    a = np.zeros((8, H, W, 3), np.uint8)
    a[:, :12, 8:20, 0] = 255  # a red marker near the stored top-left corner (inside the centre square)
    path = write_video(tmp_path / "rot.mp4", a, 25, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation and (info.width, info.height) == (W, H)
    assert info.display_size == ((H, W) if rotation % 180 else (W, H))
    for resize in ("squash", "center_crop"):
        f = FrameSampler(spec(fps=25, size=48, resize=resize)).sample(path).local[0]
        rows, cols = np.nonzero(f[..., 0] > 128)
        assert 0 < len(rows) < 48 * 48 // 4
        # the display matrix turns the picture counter-clockwise by `rotation` degrees
        where = ("top" if rows.mean() < 24 else "bottom") + ("_left" if cols.mean() < 24 else "_right")
        assert where == corner, (resize, rows.mean(), cols.mean())
        assert max(rows.mean(), cols.mean(), 47 - rows.mean(), 47 - cols.mean()) > 30  # near a corner


def test_center_crop_and_squash(tmp_path: Path) -> None:
    a = np.zeros((4, H, W, 3), np.uint8)
    a[:, :, :8, 2] = 255  # blue band on the left 8 columns: outside the centre 48x48 square
    path = write_video(tmp_path / "v.mp4", a, 25)
    crop = FrameSampler(spec(fps=25, size=48, resize="center_crop")).sample(path).local[0]
    squash = FrameSampler(spec(fps=25, size=32, resize="squash")).sample(path).local[0]
    assert crop.shape == (48, 48, 3) and crop[:, :, 2].max() < 60
    assert squash.shape == (32, 32, 3) and squash[:, :3, 2].mean() > 150 and squash[:, 8:, 2].max() < 60


def test_the_reused_swscale_context_gives_the_pixels_of_a_fresh_one(tmp_path: Path) -> None:
    """``frame_to_rgb`` (one VideoReformatter reused across frames and sizes) equals PyAV's per-frame
    ``to_ndarray`` exactly, for area averaging and for swscale's default filter."""
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "v.mp4", rng.integers(0, 256, (6, H, W, 3), dtype=np.uint8), 25)
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    for frame in decoded:
        for w, h, interp in ((32, 32, "AREA"), (48, 27, None), (96, 72, "AREA"), (64, 48, "AREA")):
            want = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation=interp)
            got = frame_to_rgb(frame, w, h, interpolation=interp)
            assert got.shape == (h, w, 3) and np.array_equal(got, want), (w, h, interp)


def test_load_frames_batches_and_masks(tmp_path: Path) -> None:
    a = write_video(tmp_path / "a.mp4", frames(50), 25)   # 2 s -> 4 local frames
    b = write_video(tmp_path / "b.mp4", frames(75), 25)   # 3 s -> 6 local frames
    batch = load_frames([a, b], spec(fps=2, n_global=3, size=32))
    assert isinstance(batch, Frames)
    assert batch.local.shape == (2, 6, 32, 32, 3) and batch.local.dtype == torch.uint8
    assert batch.local_mask.tolist() == [[True] * 4 + [False] * 2, [True] * 6]
    assert batch.global_frames is not None and batch.global_frames.shape == (2, 3, 32, 32, 3)
    torch.testing.assert_close(batch.duration, torch.tensor([2.0, 3.0]))
    assert [index_of(f.numpy()) for f in batch.local[1]] == [0, 12, 25, 37, 50, 62]
    assert batch.local[0, 4:].sum() == 0
    clipped = load_frames([a, b], spec(fps=2, size=32), 0.0, 3.0)  # a window past the end of a.mp4
    assert clipped.local_mask.tolist() == batch.local_mask.tolist() and clipped.global_frames is None


def test_bad_files_raise_specific_errors(tmp_path: Path) -> None:
    sampler = FrameSampler(spec(fps=2))
    with pytest.raises(VideoNotFoundError, match="nope.mp4"):
        sampler.sample(tmp_path / "nope.mp4")

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError, match="junk.mp4"):
        probe_video(junk)

    one = write_video(tmp_path / "one.mp4", frames(1), 25)  # 0.04 s < 0.5 s frame interval at 2 fps
    with pytest.raises(VideoTooShortError, match="one.mp4.*shorter than one frame interval"):
        sampler.sample(one)

    with pytest.raises(VideoError, match="outside"):
        sampler.sample(write_video(tmp_path / "ok.mp4", frames(25), 25), start=5.0)
    for err in (VideoNotFoundError, VideoDecodeError, VideoTooShortError):
        assert issubclass(err, VidmusicError)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=32000)
        s.layout = "mono"
        x = (0.3 * np.sin(np.arange(32000) * 0.1)).astype(np.float32)
        for i in range(0, 32000, 1024):
            f = av.AudioFrame.from_ndarray(x[None, i:i + 1024].copy(), format="fltp", layout="mono")
            f.sample_rate, f.pts = 32000, i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def test_audio_only_and_zero_duration(tmp_path: Path) -> None:
    with pytest.raises(NoVideoStreamError, match="song.m4a.*no video stream"):
        FrameSampler(spec()).sample(_audio_only(tmp_path / "song.m4a"))

    # a matroska file whose video track has no frames (only audio packets)
    path = tmp_path / "empty.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height = W, H
        a = c.add_stream("aac", rate=32000)
        a.layout = "mono"
        for i in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 32000, i * 1024
            c.mux(a.encode(f))
        c.mux(a.encode(None))
        c.mux(v.encode(None))
    with pytest.raises(ZeroDurationError, match="empty.mkv.*no frames"):
        probe_video(path)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_file(tmp_path: Path, faststart: bool) -> None:
    good = write_video(tmp_path / "good.mp4", frames(50), 25, faststart=faststart)
    data = good.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        FrameSampler(spec(fps=2)).sample(bad)


@pytest.mark.parametrize("audio_seconds", [3.0, 1.2])
def test_mux_copies_video_and_fits_audio(tmp_path: Path, audio_seconds: float) -> None:
    video = write_video(tmp_path / "v.mp4", frames(50), 25, rotation=90)  # 2 s
    sr = 32000
    t = np.arange(int(audio_seconds * sr)) / sr
    wav = write_wav(tmp_path / "m.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sr)
    out = mux_audio(video, wav, tmp_path / "out" / "muxed.mp4")
    assert sorted(p.name for p in out.parent.iterdir()) == ["muxed.mp4"]  # atomic: no temp file left

    def packets(path: Path) -> list[tuple[bytes, float]]:
        with av.open(str(path)) as c:
            return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(video=0) if p.size]

    assert packets(out) == packets(video)  # copied, not re-encoded
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.audio[0].codec_context.name == "aac"
    info = probe_video(out)
    assert info.has_audio and info.rotation == 90 and info.n_frames == 50
    audio = load_audio(out, sr, allow_silent=True)
    assert audio.shape[1] / sr == pytest.approx(2.0, abs=0.05)  # trimmed or padded to the video length
    spectrum = np.abs(np.fft.rfft(audio[0, : sr // 2 * 2]))
    assert np.fft.rfftfreq(sr // 2 * 2, 1 / sr)[spectrum.argmax()] == pytest.approx(440, abs=3)
    if audio_seconds < 2.0:  # padded tail is silent, the start is not
        assert np.abs(audio[0, int(1.4 * sr):int(1.9 * sr)]).max() < 0.02
        assert np.abs(audio[0, : sr]).max() > 0.3


def test_global_frames_are_cached_across_windows(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames(100), 25, options={"g": "10"})
    sampler = FrameSampler(spec(fps=2, n_global=4))
    first = sampler.sample(path, 0.0, 1.0)
    late = sampler.sample(path, 3.0, 4.0)
    assert late.n_decoded < 15 and math.isclose(late.local_times[0], 3.0)
    np.testing.assert_array_equal(first.global_frames, late.global_frames)
    assert [index_of(f) for f in late.global_frames] == [0, 33, 66, 99]


def test_skipping_unneeded_frames_gives_the_same_frames_as_a_full_decode(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = np.stack([np.stack([(xx * 4 + i * 3) % 256, (yy * 5 + i) % 256, np.full_like(xx, i * 2)], -1)
                       for i in range(100)]).astype(np.uint8)  # smooth motion: x264 uses B-frames
    path = write_video(tmp_path / "smooth.mp4", smooth, 25)
    sp = spec(fps=2, n_global=5, size=32)
    out = FrameSampler(sp).sample(path)
    with av.open(str(path)) as c:  # reference: decode every frame, pick the nearest by time
        all_frames = [(f.time, f.to_ndarray(width=32, height=32, format="rgb24", interpolation="AREA"))
                      for f in c.decode(video=0)]
    times = np.array([t for t, _ in all_frames])
    targets = np.concatenate([np.arange(8) * 0.5, np.linspace(0, 3.96, 5)])
    want = [int(np.argmin(np.abs(times - t))) for t in targets]
    got = np.concatenate([out.local, out.global_frames])
    np.testing.assert_allclose(np.concatenate([out.local_times, out.global_times]), times[want], atol=1e-6)
    for g, j in zip(got, want):
        np.testing.assert_array_equal(g, all_frames[j][1])
    assert out.n_decoded < 90  # non-reference frames nobody asked for were not decoded
