"""The single-token decode steps of the `inspire` backbone (``backbone.decode_kernels``).

A cached decode step (one new position per row, every new token real) does not need transformers' general
``Qwen2Model.forward`` (mask builder, position bookkeeping, per-call checks). Two hand-written steps compute
the same thing over the same modules:

- :func:`plain_step`: the transformers computation for one token, over the model's own ``Linear`` modules;
- :func:`packed_step`: the same over weights prepared by :class:`DecodePack` (q/k/v and gate/up fused into
  one matrix product each, 4 products a layer instead of 7, each weight in the layout its batch size reads
  fastest: column-major for MKL's matrix-vector product at batch 1; at batch >= 2 MKL's packed GEMM format
  for that batch size (``cblas_sgemm_pack``, what inductor's CPU freezing uses for fp32 with MKL), or
  oneDNN's blocked format on a torch without MKL). Logits equal :func:`plain_step`'s up to summation order
  (~1e-6).

``decode_kernels``: ``auto`` (the default) runs :func:`packed_step` wherever it applies (:func:`packed_applies`:
fp32 on a CPU whose torch has oneDNN, no autograd) and :func:`plain_step` elsewhere, silently; ``packed`` the
same but warns once when it falls back; ``plain`` always :func:`plain_step`. Prefill and every other call
run transformers' forward. Upstream runs transformers' forward for every step (``inspiremusic/transformer/
qwen_encoder.py`` ``forward_one_step``); both steps mirror ``transformers.models.qwen2.modeling_qwen2``.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .cache import InspireCache

#: values of ``backbone.decode_kernels`` (``default`` is the old name of ``plain``)
DECODE_KERNELS = ("auto", "packed", "plain")
#: smallest weight (out * in) the ``packed`` step hands to oneDNN or MKL's packed GEMM: below it their
#: per-call overhead (~15-30 us on our CPU) exceeds what their kernel saves over ``F.linear`` (crossover
#: ~512 x 128 at batch 2-8)
ONEDNN_MIN_NUMEL = 1 << 16


class Prepared(NamedTuple):
    """A prepared weight: ``kind`` ``"f"`` (``F.linear`` on ``weight``), ``"dnn"`` (``weight`` is a oneDNN
    prepacked tensor) or ``"mkl"`` (``weight`` is MKL-packed for exactly ``batch`` rows; ``sizes`` has the
    ``[out, in]`` sizes of the source)."""

    weight: Tensor
    bias: Optional[Tensor]
    kind: str = "f"
    batch: int = 0
    sizes: Optional[Tensor] = None  # "mkl": a zero-stride [out, in] stand-in (MKL's op reads its sizes only)


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's prepacked linear (``torch.ops.mkldnn._reorder_linear_weight`` +
    ``_linear_pointwise``, what inductor's CPU freezing pass uses)."""
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def mkl_packed_available() -> bool:
    """Whether this torch build has MKL's packed GEMM (``torch.ops.mkl._mkl_reorder_linear_weight`` +
    ``_mkl_linear``: ``cblas_sgemm_pack`` / ``cblas_sgemm_compute``)."""
    try:
        return (torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")
                and hasattr(torch.ops.mkl, "_mkl_linear"))
    except (AttributeError, RuntimeError):
        return False


def packed_applies(x: Tensor) -> bool:
    """Whether :func:`packed_step` can run on the step input ``x``: fp32 on a CPU with oneDNN, autograd off
    (the prepared weights are detached copies)."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and onednn_linear_available())


def fast_step_ok(qwen: nn.Module, training: bool) -> bool:
    """Whether a hand-written step may replace transformers' forward: SDPA, full attention, inference."""
    qcfg = qwen.config
    return (qcfg._attn_implementation == "sdpa" and not training
            and all(t == "full_attention" for t in getattr(qcfg, "layer_types", None) or ["full_attention"]))


def _version(t: Tensor) -> int:
    """``t._version`` (bumped by every in-place change), or -1 for an inference tensor (which has none: a
    model built under ``torch.inference_mode`` and then edited in place there is not noticed)."""
    try:
        return t._version
    except RuntimeError:
        return -1


