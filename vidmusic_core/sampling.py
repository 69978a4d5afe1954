"""The sampling loop of every token LM (DESIGN §7): :meth:`vidmusic_core.components.TokenLM.generate` runs it.

Batched, ``torch.inference_mode``, KV cache, classifier-free guidance by batching conditional and null
rows (``logits = uncond + r * (cond - uncond)``, i.e. ``r*cond + (1-r)*uncond``; null = the
condition's ``null_like()`` and empty text), top-k / top-p / temperature, the codec's delay pattern,
an optional EOS (banned before ``min_frames``), per-item seeds (one ``torch.Generator`` per row,
no global reseeding) and per-row stop masks. Cross-attention memory is passed with the prompt only;
backbones with cross-attention keep its keys/values in their cache.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .codecs.delay import apply_delays, undo_delays
from .components import SequenceLayout, TokenLM
from .errors import ConfigError
from .interrupt import generation_step
from .layouts.music import delay_pad, effective_delays
from .types import BackboneInput, Condition, MusicTokens, SamplingConfig, check_shapes


def merge_forced(*parts: Tensor | None) -> Tensor | None:
    """Overlay forced-code tensors ``[B, K, F_i]`` (``-1`` = free): later parts win where they are set."""
    given = [p for p in parts if p is not None]
    if not given:
        return None
    n = max(p.shape[2] for p in given)
    out = torch.full((*given[0].shape[:2], n), -1, dtype=torch.long, device=given[0].device)
    for p in given:
        out[:, :, : p.shape[2]] = torch.where(p >= 0, p.to(out.device), out[:, :, : p.shape[2]])
    return out


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Mask logits ``[..., V]`` outside the top-k and/or the top-p nucleus with -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > top_p  # keep the smallest set with mass >= top_p
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return logits


def sample(logits: Tensor, generators: Sequence[torch.Generator], temperature: float = 1.0) -> Tensor:
    """Sample ``[B, K, V] -> [B, K]`` with one generator per row; temperature 0 = argmax."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = (logits.float() / temperature).softmax(dim=-1)
    return torch.stack([torch.multinomial(probs[b], 1, generator=generators[b])[:, 0] for b in range(probs.shape[0])])


def _repetition_aware(codes: Tensor, logits: Tensor, history: Tensor, sc: SamplingConfig,
                      gens: Sequence[torch.Generator]) -> Tensor:
    """InspireMusic's RAS (``utils/common.py::ras_sampling``): where the sampled code already fills at least
    ``ras_tau`` of the last ``ras_window`` columns, sample again from the unfiltered distribution.
    ``codes [B, K]``, ``logits [B, K, V]``, ``history [B, K, W]``."""
    repeats = (history == codes[..., None]).sum(dim=-1)  # [B, K]
    redo = repeats >= sc.ras_window * sc.ras_tau
    if not bool(redo.any()):
        return codes
    again = sample(logits, gens, max(sc.temperature, 1e-6))
    return torch.where(redo, again, codes)


def _forward_last(backbone: TokenLM, inp: BackboneInput, cache: Any) -> Tensor:
    """Logits of the last position ``[B, K, V]`` (the backbone computes only those)."""
    return backbone(inp, cache, logits_positions="last").logits[:, :, -1]


