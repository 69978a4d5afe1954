"""The `inspire` backbone against values computed the way upstream InspireMusic computes them
(FunAudioLLM/InspireMusic ``inspiremusic/llm/llm.py`` at 0aefb55), not against our own code."""
from __future__ import annotations

import shutil
import warnings
from math import log
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from inspire_llm.backbone import cache_kwarg, InspireBackbone, InspireConfig, SinusoidalEmbedding
from vidmusic_core import BackboneInput


def upstream_time_embedding(x: Tensor, dim: int) -> Tensor:
    """``SinusoidalEmbedding.forward`` of upstream llm.py, verbatim but for einops' ``rearrange``
    (``"i -> i 1"`` / ``"j -> 1 j"``), written as indexing."""
    device, half_dim = x.device, dim // 2
    emb = torch.tensor(log(10000) / (half_dim - 1), device=device)
    emb = torch.exp(torch.arange(half_dim, device=device) * -emb)
    emb = x[:, None] * emb[None, :]
    return torch.cat((emb.sin(), emb.cos()), dim=-1).to(torch.float16)


def _seconds() -> list[float]:
    """0-300 s (upstream resets time_start > 300 to 0): whole seconds and a fine irregular grid."""
    return sorted(set(np.arange(0, 301, 1.0).tolist() + np.round(np.arange(0, 300, 0.173), 3).tolist()))


def test_time_rows_equal_upstream() -> None:
    """Time rows equal upstream's bit for bit over 0-300 s at InspireMusic-Base's width (896) and the tiny one:
    upstream's CLIs pass float64 seconds (``torch.tensor([time_start], dtype=torch.float64)``), and the module
    given float32 seconds equals upstream given float32 seconds too."""
    secs = _seconds()
    for D in (896, 64):
        torch.manual_seed(0)
        m = InspireBackbone(InspireConfig(hidden=D, heads=D // 64 if D > 64 else 4, kv_heads=2, layers=1,
                                          intermediate=64, text_vocab=64)).eval()
        want = torch.cat([upstream_time_embedding(torch.tensor([t], dtype=torch.float64), D) for t in secs])
        got = m.embed_time(torch.tensor([secs], dtype=torch.float64))[0]  # [S, D], the model's dtype
        assert got.dtype == torch.float32 and torch.equal(got, want.float()), (got - want.float()).abs().max()
        t32 = torch.tensor(secs, dtype=torch.float32)
        assert torch.equal(SinusoidalEmbedding(D)(t32), upstream_time_embedding(t32, D))
        # what the backbone did before (frequencies in float64) is measurably different after rounding
        half = D // 2
        f64 = torch.exp(torch.arange(half, dtype=torch.float64) * -(log(1e4) / (half - 1)))
        a = torch.tensor(secs, dtype=torch.float64)[:, None] * f64
        old = torch.cat([a.sin(), a.cos()], -1).to(torch.float16)
        if D == 896:
            assert (old.float() - want.float()).abs().max() > 1e-4