def linear(x: Tensor, w: Prepared) -> Tensor:
    """``x [B, in] -> [B, out]`` with a prepared weight (see :meth:`DecodePack.weights`)."""
    if w.kind == "mkl":
        if x.shape[0] != w.batch:  # MKL's op would fall back to the stand-in weight: never let it
            raise ValueError(f"MKL-packed weight is for batch {w.batch}, got {x.shape[0]} rows")
        return torch.ops.mkl._mkl_linear(x, w.weight, w.sizes, w.bias, w.batch)
    if w.kind == "dnn":
        return torch.ops.mkldnn._linear_pointwise(x, w.weight, w.bias, "none", [], "")
    return F.linear(x, w.weight, w.bias)


def decode_linears(qwen: nn.Module, decoder: nn.Linear) -> list[nn.Linear]:
    """The step's ``Linear`` modules: per layer q, k, v, o, gate, up, down; then the audio decoder."""
    mods: list[nn.Linear] = []
    for layer in qwen.layers:
        a, m = layer.self_attn, layer.mlp
        mods += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
    return mods + [decoder]


#: the batch sizes >= 2 prepared for MKL's packed GEMM (where this torch has it); others use oneDNN
MKL_BATCHES = range(2, 1 << 30)


def variant_for(batch: int) -> str:
    """The :class:`DecodePack` variant a step of ``batch`` rows runs: ``colmajor`` | ``mkl<batch>`` | ``onednn``."""
    if batch == 1:
        return "colmajor"
    return f"mkl{batch}" if batch in MKL_BATCHES and mkl_packed_available() else "onednn"


