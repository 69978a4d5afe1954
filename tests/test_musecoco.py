"""The `musecoco_symbolic` plugin: codec ``remi``, attributes, backbone ``musecoco``, importer ``musecoco``."""
from __future__ import annotations

import argparse
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musecoco_symbolic import remigen
from musecoco_symbolic.attributes import (
    FAMILY_OF_PROGRAM, attribute_accuracy, extract_attributes, measure, na_values, step_mask, tokens_to_values,
    values_to_tokens)
from musecoco_symbolic.backbone import MusecocoBackbone, MusecocoConfig, sinusoid_rows
from musecoco_symbolic.codec import RemiCodec, RemiConfig
from musecoco_symbolic.importer import MusecocoImportConfig, import_musecoco
from musecoco_symbolic.sampling import generate_from_attributes
from musecoco_symbolic.vocab import (
    ATTRIBUTE_KEYS, N_ATTRIBUTE_TOKENS, PREFIX_LENGTH, SEP, SPECIALS, Vocab, attribute_tokens, musecoco_symbols)
from vidmusic_core import BackboneInput, Condition, ConfigError, load_component
from vidmusic_core.testing import check_component_contract


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Three toy clips (.mid + .json ground truth)."""
    from vidmusic_core.data.toy import make_clip
    from vidmusic_core.data.toy_soundfont import fixed_soundfont_path

    out = tmp_path_factory.mktemp("toy")
    truths = [make_clip(out, i, 3, 8.0, 32, 4, 16000, fixed_soundfont_path()) for i in range(3)]
    return out, truths


@pytest.fixture(scope="module")
def codecs():
    return {v: RemiCodec(RemiConfig(vocab=v)) for v in ("remi", "musecoco")}


def grid_score():
    """Notes on the 12-per-quarter grid with representable durations: piano, bass, drums, 4/4 + 3/4."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    s = Score(480)
    s.tempos.append(Tempo(0, qpm=100.0))
    s.time_signatures.append(TimeSignature(0, 4, 4))
    s.time_signatures.append(TimeSignature(4 * 480 * 2, 3, 4))
    piano, bass, drums = Track(program=0), Track(program=33), Track(program=0, is_drum=True)
    for i in range(30):
        t = i * 40 * 5  # every 5/12 quarter, into the 3/4 bars
        piano.notes.append(Note(t, 40 * (1 + i % 11), 60 + i, 80))
        piano.notes.append(Note(t, 480, 52 + i, 80))
        if i % 3 == 0:
            bass.notes.append(Note(t, 960, 36 + i, 90))
        drums.notes.append(Note(t, 120, 36 + 2 * (i % 3), 100))
    s.tracks.extend([piano, bass, drums])
    return s


def notes_of(score):
    return sorted((128 if tr.is_drum else tr.program, int(n.pitch), int(n.time), int(n.duration))
                  for tr in score.tracks for n in tr.notes)


# -- contracts and vocabularies ---------------------------------------------------------------------
def test_contracts():
    codec = check_component_contract("codec", "remi")
    assert codec.frame_rate is None and codec.n_codebooks == 1 and codec.cardinality == len(codec.vocab)
    bb = check_component_contract("backbone", "musecoco")
    assert bb.cardinality == codec.cardinality and bb.eos_id == 2 and bb.sep_id == codec.sep_id
    check_component_contract("backbone", "musecoco", MusecocoConfig(vocab="musecoco", normalize_before=False,
                                                                    learned_pos=True, share_input_output_embed=True))
    check_component_contract("importer", "musecoco")
    check_component_contract("metric", "attribute_control")
    with pytest.raises(ConfigError, match="backbone.vocab"):
        MusecocoBackbone(MusecocoConfig(audio_vocab=1253))  # a musecoco-vocab codec with a remi-vocab backbone


def test_vocabularies():
    sym = musecoco_symbols()
    assert len(sym) == 1249 and len(attribute_tokens()) == 268 and N_ATTRIBUTE_TOKENS == 63 and PREFIX_LENGTH == 64
    assert sym[:3] == ["b-0", "b-1", "o-0"] and sym[980] == SEP and sym[-1] == "TM1_5" and "s-9" in sym
    v = Vocab(sym)
    assert len(v) == 1253 and v.sep == 984 and v.index("nope") == 3
    assert Vocab(v.symbols).digest == v.digest
    back = Vocab.from_dict_txt(_write(v.to_dict_txt()))
    assert back.symbols == v.symbols
    assert remigen.TS_LIST[9] == (4, 4) and remigen.duration_of(12) == 12 and remigen.tempo_id(120.0) == 35


