"""``concat``: two registered encoders side by side (e.g. a semantic ``lstv`` and the rhythmic ``motion``).

Config: ``first``/``second`` name registered encoders, ``first_options``/``second_options`` their options
(checked like ``encoder.*``: a typo lists the valid keys), ``mode`` how the two Conditions are joined:

- ``concat_tokens`` (default): ``N = N1 + N2`` (the first's tokens, then the second's), ``D = D1 + D2``
  with each encoder in its own block of columns (zeros in the other block). Not zero-padding to
  ``max(D1, D2)``: then one projection of the layout would read both encoders' unrelated features
  through the same weights; disjoint blocks give each encoder its own projection columns. For the
  ``prefix`` and ``cross`` layouts.
- ``concat_features``: one token per distinct token time of either encoder (sorted); each token holds
  both encoders' features at that time (per-time mean of its tokens, sample-and-hold as the ``aligned``
  layout does), ``D = D1 + D2``. For the ``aligned`` layout, which would otherwise average the two
  encoders' tokens that share a time and leave one block zero between the other's times.

Frames. A :class:`~vidmusic_core.types.Frames` batch carries frames of one FrameSpec, so the concat
encoder asks for the **union**: ``fps`` and ``size`` and ``n_global`` the larger of the two. Each
sub-encoder then gets frames derived from it (:func:`derive_frames`): for each target time
``t0 + k / fps`` (as the frame sampler's ``timestamps`` mode) the union frame nearest in presentation
time, area-downscaled to its size; global frames by nearest time too. With the union ``fps`` at or above
the video's rate every frame is there, so the derived frames are the ones the sampler would have picked
(the window start is taken as the first frame's time; the resize runs in torch, not swscale). This
needs both specs to use ``sampling: timestamps`` and the same ``resize``, unless the two specs are equal
(then frames pass through unchanged, any sampling). E.g. ``lstv`` needs ``first_options: {sampling:
timestamps}``. The cost: the union decodes the larger size at the higher rate (``lstv`` at 224 px and
30 fps). A contract change that removes it: ``ConditionEncoder.frame_specs -> dict[str, FrameSpec]``
and ``Frames`` holding one named stream per spec (the sampler decodes once and serves every stream).

Cache: ``frozen_features`` = both sub-encoders' frozen features, keys prefixed ``first__``/``second__``;
``forward_features`` re-derives each sub-encoder's frame times from the union times, so the training
path (cached features, no pixels) matches.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..components import ConditionEncoder
from ..types import Condition, FrameSpec, Frames

MODES = ("concat_tokens", "concat_features")
PREFIXES = ("first__", "second__")
_FRAME_FIELDS = ("fps", "n_global", "size", "resize", "sampling")


@dataclass
class ConcatConfig:
    """Options of the ``concat`` encoder. Set ``first`` and ``second`` (e.g. ``lstv`` and ``motion``); the
    defaults only keep the default config buildable with the core alone. The option dicts default to
    empty because omegaconf merges a dict into its default rather than replacing it."""

    first: str = "motion"
    second: str = "motion"
    first_options: Dict[str, Any] = field(default_factory=dict)
    second_options: Dict[str, Any] = field(default_factory=dict)
    mode: str = "concat_tokens"  # concat_tokens | concat_features


def _frame_key(spec: FrameSpec) -> tuple[Any, ...]:
    return tuple(getattr(spec, f) for f in _FRAME_FIELDS)


def union_spec(a: FrameSpec, b: FrameSpec, where: str = "encoder") -> FrameSpec:
    """The FrameSpec from which the frames of both ``a`` and ``b`` can be derived (see module doc)."""
    if _frame_key(a) == _frame_key(b):
        return dataclasses.replace(a)
    if a.sampling != "timestamps" or b.sampling != "timestamps":
        raise ConfigError(f"{where}: the two encoders want different frames and one samples with "
                          f"sampling={a.sampling if a.sampling != 'timestamps' else b.sampling!r}; concat can "
                          "derive both only from timestamp sampling: set sampling: timestamps in its options "
                          "(e.g. encoder.first_options={sampling: timestamps} for lstv)")
    if a.resize != b.resize:
        raise ConfigError(f"{where}: the two encoders resize differently ({a.resize!r} vs {b.resize!r}); "
                          "give them the same resize")
    return FrameSpec(fps=max(a.fps, b.fps), n_global=max(a.n_global, b.n_global), size=max(a.size, b.size),
                     resize=a.resize, sampling="timestamps", mean=a.mean, std=a.std)


def _nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index in sorted ``times`` of the time nearest each target (ties: the earlier, as the sampler)."""
    j = np.searchsorted(times, targets).clip(1, max(1, len(times) - 1))
    if len(times) == 1:
        return np.zeros(len(targets), dtype=int)
    left_better = (targets - times[j - 1]) <= (times[j] - targets)
    return np.where(left_better, j - 1, j)