class DecodePack:
    """Weights prepared for :func:`packed_step`: fused / packed copies of the Qwen2 layers' and the decoder's
    ``Linear`` weights, keyed by the pointers, version counters and dtypes of the parameters they were built
    from (rebuilt when any changes). Not module state: ``state_dict`` never sees it, ``deepcopy`` / pickling
    give an empty pack (oneDNN tensors cannot be copied), and the backbone's ``train()`` empties it."""

    def __init__(self) -> None:
        self.packs: dict[str, tuple[Any, list, Any, list]] = {}  # variant -> (key, layers, decoder, sources)
        self.mods: Optional[list[nn.Linear]] = None  # the source modules (decode_linears)

    def __deepcopy__(self, memo: dict) -> "DecodePack":
        return DecodePack()

    def __reduce__(self) -> tuple:
        return (DecodePack, ())

    def weights(self, qwen: nn.Module, decoder: nn.Linear, batch: int) -> tuple[list[tuple[Prepared, ...]], Prepared]:
        """Prepared weights for a step of ``batch`` rows (built on first use, rebuilt when a source parameter
        changed: pointer, version counter or dtype).

        Per layer ``(qkv, o, gate_up, down)`` and the decoder; q/k/v and gate/up are concatenated along the
        output dimension (the same rows: each output equals the separate projection's up to summation order).
        Three variants, each built only when a step of its batch size runs:

        - ``colmajor`` (``batch == 1``): for ``F.linear`` (MKL's matrix-vector product), qkv, o, gate_up and the
          decoder column-major (as the backbone's ``colmajor_weights_``), down as it is (row-major reads faster
          there). Extra memory: all weights but down (~75% of the layers + the decoder; no copy for o / decoder
          when ``colmajor_weights`` already made them column-major).
        - ``mkl<batch>`` (``batch >= 2`` on a torch with MKL): every weight of at least
          :data:`ONEDNN_MIN_NUMEL` elements packed by MKL for exactly ``batch`` rows
          (``torch.ops.mkl._mkl_reorder_linear_weight``; MKL's op would silently fall back to the original
          weight at any other batch size, so :func:`linear` refuses one); smaller ones stay on ``F.linear``.
          Only the latest batch size is kept (a new one replaces it: ~0.3 s to pack ~100M weights). On our
          CPU (AMD Zen 4, 1 thread, weights streamed from DRAM) MKL's packed GEMM runs the layers' products
          ~15% faster than oneDNN's and ~2.2x ``F.linear`` at batch 8 (``benchmarks/bench_inspire_decode.py``).
        - ``onednn`` (``batch >= 2`` without MKL): the same weights reordered into oneDNN's blocked format
          (``torch.ops.mkldnn._reorder_linear_weight``, no batch hint).

        Extra memory of ``mkl`` / ``onednn``: all the step's weights once more.
        """
        variant = variant_for(batch)
        mods = self.mods
        if mods is None:
            mods = self.mods = decode_linears(qwen, decoder)
        params = [t for m in mods for t in (m.weight, m.bias) if t is not None]
        key = tuple((t.data_ptr(), _version(t), t.dtype) for t in params)
        entry = self.packs.get(variant)
        if entry is not None and entry[0] == key:
            return entry[1], entry[2]
        for name in [v for v in self.packs if v == variant or (v.startswith("mkl") and variant.startswith("mkl"))]:
            del self.packs[name]  # free the stale copy (or the other batch size's) first
        kind = {"colmajor": "f", "onednn": "dnn"}.get(variant, "mkl")

        def colmajor(w: Tensor) -> Tensor:
            return w if w.stride(0) == 1 and w.shape[0] > 1 else w.t().contiguous().t()

        def prep(w: Tensor, b: Optional[Tensor]) -> Prepared:
            w, b = w.detach(), None if b is None else b.detach().contiguous()
            if kind == "f":
                return Prepared(colmajor(w) if w.shape[0] >= w.shape[1] else w.contiguous(), b)
            if w.numel() < ONEDNN_MIN_NUMEL:
                return Prepared(w, b)  # small: a packed kernel's ~15-30 us per call costs more than it saves
            if kind == "mkl":
                stand_in = w.new_zeros(()).expand(w.shape)  # sizes only, no memory
                return Prepared(torch.ops.mkl._mkl_reorder_linear_weight(w.contiguous(), batch), b, "mkl", batch,
                                stand_in)
            return Prepared(torch.ops.mkldnn._reorder_linear_weight(w.contiguous()), b, "dnn")

        def cat(ts: list[Optional[Tensor]]) -> Optional[Tensor]:
            return None if ts[0] is None else torch.cat(ts, dim=0)

        with torch.no_grad():
            layers = []
            for i in range(len(qwen.layers)):
                q, k, v, o, g, u, d = mods[7 * i:7 * i + 7]
                qkv = prep(torch.cat([q.weight, k.weight, v.weight]), cat([q.bias, k.bias, v.bias]))
                gu = prep(torch.cat([g.weight, u.weight]), cat([g.bias, u.bias]))
                layers.append((qkv, prep(o.weight, o.bias), gu, prep(d.weight, d.bias)))
            dec = prep(decoder.weight, decoder.bias)
        # the sources are kept referenced so that no new tensor can reuse their addresses (and match the key)
        self.packs[variant] = (key, layers, dec, [t.detach() for t in params])
        return layers, dec


def plain_step(qwen: nn.Module, x: Tensor, cache: InspireCache, full: Optional[Tensor],
               pos: Optional[Tensor]) -> Tensor:
    """One cached decode position ``x [B, 1, D]`` -> final-norm hidden ``[B, 1, D]``.

    The transformers ``Qwen2Model`` computation for a single new token, run over the same modules with its
    per-call bookkeeping left out (no mask builder: a single query sees every cached key, so only a padding
    mask ``full [B, S_past+1]`` is passed, and none without padding; query heads packed per key head as
    transformers' ``pack_gqa`` does, so no ``repeat_kv``). Keys / values go to ``cache`` in place. ``pos``:
    position ids ``[B, 1]`` (None: the cache length).
    """
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb  # imported by now: a lookup

    B = x.shape[0]
    if pos is None:
        pos = torch.full((1, 1), cache.get_seq_length(), dtype=torch.long, device=x.device)
    cos, sin = qwen.rotary_emb(x, pos)
    mask = None if full is None else full[:, None, None, :]  # [B, 1, 1, S_past + 1]
    h = x
    for i, layer in enumerate(qwen.layers):
        attn = layer.self_attn
        hd = attn.head_dim
        y = layer.input_layernorm(h)
        q = attn.q_proj(y).view(B, 1, -1, hd).transpose(1, 2)  # [B, H, 1, hd]
        k = attn.k_proj(y).view(B, 1, -1, hd).transpose(1, 2)  # [B, H_kv, 1, hd]
        v = attn.v_proj(y).view(B, 1, -1, hd).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = cache.update(k, v, i)  # [B, H_kv, S_past + 1, hd]
        q = q.reshape(B, k.shape[1], -1, hd)  # [B, H_kv, H / H_kv, hd]: the group's heads as queries
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
        h = h + attn.o_proj(o.reshape(B, 1, -1))  # head order kept: [H_kv, group] = H
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return qwen.norm(h)