def _write(text, name="dict.txt"):
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp(prefix="musecoco_")) / name
    p.write_text(text)
    return p


# -- codec ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab", ["remi", "musecoco"])
def test_round_trip_exact_on_grid(codecs, vocab):
    codec, score = codecs[vocab], grid_score()
    toks = codec.encode(score)
    assert toks.codes.shape[:2] == (1, 1) and toks.frame_rate is None
    row = codec.rows(toks)[0]
    assert row[N_ATTRIBUTE_TOKENS] == SEP and row[:N_ATTRIBUTE_TOKENS] == values_to_tokens(extract_attributes(score))
    out = codec.decode(toks)[0]
    assert out.ticks_per_quarter == 480
    assert notes_of(out) == notes_of(score)
    assert [(t.numerator, t.denominator) for t in out.time_signatures] == [(4, 4), (3, 4)]
    assert abs(out.tempos[0].qpm - 100.0) < 3.0  # 49 log-scale tempo classes


@pytest.mark.parametrize("vocab", ["remi", "musecoco"])
def test_round_trip_toy_midi(codecs, toy, vocab):
    """Toy MIDI -> tokens -> MIDI keeps every note: pitch, program, onset on the 12-per-quarter grid,
    duration class."""
    codec, (folder, truths) = codecs[vocab], toy
    src = [folder / f"{t['name']}.mid" for t in truths]
    toks = codec.encode(src)
    assert toks.codes.shape[0] == 3 and bool(toks.mask[:, :PREFIX_LENGTH].all())
    for path, out in zip(src, codec.decode(toks)):
        from symusic import Score

        a, b = notes_of(Score(str(path))), notes_of(out)
        assert len(a) == len(b)
        step = 480 / 12
        for (pa, ka, ta, da), (pb, kb, tb, db) in zip(sorted(a, key=lambda n: (round(n[2] / step), n[0], n[1])),
                                                      sorted(b, key=lambda n: (round(n[2] / step), n[0], n[1]))):
            assert (pa, ka) == (pb, kb) and abs(ta - tb) <= step / 2
            if vocab == "musecoco":
                assert remigen.duration_id(round(da / step)) == remigen.duration_id(round(db / step))
            else:
                assert abs(da - db) <= step / 2 or (da >= 4 * 480 and abs(da - db) <= 60)


@pytest.mark.parametrize("vocab", ["remi", "musecoco"])
def test_truncated_tail_is_repaired(codecs, vocab):
    codec = codecs[vocab]
    toks = codec.encode(grid_score())
    full = codec.rows(toks)[0]
    everything = Counter(notes_of(codec.decode(toks)[0]))
    counts = []
    for cut in range(PREFIX_LENGTH + 5, len(full), 7):
        got = Counter(notes_of(codec.decode([full[:cut]])[0]))
        assert not got - everything  # a cut sequence decodes to some of the notes, never to others
        counts.append(sum(got.values()))
    assert counts[-1] == max(counts) > 0
    tail_rule = remigen.repair
    assert tail_rule(["s-9", "t-30", "o-0", "i-0", "p-60", "d-12", "v-20", "o-12"])[-1] == "b-1"
    assert tail_rule(["o-0", "i-0", "p-60", "d-12", "v-20", "o-12", "i-0", "p-62", "d-12"]) == \
        ["o-0", "i-0", "p-60", "d-12", "v-20", "b-1"]
    assert tail_rule(["o-0", "i-0", "p-60", "d-12", "v-20"])[-1] == "b-1"


def test_render_and_write_midi(codecs, tmp_path):
    codec = codecs["remi"]
    toks = codec.encode([grid_score(), grid_score()])
    audio = codec.render(toks, sample_rate=16000)
    assert audio.shape[:2] == (2, 1) and audio.dtype == torch.float32
    assert 0.5 < float(audio.abs().max()) <= 0.9 and audio.shape[-1] > 16000 * 4
    assert codec.render(grid_score(), seconds=1.5).shape == (1, 1, 48000)
    path = codec.write_midi(toks, tmp_path / "x.mid")
    assert notes_of(codec.decode(codec.encode(path))[0]) == notes_of(grid_score())


