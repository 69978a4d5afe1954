"""Layout ``attribute_head``: video -> MuseCoco attributes -> music (conditioning way (a)).

A small head on any encoder's ``Condition`` predicts the 63 attribute columns of the MuseCoco prefix
(one class per single key, yes/no/NA per slot of the multi-hot keys), in the spirit of MuseCoco's
stage-1 text-to-attribute heads. It is trained beside the LM on the attributes extracted from each
clip's MIDI (the codec's own prefix: :meth:`aux_loss`); at generation its predictions are forced into
the prefix columns (:meth:`forced_codes`), NA where it is unsure (max probability below
``na_threshold``). The LM itself then sees only attributes, as upstream MuseCoco does — so an imported
MuseCoco checkpoint can be driven by video — unless ``video_prefix`` also puts the pooled video before
them (the ``prefix`` layout's path).

With ``density_head`` (and the codec's ``bar_density``) a second head classifies every condition token
into the per-bar onset-density classes of :mod:`.density`, trained on the classes the music writes for
the bar at that token's time; at generation :meth:`bar_density` gives the generation controller the class
of each bar's span (the mean of the head's probabilities over the tokens in it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmusic_core import Condition, ConfigError, MusicTokens, PrefixConfig, PrefixLayout

from .density import N_DENSITY
from .vocab import ATTRIBUTE_KEYS, N_ATTRIBUTE_TOKENS, Vocab

MAX_CLASSES = max(k.n_values for k in ATTRIBUTE_KEYS)


@dataclass
class AttributeHeadConfig(PrefixConfig):
    """``layout.*`` options of ``attribute_head`` (plus the ``prefix`` layout's, for the video prefix).

    ``video_prefix``: also put the pooled video before the attributes (False: the LM sees attributes
    only, as MuseCoco). ``na_threshold``: below this top-class probability a column is left NA.
    ``hidden``: the head's hidden width. ``head_weight``: weight of the head's loss. ``density_head``: also a
    per-token head for the per-bar density control (needs ``codec.bar_density=true``), its loss weighted by
    ``density_weight``. ``vocab``: the
    codec's vocabulary (filled by the model builder from the backbone; leave unset).
    """

    video_prefix: bool = False
    na_threshold: float = 0.5
    hidden: int = 128
    head_weight: float = 1.0
    density_head: bool = False
    density_weight: float = 1.0
    vocab: str = "remi"


def column_table(vocab: Vocab) -> tuple[Tensor, Tensor]:
    """(token id ``[63, MAX_CLASSES]`` of class v at prefix column c, -1 where the key has fewer classes;
    NA class ``[63]``)."""
    ids = torch.full((N_ATTRIBUTE_TOKENS, MAX_CLASSES), -1, dtype=torch.long)
    na = torch.zeros(N_ATTRIBUTE_TOKENS, dtype=torch.long)
    c = 0
    for key in ATTRIBUTE_KEYS:
        for slot in range(max(1, key.n_slots)):
            for v in range(key.n_values):
                tok = f"{key.name}_{slot}_{v}" if key.multi else f"{key.name}_{v}"
                ids[c, v] = vocab.encode([tok])[0]
            na[c] = key.na
            c += 1
    return ids, na


class AttributeHeadLayout(PrefixLayout):
    """``prefix`` layout whose attribute columns come from a head on the video condition."""

    Config = AttributeHeadConfig

    def __init__(self, cfg: Optional[AttributeHeadConfig] = None) -> None:
        cfg = cfg or AttributeHeadConfig()
        if cfg.cond_dim is None or cfg.width is None:
            raise ConfigError("layout attribute_head: cond_dim and width are unset; build it with build_model")
        if cfg.aligned:
            raise ConfigError("layout attribute_head: aligned is not available (symbolic codecs have no frame rate)")
        super().__init__(AttributeHeadConfig(**{**cfg.__dict__, "text_only": not cfg.video_prefix,
                                                "prefix_condition": cfg.video_prefix}))
        from .backbone import vocab_for

        ids, na = column_table(vocab_for(cfg.vocab))
        self.register_buffer("column_ids", ids, persistent=False)
        self.register_buffer("column_na", na, persistent=False)
        self.register_buffer("valid", ids >= 0, persistent=False)
        self.attribute_head = nn.Sequential(nn.Linear(2 * cfg.cond_dim, cfg.hidden), nn.GELU(),
                                            nn.Linear(cfg.hidden, N_ATTRIBUTE_TOKENS * MAX_CLASSES))
        if cfg.density_head:  # per condition token: [token, clip mean] -> density class
            self.density_head = nn.Sequential(nn.Linear(2 * cfg.cond_dim, cfg.hidden), nn.GELU(),
                                              nn.Linear(cfg.hidden, N_DENSITY))
            self._symbols = vocab_for(cfg.vocab).symbols

    def density_logits(self, condition: Condition) -> Tensor:
        """Float logits ``[B, N, N_DENSITY]`` of the density class at each condition token."""
        m = condition.mask.to(condition.tokens.dtype)[..., None]
        mean = (condition.tokens * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        x = torch.cat([condition.tokens, mean.expand_as(condition.tokens)], dim=-1)
        return self.density_head(x).float()

    def _density_loss(self, condition: Condition, music: MusicTokens) -> Tensor:
        from .density import token_targets

        V = len(self._symbols)
        times = condition.times.detach().float().cpu().numpy()
        targets = torch.full(condition.mask.shape, -1, dtype=torch.long)
        written = False
        for b in range(music.codes.shape[0]):
            ids = music.codes[b, 0]
            if music.mask is not None:
                ids = ids[music.mask[b]]
            toks = [self._symbols[i] if 0 <= i < V else "" for i in ids.tolist()]
            written = written or any(t.startswith("BarDensity_") for t in toks)
            targets[b] = torch.from_numpy(token_targets(toks, times[b]))
        targets = targets.to(condition.mask.device).masked_fill(~condition.mask, -1)
        if not bool((targets >= 0).any()):
            if not written:
                raise ConfigError("layout.density_head=true but the music has no BarDensity tokens: set "
                                  "codec.bar_density=true (or layout.density_head=false)")
            return condition.tokens.sum() * 0.0
        logits = self.density_logits(condition)
        return self.cfg.density_weight * F.cross_entropy(logits.reshape(-1, N_DENSITY), targets.reshape(-1),
                                                         ignore_index=-1)

    @torch.no_grad()
    def bar_density(self, condition: Condition) -> Optional[list[Callable[[float, float], int]]]:
        """Per row, ``(start, end) -> density class`` of a bar spanning those seconds (None without
        ``density_head``)."""
        if not self.cfg.density_head:
            return None
        from .density import span_class

        probs = self.density_logits(condition).softmax(dim=-1).cpu().numpy()
        times, mask = condition.times.float().cpu().numpy(), condition.mask.cpu().numpy()
        return [partial(span_class, probs[b][mask[b]], times[b][mask[b]]) for b in range(probs.shape[0])]

    def head_logits(self, condition: Condition) -> Tensor:
        """Float logits ``[B, 63, MAX_CLASSES]`` (-inf past each column's classes) from the masked mean
        and standard deviation of the condition tokens over time."""
        m = condition.mask.to(condition.tokens.dtype)[..., None]  # [B, N, 1]
        n = m.sum(dim=1).clamp(min=1.0)
        mean = (condition.tokens * m).sum(dim=1) / n
        std = (((condition.tokens - mean[:, None]) ** 2 * m).sum(dim=1) / n).clamp(min=1e-8).sqrt()
        logits = self.attribute_head(torch.cat([mean, std], dim=-1)).float()
        logits = logits.view(-1, N_ATTRIBUTE_TOKENS, MAX_CLASSES)
        return logits.masked_fill(~self.valid, float("-inf"))

    def aux_loss(self, condition: Condition, music: MusicTokens) -> Tensor:
        """``head_weight`` x cross-entropy of the head against the attribute classes written in each row's
        prefix (the first 63 codes; rows without a whole prefix are skipped), plus with ``density_head``
        ``density_weight`` x cross-entropy of the density head against each token's bar class."""
        density = self._density_loss(condition, music) if self.cfg.density_head else 0.0
        return density + self._attribute_loss(condition, music)

    def _attribute_loss(self, condition: Condition, music: MusicTokens) -> Tensor:
        codes = music.codes[:, 0, :N_ATTRIBUTE_TOKENS]  # [B, 63]
        if codes.shape[1] < N_ATTRIBUTE_TOKENS:
            return condition.tokens.sum() * 0.0
        match = codes[..., None] == self.column_ids[None]  # [B, 63, C]
        whole = match.any(dim=-1).all(dim=-1)  # [B]
        logits = self.head_logits(condition)
        if not bool(whole.any()):
            return condition.tokens.sum() * 0.0  # (logits hold -inf: their sum x 0 is NaN)
        target = match.float().argmax(dim=-1)  # [B, 63]
        loss = F.cross_entropy(logits[whole].reshape(-1, MAX_CLASSES), target[whole].reshape(-1))
        return self.cfg.head_weight * loss

    @torch.no_grad()
    def forced_codes(self, condition: Condition) -> Tensor:
        """Codes ``[B, 1, 63]`` of the head's classes, NA where the top probability < ``na_threshold``."""
        probs = self.head_logits(condition).softmax(dim=-1)
        top, cls = probs.max(dim=-1)  # [B, 63]
        cls = torch.where(top >= self.cfg.na_threshold, cls, self.column_na[None].expand_as(cls))
        cols = torch.arange(N_ATTRIBUTE_TOKENS, device=cls.device)[None].expand_as(cls)
        return self.column_ids[cols, cls][:, None]  # [B, 1, 63]

    def predicted_attributes(self, condition: Condition) -> list[dict[str, Any]]:
        """The head's attribute values per item (for inspection)."""
        from .attributes import tokens_to_values
        from .backbone import vocab_for

        voc = vocab_for(self.cfg.vocab)
        return [tokens_to_values(voc.decode(row.tolist())) for row in self.forced_codes(condition)[:, 0]]

