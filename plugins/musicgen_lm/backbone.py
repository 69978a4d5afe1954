"""The `musicgen` backbone: MusicGen's (and VidMuse's) decoder over K codebooks with cross-attention.

The parameter layout mirrors audiocraft's ``LMModel`` (ZeyueT/VidMuse @1e9296e ``audiocraft/models/lm.py``,
``audiocraft/modules/transformer.py``; MusicGen config ``config/model/lm/musicgen_lm.yaml``:
``memory_efficient`` ⇒ the custom attention with a packed ``in_proj_weight``, bias-free linears,
``norm_first``, sinusoidal positions, GELU), so a VidMuse ``best_state`` / MusicGen LM state dict loads
strictly. D = width, V = cardinality, K = codebooks, F = FFN width::

    emb.{k}.weight                                        [V+1, D]  codebook k's embedding; id V = special token
    transformer.layers.{i}.self_attn.in_proj_weight       [3D, D]   rows q | k | v
    transformer.layers.{i}.self_attn.out_proj.weight      [D, D]
    transformer.layers.{i}.linear1.weight / linear2.weight [F, D] / [D, F]
    transformer.layers.{i}.norm1 / norm2 / norm_cross     LayerNorm(D) weight+bias, eps 1e-5
    transformer.layers.{i}.cross_attention.in_proj_weight [3D, D]   q from the decoder, k|v from the memory
    transformer.layers.{i}.cross_attention.out_proj.weight [D, D]
    out_norm.{weight,bias}                                [D]
    linears.{k}.weight                                    [V, D]    logits of codebook k (no special token)

Layer (pre-norm): ``x += SA(norm1(x)); x += CA(norm_cross(x), memory); x += W2 gelu(W1 norm2(x))``; the
input is ``sum_k emb_k(codes_k) + sin(pos)`` with audiocraft's ``[cos | sin]`` embedding of absolute
positions. We write this small layer ourselves rather than wrap transformers' ``MusicgenDecoder``: its
names differ (separate q/k/v, ``encoder_attn``, ``fc1``), and with ``inputs_embeds`` (what a layout
hands us) it computes the sinusoidal positions from a ``[B, S, 1]`` slice, i.e. wrongly (transformers
5.23, checked). tests/test_musicgen.py checks our forward against ``MusicgenForCausalLM`` driven by ids.

The cache (:class:`MusicgenCache`) keeps self-attention K/V and the cross-attention K/V computed **once**
from the memory given with the prompt; later steps pass ``memory=None`` (upstream recomputes them at every
step, the main decoding cost). ``new_cache(cache_cross_kv=False)`` restores upstream's behaviour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vidmusic_core import (IGNORE_INDEX, TokenLM, BackboneInput, BackboneOutput, ConfigError, ShapeError,
                           select_positions)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# audiocraft model scales (config/model/lm/model_scale/*.yaml); tiny is ours (CPU toy runs, V = rvq_mel's 256)
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(width=64, layers=2, heads=4, cardinality=256),
    "small": dict(width=1024, layers=24, heads=16, cardinality=2048),  # MusicGen-small / VidMuse train.sh default
    "medium": dict(width=1536, layers=48, heads=24, cardinality=2048),  # the released VidMuse LM
    "large": dict(width=2048, layers=48, heads=32, cardinality=2048),
}


@dataclass
class MusicgenLMConfig:
    """Options of the `musicgen` backbone (``backbone.*``).

    ``size``: preset ``tiny`` | ``small`` | ``medium`` | ``large``; explicit ``width``, ``layers``, ``heads``
    win over it. ``hidden_scale``: FFN width = hidden_scale · width (4 upstream). ``n_codebooks``: K (the
    model builder sets it from the codec). ``audio_vocab``: V per codebook (None: preset; 2048 upstream);
    the embeddings have V + 1 rows (special token V). ``dropout``: on attention and residual branches (0
    upstream). ``max_period``: of the sinusoidal positions. ``context_length``: music frames one window may
    hold (1500 = 30 s at 50 Hz, upstream's ``max_duration``). ``dtype``: fp32 | bf16 | fp16.
    """

    size: str = "tiny"
    width: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    hidden_scale: int = 4
    n_codebooks: int = 4
    audio_vocab: Optional[int] = None
    dropout: float = 0.0
    max_period: float = 10000.0
    context_length: int = 1500
    dtype: str = "fp32"
    grad_checkpointing: bool = False


def sin_embedding(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Positions long ``[B, S]`` -> float32 ``[B, S, dim]`` = ``[cos(p/T^(i/(h-1))) | sin(…)]``, h = dim/2
    (audiocraft ``create_sin_embedding``; transformers' ``MusicgenSinusoidalPositionalEmbedding`` agrees)."""
    half = dim // 2
    freqs = max_period ** (torch.arange(half, device=positions.device, dtype=torch.float32) / (half - 1))
    phase = positions.to(torch.float32)[..., None] / freqs  # [B, S, h]
    return torch.cat([phase.cos(), phase.sin()], dim=-1)


class MusicgenCache:
    """KV cache: per layer self-attention ``keys``/``values`` ``[B, H, S_past, D/H]``, cross-attention
    ``cross`` K/V ``[B, H, M, D/H]`` (set when a memory arrives), ``cross_mask`` bool ``[B, M]`` or None,
    ``mask`` bool ``[B, S_past]`` (None: no padding cached). ``cache_cross_kv=False`` keeps the memory
    itself and re-projects it at every step instead (upstream behaviour, for benchmarks)."""

    def __init__(self, n_layers: int, cache_cross_kv: bool = True) -> None:
        self.keys: list[Optional[Tensor]] = [None] * n_layers
        self.values: list[Optional[Tensor]] = [None] * n_layers
        self.cross: list[Optional[tuple[Tensor, Tensor]]] = [None] * n_layers
        self.cross_mask: Optional[Tensor] = None
        self.memory: Optional[Tensor] = None
        self.mask: Optional[Tensor] = None
        self.cache_cross_kv = cache_cross_kv
        self.length = 0
        self.cross_projections = 0  # how many times a layer projected memory to K/V (tests, benchmarks)

    def get_seq_length(self) -> int:
        return self.length

    def append(self, i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add this call's K/V ``[B, H, S, hd]`` of layer ``i``; return all of them."""
        pk, pv = self.keys[i], self.values[i]
        self.keys[i] = k if pk is None else torch.cat([pk, k], dim=2)
        self.values[i] = v if pv is None else torch.cat([pv, v], dim=2)
        return self.keys[i], self.values[i]  # type: ignore[return-value]

    def batch_select_indices(self, indices: Tensor) -> None:
        """Keep batch rows ``indices`` (e.g. rows that have not stopped)."""
        sel = lambda t: None if t is None else t.index_select(0, indices.to(t.device))  # noqa: E731
        self.keys, self.values = [sel(k) for k in self.keys], [sel(v) for v in self.values]
        self.cross = [None if c is None else (sel(c[0]), sel(c[1])) for c in self.cross]  # type: ignore[misc]
        self.cross_mask, self.memory, self.mask = sel(self.cross_mask), sel(self.memory), sel(self.mask)


class MultiheadAttention(nn.Module):
    """audiocraft ``StreamingMultiheadAttention(custom=True, bias=False)``'s parameters: ``in_proj_weight``
    ``[3D, D]`` (rows q | k | v) and ``out_proj``. Runs ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"backbone: width {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        nn.init.kaiming_uniform_(self.in_proj_weight, a=math.sqrt(5))  # nn.Linear's init, as upstream
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def _split(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, H, T, D/H]
        B, T, _ = x.shape
        return x.view(B, T, self.heads, -1).transpose(1, 2)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention projections of ``x [B, S, D]``, each ``[B, H, S, D/H]``."""
        q, k, v = F.linear(x, self.in_proj_weight).chunk(3, dim=-1)
        return self._split(q), self._split(k), self._split(v)

    def q(self, x: Tensor) -> Tensor:
        return self._split(F.linear(x, self.in_proj_weight[: self.dim]))

    def kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys/values of ``memory [B, M, D]``, each ``[B, H, M, D/H]``."""
        k, v = F.linear(memory, self.in_proj_weight[self.dim:]).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], causal: bool = False) -> Tensor:
        """``softmax(q kᵀ/√d + mask) v`` -> ``out_proj`` ``[B, S, D]``; ``mask`` bool, True = attend."""
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal and mask is None)
        B, H, S, hd = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, S, H * hd))


class DecoderLayer(nn.Module):
    """audiocraft ``StreamingTransformerLayer`` (norm_first, cross_attention, no layer scale, GELU)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        # attribute order = upstream's state-dict order
        self.self_attn = MultiheadAttention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, ffn, bias=False)
        self.linear2 = nn.Linear(ffn, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attention = MultiheadAttention(dim, heads, dropout)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-5)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, self_mask: Optional[Tensor], causal: bool, cross_kv: Optional[tuple[Tensor, Tensor]],
                cross_mask: Optional[Tensor], cache: Optional[MusicgenCache], i: int) -> Tensor:
        q, k, v = self.self_attn.qkv(self.norm1(x))
        if cache is not None:
            k, v = cache.append(i, k, v)
        x = x + self.drop(self.self_attn.attend(q, k, v, self_mask, causal))
        if cross_kv is not None:
            x = x + self.drop(self.cross_attention.attend(self.cross_attention.q(self.norm_cross(x)), *cross_kv, cross_mask))
        return x + self.drop(self.linear2(self.drop(F.gelu(self.linear1(self.norm2(x))))))