# -- attributes ---------------------------------------------------------------------------------------
def test_attributes_match_toy_truth(toy):
    folder, truths = toy
    for t in truths:
        v = extract_attributes(folder / f"{t['name']}.mid")
        bpm = t["tempo_bpm"]
        assert v["T1s1"] == (2 if bpm >= 120 else 0 if bpm <= 76 else 1)
        assert v["K1"] == (0 if t["key"]["mode"] == "major" else 1)
        assert measure(folder / f"{t['name']}.mid").key == (t["key"]["tonic"], t["key"]["mode"])
        families = {FAMILY_OF_PROGRAM[p] for p in t["programs"]} | {FAMILY_OF_PROGRAM[128]}  # + drums
        assert {i for i, s in enumerate(v["I1s2"]) if s == 0} == families
        assert v["TS1s1"] == 0 and v["TM1"] == 0  # 4/4, under 15 s
        bars = math.ceil((t["duration"] + 60 / bpm) / (4 * 60 / bpm))
        assert v["B1s1"] in {(bars - 1) // 4, (bars - 2) // 4}
        assert v["EM1"] == 4 and v["S4"] == [2] * 22  # subjective keys: NA
        assert tokens_to_values(values_to_tokens(v)) == v


def test_attribute_control_metric(toy, codecs):
    from musecoco_symbolic.metric import AttributeControlMetric

    folder, truths = toy
    mids = [folder / f"{t['name']}.mid" for t in truths]
    prompts = codecs["remi"].attributes_of(codecs["remi"].encode(mids))
    items = [{"midi": m, "reference": t, "attributes": p} for m, t, p in zip(mids, truths, prompts)]
    scores = AttributeControlMetric().compute(items)
    assert scores["attr_asa"] == 1.0 and scores["attr_ref_asa"] == 1.0 and scores["attr_ref_acc_T1s1"] == 1.0
    shuffled = [dict(it, midi=mids[(i + 1) % 3]) for i, it in enumerate(items)]
    assert AttributeControlMetric().compute(shuffled)["attr_ref_asa"] < 1.0


def test_step_mask_and_accuracy(toy):
    folder, truths = toy
    v = extract_attributes(folder / f"{truths[0]['name']}.mid")
    kept = []
    for seed in range(40):
        m = step_mask(v, np.random.default_rng(seed))
        assert m == step_mask(v, np.random.default_rng(seed))
        for k in ATTRIBUTE_KEYS:
            if k.multi:
                for s_in, s_out in zip(v[k.name], m[k.name]):
                    assert s_out == k.na or s_out == s_in  # revealed slots keep their value
            else:
                assert m[k.name] in (v[k.name], k.na)
        assert m["EM1"] == 4 and m["S4"] == [2] * 22
        kept.append(sum(m[k.name] != (na_values()[k.name]) for k in ATTRIBUTE_KEYS))
    assert max(kept) > 4 and sum(n >= 1 for n in kept) > 30  # 0 when only unknown keys were drawn
    assert attribute_accuracy([v], [v])["asa"] == 1.0
    other = dict(v, T1s1=(v["T1s1"] + 1) % 3)
    acc = attribute_accuracy([v, v], [v, other])
    assert acc["acc_T1s1"] == 0.5 and 0.5 < acc["asa"] < 1.0


# -- backbone -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [0, 16])
def test_linear_attention_training_equals_step_by_step(chunk):
    torch.manual_seed(0)
    bb = MusecocoBackbone(MusecocoConfig(chunk_size=chunk)).eval()
    B, S, P = 2, 120, 3
    ids = torch.randint(4, bb.cardinality, (B, 1, S))
    x, mask = bb.embed(ids), torch.ones(B, S, dtype=torch.bool)
    mask[1, 0] = False  # a left-padded row
    full = bb(BackboneInput(x, mask, music_start=P)).logits  # [B, 1, S, V]
    cache = bb.new_cache()
    steps = [bb(BackboneInput(x[:, :P], mask[:, :P], music_start=P), cache).logits]
    size = None
    for t in range(P, S):
        steps.append(bb(BackboneInput(x[:, t:t + 1], mask[:, t:t + 1]), cache, logits_positions="last").logits)
        size = size or cache.nbytes()
        assert cache.nbytes() == size  # O(1) state
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=0)
    pos = bb.position_index(BackboneInput(x, mask, music_start=P))
    assert bool((pos[:, :P + 63] < 0).all()) and pos[0, P + 63] == 0 and pos[0, -1] == S - 1 - (P + 63)


