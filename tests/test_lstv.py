"""Tests of the ``vidmuse_lstv`` plugin: the ``lstv`` encoder and the ``vidmuse`` checkpoint importer.

The importer test writes a tiny VidMuse-style ``state_dict.bin`` whose key names and shapes are spelled
out here from upstream (ZeyueT/VidMuse @1e9296e, ``audiocraft/models/lm.py``, ``transformer_module.py``;
transformers-4 CLIP names), and checks our encoder against an independent re-statement of upstream's
``compute_video_emb`` evaluated on the raw checkpoint tensors.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import run_vidmusic
from safetensors.torch import load_file

from vidmusic_core import (
    CheckpointError,
    ConfigError,
    Frames,
    ShapeError,
    get_component,
    load_component,
)
from vidmusic_core.testing import check_component_contract
from vidmuse_lstv.encoder import LSTVConfig, LSTVEncoder
from vidmuse_lstv.importer import VidmuseImportConfig

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
# tiny sizes: CLIP width 48 (3 cross-attention heads need width % 3 == 0), 2 layers, 64 px / 32 px patches
C, CLIP_LAYERS, CLIP_HEADS, CLIP_MLP, IMG, PATCH, PROJ = 48, 2, 2, 96, 64, 32, 16
P = (IMG // PATCH) ** 2 + 1
HEADS, DIM_HEAD, DEPTH, D = 2, 64, 2, 64


def tiny_cfg(**kw: object) -> LSTVConfig:
    base = dict(clip_hidden=C, clip_layers=CLIP_LAYERS, clip_heads=CLIP_HEADS, clip_mlp=CLIP_MLP, clip_image_size=IMG,
                clip_patch_size=PATCH, clip_projection_dim=PROJ, heads=HEADS, dim_head=DIM_HEAD, depth=DEPTH, out_dim=D)
    base.update(kw)
    return LSTVConfig(**base)  # type: ignore[arg-type]


def make_frames(B: int, T: int, G: int, size: int, seed: int = 0, black: bool = False) -> Frames:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda n: torch.randint(0, 256, (B, n, size, size, 3), generator=g, dtype=torch.uint8)  # noqa: E731
    local, glob = (torch.zeros(B, T, size, size, 3, dtype=torch.uint8), torch.zeros(B, G, size, size, 3, dtype=torch.uint8)) \
        if black else (rnd(T), rnd(G))
    return Frames(local, (torch.arange(T, dtype=torch.float32) / 2).expand(B, T), global_frames=glob,
                  global_times=torch.linspace(0, 10, G).expand(B, G))


# --------------------------------------------------------------------------------------------------
# A VidMuse-style checkpoint, spelled out from upstream
# --------------------------------------------------------------------------------------------------
def upstream_visual_shapes() -> dict[str, list[int]]:
    """Visual keys of upstream ``LMModel.state_dict()`` as saved with transformers 4, with their shapes."""
    s: dict[str, list[int]] = {}
    v = "visual_encoder_model.vision_model."
    s[v + "embeddings.class_embedding"] = [C]
    s[v + "embeddings.patch_embedding.weight"] = [C, 3, PATCH, PATCH]
    s[v + "embeddings.position_embedding.weight"] = [P, C]
    s[v + "embeddings.position_ids"] = [1, P]  # persistent buffer in older transformers 4
    s[v + "pre_layrnorm.weight"] = s[v + "pre_layrnorm.bias"] = [C]
    for i in range(CLIP_LAYERS):
        lay = f"{v}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[f"{lay}self_attn.{proj}.weight"], s[f"{lay}self_attn.{proj}.bias"] = [C, C], [C]
        for ln in ("layer_norm1", "layer_norm2"):
            s[f"{lay}{ln}.weight"] = s[f"{lay}{ln}.bias"] = [C]
        s[f"{lay}mlp.fc1.weight"], s[f"{lay}mlp.fc1.bias"] = [CLIP_MLP, C], [CLIP_MLP]
        s[f"{lay}mlp.fc2.weight"], s[f"{lay}mlp.fc2.bias"] = [C, CLIP_MLP], [C]
    s[v + "post_layernorm.weight"] = s[v + "post_layernorm.bias"] = [C]
    s["visual_encoder_model.visual_projection.weight"] = [PROJ, C]
    inner = HEADS * DIM_HEAD
    for br in ("local", "global"):
        s[f"{br}_pos_embedding"] = [1, P, C]
        t = f"{br}_temporal_transformer."
        for i in range(DEPTH):
            s[f"{t}layers.{i}.0.norm.weight"] = s[f"{t}layers.{i}.0.norm.bias"] = [C]
            s[f"{t}layers.{i}.0.fn.to_qkv.weight"] = [3 * inner, C]  # no bias
            s[f"{t}layers.{i}.0.fn.to_out.0.weight"], s[f"{t}layers.{i}.0.fn.to_out.0.bias"] = [C, inner], [C]
            s[f"{t}layers.{i}.1.norm.weight"] = s[f"{t}layers.{i}.1.norm.bias"] = [C]
            s[f"{t}layers.{i}.1.fn.net.0.weight"], s[f"{t}layers.{i}.1.fn.net.0.bias"] = [4 * C, C], [4 * C]
            s[f"{t}layers.{i}.1.fn.net.3.weight"], s[f"{t}layers.{i}.1.fn.net.3.bias"] = [C, 4 * C], [C]
        s[f"{t}norm.weight"] = s[f"{t}norm.bias"] = [C]
    x = "multi_head_cross_attention."
    for lin in ("query", "key", "value", "final_linear"):
        s[f"{x}{lin}.weight"], s[f"{x}{lin}.bias"] = [C, C], [C]
    for ln in ("norm1", "norm2"):
        s[f"{x}{ln}.weight"] = s[f"{x}{ln}.bias"] = [C]
    s["visual_feature_proj.weight"], s["visual_feature_proj.bias"] = [D, C], [D]
    return s


LM_SHAPES = {  # a few audiocraft LM keys: the lstv importer must leave them for the musicgen backbone
    "emb.0.weight": [9, D], "transformer.layers.0.self_attn.in_proj_weight": [3 * D, D],
    "transformer.layers.0.cross_attention.in_proj_weight": [3 * D, D], "transformer.layers.0.linear1.weight": [4 * D, D],
    "out_norm.weight": [D], "linears.0.weight": [8, D],
}

XP_CFG = f"""
lm_model: transformer_lm
transformer_lm:
  dim: {D}
  num_heads: {HEADS}
  num_layers: 1
  hidden_scale: 4
  n_q: 1
  card: 8
