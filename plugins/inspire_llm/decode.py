"""The single-token decode steps of the `inspire` backbone (``backbone.decode_kernels``).

A cached decode step (one new position per row, every new token real) does not need transformers' general
``Qwen2Model.forward`` (mask builder, position bookkeeping, per-call checks). Two hand-written steps compute
the same thing over the same modules:

- :func:`plain_step`: the transformers computation for one token, over the model's own ``Linear`` modules;
- :func:`packed_step`: the same over weights prepared by :class:`DecodePack` (q/k/v and gate/up fused into
  one matrix product each, 4 products a layer instead of 7, each weight in the layout its batch size reads
  fastest: column-major for MKL's matrix-vector product at batch 1, oneDNN's blocked format at batch >= 2).
  Logits equal :func:`plain_step`'s up to summation order (~1e-6).

``decode_kernels``: ``auto`` (the default) runs :func:`packed_step` wherever it applies (:func:`packed_applies`:
fp32 on a CPU whose torch has oneDNN, no autograd) and :func:`plain_step` elsewhere, silently; ``packed`` the
same but warns once when it falls back; ``plain`` always :func:`plain_step`. Prefill and every other call
run transformers' forward. Upstream runs transformers' forward for every step (``inspiremusic/transformer/
qwen_encoder.py`` ``forward_one_step``); both steps mirror ``transformers.models.qwen2.modeling_qwen2``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .cache import InspireCache

#: values of ``backbone.decode_kernels`` (``default`` is the old name of ``plain``)
DECODE_KERNELS = ("auto", "packed", "plain")
#: smallest weight (out * in) the ``packed`` step hands to oneDNN: below it oneDNN's per-call overhead
#: (~15-30 us on our CPU) exceeds what its kernel saves over ``F.linear`` (crossover ~512 x 128 at batch 2-8)
ONEDNN_MIN_NUMEL = 1 << 16

#: a prepared weight: (weight, bias, whether it is a oneDNN prepacked tensor)
Prepared = tuple[Tensor, Optional[Tensor], bool]


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's prepacked linear (``torch.ops.mkldnn._reorder_linear_weight`` +
    ``_linear_pointwise``, what inductor's CPU freezing pass uses)."""
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
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
    if w[2]:
        return torch.ops.mkldnn._linear_pointwise(x, w[0], w[1], "none", [], "")
    return F.linear(x, w[0], w[1])


def decode_linears(qwen: nn.Module, decoder: nn.Linear) -> list[nn.Linear]:
    """The step's ``Linear`` modules: per layer q, k, v, o, gate, up, down; then the audio decoder."""
    mods: list[nn.Linear] = []
    for layer in qwen.layers:
        a, m = layer.self_attn, layer.mlp
        mods += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
    return mods + [decoder]


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
        Two variants, each built only when a step of its batch size runs:

        - ``batch == 1``: for ``F.linear`` (MKL's matrix-vector product), qkv, o, gate_up and the decoder
          column-major (as the backbone's ``colmajor_weights_``), down as it is (row-major reads faster there).
          Extra memory: all weights but down (~75% of the layers + the decoder; no copy for o / decoder when
          ``colmajor_weights`` already made them column-major).
        - ``batch >= 2``: every weight of at least :data:`ONEDNN_MIN_NUMEL` elements reordered into oneDNN's
          blocked format (``torch.ops.mkldnn._reorder_linear_weight``, no batch hint: the format oneDNN picks
          for an unknown batch, as fast at batch 2 and 8 as a batch-specific one); smaller ones stay on
          ``F.linear`` as they are. Extra memory: all of them.
        """
        variant = "colmajor" if batch == 1 else "onednn"
        mods = self.mods
        if mods is None:
            mods = self.mods = decode_linears(qwen, decoder)
        params = [t for m in mods for t in (m.weight, m.bias) if t is not None]
        key = tuple((t.data_ptr(), _version(t), t.dtype) for t in params)
        entry = self.packs.get(variant)
        if entry is not None and entry[0] == key:
            return entry[1], entry[2]
        self.packs.pop(variant, None)  # free the stale copy first
        dnn = variant == "onednn"

        def colmajor(w: Tensor) -> Tensor:
            return w if w.stride(0) == 1 and w.shape[0] > 1 else w.t().contiguous().t()

        def prep(w: Tensor, b: Optional[Tensor]) -> Prepared:
            w, b = w.detach(), None if b is None else b.detach().contiguous()
            if dnn and w.numel() >= ONEDNN_MIN_NUMEL:
                return torch.ops.mkldnn._reorder_linear_weight(w.contiguous()), b, True
            if dnn:
                return w, b, False  # small: oneDNN's ~15-30 us per call costs more than it saves
            return (colmajor(w) if w.shape[0] >= w.shape[1] else w.contiguous()), b, False

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
    gate/up fused, down) instead of 7. Returns the final-norm hidden ``[B, D]`` and the decoder output
    ``[B, K*(A+1)]`` (the decoder runs on the same kernels)."""
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb  # imported by now: a lookup

    B, D = x.shape[0], x.shape[-1]
    layers, dec = pack.weights(qwen, decoder, B)
    if pos is None:
        pos = torch.full((1, 1), cache.get_seq_length(), dtype=torch.long, device=x.device)
    cos, sin = qwen.rotary_emb(x, pos)  # [B or 1, 1, hd]
    mask = None if full is None else full[:, None, None, :]  # [B, 1, 1, S_past + 1]
    h = x.reshape(B, D)
    for i, layer in enumerate(qwen.layers):
        attn = layer.self_attn
        hd = attn.head_dim
        qkv_w, o_w, gu_w, down_w = layers[i]
        qkv = linear(layer.input_layernorm(h), qkv_w)  # [B, (H + 2 H_kv) hd]
        nq = attn.config.num_attention_heads * hd
        nk = (qkv.shape[1] - nq) // 2
        q = qkv[:, :nq].view(B, -1, 1, hd)  # [B, H, 1, hd]
        k = qkv[:, nq:nq + nk].view(B, -1, 1, hd)  # [B, H_kv, 1, hd]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = cache.update(k, qkv[:, nq + nk:].view(B, -1, 1, hd), i)  # [B, H_kv, S_past + 1, hd]
        q = q.view(B, k.shape[1], -1, hd)  # [B, H_kv, H / H_kv, hd]: the group's heads as queries
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
        h = h + linear(o.reshape(B, -1), o_w)  # head order kept: [H_kv, group] = H
        gu = linear(layer.post_attention_layernorm(h), gu_w)  # [B, 2 I]
        n = gu.shape[1] // 2
        h = h + linear(layer.mlp.act_fn(gu[:, :n]) * gu[:, n:], down_w)
    h = qwen.norm(h)
    return h, linear(h, dec)
