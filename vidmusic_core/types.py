"""Data contracts shared by every component: frames, conditions, music tokens and latents, backbone
inputs, generation requests. The component contracts themselves are in :mod:`vidmusic_core.components`.

Shape letters: B batch, T_v video frames, N condition tokens, T_a music frames, K codebooks,
C latent channels, D width, V codebook size, S backbone sequence length, H/W frame height/width.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor

from .errors import ShapeError

#: label value ignored by the loss (InspireMusic's IGNORE_ID)
IGNORE_INDEX = -1

#: CLIP image normalisation (OpenAI CLIP; also VidMuse's transform)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_shapes(component: str, name: str, tensor: Tensor, expected: Sequence[int | str | None],
                 dims: dict[str, int] | None = None) -> dict[str, int]:
    """Check ``tensor.shape`` against ``expected`` and bind symbolic sizes.

    ``expected`` holds ints (must match), strings (symbolic: the first use binds the size, later uses
    must agree; ``dims`` may pre-bind them) or None (anything). Returns the updated ``dims``.
    Raises :class:`ShapeError` saying which component, which tensor, expected vs got.
    """
    dims = {} if dims is None else dims
    shape = tuple(tensor.shape)
    want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
    if len(shape) != len(expected):
        raise ShapeError(f"{component}: {name} expected {len(expected)} dims {want}, got shape {list(shape)}")
    for axis, (e, got) in enumerate(zip(expected, shape)):
        if e is None:
            continue
        if isinstance(e, str):
            if e in dims and dims[e] != got:
                raise ShapeError(
                    f"{component}: {name} expected {want} with {e}={dims[e]}, got shape {list(shape)} "
                    f"(axis {axis} is {got})"
                )
            dims.setdefault(e, got)
        elif e != got:
            raise ShapeError(f"{component}: {name} expected {want}, got shape {list(shape)} (axis {axis} is {got})")
    return dims


# --------------------------------------------------------------------------------------------------
# Video side
# --------------------------------------------------------------------------------------------------
@dataclass
class FrameSpec:
    """Which frames an encoder wants; the frame sampler produces exactly these.

    ``fps``: local frames per second over the window. ``n_global``: frames spread evenly over the whole
    video (0 = none). ``size``: output side in pixels (frames are ``size`` x ``size``). ``resize``:
    ``squash`` (aspect not kept, as VidMuse) or ``center_crop``. ``sampling``: ``timestamps`` (frames
    nearest to exact multiples of 1/fps by presentation time) or ``vidmuse`` (every
    ``ceil(native_fps / fps)``-th decoded frame, padded by repeating the last, as upstream).
    ``mean``/``std``: the normalisation the encoder applies (in torch) to [0, 1] pixels.
    """

    fps: float = 2.0
    n_global: int = 0
    size: int = 224
    resize: str = "squash"
    sampling: str = "timestamps"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


@dataclass
class Frames:
    """A batch of sampled video frames.

    ``local``: uint8 ``[B, T_v, H, W, 3]``; ``local_times``: float ``[B, T_v]`` seconds (presentation
    time of each frame); ``local_mask``: bool ``[B, T_v]`` (False = padding of a shorter clip).
    ``global_frames``/``global_times``: the same for the ``n_global`` frames over the whole video, or None.
    ``duration``: float ``[B]`` seconds of each video.
    """

    local: Tensor
    local_times: Tensor
    local_mask: Tensor | None = None
    global_frames: Tensor | None = None
    global_times: Tensor | None = None
    duration: Tensor | None = None

    def __post_init__(self) -> None:
        dims = check_shapes("Frames", "local", self.local, ("B", "T_v", "H", "W", 3))
        check_shapes("Frames", "local_times", self.local_times, ("B", "T_v"), dims)
        if self.local_mask is None:
            self.local_mask = torch.ones(self.local_times.shape, dtype=torch.bool, device=self.local.device)
        check_shapes("Frames", "local_mask", self.local_mask, ("B", "T_v"), dims)
        if self.global_frames is not None:
            check_shapes("Frames", "global_frames", self.global_frames, ("B", None, "H", "W", 3), dims)
            if self.global_times is not None:
                check_shapes("Frames", "global_times", self.global_times, ("B", self.global_frames.shape[1]), dims)

    @property
    def batch_size(self) -> int:
        return int(self.local.shape[0])

    def to(self, device: torch.device | str) -> "Frames":
        return Frames(**{f.name: (v.to(device) if isinstance(v, Tensor) else v)
                         for f in fields(self) for v in [getattr(self, f.name)]})


def normalize_frames(frames_u8: Tensor, mean: Sequence[float], std: Sequence[float],
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 ``[..., H, W, 3]`` -> normalised float ``[..., 3, H, W]`` (pixels / 255, then (x - mean) / std)."""
    x = frames_u8.to(dtype) / 255.0
    x = x.movedim(-1, -3)  # [..., 3, H, W]
    m = torch.tensor(mean, dtype=dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


@dataclass
class Condition:
    """What an encoder says about a video: a token sequence with times.

    ``tokens``: float ``[B, N, D]``; ``mask``: bool ``[B, N]`` (True = real token); ``times``: float
    ``[B, N]`` seconds of video each token describes. ``null_tokens``: optional ``[1 or B, N, D]``
    tokens for the "no video" condition of classifier-free guidance (e.g. the encoding of a black video,
    as VidMuse); when None, :meth:`null_like` uses zeros. ``extras``: named side outputs (e.g. the
    pre-projection features), each with batch first.
    """

    tokens: Tensor
    mask: Tensor
    times: Tensor
    null_tokens: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dims = check_shapes("Condition", "tokens", self.tokens, ("B", "N", "D"))
        check_shapes("Condition", "mask", self.mask, ("B", "N"), dims)
        check_shapes("Condition", "times", self.times, ("B", "N"), dims)
        if self.mask.dtype != torch.bool:
            raise ShapeError(f"Condition: mask must be bool, got {self.mask.dtype}")

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[-1])

    def null_like(self) -> "Condition":
        """The CFG null condition of the same shape: ``null_tokens`` broadcast to the batch, else zeros."""
        if self.null_tokens is not None:
            null = self.null_tokens.to(self.tokens).expand_as(self.tokens).clone()
        else:
            null = torch.zeros_like(self.tokens)
        return Condition(null, self.mask.clone(), self.times.clone(), self.null_tokens, {})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Condition":
        def mv(t: Tensor, float_: bool) -> Tensor:
            return t.to(device=device, dtype=dtype if (float_ and dtype is not None) else t.dtype)

        return Condition(
            mv(self.tokens, True), mv(self.mask, False), mv(self.times, False),
            None if self.null_tokens is None else mv(self.null_tokens, True),
            {k: mv(v, v.is_floating_point()) for k, v in self.extras.items()},
        )

    def index_select(self, index: Tensor | Sequence[int]) -> "Condition":
        """Rows ``index`` of the batch (e.g. a permutation for the shuffled-video control)."""
        idx = torch.as_tensor(index, device=self.tokens.device, dtype=torch.long)
        null = self.null_tokens
        if null is not None and null.shape[0] > 1:
            null = null.index_select(0, idx)
        return Condition(self.tokens.index_select(0, idx), self.mask.index_select(0, idx),
                         self.times.index_select(0, idx), null,
                         {k: v.index_select(0, idx) for k, v in self.extras.items()})

    @staticmethod
    def cat_batch(conds: Sequence["Condition"]) -> "Condition":
        """Stack conditions of equal N along the batch axis."""
        nulls = [c.null_tokens for c in conds]
        null = None if any(n is None for n in nulls) else (
            nulls[0] if all(n.shape[0] == 1 and torch.equal(n, nulls[0]) for n in nulls)  # type: ignore[union-attr]
            else torch.cat([n.expand(c.batch_size, -1, -1) for n, c in zip(nulls, conds)]))  # type: ignore[union-attr]
        keys = set.intersection(*(set(c.extras) for c in conds)) if conds else set()
        return Condition(torch.cat([c.tokens for c in conds]), torch.cat([c.mask for c in conds]),
                         torch.cat([c.times for c in conds]), null,
                         {k: torch.cat([c.extras[k] for c in conds]) for k in sorted(keys)})


