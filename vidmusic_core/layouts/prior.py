"""A clip-level code prior: what codes a clip uses, predicted from its whole video.

Clip-level properties (the key, the mode, the instruments) hold for every frame of the music, but an
autoregressive LM trained with teacher forcing can read them off its own history, so the loss gives it
little reason to take them from the video, and at generation nothing holds them in place: on the toy
data the music drifts through keys within 8 s (docs/design-notes.md, "Harmony"). :class:`ClipPrior` is
a small head on the clip-mean condition that predicts, per codebook, the distribution of the clip's codes
(a video-conditioned unigram model, trained by cross-entropy against every frame's code: the layout's
``aux_loss``). At generation the sampling loop adds ``generate.prior_weight`` × its log-probabilities
to the LM's logits at every column (a product of experts), which keeps the music inside the code set
the video asks for; the LM still decides the order, the rhythm and the details.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..types import Condition, MusicOutput, MusicTokens, check_shapes
from .reduce import clip_mean


class ClipPrior(nn.Module):
    """Clip-mean condition ``[B, D_c]`` → MLP → log p(code) ``[B, K, V]`` for each of ``K`` codebooks."""

    def __init__(self, cond_dim: int, n_codebooks: int, cardinality: int, hidden: int = 256) -> None:
        super().__init__()
        self.n_codebooks, self.cardinality = n_codebooks, cardinality
        self.net = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, n_codebooks * cardinality))

    def log_probs(self, condition: Condition) -> Tensor:
        """``[B, K, V]`` log-probabilities of each codebook's codes in the clip of ``condition``."""
        logits = self.net(clip_mean(condition).float())  # [B, K*V]
        return torch.log_softmax(logits.view(-1, self.n_codebooks, self.cardinality), dim=-1)

    def loss(self, condition: Condition, music: MusicTokens) -> Tensor:
        """Mean cross-entropy of every real frame's code (``music.codes [B, K, T]``) under the prior."""
        check_shapes("ClipPrior", "codes", music.codes, ("B", self.n_codebooks, "T"))
        logp = self.log_probs(condition)  # [B, K, V]
        picked = logp.gather(2, music.codes.clamp(0, self.cardinality - 1))  # [B, K, T]
        mask = music.mask if music.mask is not None else torch.ones_like(music.codes[:, 0], dtype=torch.bool)
        w = mask[:, None, :].expand_as(picked).to(picked.dtype)  # [B, K, T]
        return -(picked * w).sum() / w.sum().clamp_min(1.0)


class ClipPriorMixin:
    """The ``clip_prior`` option of a layout: builds the head, trains it as ``aux_loss`` and serves it as
    ``logit_prior``. The layout's config carries ``clip_prior``, ``clip_prior_hidden`` and the wiring
    ``cond_dim``, ``delays`` (one per codebook) and ``cardinality``; call :meth:`_init_clip_prior` in
    ``__init__`` after ``nn.Module.__init__``."""

    clip_prior: ClipPrior | None

    def _init_clip_prior(self, cfg) -> None:  # noqa: ANN001 - any layout config with the fields above
        self.clip_prior = None
        if not cfg.clip_prior:
            return
        if not cfg.cardinality or not cfg.delays:
            raise ConfigError("layout.clip_prior needs a token codec (codes per codebook and codebooks are wired "
                              "from it by vidmusic_core.model.build_model); latent codecs have no codes to predict")
        self.clip_prior = ClipPrior(int(cfg.cond_dim), len(cfg.delays), int(cfg.cardinality), cfg.clip_prior_hidden)

    def aux_loss(self, condition: Condition, music: MusicOutput) -> Tensor | None:
        """The clip prior's cross-entropy on the clip's codes (``clip_prior``), else None."""
        if self.clip_prior is None or not isinstance(music, MusicTokens):
            return None
        return self.clip_prior.loss(condition, music)

    def logit_prior(self, condition: Condition) -> Tensor | None:
        """``[B, K, V]`` log-probabilities the sampling loop adds to the logits (``clip_prior``), else None."""
        return None if self.clip_prior is None else self.clip_prior.log_probs(condition)
