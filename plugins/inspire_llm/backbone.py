"""The `inspire` backbone: InspireMusic's Qwen2 language model over audio tokens.

The parameter layout mirrors FunAudioLLM/InspireMusic ``inspiremusic/llm/llm.py`` class ``LLM`` and
``inspiremusic/transformer/qwen_encoder.py`` ``QwenEmbeddingEncoder`` (Apache-2.0), so an upstream
``llm.pt`` (a flat ``LLM.state_dict()``) loads strictly. D = width, A = ``audio_vocab``, K = codebooks::

    text_embedding.weight                [V_text, D]   the same tensor as llm.model.model.embed_tokens.weight
    chorus_embedding.weight              [5, D]        structure labels, see STRUCTURE_LABELS
    llm_embedding.weight                 [2, D]        row 0 sos, row 1 task id ([3, D] with video_task: row 2)
    llm.model.model.*                    transformers Qwen2Model (layers, norm; rotary has no weights)
    llm.model.lm_head.weight             [V_text, D]   kept only so llm.pt loads strictly; never computed
    llm_decoder.{weight,bias}            [K*(A+1), D]  audio logits per codebook, EOS = A
    speech_embedding.weight              [K*A, D]      audio token embeddings (codebook k uses rows k*A..)
    spk_embed_affine_layer.{weight,bias} [D, 192]      unused (upstream too), present in the checkpoint
    time_embedding                       no weights    sinusoidal seconds -> [D], computed and fp16-rounded as upstream

Codebooks: InspireMusic predicts one token stream (K = 1, exactly the upstream layout). With K > 1
(e.g. the ``rvq_mel`` codec's 4 codebooks) the backbone runs MusicGen-style parallel heads: the input
embedding of a frame is the sum of its K code embeddings and ``llm_decoder`` has K heads of A + 1
(the generation loop applies the codec's delay pattern). An upstream ``llm.pt`` needs K = 1.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmusic_core import (IGNORE_INDEX, TokenLM, path_field, BackboneInput, BackboneOutput, ConfigError, ShapeError,
                           select_positions)

from . import decode  # light: it imports transformers when a step first runs
from .decode import DECODE_KERNELS

if TYPE_CHECKING:
    from transformers import Qwen2Config

    from .cache import InspireCache

# transformers (and the module that needs it at import, cache) is imported on first use, not with the plugin:
# importing it costs ~4 s of CPU, which every CLI command (``vidmusic --help`` included) paid before.


def _is_inspire_cache(cache: Any) -> bool:
    """``isinstance(cache, InspireCache)`` without importing transformers for a ``None`` cache."""
    if cache is None:
        return False
    from .cache import InspireCache

    return isinstance(cache, InspireCache)


@functools.cache
def cache_kwarg() -> str:
    """The ``Qwen2Model.forward`` argument that takes the KV cache: ``cache`` (transformers >= 5.25, where
    ``past_key_values`` is deprecated, to be removed in 5.40), else ``past_key_values``. Read from the signature
    (``deprecate_kwarg`` keeps it) because an unknown keyword would vanish into ``**kwargs`` unnoticed."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

    return "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"
#: structure label -> chorus_embedding row. Upstream's *training* map (dataset/processor.py CHORUS);
#: its inference CLIs use a different one (verse 1, chorus 2), which we do not follow.
STRUCTURE_LABELS = {"intro": 0, "chorus": 1, "verse": 2, "verse1": 2, "verse2": 3, "outro": 4}
#: llm_embedding rows
SOS, TASK, VIDEO_TASK = 0, 1, 2
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Qwen2 shapes: tiny (ours), base = Qwen2-0.5B, 1.5b / 1.5b-long = Qwen2.5-1.5B (public configs).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, text_vocab=256, audio_vocab=256,
                 context_length=4096),
    "base": dict(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, text_vocab=151936,
                 audio_vocab=4096, context_length=20000),
    "1.5b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960, text_vocab=151936,
                 audio_vocab=4096, context_length=28000),
}
PRESETS["1.5b-long"] = PRESETS["1.5b"]