video:
  visual_encoder: clip
  video_fps: 2
  video_overlap: 0
  add_global:
    if_add_gobal: true
    global_feature_path: ''
    mode: average
    num_frames: 3
dora:
  dir: ${{oc.env:NOT_SET_ANYWHERE}}/xps
"""


def make_best_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for k, shape in {**upstream_visual_shapes(), **LM_SHAPES}.items():
        if k.endswith("position_ids"):
            state[k] = torch.arange(shape[1]).unsqueeze(0)
        elif "norm" in k and k.endswith(".weight") and len(shape) == 1:
            state[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:  # includes final_linear: non-zero so the test exercises it
            state[k] = 0.2 * torch.randn(shape, generator=g)
    return state


def write_vidmuse(path: Path, best: dict[str, torch.Tensor], xp_cfg: str = XP_CFG) -> Path:
    torch.save({"best_state": best, "xp.cfg": xp_cfg, "version": "1.3.0", "exported": True}, path)
    return path


def upstream_video_emb(s: dict[str, torch.Tensor], frames: Frames) -> torch.Tensor:
    """Upstream ``compute_video_emb`` restated on raw checkpoint tensors (einsum attention as upstream)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=C, num_hidden_layers=CLIP_LAYERS, num_attention_heads=CLIP_HEADS, intermediate_size=CLIP_MLP,
        image_size=IMG, patch_size=PATCH, projection_dim=PROJ)).eval()
    clip.load_state_dict({k[len("visual_encoder_model."):]: v for k, v in s.items()
                          if k.startswith("visual_encoder_model.") and not k.endswith("position_ids")}, strict=True)

    def ln(x: torch.Tensor, p: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (C,), s[p + ".weight"], s[p + ".bias"])

    def lin(x: torch.Tensor, p: str) -> torch.Tensor:
        return torch.nn.functional.linear(x, s[p + ".weight"], s.get(p + ".bias"))

    def branch(u8: torch.Tensor, name: str) -> torch.Tensor:
        b, t = u8.shape[:2]
        px = ((u8.reshape(b * t, IMG, IMG, 3).permute(0, 3, 1, 2).float() / 255) - MEAN) / STD
        with torch.no_grad():
            x = clip(pixel_values=px).last_hidden_state
        x = x + s[f"{name}_pos_embedding"]
        pre = f"{name}_temporal_transformer."
        for i in range(DEPTH):
            qkv = lin(ln(x, f"{pre}layers.{i}.0.norm"), f"{pre}layers.{i}.0.fn.to_qkv").chunk(3, dim=-1)
            q, k, v = (z.reshape(z.shape[0], z.shape[1], HEADS, DIM_HEAD).permute(0, 2, 1, 3) for z in qkv)
            attn = (torch.einsum("bhid,bhjd->bhij", q, k) * DIM_HEAD ** -0.5).softmax(-1)
            o = torch.einsum("bhij,bhjd->bhid", attn, v).permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)
            x = lin(o, f"{pre}layers.{i}.0.fn.to_out.0") + x
            h = ln(x, f"{pre}layers.{i}.1.norm")
            h = lin(torch.nn.functional.gelu(lin(h, f"{pre}layers.{i}.1.fn.net.0")), f"{pre}layers.{i}.1.fn.net.3")
            x = h + x
        return ln(x, f"{pre}norm").reshape(b, t * P, C)  # '(b t) q h -> b (t q) h'

    a, bg = branch(frames.local, "local"), branch(frames.global_frames, "global")  # type: ignore[arg-type]
    m, depth = "multi_head_cross_attention.", C // 3
    split = lambda z: z.view(z.shape[0], -1, 3, depth).permute(0, 2, 1, 3)  # noqa: E731
    Q, K, V = split(lin(a, m + "query")), split(lin(bg, m + "key")), split(lin(bg, m + "value"))
    att = torch.softmax(Q @ K.transpose(-2, -1) / depth ** 0.5, dim=-1)
    out = (att @ V).permute(0, 2, 1, 3).reshape(a.shape[0], -1, C)
    out = ln(out + a, m + "norm1")
    out = ln(lin(out, m + "final_linear") + out, m + "norm2")
    return lin(out, "visual_feature_proj")


