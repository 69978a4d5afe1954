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

from inspire_llm.backbone import CACHE_KWARG, InspireBackbone, InspireConfig, SinusoidalEmbedding
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
    assert CACHE_KWARG in params
    if "cache" in params:
        assert CACHE_KWARG == "cache"
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
    from vidmusic_core import api, load_component
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
    for d in (moved, copied):
        m = load_component(d, expected_kind="backbone")
        assert isinstance(m.tokenizer, QwenTokenizer) and Path(m.cfg.qwen_dir) == d / "qwen"
        wav, = api.generate_from_checkpoint(d, [video], tmp_path / f"gen_{d.name}", text=["a calm piano piece"],
                                            progress=False)
        audio, sr = sf.read(str(wav))
        assert sr == 24000 and abs(len(audio) / sr - 1.0) < 0.02 and np.isfinite(audio).all()
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