class SinusoidalEmbedding(nn.Module):
    """Seconds ``[...]`` -> ``[..., dim]`` = [sin(t f_i) ‖ cos(t f_i)], f_i = 1e4^(-i/(dim/2-1)), rounded to fp16.

    The computation of upstream ``inspiremusic/llm/llm.py`` ``SinusoidalEmbedding.forward``, op for op: the
    frequencies in float32 (``torch.tensor(log(10000) / (half_dim - 1))``, an integer ``arange``), the product
    ``t[..., None] * f`` in the promoted dtype of ``t`` and float32 (float64 for upstream's float64 seconds),
    sin ‖ cos, then ``.to(torch.float16)`` (the caller casts it on).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        f = torch.tensor(math.log(10000) / (half - 1), dtype=torch.float32, device=t.device)
        f = torch.exp(torch.arange(half, device=t.device) * -f)  # [dim/2] float32
        angles = t[..., None] * f  # [..., dim/2]
        return torch.cat((angles.sin(), angles.cos()), dim=-1).to(torch.float16)


class QwenLM(nn.Module):
    """Holds ``model`` = transformers ``Qwen2ForCausalLM`` (upstream ``QwenEmbeddingEncoder``), so its
    weights live under ``llm.model.``. Only ``model.model`` (the ``Qwen2Model``) is ever run."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        from transformers import Qwen2ForCausalLM

        self.model = Qwen2ForCausalLM(config)


def grow_llm_embedding(weight: Tensor, rows: int = 3) -> Tensor:
    """Grow an upstream ``llm_embedding.weight`` ``[2, D]`` to ``[rows, D]``, keeping rows 0 (sos) and
    1 (task). New rows start as copies of the task row (so a new task starts as text-to-music)."""
    if weight.shape[0] >= rows:
        return weight
    extra = weight[TASK:TASK + 1].expand(rows - weight.shape[0], -1)
    return torch.cat([weight, extra], dim=0).clone()


@dataclass
class InspireConfig:
    """Options of the `inspire` backbone (``backbone.*``).

    ``size``: preset ``tiny`` | ``base`` (Qwen2-0.5B shape, D 896) | ``1.5b`` | ``1.5b-long`` (Qwen2.5-1.5B
    shape, D 1536). ``qwen_dir``: a local directory with a Qwen ``config.json`` (and tokenizer files):
    its sizes replace the preset's, and its tokenizer encodes text; relative in a saved component's
    ``config.yaml`` (an import writes ``qwen``): relative to that directory (a ``path_field``, resolved by ``load_component``).
    Explicit ``hidden``, ``layers``, ``heads``, ``kv_heads``, ``intermediate``, ``text_vocab``,
    ``tie_word_embeddings``, ``rope_theta``, ``rms_norm_eps`` win over both. ``audio_vocab``: A (None: preset;
    4096 upstream, 256 tiny = the ``rvq_mel`` codebook size). ``n_codebooks``: K (1 = upstream; >1 = parallel heads, see module doc).
    ``video_task``: ``llm_embedding`` has a third row for the video task. ``dtype``: fp32 | bf16 | fp16.
    ``attn``: transformers attention implementation (``sdpa``, ``eager``, ``flash_attention_2``).
    ``context_length``: longest sequence the generation loop should use (None: preset).
    ``colmajor_weights``: keep the Qwen2 layers' and ``llm_decoder``'s ``Linear`` weights with more rows than
    columns (q/k/v, o, gate, up, decoder) transposed in memory (same values and shapes; see
    :meth:`InspireBackbone.colmajor_weights_`): a CPU speed option for batch 1-2 decoding, off by default.
    ``decode_kernels``: ``auto`` (default) | ``packed`` | ``plain`` (``default`` = the old name of ``plain``):
    which hand-written single-token decode step replaces transformers' forward (:mod:`inspire_llm.decode`).
    ``auto``: the packed step wherever it applies (fp32 on a CPU with oneDNN, inference) — q/k/v and gate/up
    as one matrix product each, weights prepared for the batch size (batch 1: column-major copies; batch >= 2:
    MKL's packed GEMM format for that batch size, or oneDNN's prepacked format without MKL), fewer small ops
    (fused RMSNorm, RoPE on q and k at once), the same tokens as ``plain`` (logits to ~1e-6), at the cost of
    up to ~1.75x the layers' weight memory in extra copies built on first use; elsewhere (GPU, bf16/fp16, autograd) the plain
    step, silently. ``packed``: the same, but warns once when it falls back. ``plain``: the step over the
    model's own modules. Parameters, checkpoints and the prefill are unchanged.
    """

    size: str = "tiny"
    qwen_dir: Optional[str] = path_field()  # relative: to the component directory (movable imports)
    hidden: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    kv_heads: Optional[int] = None
    intermediate: Optional[int] = None
    text_vocab: Optional[int] = None
    tie_word_embeddings: Optional[bool] = None
    rope_theta: Optional[float] = None
    rms_norm_eps: Optional[float] = None
    audio_vocab: Optional[int] = None
    n_codebooks: int = 1
    video_task: bool = False
    dtype: str = "fp32"
    attn: str = "sdpa"
    grad_checkpointing: bool = False
    context_length: Optional[int] = None
    colmajor_weights: bool = False
    decode_kernels: str = "auto"