def _resize_u8(x: Tensor, size: int) -> Tensor:
    """uint8 ``[..., H, W, 3]`` -> uint8 ``[..., size, size, 3]`` (area averaging; only downscales)."""
    if x.shape[-3:-1] == (size, size):
        return x
    lead = x.shape[:-3]
    y = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()
    y = torch.nn.functional.interpolate(y, size=(size, size), mode="area")
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, size, size, 3)


def derive_frames(frames: Frames, have: FrameSpec, want: FrameSpec) -> Frames:
    """Frames for spec ``want`` from frames sampled with ``have`` (the union; see module doc).

    Local: ``[B, T_w, S_w, S_w, 3]``, for each row the frames nearest to ``t0 + k / want.fps``,
    ``k < ceil(n * want.fps / have.fps)`` (n = the row's frame count, t0 its first time), padded like
    ``load_frames``. Pixels that are placeholders (the training path, ``H != have.size``) stay placeholders.
    """
    if _frame_key(have) == _frame_key(want):
        return frames
    assert frames.local_mask is not None
    B = frames.batch_size
    rows = []
    for b in range(B):
        keep = frames.local_mask[b].cpu().numpy()
        t = frames.local_times[b].double().cpu().numpy()[keep]
        if len(t) == 0:
            rows.append(np.zeros(1, dtype=int))
            continue
        n = max(1, math.ceil(len(t) * want.fps / have.fps - 1e-6))
        targets = t[0] + np.arange(n) / want.fps
        rows.append(np.flatnonzero(keep)[_nearest(t, targets)])
    T = max(len(r) for r in rows)
    idx = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, r in enumerate(rows):
        idx[b, :len(r)] = torch.from_numpy(r)
        idx[b, len(r):] = int(r[-1])
        mask[b, :len(r)] = bool(frames.local_mask[b].any())
    dev = frames.local.device
    idx, mask = idx.to(dev), mask.to(dev)
    times = frames.local_times.gather(1, idx)
    pixels = frames.local.shape[2] == have.size and frames.local.shape[3] == have.size
    if pixels:
        local = _resize_u8(frames.local[torch.arange(B, device=dev)[:, None], idx], want.size)
        local = local * mask[..., None, None, None].to(local.dtype)  # padding holds zeros
    else:
        local = frames.local[:, :1].expand(B, T, *frames.local.shape[2:])
    glob = gtimes = None
    if want.n_global and frames.global_frames is not None:
        glob, gtimes = frames.global_frames, frames.global_times
        G = frames.global_frames.shape[1]
        if want.n_global != G:  # nearest in time to evenly spaced targets (by index without times)
            gi = torch.linspace(0, G - 1, want.n_global).round().long().expand(B, -1).to(dev) if gtimes is None \
                else torch.stack([torch.from_numpy(_nearest(g, np.linspace(g[0], g[-1], want.n_global)))
                                  for g in gtimes.double().cpu().numpy()]).to(dev)
            glob = frames.global_frames[torch.arange(B, device=dev)[:, None], gi]
            gtimes = None if gtimes is None else gtimes.gather(1, gi)
        if pixels:
            glob = _resize_u8(glob, want.size)
    return Frames(local, times, mask, glob, gtimes, frames.duration)


def _block(cond: Condition, before: int, after: int) -> tuple[Tensor, Tensor | None]:
    """Tokens (and null tokens) of ``cond`` zero-padded with ``before``/``after`` columns."""
    pad = (before, after)
    null = None if cond.null_tokens is None else torch.nn.functional.pad(cond.null_tokens, pad)
    return torch.nn.functional.pad(cond.tokens, pad), null


def concat_tokens(a: Condition, b: Condition) -> Condition:
    """``[B, N1, D1]`` + ``[B, N2, D2]`` -> ``[B, N1 + N2, D1 + D2]`` in disjoint column blocks."""
    B, D1, D2 = a.batch_size, a.dim, b.dim
    ta, na = _block(a, 0, D2)
    tb, nb = _block(b, D1, 0)
    null = None
    if na is not None or nb is not None:
        na = torch.zeros_like(ta) if na is None else na.to(ta).expand(B, -1, -1)
        nb = torch.zeros_like(tb) if nb is None else nb.to(tb).expand(B, -1, -1)
        null = torch.cat([na, nb], dim=1)
    return Condition(torch.cat([ta, tb], dim=1), torch.cat([a.mask, b.mask], dim=1),
                     torch.cat([a.times, b.times.to(a.times)], dim=1), null)


