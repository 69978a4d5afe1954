"""The ``flow`` backbone: a DiT over continuous codec latents, trained by conditional flow matching.

Path (rectified flow / the optimal-transport path with sigma_min = 0, the convention of diffusers'
``FlowMatchEulerDiscreteScheduler`` and SD3): ``x_t = (1 - t) x_0 + t eps`` with ``t = sigma in [0, 1]``
(``t = 0`` data, ``t = 1`` noise); the network predicts the velocity ``v = eps - x_0`` and the loss is its
MSE over real frames. Sampling integrates ``dx/dt = v`` from ``t = 1`` to ``0`` with that scheduler's Euler
step (``x <- x + (sigma_next - sigma) v``), ``request.sampling.steps`` steps, noise from one
``torch.Generator`` per row's seed (no global RNG), so a row depends only on its seed and condition.

Conditioning comes from the layout's :meth:`~vidmusic_core.SequenceLayout.frame_input`: the per-frame
condition ``inputs_embeds [B, T, D]`` (``aligned``) is added to the projected noisy latents; a ``memory
[B, M, D]`` (``cross``, or ``prefix_condition``) is cross-attended by every block. The flow time drives
adaLN-zero (see :mod:`flow_dit.dit`).

Classifier-free guidance: the null is the backbone's own "no condition" — per-frame condition zero and no
cross-attention (each block's cross-attention output is dropped for the row). Training replaces a row's
condition by that null with probability ``cond_dropout``; sampling evaluates the same null, so the model
is guided against exactly what it saw. ``v = v_null + cfg_coef (v_cond - v_null)``; ``cfg_coef = 1`` runs
only the conditioned pass.

Continuation (long videos, ``request.prompt``: the previous window's last ``P`` latent frames): the window
is ``P + n_frames`` frames; the prompt frames are pinned to the path of the prompt at every step
(``x[:, :P] = (1 - sigma) prompt + sigma eps``, what diffusers' ``scale_noise`` computes for inpainting) and
the clean prompt is also an input (``ctx`` + a 0/1 channel; trained on random clean prefixes with
probability ``prompt_prob``, as Voicebox's in-context infilling), so the new frames continue it. The
``P`` prompt frames come out equal to the prompt; :meth:`FlowBackbone.generate` returns the new frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from vidmusic_core import (BackboneInput, ConfigError, GenerationRequest, MusicBackbone, MusicCodec, MusicLatents,
                           SequenceLayout, ShapeError, generation_step)

from .dit import DiTBlock, FinalLayer, TimeEmbedder, rotary

TIMESTEP_SAMPLING = ("logit_normal", "uniform")
#: the scheduler's timestep = sigma * NUM_TRAIN_TIMESTEPS (diffusers' default); the time embedding sees the same
NUM_TRAIN_TIMESTEPS = 1000


@dataclass
class FlowConfig:
    """Options of the ``flow`` backbone (``backbone.*``).

    ``width``/``layers``/``heads``/``ffn``: the DiT. ``latent_dim``: C of the codec's latents (wiring: the
    model builder sets it from ``codec.latent_dim``). ``cond_dropout``: probability a training row gets the
    null condition (CFG). ``prompt_prob``/``prompt_max``: probability a training row is given a clean prefix
    of up to ``prompt_max`` of its frames (continuation). ``timestep_sampling``: ``logit_normal`` (SD3's
    ``sigmoid(N(0, 1))``) or ``uniform``. ``shift``: the scheduler's timestep shift at sampling (1 = none).
    ``cross_attention``: blocks cross-attend to a layout's ``memory``. ``context_length``: longest window
    in latent frames (None = any).
    """

    width: int = 128
    layers: int = 3
    heads: int = 4
    ffn: int = 256
    latent_dim: Optional[int] = None
    dropout: float = 0.0
    cond_dropout: float = 0.1
    prompt_prob: float = 0.2
    prompt_max: float = 0.5
    timestep_sampling: str = "logit_normal"
    time_freq_dim: int = 256
    shift: float = 1.0
    cross_attention: bool = True
    rope_theta: float = 10000.0
    context_length: Optional[int] = None


class FlowBackbone(MusicBackbone):
    """Flow-matching DiT over latents ``[B, T, C]``; ``loss`` / ``generate`` per the module doc."""

    Config = FlowConfig
    representation: ClassVar[str] = "latents"
    supported_layouts: ClassVar[tuple[str, ...]] = ("aligned", "cross", "prefix")

    def __init__(self, cfg: Optional[FlowConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FlowConfig()
        if cfg.latent_dim is None or cfg.latent_dim < 1:
            raise ConfigError("backbone flow: latent_dim is unset; build it with vidmusic_core.model.build_model "
                              "(it sets latent_dim from the codec's) or set backbone.latent_dim")
        if cfg.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ConfigError(f"backbone.timestep_sampling={cfg.timestep_sampling!r}: use one of "
                              f"{', '.join(TIMESTEP_SAMPLING)}")
        if cfg.width % cfg.heads or (cfg.width // cfg.heads) % 2:
            raise ConfigError(f"backbone flow: width {cfg.width} must split into {cfg.heads} heads of an even size")
        if not (0.0 <= cfg.cond_dropout < 1.0 and 0.0 <= cfg.prompt_prob <= 1.0 and 0.0 < cfg.prompt_max < 1.0):
            raise ConfigError("backbone flow: need 0 <= cond_dropout < 1, 0 <= prompt_prob <= 1, 0 < prompt_max < 1")
        self.width, C = int(cfg.width), int(cfg.latent_dim)
        self.latent_dim = C
        self.context_length = cfg.context_length
        self.in_proj = nn.Linear(2 * C + 1, self.width)  # [x_t, clean prompt ctx, prompt flag]
        self.time_embed = TimeEmbedder(self.width, cfg.time_freq_dim, float(NUM_TRAIN_TIMESTEPS))
        self.blocks = nn.ModuleList(DiTBlock(self.width, cfg.heads, cfg.ffn, cfg.dropout, cfg.cross_attention)
                                    for _ in range(cfg.layers))
        self.final = FinalLayer(self.width, C)

    # -- the network ---------------------------------------------------------------------------
    def velocity(self, x: Tensor, t: Tensor, inp: BackboneInput, keep: Tensor, ctx: Tensor, ctx_mask: Tensor) -> Tensor:
        """Predicted velocity ``[B, T, C]`` at noisy latents ``x [B, T, C]``, times ``t [B]``, the layout's
        condition ``inp`` (``inputs_embeds [B, T, D]``, ``attention_mask [B, T]``, ``memory``), per-row
        ``keep [B]`` (0 = the null condition), clean prompt ``ctx [B, T, C]`` where ``ctx_mask [B, T]``."""
        if inp.memory is not None and not self.cfg.cross_attention:
            raise ConfigError("backbone flow: the layout gives cross-attention memory but backbone.cross_attention "
                              "is false; enable it or use a layout without memory (aligned, prefix_condition=false)")
        m = ctx_mask[..., None].to(x.dtype)
        h = self.in_proj(torch.cat([x, ctx * m, m], dim=-1))  # [B, T, D]
        h = h + inp.inputs_embeds.to(h.dtype) * keep[:, None, None].to(h.dtype)
        c = self.time_embed(t)  # [B, D]
        rope = rotary(x.shape[1], self.width // self.cfg.heads, x.device, self.cfg.rope_theta)
        mem_mask = inp.memory_mask
        if inp.memory is not None and mem_mask is None:
            mem_mask = torch.ones(inp.memory.shape[:2], dtype=torch.bool, device=x.device)
        mem = None if inp.memory is None else inp.memory.to(h.dtype)
        for block in self.blocks:
            h = block(h, c, inp.attention_mask, rope, mem, mem_mask, keep.to(h.dtype))
        return self.final(h, c)

    def _check_latents(self, name: str, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.latent_dim:
            raise ShapeError(f"backbone flow: {name} expected [B, T, {self.latent_dim}], got {list(x.shape)}")

    # -- training ------------------------------------------------------------------------------
    def sample_t(self, n: int, device: torch.device) -> Tensor:
        """Training times ``[n]`` in (0, 1) (global RNG: the trainer seeds and checkpoints it)."""
        if self.cfg.timestep_sampling == "logit_normal":
            return torch.sigmoid(torch.randn(n, device=device))
        return torch.rand(n, device=device)

    def loss(self, inp: BackboneInput) -> Tensor:
        """Masked MSE of the predicted velocity ``eps - x_0`` over real, non-prompt frames."""
        if inp.target is None:
            raise ValueError("backbone flow: loss needs BackboneInput.target (latents from a layout's frame input)")
        x0 = inp.target.to(inp.inputs_embeds.dtype)  # [B, T, C]
        self._check_latents("target", x0)
        B, T, _ = x0.shape
        mask = inp.target_mask if inp.target_mask is not None else inp.attention_mask  # [B, T]
        dev = x0.device
        t = self.sample_t(B, dev)
        noise = torch.randn_like(x0)
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        keep = (torch.rand(B, device=dev) >= self.cfg.cond_dropout).to(x0.dtype)
        n_real = mask.sum(dim=1)  # [B]
        plen = (torch.rand(B, device=dev) * self.cfg.prompt_max * n_real).long()
        plen = torch.where(torch.rand(B, device=dev) < self.cfg.prompt_prob, plen, torch.zeros_like(plen))
        ctx_mask = torch.arange(T, device=dev)[None] < plen[:, None]  # [B, T]
        v = self.velocity(xt, t, inp, keep, x0, ctx_mask)
        err = ((v.float() - (noise - x0).float()) ** 2).mean(dim=-1)  # [B, T]
        w = (mask & ~ctx_mask).float()
        return (err * w).sum() / w.sum().clamp_min(1.0)

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, layout: SequenceLayout, request: GenerationRequest, frame_rate: float | None) -> MusicLatents:
        """The whole window: latents ``[B, P + n_frames, C]`` (prompt frames first, equal to the prompt)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        sc, cond = request.sampling, request.condition
        B, dev = cond.batch_size, cond.tokens.device
        prompt = request.prompt
        if prompt is not None and not isinstance(prompt, MusicLatents):
            raise ConfigError("backbone flow: a continuation prompt must be MusicLatents [B, P, C]")
        P = 0 if prompt is None else prompt.length
        if prompt is not None:
            self._check_latents("prompt", prompt.latents)
            if prompt.latents.shape[0] != B:
                raise ShapeError(f"backbone flow: prompt has {prompt.latents.shape[0]} rows for {B} conditions")
        N, C = P + request.n_frames, self.latent_dim
        if self.context_length is not None and N > self.context_length:
            raise ConfigError(f"backbone flow: window of {N} frames exceeds backbone.context_length={self.context_length}")
        if sc.steps < 1:
            raise ConfigError(f"generate.steps={sc.steps}: the ODE solver needs at least 1 step")
        mask = torch.ones(B, N, dtype=torch.bool, device=dev)
        if request.seconds is not None and frame_rate:
            n_real = (request.seconds.to(dev).float() * float(frame_rate)).round().long().clamp(1, N)
            mask = torch.arange(N, device=dev)[None] < n_real[:, None]
        inp = layout.frame_input(self, cond, N, mask)
        noise = torch.stack([torch.randn(N, C, generator=torch.Generator().manual_seed(int(s)))
                             for s in request.seeds]).to(dev, inp.inputs_embeds.dtype)  # [B, N, C]
        ctx = torch.zeros_like(noise)
        ctx_mask = torch.zeros(B, N, dtype=torch.bool, device=dev)
        if prompt is not None:
            ctx[:, :P] = prompt.latents.to(ctx)
            ctx_mask[:, :P] = True
        guided = sc.cfg_coef != 1.0
        if guided:  # rows [cond; null]
            inp2 = BackboneInput(inputs_embeds=torch.cat([inp.inputs_embeds] * 2), attention_mask=torch.cat([mask] * 2),
                                 memory=None if inp.memory is None else torch.cat([inp.memory] * 2),
                                 memory_mask=None if inp.memory_mask is None else torch.cat([inp.memory_mask] * 2))
            keep = torch.cat([torch.ones(B, device=dev), torch.zeros(B, device=dev)])
            ctx2, ctx_mask2 = torch.cat([ctx] * 2), torch.cat([ctx_mask] * 2)
        else:
            inp2, keep, ctx2, ctx_mask2 = inp, torch.ones(B, device=dev), ctx, ctx_mask
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=self.cfg.shift)
        sched.set_timesteps(int(sc.steps), device=dev)
        x = noise.clone()
        for i, timestep in enumerate(sched.timesteps):
            generation_step(i, len(sched.timesteps), "ODE step")  # a stop request ends it here
            sigma = sched.sigmas[i].to(x.dtype)
            if P:  # pin the prompt frames to the prompt's point on the path
                x[:, :P] = (1 - sigma) * ctx[:, :P] + sigma * noise[:, :P]
            t = sigma.expand(inp2.inputs_embeds.shape[0])
            v = self.velocity(torch.cat([x] * 2) if guided else x, t, inp2, keep, ctx2, ctx_mask2)
            if guided:
                v = v[B:] + sc.cfg_coef * (v[:B] - v[B:])
            x = sched.step(v, timestep, x).prev_sample
        if P:
            x[:, :P] = ctx[:, :P]
        return MusicLatents(x, mask, frame_rate)

    def generate(self, layout: SequenceLayout, request: GenerationRequest, codec: MusicCodec) -> MusicLatents:
        """``request.n_frames`` new latent frames per row (after ``request.prompt``'s, when given)."""
        full = self.sample(layout, request, codec.frame_rate)
        P = 0 if request.prompt is None else int(request.prompt.length)  # type: ignore[union-attr]
        assert full.mask is not None
        return MusicLatents(full.latents[:, P:], full.mask[:, P:], codec.frame_rate)

    def check_codec(self, codec: MusicCodec) -> None:
        super().check_codec(codec)
        if int(codec.latent_dim) != self.latent_dim:
            raise ConfigError(f"backbone flow models {self.latent_dim}-channel latents but codec "
                              f"{type(codec).__name__} has latent_dim {codec.latent_dim}; leave backbone.latent_dim "
                              "unset (the model builder takes the codec's) or set it to match")