def test_loss_only_on_music_and_attribute_dropout(codecs):
    from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout

    codec = codecs["remi"]
    torch.manual_seed(0)
    bb = MusecocoBackbone()
    layout = PrefixLayout(PrefixConfig(cond_dim=8, width=bb.width))
    music = codec.encode([grid_score(), grid_score()])
    cond = Condition(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.arange(3.0).repeat(2, 1))
    inp = layout(bb, cond, music)
    bb.eval()
    with torch.no_grad():
        logits = bb(inp).logits[:, 0]  # [B, S, V]
        lab = inp.labels[:, 0]
        first_music = inp.music_start + PREFIX_LENGTH - 1  # position of <sep>: predicts the first music token
        keep = lab != -1
        keep[:, :first_music] = False
        want = F.cross_entropy(logits[keep], lab[keep])
        torch.testing.assert_close(bb.loss(inp), want)
        bb.train()
        torch.manual_seed(1)
        dropped = bb.drop_attributes(inp, np.random.default_rng(0))
        diff = (dropped.inputs_embeds - inp.inputs_embeds).abs().sum(-1)  # [B, S]
        ms = inp.music_start
        assert float(diff[:, :ms].sum()) == 0 and float(diff[:, ms + 63:].sum()) == 0 and float(diff.sum()) > 0
    loss = bb.loss(inp)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and bb.decoder.embed_tokens.weight.grad is not None


def test_prefix_layout_generation_to_midi(codecs, tmp_path):
    from vidmusic_core.sampling import SamplingConfig, generate_tokens
    from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout

    codec = codecs["remi"]
    torch.manual_seed(0)
    bb = MusecocoBackbone().eval()
    layout = PrefixLayout(PrefixConfig(cond_dim=8, width=bb.width)).eval()
    cond = Condition(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.arange(3.0).repeat(2, 1))
    toks = generate_tokens(layout, bb, cond, 80, [1, 2], SamplingConfig(top_k=15))
    assert toks.codes.shape == (2, 1, 80)
    again = generate_tokens(layout, bb, cond, 80, [1, 2], SamplingConfig(top_k=15))
    assert torch.equal(toks.codes, again.codes)
    scores = codec.decode(toks)  # untrained: any token soup decodes without error
    assert len(scores) == 2 and codec.render(toks, seconds=0.5).shape == (2, 1, 16000)
    codec.write_midi(scores[0], tmp_path / "gen.mid")


def test_constrain_logits_keeps_the_grammar():
    bb = MusecocoBackbone()
    logits = torch.zeros(2, 1, bb.cardinality)
    allowed = lambda c: {bb.vocab[i] for i in torch.nonzero(bb.constrain_logits(logits, c)[0, 0] > -1)[:, 0].tolist()}  # noqa: E731
    assert allowed(0) == {"I1s2_0_0", "I1s2_0_1", "I1s2_0_2"} and allowed(28) == {f"I4_{i}" for i in range(29)}
    assert allowed(62) == {f"TM1_{i}" for i in range(6)} and allowed(63) == {SEP}
    music = allowed(64)
    assert allowed(500) == music and "</s>" in music and "Bar_None" in music
    assert not music & (set(attribute_tokens()) | {SEP, "<s>", "<pad>", "<unk>"})


def test_generate_from_attributes(codecs):
    torch.manual_seed(0)
    bb = MusecocoBackbone(MusecocoConfig(vocab="musecoco")).eval()
    values = na_values()
    values.update(T1s1=2, K1=0)
    out = generate_from_attributes(bb, [values, values_to_tokens(values)], max_tokens=40, min_tokens=40, seeds=[0, 1])
    assert [len(o) for o in out] == [40, 40]
    banned = set(bb.vocab.encode(attribute_tokens() + [SEP] + list(SPECIALS)))
    assert not banned & set(out[0] + out[1])
    assert generate_from_attributes(bb, [values], max_tokens=40, min_tokens=40, seeds=[0])[0] == out[0]
    codecs["musecoco"].decode([out[0]])


