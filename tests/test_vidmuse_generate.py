"""`vidmusic generate VIDEO --checkpoint DIR --codec-dir ENCODEC -o OUT` with a `vidmuse_full` import (issue #10):
a tiny VidMuse state_dict.bin with the real key names is imported with the real CLI, a tiny EnCodec directory
(transformers save_pretrained layout) matches the LM's codebooks, and the CLI runs in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from test_musicgen import XP_CFG, K, V, _vidmuse_lm_state
from vidmusic_core import CheckpointError, get_component
from vidmusic_core.pipeline import item_seed
from vidmusic_core.video import probe_video, write_video

BIN = Path(sys.executable).parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
           TRANSFORMERS_VERBOSITY="error")


def vidmusic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=300, env=ENV)


def write_tiny_encodec(path: Path, codebook_size: int = V, n_codebooks: int = K) -> Path:
    """A random transformers EnCodec at 32 kHz / 50 Hz with ``n_codebooks x codebook_size`` (the LM's K x V)."""
    from transformers import EncodecConfig, EncodecModel

    nbits = int(np.ceil(np.log2(codebook_size)))
    torch.manual_seed(2)
    hf = EncodecModel(EncodecConfig(sampling_rate=32000, codebook_size=codebook_size, num_filters=8, hidden_size=16,
                                    codebook_dim=16, num_lstm_layers=1, upsampling_ratios=[8, 5, 4, 4],
                                    target_bandwidths=[n_codebooks * 50 * nbits / 1000], use_causal_conv=False,
                                    use_conv_shortcut=False))
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A VidMuse export (state_dict.bin + compression_state_dict.bin) imported with the CLI, a matching EnCodec,
    a 2 s and a 2.5 s video."""
    root = tmp_path_factory.mktemp("vidmuse_generate")
    lstv = get_component("encoder", "lstv")
    torch.manual_seed(0)
    visual = {k: v.clone() for k, v in lstv.build(lstv.default_config()).state_dict().items()}  # upstream names
    src = root / "VidMuse"
    src.mkdir()
    torch.save({"best_state": {**visual, **_vidmuse_lm_state()}, "xp.cfg": XP_CFG, "version": "1.3.0",
                "exported": True}, src / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True, "version": "1.3.0"},
               src / "compression_state_dict.bin")
    res = vidmusic("import", "vidmuse_full", str(src / "state_dict.bin"), "-o", str(root / "ckpt"), "clip_heads=2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    rng = np.random.default_rng(0)
    videos = {}
    for name, n in (("clip", 24), ("longer", 30)):  # 12 fps: 2.0 s and 2.5 s
        ramp = np.linspace(0, 120, n, dtype=np.uint8)[:, None, None, None]  # brightness ramp + noise
        frames = (ramp + rng.integers(0, 100, (n, 32, 32, 3))).astype(np.uint8)
        videos[name] = write_video(root / f"{name}.mp4", frames, 12)
    return {"root": root, "ckpt": root / "ckpt", "encodec": write_tiny_encodec(root / "encodec_tiny"), **videos}


def test_generate_short_video_with_codec_dir(imported: dict[str, Path]) -> None:
    out = imported["root"] / "gen"
    res = vidmusic("generate", str(imported["clip"]), "--checkpoint", str(imported["ckpt"]), "--codec-dir",
                   str(imported["encodec"]), "-o", str(out), "--seed", "5")
    assert res.returncode == 0, res.stderr[-3000:]
    audio, sr = sf.read(str(out / "clip.wav"))
    assert sr == 32000 and audio.ndim == 1 and abs(len(audio) / sr - 2.0) < 0.02
    assert np.abs(audio).max() > 1e-3 and np.isfinite(audio).all()  # not silent
    info = probe_video(out / "clip.mp4")
    assert info.has_audio and abs(info.duration - 2.0) < 0.2
    meta = json.loads((out / "clip.json").read_text())
    assert meta["seed"] == item_seed(5, "clip") and meta["model"] == "vidmuse"
    assert meta["checkpoint"] == str(imported["ckpt"]) and meta["codec_dir"] == str(imported["encodec"])
    assert meta["sampling"]["top_k"] == 250 and meta["sampling"]["cfg_coef"] == 3.0  # from vidmuse.yaml
    assert "window_seeds" not in meta  # shorter than window_seconds (30 s): one pass


def test_generate_long_video_in_windows_codec_from_yaml(imported: dict[str, Path]) -> None:
    """window_seconds 1 s (edited into vidmuse.yaml) makes the 2.5 s video a long one: 3 windows, one progress bar;
    the codec comes from ``codec_dir:`` in vidmuse.yaml (relative to the checkpoint)."""
    import yaml

    ckpt = imported["root"] / "ckpt_windows"
    shutil.copytree(imported["ckpt"], ckpt)
    shutil.copytree(imported["encodec"], ckpt / "my_encodec")
    settings = yaml.safe_load((ckpt / "vidmuse.yaml").read_text())
    settings.update(window_seconds=1.0, overlap_seconds=0.25, codec_dir="my_encodec")
    (ckpt / "vidmuse.yaml").write_text(yaml.safe_dump(settings))
    out = imported["root"] / "gen_windows"
    res = vidmusic("generate", str(imported["longer"]), "--checkpoint", str(ckpt), "-o", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 windows" in res.stderr and "3/3" in res.stderr  # cost estimate + the per-window bar
    audio, sr = sf.read(str(out / "longer.wav"))
    assert sr == 32000 and abs(len(audio) / sr - 2.5) < 0.02 and np.abs(audio).max() > 1e-3
    assert probe_video(out / "longer.mp4").has_audio
    meta = json.loads((out / "longer.json").read_text())
    assert meta["seed"] == item_seed(0, "longer") and len(meta["window_seeds"]) == 3
    assert (meta["window_seconds"], meta["overlap_seconds"]) == (1.0, 0.25)
    assert meta["codec_dir"] == str(ckpt / "my_encodec")


def test_upstream_window_fits_the_backbone(imported: dict[str, Path], tmp_path: Path) -> None:
    """vidmuse.yaml's 30 s window = the backbone's context_length (1500 frames at 50 Hz; the delay columns come on
    top, as upstream): a 30.5 s video goes in two windows (30 s, then 0.5 s continued from a 0.5 s prompt)."""
    from vidmusic_core import api

    frames = np.repeat(np.linspace(0, 200, 31 * 4, dtype=np.uint8), 32 * 32 * 3).reshape(-1, 32, 32, 3)
    video = write_video(tmp_path / "half_minute.mp4", frames, 4)
    res, = api.generate_from_checkpoint(imported["ckpt"], [video], tmp_path / "out", seconds=30.5,
                                        codec_dir=imported["encodec"], device="cpu", progress=False)
    wav, meta = res.wav, json.loads(res.json.read_text())
    assert meta == res.meta
    assert meta["window_seconds"] == 30.0 and len(meta["window_seeds"]) == 2
    audio, sr = sf.read(str(wav))
    assert sr == 32000 and len(audio) == 30.5 * 32000 and np.abs(audio).max() > 1e-3


def test_missing_codec_dir_is_a_clear_error(imported: dict[str, Path]) -> None:
    res = vidmusic("generate", str(imported["clip"]), "--checkpoint", str(imported["ckpt"]), "-o",
                   str(imported["root"] / "gen_none"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = res.stderr
    assert "--codec-dir" in err and "facebook/encodec_32khz" in err and "codec_dir" in err and "never downloads" in err
    assert not (imported["root"] / "gen_none" / "clip.wav").exists()


def test_wrong_codec_dirs_are_clear_errors(imported: dict[str, Path], tmp_path: Path) -> None:
    from vidmusic_core import api

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        api.load_vidmuse_checkpoint(imported["ckpt"], codec_dir=tmp_path / "empty")
    big = write_tiny_encodec(tmp_path / "encodec_2048", codebook_size=2048)
    with pytest.raises(CheckpointError, match=r"4 codebooks x 2048 .* predicts 4 x 32"):
        api.load_vidmuse_checkpoint(imported["ckpt"], codec_dir=big)
    with pytest.raises(Exception, match="takes no --text"):
        api.generate_from_checkpoint(imported["ckpt"], [imported["clip"]], tmp_path / "o", text=["piano"],
                                     codec_dir=imported["encodec"])


def test_chunked_decode_matches_the_whole_and_mux_pads(imported: dict[str, Path], tmp_path: Path) -> None:
    """Long-video helpers: decoding in pieces (with context) = decoding at once for a frame-local codec, and the
    block-reading mux pads a short wav to the video's length (a rate AAC lacks: loaded whole, resampled)."""
    from vidmusic_core.audio import load_audio
    from vidmusic_core.longform import decode_frames
    from vidmusic_core.types import MusicTokens
    from vidmusic_core.video import mux_audio

    class FrameLocal:  # the attributes decode_frames reads
        sample_rate, frame_rate, representation = 100, 10.0, "tokens"

        def decode(self, tokens: MusicTokens) -> torch.Tensor:  # each frame -> 10 samples of its code 0
            return tokens.codes[:, :1].float().repeat_interleave(10, dim=-1) / 100

    codes = torch.randint(0, 100, (1, K, 57))
    whole = FrameLocal().decode(MusicTokens(codes[:, :, 5:50], None, 10.0))[0]
    pieces = list(decode_frames(FrameLocal(), codes, 5, 50, chunk=8, context=3))
    assert len(pieces) == 6 and torch.equal(torch.cat(pieces, dim=1), whole)

    wav = tmp_path / "short.wav"
    sf.write(str(wav), (0.1 * np.random.default_rng(0).standard_normal(32000 + 77)).astype(np.float32), 32000)
    a = load_audio(mux_audio(imported["longer"], wav, tmp_path / "a.mp4"), None, allow_silent=True)  # streamed
    sf.write(str(tmp_path / "odd.wav"), sf.read(str(wav), dtype="float32")[0][:20000], 20000)
    c = load_audio(mux_audio(imported["longer"], tmp_path / "odd.wav", tmp_path / "c.mp4"), None, allow_silent=True)
    dur = probe_video(imported["longer"]).duration
    assert abs(a.shape[-1] / 32000 - dur) < 0.05 and abs(c.shape[-1] / 48000 - dur) < 0.05
    assert float(np.abs(a[..., 40000:]).max()) < 1e-3  # zero-padded past the wav's end (1 s)


def test_import_with_codec_dir_writes_a_movable_model_directory(imported: dict[str, Path], tmp_path: Path) -> None:
    """`vidmusic import vidmuse_full ... codec_dir=ENCODEC` also writes codec/ + model_index.yaml: `generate --model`
    makes the same music as `--checkpoint --codec-dir`, and still does once the directory is moved and the EnCodec
    directory it came from is gone."""
    import yaml

    src = imported["root"] / "VidMuse" / "state_dict.bin"
    encodec = tmp_path / "encodec_copy"
    shutil.copytree(imported["encodec"], encodec)
    res = vidmusic("import", "vidmuse_full", str(src), "-o", str(tmp_path / "m"), "clip_heads=2", f"codec_dir={encodec}")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    index = yaml.safe_load((tmp_path / "m" / "model_index.yaml").read_text())
    assert index["components"]["codec"]["name"] == "encodec" and index["generate"]["top_k"] == 250
    assert yaml.safe_load((tmp_path / "m" / "codec" / "config.yaml").read_text())["config"]["weights"] == "hf"
    old = vidmusic("generate", str(imported["clip"]), "--checkpoint", str(imported["ckpt"]), "--codec-dir",
                   str(imported["encodec"]), "-o", str(tmp_path / "old"))
    assert old.returncode == 0, old.stderr[-3000:]
    moved = tmp_path / "moved" / "vidmuse"
    shutil.copytree(tmp_path / "m", moved)
    shutil.rmtree(tmp_path / "m")
    shutil.rmtree(encodec)
    new = vidmusic("generate", str(imported["clip"]), "--model", str(moved), "-o", str(tmp_path / "new"))
    assert new.returncode == 0, new.stderr[-3000:]
    a, sr_a = sf.read(str(tmp_path / "old" / "clip.wav"))
    b, sr_b = sf.read(str(tmp_path / "new" / "clip.wav"))
    assert sr_a == sr_b == 32000 and np.abs(a).max() > 1e-3
    np.testing.assert_array_equal(a, b)  # same weights, codec, sampling and seed
