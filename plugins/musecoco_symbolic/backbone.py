"""The ``musecoco`` backbone: MuseCoco's attribute-to-music LM, a decoder-only fairseq transformer with
causal linear attention (microsoft/muzic ``musecoco/2-attribute2music_model/linear_mask/linear``).

Parameter names are fairseq's, so an upstream checkpoint's ``model`` dict loads with no renaming
(D width, H heads, d_k = D // H, V vocabulary, L layers)::

    decoder.embed_tokens.weight                    [V, D]  (row 1 = <pad>)
    decoder.embed_positions.weight                 [8192 + 2, D]  only with learned_pos (default: sinusoidal)
    decoder.layers.{l}.self_attn.{q,k,v}_proj.*    [H d_k, D]  (+ bias)
    decoder.layers.{l}.self_attn.out_proj.*        [D, H d_k]
    decoder.layers.{l}.self_attn_layer_norm.*      [D]
    decoder.layers.{l}.fc1.* / fc2.*               [F, D] / [D, F]
    decoder.layers.{l}.final_layer_norm.*          [D]
    decoder.layer_norm.*                           [D]     only with final_norm (default: with normalize_before)
    decoder.output_projection.weight               [V, D]  (tied to embed_tokens with share_input_output_embed)

Input embeddings are ``sqrt(D) * embed_tokens`` (:meth:`embed`); ``forward`` adds fairseq sinusoidal
positions that are **zero over the condition prefix** and count from the ``<sep>`` token (fairseq row
``padding_idx + 1 + k`` for the k-th position from ``<sep>``). Where ``<sep>`` is: ``inp.position_ids``
when given (k >= 0, negative = no position), else ``music_start + prefix_length - 1`` (the codec's
token stream is ``63 attributes, <sep>, music``, so with a layout's music starting at ``music_start``
the ``<sep>`` is its 64th token; without the attribute prefix the last prefix position plays ``<sep>``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmusic_core import IGNORE_INDEX, TokenLM, BackboneInput, BackboneOutput, ConfigError, ShapeError

from .attributes import step_mask, tokens_to_values, values_to_tokens
from .linear_attention import LinearAttentionCache, causal_linear_attention, feature_map
from .vocab import ATTRIBUTE_KEYS, EOS, N_ATTRIBUTE_TOKENS, PAD, PREFIX_LENGTH, Vocab

PRESETS = {  # layers, width, heads, ffn, dropout (upstream linear_transformer_lm_<name>; tiny is ours)
    "tiny": (2, 64, 4, 256, 0.0), "debug": (2, 32, 8, 32, 0.1), "std": (6, 512, 8, 2048, 0.1),
    "large": (12, 768, 12, 3072, 0.1), "gpt_base": (12, 896, 12, 3584, 0.1), "xl": (16, 1024, 12, 4096, 0.1),
    "1billion": (24, 2048, 24, 8192, 0.1),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class MusecocoConfig:
    """``backbone.*`` options of ``musecoco``.

    ``size``: preset (``tiny`` 2x64x4, ``xl`` 16x1024x12, ``1billion`` 24x2048x24, also ``debug``, ``std``,
    ``large``, ``gpt_base``); ``layers``/``width``/``heads``/``ffn``/``dropout`` override it (dropout:
    0.1 upstream, 0 for ``tiny``). ``vocab``: the codec's
    vocabulary (``remi`` 917 | ``musecoco`` 1253 ids); ``audio_vocab``: filled from the codec by the model
    builder, so a codec/backbone vocabulary mismatch is an error. ``normalize_before``: pre-LN layers
    (fairseq ``decoder_normalize_before``; False = post-LN). ``final_norm``: a LayerNorm after the last layer
    (``decoder.layer_norm``); None = fairseq's rule without ``no_decoder_final_norm``: with pre-LN layers only.
    ``attribute_prefix``: the token stream starts with 63 attributes + ``<sep>`` (positions from
    ``<sep>``). ``positions_from``: ``sep`` (upstream training) | ``last_attribute`` (upstream inference
    passes ``sep_pos`` one short, so its positions start one token earlier). ``attribute_dropout``: the
    step mask (random attributes set to NA) in :meth:`~MusecocoBackbone.loss`. ``attribute_loss``:
    weight of a loss on the attribute tokens (0 = upstream: loss on music only; > 0 lets the LM predict
    the attributes from a video prefix). ``chunk_size``: training attention chunk (0 = one cumsum).
    """

    size: str = "tiny"
    layers: Optional[int] = None
    width: Optional[int] = None
    heads: Optional[int] = None
    ffn: Optional[int] = None
    vocab: str = "remi"
    audio_vocab: Optional[int] = None
    dropout: Optional[float] = None
    activation_dropout: float = 0.0
    normalize_before: bool = True
    final_norm: Optional[bool] = None
    learned_pos: bool = False
    share_input_output_embed: bool = False
    no_scale_embedding: bool = False
    max_positions: int = 8192
    attribute_prefix: bool = True
    positions_from: str = "sep"
    attribute_dropout: bool = True
    attribute_loss: float = 0.0
    chunk_size: int = 64
    eps: float = 1e-6
    dtype: str = "fp32"


@lru_cache(maxsize=None)
def vocab_for(name: str) -> Vocab:
    """The token vocabulary of codec vocab ``name`` (shared with the ``remi`` codec)."""
    from .codec import VOCABS, RemiCodec, RemiConfig

    if name not in VOCABS:
        raise ConfigError(f"backbone.vocab={name!r}; choose one of {', '.join(VOCABS)}")
    return RemiCodec(RemiConfig(vocab=name)).vocab


def sinusoid_rows(rows: Tensor, dim: int, padding_idx: int = PAD) -> Tensor:
    """fairseq ``SinusoidalPositionalEmbedding`` rows ``rows [...]`` -> ``[..., dim]`` (row padding_idx = 0)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float, device=rows.device) * -(math.log(10000) / (half - 1)))
    ang = rows.float()[..., None] * freq  # [..., half]
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.masked_fill((rows == padding_idx)[..., None], 0.0)