# --------------------------------------------------------------------------------------------------
# (1) import
# --------------------------------------------------------------------------------------------------
def test_contract() -> None:
    assert isinstance(check_component_contract("encoder", "lstv"), LSTVEncoder)
    check_component_contract("encoder", "vidmuse", tiny_cfg(return_features=True, null="zeros"))
    check_component_contract("importer", "vidmuse")


def test_registered() -> None:
    enc = get_component("encoder", "lstv")
    assert get_component("encoder", "vidmuse") is enc and enc.config_cls is LSTVConfig and enc.plugin == "vidmuse_lstv"
    assert get_component("importer", "vidmuse").config_cls is VidmuseImportConfig


def test_state_dict_names_are_upstream() -> None:
    """Our module tree has exactly upstream's visual keys (transformers-5 CLIP, position_ids non-persistent)."""
    ours = LSTVEncoder(tiny_cfg()).state_dict()
    want = {k: v for k, v in upstream_visual_shapes().items() if not k.endswith("position_ids")}
    assert sorted(ours) == sorted(want)
    assert {k: list(v.shape) for k, v in ours.items()} == want
    assert not LSTVEncoder(tiny_cfg()).multi_head_cross_attention.final_linear.weight.any()  # zero-init


def test_import_vidmuse_checkpoint(tmp_path: Path) -> None:
    best = make_best_state()
    ckpt = write_vidmuse(tmp_path / "state_dict.bin", best)
    importer = get_component("importer", "vidmuse")
    report = importer.factory(ckpt, tmp_path / "lib", VidmuseImportConfig(clip_heads=CLIP_HEADS))
    assert report.ok, report
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatches == []
    notes = "\n".join(report.notes)
    assert "visual_encoder_model.vision_model.embeddings.position_ids" in notes
    assert f"left {len(LM_SHAPES)} LM keys for the musicgen backbone" in notes and "emb.0.weight" in notes

    meta = yaml.safe_load((tmp_path / "lib" / "config.yaml").read_text())
    assert (meta["kind"], meta["name"]) == ("encoder", "lstv")
    assert {k: meta["config"][k] for k in ("heads", "out_dim", "clip_hidden", "clip_layers", "clip_heads", "n_global",
                                           "fps", "clip_image_size", "depth", "dim_head")} == \
        dict(heads=HEADS, out_dim=D, clip_hidden=C, clip_layers=CLIP_LAYERS, clip_heads=CLIP_HEADS, n_global=3,
             fps=2.0, clip_image_size=IMG, depth=DEPTH, dim_head=DIM_HEAD)
    written = load_file(str(tmp_path / "lib" / "model.safetensors"))
    for k, v in best.items():
        if k in LM_SHAPES or k.endswith("position_ids"):
            assert k not in written
        else:
            assert torch.equal(written[k], v), k

    enc = load_component(tmp_path / "lib", "encoder")
    assert isinstance(enc, LSTVEncoder)
    frames = make_frames(B=2, T=3, G=3, size=IMG, seed=1)
    with torch.no_grad():
        got = enc.eval()(frames).tokens
    want = upstream_video_emb(best, frames)
    assert got.shape == (2, 3 * P, D)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)

    # the same through the command line
    res = run_vidmusic("import", "vidmuse", str(ckpt), "-o", str(tmp_path / "cli"), f"clip_heads={CLIP_HEADS}",
                       timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    cli = load_file(str(tmp_path / "cli" / "model.safetensors"))
    assert cli.keys() == written.keys() and all(torch.equal(cli[k], written[k]) for k in cli)


def test_import_reports_bad_keys_by_name(tmp_path: Path) -> None:
    best = make_best_state()
    del best["multi_head_cross_attention.norm2.bias"]
    best["visual_feature_proj.bias"] = torch.zeros(D + 1)
    best["local_temporal_transformer.layers.2.0.norm.weight"] = torch.ones(C)  # a third layer upstream never had
    ckpt = write_vidmuse(tmp_path / "state_dict.bin", best)
    report = get_component("importer", "vidmuse").factory(ckpt, tmp_path / "out", VidmuseImportConfig(clip_heads=2))
    assert not report.ok
    assert report.missing == ["multi_head_cross_attention.norm2.bias"]
    assert report.unexpected == ["local_temporal_transformer.layers.2.0.norm.weight"]
    assert report.shape_mismatches == [f"visual_feature_proj.bias: checkpoint [{D + 1}] vs model [{D}]"]
    assert not (tmp_path / "out" / "model.safetensors").exists()  # nothing half-right is written


def test_import_rejects_bad_files(tmp_path: Path) -> None:
    imp = get_component("importer", "vidmuse").factory
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.bin"):
        imp(junk, tmp_path / "o", VidmuseImportConfig())
    torch.save({"model": {}}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match="best_state and xp.cfg"):
        imp(tmp_path / "other.bin", tmp_path / "o", VidmuseImportConfig())
    torch.save({"best_state": {"x": torch.zeros(1)}, "xp.cfg": XP_CFG, "opt": Path("/x")}, tmp_path / "pickle.bin")
    with pytest.raises(CheckpointError, match="weights_only"):  # a non-allow-listed object is refused, not unpickled
        imp(tmp_path / "pickle.bin", tmp_path / "o", VidmuseImportConfig())
    write_vidmuse(tmp_path / "lm_only.bin", {k: torch.zeros(v) for k, v in LM_SHAPES.items()})
    with pytest.raises(CheckpointError, match="no visual keys"):
        imp(tmp_path / "lm_only.bin", tmp_path / "o", VidmuseImportConfig())
    write_vidmuse(tmp_path / "noheads.bin", make_best_state(), XP_CFG.replace(f"num_heads: {HEADS}", ""))
    with pytest.raises(CheckpointError, match="num_heads"):
        imp(tmp_path / "noheads.bin", tmp_path / "o", VidmuseImportConfig(clip_heads=2))


# --------------------------------------------------------------------------------------------------
# (2) shapes, times, mask
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [1, 3])
def test_tokens_per_second_and_times(seconds: int) -> None:
    enc = LSTVEncoder(tiny_cfg(clip_image_size=224, clip_patch_size=32)).eval()  # P = 50 as ViT-B/32
    T = 2 * seconds
    frames = make_frames(B=2, T=T, G=3, size=224)
    frames.local_mask[1, -1] = False  # a padded last frame in the second clip
    with torch.no_grad():
        cond = enc(frames)
    assert cond.tokens.shape == (2, 100 * seconds, D) and cond.mask.shape == cond.times.shape == (2, 100 * seconds)
    groups = cond.times.view(2, T, 50)
    assert torch.equal(groups, frames.local_times[:, :, None].expand(2, T, 50))  # each frame's 50 tokens: its time
    assert (groups.diff(dim=-1) == 0).all() and (groups[:, 1:, 0] >= groups[:, :-1, 0]).all()
    assert cond.mask[0].all() and cond.mask[1, :-50].all() and not cond.mask[1, -50:].any()


