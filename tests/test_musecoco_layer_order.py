"""MuseCoco import: the layer order (``decoder_normalize_before``) and the final LayerNorm
(``no_decoder_final_norm`` / the weights) are read separately, each of the four combinations checked against a
forward written the fairseq way (microsoft/muzic ``musecoco/2-attribute2music_model/linear_mask/linear``:
``transformer_layer.py`` ``LinearTransformerDecoderLayer.forward`` and ``transformer.py`` L110 / L384)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

from musecoco_symbolic.attributes import na_values, values_to_tokens
from musecoco_symbolic.importer import MusecocoImportConfig, import_musecoco
from musecoco_symbolic.vocab import SEP, Vocab, musecoco_symbols
from vidmusic_core import BackboneInput, load_component

V, D, H, FFN, L = len(Vocab(musecoco_symbols())), 32, 8, 32, 2  # upstream "debug" sizes (no-args imports need one)


def fairseq_state(final_norm: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fairseq LM ``state_dict()`` (upstream names), with ``decoder.layer_norm`` only when ``final_norm``."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.3 * torch.randn(*s, generator=g)  # noqa: E731
    st = {"decoder.version": torch.tensor([3.0]), "decoder.embed_tokens.weight": r(V, D),
          "decoder.embed_positions._float_tensor": torch.zeros(1)}
    for i in range(L):
        p = f"decoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            st[p + f"self_attn.{n}.weight"], st[p + f"self_attn.{n}.bias"] = r(D, D), r(D)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            st[p + n + ".weight"], st[p + n + ".bias"] = 1 + r(D), r(D)
        st[p + "fc1.weight"], st[p + "fc1.bias"] = r(FFN, D), r(FFN)
        st[p + "fc2.weight"], st[p + "fc2.bias"] = r(D, FFN), r(D)
    if final_norm:
        st["decoder.layer_norm.weight"], st["decoder.layer_norm.bias"] = 1 + r(D), 0.5 + r(D)
    st["decoder.output_projection.weight"] = r(V, D)
    return st


def fairseq_forward(st: dict[str, torch.Tensor], ids: torch.Tensor, sep_pos: int, normalize_before: bool,
                    eps: float = 1e-6) -> torch.Tensor:
    """Logits ``[B, S, V]`` as fairseq computes them: sqrt(D)-scaled embeddings + sinusoids counted from
    ``<sep>``; each layer as ``LinearTransformerDecoderLayer.forward`` (``if self.normalize_before: x = LN(x)``
    before each block, ``if not self.normalize_before: x = LN(x)`` after each residual), causal linear
    attention as an explicit masked O(S^2) product; then ``if self.layer_norm is not None: x = self.layer_norm(x)``
    and the output projection."""
    half = D // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    table = torch.arange(ids.shape[1] + 2, dtype=torch.float)[:, None] * freq[None]
    table = torch.cat([table.sin(), table.cos()], dim=1)
    table[1] = 0  # padding row
    rows = torch.clamp(torch.arange(ids.shape[1]) - sep_pos + 2, min=1)
    x = math.sqrt(D) * st["decoder.embed_tokens.weight"][ids] + table[rows]
    ln = lambda h, n: F.layer_norm(h, (D,), st[n + ".weight"], st[n + ".bias"])  # noqa: E731
    lin = lambda h, n: F.linear(h, st[n + ".weight"], st.get(n + ".bias"))  # noqa: E731
    S = ids.shape[1]
    for i in range(L):
        p = f"decoder.layers.{i}."
        residual = x
        if normalize_before:
            x = ln(x, p + "self_attn_layer_norm")
        q, k, v = (lin(x, p + f"self_attn.{n}").view(*x.shape[:2], H, -1).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        a = (q @ k.transpose(-1, -2)) * torch.ones(S, S).tril()
        o = (a @ v) / (a.sum(-1, keepdim=True) + eps)
        x = residual + lin(o.transpose(1, 2).reshape(*x.shape[:2], -1), p + "self_attn.out_proj")
        if not normalize_before:
            x = ln(x, p + "self_attn_layer_norm")
        residual = x
        if normalize_before:
            x = ln(x, p + "final_layer_norm")
        x = residual + lin(F.gelu(lin(x, p + "fc1")), p + "fc2")
        if not normalize_before:
            x = ln(x, p + "final_layer_norm")
    if "decoder.layer_norm.weight" in st:
        x = ln(x, "decoder.layer_norm")
    return lin(x, "decoder.output_projection")


def _args(normalize_before: Optional[bool], no_final_norm: bool) -> Optional[argparse.Namespace]:
    if normalize_before is None:
        return None
    return argparse.Namespace(arch="linear_transformer_lm_debug", decoder_layers=L, decoder_embed_dim=D,
                              decoder_attention_heads=H, decoder_ffn_embed_dim=FFN,
                              decoder_normalize_before=normalize_before, no_decoder_final_norm=no_final_norm,
                              decoder_learned_pos=False, share_decoder_input_output_embed=False,
                              no_scale_embedding=False, activation_fn="gelu", dropout=0.1)


def _import_and_compare(tmp_path: Path, name: str, st: dict, args, want_pre: bool, want_final: bool,
                        cfg: Optional[MusecocoImportConfig] = None) -> list[str]:
    ckpt = {"model": st} if args is None else {"args": args, "model": st}
    torch.save(ckpt, tmp_path / f"{name}.pt")
    report = import_musecoco(tmp_path / f"{name}.pt", tmp_path / name, cfg or MusecocoImportConfig())
    assert report.ok, report
    model = load_component(tmp_path / name, expected_kind="backbone").eval()
    assert model.cfg.normalize_before == want_pre and (model.decoder.layer_norm is not None) == want_final
    vocab = Vocab(musecoco_symbols())
    values = na_values()
    values.update(T1s1=1, K1=0)
    tokens = ["</s>"] + values_to_tokens(values) + [SEP] + ["s-9", "t-30", "o-0", "i-0", "p-60", "d-12", "v-20"]
    ids = torch.tensor([vocab.encode(tokens)])
    want = fairseq_forward(st, ids, tokens.index(SEP), want_pre)
    with torch.no_grad():
        got = model(BackboneInput(model.embed(ids[:, None]), torch.ones(1, len(tokens), dtype=torch.bool),
                                  music_start=1)).logits[:, 0]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    # the other layer order is O(1) away: the check above can tell them apart
    assert (fairseq_forward(st, ids, tokens.index(SEP), not want_pre) - want).abs().max() > 0.1
    return report.notes


@pytest.mark.parametrize("normalize_before,no_final_norm", [(True, False), (True, True), (False, False),
                                                            (False, True)])
def test_layer_order_and_final_norm_from_args(tmp_path: Path, normalize_before: bool, no_final_norm: bool) -> None:
    """fairseq builds the final norm when ``normalize_before and not no_decoder_final_norm``: pre-LN + norm,
    pre-LN without (the case imported post-LN before), and post-LN (no norm either way)."""
    final = normalize_before and not no_final_norm
    _import_and_compare(tmp_path, "ckpt", fairseq_state(final), _args(normalize_before, no_final_norm),
                        normalize_before, final)


def test_post_ln_with_final_norm_weights(tmp_path: Path) -> None:
    """The fourth combination: post-LN layers (args) and a final norm in the weights (fairseq cannot build it
    from its args; its forward applies a norm that exists). Imported post-LN + norm, with a note; before,
    the norm's presence made the layers pre-LN."""
    notes = _import_and_compare(tmp_path, "post_final", fairseq_state(True), _args(False, False), False, True)
    assert any("following the weights" in n for n in notes)


