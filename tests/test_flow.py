"""The `flow` backbone (plugins/flow_dit): training, seeded ODE sampling, CFG, continuation, config/weights,
layout and codec checks, and one real `vidmusic run`."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from flow_dit.backbone import FlowBackbone, FlowConfig
from vidmusic_core import (ConfigError, Condition, GenerationRequest, MusicLatents, SamplingConfig, get_registry,
                           load_weights, save_weights, load_state_strict)
from vidmusic_core.config import compose
from vidmusic_core.layouts.cross import CrossConfig, CrossLayout
from vidmusic_core.layouts.prefix import AlignedConfig, AlignedLayout
from vidmusic_core.layouts.reduce import resample_to_frames
from vidmusic_core.model import build_model, build_codec

C, D, FR, W = 4, 8, 25.0, 32


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread is faster than two on a shared 2-core machine (no spinning); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Codec:  # what generate reads from a codec
    frame_rate = FR


def tiny(**kw):
    torch.manual_seed(0)
    cfg = FlowConfig(width=W, layers=2, heads=2, ffn=64, latent_dim=C, **kw)
    return FlowBackbone(cfg), AlignedLayout(AlignedConfig(cond_dim=D, width=W, frame_rate=FR, prefix_condition=True,
                                                          reduce="rate"))


def condition(B, seed, N=8):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randn(B, N, D, generator=g)
    times = torch.arange(N).float().repeat(B, 1) / 4.0  # 4 tokens per second
    return Condition(tok, torch.ones(B, N, dtype=torch.bool), times)


def target_of(cond, T):
    """Latents that follow the condition in time: its first C channels, held at each frame's time."""
    return resample_to_frames(cond.tokens[..., :C], cond.times, cond.mask, torch.arange(T) / FR)


def request(cond, n, seeds, **sampling):
    return GenerationRequest(cond, n, seeds, SamplingConfig(**sampling))


def test_registered_with_its_layouts_and_representation():
    comp = get_registry().get("backbone", "flow")
    assert comp.factory is FlowBackbone and comp.plugin == "flow_dit"
    assert FlowBackbone.representation == "latents"
    assert set(FlowBackbone.supported_layouts) == {"aligned", "cross", "prefix"}