def test_real_width_30s() -> None:
    """ViT-B/32 + VidMuse-medium widths, random weights: 30 s at 2 fps -> [1, 3000, 1536].

    CLIP (frozen, 12 layers) runs on 4 real frames here; the trainable rest runs on the full 60 local +
    32 global frames' worth of CLIP states (those 4 frames' states, repeated), as in training from cache.
    """
    torch.manual_seed(0)
    enc = LSTVEncoder(LSTVConfig.vidmuse(return_features=True)).eval()
    assert enc.frame_spec.size == 224 and enc.frame_spec.fps == 2.0 and enc.frame_spec.n_global == 32
    few = make_frames(B=1, T=2, G=2, size=224)
    with torch.inference_mode():
        t0 = time.perf_counter()
        feats = enc.frozen_features(few)
        t1 = time.perf_counter()
        assert feats["local_hidden"].shape == (1, 2, 50, 768) and feats["global_hidden"].shape == (1, 2, 50, 768)
        full = {"local_hidden": feats["local_hidden"][:, torch.arange(60) % 2],
                "global_hidden": feats["global_hidden"][:, torch.arange(32) % 2]}
        times = (torch.arange(60) / 2.0).unsqueeze(0)
        cond = enc.forward_features(full, Frames(torch.zeros(1, 60, 1, 1, 3, dtype=torch.uint8), times))
        t2 = time.perf_counter()
    print(f"\nreal width: CLIP {4 / (t1 - t0):.1f} frames/s; LSTV rest on 30 s {t2 - t1:.2f} s")
    assert cond.tokens.shape == (1, 3000, 1536) and cond.times.shape == (1, 3000)
    assert cond.null_tokens is not None and cond.null_tokens.shape == (1, 3000, 1536)
    assert cond.extras["video_hidden"].shape == (1, 3000, 768)
    assert torch.isfinite(cond.tokens).all()
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == 41_405_952  # note §3.5: LSTV trainable


