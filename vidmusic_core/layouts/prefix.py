"""``prefix`` and ``aligned`` layouts: the condition before the music, and/or added to it in time.

``prefix`` (InspireMusic's order, extended for video)::

    [sos] [time_start] [time_end] [structure] [text …] [sos] [condition …] [task] [music col 0] [music col 1] …

The condition is reduced (``reduce``: per-frame mean/first token, or bins of ``1/rate`` s — the whole
clip stays in view, nothing is cut) and projected to the backbone width by ``visual_feature_proj``.
``sos``/``task`` are the backbone's ``special`` rows when it declares ``n_special_rows`` (InspireMusic's
``llm_embedding``: sos 0, task 1, video task 2), else the layout's own ``special_embedding``. Time rows
use the backbone's ``embed_time`` when it ``takes_time``; the structure row (``layout.structure``,
InspireMusic's ``chorus_embedding``) its ``embed_structure`` when it ``takes_structure``; text its
``tokenize`` + ``embed_text`` when it ``takes_text`` (the declared protocol of
:class:`~vidmusic_core.components.TokenLM`). Prefixes are left-padded, so music starts at the same position
``P`` in every row (batched generation). ``cfg_null=True`` builds the second half of the batch as the
classifier-free-guidance null of the first, as upstream InspireMusic does (``llm.py`` ``inference``: the same
sos/task rows, ``torch.rand_like`` time and structure rows, zero text ids over the conditional text's length).

``aligned``: the condition, pooled per frame, is resampled onto the music frame times (sample and
hold) and added to the input at each music position through ``aligned_proj`` (zero-initialised, so
training starts from the unconditioned model). The input at the position that *predicts* music
column ``c`` carries the condition at column ``c``'s time. ``prefix_condition: true`` composes both.

``global_condition: true`` adds the clip-mean condition (``global_proj``, zero-initialised) at every music
position. ``clip_prior: true`` adds a head that predicts the clip's codes from its video (``prior.py``):
trained as :meth:`aux_loss`, added to the logits at generation through :meth:`logit_prior`.

Non-autoregressive backbones over latents (:meth:`PrefixLayout.frame_input`): the aligned path gives the
condition at each latent frame's time ``[B, T_a, D]``; the condition prefix (the reduced, projected
condition tokens, no special/time/text rows) becomes cross-attention ``memory``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..components import MusicBackbone, SequenceLayout, TokenLM
from ..types import IGNORE_INDEX, BackboneInput, Condition, MusicLatents, MusicOutput
from .music import build_music_part, effective_delays
from .prior import ClipPriorMixin
from .reduce import REDUCE_MODES, clip_mean, group_by_time, reduce_condition, resample_to_frames

SOS, TASK, VIDEO_TASK = 0, 1, 2


@dataclass
class PrefixConfig:
    """``layout.*`` options. ``cond_dim``, ``width``, ``delays``, ``frame_rate`` and ``own_specials`` are
    wiring: the model builder fills them from the encoder, backbone and codec (leave them unset)."""

    reduce: str = "frame_mean"  # none | frame_mean | frame_first | rate
    rate: float = 2.0  # tokens per second for reduce=rate
    prefix_condition: bool = True  # condition tokens in the prefix
    aligned: bool = False  # condition added to the music embeddings at matching times
    global_condition: bool = False  # the clip-mean condition added at every music position (clip-level cues: key)
    clip_prior: bool = False  # a head predicting the clip's codes from its video, added to the logits (prior.py)
    clip_prior_hidden: int = 256
    use_text: bool = True
    use_time: bool = True
    use_structure: Optional[bool] = None  # structure row (backbones with embed_structure); None = with use_time
    structure: str = "intro"  # its label (upstream's CLI default); generate.structure sets it
    train_eos: bool = True
    cond_dim: Optional[int] = None
    width: Optional[int] = None
    delays: list[int] = field(default_factory=list)
    frame_rate: Optional[float] = None
    cardinality: Optional[int] = None  # codes per codebook (wiring, for clip_prior)
    own_specials: bool = True
    text_only: bool = False  # text-to-music (e.g. an imported InspireMusic LM): no video path at all


class PrefixLayout(ClipPriorMixin, SequenceLayout):
    """Condition prefix (+ optional time-aligned addition) for decoder-only backbones."""

    Config = PrefixConfig

    def __init__(self, cfg: Optional[PrefixConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or self.Config()
        if cfg.cond_dim is None or cfg.width is None:
            raise ConfigError("layout: cond_dim and width are unset; build layouts with "
                              "vidmusic_core.model.build_model (it wires them from the encoder and backbone)")
        if cfg.text_only:
            cfg = self.cfg = dataclasses.replace(cfg, prefix_condition=False, aligned=False)
        elif not (cfg.prefix_condition or cfg.aligned or cfg.global_condition):
            raise ConfigError("layout: prefix_condition and aligned are both false: the video would be ignored "
                              "(set layout.text_only=true for text-to-music)")
        if cfg.aligned and not cfg.frame_rate:
            raise ConfigError("layout.aligned needs the codec frame_rate (symbolic codecs have none)")
        if cfg.reduce not in REDUCE_MODES:
            raise ConfigError(f"layout.reduce={cfg.reduce!r}: use one of {', '.join(REDUCE_MODES)}")
        self.visual_feature_proj = nn.Linear(cfg.cond_dim, cfg.width) if cfg.prefix_condition else None
        if cfg.aligned:
            self.aligned_proj = nn.Linear(cfg.cond_dim, cfg.width)
            nn.init.zeros_(self.aligned_proj.weight)
            nn.init.zeros_(self.aligned_proj.bias)
        if cfg.global_condition:  # zero-initialised like aligned_proj
            self.global_proj = nn.Linear(cfg.cond_dim, cfg.width)
            nn.init.zeros_(self.global_proj.weight)
            nn.init.zeros_(self.global_proj.bias)
        self.special_embedding = nn.Embedding(3, cfg.width) if cfg.own_specials else None
        self._init_clip_prior(cfg)
        self._per_frame_memo: tuple[Tensor, Condition] | None = None  # generation: the pooled condition, once
        self._global_memo: tuple[Tensor, Tensor] | None = None  # generation: global_proj of the clip mean, once

    @property
    def reads_text(self) -> bool:
        return bool(self.cfg.use_text)

    # -- pieces --------------------------------------------------------------------------------
    def _special(self, backbone: TokenLM, row: int) -> Tensor:
        if self.special_embedding is not None:
            return self.special_embedding.weight[row]
        return backbone.special(row if row < backbone.n_special_rows else TASK)

    def _text(self, backbone: TokenLM, text: Sequence[str] | None, B: int, device: torch.device,
              cfg_null: bool = False) -> tuple[Tensor | None, Tensor | None]:
        """Left-padded text embeddings ``[B, L, D]`` and mask ``[B, L]`` (None without text). ``cfg_null``:
        rows ``B/2..`` get id 0 over the length of rows ``..B/2`` (upstream's null text)."""
        if not (self.cfg.use_text and text is not None and backbone.takes_text):
            return None, None
        ids = [backbone.tokenize(t) if t else [] for t in text]
        if cfg_null:
            ids[B // 2:] = [[0] * len(row) for row in ids[:B // 2]]
        L = max((len(i) for i in ids), default=0)
        if L == 0:
            return None, None
        tok = torch.zeros(B, L, dtype=torch.long, device=device)
        mask = torch.zeros(B, L, dtype=torch.bool, device=device)
        for b, row in enumerate(ids):
            if row:
                tok[b, L - len(row):] = torch.tensor(row, device=device)
                mask[b, L - len(row):] = True
        return backbone.embed_text(tok), mask

    def prefix(self, backbone: TokenLM, condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None, cfg_null: bool = False) -> tuple[Tensor, Tensor]:
        """Prefix embeddings ``[B, P, D]`` and mask ``[B, P]`` (the last position is the task token).
        ``cfg_null``: rows ``B/2..`` are the CFG null of rows ``..B/2`` (see the module doc)."""
        B, dev = condition.batch_size, condition.tokens.device
        parts: list[tuple[Tensor, Tensor]] = []
        gen = torch.Generator(device=dev).manual_seed(0) if cfg_null else None

        def null_rows(x: Tensor) -> Tensor:  # upstream's torch.rand_like rows (U[0, 1)) in rows B/2..
            if gen is None:
                return x
            noise = torch.rand(x[B // 2:].shape, generator=gen, device=dev).to(x.dtype)
            return torch.cat([x[:B // 2], noise], dim=0)

        def one(vec: Tensor) -> None:
            parts.append((vec.expand(B, 1, -1), torch.ones(B, 1, dtype=torch.bool, device=dev)))

        one(self._special(backbone, SOS))
        if self.cfg.use_time and seconds is not None and backbone.takes_time:
            t = torch.stack([torch.zeros_like(seconds), seconds], dim=1).float()  # [B, 2]
            parts.append((null_rows(backbone.embed_time(t)), torch.ones(B, 2, dtype=torch.bool, device=dev)))
        structure = self.cfg.use_time if self.cfg.use_structure is None else self.cfg.use_structure
        if structure and backbone.takes_structure:
            rows = backbone.embed_structure([self.cfg.structure] * B)  # type: ignore[arg-type]  # [B, 1, D]
            parts.append((null_rows(rows), torch.ones(B, 1, dtype=torch.bool, device=dev)))
        txt, txt_mask = self._text(backbone, text, B, dev, cfg_null)
        if txt is not None and txt_mask is not None:
            parts.append((txt, txt_mask))
        if self.visual_feature_proj is not None:
            one(self._special(backbone, SOS))
            cond = reduce_condition(condition, self.cfg.reduce, self.cfg.rate)
            parts.append((self.visual_feature_proj(cond.tokens), cond.mask))
        one(self._special(backbone, VIDEO_TASK))
        dtype = parts[0][0].dtype
        x = torch.cat([p[0].to(dtype) for p in parts], dim=1)
        mask = torch.cat([p[1] for p in parts], dim=1)
        return _left_align(x, mask)

    def aligned_embeds(self, condition: Condition, columns: Tensor) -> Tensor:
        """``aligned_proj`` of the condition at the times of music ``columns [S]``: ``[B, S, D]``."""
        assert self.cfg.frame_rate is not None
        memo = self._per_frame_memo
        if memo is not None and memo[0] is condition.tokens:  # generation: pool once, not every step
            per_frame = memo[1]
        else:
            per_frame = group_by_time(condition)
            self._per_frame_memo = (condition.tokens, per_frame) if not torch.is_grad_enabled() else None
        times = columns.float() / float(self.cfg.frame_rate)
        feats = resample_to_frames(per_frame.tokens, per_frame.times, per_frame.mask, times)  # [B, S, D_c]
        return self.aligned_proj(feats)

    def global_embeds(self, condition: Condition) -> Tensor:
        """``global_proj`` of the condition's mean over its valid tokens: ``[B, 1, D]``."""
        memo = self._global_memo
        if memo is not None and memo[0] is condition.tokens:  # generation: once per condition, not every step
            return memo[1]
        g = self.global_proj(clip_mean(condition))[:, None]
        self._global_memo = (condition.tokens, g) if not torch.is_grad_enabled() else None
        return g

    def _music_side(self, condition: Condition, columns: Tensor) -> Tensor | None:
        """What the condition adds at music ``columns [S]``: aligned path + global path, ``[B, S, D]`` or None."""
        out = self.aligned_embeds(condition, columns) if self.cfg.aligned else None
        if self.cfg.global_condition:
            g = self.global_embeds(condition)
            out = g.expand(-1, columns.shape[0], -1) if out is None else out + g
        return out

    # -- the contract --------------------------------------------------------------------------
    def frame_input(self, backbone: MusicBackbone, condition: Condition, n_frames: int,
                    mask: Tensor | None = None) -> BackboneInput:
        """The condition for ``n_frames`` latent frames at once: ``inputs_embeds [B, n_frames, D]`` (the aligned
        path at each frame's time; zeros without it) and, with ``prefix_condition``, ``memory [B, M, D]``."""
        B, dev = condition.batch_size, condition.tokens.device
        x = self._music_side(condition, torch.arange(n_frames, device=dev))  # [B, T_a, D]
        if x is None:
            x = condition.tokens.new_zeros(B, n_frames, int(self.cfg.width))  # type: ignore[arg-type]
        mem = mem_mask = None
        if self.visual_feature_proj is not None:
            cond = reduce_condition(condition, self.cfg.reduce, self.cfg.rate)
            mem, mem_mask = self.visual_feature_proj(cond.tokens), cond.mask  # [B, M, D]
        if mask is None:
            mask = torch.ones(B, n_frames, dtype=torch.bool, device=dev)
        return BackboneInput(inputs_embeds=x, attention_mask=mask, memory=mem, memory_mask=mem_mask, music_start=0)

    def forward(self, backbone: MusicBackbone, condition: Condition, music: MusicOutput,  # type: ignore[override]
                text: Sequence[str] | None = None, seconds: Tensor | None = None) -> BackboneInput:
        if isinstance(music, MusicLatents):  # a non-autoregressive backbone: condition per frame + the target
            inp = self.frame_input(backbone, condition, music.length, music.mask)
            inp.target, inp.target_mask = music.latents, music.mask
            return inp
        assert isinstance(backbone, TokenLM)
        if seconds is None and music.frame_rate:
            assert music.mask is not None
            seconds = music.mask.sum(dim=1).float() / float(music.frame_rate)
        px, pmask = self.prefix(backbone, condition, text, seconds)  # [B, P, D]
        mp = build_music_part(backbone, music, self.cfg.delays, self.cfg.train_eos)
        B, P = pmask.shape
        S_m = mp.embeds.shape[1]
        x = torch.cat([px, mp.embeds.to(px.dtype)], dim=1)  # [B, P + S_m, D]
        side = self._music_side(condition, torch.arange(S_m + 1, device=x.device))  # [B, S_m + 1, D]
        if side is not None:
            x = x + torch.nn.functional.pad(side.to(x.dtype), (0, 0, P - 1, 0))
        mask = torch.cat([pmask, mp.mask], dim=1)
        K = music.codes.shape[1]
        labels = torch.full((B, K, P + S_m), IGNORE_INDEX, dtype=torch.long, device=x.device)
        labels[:, :, P - 1:] = mp.targets
        return BackboneInput(inputs_embeds=x, attention_mask=mask, labels=labels, music_start=P)

    def prompt(self, backbone: TokenLM, condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None, cfg_null: bool = False) -> BackboneInput:
        px, pmask = self.prefix(backbone, condition, text, seconds, cfg_null)
        side = self._music_side(condition, torch.zeros(1, device=px.device))
        if side is not None:
            px = px.clone()
            px[:, -1:] += side.to(px.dtype)
        return BackboneInput(inputs_embeds=px, attention_mask=pmask, music_start=px.shape[1])

    def step_embeds(self, backbone: TokenLM, codes: Tensor, position: int, condition: Condition) -> Tensor:
        """Input at music column ``position`` (codes ``[B, K, 1]``), predicting column ``position + 1``."""
        x = backbone.embed(codes)  # [B, 1, D]
        side = self._music_side(condition, torch.tensor([position + 1], device=x.device))
        return x if side is None else x + side.to(x.dtype)

    def n_columns(self, n_frames: int) -> int:
        """Delayed music columns needed for ``n_frames`` frames."""
        K = max(1, len(self.cfg.delays))
        return n_frames + max(effective_delays(self.cfg.delays, K))


def _left_align(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's padding to the left (stable), so every row's last position is real."""
    order = torch.argsort(mask.long(), dim=1, stable=True)  # False (pad) first, real tokens keep their order
    return x.gather(1, order[..., None].expand_as(x)), mask.gather(1, order)


@dataclass
class AlignedConfig(PrefixConfig):
    """``aligned`` = the prefix layout with the time-aligned path on and no condition prefix."""

    prefix_condition: bool = False
    aligned: bool = True


class AlignedLayout(PrefixLayout):
    """Time-locked conditioning: condition added to music embeddings at matching times."""

    Config = AlignedConfig  # type: ignore[assignment]