def test_trains_on_synthetic_latents_and_samples_the_condition():
    bb, lay = tiny(cond_dropout=0.0, prompt_prob=0.0)
    opt = torch.optim.AdamW([*bb.parameters(), *lay.parameters()], lr=3e-3)
    T, losses = 16, []
    for step in range(80):
        cond = condition(8, step)
        loss = bb.loss(lay(bb, cond, MusicLatents(target_of(cond, T), None, FR)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10, losses
    bb.eval()
    cond = condition(8, 999)  # unseen conditions
    x0 = target_of(cond, T)
    out = bb.generate(lay, request(cond, T, list(range(8)), steps=16), _Codec())
    err = float(((out.latents - x0) ** 2).mean())
    assert out.latents.shape == (8, T, C)
    assert err < 0.5 * float(x0.var()), (err, float(x0.var()))  # it follows the condition, not only the prior


def test_sampling_is_deterministic_per_seed_and_row_independent():
    bb, lay = tiny()
    bb.eval()
    cond = condition(3, 1)
    a = bb.generate(lay, request(cond, 20, [5, 6, 7], steps=4), _Codec()).latents
    b = bb.generate(lay, request(cond, 20, [5, 6, 7], steps=4), _Codec()).latents
    c = bb.generate(lay, request(cond, 20, [5, 6, 8], steps=4), _Codec()).latents
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[:2], c[:2], rtol=0, atol=0)
    assert (a[2] - c[2]).abs().max() > 0.1
    alone = bb.generate(lay, request(cond.index_select([1]), 20, [6], steps=4), _Codec()).latents
    torch.testing.assert_close(alone[0], a[1], rtol=1e-5, atol=1e-5)  # a row depends only on its seed and condition


def _euler(bb, lay, cond, n, seeds, steps, keep):
    """An independent Euler loop: x <- x + (sigma_next - sigma) v, sigma from 1 to 0 (diffusers' default grid)."""
    inp = lay.frame_input(bb, cond, n)
    x = torch.stack([torch.randn(n, C, generator=torch.Generator().manual_seed(s)) for s in seeds])
    sig = torch.linspace(1.0, 1.0 / 1000, steps).tolist() + [0.0]
    B = len(seeds)
    zeros, none = torch.zeros(B, n, C), torch.zeros(B, n, dtype=torch.bool)
    with torch.no_grad():
        for i in range(steps):
            v = bb.velocity(x, torch.full((B,), sig[i]), inp, torch.full((B,), float(keep)), zeros, none)
            x = x + (sig[i + 1] - sig[i]) * v
    return x


def _trained_a_little():
    bb, lay = tiny(cond_dropout=0.3)
    opt = torch.optim.AdamW([*bb.parameters(), *lay.parameters()], lr=3e-3)
    for step in range(15):  # the zero-initialised adaLN / aligned path must move for guidance to matter
        cond = condition(8, step)
        loss = bb.loss(lay(bb, cond, MusicLatents(target_of(cond, 16), None, FR)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return bb.eval(), lay.eval()


def test_cfg_one_is_the_conditioned_ode_and_zero_is_the_null():
    bb, lay = _trained_a_little()
    cond, seeds = condition(2, 3), [11, 12]
    one = bb.generate(lay, request(cond, 16, seeds, steps=6, cfg_coef=1.0), _Codec()).latents
    zero = bb.generate(lay, request(cond, 16, seeds, steps=6, cfg_coef=0.0), _Codec()).latents
    three = bb.generate(lay, request(cond, 16, seeds, steps=6, cfg_coef=3.0), _Codec()).latents
    torch.testing.assert_close(one, _euler(bb, lay, cond, 16, seeds, 6, keep=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zero, _euler(bb, lay, cond, 16, seeds, 6, keep=0), rtol=1e-5, atol=1e-5)
    assert (three - one).abs().max() > 1e-3 and (zero - one).abs().max() > 1e-3


def test_null_is_what_training_drops_to():
    """Training's dropped rows and sampling's null both zero the per-frame condition and skip cross-attention."""
    bb, lay = _trained_a_little()
    cond = condition(2, 4)
    inp = lay.frame_input(bb, cond, 10)
    other = lay.frame_input(bb, condition(2, 5), 10)  # another video: the null must not depend on it
    x, t = torch.randn(2, 10, C), torch.full((2,), 0.5)
    z, m = torch.zeros(2, 10, C), torch.zeros(2, 10, dtype=torch.bool)
    with torch.no_grad():
        null_a = bb.velocity(x, t, inp, torch.zeros(2), z, m)
        null_b = bb.velocity(x, t, other, torch.zeros(2), z, m)
        real = bb.velocity(x, t, inp, torch.ones(2), z, m)
    torch.testing.assert_close(null_a, null_b)
    assert (real - null_a).abs().max() > 1e-4


def test_continuation_prompt_frames_come_out_equal_to_the_prompt():
    bb, lay = tiny()
    bb.eval()
    cond = condition(2, 6)
    prompt = MusicLatents(torch.randn(2, 5, C), None, FR)
    req = GenerationRequest(cond, 12, [1, 2], SamplingConfig(steps=5), prompt=prompt)
    full = bb.sample(lay, req, FR)
    assert full.latents.shape == (2, 17, C)
    torch.testing.assert_close(full.latents[:, :5], prompt.latents, rtol=0, atol=0)
    new = bb.generate(lay, req, _Codec())
    assert new.latents.shape == (2, 12, C)
    torch.testing.assert_close(new.latents, full.latents[:, 5:], rtol=0, atol=0)
    free = bb.sample(lay, GenerationRequest(cond, 17, [1, 2], SamplingConfig(steps=5)), FR)
    assert (free.latents[:, :5] - prompt.latents).abs().max() > 0.1  # the pinning is what made them equal


def test_cross_layout_memory_conditions_the_velocity():
    torch.manual_seed(0)
    bb = FlowBackbone(FlowConfig(width=W, layers=1, heads=2, ffn=64, latent_dim=C))
    lay = CrossLayout(CrossConfig(cond_dim=D, width=W))
    for p in bb.parameters():  # leave the zero init so the cross-attention reaches the output
        torch.nn.init.normal_(p, std=0.2)
    a, b = lay.frame_input(bb, condition(1, 1), 6), lay.frame_input(bb, condition(1, 2), 6)
    assert a.memory is not None and not a.inputs_embeds.any()
    args = (torch.randn(1, 6, C), torch.full((1,), 0.3))
    rest = (torch.ones(1), torch.zeros(1, 6, C), torch.zeros(1, 6, dtype=torch.bool))
    with torch.no_grad():
        assert (bb.velocity(*args, a, *rest) - bb.velocity(*args, b, *rest)).abs().max() > 1e-4


def test_config_round_trips_through_omegaconf():
    cfg = FlowConfig(width=W, layers=2, heads=2, ffn=64, latent_dim=C)
    yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    back = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FlowConfig), OmegaConf.create(yaml)))
    assert dataclasses.asdict(back) == dataclasses.asdict(cfg)


def test_weights_round_trip_through_safetensors(tmp_path):
    bb, lay = _trained_a_little()
    cond = condition(2, 8)
    want = bb.generate(lay, request(cond, 10, [3, 4], steps=3), _Codec()).latents
    save_weights(bb.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(123)
    fresh = FlowBackbone(bb.cfg)
    load_state_strict(fresh, load_weights(tmp_path / "model.safetensors"), "flow")
    got = fresh.eval().generate(lay, request(cond, 10, [3, 4], steps=3), _Codec()).latents
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bad_configs_and_codecs_are_clear_errors():
    with pytest.raises(ConfigError, match="latent_dim is unset"):
        FlowBackbone(FlowConfig())
    with pytest.raises(ConfigError, match="timestep_sampling"):
        FlowBackbone(FlowConfig(latent_dim=4, timestep_sampling="cosine"))
    bb, lay = tiny()
    with pytest.raises(ConfigError, match="generate.steps=0"):
        bb.generate(lay, request(condition(1, 0), 4, [0], steps=0), _Codec())
    rvq = build_codec(compose(sugar={"backbone": "inspire"}))
    with pytest.raises(ConfigError, match="models latents but codec RVQMelCodec produces tokens"):
        bb.check_codec(rvq)
    mel = build_codec(compose(sugar={"backbone": "flow"}, overrides=["codec.pca_dim=16"]))
    with pytest.raises(ConfigError, match="4-channel latents but codec MelLatentCodec has latent_dim 16"):
        bb.check_codec(mel)


def test_build_model_wires_latent_dim_and_refuses_unsupported_layouts():
    cfg = compose(sugar={"encoder": "motion", "backbone": "flow"}, overrides=["codec.pca_dim=12", "backbone.width=32",
                                                                              "backbone.heads=2", "backbone.layers=1"])
    assert cfg.codec.name == "mel_latent" and cfg.layout.name == "aligned" and cfg.generate.steps == 16
    model = build_model(cfg, build_codec(cfg))
    assert model.backbone.latent_dim == 12 and model.names["layout"] == "aligned"
    bad = compose(sugar={"encoder": "motion", "backbone": "flow", "layout": "attribute_head"},
                  overrides=["backbone.width=32", "backbone.heads=2"])
    with pytest.raises(ConfigError, match="backbone 'flow' does not support layout 'attribute_head'; it supports "
                                          "aligned, cross, prefix"):
        build_model(bad, build_codec(bad))


def test_cli_smoke_run_through_eval(tmp_path):
    """`vidmusic run -p smoke --encoder motion --backbone flow`: data -> prepare -> train -> generate -> eval."""
    out = subprocess.run([str(Path(sys.executable).parent / "vidmusic"), "run", "-p", "smoke", "--encoder", "motion",
                          "--backbone", "flow", f"run.root={tmp_path}", "data.toy_n=6", "data.toy_seconds=2",
                          "data.clip_seconds=2", "train.steps=6", "generate.steps=4", "eval.metrics=[beat_f1]"],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200"))
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("motion-aligned-flow-"))
    res = json.loads((run_dir / "results.json").read_text())
    assert {"beat_f1", "onset_f1"} <= set(res["metrics"]) and "conditioned" in res["metrics"]["onset_f1"]
    metas = [json.loads(p.read_text()) for p in (run_dir / "samples").glob("*.json")]
    assert metas and all((run_dir / "samples" / m["wav"]).is_file() for m in metas)
    cache = next(Path(tmp_path, "data").glob("toy-*/.vidmusic-cache/codec-mel_latent-*"))
    assert list(cache.glob("part-*.parquet")) and (cache / "codec" / "model.safetensors").is_file()

    # a video 2.5x the trained length goes in windows through the one long-video loop, each continuing the last
    # latent frames (generate.overlap_seconds), from the run's model directory
    from vidmusic_core.video import write_video

    video = write_video(tmp_path / "long.mp4", (np.random.default_rng(0).random((60, 32, 32, 3)) * 255).astype(np.uint8), 12)
    gen = subprocess.run([str(Path(sys.executable).parent / "vidmusic"), "generate", str(video), "--model", str(run_dir),
                          "-o", str(tmp_path / "long"), "--no-progress"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert gen.returncode == 0, gen.stderr[-3000:]
    meta = json.loads((tmp_path / "long" / "long.json").read_text())
    audio, sr = sf.read(str(tmp_path / "long" / "long.wav"))
    assert len(meta["window_seeds"]) == 3 and abs(len(audio) / sr - 5.0) < 0.05 and np.isfinite(audio).all()


def test_sweep_grid_over_backbones_composes_both():
    """`vidmusic sweep --grid backbone=inspire,flow`: a section alone names the component; each point gets its
    backbone's run defaults (flow: mel_latent latents, inspire: rvq_mel tokens)."""
    from vidmusic_core.sweep import parse_grid

    points = parse_grid(["backbone=inspire,flow"])
    assert points == [["backbone.name=inspire"], ["backbone.name=flow"]]
    cfgs = [compose(presets=["smoke"], overrides=p) for p in points]
    assert [(c.backbone.name, c.codec.name) for c in cfgs] == [("inspire", "rvq_mel"), ("flow", "mel_latent")]