def test_rejects_wrong_frames() -> None:
    enc = LSTVEncoder(tiny_cfg())
    with pytest.raises(ShapeError, match="64x64"):
        enc(make_frames(1, 2, 2, size=32))
    f = make_frames(1, 2, 2, size=IMG)
    with pytest.raises(ShapeError, match="global frames"):
        enc(Frames(f.local, f.local_times))
    with pytest.raises(ConfigError, match="cross_heads"):
        LSTVEncoder(tiny_cfg(clip_hidden=32))
    with pytest.raises(ConfigError, match="sampling"):
        LSTVEncoder(tiny_cfg(sampling="exact"))


# --------------------------------------------------------------------------------------------------
# (3) CFG null = black video
# --------------------------------------------------------------------------------------------------
def test_null_is_black_video_encoding() -> None:
    torch.manual_seed(0)
    enc = LSTVEncoder(tiny_cfg()).eval()
    with torch.no_grad():
        enc.multi_head_cross_attention.final_linear.weight.normal_()  # exercise every block
    frames = make_frames(B=2, T=4, G=3, size=IMG, seed=3)
    with torch.no_grad():
        cond = enc(frames)
        black = enc(make_frames(B=2, T=4, G=3, size=IMG, black=True)).tokens
    assert cond.null_tokens is not None and cond.null_tokens.shape == (1, 4 * P, D)
    torch.testing.assert_close(cond.null_like().tokens, black, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond.tokens, black)
    assert not any("null" in k for k in enc.state_dict())  # cached on the module, not state

    # the cache follows the weights (optimizer steps and loads modify parameters in place)
    before = enc.null_tokens(2)
    with torch.no_grad():
        enc.visual_feature_proj.bias.add_(1.0)
    torch.testing.assert_close(enc.null_tokens(2), before + 1.0)
    assert LSTVEncoder(tiny_cfg(null="zeros"))(frames).null_tokens is None


