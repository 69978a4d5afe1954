"""`vidmusic generate VIDEO --model DIR -o OUT` with a `vidmuse_full` import (issues #10, #16): a tiny VidMuse
state_dict.bin with the real key names is imported with the real CLI together with a tiny EnCodec directory
(transformers save_pretrained layout) that matches the LM's codebooks, so the output is a whole model directory;
the CLI runs in a subprocess."""
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
from vidmusic_core import get_component
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
    encodec = write_tiny_encodec(root / "encodec_tiny")
    res = vidmusic("import", "vidmuse_full", str(src / "state_dict.bin"), "-o", str(root / "ckpt"), "clip_heads=2",
                   f"codec_dir={encodec}")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    rng = np.random.default_rng(0)
    videos = {}
    for name, n in (("clip", 24), ("longer", 30)):  # 12 fps: 2.0 s and 2.5 s
        ramp = np.linspace(0, 120, n, dtype=np.uint8)[:, None, None, None]  # brightness ramp + noise
        frames = (ramp + rng.integers(0, 100, (n, 32, 32, 3))).astype(np.uint8)
        videos[name] = write_video(root / f"{name}.mp4", frames, 12)
    return {"root": root, "ckpt": root / "ckpt", "encodec": encodec, "src": src / "state_dict.bin", **videos}


def test_a_device_this_machine_lacks_is_a_clear_error(imported: dict[str, Path]) -> None:
    """``--device cuda:99`` (no such GPU here, with or without CUDA) and an unknown name: exit 2, one line that
    names the setting and what to do, no traceback, no output folder."""
    for dev, says in (("cuda:99", "cuda:99"), ("bogus", "not a device torch knows")):
        out = imported["root"] / f"no_{dev.replace(':', '_')}"
        res = vidmusic("generate", str(imported["clip"]), "--model", str(imported["ckpt"]), "-o", str(out),
                       "--device", dev)
        assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert not out.exists()


def test_generate_short_video(imported: dict[str, Path]) -> None:
    out = imported["root"] / "gen"
    res = vidmusic("generate", str(imported["clip"]), "--model", str(imported["ckpt"]), "-o", str(out), "--seed", "5")
    assert res.returncode == 0, res.stderr[-3000:]
    audio, sr = sf.read(str(out / "clip.wav"))
    assert sr == 32000 and audio.ndim == 1 and abs(len(audio) / sr - 2.0) < 0.02
    assert np.abs(audio).max() > 1e-3 and np.isfinite(audio).all()  # not silent
    info = probe_video(out / "clip.mp4")
    assert info.has_audio and abs(info.duration - 2.0) < 0.2
    meta = json.loads((out / "clip.json").read_text())
    assert meta["seed"] == item_seed(5, "clip") and meta["model"] == str(imported["ckpt"])
    assert meta["sampling"]["top_k"] == 250 and meta["sampling"]["cfg_coef"] == 3.0  # VidMuse's, in model_index.yaml
    assert "window_seeds" not in meta  # shorter than window_seconds (30 s): one pass


def test_generate_long_video_in_windows(imported: dict[str, Path]) -> None:
    """``--set generate.window_seconds=1`` makes the 2.5 s video a long one: 3 windows, one progress bar."""
    out = imported["root"] / "gen_windows"
    res = vidmusic("generate", str(imported["longer"]), "--model", str(imported["ckpt"]), "-o", str(out),
                   "--set", "generate.window_seconds=1.0", "--set", "generate.overlap_seconds=0.25")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 windows" in res.stderr and "3/3" in res.stderr  # cost estimate + the per-window bar
    audio, sr = sf.read(str(out / "longer.wav"))
    assert sr == 32000 and abs(len(audio) / sr - 2.5) < 0.02 and np.abs(audio).max() > 1e-3
    assert probe_video(out / "longer.mp4").has_audio
    meta = json.loads((out / "longer.json").read_text())
    assert meta["seed"] == item_seed(0, "longer") and len(meta["window_seeds"]) == 3
    assert (meta["window_seconds"], meta["overlap_seconds"]) == (1.0, 0.25)


def test_upstream_window_fits_the_backbone(imported: dict[str, Path], tmp_path: Path) -> None:
    """The imported 30 s window = the backbone's context_length (1500 frames at 50 Hz; the delay columns come on
    top, as upstream): a 30.5 s video goes in two windows (30 s, then 0.5 s continued from a 0.5 s prompt)."""
    from vidmusic import load

    frames = np.repeat(np.linspace(0, 200, 31 * 4, dtype=np.uint8), 32 * 32 * 3).reshape(-1, 32, 32, 3)
    video = write_video(tmp_path / "half_minute.mp4", frames, 4)
    res, = load(imported["ckpt"], device="cpu").generate([video], tmp_path / "out", seconds=30.5,
                                                                  progress=False)
    wav, meta = res.wav, json.loads(res.json.read_text())
    assert meta == res.meta
    assert meta["window_seconds"] == 30.0 and len(meta["window_seeds"]) == 2
    audio, sr = sf.read(str(wav))
    assert sr == 32000 and len(audio) == 30.5 * 32000 and np.abs(audio).max() > 1e-3


