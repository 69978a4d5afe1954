"""Tests of the `inspire_llm` plugin: the `inspire` backbone and the `inspiremusic` llm.pt importer."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

import inspire_llm.plugin
from inspire_llm.backbone import cache_kwarg, STRUCTURE_LABELS, InspireBackbone, InspireConfig, grow_llm_embedding
from inspire_llm.importer import import_inspiremusic, read_hyperpyyaml
from vidmusic_core import IGNORE_INDEX, BackboneInput, load_component
from vidmusic_core.testing import check_component_contract

TINY = InspireConfig()  # D 64, 2 layers, 4 heads, 2 kv heads, A 256


@pytest.fixture
def host(vidmusic_host):
    vidmusic_host.register_plugin(inspire_llm.plugin, name="inspire_llm")
    return vidmusic_host


def _model(seed: int = 0, **kw) -> InspireBackbone:
    torch.manual_seed(seed)
    return InspireBackbone(InspireConfig(**kw)).eval()


def test_contract(host) -> None:
    m = check_component_contract("backbone", "inspire")
    assert (m.width, m.n_codebooks, m.cardinality, m.eos_id) == (64, 1, 256, 256)
    assert host.registry.get("backbone", "inspiremusic").name == "inspire"
    check_component_contract("importer", "inspiremusic")


# -- (1) KV cache ---------------------------------------------------------------------------------
def test_cached_steps_equal_full_forward() -> None:
    m = _model()
    B, P, steps, pad = 2, 7, 6, 3
    x = torch.randn(B, P + steps, m.width)
    mask = torch.ones(B, P + steps, dtype=torch.bool)
    mask[1, :pad] = False  # row 1: a left-padded (shorter) prompt
    with torch.no_grad():
        full = m(BackboneInput(x, mask)).logits  # [B, 1, P+steps, A+1]
        cache = m.new_cache()
        assert isinstance(cache, DynamicCache)
        out = m(BackboneInput(x[:, :P], mask[:, :P]), cache)
        assert out.cache is cache and cache.get_seq_length() == P
        got = [out.logits]
        for i in range(P, P + steps):
            step = m(BackboneInput(x[:, i:i + 1], mask[:, i:i + 1]), cache, logits_positions="last")
            assert step.logits.shape == (B, 1, 1, m.cardinality + 1)
            got.append(step.logits)
    got = torch.cat(got, dim=2)
    assert cache.get_seq_length() == P + steps
    real = mask[:, None, :, None].expand_as(full)
    torch.testing.assert_close(got[real], full[real], atol=1e-5, rtol=1e-5)


def test_inplace_cache_and_step_path_equal_dynamic_cache() -> None:
    """The in-place cache + single-token step path give the logits of transformers' own forward over a plain
    ``DynamicCache`` (1e-5), through buffer growth, ``crop`` and ``batch_select_indices``."""
    from inspire_llm.cache import MIN_CAPACITY, InPlaceLayer

    m = _model()
    B, P, steps = 3, MIN_CAPACITY - 4, 12  # the buffer grows during the steps
    x = torch.randn(B, P + steps, m.width)
    ones = torch.ones(B, P + steps, dtype=torch.bool)

    def ref_logits(xs: torch.Tensor) -> torch.Tensor:  # transformers forward, DynamicCache, one token at a time
        cache = DynamicCache(config=m.llm.model.config)
        hid = m.qwen(inputs_embeds=xs[:, :P], use_cache=True, **{cache_kwarg(): cache}).last_hidden_state[:, -1:]
        got = [hid]
        for i in range(P, xs.shape[1]):
            got.append(m.qwen(inputs_embeds=xs[:, i:i + 1], use_cache=True, **{cache_kwarg(): cache}).last_hidden_state)
        return m.decode_logits(torch.cat(got, 1))

    with torch.inference_mode():
        ref = ref_logits(x)
        cache = m.new_cache()
        got = [m(BackboneInput(x[:, :P], ones[:, :P]), cache, logits_positions="last").logits]
        for i in range(P, P + steps):
            got.append(m(BackboneInput(x[:, i:i + 1], ones[:, i:i + 1]), cache, logits_positions="last").logits)
            layer = cache.layers[0]
            assert isinstance(layer, InPlaceLayer) and layer.keys.data_ptr() == layer._kbuf.data_ptr()
        assert cache.layers[0]._kbuf.shape[2] > MIN_CAPACITY  # it grew
        torch.testing.assert_close(torch.cat(got, dim=2), ref, atol=1e-5, rtol=1e-5)
        # crop two positions, keep rows 2 and 0, and continue: equals the reference on those rows
        cache.crop(-2)
        idx = torch.tensor([2, 0])
        cache.batch_select_indices(idx)
        again = [m(BackboneInput(x[idx, i:i + 1], ones[:2, i:i + 1]), cache, logits_positions="last").logits
                 for i in range(P + steps - 2, P + steps)]
    torch.testing.assert_close(torch.cat(again, dim=2), ref[idx][:, :, -2:], atol=1e-5, rtol=1e-5)


def test_inplace_layer_fast_append_never_broadcasts_or_casts() -> None:
    """An ``InPlaceLayer`` append writes into its buffer only when the new states fit it exactly: a key with
    fewer heads is an error (``copy_`` would have broadcast it), a new dtype moves the layer to a new buffer
    (``copy_`` would have cast it), and keys replaced from outside (a ``crop``) are picked up."""
    from inspire_llm.cache import InPlaceLayer

    layer = InPlaceLayer()
    k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    with torch.inference_mode():
        layer.update(k, v)
        buf = layer._kbuf
        got_k, _ = layer.update(k[:, :, :1] + 1, v[:, :, :1])  # the fast path: same buffer
        assert layer._kbuf is buf and torch.equal(got_k, torch.cat([k, k[:, :, :1] + 1], dim=2))
        with pytest.raises(RuntimeError):
            layer.update(k[:, :1, :1], v[:, :1, :1])  # 1 head into a 2-head layer
        half_k, half_v = k[:, :, :1].double(), v[:, :, :1].double()
        got_k, got_v = layer.update(half_k, half_v)
        assert got_k.dtype == torch.float64 and layer._kbuf is not buf and got_k.shape[2] == 5
        layer.crop(-3)  # keep the first 2 positions
        got_k, _ = layer.update(half_k, half_v)
        assert got_k.shape[2] == 3 and torch.equal(got_k[:, :, :2], k[:, :, :2].double())


def test_colmajor_weights_same_model(tmp_path: Path) -> None:
    """``colmajor_weights``: same parameters and shapes, logits equal to 1e-5, loads and saves as usual."""
    from vidmusic_core.checkpoint import load_weights, save_weights

    m = _model()
    c = _model(colmajor_weights=True)
    c.load_state_dict(m.state_dict())
    q = c.qwen.layers[0].self_attn.q_proj.weight
    assert q.stride() == (1, q.shape[0]) and c.llm_decoder.weight.stride(0) == 1
    assert c.qwen.layers[0].mlp.down_proj.weight.is_contiguous()  # [D, FFN]: more columns, kept
    x = torch.randn(2, 9, m.width)
    ones = torch.ones(2, 9, dtype=torch.bool)
    with torch.inference_mode():
        torch.testing.assert_close(c(BackboneInput(x, ones)).logits, m(BackboneInput(x, ones)).logits,
                                   atol=1e-5, rtol=1e-5)
        cm, cc = m.new_cache(), c.new_cache()
        m(BackboneInput(x[:, :8], ones[:, :8]), cm)
        c(BackboneInput(x[:, :8], ones[:, :8]), cc)
        torch.testing.assert_close(c(BackboneInput(x[:, 8:], ones[:, 8:]), cc).logits,
                                   m(BackboneInput(x[:, 8:], ones[:, 8:]), cm).logits, atol=1e-5, rtol=1e-5)
    save_weights(c.state_dict(), tmp_path / "w.safetensors")
    back = load_weights(tmp_path / "w.safetensors")
    assert all(torch.equal(back[k], v) for k, v in m.state_dict().items())


def test_packed_decode_kernels_equal_plain_step(monkeypatch) -> None:
    """``decode_kernels: packed``: the fused / prepacked single-token step gives the plain step's logits and
    hidden (1e-5) at batch 1 (column-major copies), batch 3 and 4 with a padded prompt (MKL-packed for that
    batch size, forced here for tiny weights; the batch-4 pack replaces the batch-3 one) and batch 2 on oneDNN
    (a torch without MKL's packed GEMM), follows in-place weight changes, and leaves the module state alone."""
    import copy

    import inspire_llm.decode as dk
    from vidmusic_core import ConfigError

    with pytest.raises(ConfigError, match="decode_kernels"):
        InspireBackbone(InspireConfig(decode_kernels="fast"))
    # the pinned torch build (CPU wheels on x86 and arm) ships oneDNN and MKL on x86; without them `packed`
    # would only fall back
    assert dk.onednn_linear_available(), "this torch build has no oneDNN prepacked linear (torch.ops.mkldnn)"
    assert dk.mkl_packed_available(), "this torch build has no MKL packed GEMM (torch.ops.mkl)"
    monkeypatch.setattr(dk, "ONEDNN_MIN_NUMEL", 0)  # tiny weights go to the packed kernels too
    m, p = _model(decode_kernels="plain"), _model(decode_kernels="packed")
    assert m._pack.packs == {} and _model(decode_kernels="default").cfg.decode_kernels == "plain"
    assert list(p.state_dict()) == list(m.state_dict())
    p.load_state_dict(m.state_dict(), strict=True)
    seen = {}
    for B, variant in ((1, "colmajor"), (3, "mkl3"), (4, "mkl4"), (2, "onednn")):
        if variant == "onednn":
            monkeypatch.setattr(dk, "MKL_BATCHES", range(0))  # as a torch without MKL
        P, steps = 6, 4
        x = torch.randn(B, P + steps, m.width)
        mask = torch.ones(B, P + steps, dtype=torch.bool)
        if B > 1:
            mask[-1, :2] = False  # the last row's prompt is left-padded
        with torch.inference_mode():
            cm, cp = m.new_cache(), p.new_cache()
            m(BackboneInput(x[:, :P], mask[:, :P]), cm)
            p(BackboneInput(x[:, :P], mask[:, :P]), cp)
            for i in range(P, P + steps):
                if i == P + steps - 1:  # an in-place weight change is picked up
                    for mod in (m, p):
                        mod.qwen.layers[0].self_attn.k_proj.bias.add_(0.5)
                        mod.llm_decoder.weight[:, 0].mul_(2)
                step = BackboneInput(x[:, i:i + 1], mask[:, i:i + 1])
                a = m(step, cm, logits_positions="last")
                b = p(step, cp, logits_positions="last")
                torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(b.hidden, a.hidden, atol=1e-5, rtol=1e-5)
        assert variant in p._pack.packs
        seen[variant] = p._pack.packs[variant][1:3]
    assert "mkl3" not in p._pack.packs and set(p._pack.packs) == {"colmajor", "mkl4", "onednn"}
    for variant, kind in (("mkl4", "mkl"), ("onednn", "dnn")):
        layers, dec = seen[variant]
        assert all(w.kind == kind for w in layers[0]) and dec.kind == kind  # the packed kernels were used
    with pytest.raises(ValueError, match="batch 4"):  # MKL's op would fall back to the stand-in: refused
        dk.linear(torch.randn(3, m.width), seen["mkl4"][1])
    q = seen["colmajor"][0][0][0].weight
    attn = m.qwen.layers[0].self_attn
    n_qkv = attn.q_proj.out_features + attn.k_proj.out_features + attn.v_proj.out_features
    assert q.shape == (n_qkv, m.width) and q.stride(0) == 1  # q/k/v fused, column-major
    assert copy.deepcopy(p)._pack.packs == {} and p._pack.packs
    with torch.no_grad():  # autograd on: the default step
        one = torch.ones(1, 1, dtype=torch.bool)
        cp = p.new_cache()
        p(BackboneInput(x[:1, :P], mask[:1, :P]), cp)
        with torch.enable_grad():
            out = p(BackboneInput(x[:1, P:P + 1], one), cp, logits_positions="last")
        assert out.logits.shape == (1, 1, 1, m.cardinality + 1)
    p.train()
    assert p._pack.packs == {}
    assert m._pack.packs == {}  # `plain` never builds prepared weights


def test_auto_decode_kernels_default_and_silent_fallback() -> None:
    """``auto`` is the default: fp32 CPU inference steps run the packed step (its prepared weights get built)
    and equal ``plain``; where it does not apply (autograd on, bf16) the plain step runs with no warning, while
    an explicit ``packed`` warns once."""
    import warnings

    assert InspireConfig().decode_kernels == "auto"
    a, plain = _model(), _model(decode_kernels="plain")
    x = torch.randn(2, 7, a.width)
    ones = torch.ones(2, 7, dtype=torch.bool)
    with torch.inference_mode():
        ca, cp = a.new_cache(), plain.new_cache()
        a(BackboneInput(x[:, :6], ones[:, :6]), ca)
        plain(BackboneInput(x[:, :6], ones[:, :6]), cp)
        got = a(BackboneInput(x[:, 6:], ones[:, 6:]), ca, logits_positions="last").logits
        want = plain(BackboneInput(x[:, 6:], ones[:, 6:]), cp, logits_positions="last").logits
    assert "mkl2" in a._pack.packs
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for dtype in ("fp32", "bf16"):
        for kern in ("auto", "packed"):
            m = _model(decode_kernels=kern, dtype=dtype)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                grad = dtype == "fp32"  # fp32: autograd on; bf16: not fp32
                with torch.set_grad_enabled(grad):
                    c = m.new_cache()
                    m(BackboneInput(x[:1, :6].to(m.llm_decoder.weight.dtype), ones[:1, :6]), c)
                    out = m(BackboneInput(x[:1, 6:].to(m.llm_decoder.weight.dtype), ones[:1, 6:]), c,
                            logits_positions="last")
            assert out.logits.shape == (1, 1, 1, m.cardinality + 1) and m._pack.packs == {}
            warned = [w for w in caught if "decode_kernels" in str(w.message)]
            assert len(warned) == (1 if kern == "packed" and not grad else 0), (dtype, kern, warned)


# -- (4) padding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_row_equals_row_alone(side: str) -> None:
    m = _model()
    L, pad = 9, 4
    row = torch.randn(1, L, m.width)
    other = torch.randn(1, L + pad, m.width)
    junk = 100 * torch.randn(1, pad, m.width)  # padding content must not matter
    padded = torch.cat([junk, row], 1) if side == "left" else torch.cat([row, junk], 1)
    mask = torch.ones(2, L + pad, dtype=torch.bool)
    real = slice(pad, None) if side == "left" else slice(0, L)
    mask[1] = False
    mask[1, real] = True
    with torch.no_grad():
        alone = m(BackboneInput(row, torch.ones(1, L, dtype=torch.bool))).logits
        batch = m(BackboneInput(torch.cat([other, padded]), mask)).logits
        other_alone = m(BackboneInput(other, torch.ones(1, L + pad, dtype=torch.bool))).logits
    torch.testing.assert_close(batch[1:, :, real], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[:1], other_alone, atol=1e-5, rtol=1e-5)


# -- (3) a 3000-token prefix + 400 music tokens, forward + backward ---------------------------------
def test_long_prefix_forward_backward_memory() -> None:
    script = textwrap.dedent("""
        import resource, torch
        from vidmusic_core import BackboneInput, IGNORE_INDEX
        from inspire_llm.backbone import InspireBackbone, InspireConfig
        torch.manual_seed(0)
        m = InspireBackbone(InspireConfig())
        B, P, T = 2, 3000, 400
        codes = torch.randint(0, m.cardinality, (B, 1, T))
        x = torch.cat([torch.randn(B, P, m.width), m.embed(codes)], 1)  # [B, 3400, D]
        mask = torch.ones(B, P + T, dtype=torch.bool)
        mask[1, -50:] = False  # a shorter (right-padded) row
        labels = torch.full((B, 1, P + T), IGNORE_INDEX)
        labels[:, :, P - 1:-1] = codes  # position t predicts token t+1
        labels[1, :, -51:] = IGNORE_INDEX
        loss = m.loss(BackboneInput(x, mask, labels))
        loss.backward()
        g = m.llm.model.model.layers[0].self_attn.q_proj.weight.grad
        assert torch.isfinite(loss) and g is not None and torch.isfinite(g).all()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    peak_mb = float(res.stdout.strip().splitlines()[-1])
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 2048, f"3000+400 token step at tiny width peaked at {peak_mb:.0f} MB"


def test_loss_matches_full_logits_and_parallel_heads() -> None:
    for K in (1, 3):
        m = _model(n_codebooks=K, audio_vocab=32)
        codes = torch.randint(0, 32, (2, K, 10))
        x = m.embed(codes)
        assert x.shape == (2, 10, 64)
        mask = torch.ones(2, 10, dtype=torch.bool)
        mask[1, -3:] = False
        labels = codes.clone()
        labels[:, :, :2] = IGNORE_INDEX
        labels[1, :, -3:] = IGNORE_INDEX
        labels[0, 0, 5] = 32  # EOS is a valid target
        inp = BackboneInput(x, mask, labels)
        logits = m(inp).logits  # [B, K, S, A+1]
        assert logits.shape == (2, K, 10, 33)
        ref = F.cross_entropy(logits.permute(0, 3, 1, 2), labels, ignore_index=IGNORE_INDEX)
        torch.testing.assert_close(m.loss(inp), ref, atol=1e-5, rtol=1e-5)


def test_embeddings_and_video_task() -> None:
    m = _model(video_task=True)
    assert m.llm_embedding.weight.shape == (3, 64)
    assert STRUCTURE_LABELS["chorus"] == 1 and STRUCTURE_LABELS["verse"] == 2  # upstream training map
    w = torch.randn(2, 64)
    g = grow_llm_embedding(w)
    assert g.shape == (3, 64) and torch.equal(g[:2], w) and torch.equal(g[2], w[1])
    t = m.embed_time(torch.tensor([[0.0, 30.0]]))
    assert t.shape == (1, 2, 64)
    assert torch.equal(t[0, 0, :32], torch.zeros(32)) and torch.equal(t[0, 0, 32:], torch.ones(32))
    assert m.tokenizer.encode("hi") == [104, 105]  # built-in bytes without qwen_dir


# -- (2) the llm.pt importer ----------------------------------------------------------------------
D, V_TEXT, A, LAYERS, HEADS, KV, FFN = 64, 300, 100, 2, 4, 2, 128


def upstream_llm_pt(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny llm.pt with every key of upstream `LLM.state_dict()` (InspireMusic llm/llm.py, with the Qwen2
    tree of transformers' Qwen2ForCausalLM under `llm.model.`), written by hand: not from our module."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return 0.1 * torch.randn(*shape, generator=g)

    embed = r(V_TEXT, D)
    kv = KV * D // HEADS
    sd = {"text_embedding.weight": embed, "chorus_embedding.weight": r(5, D), "llm_embedding.weight": r(2, D),
          "llm.model.model.embed_tokens.weight": embed}
    for i in range(LAYERS):
        p = f"llm.model.model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": r(D, D), p + "self_attn.q_proj.bias": r(D),
                   p + "self_attn.k_proj.weight": r(kv, D), p + "self_attn.k_proj.bias": r(kv),
                   p + "self_attn.v_proj.weight": r(kv, D), p + "self_attn.v_proj.bias": r(kv),
                   p + "self_attn.o_proj.weight": r(D, D),
                   p + "mlp.gate_proj.weight": r(FFN, D), p + "mlp.up_proj.weight": r(FFN, D),
                   p + "mlp.down_proj.weight": r(D, FFN),
                   p + "input_layernorm.weight": 1 + r(D), p + "post_attention_layernorm.weight": 1 + r(D)})
    sd.update({"llm.model.model.norm.weight": 1 + r(D), "llm.model.lm_head.weight": embed,  # tied, as Qwen2-0.5B
               "llm_decoder.weight": r(A + 1, D), "llm_decoder.bias": r(A + 1),
               "speech_embedding.weight": r(A, D),
               "spk_embed_affine_layer.weight": r(D, 192), "spk_embed_affine_layer.bias": r(D)})
    return sd


UPSTREAM_YAML = """\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1024]
__set_seed3: !apply:torch.manual_seed [1024]
sample_rate: 24000
text_encoder_input_size: 512
llm_input_size: 64
llm_output_size: 64
basemodel_path: '../../pretrained_models/InspireMusic-Tiny/'
llm: !new:inspiremusic.llm.llm.LLM
    text_encoder_input_size: !ref <text_encoder_input_size>
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    audio_token_size: 100
    length_normalized_loss: True
    lsm_weight: 0
    text_encoder_conf:
        name: "none"
    llm: !new:inspiremusic.transformer.qwen_encoder.QwenEmbeddingEncoder
        input_size: !ref <text_encoder_input_size>
        pretrain_path: !ref <basemodel_path>
    sampling: !name:inspiremusic.utils.common.topk_sampling
        top_k: 350
    train_cfg_ratio: 0.2
    infer_cfg_ratio: 3.0
data_pipeline: [
    !ref <sample_rate>,
]
"""

QWEN_CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": D,
               "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
               "num_key_value_heads": KV, "vocab_size": V_TEXT, "tie_word_embeddings": True,
               "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
               "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": LAYERS,
               "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 0}


def write_model_dir(d: Path, state: dict[str, torch.Tensor]) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    d.mkdir(parents=True, exist_ok=True)
    torch.save(state, d / "llm.pt")
    (d / "inspiremusic.yaml").write_text(UPSTREAM_YAML)
    (d / "config.json").write_text(json.dumps(QWEN_CONFIG))
    tok = Tokenizer(models.BPE())  # a stub byte-level BPE tokenizer standing in for Qwen's
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["upbeat piano music with drums", "calm ambient strings"] * 4, trainers.BpeTrainer(
        vocab_size=270, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False))
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    return d


def test_read_hyperpyyaml(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text(UPSTREAM_YAML)
    doc = read_hyperpyyaml(p)
    assert doc["llm"]["llm_input_size"] == 64 and doc["llm"]["audio_token_size"] == 100
    assert doc["llm"]["llm"]["pretrain_path"] == "../../pretrained_models/InspireMusic-Tiny/"
    assert doc["llm"]["sampling"]["top_k"] == 350 and doc["data_pipeline"] == [24000]


def test_import_llm_pt(host, tmp_path: Path) -> None:
    state = upstream_llm_pt()
    src = write_model_dir(tmp_path / "InspireMusic-Tiny", state)
    out = tmp_path / "imported"
    report = import_inspiremusic(src, out)
    assert report.ok and report.missing == [] and report.unexpected == [] and report.shape_mismatches == []
    written = load_file(str(out / "model.safetensors"))
    assert set(written) == set(state)
    for k, v in state.items():
        assert torch.equal(written[k], v), k

    model = load_component(out, expected_kind="backbone")
    assert isinstance(model, InspireBackbone)
    assert (model.width, model.cardinality) == (D, A) and model.cfg.audio_vocab == A
    model.eval()

    # reference: upstream's computation with plain transformers (QwenEmbeddingEncoder -> llm_decoder)
    ref = Qwen2ForCausalLM(Qwen2Config.from_dict(QWEN_CONFIG)).eval()
    ref.load_state_dict({k[len("llm.model."):]: v for k, v in state.items() if k.startswith("llm.model.")})
    ids = torch.tensor([[5, 17, 42]])
    audio = torch.tensor([[3, 99, 0, 7]])
    x = torch.cat([state["llm_embedding.weight"][None, :1], state["chorus_embedding.weight"][None, [1]],
                   state["text_embedding.weight"][ids], state["llm_embedding.weight"][None, 1:2],
                   state["speech_embedding.weight"][audio]], dim=1)  # [1, 10, D]
    with torch.no_grad():
        hidden = ref(inputs_embeds=x, output_hidden_states=True).hidden_states[-1]
        want = F.linear(hidden, state["llm_decoder.weight"], state["llm_decoder.bias"])  # [1, 10, A+1]
        ours = model(BackboneInput(x, torch.ones(1, 10, dtype=torch.bool))).logits[:, 0]
        emb = torch.cat([model.special(0)[None, None], model.embed_structure(torch.tensor([[1]])),
                         model.embed_text(ids), model.special(1)[None, None], model.embed(audio[:, None])], 1)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(emb, x)
    assert model.tokenizer.vocab_size <= V_TEXT and model.tokenizer.encode("piano")  # copied Qwen tokenizer
    assert any("top_k" in n and "3.0" in n for n in report.notes)


def test_import_reports_bad_keys_and_grows_video_row(host, tmp_path: Path) -> None:
    state = upstream_llm_pt()
    bad = dict(state)
    del bad["spk_embed_affine_layer.bias"]
    bad["visual_feature_proj.weight"] = torch.zeros(D, 768)
    src = write_model_dir(tmp_path / "bad", bad)
    report = import_inspiremusic(src, tmp_path / "out_bad")
    assert report.missing == ["spk_embed_affine_layer.bias"]
    assert report.unexpected == ["visual_feature_proj.weight"]
    assert not (tmp_path / "out_bad" / "model.safetensors").exists()

    from inspire_llm.importer import InspireImportConfig

    src = write_model_dir(tmp_path / "good", state)
    report = import_inspiremusic(src / "llm.pt", tmp_path / "out_video", InspireImportConfig(video_task=True))
    assert report.ok
    w = load_file(str(tmp_path / "out_video" / "model.safetensors"))["llm_embedding.weight"]
    assert w.shape == (3, D) and torch.equal(w[:2], state["llm_embedding.weight"])


def test_upstream_parquet_shard_as_data_source(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inspire_llm.upstream_parquet import UpstreamDataError, read_upstream_shard, to_token_store
    from vidmusic_core.data.cache import ShardStore

    rng = np.random.default_rng(0)
    sem = [rng.integers(0, 4096, (1, 375)).tolist(), rng.integers(0, 4096, (1, 150)).tolist()]
    table = pa.table({  # upstream's column names and types (tools/make_parquet_list.py)
        "utt": ["song_a", "song_b"], "text": ["An upbeat pop song.", "A calm piano piece."],
        "chorus": ["verse", "intro,chorus"], "time_start": [0.0, 10.0], "time_end": [5.0, 12.0],
        "semantic_token": pa.array(sem, type=pa.list_(pa.list_(pa.int64()))),
        "acoustic_token": pa.array([rng.integers(0, 1024, (375, 4)).tolist(), rng.integers(0, 1024, (150, 4)).tolist()],
                                   type=pa.list_(pa.list_(pa.int64()))),
    })
    path = tmp_path / "parquet_000000000.tar"  # upstream's misleading suffix; the content is Parquet
    pq.write_table(table, path)
    utts = read_upstream_shard(path)
    assert [u.utt for u in utts] == ["song_a", "song_b"] and utts[1].chorus == ["intro", "chorus"]
    assert utts[1].structure_ids() == [0, 1] and utts[0].semantic_token.shape == (1, 375)
    assert utts[0].acoustic_token.shape == (375, 4) and utts[1].time_end == 12.0
    store = ShardStore(to_token_store(utts, tmp_path / "tokens"))
    assert np.array_equal(store.read("song_b")["codes"], np.asarray(sem[1])) and store.read("song_b")["codes"].dtype == np.int16
    pq.write_table(table.drop(["chorus"]), tmp_path / "bad.parquet")
    with pytest.raises(UpstreamDataError, match=r"lacks InspireMusic columns \['chorus'\]"):
        read_upstream_shard(tmp_path / "bad.parquet")
