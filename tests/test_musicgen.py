"""Tests of the `musicgen_lm` plugin: the `musicgen` backbone, its cache, the cross layout with it, and the
`musicgen` / `vidmuse_full` importers (tiny checkpoints written with the real upstream key names)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_vidmusic
from safetensors.torch import save_file
from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

from musicgen_lm.backbone import MusicgenBackbone, MusicgenLMConfig
from musicgen_lm.importer import VidmuseFullImportConfig, audiocraft_to_hf, hf_to_audiocraft
from vidmusic_core import IGNORE_INDEX, BackboneInput, Condition, MusicCodec, MusicTokens, get_component, load_component
from vidmusic_core.config import compose
from vidmusic_core.sampling import SamplingConfig, generate_tokens
from vidmusic_core.model import build_model
from vidmusic_core.testing import check_component_contract, make_frames

D, L, H, K, V = 64, 2, 4, 4, 32


def _model(seed: int = 0, **kw) -> MusicgenBackbone:
    torch.manual_seed(seed)
    base = dict(width=D, layers=L, heads=H, n_codebooks=K, audio_vocab=V)
    base.update(kw)
    return MusicgenBackbone(MusicgenLMConfig(**base)).eval()


def _randomize_norms(module: torch.nn.Module, seed: int = 1) -> None:
    """LayerNorms start at (1, 0); give them values so a swapped norm would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))


def test_contract() -> None:
    m = check_component_contract("backbone", "musicgen")
    assert (m.width, m.n_codebooks, m.cardinality, m.special_id) == (64, 4, 256, 256)
    assert get_component("backbone", "vidmuse_lm").name == "musicgen"
    assert m.supported_layouts == ("cross",)
    check_component_contract("importer", "musicgen")
    check_component_contract("importer", "vidmuse_full")


def test_state_dict_names_are_audiocraft() -> None:
    """Every key and shape as audiocraft's LMModel (musicgen_lm.yaml: custom attention, no biases)."""
    want = {f"emb.{k}.weight": [V + 1, D] for k in range(K)}
    for i in range(L):
        p = f"transformer.layers.{i}."
        for attn in ("self_attn", "cross_attention"):
            want[f"{p}{attn}.in_proj_weight"] = [3 * D, D]
            want[f"{p}{attn}.out_proj.weight"] = [D, D]
        want[f"{p}linear1.weight"], want[f"{p}linear2.weight"] = [4 * D, D], [D, 4 * D]
        for n in ("norm1", "norm2", "norm_cross"):
            want[f"{p}{n}.weight"] = want[f"{p}{n}.bias"] = [D]
    want["out_norm.weight"] = want["out_norm.bias"] = [D]
    want.update({f"linears.{k}.weight": [V, D] for k in range(K)})
    got = {k: list(v.shape) for k, v in _model().state_dict().items()}
    assert got == want


# -- equality with transformers' MusicGen decoder -------------------------------------------------
def _hf_pair(seed: int = 0) -> tuple[MusicgenForCausalLM, MusicgenBackbone]:
    torch.manual_seed(seed)
    hf = MusicgenForCausalLM(MusicgenDecoderConfig(
        vocab_size=V, max_position_embeddings=256, num_hidden_layers=L, ffn_dim=4 * D, num_attention_heads=H,
        hidden_size=D, num_codebooks=K, audio_channels=1, pad_token_id=V, bos_token_id=V, dropout=0.0)).eval()
    _randomize_norms(hf)
    ours = _model(seed=seed + 1)
    state, unexpected, notes = hf_to_audiocraft(dict(hf.state_dict()))
    assert unexpected == [] and notes == []
    ours.load_state_dict(state, strict=True)
    return hf, ours


def test_forward_equals_transformers_musicgen() -> None:
    hf, ours = _hf_pair()
    B, S, M = 2, 9, 7
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, V + 1, (B, K, S), generator=g)  # V = the special token, embedded too
    memory = torch.randn(B, M, D, generator=g)
    mem_mask = torch.ones(B, M, dtype=torch.bool)
    mem_mask[1, -3:] = False
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, -2:] = False  # a shorter (right-padded) row
    with torch.no_grad():
        want = hf(input_ids=codes.reshape(B * K, S), attention_mask=mask.long(), encoder_hidden_states=memory,
                  encoder_attention_mask=mem_mask.long()).logits.reshape(B, K, S, V)
        got = ours(BackboneInput(ours.embed(codes), mask, memory=memory, memory_mask=mem_mask)).logits
    assert got.shape == (B, K, S, V)
    real = mask[:, None, :, None].expand_as(got)
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
    back = audiocraft_to_hf(ours.state_dict())
    hf_state = {k: v for k, v in hf.state_dict().items() if "embed_positions" not in k}
    assert back.keys() == hf_state.keys() and all(torch.equal(back[k], hf_state[k]) for k in back)