# --------------------------------------------------------------------------------------------------
# (4) frozen / trainable split
# --------------------------------------------------------------------------------------------------
def test_frozen_features_then_forward_features_equals_forward() -> None:
    enc = LSTVEncoder(tiny_cfg())
    frames = make_frames(B=2, T=3, G=4, size=IMG, seed=5)
    feats = enc.frozen_features(frames)
    assert feats["local_hidden"].shape == (2, 3, P, C) and feats["global_hidden"].shape == (2, 4, P, C)
    assert not feats["local_hidden"].requires_grad
    cond = enc.forward_features(feats, frames)
    assert torch.equal(cond.tokens, enc(frames).tokens)

    # as from a float16 prepare cache: close, and gradients reach the trainable part only
    cached = {k: v.half() for k, v in feats.items()}
    cond16 = enc.forward_features(cached, frames)
    torch.testing.assert_close(cond16.tokens, cond.tokens, atol=5e-3, rtol=5e-3)
    cond16.tokens.square().mean().backward()
    assert enc.local_pos_embedding.grad is not None and enc.global_temporal_transformer.norm.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in enc.visual_encoder_model.parameters())
    enc.train()
    assert enc.training and not enc.visual_encoder_model.training

    # without frames: nominal times k / fps, all-true mask
    nominal = enc.forward_features(feats, None)
    assert torch.equal(nominal.times, cond.times) and nominal.mask.all()


def test_feature_config_is_the_cache_key() -> None:
    key = LSTVEncoder(tiny_cfg()).feature_config()
    assert LSTVEncoder(tiny_cfg(heads=4, out_dim=32, depth=1)).feature_config() == key  # trainable part only
    assert LSTVEncoder(tiny_cfg(clip_layers=1)).feature_config() != key
    assert LSTVEncoder(tiny_cfg(n_global=8)).feature_config() != key  # different frames, different features
    assert math.isclose(key["fps"], 2.0) and key["clip_hidden"] == C