# --------------------------------------------------------------------------------------------------
# Music side
# --------------------------------------------------------------------------------------------------
@dataclass
class MusicTokens:
    """Music as codec tokens: ``codes`` long ``[B, K, T_a]``, ``mask`` bool ``[B, T_a]`` (True = real
    frame), ``frame_rate`` frames per second (None for symbolic vocabularies)."""

    codes: Tensor
    mask: Tensor | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        dims = check_shapes("MusicTokens", "codes", self.codes, ("B", "K", "T_a"))
        if self.mask is None:
            self.mask = torch.ones(self.codes.shape[0], self.codes.shape[2], dtype=torch.bool,
                                   device=self.codes.device)
        check_shapes("MusicTokens", "mask", self.mask, ("B", "T_a"), dims)

    @property
    def n_codebooks(self) -> int:
        return int(self.codes.shape[1])

    @property
    def length(self) -> int:
        return int(self.codes.shape[2])


@dataclass
class MusicLatents:
    """Music as continuous codec latents: ``latents`` float ``[B, T_a, C]``, ``mask`` bool ``[B, T_a]``
    (True = real frame), ``frame_rate`` latent frames per second."""

    latents: Tensor
    mask: Tensor | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        dims = check_shapes("MusicLatents", "latents", self.latents, ("B", "T_a", "C"))
        if not self.latents.is_floating_point():
            raise ShapeError(f"MusicLatents: latents must be floating point, got {self.latents.dtype}")
        if self.mask is None:
            self.mask = torch.ones(self.latents.shape[:2], dtype=torch.bool, device=self.latents.device)
        check_shapes("MusicLatents", "mask", self.mask, ("B", "T_a"), dims)

    @property
    def length(self) -> int:
        return int(self.latents.shape[1])

    @property
    def channels(self) -> int:
        return int(self.latents.shape[2])