def test_cache_passed_with_current_transformers_api() -> None:
    """The cached forward passes the KV cache under the name this transformers takes (``cache`` from 5.25 on),
    with no deprecation warning, and the cache really is used (a cached continuation equals the full forward)."""
    import inspect

    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

    params = inspect.signature(Qwen2Model.forward).parameters
    assert cache_kwarg() in params
    if "cache" in params:
        assert cache_kwarg() == "cache"
    torch.manual_seed(0)
    m = InspireBackbone(InspireConfig()).eval()
    x = torch.randn(2, 9, m.width)
    ones = torch.ones(2, 9, dtype=torch.bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning / DeprecationWarning from transformers fails the test
        with torch.inference_mode():
            full = m(BackboneInput(x, ones)).logits
            cache = m.new_cache()
            a = m(BackboneInput(x[:, :5], ones[:, :5]), cache).logits
            assert cache.get_seq_length() == 5
            b = m(BackboneInput(x[:, 5:], ones[:, 5:]), cache).logits  # 4 new positions: the transformers forward
    assert cache.get_seq_length() == 9
    torch.testing.assert_close(torch.cat([a, b], dim=2), full, atol=1e-5, rtol=1e-5)


def test_moved_imported_directory_still_generates(tmp_path: Path, monkeypatch) -> None:
    """An imported InspireMusic directory names only relative paths (``qwen_dir: qwen``): moved elsewhere, with
    the source and the old location gone, it loads with the copied Qwen tokenizer and generates; a copy too."""
    import os

    import soundfile as sf

    from inspire_llm.importer import import_inspiremusic
    from inspire_llm.tokenizer import QwenTokenizer
    from test_inspire import upstream_llm_pt, write_model_dir
    from test_wavtokenizer import write_upstream_dir
    from vidmusic_core import load_component
    from vidmusic_core import VidMusicPipeline
    from vidmusic_core.video import write_video

    src = write_model_dir(tmp_path / "src" / "InspireMusic-Tiny", upstream_llm_pt())
    write_upstream_dir(src / "wavtokenizer")
    assert import_inspiremusic(src, tmp_path / "a" / "imported").ok
    shutil.rmtree(tmp_path / "src")
    for yaml_file in (tmp_path / "a").rglob("*.yaml"):
        assert str(tmp_path) not in yaml_file.read_text(), yaml_file  # no absolute path anywhere
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "a" / "imported"), moved)
    shutil.rmtree(tmp_path / "a")
    copied = tmp_path / "copy"
    shutil.copytree(moved, copied)
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative paths must not depend on the working directory
    video = tmp_path / "clip.mp4"
    write_video(video, (np.random.default_rng(0).random((12, 16, 16, 3)) * 255).astype(np.uint8), 12)  # 1 s
    made = []
    for d in (moved, copied):
        m = load_component(d, expected_kind="backbone")
        assert isinstance(m.tokenizer, QwenTokenizer) and Path(m.cfg.qwen_dir) == d / "qwen"
        # the import is a model directory (encoder none, text-only prefix layout, upstream's sampling in
        # model_index.yaml); moved and copied, it makes the same music
        pipe = VidMusicPipeline.from_dir(d, device="cpu")
        assert (pipe.names["encoder"], pipe.settings().top_k, pipe.settings().min_length) == ("none", 350, 0.9)
        res, = pipe.generate([video], tmp_path / f"model_{d.name}", text=["a calm piano piece"], progress=False)
        audio, sr = sf.read(str(res.wav))
        assert sr == 24000 and abs(len(audio) / sr - 1.0) < 0.02 and np.isfinite(audio).all()
        made.append(audio)
    np.testing.assert_array_equal(made[0], made[1])
    assert os.path.exists(moved) and not (tmp_path / "a").exists()


def test_musecoco_import_has_no_absolute_paths(tmp_path: Path) -> None:
    """The other importer whose output is a directory of files: its config.yaml names no path either."""
    from test_musecoco_layer_order import _args, fairseq_state

    from musecoco_symbolic.importer import import_musecoco

    torch.save({"args": _args(True, False), "model": fairseq_state(True)}, tmp_path / "ckpt.pt")
    assert import_musecoco(tmp_path / "ckpt.pt", tmp_path / "out").ok
    shutil.move(str(tmp_path / "out"), tmp_path / "moved")
    assert str(tmp_path) not in (tmp_path / "moved" / "config.yaml").read_text()
    from vidmusic_core import load_component

    assert load_component(tmp_path / "moved", expected_kind="backbone").cardinality == 1253


# -- the text-to-music prompt (llm.py ``inference``, task text-to-music) --------------------------------
def upstream_prompt(state: dict, text_ids: Tensor, time_start: float, time_end: float, chorus: int
                    ) -> tuple[Tensor, Tensor]:
    """``lm_input`` and ``lm_cf_input`` of upstream ``LLM.inference`` for text-to-music, transcribed: ``[sos,
    time_start, time_end, chorus, text, task_id]`` and, for CFG, ``[sos, rand, rand, rand, text(zeros), task_id]``
    (the seconds as its CLI builds them: ``torch.tensor([t], dtype=torch.float64)``)."""
    emb = state["text_embedding.weight"]
    D = emb.shape[1]
    text = emb[text_ids]  # [1, L, D]
    text_cfg = emb[text_ids.new_zeros(text_ids.shape)]
    ts = upstream_time_embedding(torch.tensor([time_start], dtype=torch.float64), D).reshape(1, 1, -1)
    te = upstream_time_embedding(torch.tensor([time_end], dtype=torch.float64), D).reshape(1, 1, -1)
    ch = state["chorus_embedding.weight"][torch.tensor([chorus])].reshape(1, 1, -1)
    sos = state["llm_embedding.weight"][0].reshape(1, 1, -1)
    task = state["llm_embedding.weight"][1].reshape(1, 1, -1)
    lm_input = torch.concat([sos, ts, te, ch, text, task], dim=1)
    lm_cf_input = torch.concat([sos, torch.rand_like(ts), torch.rand_like(te), torch.rand_like(ch), text_cfg, task], dim=1)
    return lm_input, lm_cf_input


