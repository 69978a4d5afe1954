"""The symbolic path through the core: `vidmusic run --backbone musecoco` (remi codec, MIDI outputs and
MIDI metrics), the backbone's preset, grammar-constrained generation with forced attributes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from aux_fit import fit_aux_loss

from musecoco_symbolic.backbone import MusecocoBackbone
from musecoco_symbolic.codec import RemiCodec
from musecoco_symbolic.vocab import EOS, PREFIX_LENGTH, SEP, attribute_tokens
from vidmusic_core import Condition, ConfigError, GenerationRequest, MusicTokens
from vidmusic_core.config import compose
from vidmusic_core.sampling import SamplingConfig, generate_tokens
from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout

BIN = Path(sys.executable).parent


def test_backbone_preset_replaces_the_embedded_default_but_not_the_user():
    """musecoco_symbolic registers preset `musecoco` (hook register_presets) with default_for=musecoco."""
    from vidmusic_core.config import preset_names

    assert {"default", "smoke", "toy", "musecoco"} <= set(preset_names())
    assert compose(presets=["musecoco"]).codec.name == "remi"  # also usable by name
    cfg = compose(sugar={"encoder": "lstv", "backbone": "musecoco"})
    assert cfg.codec.name == "remi" and cfg.layout.name == "prefix" and cfg.layout.reduce == "rate"
    assert cfg.generate.top_k == 15 and cfg.backbone.attribute_loss == 1.0
    assert "attribute_control" in cfg.eval.metrics and "fd_mel" not in cfg.eval.metrics
    assert cfg.encoder.fps == 12.0  # sections the backbone does not name keep the embedded default
    mine = compose(sugar={"backbone": "musecoco"}, overrides=["generate.top_k=5", "backbone.attribute_loss=0"])
    assert mine.generate.top_k == 5 and mine.backbone.attribute_loss == 0.0 and mine.codec.name == "remi"
    explicit = compose(sugar={"backbone": "musecoco", "codec": "rvq_mel"})
    assert explicit.codec.name == "rvq_mel"  # the user's choice stands (the model builder then names the mismatch)
    inspire = compose(sugar={"backbone": "inspire"})
    assert inspire.codec.name == "rvq_mel" and inspire.layout.name == "aligned"  # no preset of its own: unchanged


def _model():
    torch.manual_seed(0)
    bb = MusecocoBackbone().eval()
    layout = PrefixLayout(PrefixConfig(cond_dim=8, width=bb.width, use_text=False)).eval()
    cond = Condition(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.arange(3.0).repeat(2, 1))
    return bb, layout, cond


def test_generation_keeps_the_grammar_forces_attributes_and_stops_at_eos():
    codec = RemiCodec()
    bb, layout, cond = _model()
    with torch.no_grad():  # make EOS likely everywhere: it must still wait for the prefix + MIN_MUSIC_TOKENS
        bb.decoder.output_projection.weight[EOS] = 0
        bb.decoder.layer_norm.bias.zero_()
        bb.decoder.output_projection.weight[EOS, 0] = 50.0
        bb.decoder.layer_norm.bias[0] = 1.0
        bb.decoder.layer_norm.weight[0] = 0.0  # feature 0 of the last hidden state is always 1: EOS logit 50
    request = GenerationRequest(cond, codec.n_frames(4.0), [1, 2], SamplingConfig(top_k=15),
                                options={"attributes": {"T1s1": 2, "K1": 0}})
    planned = codec.plan_request(request, layout)  # the codec's rules: budget, EOS after the prefix, forced prefix
    forced, sc = planned.forced, planned.sampling
    assert forced is not None and forced.shape == (2, 1, PREFIX_LENGTH) and int((forced >= 0).sum()) == 2 * 3
    assert planned.n_frames == PREFIX_LENGTH + 400 and sc.use_eos and sc.min_frames > PREFIX_LENGTH
    toks = bb.generate(layout, planned, codec)
    assert toks.mask is not None
    for b, row in enumerate(codec.rows(toks)):
        assert len(row) == sc.min_frames  # EOS came at the first column it was allowed
        assert row[PREFIX_LENGTH - 1] == SEP and set(row[:PREFIX_LENGTH - 1]) <= set(attribute_tokens())
        assert not set(row[PREFIX_LENGTH:]) & (set(attribute_tokens()) | {SEP})
        attrs = codec.attributes_of(toks)[b]
        assert attrs["T1s1"] == 2 and attrs["K1"] == 0
    with pytest.raises(ConfigError, match="unknown attribute"):
        codec.prefix_codes({"tempo": 2})
    with pytest.raises(ConfigError, match="K1"):
        codec.prefix_codes({"K1": 7})


def test_in_vocabulary_eos_is_banned_without_use_eos():
    bb, layout, cond = _model()
    with torch.no_grad():
        bb.decoder.output_projection.weight[EOS] = 0
        bb.decoder.output_projection.weight[EOS, 0] = 50.0
        bb.decoder.layer_norm.bias[0] = 1.0
    toks = generate_tokens(layout, bb, cond, 90, [3, 4], SamplingConfig(top_k=15))
    assert toks.mask is not None and bool(toks.mask.all()) and not bool((toks.codes == EOS).any())


def test_prepare_names_an_item_without_midi(tmp_path):
    from vidmusic_core.data.manifest import Item
    from vidmusic_core.data.prepare import item_midi
    from vidmusic_core.errors import VidmusicError

    it = Item(name="a", video=str(tmp_path / "a.mp4"), music=str(tmp_path / "a.wav"), music_kind="audio")
    with pytest.raises(VidmusicError, match=r"a\.mid beside the video"):
        item_midi(it, "remi")
    assert item_midi(Item(name="b", video="b.mp4", music="b.mid", music_kind="midi"), "remi") == "b.mid"


def test_run_musecoco_writes_midi_wav_mp4_and_midi_metrics(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(BIN / "vidmusic"), "run", "-p", "smoke", "--encoder", "lstv", "--backbone", "musecoco",
                          f"run.root={tmp_path}", "generate.attributes={T1s1: 2}"],  # smoke: 2 test clips
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("lstv-prefix-musecoco-"))
    metas = sorted((run_dir / "samples").glob("*.json"))
    assert metas
    for m in metas:
        meta = json.loads(m.read_text())
        for ext in (".mid", ".wav", ".mp4"):
            assert m.with_suffix(ext).stat().st_size > 0
        assert meta["midi"] == m.with_suffix(".mid").name and meta["attributes"]["T1s1"] == 2
        assert meta["tokens"] >= PREFIX_LENGTH
        import av
        with av.open(str(m.with_suffix(".mp4"))) as f:
            assert f.streams.audio and f.streams.video
    assert len(list((run_dir / "samples_shuffled").glob("*.mid"))) == len(metas)
    res = json.loads((run_dir / "results.json").read_text())
    for key in ("beat_f1", "tempo_acc", "key_acc", "section_f1", "attr_asa", "attr_ref_asa"):
        assert set(res["metrics"][key]) == {"conditioned", "shuffled", "delta"}, key
    assert res["metrics"]["attr_acc_T1s1"]["conditioned"] >= 0.0
    assert res["protocols"]["beat_f1"]  # the protocol manifest is stored beside the scores


def test_attribute_head_learns_the_prefix_and_forces_it():
    from musecoco_symbolic.attribute_head import AttributeHeadConfig, AttributeHeadLayout
    from musecoco_symbolic.attributes import na_values, values_to_tokens

    codec = RemiCodec()
    torch.manual_seed(0)
    layout = AttributeHeadLayout(AttributeHeadConfig(cond_dim=8, width=64))
    fast, slow = na_values(), na_values()
    fast.update(T1s1=2, K1=0)
    slow.update(T1s1=0, K1=1)
    rows = [codec.vocab.encode(values_to_tokens(v) + [SEP, "Bar_None"]) for v in (fast, slow)]
    music = MusicTokens(torch.tensor(rows)[:, None], torch.ones(2, len(rows[0]), dtype=torch.bool), None)
    cond = Condition(torch.stack([torch.ones(4, 8), -torch.ones(4, 8)]), torch.ones(2, 4, dtype=torch.bool),
                     torch.arange(4.0).repeat(2, 1))
    first, last = fit_aux_loss(layout, layout.parameters(), cond, music, 60)
    assert last < 0.05 * first
    forced = layout.forced_codes(cond)
    assert forced.shape == (2, 1, 63) and torch.equal(forced[:, 0], torch.tensor(rows)[:, :63])
    got = layout.predicted_attributes(cond)
    assert (got[0]["T1s1"], got[0]["K1"], got[1]["T1s1"], got[1]["K1"]) == (2, 0, 0, 1)
    unsure = AttributeHeadLayout(AttributeHeadConfig(cond_dim=8, width=64, na_threshold=1.01))
    assert codec.vocab.decode(unsure.forced_codes(cond)[0, 0].tolist()) == values_to_tokens(na_values())


def test_run_with_the_attribute_head_layout(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(BIN / "vidmusic"), "run", "-p", "smoke", "--encoder", "lstv", "--backbone", "musecoco",
                          "--layout", "attribute_head", f"run.root={tmp_path}", "--stage", "data",
                          "--stage", "prepare", "--stage", "train", "--stage", "generate"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("lstv-attribute_head-musecoco-"))
    metas = sorted((run_dir / "samples").glob("*.json"))
    assert metas and all(m.with_suffix(".mid").is_file() for m in metas)
    from vidmusic_core.runs import load_trained

    _, model, _ = load_trained(run_dir)
    assert "attribute_head.0.weight" in dict(model.layout.named_parameters())


def test_generate_command_with_a_symbolic_run(tmp_path):
    """`vidmusic generate VIDEO --run RUN_DIR` for a musecoco run: .mid + wav + mp4; past the window: MIDI per window."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([str(BIN / "vidmusic"), "run", "-p", "smoke", "--encoder", "lstv", "--backbone", "musecoco",
                          f"run.root={tmp_path}", "train.steps=4", "--stage", "data", "--stage", "prepare",
                          "--stage", "train"], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("lstv-prefix-musecoco-"))
    video = sorted((tmp_path / "data").glob("*/toy_00001.mp4"))[0]
    out = tmp_path / "out"
    gen = subprocess.run([str(BIN / "vidmusic"), "generate", str(video), "--run", str(run_dir), "-o", str(out),
                          "--seconds", "2", "--set", "generate.top_k=5"], capture_output=True, text=True, timeout=600,
                         env=env)
    assert gen.returncode == 0, gen.stderr[-3000:]
    meta = json.loads((out / "toy_00001.json").read_text())
    assert meta["midi"] == "toy_00001.mid" and (out / "toy_00001.mid").is_file() and (out / "toy_00001.mp4").is_file()
    assert meta["sampling"]["top_k"] == 5  # the --set value, not the run's 15
    bad = subprocess.run([str(BIN / "vidmusic"), "generate", str(video), "--run", str(run_dir), "-o", str(out / "b"),
                          "--set", "backbone.layers=9"], capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode != 0 and "only generate.KEY=VALUE settings can change" in bad.stderr
    import soundfile as sf
    assert abs(sf.info(str(out / "toy_00001.wav")).duration - 2.0) < 0.01
    from vidmusic_core import api
    from vidmusic_core.sampling import SamplingConfig

    _, model, codec = api.load(run_dir)  # a video longer than the window: MIDI per window, one wav
    api.generate_with_model(model, codec, [video], out / "x", sampling=SamplingConfig(top_k=15), seed=0,
                            window_seconds=1.5, overlap_seconds=0.5, progress=False, attributes={"K1": 0})
    meta = json.loads((out / "x" / "toy_00001.json").read_text())
    n = len(meta["midi_windows"])  # windows end on bar lines when a bar fits, so their number depends on the bars
    assert n >= 3 and meta["midi_windows"] == [f"toy_00001.w{i:03d}.mid" for i in range(n)]
    assert len(meta["window_seeds"]) == len(meta["window_prompt_tokens"]) == n and meta["prompt_bars"] == 1
    starts = meta["window_starts"]
    assert starts[0] == 0.0 and all(b - a <= 1.5 + 1e-6 for a, b in zip(starts, starts[1:] + [4.0]))
    assert all(a < b for a, b in zip(starts, starts[1:])) and meta["window_prompt_tokens"][0] == 0
    assert abs(sf.info(str(out / "x" / "toy_00001.wav")).duration - 4.0) < 0.01
    assert meta["attributes"]["K1"] == 0  # the forced value, in the prefix every window shares
    assert len(meta["window_attributes"]) == n and all(a == meta["attributes"] for a in meta["window_attributes"])


def test_warm_start_loads_the_named_parts_of_another_run(tmp_path):
    """train.init_from: e.g. a symbolic LM pretrained on corpus data, then trained with video."""
    from vidmusic_core import api
    from vidmusic_core.training import TrainingError, checkpoint_weights

    common = [f"run.root={tmp_path}", "data.toy_n=8"]
    first = compose(presets=["smoke"], sugar={"encoder": "lstv", "backbone": "musecoco"}, overrides=common + ["train.steps=3"])
    a = api.run(first, progress=False, stages=("data", "prepare", "train")).run_dir
    second = compose(presets=["smoke"], sugar={"encoder": "lstv", "backbone": "musecoco"},
                     overrides=common + ["train.steps=1", "train.lr=0", "train.seed=5", f"train.init_from={a}",
                                         "train.init_modules=[backbone]"])
    b = api.run(second, progress=False, stages=("train",)).run_dir
    wa, wb = (checkpoint_weights(d / "checkpoints" / "last")[0] for d in (a, b))
    backbone = [k for k in wa if k.startswith("backbone.")]
    assert backbone and all(torch.equal(wa[k], wb[k]) for k in backbone)  # lr 0: exactly the loaded weights
    assert not torch.equal(wa["layout.visual_feature_proj.weight"], wb["layout.visual_feature_proj.weight"])
    wrong = compose(presets=["smoke"], sugar={"encoder": "lstv", "backbone": "musecoco"},
                    overrides=common + ["train.steps=1", f"train.init_from={tmp_path / 'nowhere'}", "train.seed=6"])
    with pytest.raises(TrainingError, match="no model.safetensors"):
        api.run(wrong, progress=False, stages=("train",))


def test_bar_cut_tokens_from_the_music_and_from_the_video():
    from musecoco_symbolic.codec import BarCutController, RemiConfig, with_bar_cuts

    piano, strings = ["Program_0", "Pitch_60"], ["Program_48", "Pitch_67"]
    toks = ["Bar_None", "TimeSig_4/4", "Position_0", "Tempo_128.0", *piano, "Bar_None", *piano,
            "Bar_None", *strings, "Bar_None", "Bar_None", *strings]
    marked = with_bar_cuts(toks)
    assert [marked[i + 1] for i, t in enumerate(marked) if t == "Bar_None"] == ["BarCut_0", "BarCut_0", "BarCut_1",
                                                                                 "BarCut_0", "BarCut_0"]
    codec = RemiCodec(RemiConfig(bar_controls=True))
    assert len(codec.vocab) == len(RemiCodec().vocab) and codec.split(marked)[1] == toks  # controls stay out of the MIDI
    # bar 1: 4/4 at 128 qpm = 1.875 s; bar 2 turns 3/4 at 64 qpm = 2.8125 s, so bar 3 spans 4.6875-7.5 s
    # and holds the cut at 5.0 s (bar 2 was judged at its start with bar 1's length: 1.875-3.75 s)
    ctl = BarCutController(codec, [[5.0]])
    stream = ["Bar_None", "TimeSig_4/4", "Tempo_128.0", "Pitch_60", "Bar_None", "TimeSig_3/4", "Tempo_64.0",
              "Bar_None", "Pitch_60", "Bar_None"]
    forced = [int(ctl(c, torch.tensor([[codec.vocab.encode([t])[0]]]))[0, 0]) for c, t in enumerate(stream)]
    cut0, cut1 = codec.vocab.encode(["BarCut_0", "BarCut_1"])
    assert [f for f in forced if f >= 0] == [cut0, cut0, cut1, cut0] and ctl.flags == [[0, 0, 1, 0]]
    assert forced[0] == cut0 and forced[7] == cut1  # returned at each Bar_None, forced at the next column
    with pytest.raises(ConfigError, match="bar_controls / bar_density need codec.vocab=remi"):
        RemiCodec(RemiConfig(vocab="musecoco", bar_controls=True))


def test_run_with_bar_controls_sets_every_bar_from_the_video(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(BIN / "vidmusic"), "run", "-p", "smoke", "--encoder", "lstv", "--backbone", "musecoco",
                          "--layout", "attribute_head", f"run.root={tmp_path}", "codec.bar_controls=true",
                          "codec.bar_density=true", "layout.density_head=true", "--stage", "data", "--stage", "prepare",
                          "--stage", "train", "--stage", "generate", "--stage", "eval"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("lstv-attribute_head-musecoco-"))
    metas = [json.loads(m.read_text()) for m in sorted((run_dir / "samples").glob("*.json"))]
    assert metas and all(set(m["bar_cuts"]) <= {0, 1} for m in metas)
    # every bar got a density class from the layout's head, right after its cut flag
    assert all(len(m["bar_density"]) == len(m["bar_cuts"]) and all(isinstance(k, int) and 0 <= k < 8
                                                                   for k in m["bar_density"]) for m in metas)
    results = json.loads((run_dir / "results.json").read_text())["metrics"]
    for key in ("density_ref_acc", "density_ref_mae", "density_control_acc"):
        assert 0.0 <= results[key]["conditioned"] and "shuffled" in results[key]
    from vidmusic_core import api
    from vidmusic_core.sampling import SamplingConfig
    from vidmusic_core import video_cuts

    video = metas[0]["video"]
    _, model, codec = api.load(run_dir)  # a longer video: every window's bars set from its own frames and cuts
    api.generate_with_model(model, codec, [Path(video)], tmp_path / "long", sampling=SamplingConfig(top_k=15), seed=0,
                            window_seconds=2.0, overlap_seconds=0.0, progress=False)
    long = json.loads((tmp_path / "long" / f"{Path(video).stem}.json").read_text())
    assert len(long["window_bar_controls"]) == len(long["midi_windows"]) >= 2
    assert all(w["bar_density"] and all(isinstance(k, int) for k in w["bar_density"]) for w in long["window_bar_controls"])
    truth = json.loads(Path(video).with_suffix(".json").read_text())["cut_times"]
    found = video_cuts(video)
    assert len(found) == len([t for t in truth if t < 4.0]) and np.allclose(found, [t for t in truth if t < 4.0], atol=0.1)