#: what a backbone generates and a codec decodes: tokens (audio codes or a symbolic vocabulary) or latents
MusicOutput = Union[MusicTokens, MusicLatents]


@dataclass
class BackboneInput:
    """What a layout hands to a backbone.

    ``inputs_embeds``: float ``[B, S, D]``; ``attention_mask``: bool ``[B, S]`` (True = attend);
    ``labels``: long ``[B, K, S]`` target token at each position, :data:`IGNORE_INDEX` where no loss;
    ``memory``/``memory_mask``: cross-attention memory ``[B, M, D_m]``/``[B, M]`` (the ``cross``
    layout) or None; ``position_ids``: long ``[B, S]`` or None (backbone default);
    ``music_start``: index in S of the first music position (for generation bookkeeping);
    ``target``/``target_mask``: float ``[B, T_a, C]`` / bool ``[B, T_a]`` the clean latents a
    non-autoregressive (latent) backbone learns to produce, with ``inputs_embeds`` then the per-frame
    condition ``[B, T_a, D]`` (see :meth:`SequenceLayout.frame_input`); None for token backbones.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    labels: Tensor | None = None
    memory: Tensor | None = None
    memory_mask: Tensor | None = None
    position_ids: Tensor | None = None
    music_start: int | None = None
    target: Tensor | None = None
    target_mask: Tensor | None = None

    def __post_init__(self) -> None:
        dims = check_shapes("BackboneInput", "inputs_embeds", self.inputs_embeds, ("B", "S", "D"))
        if self.target is not None:
            check_shapes("BackboneInput", "target", self.target, ("B", "S", None), dims)
            if self.target_mask is not None:
                check_shapes("BackboneInput", "target_mask", self.target_mask, ("B", "S"), dims)
        check_shapes("BackboneInput", "attention_mask", self.attention_mask, ("B", "S"), dims)
        if self.labels is not None:
            check_shapes("BackboneInput", "labels", self.labels, ("B", None, "S"), dims)
        if self.memory is not None:
            mdims = check_shapes("BackboneInput", "memory", self.memory, ("B", "M", None), dict(dims))
            if self.memory_mask is not None:
                check_shapes("BackboneInput", "memory_mask", self.memory_mask, ("B", "M"), mdims)
        if self.position_ids is not None:
            check_shapes("BackboneInput", "position_ids", self.position_ids, ("B", "S"), dims)


@dataclass
class BackboneOutput:
    """``logits`` float ``[B, K, S, V]`` (or only the requested positions); ``hidden`` ``[B, S, D]``;
    ``cache``: the updated cache object (backbone-specific)."""

    logits: Tensor
    hidden: Tensor | None = None
    cache: Any = None


@dataclass
class ImportReport:
    """Result of an upstream-checkpoint import."""

    out_dir: Path
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)


def select_positions(hidden: Tensor, logits_positions: "str | Tensor | None") -> Tensor:
    """The positions of ``hidden [B, S, D]`` a backbone computes logits for: ``"all"`` (or None),
    ``"last"`` (generation), ``"none"`` or a long tensor of positions ``[S']`` -> ``[B, S', D]``."""
    if isinstance(logits_positions, Tensor):
        return hidden[:, logits_positions]
    if logits_positions == "all" or logits_positions is None:
        return hidden
    if logits_positions == "last":
        return hidden[:, -1:]
    if logits_positions == "none":
        return hidden[:, :0]
    raise ValueError(f"logits_positions={logits_positions!r}: use 'all', 'last', 'none' or a tensor")


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------
@dataclass
class SamplingConfig:
    """How a backbone samples (the ``generate`` config section; each backbone reads what applies to it).

    Token LMs: ``temperature`` (0 = argmax), ``top_k`` / ``top_p`` (0 = off), ``use_eos`` (stop a row
    when codebook 0 samples EOS, not before ``min_frames``), repetition-aware sampling (``ras_window``
    0 = off; InspireMusic uses 10, ``ras_tau``); ``min_length``: EOS is also banned before this fraction
    of the requested frames (InspireMusic's 0.9). Every backbone: ``cfg_coef`` (classifier-free guidance
    against the null condition; 1 = off). ODE / diffusion backbones: ``steps`` (solver steps). ``prior_weight``:
    the weight of the layout's :meth:`~vidmusic_core.components.SequenceLayout.logit_prior` (0 = off).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    cfg_coef: float = 1.0
    use_eos: bool = False
    min_frames: int = 0
    min_length: float = 0.0
    ras_window: int = 0
    ras_tau: float = 0.1
    steps: int = 16
    prior_weight: float = 1.0