def test_text_to_music_prompt_and_cfg_null_equal_upstream(tmp_path: Path) -> None:
    """An imported llm.pt prompted through the prefix layout (as ``vidmusic generate --model`` on an import does) gives
    upstream's ``[sos, t_start, t_end, chorus, text, task]`` row for row (bit-equal), with upstream's default
    structure ``intro``; ``cfg_null=True`` gives its null branch: the same sos/task rows, zero text ids over the
    conditional text's length, and U[0, 1) time / structure rows (upstream: ``torch.rand_like``)."""
    from inspire_llm.importer import import_inspiremusic
    from test_inspire import upstream_llm_pt, write_model_dir
    from vidmusic_core import Condition, load_component
    from vidmusic_core.layouts.prefix import PrefixLayout

    state = upstream_llm_pt()
    assert import_inspiremusic(write_model_dir(tmp_path / "m", state), tmp_path / "imp").ok
    bb = load_component(tmp_path / "imp", expected_kind="backbone").eval()
    layout = PrefixLayout(PrefixLayout.Config(text_only=True, cond_dim=1, width=bb.width, own_specials=False))
    assert layout.cfg.structure == "intro"
    caption = "upbeat piano music with drums"
    ids = torch.tensor([bb.tokenizer.encode(caption)])
    none = Condition(torch.zeros(2, 1, 1), torch.ones(2, 1, dtype=torch.bool), torch.zeros(2, 1))
    with torch.inference_mode():
        ours = layout.prompt(bb, none, [caption, ""], torch.tensor([30.0, 30.0]), cfg_null=True)
    want, want_null = upstream_prompt(state, ids, 0.0, 30.0, chorus=0)
    assert ours.inputs_embeds.shape == (2, want.shape[1], bb.width) and bool(ours.attention_mask.all())
    assert torch.equal(ours.inputs_embeds[0], want[0].float())
    null = ours.inputs_embeds[1]
    L = ids.shape[1]
    for i in (0, 4 + L):  # sos, task
        assert torch.equal(null[i], want_null[0, i])
    assert torch.equal(null[4:4 + L], want_null[0, 4:4 + L])  # zero text ids
    rand = null[1:4]
    assert bool(((rand >= 0) & (rand < 1)).all()) and not torch.equal(rand, want[0, 1:4].float())
    with torch.inference_mode():  # deterministic: the same null rows every call
        again = layout.prompt(bb, none, [caption, ""], torch.tensor([30.0, 30.0]), cfg_null=True).inputs_embeds[1]
        one = Condition(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1))
        plain = layout.prompt(bb, one, [caption], torch.tensor([30.0])).inputs_embeds  # no CFG: the row alone
    assert torch.equal(again, null) and torch.equal(plain[0], ours.inputs_embeds[0])


def test_structure_label_from_generate_config_and_errors() -> None:
    """``generate.structure`` sets the prefix layout's label; the backbone maps it with upstream's training map
    and names the valid labels for an unknown one."""
    import pytest

    from inspire_llm.backbone import STRUCTURE_LABELS
    from vidmusic_core import ConfigError
    from vidmusic_core.config import compose
    from vidmusic_core.model import build_model

    from vidmusic_core import MusicCodec

    class Codec(MusicCodec):  # the sizes build_model wires from; never encodes or decodes
        n_codebooks, cardinality, delays, frame_rate, sample_rate = 1, 32, (0,), 75.0, 24000

        def encode(self, audio):
            raise NotImplementedError

        def decode(self, music):
            raise NotImplementedError

    cfg = compose(sugar={"encoder": "clip", "layout": "prefix", "backbone": "inspire"}, base=None,
                  overrides=["encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
                             "generate.structure=verse"])
    m = build_model(cfg, Codec(), seed=0)
    assert m.layout.cfg.structure == "verse"
    row = m.backbone.embed_structure(["verse", "outro"])
    assert row.shape == (2, 1, m.backbone.width)
    assert torch.equal(row[0, 0], m.backbone.chorus_embedding.weight[STRUCTURE_LABELS["verse"]])
    with pytest.raises(ConfigError, match="bridge.*intro"):
        m.backbone.embed_structure(["bridge"])
