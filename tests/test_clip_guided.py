"""``clip_guided`` (issue 22 item 3): tiny random CLIP, Wav2CLIP (written in the upstream checkpoint's key layout and
imported) and diffusers VQModel, saved to local directories; a seeded video comes out of `vidmusic visualize`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from clip_guided.visualizer import ClipGuidedVisualizer
from clip_guided.wav2clip import Wav2CLIP, import_wav2clip
from vidmusic_core import CheckpointError, ConfigError
from vidmusic_core.song import analyse_song
from vidmusic_core.testing import check_component_contract, write_test_song

BIN = Path(sys.executable).parent
DIM = 32  # CLIP projection dim = Wav2CLIP embedding (8 x width 4)


def upstream_wav2clip_checkpoint(path: Path, width: int = 4) -> dict:
    """A Lightning checkpoint as descriptinc/lyrebird-wav2clip's ResNetDistillation(loss="clip_loss_x") saves it:
    audio_encoder.* (ResNet-18 + spectrogram window + 309-class fc), audio_transform.*, image_transform.*."""
    torch.manual_seed(0)
    model = Wav2CLIP(width)
    state = {}
    for k, v in model.state_dict().items():
        head, rest = k.split(".", 1)
        state[("audio_encoder." if head == "encoder" else "audio_transform.") + rest] = v.clone()
    for k, v in model.transform.state_dict().items():
        state["image_transform." + k] = torch.randn_like(v)
    torch.save({"epoch": 7, "global_step": 100, "state_dict": state, "hyper_parameters": {"loss": "clip_loss_x"}}, path)
    return state


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from diffusers import VQModel
    from transformers import CLIPConfig, CLIPModel

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                         max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, initializer_factor=10.0),  # a random CLIP that sees the image
        projection_dim=DIM))
    clip.save_pretrained(root / "clip")
    VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
            num_vq_embeddings=32, vq_embed_dim=4, norm_num_groups=4, sample_size=32).save_pretrained(root / "vqgan")
    upstream_wav2clip_checkpoint(root / "ResNet_CX.ckpt")
    report = import_wav2clip(root / "ResNet_CX.ckpt", root / "wav2clip")
    assert report.ok, report
    return root


def cfg(root, **kw):
    return ClipGuidedVisualizer.Config(**{"clip_dir": str(root / "clip"), "wav2clip_dir": str(root / "wav2clip"),
                                          "vqgan_dir": str(root / "vqgan"), "steps": 3, "cutouts": 2, **kw})


def test_importer_keeps_the_upstream_weights(models, tmp_path):
    state = upstream_wav2clip_checkpoint(tmp_path / "up.ckpt")
    rep = import_wav2clip(tmp_path / "up.ckpt", tmp_path / "out")
    assert rep.ok and "training-only keys skipped: 4" in rep.notes[1]
    model = Wav2CLIP.from_dir(tmp_path / "out")
    torch.testing.assert_close(model.encoder.layer2[0].downsample[0].weight, state["audio_encoder.layer2.0.downsample.0.weight"])
    torch.testing.assert_close(model.transform.sequential[3].bias, state["audio_transform.sequential.3.bias"])
    emb = model(torch.randn(2, 16000))
    assert emb.shape == (2, DIM)
    bad = {"state_dict": {k: v for k, v in state.items() if not k.startswith("audio_transform.")}}
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="clip_loss_x"):
        import_wav2clip(tmp_path / "bad.ckpt", tmp_path / "bad")


def test_contract(models):
    check_component_contract("visualizer", "clip_guided", cfg(models))


def test_optimisation_moves_the_image_towards_the_target(models, tmp_path):
    """CLIP's embedding of a decoded keyframe is closer to its section's Wav2CLIP target after the Adam steps."""
    song = analyse_song(write_test_song(tmp_path / "s.wav", seconds=4.0))
    vis = ClipGuidedVisualizer(cfg(models, steps=0, lr=2.0))
    target = vis.targets(song)  # [K, D]
    start = vis.plan(song, (32, 32), 8.0, 0).latents
    vis.cfg.steps = 40
    done = vis.plan(song, (32, 32), 8.0, 0).latents

    def similarity(z):
        with torch.no_grad():
            return float(vis._clip_embed(vis._decode(z[:1]), torch.Generator().manual_seed(1)).mean(0) @ target[0])

    assert similarity(done) > similarity(start) + 0.05, (similarity(start), similarity(done))


def test_cli_video_is_seeded_and_uses_text_prompts(models, tmp_path):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "red</w>": 3, "sky</w>": 4}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(models / "clip")
    song = write_test_song(tmp_path / "song.wav", seconds=4.0)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sets = [f"clip_dir={models / 'clip'}", f"wav2clip_dir={models / 'wav2clip'}", f"vqgan_dir={models / 'vqgan'}",
            "steps=3", "cutouts=2", "prompts=[a red sky]"]
    outs = []
    for name in ("a", "b"):
        args = [str(BIN / "vidmusic"), "visualize", str(song), "-o", str(tmp_path / f"{name}.mp4"), "--visualizer",
                "clip_guided", "--size", "32", "--fps", "8", "--no-progress"]
        for s in sets:
            args += ["--set", s]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            outs.append(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]))
    assert outs[0].shape == (32, 32, 32, 3)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_missing_model_directory_is_a_clear_error(models, tmp_path):
    with pytest.raises(ConfigError, match="vqgan_dir"):
        ClipGuidedVisualizer(ClipGuidedVisualizer.Config(clip_dir=str(models / "clip"),
                                                         wav2clip_dir=str(models / "wav2clip")))
    with pytest.raises(ConfigError, match="not a directory"):
        ClipGuidedVisualizer(cfg(models).__class__(clip_dir=str(tmp_path / "nope")))