@dataclass
class GenerationRequest:
    """Everything a backbone needs to generate one batch (:meth:`MusicBackbone.generate`).

    ``condition``: the encoded video ``[B, N, D]``; ``n_frames``: music frames to generate (a token budget
    for symbolic codecs); ``seeds``: one per row (a ``torch.Generator`` each, no global RNG);
    ``sampling``: :class:`SamplingConfig`; ``text``: one prompt per row or None; ``seconds``: float ``[B]``
    length of each row's music (time rows of a prefix, EOS rules); ``prompt``: the previous window's tail
    to continue from (``MusicTokens [B, K, P]`` or ``MusicLatents [B, P, C]``) or None; ``forced``: long
    ``[B, K, F]`` codes to take instead of sampling at the first F columns where ``>= 0``; ``controller``:
    ``controller(column, codes [B, K]) -> codes [B, K]`` forced at the next column (``-1`` = sample), e.g.
    per-bar control tokens set from the video; ``options``: codec-specific settings (e.g. symbolic
    ``attributes``, ``max_tokens``) that :meth:`MusicCodec.plan_request` reads.
    """

    condition: "Condition"
    n_frames: int
    seeds: Sequence[int]
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    text: Sequence[str] | None = None
    seconds: Tensor | None = None
    prompt: "MusicOutput | None" = None
    forced: Tensor | None = None
    controller: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        B = self.condition.batch_size
        if len(self.seeds) != B:
            raise ValueError(f"GenerationRequest: {len(self.seeds)} seeds for {B} rows")
        if self.text is not None and len(self.text) != B:
            raise ValueError(f"GenerationRequest: {len(self.text)} text prompts for {B} rows")
        if self.n_frames < 1:
            raise ValueError(f"GenerationRequest: n_frames={self.n_frames} must be >= 1")

    @property
    def batch_size(self) -> int:
        return self.condition.batch_size