def test_forward_equals_audiocraft_formula() -> None:
    """One decoder written out from audiocraft's StreamingTransformerLayer(norm_first) on the raw tensors."""
    m = _model(layers=1, n_codebooks=2)
    _randomize_norms(m)
    s = m.state_dict()
    B, S, M = 2, 5, 4
    codes = torch.randint(0, V, (B, 2, S))
    mem = torch.randn(B, M, D)

    def ln(x, p):
        return F.layer_norm(x, (D,), s[p + ".weight"], s[p + ".bias"], 1e-5)

    def mha(q_in, kv_in, p, causal):
        w = s[p + ".in_proj_weight"]
        q, k, v = q_in @ w[:D].T, kv_in @ w[D:2 * D].T, kv_in @ w[2 * D:].T
        split = lambda t: t.view(B, -1, H, D // H).transpose(1, 2)  # noqa: E731
        a = split(q) @ split(k).transpose(-1, -2) / (D // H) ** 0.5
        if causal:
            a = a.masked_fill(torch.ones(S, S).triu(1).bool(), float("-inf"))
        y = (a.softmax(-1) @ split(v)).transpose(1, 2).reshape(B, -1, D)
        return y @ s[p + ".out_proj.weight"].T

    half = D // 2
    phase = torch.arange(S)[:, None].float() / 10000 ** (torch.arange(half).float() / (half - 1))
    x = s["emb.0.weight"][codes[:, 0]] + s["emb.1.weight"][codes[:, 1]] + torch.cat([phase.cos(), phase.sin()], -1)
    p = "transformer.layers.0."
    h = ln(x, p + "norm1")
    x = x + mha(h, h, p + "self_attn", True)
    x = x + mha(ln(x, p + "norm_cross"), mem, p + "cross_attention", False)
    x = x + F.gelu(ln(x, p + "norm2") @ s[p + "linear1.weight"].T) @ s[p + "linear2.weight"].T
    out = ln(x, "out_norm")
    want = torch.stack([out @ s[f"linears.{k}.weight"].T for k in range(2)], dim=1)
    with torch.no_grad():
        got = m(BackboneInput(m.embed(codes), torch.ones(B, S, dtype=torch.bool), memory=mem)).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# -- cache ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_cross_kv", [True, False])
def test_cached_steps_equal_full_forward(cache_cross_kv: bool) -> None:
    m = _model()
    _randomize_norms(m)
    B, P, steps, M = 2, 3, 6, 5
    x = torch.randn(B, P + steps, D)
    mem = torch.randn(B, M, D)
    mem_mask = torch.ones(B, M, dtype=torch.bool)
    mem_mask[0, :2] = False
    ones = torch.ones(B, P + steps, dtype=torch.bool)
    with torch.no_grad():
        full = m(BackboneInput(x, ones, memory=mem, memory_mask=mem_mask)).logits
        cache = m.new_cache(cache_cross_kv=cache_cross_kv)
        out = m(BackboneInput(x[:, :P], ones[:, :P], memory=mem, memory_mask=mem_mask), cache)
        got = [out.logits]
        for i in range(P, P + steps):  # later steps give no memory: the cache holds it
            step = m(BackboneInput(x[:, i:i + 1], ones[:, :1]), cache, logits_positions="last")
            assert step.logits.shape == (B, K, 1, V)
            got.append(step.logits)
    torch.testing.assert_close(torch.cat(got, dim=2), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == P + steps
    # cached: the memory was projected once per layer; upstream behaviour: once per layer per call
    assert cache.cross_projections == (L if cache_cross_kv else L * (1 + steps))


def test_empty_memory_row_equals_no_memory() -> None:
    m = _model()
    x = torch.randn(2, 4, D)
    ones = torch.ones(2, 4, dtype=torch.bool)
    mem_mask = torch.ones(2, 3, dtype=torch.bool)
    mem_mask[1] = False
    with torch.no_grad():
        with_mem = m(BackboneInput(x, ones, memory=torch.randn(2, 3, D), memory_mask=mem_mask)).logits
        without = m(BackboneInput(x, ones)).logits
    assert torch.isfinite(with_mem).all()
    torch.testing.assert_close(with_mem[1], without[1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(with_mem[0], without[0], atol=1e-3)


def test_loss_matches_full_logits() -> None:
    m = _model()
    codes = torch.randint(0, V, (2, K, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, -3:] = False
    labels = codes.clone()
    labels[:, 1:, :2] = IGNORE_INDEX  # delayed codebooks start later
    labels[1, :, -3:] = IGNORE_INDEX
    inp = BackboneInput(m.embed(codes), mask, labels, memory=torch.randn(2, 5, D))
    ref = F.cross_entropy(m(inp).logits.permute(0, 3, 1, 2), labels, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(m.loss(inp), ref, atol=1e-5, rtol=1e-5)
    labels[0, 0, 0] = V  # MusicGen has no EOS id
    with pytest.raises(ValueError, match="train_eos=false"):
        m.loss(BackboneInput(inp.inputs_embeds, mask, labels, memory=inp.memory))


# -- cross layout + musicgen: train and generate ---------------------------------------------------
class FakeCodec(MusicCodec):
    """A token codec with MusicGen's sizes (never encodes or decodes)."""

    n_codebooks, cardinality, delays, frame_rate, sample_rate = K, V, (0, 1, 2, 3), 50.0, 32000

    def encode(self, audio):
        raise NotImplementedError("these tests never encode audio")

    def decode(self, music):
        raise NotImplementedError("these tests never decode audio")


def _cross_model():
    cfg = compose(sugar={"encoder": "clip", "layout": "cross", "backbone": "musicgen"},
                  overrides=["encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16"])
    return build_model(cfg, FakeCodec(), seed=0)


def test_cross_layout_trains_and_generates() -> None:
    model = _cross_model()
    bb, lay = model.backbone, model.layout
    assert (bb.n_codebooks, bb.cardinality) == (K, V)
    g = torch.Generator().manual_seed(0)
    cond = Condition(torch.randn(2, 6, model.encoder.dim, generator=g), torch.ones(2, 6, dtype=torch.bool),
                     torch.arange(6.0).repeat(2, 1) / 2)
    music = MusicTokens(torch.randint(0, V, (2, K, 10), generator=g), torch.arange(10)[None] < torch.tensor([[10], [7]]), 50.0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(4):
        loss = bb.loss(lay(bb, cond, music))
        opt.zero_grad()
        loss.backward()
        if not losses:
            assert lay.visual_feature_proj.weight.grad.abs().sum() > 0  # the memory is used
            assert bb.transformer.layers[0].cross_attention.in_proj_weight.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]

    model.eval()
    calls: list[tuple[int, bool]] = []
    fwd = bb.forward

    def spy(inp, cache=None, **kw):
        calls.append((inp.inputs_embeds.shape[0], inp.memory is not None))
        return fwd(inp, cache, **kw)

    bb.forward = spy  # type: ignore[method-assign]
    s = SamplingConfig(top_k=8, cfg_coef=3.0)
    a = generate_tokens(lay, bb, cond, 12, seeds=[1, 2], sampling=s, delays=FakeCodec.delays)
    b = generate_tokens(lay, bb, cond, 12, seeds=[1, 2], sampling=s, delays=FakeCodec.delays)
    assert a.codes.shape == (2, K, 12) and int(a.codes.max()) < V and torch.equal(a.codes, b.codes)
    n = len(calls) // 2
    assert calls[0] == (4, True)  # conditional + null rows; memory only with the prompt
    assert all(c == (4, False) for c in calls[1:n]) and n == 12 + 3

    # greedy generation (no CFG) = the argmax of one teacher-forced forward over what it generated
    greedy = generate_tokens(lay, bb, cond, 12, seeds=[0, 0], sampling=SamplingConfig(temperature=0.0),
                             delays=FakeCodec.delays)
    bb.forward = fwd  # type: ignore[method-assign]
    with torch.no_grad():
        inp = lay(bb, cond, greedy)
        pred = bb(inp).logits.argmax(-1)  # [B, K, S]
    keep = inp.labels != IGNORE_INDEX
    assert keep.sum() == 2 * K * 12 and torch.equal(pred[keep], inp.labels[keep])


# -- importers -------------------------------------------------------------------------------------
def _write_hf_dir(path: Path, hf: MusicgenForCausalLM, composite: bool) -> Path:
    """A transformers MusicGen directory: composite (``decoder.`` + T5/EnCodec/enc_to_dec_proj keys, as
    ``MusicgenForConditionalGeneration.save_pretrained``) or the decoder alone (``MusicgenForCausalLM``)."""
    path.mkdir(parents=True)
    if not composite:
        hf.save_pretrained(path)
        return path
    dec = hf.config.to_dict()
    conf = {"model_type": "musicgen", "decoder": dec,
            "audio_encoder": {"model_type": "encodec", "sampling_rate": 32000, "codebook_size": 2048,
                              "upsampling_ratios": [8, 5, 4, 4]},
            "text_encoder": {"model_type": "t5", "d_model": 32}}
    (path / "config.json").write_text(json.dumps(conf))
    state = {f"decoder.{k}": v.contiguous() for k, v in hf.state_dict().items()}
    state.update({"text_encoder.shared.weight": torch.zeros(10, 32), "audio_encoder.quantizer.layers.0.codebook.embed":
                  torch.zeros(16, 8), "enc_to_dec_proj.weight": torch.zeros(D, 32), "enc_to_dec_proj.bias": torch.zeros(D)})
    save_file(state, str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize("composite", [True, False])
def test_import_musicgen_directory(tmp_path: Path, composite: bool) -> None:
    hf, _ = _hf_pair(seed=5)
    src = _write_hf_dir(tmp_path / "hf", hf, composite)
    report = get_component("importer", "musicgen").factory(src, tmp_path / "out", None)
    assert report.ok, report
    notes = "\n".join(report.notes)
    assert "enc_to_dec_proj skipped" in notes and (("EnCodec 32000 Hz" in notes) == composite)
    bb = load_component(tmp_path / "out", "backbone")
    assert isinstance(bb, MusicgenBackbone) and (bb.width, bb.n_layers, bb.heads, bb.cardinality) == (D, L, H, V)
    codes = torch.randint(0, V, (1, K, 6))
    mem = torch.randn(1, 3, D)
    with torch.no_grad():
        want = hf(input_ids=codes.reshape(K, 6), encoder_hidden_states=mem).logits.reshape(1, K, 6, V)
        got = bb.eval()(BackboneInput(bb.embed(codes), torch.ones(1, 6, dtype=torch.bool), memory=mem)).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if composite:  # the command line, once
        res = run_vidmusic("import", "musicgen", str(src), "-o", str(tmp_path / "cli"), timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (tmp_path / "cli" / "model.safetensors").is_file()


def _write_hf_composite(path: Path, seed: int = 0) -> torch.nn.Module:
    """A real tiny ``MusicgenForConditionalGeneration.save_pretrained`` directory: T5 + EnCodec (32 kHz, K x V at
    50 Hz) + the decoder, every tensor random."""
    import numpy as np
    from transformers import EncodecConfig, MusicgenConfig, MusicgenForConditionalGeneration, T5Config

    torch.manual_seed(seed)
    dec = MusicgenDecoderConfig(vocab_size=V, max_position_embeddings=256, num_hidden_layers=L, ffn_dim=4 * D,
                                num_attention_heads=H, hidden_size=D, num_codebooks=K, audio_channels=1,
                                pad_token_id=V, bos_token_id=V, dropout=0.0)
    enc = EncodecConfig(sampling_rate=32000, codebook_size=V, num_filters=8, hidden_size=16, codebook_dim=16,
                        num_lstm_layers=1, upsampling_ratios=[8, 5, 4, 4],
                        target_bandwidths=[K * 50 * int(np.ceil(np.log2(V))) / 1000], use_causal_conv=False,
                        use_conv_shortcut=False)
    t5 = T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)
    hf = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=t5, audio_encoder=enc, decoder=dec)).eval()
    _randomize_norms(hf.decoder)
    hf.save_pretrained(path)
    return hf


def test_import_musicgen_composite_is_an_unconditional_model_directory(tmp_path: Path) -> None:
    """A composite MusicGen directory with its EnCodec imports as a whole model directory: upstream's
    unconditional logits (all-zero memory, the null condition) and EnCodec decode, and it generates after a move."""
    import numpy as np
    import soundfile as sf

    from omegaconf import OmegaConf

    import vidmusic as vm
    from vidmusic_core.video import write_video

    hf = _write_hf_composite(tmp_path / "hf")
    res = run_vidmusic("import", "musicgen", str(tmp_path / "hf"), "-o", str(tmp_path / "out"), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "whole model directory (unconditional MusicGen" in res.stdout + res.stderr
    index = OmegaConf.to_container(OmegaConf.load(tmp_path / "out" / "model_index.yaml"))
    assert index["components"]["backbone"] == {"name": "musicgen", "path": "."}  # init_from=OUT still finds it
    assert index["generate"]["top_k"] == 250 and index["generate"]["overlap_seconds"] == 12.0

    moved = tmp_path / "elsewhere" / "musicgen"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "out"), str(moved))
    shutil.rmtree(tmp_path / "hf")
    pipe = vm.load(moved, device="cpu")
    codes = torch.randint(0, V, (1, K, 7), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cond = pipe.model.encoder.forward_features({}, None)
        mem, mem_mask = pipe.model.layout.memory(cond)
        assert mem.shape == (1, 1, D) and not mem.any()  # the null condition
        got = pipe.model.backbone(BackboneInput(pipe.model.backbone.embed(codes), torch.ones(1, 7, dtype=torch.bool),
                                                memory=mem, memory_mask=mem_mask)).logits
        want = hf.decoder(input_ids=codes.reshape(K, 7), encoder_hidden_states=torch.zeros(1, 1, D),
                          encoder_attention_mask=torch.zeros(1, 1, dtype=torch.long)).logits.reshape(1, K, 7, V)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        audio = pipe.codec.decode(MusicTokens(codes, None, 50.0))
        ref = hf.audio_encoder.decode(codes[None], [None]).audio_values
        torch.testing.assert_close(audio, ref)
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "clip.mp4", rng.integers(0, 255, (24, 32, 32, 3)).astype(np.uint8), 12)
    res = run_vidmusic("generate", str(video), "--model", str(moved), "-o", str(tmp_path / "gen"), "--seed", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    wav, sr = sf.read(str(tmp_path / "gen" / "clip.wav"))
    assert sr == 32000 and abs(len(wav) / sr - 2.0) < 0.02 and np.isfinite(wav).all() and np.abs(wav).max() > 1e-4


def test_import_musicgen_reports_bad_keys(tmp_path: Path) -> None:
    hf, _ = _hf_pair()
    src = _write_hf_dir(tmp_path / "hf", hf, composite=False)
    (src / "model.safetensors").unlink()
    state = {k: v for k, v in hf.state_dict().items() if "layers.1.encoder_attn.k_proj" not in k}
    state["model.decoder.layers.0.bogus.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(src / "model.safetensors"))
    report = get_component("importer", "musicgen").factory(src, tmp_path / "out", None)
    assert report.missing == ["transformer.layers.1.cross_attention.in_proj_weight"]
    assert report.unexpected == ["model.decoder.layers.0.bogus.weight"]
    assert not (tmp_path / "out").exists()
    (src / "config.json").write_text(json.dumps({"model_type": "musicgen_melody"}))
    with pytest.raises(Exception, match="no cross-attention"):
        get_component("importer", "musicgen").factory(src, tmp_path / "out", None)


XP_CFG = f"""
lm_model: transformer_lm
sample_rate: 32000
compression_model_checkpoint: //pretrained/facebook/encodec_32khz
transformer_lm:
  dim: {D}
  num_heads: 2
  num_layers: {L}
  hidden_scale: 4
  n_q: {K}
  card: {V}
  norm_first: true
  bias_ff: false
  bias_attn: false
  bias_proj: false
  positional_embedding: sin
  activation: gelu
  memory_efficient: true
  layer_scale: null
codebooks_pattern:
  modeling: delay
  delay:
    delays: [0, 1, 2, 3]
classifier_free_guidance:
  training_dropout: 0.3
  inference_coef: 3.0
generate:
  lm:
    use_sampling: true
    top_k: 250
    top_p: 0.0
video:
  visual_encoder: clip
  video_fps: 2
  add_global:
    if_add_gobal: true
    num_frames: 3
"""


def _vidmuse_lm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """LM keys of a VidMuse ``best_state`` (audiocraft LMModel names, custom attention), spelled out."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    s = {f"emb.{k}.weight": r(V + 1, D) for k in range(K)}
    for i in range(L):
        p = f"transformer.layers.{i}."
        s.update({p + "self_attn.in_proj_weight": r(3 * D, D), p + "self_attn.out_proj.weight": r(D, D),
                  p + "linear1.weight": r(4 * D, D), p + "linear2.weight": r(D, 4 * D),
                  p + "cross_attention.in_proj_weight": r(3 * D, D), p + "cross_attention.out_proj.weight": r(D, D)})
        for n in ("norm1", "norm2", "norm_cross"):
            s[f"{p}{n}.weight"], s[f"{p}{n}.bias"] = 1 + r(D), r(D)
    s["out_norm.weight"], s["out_norm.bias"] = 1 + r(D), r(D)
    s.update({f"linears.{k}.weight": r(V, D) for k in range(K)})
    s["condition_provider.conditioners.description.output_proj.weight"] = r(D, 768)  # unused T5 stub
    s["condition_provider.conditioners.description.output_proj.bias"] = r(D)
    return s


def test_import_vidmuse_full(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lstv = get_component("encoder", "lstv")
    visual = {k: v.clone() for k, v in lstv.build(lstv.default_config()).state_dict().items()}  # names = upstream's
    lm = _vidmuse_lm_state()
    src = tmp_path / "VidMuse"
    src.mkdir()
    torch.save({"best_state": {**visual, **lm}, "xp.cfg": XP_CFG, "version": "1.3.0", "exported": True},
               src / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True, "version": "1.3.0"},
               src / "compression_state_dict.bin")
    out = tmp_path / "imported"
    report = get_component("importer", "vidmuse_full").factory(src, out, VidmuseFullImportConfig(clip_heads=2))
    assert report.ok, report
    assert report.missing == report.unexpected == report.shape_mismatches == []
    settings = __import__("yaml").safe_load((out / "vidmuse.yaml").read_text())
    assert settings["delays"] == [0, 1, 2, 3] and settings["sampling"]["cfg_coef"] == 3.0
    assert settings["sampling"]["top_k"] == 250 and settings["codec"]["pretrained"] == "facebook/encodec_32khz"

    enc, lay, bb = (load_component(out / n, k).eval() for n, k in
                    (("encoder", "encoder"), ("layout", "layout"), ("backbone", "backbone")))
    own = bb.state_dict()
    assert all(torch.equal(own[k], v) for k, v in lm.items() if not k.startswith("condition_provider"))
    torch.testing.assert_close(lay.bos, sum(lm[f"emb.{k}.weight"][V] for k in range(K)))  # upstream's first input
    frames = make_frames(enc.frame_spec, batch=1, seconds=1.0)
    with torch.no_grad():
        cond = enc(frames)
        inp = lay(bb, cond, MusicTokens(torch.randint(0, V, (1, K, 5)), None, 50.0))
        torch.testing.assert_close(inp.memory, cond.tokens)  # project=false: LSTV's video_emb is the memory
        assert bb(inp).logits.shape == (1, K, 5 + 3 + 1, V)
    toks = generate_tokens(lay, bb, cond, 10, seeds=[7], sampling=SamplingConfig(**settings["sampling"]),
                           delays=settings["delays"], frame_rate=50.0)
    assert toks.codes.shape == (1, K, 10) and int(toks.codes.max()) < V

    bad = dict(lm)
    del bad["transformer.layers.1.linear2.weight"]
    torch.save({"best_state": {**visual, **bad}, "xp.cfg": XP_CFG.replace("bias_ff: false", "bias_ff: true")},
               tmp_path / "bias.bin")
    with pytest.raises(Exception, match="bias_ff"):
        get_component("importer", "vidmuse_full").factory(tmp_path / "bias.bin", tmp_path / "x", None)
    torch.save({"best_state": {**visual, **bad}, "xp.cfg": XP_CFG}, tmp_path / "missing.bin")
    rep = get_component("importer", "vidmuse_full").factory(tmp_path / "missing.bin", tmp_path / "y",
                                                            VidmuseFullImportConfig(clip_heads=2))
    assert rep.missing == ["backbone: transformer.layers.1.linear2.weight"] and not (tmp_path / "y").exists()


# -- long videos (vidmusic_core/longform.py) --------------------------------------------------------
def test_plan_windows_cover_the_video() -> None:
    from vidmusic_core.longform import plan_windows

    ws = plan_windows(100, 30, 5)
    assert [(w.start, w.end, w.prompt) for w in ws] == [(0, 30, 0), (30, 55, 5), (55, 80, 5), (80, 100, 5)]
    assert all(w.end - w.start + w.prompt <= 30 for w in ws)
    assert ws[1].seconds(5.0) == (5.0, 11.0)  # the video span that conditions window 1 (prompt included)


@pytest.mark.parametrize("cfg_coef", [1.0, 3.0])
def test_continuation_layout_continues_exactly(cfg_coef: float) -> None:
    """Greedy: 12 frames at once == 5 frames, then 7 more continued from those 5 as an audio prompt."""
    from vidmusic_core.sampling import ContinuationLayout

    model = _cross_model().eval()
    torch.manual_seed(1)
    cond = Condition(torch.randn(2, 6, model.encoder.dim), torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 6))
    greedy = SamplingConfig(temperature=0.0, cfg_coef=cfg_coef)
    d = FakeCodec.delays
    full = generate_tokens(model.layout, model.backbone, cond, 12, [0, 0], greedy, delays=d).codes
    lay = ContinuationLayout(model.layout, full[:, :, :5], d)
    rest = generate_tokens(lay, model.backbone, cond, 7, [0, 0], greedy, delays=d).codes
    assert torch.equal(rest, full[:, :, 5:])


class ToneCodec(MusicCodec):
    """A stand-in codec at 2 frames/s: each frame decodes to 100 samples of a tone set by codebook 0."""

    n_codebooks, cardinality, delays, frame_rate, sample_rate = K, V, (0, 1, 2, 3), 2.0, 200

    def encode(self, audio):
        raise NotImplementedError("this test never encodes audio")

    def decode(self, tokens: MusicTokens) -> torch.Tensor:
        f = 5.0 + tokens.codes[:, :1].float().repeat_interleave(100, dim=-1)  # [B, 1, T*100]
        return 0.3 * torch.sin(2 * torch.pi * f * torch.arange(f.shape[-1]) / 200.0)


def test_generate_long_ten_minute_video(tmp_path: Path) -> None:
    """10 min of video in 60 s windows (1 s prompt): every window sees its own frames, memory stays flat."""
    import soundfile as sf

    from vidmusic_core.longform import generate_long
    from vidmusic_core.video import write_video

    shade = lambda t: 20 + 20 * (int(t) // 60)  # noqa: E731  brightness steps every minute
    frames = torch.tensor([shade(i / 2) for i in range(1200)], dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 32, 32, 3)
    video = write_video(tmp_path / "long.mp4", frames.contiguous(), 2.0)
    model = _cross_model().eval()
    seen: list[tuple[float, float, list[float]]] = []
    enc_forward = model.encoder.forward

    def spy(fr):
        seen.append((float(fr.duration[0]), float(fr.local_times[0, 0]), fr.local.float().mean(dim=(2, 3, 4))[0].tolist()))
        return enc_forward(fr)

    model.encoder.forward = spy  # type: ignore[method-assign]
    logs: list[str] = []
    res = generate_long(model, ToneCodec(), video, window_s=60.0, overlap_s=1.0, seed=3, progress=False,
                        out_wav=tmp_path / "long.wav", log=logs.append)
    assert res.music.codes.shape == (1, K, 1200) and len(res.windows) == 11 and len(set(res.seeds)) == 11
    assert "11 windows" in logs[0] and "decoding steps" in logs[0]
    assert res.peak_local_frames == 120  # one window of frames at 2 fps, whatever the video length
    for w, (dur, first_time, means) in zip(res.windows, seen):
        t0, t1 = w.seconds(2.0)
        assert dur == pytest.approx(t1 - t0) and len(means) == round((t1 - t0) * 2)
        assert first_time == 0.0  # times relative to the window (music position 0), as in training
        want = [shade(t0 + k / 2) for k in range(len(means))]
        assert max(abs(a - b) for a, b in zip(means, want)) < 6, (w, means[:3], want[:3])
    audio, sr = sf.read(str(res.wav))
    assert sr == 200 and audio.shape == (1200 * 100,)