def packed_step(qwen: nn.Module, decoder: nn.Linear, pack: DecodePack, x: Tensor, cache: InspireCache,
                full: Optional[Tensor], pos: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`plain_step` over the prepared weights of ``pack``: 4 matrix products a layer (q/k/v fused, o,
    gate/up fused, down) instead of 7, and fewer small ops: RMSNorm as ``F.rms_norm`` (the same fp32
    arithmetic as ``Qwen2RMSNorm``, which upcasts to fp32: equal to the bit in our tests), RoPE on q and k at
    once (``apply_rotary_pos_emb``'s element-wise ops on the concatenated heads), the layer's cache written
    directly. Returns the final-norm hidden ``[B, D]`` and the decoder output ``[B, K*(A+1)]`` (the decoder
    runs on the same kernels)."""
    B, D = x.shape[0], x.shape[-1]
    layers, dec = pack.weights(qwen, decoder, B)
    if pos is None:
        pos = torch.full((1, 1), cache.get_seq_length(), dtype=torch.long, device=x.device)
    cos, sin = qwen.rotary_emb(x, pos)  # [B or 1, 1, hd]
    cos, sin = cos[:, None], sin[:, None]  # [B or 1, 1, 1, hd]: broadcast over the heads
    mask = None if full is None else full[:, None, None, :]  # [B, 1, 1, S_past + 1]
    qcfg = qwen.config
    H, H_kv = qcfg.num_attention_heads, qcfg.num_key_value_heads
    attn0 = qwen.layers[0].self_attn
    hd, scale = attn0.head_dim, attn0.scaling
    half, nq, nk = hd // 2, H * hd, H_kv * hd
    act = F.silu if qcfg.hidden_act == "silu" else qwen.layers[0].mlp.act_fn
    h = x.reshape(B, D)
    for i, layer in enumerate(qwen.layers):
        qkv_w, o_w, gu_w, down_w = layers[i]
        ln = layer.input_layernorm
        qkv = linear(F.rms_norm(h, (D,), ln.weight, ln.variance_epsilon), qkv_w)  # [B, (H + 2 H_kv) hd]
        qk = qkv[:, :nq + nk].view(B, H + H_kv, 1, hd)  # q heads, then k heads
        qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin  # RoPE (rotate_half)
        k, v = cache.layers[i].update(qk[:, H:], qkv[:, nq + nk:].view(B, H_kv, 1, hd))  # [B, H_kv, S_past+1, hd]
        q = qk[:, :H].reshape(B, H_kv, H // H_kv, hd)  # [B, H_kv, H / H_kv, hd]: the group's heads as queries
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        h = h + linear(o.reshape(B, -1), o_w)  # head order kept: [H_kv, group] = H
        ln = layer.post_attention_layernorm
        gu = linear(F.rms_norm(h, (D,), ln.weight, ln.variance_epsilon), gu_w)  # [B, 2 I]
        n = gu.shape[1] // 2
        h = h + linear(act(gu[:, :n]) * gu[:, n:], down_w)
    ln = qwen.norm
    h = F.rms_norm(h, (D,), ln.weight, ln.variance_epsilon)
    return h, linear(h, dec)