def test_import_without_codec_is_a_clear_error_at_generate(imported: dict[str, Path], tmp_path: Path) -> None:
    """Without codec_dir= the import is the model's parts (for train.init_from), and `generate --model` says how to
    make it whole."""
    res = vidmusic("import", "vidmuse_full", str(imported["src"]), "-o", str(tmp_path / "parts"), "clip_heads=2")
    assert res.returncode == 0 and "codec_dir=ENCODEC_DIR" in res.stdout, res.stdout + res.stderr[-2000:]
    res = vidmusic("generate", str(imported["clip"]), "--model", str(tmp_path / "parts"), "-o", str(tmp_path / "g"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = res.stderr
    assert "codec_dir=ENCODEC_DIR" in err and "facebook/encodec_32khz" in err and "never downloads" in err
    assert not (tmp_path / "g").exists()


def test_wrong_codec_dirs_are_clear_errors(imported: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = vidmusic("import", "vidmuse_full", str(imported["src"]), "-o", str(tmp_path / "a"), "clip_heads=2",
                   f"codec_dir={tmp_path / 'empty'}")
    assert res.returncode == 2 and "config.json" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    big = write_tiny_encodec(tmp_path / "encodec_2048", codebook_size=2048)
    res = vidmusic("import", "vidmuse_full", str(imported["src"]), "-o", str(tmp_path / "b"), "clip_heads=2",
                   f"codec_dir={big}")
    assert res.returncode == 2 and "4 codebooks x 2048" in res.stderr and "4 x 32" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "b" / "model_index.yaml").exists()


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


def test_model_directory_moves_and_generates_without_its_sources(imported: dict[str, Path], tmp_path: Path) -> None:
    """The import's codec/ holds the EnCodec (architecture in codec/hf/config.json, weights in our format): moved
    elsewhere, with the EnCodec directory it came from gone, `generate --model` makes the same music for the same
    seed; `vidmusic.load` gives the same again."""
    import yaml

    from vidmusic import load

    encodec = tmp_path / "encodec_copy"
    shutil.copytree(imported["encodec"], encodec)
    res = vidmusic("import", "vidmuse_full", str(imported["src"]), "-o", str(tmp_path / "m"), "clip_heads=2",
                   f"codec_dir={encodec}")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    index = yaml.safe_load((tmp_path / "m" / "model_index.yaml").read_text())
    assert index["components"]["codec"]["name"] == "encodec" and index["generate"]["top_k"] == 250
    assert yaml.safe_load((tmp_path / "m" / "codec" / "config.yaml").read_text())["config"]["weights"] == "hf"
    here = vidmusic("generate", str(imported["clip"]), "--model", str(tmp_path / "m"), "-o", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr[-3000:]
    moved = tmp_path / "moved" / "vidmuse"
    shutil.copytree(tmp_path / "m", moved)
    shutil.rmtree(tmp_path / "m")
    shutil.rmtree(encodec)
    new = vidmusic("generate", str(imported["clip"]), "--model", str(moved), "-o", str(tmp_path / "new"))
    assert new.returncode == 0, new.stderr[-3000:]
    a, sr_a = sf.read(str(tmp_path / "here" / "clip.wav"))
    b, sr_b = sf.read(str(tmp_path / "new" / "clip.wav"))
    assert sr_a == sr_b == 32000 and np.abs(a).max() > 1e-3
    np.testing.assert_array_equal(a, b)  # same weights, codec, sampling and seed
    res, = load(moved, device="cpu").generate([imported["clip"]], tmp_path / "py", progress=False)
    # in-process torch may use more threads than the CLI's OMP_NUM_THREADS=1: same tokens, float-level decode
    np.testing.assert_allclose(sf.read(str(res.wav))[0], a, atol=2e-3)


def test_parts_warm_start_training(imported: dict[str, Path]) -> None:
    """train.init_from takes an imported model directory: its encoder/layout/backbone tensors by name."""
    from vidmusic_core.model_dir import model_weights

    state = model_weights(imported["ckpt"])
    assert state is not None and any(k.startswith("backbone.") for k in state)
    assert any(k.startswith("encoder.") for k in state) and not any(k.startswith("codec.") for k in state)
    assert model_weights(imported["ckpt"] / "backbone") is not None  # one component: prefixed by its kind
    assert all(k.startswith("backbone.") for k in model_weights(imported["ckpt"] / "backbone"))