# -- importer -----------------------------------------------------------------------------------------
def fairseq_state(V, D, H, F_, L, seed=0):
    """A fairseq ``LinearTransformerLanguageModel.state_dict()`` with upstream names (pre-LN)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.3 * torch.randn(*s, generator=g)  # noqa: E731
    dk = D // H
    st = {"decoder.version": torch.tensor([3.0]), "decoder.embed_tokens.weight": r(V, D),
          "decoder.embed_positions._float_tensor": torch.zeros(1)}
    for i in range(L):
        p = f"decoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj"):
            st[p + f"self_attn.{n}.weight"], st[p + f"self_attn.{n}.bias"] = r(H * dk, D), r(H * dk)
        st[p + "self_attn.out_proj.weight"], st[p + "self_attn.out_proj.bias"] = r(D, H * dk), r(D)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            st[p + n + ".weight"], st[p + n + ".bias"] = 1 + r(D), r(D)
        st[p + "fc1.weight"], st[p + "fc1.bias"] = r(F_, D), r(F_)
        st[p + "fc2.weight"], st[p + "fc2.bias"] = r(D, F_), r(D)
    st["decoder.layer_norm.weight"], st["decoder.layer_norm.bias"] = 1 + r(D), r(D)
    st["decoder.output_projection.weight"] = r(V, D)
    return st


def fairseq_reference(st, ids, sep_pos, H, eps=1e-6):
    """Upstream's forward, written out: sqrt(D)-scaled embeddings + fairseq sinusoids (rows pad+1.. from
    ``sep_pos``, zero before), pre-LN layers with causal linear attention as an explicit masked
    O(S^2) product, final LayerNorm, output projection. ``ids [B, S]`` in the checkpoint's ids."""
    V, D = st["decoder.embed_tokens.weight"].shape
    half = D // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    table = torch.arange(ids.shape[1] + 2, dtype=torch.float)[:, None] * freq[None]
    table = torch.cat([table.sin(), table.cos()], dim=1)
    table[1] = 0
    rows = torch.clamp(torch.arange(ids.shape[1]) - sep_pos + 2, min=1)
    x = math.sqrt(D) * st["decoder.embed_tokens.weight"][ids] + table[rows]
    ln = lambda h, n: F.layer_norm(h, (D,), st[n + ".weight"], st[n + ".bias"])  # noqa: E731
    lin = lambda h, n: F.linear(h, st[n + ".weight"], st.get(n + ".bias"))  # noqa: E731
    L = 1 + max(int(k.split(".")[2]) for k in st if k.startswith("decoder.layers."))
    S = ids.shape[1]
    for i in range(L):
        p = f"decoder.layers.{i}."
        h = ln(x, p + "self_attn_layer_norm")
        q, k, v = (lin(h, p + f"self_attn.{n}").view(*h.shape[:2], H, -1).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        a = (q @ k.transpose(-1, -2)) * torch.ones(S, S).tril()
        o = (a @ v) / (a.sum(-1, keepdim=True) + eps)
        x = x + lin(o.transpose(1, 2).reshape(*h.shape[:2], -1), p + "self_attn.out_proj")
        x = x + lin(F.gelu(lin(ln(x, p + "final_layer_norm"), p + "fc1")), p + "fc2")
    return lin(ln(x, "decoder.layer_norm"), "decoder.output_projection")  # [B, S, V]


def test_import_tiny_fairseq_checkpoint(tmp_path):
    ours = Vocab(musecoco_symbols())
    theirs_symbols = list(ours.symbols[4:])
    theirs_symbols[0], theirs_symbols[1] = theirs_symbols[1], theirs_symbols[0]  # b-1 before b-0: rows must move
    (tmp_path / "dict.txt").write_text("".join(f"{s} 1\n" for s in theirs_symbols))
    theirs = Vocab(list(SPECIALS) + theirs_symbols)
    V, D, H, F_, L = len(theirs), 24, 5, 40, 2  # d_k 4: q/k/v width 20 != 24, as upstream xl's 1020 != 1024
    st = fairseq_state(V, D, H, F_, L)
    args = argparse.Namespace(arch="linear_transformer_lm_debug", task="language_modeling_control",
                              decoder_layers=L, decoder_embed_dim=D, decoder_attention_heads=H, decoder_ffn_embed_dim=F_,
                              decoder_normalize_before=True, no_decoder_final_norm=False, decoder_learned_pos=False,
                              share_decoder_input_output_embed=False, no_scale_embedding=False, activation_fn="gelu",
                              dropout=0.1, command_mask_prob=-1.0, truncated_length=5120)
    ckpt = {"args": args, "model": st,
            "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "FairseqAdam",
                                   "lr_scheduler_state": {"best": 1.5}, "num_updates": 280000}],
            "extra_state": {"train_iterator": {"epoch": 2, "iterations_in_epoch": 7, "shuffle": True}, "val_loss": 1.5},
            "last_optimizer_state": {"state": {0: {"step": 3, "exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 2e-4}]}}
    torch.save(ckpt, tmp_path / "checkpoint_2_280000.pt")
    report = import_musecoco(tmp_path / "checkpoint_2_280000.pt", tmp_path / "out", MusecocoImportConfig())
    assert report.ok and report.missing == [] and report.unexpected == [] and report.shape_mismatches == []
    assert any("reordered" in n for n in report.notes)
    model = load_component(tmp_path / "out", expected_kind="backbone").eval()
    assert model.cfg.heads == H and model.cfg.vocab == "musecoco" and model.cardinality == 1253

    values = na_values()
    values.update(T1s1=1, K1=0, TS1s1=0)
    tokens = ["</s>"] + values_to_tokens(values) + [SEP] + ["s-9", "t-30", "o-0", "i-0", "p-60", "d-12", "v-20", "b-1"]
    their_ids = torch.tensor([theirs.encode(tokens)])
    sep = tokens.index(SEP)
    want = fairseq_reference(st, their_ids, sep, H)  # [1, S, V] in their ids
    our_ids = torch.tensor([[ours.encode(tokens)]])
    with torch.no_grad():
        got = model(BackboneInput(model.embed(our_ids), torch.ones(1, len(tokens), dtype=torch.bool), music_start=1)).logits
    order = torch.tensor([theirs.index(s) for s in ours.symbols])
    torch.testing.assert_close(got[:, 0], want[..., order], atol=2e-5, rtol=1e-5)

    bad = dict(st)
    bad.pop("decoder.layers.1.fc2.bias")
    bad["decoder.layers.0.extra.weight"] = torch.zeros(1)
    torch.save({"args": args, "model": bad}, tmp_path / "bad.pt")
    rep = import_musecoco(tmp_path / "bad.pt", tmp_path / "bad_out", MusecocoImportConfig())
    assert rep.missing == ["decoder.layers.1.fc2.bias"] and rep.unexpected == ["decoder.layers.0.extra.weight"]
    assert not (tmp_path / "bad_out" / "model.safetensors").exists()
    torch.save({"args": args, "model": st, "extra": math.sqrt}, tmp_path / "unsafe.pt")  # a function: not allow-listed
    with pytest.raises(Exception, match="weights_only"):
        import_musecoco(tmp_path / "unsafe.pt", tmp_path / "x", MusecocoImportConfig())


def test_import_is_an_attribute_to_music_model_directory(tmp_path):
    """The import is a whole model directory: the ``musecoco_prompt`` layout feeds upstream's ``</s>`` first (logits =
    the fairseq forward), the core's generation loop decodes what upstream-style ``generate_from_attributes``
    decodes (greedy), and ``vidmusic generate --model`` works on the moved directory."""
    import shutil

    from cli_helpers import run_vidmusic
    import soundfile as sf

    import vidmusic
    from vidmusic_core import GenerationRequest, SamplingConfig
    from musecoco_symbolic.policy import MIN_MUSIC_TOKENS
    from vidmusic_core.video import write_video

    ours = Vocab(musecoco_symbols())
    D, H, F_, L = 24, 4, 40, 2
    st = fairseq_state(len(ours), D, H, F_, L, seed=3)
    args = argparse.Namespace(decoder_layers=L, decoder_embed_dim=D, decoder_attention_heads=H, decoder_ffn_embed_dim=F_,
                              decoder_normalize_before=True, no_decoder_final_norm=False, activation_fn="gelu")
    torch.save({"args": args, "model": st}, tmp_path / "attribute2music.pt")
    res = run_vidmusic("import", "musecoco", str(tmp_path / "attribute2music.pt"), "-o", str(tmp_path / "out"),
                       timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "whole model directory (attributes -> music" in res.stdout + res.stderr
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "out"), str(moved))
    pipe = vidmusic.load(moved, device="cpu")
    assert pipe.names == {"encoder": "none", "layout": "musecoco_prompt", "backbone": "musecoco", "codec": "remi"}
    bb, layout = pipe.model.backbone, pipe.model.layout

    values = na_values()
    values.update(T1s1=1, K1=0)
    tokens = values_to_tokens(values) + [SEP] + ["s-9", "t-30", "o-0", "i-0", "p-60", "d-12", "v-20", "b-1"]
    with torch.no_grad():
        cond = pipe.model.encoder.forward_features({}, None)
        prompt = layout.prompt(bb, cond)
        assert prompt.inputs_embeds.shape == (1, 1, D) and prompt.music_start == 1
        x = torch.cat([prompt.inputs_embeds, bb.embed(torch.tensor([[ours.encode(tokens)]]))], dim=1)
        got = bb(BackboneInput(x, torch.ones(1, x.shape[1], dtype=torch.bool), music_start=1)).logits[:, 0]
    want = fairseq_reference(st, torch.tensor([ours.encode(["</s>"] + tokens)]), len(tokens) - 8, H)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)

    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "clip.mp4", rng.integers(0, 255, (48, 32, 32, 3)).astype(np.uint8), 12)
    budget = 140  # prefix (63 attributes + <sep>) + 76 music tokens
    out = pipe.generate([video], tmp_path / "gen", progress=False,
                        overrides=["generate.top_k=1", f"generate.max_tokens={budget}", "generate.attributes={T1s1: 1, K1: 0}"])
    assert out[0].meta["attributes"]["T1s1"] == 1 and out[0].meta["attributes"]["K1"] == 0
    # the core's one generation path (codec rules, then the backbone's loop), greedy, against upstream's decoding
    request = GenerationRequest(cond, budget, [0], SamplingConfig(top_k=1), seconds=torch.tensor([4.0]),
                                options={"attributes": dict(values), "max_tokens": budget})  # every key set
    request = pipe.codec.plan_request(request, layout, [video], [(0.0, 4.0)])
    row = bb.generate(layout, request, pipe.codec).codes[0, 0].tolist()
    assert row[:PREFIX_LENGTH] == ours.encode(values_to_tokens(values) + [SEP])
    upstream = generate_from_attributes(bb, [values], max_tokens=budget - PREFIX_LENGTH, min_tokens=MIN_MUSIC_TOKENS,
                                        top_k=1, seeds=[0])[0]
    music = row[PREFIX_LENGTH:]
    music = music[:music.index(bb.eos_id)] if bb.eos_id in music else music
    assert len(upstream) >= MIN_MUSIC_TOKENS and music == upstream

    res = run_vidmusic("generate", str(video), "--model", str(moved), "-o", str(tmp_path / "cli_gen"),
                       "--set", "generate.max_tokens=140", "--set", "generate.attributes={T1s1: 1}")
    assert res.returncode == 0, res.stderr[-3000:]
    wav, sr = sf.read(str(tmp_path / "cli_gen" / "clip.wav"))
    assert (tmp_path / "cli_gen" / "clip.mid").is_file() and np.isfinite(wav).all() and abs(len(wav) / sr - 4.0) < 0.05


def test_sinusoids_match_fairseq_formula():
    rows = torch.tensor([1, 2, 3, 50])
    emb = sinusoid_rows(rows, 10)
    assert float(emb[0].abs().sum()) == 0.0  # padding row
    half = 5
    f = math.exp(-math.log(10000) / (half - 1))
    assert abs(float(emb[1, 1]) - math.sin(2 * f)) < 1e-6 and abs(float(emb[3, half]) - math.cos(50.0)) < 1e-6