class Transformer(nn.Module):
    """Holds ``layers`` so the weights live under ``transformer.layers.{i}.`` (audiocraft StreamingTransformer)."""

    def __init__(self, dim: int, heads: int, n_layers: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(dim, heads, ffn, dropout) for _ in range(n_layers)])


def _trunc_normal(w: Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-3 * std, b=3 * std)


class MusicgenBackbone(TokenLM):
    """MusicGen-style LM; ``cardinality`` = V, logits ``[B, K, S, V]`` (no EOS: length is set by the caller).

    ``special_id`` = V is MusicGen's special token (upstream's first input and the code at delayed
    positions); :meth:`special_embedding` is that input, summed over codebooks.
    """

    Config = MusicgenLMConfig
    supported_layouts = ("cross",)

    def __init__(self, cfg: Optional[MusicgenLMConfig] = None) -> None:
        super().__init__()
        cfg = MusicgenLMConfig() if cfg is None else cfg
        if cfg.size not in PRESETS:
            raise ConfigError(f"backbone.size={cfg.size!r} is not a preset; choose one of {', '.join(PRESETS)}")
        if cfg.dtype not in DTYPES:
            raise ConfigError(f"backbone.dtype={cfg.dtype!r}; choose one of {', '.join(DTYPES)}")
        p = PRESETS[cfg.size]
        D = cfg.width or p["width"]
        L, H = cfg.layers or p["layers"], cfg.heads or p["heads"]
        V = cfg.audio_vocab if cfg.audio_vocab is not None else p["cardinality"]
        K = cfg.n_codebooks
        if K < 1 or V < 2 or L < 1 or D % 2 or cfg.hidden_scale < 1:
            raise ConfigError(f"backbone: need n_codebooks >= 1, audio_vocab >= 2, layers >= 1, even width and "
                              f"hidden_scale >= 1; got K={K}, V={V}, layers={L}, width={D}, hidden_scale={cfg.hidden_scale}")
        self.cfg = cfg
        self.width, self.n_codebooks, self.cardinality, self.n_layers, self.heads = D, K, V, L, H
        self.special_id = V
        self.context_length = cfg.context_length
        # attribute order = upstream LMModel state-dict order
        self.emb = nn.ModuleList([nn.Embedding(V + 1, D) for _ in range(K)])
        self.transformer = Transformer(D, H, L, cfg.hidden_scale * D, cfg.dropout)
        self.out_norm = nn.LayerNorm(D, eps=1e-5)
        self.linears = nn.ModuleList([nn.Linear(D, V, bias=False) for _ in range(K)])
        self._init_weights()
        self.to(DTYPES[cfg.dtype])

    def _init_weights(self) -> None:
        """audiocraft ``weight_init=gaussian``, ``depthwise_init=current``: truncated normal, std 1/√fan_in,
        divided by √(2·depth) inside layer ``depth`` (1-based); ``in_proj_weight`` keeps nn.Linear's init."""
        for m in [*self.emb, *self.linears]:
            _trunc_normal(m.weight, 1 / math.sqrt(self.width))
        for depth, layer in enumerate(self.transformer.layers, start=1):
            for m in layer.modules():
                if isinstance(m, nn.Linear):
                    _trunc_normal(m.weight, 1 / math.sqrt(m.in_features) / math.sqrt(2 * depth))

    # -- embeddings ----------------------------------------------------------------------------
    def embed(self, codes: Tensor) -> Tensor:
        """Codes long ``[B, K, T]`` (0..V, V = special) -> ``[B, T, D]`` = ``sum_k emb_k(codes_k)``."""
        if codes.dim() != 3 or codes.shape[1] != self.n_codebooks:
            raise ShapeError(f"musicgen backbone: embed expects codes [B, {self.n_codebooks}, T], got {list(codes.shape)}")
        return sum(self.emb[k](codes[:, k]) for k in range(self.n_codebooks))  # type: ignore[return-value]

    def special_embedding(self) -> Tensor:
        """``[D]``: the embedding of an all-special frame (upstream's input at sequence position 0)."""
        return sum(e.weight[self.special_id] for e in self.emb)  # type: ignore[return-value]

    def decode_logits(self, hidden: Tensor) -> Tensor:
        """Final-norm hidden ``[B, S, D]`` -> float32 logits ``[B, K, S, V]`` (``linears.k``)."""
        w = torch.stack([lin.weight for lin in self.linears])  # [K, V, D]
        return torch.einsum("bsd,kvd->bksv", hidden, w).float()

    # -- the LM --------------------------------------------------------------------------------
    def new_cache(self, cache_cross_kv: bool = True) -> MusicgenCache:
        """An empty :class:`MusicgenCache` (``cache_cross_kv=False``: re-project the memory every step)."""
        return MusicgenCache(self.n_layers, cache_cross_kv)

    def _self_mask(self, inp: BackboneInput, cache: Optional[MusicgenCache], past: int) -> tuple[Optional[Tensor], bool]:
        """Bool mask ``[B, 1, S, S_past + S]`` (True = attend) or None, and whether SDPA's causal flag applies."""
        new = inp.attention_mask.to(torch.bool)
        past_mask = cache.mask if cache is not None else None
        S = new.shape[1]
        if past_mask is None and bool(new.all()):
            if cache is not None:
                cache.mask = None
            if past == 0 or S == 1:
                return None, past == 0 and S > 1
            keys = None
        else:
            if past_mask is None:
                past_mask = new.new_ones(new.shape[0], past)
            keys = torch.cat([past_mask, new], dim=1)  # [B, S_past + S]
            if cache is not None:
                cache.mask = keys
        qpos = torch.arange(past, past + S, device=new.device)[:, None]
        kpos = torch.arange(past + S, device=new.device)[None]
        allowed = (kpos <= qpos)[None, None]  # [1, 1, S, S_past + S]
        if keys is not None:
            allowed = allowed & keys[:, None, None, :]
            allowed = allowed | (kpos == qpos)[None, None]  # a padded query sees itself (no all-masked rows)
        return allowed, False

    def _memory(self, inp: BackboneInput, cache: Optional[MusicgenCache]) -> tuple[Optional[Tensor], Optional[Tensor], bool]:
        """(memory ``[B, M, D]`` to project now or None, its bool mask ``[B, 1, 1, M]`` or None, any cross-attention)."""
        mem, mask = inp.memory, inp.memory_mask
        if mem is not None:
            if mem.shape[-1] != self.width:
                raise ShapeError(f"musicgen backbone: memory width {mem.shape[-1]} != backbone width {self.width}; "
                                 "project the condition (layout.project=true) or match encoder dim to backbone.width")
            mem = mem.to(self.out_norm.weight.dtype)
            mask = None if mask is None or bool(mask.all()) else mask.to(torch.bool)
            if mask is not None:  # a row with no memory token: zero memory -> zero values -> adds nothing
                mem = mem.masked_fill(~mask.any(dim=1)[:, None, None], 0.0)
            if cache is not None:
                cache.cross = [None] * self.n_layers  # a new memory replaces the old one
                cache.cross_mask = mask
                cache.memory = None if cache.cache_cross_kv else mem
        elif cache is not None:
            mem, mask = cache.memory, cache.cross_mask
        has_cross = mem is not None or (cache is not None and cache.cross[0] is not None)
        if mask is not None:
            mask = (mask | ~mask.any(dim=1, keepdim=True))[:, None, None, :]  # empty memory: attend all zeros
        return mem, mask, has_cross

    def forward(self, inp: BackboneInput, cache: Optional[MusicgenCache] = None,  # type: ignore[override]
                logits_positions: Union[str, Tensor, None] = "all") -> BackboneOutput:
        """Decoder over ``inp.inputs_embeds [B, S, D]`` cross-attending ``inp.memory [B, M, D]``.

        ``cache``: from :meth:`new_cache`, updated in place (memory with the prompt, None afterwards: the
        cached cross K/V are used). Without memory and without cached cross K/V the cross-attention is
        skipped (an empty memory). ``logits_positions``: ``"all"``, ``"last"``, ``"none"`` or a long tensor of
        positions ``[S']`` -> ``logits [B, K, S', V]``; ``hidden`` is the ``out_norm`` output ``[B, S, D]``.
        """
        x = inp.inputs_embeds.to(self.out_norm.weight.dtype)
        B, S, D = x.shape
        if D != self.width:
            raise ShapeError(f"musicgen backbone: inputs_embeds width {D} != backbone width {self.width}")
        past = cache.length if cache is not None else 0
        pos = inp.position_ids if inp.position_ids is not None else \
            torch.arange(past, past + S, device=x.device)[None].expand(B, S)
        x = x + sin_embedding(pos, D, self.cfg.max_period).to(x.dtype)
        self_mask, causal = self._self_mask(inp, cache, past)
        mem, cross_mask, has_cross = self._memory(inp, cache)
        for i, layer in enumerate(self.transformer.layers):
            kv = None
            if has_cross:
                kv = cache.cross[i] if cache is not None and cache.cross[i] is not None else None
                if kv is None:
                    kv = layer.cross_attention.kv(mem)
                    if cache is not None:
                        cache.cross_projections += 1
                        if cache.cache_cross_kv:
                            cache.cross[i] = kv
            if self.cfg.grad_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, self_mask, causal, kv, cross_mask, None, i, use_reentrant=False)
            else:
                x = layer(x, self_mask, causal, kv, cross_mask, cache, i)
        if cache is not None:
            cache.length = past + S
        hidden = self.out_norm(x)
        sel = select_positions(hidden, logits_positions)
        return BackboneOutput(logits=self.decode_logits(sel), hidden=hidden, cache=cache)

    def loss(self, inp: BackboneInput) -> Tensor:
        """Mean cross-entropy over labelled tokens (``labels [B, K, S]`` != IGNORE_INDEX), pooled over
        codebooks (= audiocraft's mean of per-codebook means when each codebook has as many labels, as the
        delay pattern gives); logits are computed only at positions with a label."""
        if inp.labels is None:
            raise ValueError("musicgen backbone: loss needs BackboneInput.labels")
        if bool((inp.labels >= self.cardinality).any()):
            raise ShapeError(f"musicgen backbone: a label >= cardinality {self.cardinality}; MusicGen has no EOS "
                             "token, set layout.train_eos=false")
        hidden = self.forward(inp, logits_positions="none").hidden  # [B, S, D]
        labels = inp.labels.transpose(1, 2)  # [B, S, K]
        keep = (labels != IGNORE_INDEX).any(dim=-1)  # [B, S]
        logits = self.decode_logits(hidden[keep][None])[0]  # [K, N, V]
        target = labels[keep].T  # [K, N]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)


__all__ = ["MusicgenBackbone", "MusicgenCache", "MusicgenLMConfig", "PRESETS", "sin_embedding"]