class LinearAttentionLayer(nn.Module):
    """q/k/v/out projections around causal linear attention (upstream ``AttentionLayer`` names)."""

    def __init__(self, dim: int, heads: int, chunk: int, eps: float) -> None:
        super().__init__()
        self.heads, self.d_k, self.chunk, self.eps = heads, dim // heads, chunk, eps
        inner = self.d_k * heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, inner) for _ in range(3))
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor, mask: Tensor, state: Optional[tuple[Tensor, Tensor]] = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [B, S, D]``, ``mask [B, S]`` (False = padding: its key/value is dropped) -> ``[B, S, D]``."""
        B, S, _ = x.shape
        heads = lambda t: t.view(B, S, self.heads, self.d_k).transpose(1, 2).float()  # noqa: E731  [B, H, S, d_k]
        q = feature_map(heads(self.q_proj(x)))
        k = feature_map(heads(self.k_proj(x))) * mask[:, None, :, None]
        v = heads(self.v_proj(x))
        kv, z = state if state is not None else (None, None)
        out, kv, z = causal_linear_attention(q, k, v, kv, z, self.chunk, self.eps)
        out = out.transpose(1, 2).reshape(B, S, -1).to(x.dtype)  # [B, S, H d_k]
        return self.out_proj(out), (kv, z)


class LinearDecoderLayer(nn.Module):
    """fairseq ``TransformerDecoderLayer`` without encoder attention, linear self-attention."""

    def __init__(self, cfg: MusecocoConfig, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = LinearAttentionLayer(dim, heads, cfg.chunk_size, cfg.eps)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.pre, self.dropout, self.act_dropout = cfg.normalize_before, dropout, cfg.activation_dropout

    def forward(self, x: Tensor, mask: Tensor, state: Optional[tuple[Tensor, Tensor]] = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h = self.self_attn_layer_norm(x) if self.pre else x
        h, state = self.self_attn(h, mask, state)
        x = x + F.dropout(h, self.dropout, self.training)
        x = x if self.pre else self.self_attn_layer_norm(x)
        h = self.final_layer_norm(x) if self.pre else x
        h = F.dropout(F.gelu(self.fc1(h)), self.act_dropout, self.training)
        x = x + F.dropout(self.fc2(h), self.dropout, self.training)
        return (x if self.pre else self.final_layer_norm(x)), state


class LinearDecoder(nn.Module):
    """Holds the weights under fairseq's ``decoder.`` names."""

    def __init__(self, cfg: MusecocoConfig, V: int, dim: int, layers: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(V, dim, padding_idx=PAD)
        nn.init.normal_(self.embed_tokens.weight, 0, dim ** -0.5)
        nn.init.zeros_(self.embed_tokens.weight[PAD])
        if cfg.learned_pos:
            self.embed_positions = nn.Embedding(cfg.max_positions + PAD + 1, dim, padding_idx=PAD)
            nn.init.normal_(self.embed_positions.weight, 0, dim ** -0.5)
            nn.init.zeros_(self.embed_positions.weight[PAD])
        self.layers = nn.ModuleList(LinearDecoderLayer(cfg, dim, heads, ffn, dropout) for _ in range(layers))
        for mod in self.layers.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        final = cfg.normalize_before if cfg.final_norm is None else cfg.final_norm
        self.layer_norm = nn.LayerNorm(dim) if final else None  # applied whenever present, as fairseq's decoder
        self.output_projection = nn.Linear(dim, V, bias=False)
        if cfg.share_input_output_embed:
            self.output_projection.weight = self.embed_tokens.weight
        else:
            nn.init.normal_(self.output_projection.weight, 0, dim ** -0.5)


class MusecocoBackbone(TokenLM):
    """Decoder-only linear-attention LM over one symbolic vocabulary (``n_codebooks`` 1).

    ``cardinality`` = V; ``eos_id`` = 2 (``</s>``); ``sep_id`` = ``<sep>``. The cache
    (:meth:`new_cache`) is a :class:`LinearAttentionCache` (running sums, constant size).
    """

    Config = MusecocoConfig
    supported_layouts = ("prefix", "attribute_head", "musecoco_prompt")
    # what `vidmusic run --backbone musecoco` needs instead of the embedded (audio) default: the remi
    # codec, the video as a pooled prefix before the attributes, the LM also learning to predict the
    # attributes from the video (attribute_loss), MuseCoco's sampling (top-k 15, T 1.0), MIDI metrics

    def __init__(self, cfg: Optional[MusecocoConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MusecocoConfig()
        if cfg.size not in PRESETS:
            raise ConfigError(f"backbone.size={cfg.size!r}; choose one of {', '.join(PRESETS)}")
        if cfg.dtype not in DTYPES or cfg.positions_from not in ("sep", "last_attribute"):
            raise ConfigError(f"backbone: dtype={cfg.dtype!r} (fp32|bf16|fp16), positions_from={cfg.positions_from!r} "
                              "(sep|last_attribute)")
        p = PRESETS[cfg.size]
        L, D, H, Fd, self.dropout = (p[i] if v is None else v
                                     for i, v in enumerate((cfg.layers, cfg.width, cfg.heads, cfg.ffn, cfg.dropout)))
        if D < H or D < 4:
            raise ConfigError(f"backbone: width {D} must be >= heads {H} (and >= 4)")
        self.vocab = vocab_for(cfg.vocab)
        V = cfg.audio_vocab if cfg.audio_vocab is not None else len(self.vocab)
        if V != len(self.vocab):
            raise ConfigError(f"backbone.audio_vocab={V} (the codec's vocabulary) but backbone.vocab={cfg.vocab!r} has "
                              f"{len(self.vocab)} tokens; set backbone.vocab to the codec's vocab (remi 917, musecoco 1253)")
        self.width, self.n_codebooks, self.cardinality = D, 1, V
        self.eos_id, self.pad_id, self.sep_id = EOS, PAD, self.vocab.sep
        self.prefix_length = PREFIX_LENGTH if cfg.attribute_prefix else 0
        self.context_length = cfg.max_positions
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(D)
        self.decoder = LinearDecoder(cfg, V, D, L, H, Fd, self.dropout)
        self._attr_ids = torch.tensor(sorted(self.vocab.attribute_table()), dtype=torch.long)
        self._grammar_cache: Optional[Tensor] = None
        self.to(DTYPES[cfg.dtype])

    # -- embeddings and positions ----------------------------------------------------------------
    def embed(self, codes: Tensor) -> Tensor:
        """Tokens long ``[B, 1, T]`` -> ``sqrt(D) * embed_tokens`` ``[B, T, D]`` (no positions)."""
        if codes.dim() != 3 or codes.shape[1] != 1:
            raise ShapeError(f"musecoco backbone: embed expects codes [B, 1, T], got {list(codes.shape)}")
        return self.embed_scale * self.decoder.embed_tokens(codes[:, 0])

    def position_index(self, inp: BackboneInput, cache: Optional[LinearAttentionCache] = None) -> Tensor:
        """Position from ``<sep>`` of each input ``[B, S]`` (long; negative = no positional embedding)."""
        B, S = inp.attention_mask.shape
        if inp.position_ids is not None:
            return inp.position_ids.long()
        past = cache.seen if cache is not None else 0
        start = inp.music_start if inp.music_start is not None else (
            cache.music_start if cache is not None and cache.music_start is not None else 0)
        if cache is not None and cache.music_start is None:
            cache.music_start = start
        sep = start + self.prefix_length - 1 - (self.cfg.positions_from == "last_attribute")
        idx = torch.arange(past, past + S, device=inp.inputs_embeds.device) - sep
        return idx[None].expand(B, S)

    def positions(self, index: Tensor) -> Tensor:
        """Positional embeddings ``[B, S, D]`` for :meth:`position_index` (zero where negative)."""
        rows = torch.where(index >= 0, index + PAD + 1, torch.full_like(index, PAD))
        if self.cfg.learned_pos:
            return self.decoder.embed_positions(rows.clamp(max=self.decoder.embed_positions.num_embeddings - 1))
        return sinusoid_rows(rows, self.width)

    # -- the LM --------------------------------------------------------------------------------
    def new_cache(self) -> LinearAttentionCache:
        return LinearAttentionCache(len(self.decoder.layers))

    def output_logits(self, hidden: Tensor) -> Tensor:
        """Hidden ``[B, S, D]`` -> float32 logits ``[B, 1, S, V]``."""
        return self.decoder.output_projection(hidden).float()[:, None]

    def forward(self, inp: BackboneInput, cache: Optional[LinearAttentionCache] = None,  # type: ignore[override]
                logits_positions: Union[str, Tensor, None] = "all") -> BackboneOutput:
        """Logits ``[B, 1, S', V]`` for ``logits_positions`` (``all`` | ``last`` | ``none`` | positions
        tensor) of ``inp.inputs_embeds [B, S, D]``; ``cache`` is continued and updated in place."""
        if inp.memory is not None:
            raise ConfigError("musecoco backbone has no cross-attention; use layout prefix")
        dec = self.decoder
        x = inp.inputs_embeds.to(dec.output_projection.weight.dtype)
        x = x + self.positions(self.position_index(inp, cache)).to(x.dtype)
        x = F.dropout(x, self.dropout, self.training)
        mask = inp.attention_mask.to(x.dtype)
        for i, layer in enumerate(dec.layers):
            x, state = layer(x, mask, cache.states[i] if cache is not None else None)
            if cache is not None:
                cache.states[i] = state
        if cache is not None:
            cache.seen += x.shape[1]
        if dec.layer_norm is not None:
            x = dec.layer_norm(x)
        if isinstance(logits_positions, Tensor):
            sel = x[:, logits_positions]
        elif logits_positions in ("all", None):
            sel = x
        elif logits_positions == "last":
            sel = x[:, -1:]
        elif logits_positions == "none":
            sel = x[:, :0]
        else:
            raise ValueError(f"logits_positions={logits_positions!r}: use 'all', 'last', 'none' or a tensor")
        return BackboneOutput(logits=self.output_logits(sel), hidden=x, cache=cache)

    def constrain_logits(self, logits: Tensor, column: int) -> Tensor:
        """Keep sampling on the token grammar: logits ``[B, 1, V]`` of music column ``column`` (0 = the
        first token after the prompt) -> masked copy. With the attribute prefix, column ``c < 63`` may
        only take a class of the c-th attribute slot, column 63 only ``<sep>``; later columns never take
        attribute tokens, ``<sep>``, ``<s>``, ``<pad>`` or ``<unk>`` (``</s>`` is left to the caller)."""
        allowed = self._grammar.to(logits.device)[min(column, self._grammar.shape[0] - 1)]  # [V]
        return logits.masked_fill(~allowed, float("-inf"))

    @property
    def _grammar(self) -> Tensor:
        """Bool ``[prefix_length + 1, V]``: allowed ids per prefix column, last row = music columns."""
        if getattr(self, "_grammar_cache", None) is None:
            V, voc = self.cardinality, self.vocab
            rows = torch.zeros(self.prefix_length + 1, V, dtype=torch.bool)
            if self.prefix_length:
                table = voc.attribute_table()
                slot_of = {}  # (key index, slot) -> prefix column
                for ki, key in enumerate(ATTRIBUTE_KEYS):
                    for s in range(max(1, key.n_slots)):
                        slot_of[(ki, s)] = len(slot_of)
                for tid, (ki, s, _) in table.items():
                    rows[slot_of[(ki, s)], tid] = True
                rows[N_ATTRIBUTE_TOKENS, voc.sep] = True
            music = torch.ones(V, dtype=torch.bool)
            music[self._attr_ids] = False
            music[[voc.bos, voc.pad, voc.unk, voc.sep]] = False
            music[len(voc):] = False
            rows[-1] = music
            self._grammar_cache = rows
        return self._grammar_cache

    # -- training --------------------------------------------------------------------------------
    def drop_attributes(self, inp: BackboneInput, rng: np.random.Generator) -> BackboneInput:
        """The step mask on the attribute tokens of each row (found through ``labels``: the token at
        input position ``j + 1`` is ``labels[j]``): their input embeddings move to the masked tokens'."""
        assert inp.labels is not None
        lab = inp.labels[:, 0]  # [B, S]
        is_attr = torch.isin(lab, self._attr_ids.to(lab.device))
        x = inp.inputs_embeds
        delta = torch.zeros_like(x)
        for b in range(lab.shape[0]):
            pos = torch.nonzero(is_attr[b])[:, 0]
            if len(pos) != N_ATTRIBUTE_TOKENS or int(pos[-1]) + 1 >= x.shape[1]:
                continue  # not one whole prefix: leave the row as it is
            old = lab[b, pos]
            new_tokens = values_to_tokens(step_mask(tokens_to_values(self.vocab.decode(old.tolist())), rng))
            new = torch.tensor(self.vocab.encode(new_tokens), device=lab.device)
            changed = new != old
            if bool(changed.any()):
                e = self.decoder.embed_tokens
                delta[b, pos[changed] + 1] = (self.embed_scale * (e(new[changed]) - e(old[changed]))).to(x.dtype)
        return BackboneInput(x + delta, inp.attention_mask, inp.labels, inp.memory, inp.memory_mask,
                             inp.position_ids, inp.music_start)

    def loss(self, inp: BackboneInput) -> Tensor:
        """Mean cross-entropy on the music tokens (targets that are attribute tokens or ``<sep>`` are
        skipped, as upstream pads the target over the prefix; ``attribute_loss`` > 0 adds their loss
        with that weight). In training mode with ``attribute_dropout``, the step mask is applied first."""
        if inp.labels is None:
            raise ValueError("musecoco backbone: loss needs BackboneInput.labels")
        if self.training and self.cfg.attribute_dropout and self.cfg.attribute_prefix:
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())
            inp = self.drop_attributes(inp, np.random.default_rng(seed))
        hidden = self.forward(inp, logits_positions="none").hidden  # [B, S, D]
        labels = inp.labels[:, 0]  # [B, S]
        cond = torch.isin(labels, self._attr_ids.to(labels.device)) | (labels == self.sep_id)
        music = (labels != IGNORE_INDEX) & ~cond
        loss = self._ce(hidden, labels, music)
        if self.cfg.attribute_loss > 0 and bool(cond.any()):
            loss = loss + self.cfg.attribute_loss * self._ce(hidden, labels, cond)
        return loss

    def _ce(self, hidden: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        if not bool(keep.any()):
            return hidden.sum() * 0.0
        logits = self.decoder.output_projection(hidden[keep]).float()  # [N, V]
        return F.cross_entropy(logits, labels[keep])