def test_without_args_from_the_weights(tmp_path: Path) -> None:
    """No args: a final norm means pre-LN; none means post-LN (fairseq's default) unless the option says
    otherwise (a pre-LN model trained with no_decoder_final_norm)."""
    _import_and_compare(tmp_path, "a", fairseq_state(True), None, True, True)
    notes = _import_and_compare(tmp_path, "b", fairseq_state(False), None, False, False)
    assert any("normalize_before=true" in n for n in notes)
    _import_and_compare(tmp_path, "c", fairseq_state(False), None, True, False,
                        MusecocoImportConfig(normalize_before=True))


def test_old_checkpoint_version_drops_final_norm(tmp_path: Path) -> None:
    """fairseq's ``upgrade_state_dict_named``: ``decoder.version`` <= 2 checkpoints run without the final norm."""
    st = fairseq_state(True)
    st["decoder.version"] = torch.tensor([2.0])
    ref = {k: v for k, v in st.items() if not k.startswith("decoder.layer_norm.")}
    torch.save({"args": _args(True, False), "model": st}, tmp_path / "old.pt")
    report = import_musecoco(tmp_path / "old.pt", tmp_path / "old", MusecocoImportConfig())
    assert report.ok and any("decoder.version" in n for n in report.notes)
    model = load_component(tmp_path / "old", expected_kind="backbone").eval()
    assert model.decoder.layer_norm is None and model.cfg.normalize_before
    vocab = Vocab(musecoco_symbols())
    tokens = ["</s>"] + values_to_tokens(na_values()) + [SEP, "s-9", "t-30"]
    ids = torch.tensor([vocab.encode(tokens)])
    with torch.no_grad():
        got = model(BackboneInput(model.embed(ids[:, None]), torch.ones(1, len(tokens), dtype=torch.bool),
                                  music_start=1)).logits[:, 0]
    torch.testing.assert_close(got, fairseq_forward(ref, ids, tokens.index(SEP), True), atol=2e-5, rtol=1e-5)