def read_qwen_config(qwen_dir: Union[str, Path]) -> Qwen2Config:
    """The ``Qwen2Config`` of ``qwen_dir/config.json`` (read locally; errors name the file)."""
    path = Path(qwen_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"backbone.qwen_dir={str(qwen_dir)!r} has no config.json (a Qwen2 model config)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if data.get("model_type", "qwen2") != "qwen2":
        raise ConfigError(f"{path}: model_type {data.get('model_type')!r}, expected 'qwen2' (Qwen2 / Qwen2.5)")
    from transformers import Qwen2Config

    return Qwen2Config.from_dict(data)


def build_qwen_config(cfg: InspireConfig) -> Qwen2Config:
    """Preset, then ``qwen_dir/config.json``, then explicit fields -> the ``Qwen2Config`` to build."""
    from transformers import Qwen2Config

    if cfg.size not in PRESETS:
        raise ConfigError(f"backbone.size={cfg.size!r} is not a preset; choose one of {', '.join(PRESETS)}")
    p = PRESETS[cfg.size]
    if cfg.qwen_dir is not None:
        q = read_qwen_config(cfg.qwen_dir)
    else:
        q = Qwen2Config(hidden_size=p["hidden"], num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                        num_key_value_heads=p["kv_heads"], intermediate_size=p["intermediate"],
                        vocab_size=p["text_vocab"], tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
                        max_position_embeddings=32768, use_sliding_window=False)
    over = {"hidden_size": cfg.hidden, "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads,
            "num_key_value_heads": cfg.kv_heads, "intermediate_size": cfg.intermediate, "vocab_size": cfg.text_vocab,
            "tie_word_embeddings": cfg.tie_word_embeddings, "rms_norm_eps": cfg.rms_norm_eps}
    data = q.to_dict()
    data.update({k: v for k, v in over.items() if v is not None})
    if cfg.rope_theta is not None:
        data["rope_parameters"] = {"rope_type": "default", "rope_theta": float(cfg.rope_theta)}
    if data["num_hidden_layers"] != q.num_hidden_layers:
        data.pop("layer_types", None)  # recomputed for the new depth
    q = Qwen2Config.from_dict(data)
    if q.hidden_size % q.num_attention_heads or q.num_attention_heads % q.num_key_value_heads:
        raise ConfigError(f"backbone: hidden {q.hidden_size}, heads {q.num_attention_heads}, kv_heads "
                          f"{q.num_key_value_heads}: hidden must divide by heads and heads by kv_heads")
    q._attn_implementation = cfg.attn
    return q


class InspireBackbone(TokenLM):
    """InspireMusic's LM: Qwen2 driven with ``inputs_embeds`` + its own audio embedding and decoder.

    ``cardinality`` = A (codec codes 0..A-1); logits have A + 1 entries, the last (``eos_id`` = A) is EOS.
    """

    Config = InspireConfig
    supported_layouts = ("prefix", "aligned")
    takes_text = True
    takes_time = True
    takes_structure = True

    def __init__(self, cfg: Optional[InspireConfig] = None) -> None:
        super().__init__()
        cfg = InspireConfig() if cfg is None else cfg
        if cfg.dtype not in DTYPES:
            raise ConfigError(f"backbone.dtype={cfg.dtype!r}; choose one of {', '.join(DTYPES)}")
        if cfg.n_codebooks < 1:
            raise ConfigError(f"backbone.n_codebooks={cfg.n_codebooks} must be >= 1")
        if cfg.decode_kernels == "default":  # the old name of `plain`
            cfg = dataclasses.replace(cfg, decode_kernels="plain")
        if cfg.decode_kernels not in DECODE_KERNELS:
            raise ConfigError(f"backbone.decode_kernels={cfg.decode_kernels!r}; choose one of "
                              f"{', '.join(DECODE_KERNELS)}")
        self.cfg = cfg
        qcfg = build_qwen_config(cfg)
        preset = PRESETS[cfg.size]
        D, K = qcfg.hidden_size, cfg.n_codebooks
        A = cfg.audio_vocab if cfg.audio_vocab is not None else preset["audio_vocab"]
        self.width, self.n_codebooks, self.cardinality, self.eos_id = D, K, A, A
        self.context_length = cfg.context_length or preset["context_length"]

        llm = QwenLM(qcfg)
        # attribute order = upstream LLM.__init__ order (state_dict key order)
        self.text_embedding = llm.model.model.embed_tokens  # same module, saved under both keys
        self.chorus_embedding = nn.Embedding(5, D)
        self.llm_embedding = nn.Embedding(3 if cfg.video_task else 2, D)
        self.llm = llm
        self.llm_decoder = nn.Linear(D, K * (A + 1))
        self.speech_embedding = nn.Embedding(K * A, D)
        self.spk_embed_affine_layer = nn.Linear(192, D)
        self.time_embedding = SinusoidalEmbedding(D)
        self.to(DTYPES[cfg.dtype])
        if cfg.colmajor_weights:
            self.colmajor_weights_()
        if cfg.grad_checkpointing:
            self.llm.model.gradient_checkpointing_enable()
        self._tokenizer: Any = None
        self._pack = decode.DecodePack()
        self._packed_warned = False

    def colmajor_weights_(self) -> "InspireBackbone":
        """Store every 2-D ``Linear`` weight of the Qwen2 layers and ``llm_decoder`` with at least as many rows
        as columns column-major (``w.t().contiguous().t()``, in place: same values, shapes and parameters).

        Why: a batch-1 step is one matrix-vector product per weight, and MKL's reads a ``[out, in]`` row-major
        weight at ~13 GB/s on the CPU of our benchmarks but a column-major one at ~20 GB/s (and batch 2 ~2x);
        from batch ~4 on (matrix-matrix) it is ~10% slower, and prefill ~4% slower. Outputs change only by
        summation order (1e-6). ``load_state_dict`` copies into the existing layout. The weights are then
        non-contiguous: ``vidmusic_core.checkpoint.save_weights`` writes contiguous copies, but code calling
        ``safetensors.save_file`` or ``.view`` on them directly needs ``.contiguous()`` first.
        """
        mods = [m for m in self.qwen.layers.modules() if isinstance(m, nn.Linear)] + [self.llm_decoder]
        for m in mods:
            w = m.weight
            if w.dim() == 2 and w.shape[0] >= w.shape[1] and w.stride(0) != 1:
                w.data = w.data.t().contiguous().t()
        return self

    def train(self, mode: bool = True) -> "InspireBackbone":
        """As ``nn.Module.train``; entering training also frees the ``decode_kernels: packed`` weights."""
        if mode:
            self._pack.packs.clear()
        return super().train(mode)

    # -- embeddings ----------------------------------------------------------------------------
    @property
    def qwen(self) -> nn.Module:
        """The transformers ``Qwen2Model`` (what ``forward`` runs)."""
        return self.llm.model.model

    def embed(self, codes: Tensor) -> Tensor:
        """Audio codes long ``[B, K, T]`` -> ``[B, T, D]`` (sum over codebooks of ``speech_embedding``)."""
        if codes.dim() != 3 or codes.shape[1] != self.n_codebooks:
            raise ShapeError(f"inspire backbone: embed expects codes [B, {self.n_codebooks}, T], got {list(codes.shape)}")
        if self.n_codebooks == 1:
            return self.speech_embedding(codes[:, 0])  # [B, T, D] (the sum below over one codebook)
        offsets = torch.arange(self.n_codebooks, device=codes.device)[None, :, None] * self.cardinality
        return self.speech_embedding(codes + offsets).sum(dim=1)  # [B, T, D]

    def embed_text(self, ids: Tensor) -> Tensor:
        """Text ids long ``[B, L]`` -> ``[B, L, D]`` (Qwen's input embedding)."""
        return self.text_embedding(ids)

    def embed_structure(self, labels: Union[Tensor, Sequence[str]]) -> Tensor:
        """Structure ids long ``[B, S]`` -> ``[B, S, D]``, or one label per row (``intro``, ``verse``, ``chorus``,
        ``outro``, … see :data:`STRUCTURE_LABELS`) -> ``[B, 1, D]``."""
        if not isinstance(labels, Tensor):
            bad = sorted({str(x) for x in labels if x not in STRUCTURE_LABELS})
            if bad:
                raise ConfigError(f"structure label(s) {bad} unknown; use one of {', '.join(STRUCTURE_LABELS)}")
            labels = torch.tensor([[STRUCTURE_LABELS[x]] for x in labels], device=self.chorus_embedding.weight.device)
        return self.chorus_embedding(labels)

    def embed_time(self, seconds: Tensor) -> Tensor:
        """Seconds float ``[B, S]`` -> ``[B, S, D]`` sinusoidal (fp16-rounded as upstream), model dtype.

        Seconds are taken as float64, as upstream's inference builds them (``cli/inference.py`` and
        ``bin/inference.py``: ``torch.tensor([time_start], dtype=torch.float64)``; its training batches hold
        the parquet's doubles too), so the rows equal upstream's bit for bit."""
        return self.time_embedding(seconds.to(torch.float64)).to(self.llm_decoder.weight.dtype)

    @property
    def n_special_rows(self) -> int:  # type: ignore[override]
        """Rows of ``llm_embedding`` (sos, task, and video task with ``video_task``)."""
        return int(self.llm_embedding.num_embeddings)

    def tokenize(self, text: str) -> list[int]:
        """Text -> ids of :attr:`tokenizer` (for :meth:`embed_text`)."""
        return list(self.tokenizer.encode(text))

    def special(self, row: int) -> Tensor:
        """Row ``row`` of ``llm_embedding``: ``[D]`` (:data:`SOS` 0, :data:`TASK` 1, :data:`VIDEO_TASK` 2)."""
        if row >= self.llm_embedding.num_embeddings:
            raise ConfigError(f"llm_embedding has {self.llm_embedding.num_embeddings} rows; row {row} needs "
                              "backbone.video_task=true")
        return self.llm_embedding.weight[row]

    @property
    def tokenizer(self) -> Any:
        """Text tokenizer: Qwen's from ``qwen_dir`` when it has tokenizer files, else bytes (loaded lazily)."""
        if self._tokenizer is None:
            from .tokenizer import load_tokenizer

            tok = load_tokenizer(self.cfg.qwen_dir)
            if tok.vocab_size > self.text_embedding.num_embeddings:
                raise ConfigError(f"text tokenizer has {tok.vocab_size} ids but text_embedding only "
                                  f"{self.text_embedding.num_embeddings} rows; raise backbone.text_vocab")
            self._tokenizer = tok
        return self._tokenizer

    # -- the LM --------------------------------------------------------------------------------
    def new_cache(self) -> InspireCache:
        """An empty ``InspireCache``: a transformers ``DynamicCache`` written in place that also keeps the
        padding mask (buffers capped at ``context_length``)."""
        from .cache import InspireCache

        return InspireCache(self.llm.model.config, max_length=self.context_length)

    def _mask_and_positions(self, inp: BackboneInput, cache: Any) -> tuple[Optional[Tensor], Optional[Tensor], bool]:
        """Bool mask ``[B, S_past + S]`` (None = no padding anywhere), position ids ``[B, S]`` (None = the
        default ``past .. past+S-1``) and whether every new token is real.

        Positions count real tokens only (cumsum of the mask), as transformers' ``generate()`` does, so a
        padded row sees the positions of the row alone (RoPE is relative, so this changes logits only by
        rounding; the masks are what make a padded row equal the row alone).
        """
        new = inp.attention_mask
        if new.dtype != torch.bool:
            new = new.to(torch.bool)
        past = cache.get_seq_length() if cache is not None else 0
        past_mask = getattr(cache, "mask", None)
        new_real = bool(new.all())  # the one host sync of a step
        if past_mask is None and new_real:
            full = None
        else:
            if past_mask is None:
                past_mask = new.new_ones(new.shape[0], past)
            full = torch.cat([past_mask, new], dim=1)  # [B, S_past + S]
        if cache is not None:
            if _is_inspire_cache(cache):
                cache.mask = full
            elif full is not None:
                raise ValueError("inspire backbone: a padded batch with a cache needs backbone.new_cache()")
        pos = inp.position_ids
        if pos is None and full is not None:
            if new.shape[1] == 1 and new_real:
                pos = full.sum(dim=1, keepdim=True) - 1  # [B, 1] = the last of the cumsum below
            else:
                pos = (full.long().cumsum(dim=1) - 1).clamp(min=0)[:, past:]  # [B, S]
        return full, pos, new_real

    def _decode_step(self, x: Tensor, cache: InspireCache, full: Optional[Tensor], pos: Optional[Tensor],
                     logits_positions: Union[str, Tensor, None]) -> Optional[BackboneOutput]:
        """A hand-written single-token step (:mod:`inspire_llm.decode`) where one applies, else None.

        ``decode_kernels``: ``auto`` / ``packed`` take :func:`~inspire_llm.decode.packed_step` where it applies
        (``packed`` warns once where it does not), ``plain`` (and the fallback) :func:`~inspire_llm.decode.plain_step`.
        """
        if not decode.fast_step_ok(self.qwen, self.training):
            return None
        kern = self.cfg.decode_kernels
        if kern in ("auto", "packed") and isinstance(logits_positions, str) and logits_positions in ("last", "all"):
            if decode.packed_applies(x):
                B = x.shape[0]
                hidden, logits = decode.packed_step(self.qwen, self.llm_decoder, self._pack, x, cache, full, pos)
                logits = logits.float().view(B, 1, self.n_codebooks, self.cardinality + 1).transpose(1, 2)
                return BackboneOutput(logits=logits, hidden=hidden.view(B, 1, -1), cache=cache)
            if kern == "packed" and not self._packed_warned and not torch.is_grad_enabled():
                self._packed_warned = True
                warnings.warn(f"backbone.decode_kernels=packed needs fp32 on a CPU with oneDNN (got {x.dtype} on "
                              f"{x.device.type}); decoding with the plain step", RuntimeWarning, stacklevel=4)
        hidden = decode.plain_step(self.qwen, x, cache, full, pos)  # [B, 1, D]
        sel = select_positions(hidden, logits_positions)
        return BackboneOutput(logits=self.decode_logits(sel), hidden=hidden, cache=cache)

    def decode_logits(self, hidden: Tensor) -> Tensor:
        """Hidden ``[B, S, D]`` -> float32 logits ``[B, K, S, A+1]`` (``llm_decoder``; EOS = A)."""
        B, S, _ = hidden.shape
        logits = self.llm_decoder(hidden).float()  # [B, S, K*(A+1)]
        return logits.view(B, S, self.n_codebooks, self.cardinality + 1).transpose(1, 2)

    def forward(self, inp: BackboneInput, cache: Any = None,  # type: ignore[override]
                logits_positions: Union[str, Tensor, None] = "all") -> BackboneOutput:
        """Run Qwen2 on ``inp.inputs_embeds [B, S, D]``; logits ``[B, K, S', A+1]`` for the chosen positions.

        ``logits_positions``: ``"all"`` (S' = S), ``"last"`` (S' = 1, for generation), ``"none"`` (S' = 0)
        or a long tensor of positions ``[S']``. ``cache``: from :meth:`new_cache` (updated in place and
        returned); None runs without one (training). ``hidden`` is the final-norm output ``[B, S, D]``.
        """
        if inp.memory is not None:
            raise ConfigError("inspire backbone has no cross-attention; use layout prefix or aligned, not cross")
        x = inp.inputs_embeds
        if x.dtype != self.llm_decoder.weight.dtype:
            x = x.to(self.llm_decoder.weight.dtype)
        mask, pos, new_real = self._mask_and_positions(inp, cache)
        if x.shape[1] == 1 and new_real and inp.position_ids is None and _is_inspire_cache(cache):
            step = self._decode_step(x, cache, mask, pos, logits_positions)
            if step is not None:
                return step
        out = self.qwen(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=cache is not None,
                        **{cache_kwarg(): cache})
        hidden = out.last_hidden_state  # [B, S, D]
        sel = select_positions(hidden, logits_positions)
        return BackboneOutput(logits=self.decode_logits(sel), hidden=hidden, cache=cache)

    def loss(self, inp: BackboneInput) -> Tensor:
        """Mean cross-entropy over labelled tokens (``labels [B, K, S]`` != IGNORE_INDEX), as upstream
        (``lsm_weight`` 0, length-normalised); logits are computed only at labelled positions."""
        if inp.labels is None:
            raise ValueError("inspire backbone: loss needs BackboneInput.labels")
        hidden = self.forward(inp, logits_positions="none").hidden  # [B, S, D]
        labels = inp.labels.transpose(1, 2)  # [B, S, K]
        keep = (labels != IGNORE_INDEX).any(dim=-1)  # [B, S]
        logits = self.decode_logits(hidden[keep][None])[0]  # [K, N, A+1]
        target = labels[keep].T  # [K, N]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)