def concat_features(a: Condition, b: Condition) -> Condition:
    """One token per distinct time of either Condition: ``[B, U, D1 + D2]`` (both held at that time)."""
    from ..layouts.reduce import group_by_time, resample_to_frames

    pa, pb = group_by_time(a), group_by_time(b)  # per-time means, sorted, [B, U_a, D1] / [B, U_b, D2]
    B = a.batch_size
    rows = [torch.unique(torch.cat([pa.times[i][pa.mask[i]], pb.times[i][pb.mask[i]].to(pa.times)]))
            for i in range(B)]
    U = max(1, max(len(r) for r in rows))
    times = pa.times.new_zeros(B, U)
    mask = torch.zeros(B, U, dtype=torch.bool, device=a.tokens.device)
    for i, r in enumerate(rows):
        times[i, :len(r)], mask[i, :len(r)] = r, True
        times[i, len(r):] = r[-1] if len(r) else 0.0

    def join(x: Condition, y: Condition) -> Tensor:
        return torch.cat([resample_to_frames(x.tokens, x.times, x.mask, times),
                          resample_to_frames(y.tokens, y.times.to(x.times), y.mask, times)], dim=-1)

    tokens = join(pa, pb) * mask[..., None]
    null = None
    if a.null_tokens is not None or b.null_tokens is not None:
        null = join(group_by_time(a.null_like()), group_by_time(b.null_like())) * mask[..., None]
    return Condition(tokens, mask, times, null)


class ConcatEncoder(ConditionEncoder):
    """Two registered encoders -> one Condition (``mode``, see module doc); ``dim = D1 + D2``.

    Sub-encoders are built through the registry and are submodules ``first`` and ``second`` (their
    weights are saved under those prefixes).
    """

    Config = ConcatConfig

    def __init__(self, cfg: ConcatConfig | None = None) -> None:
        super().__init__()
        from ..config import component_config
        from ..plugins import get_registry

        self.cfg = cfg = cfg or ConcatConfig()
        if cfg.mode not in MODES:
            raise ConfigError(f"encoder.mode={cfg.mode!r}: expected one of {', '.join(MODES)}")
        reg = get_registry()
        subs = []
        for slot, name, opts in (("first", cfg.first, cfg.first_options), ("second", cfg.second, cfg.second_options)):
            comp = reg.get("encoder", name)
            if comp.name == "concat":
                raise ConfigError(f"encoder.{slot}=concat: nest concat encoders by writing your own plugin")
            sub = comp.build(component_config(comp, dict(opts or {}), where=f"encoder.{slot}_options"))
            subs.append((comp.name, sub))
        (self.first_name, self.first), (self.second_name, self.second) = subs
        self.frame_spec = union_spec(self.first.frame_spec, self.second.frame_spec)
        self.dim = int(self.first.dim) + int(self.second.dim)

    def feature_config(self) -> dict[str, Any]:
        """Both sub-encoders' feature configs and frame specs (the union spec is keyed by prepare)."""
        return {"first": self.first_name, "first_features": self.first.feature_config(),
                "first_spec": dataclasses.asdict(self.first.frame_spec), "second": self.second_name,
                "second_features": self.second.feature_config(),
                "second_spec": dataclasses.asdict(self.second.frame_spec)}

    def _subs(self) -> tuple[tuple[str, ConditionEncoder], ...]:
        return (PREFIXES[0], self.first), (PREFIXES[1], self.second)  # type: ignore[return-value]

    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        """Each sub-encoder's frozen features on its derived frames, keys prefixed ``first__``/``second__``."""
        out: dict[str, Tensor] = {}
        for prefix, enc in self._subs():
            for k, v in enc.frozen_features(derive_frames(frames, self.frame_spec, enc.frame_spec)).items():
                out[prefix + k] = v
        return out

    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        """Both sub-encoders' Conditions (on their derived frame times), joined by ``mode``."""
        conds = []
        for prefix, enc in self._subs():
            sub = {k[len(prefix):]: v for k, v in features.items() if k.startswith(prefix)}
            sub_frames = None if frames is None else derive_frames(frames, self.frame_spec, enc.frame_spec)
            conds.append(enc.forward_features(sub, sub_frames))
        join = concat_tokens if self.cfg.mode == "concat_tokens" else concat_features
        return join(conds[0], conds[1])