@torch.inference_mode()
def generate_tokens(layout: SequenceLayout, backbone: TokenLM, condition: Condition, n_frames: int,
                    seeds: Sequence[int], sampling: SamplingConfig | None = None, text: Sequence[str] | None = None,
                    seconds: Tensor | None = None, delays: Sequence[int] = (), frame_rate: float | None = None,
                    forced: Tensor | None = None, controller: Any = None) -> MusicTokens:
    """Generate ``n_frames`` music frames per item: ``MusicTokens(codes [B, K, n_frames], mask)``.

    ``seeds``: one per item (stored with the output by the caller). ``delays``: the codec's pattern.
    ``forced``: long ``[B, K, F]`` codes to take instead of sampling at the first ``F`` (delayed)
    columns where ``>= 0`` (e.g. a symbolic attribute prefix the user sets); ``-1`` = sample. The backbone's
    ``constrain_logits(logits, column)`` (a token grammar; identity by default) is applied at every column,
    and an ``eos_id`` inside its vocabulary is banned until ``min_frames``. ``controller(column, codes [B, K])``,
    called with each sampled column, returns codes ``[B, K]`` to force at the next one (``-1`` = sample;
    e.g. a per-bar control token set from the video); where ``forced`` sets a column too, ``forced`` wins.
    """
    sc = sampling or SamplingConfig()
    B, K, V = condition.batch_size, backbone.n_codebooks, backbone.cardinality
    if len(seeds) != B:
        raise ValueError(f"generate_tokens: {len(seeds)} seeds for {B} items")
    d = effective_delays(delays, K)
    n_cols = n_frames + max(d)
    guided = sc.cfg_coef != 1.0
    cond = Condition.cat_batch([condition, condition.null_like()]) if guided else condition
    txt = None if text is None else (list(text) + [""] * B if guided else list(text))
    secs = None if seconds is None else (torch.cat([seconds, seconds]) if guided else seconds)
    gens = [torch.Generator(device=condition.tokens.device).manual_seed(int(s)) for s in seeds]

    prior = layout.logit_prior(condition) if sc.prior_weight != 0 else None  # [B, K, V] log-probs, or None
    if prior is not None:
        check_shapes("logit_prior", "log-probabilities", prior, (B, K, V))
        prior = sc.prior_weight * prior
    cache = backbone.new_cache()
    logits = _forward_last(backbone, layout.prompt(backbone, cond, txt, secs, cfg_null=guided), cache)  # [B', K, V']
    pad = delay_pad(backbone)
    out = torch.full((B, K, n_cols), pad, dtype=torch.long, device=condition.tokens.device)
    stopped = torch.zeros(B, dtype=torch.bool, device=out.device)
    lengths = torch.full((B,), n_frames, dtype=torch.long, device=out.device)
    start = torch.tensor(d, device=out.device)
    eos_id = backbone.eos_id
    min_frames = max(sc.min_frames, int(sc.min_length * n_frames))  # EOS banned before this many frames
    delayed = max(d) > 0
    pending: Tensor | None = None
    step_mask = torch.ones(2 * B if guided else B, 1, dtype=torch.bool, device=out.device)
    if forced is not None and (forced.shape[0] != B or forced.shape[1] != K):
        raise ValueError(f"generate_tokens: forced codes {list(forced.shape)} for {B} items x {K} codebooks")
    for c in range(n_cols):
        generation_step(c, n_cols, "token column")  # a stop request (vidmusic_core.interrupt) ends it here
        if guided:
            logits = logits[B:] + sc.cfg_coef * (logits[:B] - logits[B:])
        if prior is not None:  # a product of experts with the layout's prior over the codes
            logits = torch.cat([logits[..., :V] + prior.to(logits.dtype), logits[..., V:]], dim=-1)
        allow_eos = sc.use_eos and eos_id is not None and c >= min_frames + max(d)
        if allow_eos and eos_id >= V:  # an EOS id past the codes (audio backbones): only it, on codebook 0
            logits = logits.clone()
            eos_logit = logits[:, 0, eos_id].clone()
            logits[..., V:] = float("-inf")
            logits[:, 0, eos_id] = eos_logit
        else:
            logits = logits[..., :V]  # extra ids (e.g. an EOS past the codes) off: a view, no copy
            if eos_id is not None and eos_id < V and not allow_eos:  # an EOS inside the vocabulary, not yet
                logits = logits.clone()
                logits[:, 0, eos_id] = float("-inf")
        logits = backbone.constrain_logits(logits, c)
        filtered = filter_logits(logits, sc.top_k, sc.top_p)
        codes = sample(filtered, gens, sc.temperature)  # [B, K]
        if sc.ras_window > 0 and c > 0:
            codes = _repetition_aware(codes, logits, out[:, :, max(0, c - sc.ras_window):c], sc, gens)
        if pending is not None:
            codes = torch.where(pending >= 0, pending.to(codes.device), codes)
        if forced is not None and c < forced.shape[2]:  # forced codes (a prefix, a prompt) win over the controller
            codes = torch.where(forced[:, :, c] >= 0, forced[:, :, c].to(codes.device), codes)
        if allow_eos:
            ended = (codes[:, 0] == eos_id) & ~stopped
            lengths[ended] = c - max(d)
            stopped |= ended
            codes[:, 0] = codes[:, 0].masked_fill(codes[:, 0] == eos_id, pad)
        if delayed or c >= n_frames:
            live = (c >= start) & (c < start + n_frames)  # [K] codebooks with a real code at column c
            codes = torch.where(live[None], codes, torch.full_like(codes, pad))
        out[:, :, c] = codes
        pending = controller(c, codes) if controller is not None else None
        if c == n_cols - 1 or (allow_eos and bool(stopped.all())):  # (no host sync while EOS is off)
            break
        step_codes = torch.cat([codes, codes]) if guided else codes
        x = layout.step_embeds(backbone, step_codes[:, :, None], c, cond)  # [B', 1, D]
        step = BackboneInput(inputs_embeds=x, attention_mask=step_mask)
        logits = _forward_last(backbone, step, cache)
    codes = undo_delays(out, d, n_frames)  # [B, K, n_frames]
    mask = torch.arange(n_frames, device=out.device)[None] < lengths[:, None]
    return MusicTokens(codes, mask, frame_rate)


class ContinuationLayout(SequenceLayout):
    """``base`` layout continuing from music ``prompt_codes [B, K, P]`` (undelayed).

    ``prompt`` = base prompt + the embeddings of delayed columns ``0 .. P-1`` (every code in them is known);
    ``step_embeds`` at local column ``c`` is the base's at column ``P + c``, with codebook k's code taken from
    the prompt while ``c < delays[k]`` (the sampling loop holds the pad there). Rows are repeated when the
    loop doubles the batch for CFG.
    """

    def __init__(self, base: SequenceLayout, prompt_codes: Tensor, delays: Sequence[int]) -> None:
        super().__init__()
        self.base = base
        self.prompt_codes = prompt_codes
        self.delays = effective_delays(delays, prompt_codes.shape[1])

    def _rows(self, n: int) -> Tensor:
        p = self.prompt_codes
        if n % p.shape[0]:
            raise ConfigError(f"ContinuationLayout: {n} rows for a prompt of {p.shape[0]}")
        return p.repeat(n // p.shape[0], 1, 1)

    def forward(self, backbone: TokenLM, condition: Condition, music: MusicTokens,  # type: ignore[override]
                text: Sequence[str] | None = None, **kw: Any) -> BackboneInput:
        return self.base(backbone, condition, music, text, **kw)

    def prompt(self, backbone: TokenLM, condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None, cfg_null: bool = False) -> BackboneInput:
        inp = self.base.prompt(backbone, condition, text, seconds, cfg_null)
        B, P = inp.inputs_embeds.shape[0], self.prompt_codes.shape[2]
        delayed = apply_delays(self._rows(B), self.delays, delay_pad(backbone))[:, :, :P]  # [B, K, P]
        cols = [self.base.step_embeds(backbone, delayed[:, :, c:c + 1], c, condition) for c in range(P)]
        x = torch.cat([inp.inputs_embeds, *[c.to(inp.inputs_embeds.dtype) for c in cols]], dim=1)  # [B, S0 + P, D]
        mask = torch.cat([inp.attention_mask, inp.attention_mask.new_ones(B, P)], dim=1)
        pos = inp.position_ids
        if pos is not None:
            pos = torch.cat([pos, pos[:, -1:] + torch.arange(1, P + 1, device=pos.device)], dim=1)
        return BackboneInput(x, mask, memory=inp.memory, memory_mask=inp.memory_mask, position_ids=pos,
                             music_start=inp.music_start)

    def logit_prior(self, condition: Condition) -> Tensor | None:
        return self.base.logit_prior(condition)

    def step_embeds(self, backbone: TokenLM, codes: Tensor, position: int, condition: Condition) -> Tensor:
        P = self.prompt_codes.shape[2]
        if position < max(self.delays):
            codes = codes.clone()
            rows = self._rows(codes.shape[0])
            for k, d in enumerate(self.delays):
                if position < d:
                    codes[:, k, 0] = rows[:, k, P + position - d]
        return self.base.step_embeds(backbone, codes, P + position, condition)
