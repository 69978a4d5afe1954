"""Assembling encoder + layout + backbone (+ codec) from a run config, and the training loss.

:func:`build_model` is the one place that wires components together: it fills the layout's wiring
fields (``cond_dim`` from the encoder, ``width`` from the backbone, ``delays``/``frame_rate`` from the
codec), sizes the backbone's vocabulary from the codec where the backbone leaves it open, and checks
that the backbone supports the layout.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from .config import component_from_config
from .errors import ConfigError
from .components import MusicBackbone, MusicCodec, SequenceLayout, TokenLM
from .types import Condition, Frames, MusicLatents, MusicOutput, MusicTokens


class VidMusicModel(nn.Module):
    """The trainable model: ``encoder`` (its frozen part excluded from training), ``layout``, ``backbone``."""

    def __init__(self, encoder: nn.Module, layout: SequenceLayout, backbone: MusicBackbone, names: Mapping[str, str],
                 configs: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoder, self.layout, self.backbone = encoder, layout, backbone
        self.names = dict(names)  # section -> component name
        self.configs = dict(configs)  # section -> typed config (as built)
        self.condition_dropout = 0.0  # training: the fraction of rows whose condition is the CFG null (train.*)

    def condition_from_features(self, features: Mapping[str, Tensor], local_times: Tensor, local_mask: Tensor,
                                duration: Tensor | None = None, global_times: Tensor | None = None) -> Condition:
        """Condition from cached frozen features (the training path: no video decoding)."""
        B, T = local_times.shape
        frames = Frames(torch.zeros(B, T, 1, 1, 3, dtype=torch.uint8, device=local_times.device), local_times,
                        local_mask, duration=duration)
        return self.encoder.forward_features(features, frames)

    def condition_from_batch(self, batch: Mapping[str, Any]) -> Condition:
        return self.condition_from_features(batch["features"], batch["local_times"], batch["local_mask"],
                                            batch.get("duration"), batch.get("global_times"))

    def loss(self, batch: Mapping[str, Any], frame_rate: float | None) -> Tensor:
        """The backbone's training loss (+ the layout's auxiliary loss) for a collated batch (see
        data/dataset.py): music tokens under ``codes``/``codes_mask``, or latents under ``latents``/``latents_mask``."""
        cond = self.condition_from_batch(batch)
        if self.training and self.condition_dropout > 0:
            cond = drop_condition(cond, self.condition_dropout)
        music: MusicOutput
        if "latents" in batch:
            music = MusicLatents(batch["latents"], batch["latents_mask"], frame_rate)
        else:
            music = MusicTokens(batch["codes"], batch["codes_mask"], frame_rate)
        inp = self.layout(self.backbone, cond, music, text=batch.get("text"))
        loss = self.backbone.loss(inp)
        aux = self.layout.aux_loss(cond, music)  # e.g. a head on the condition (attribute_head)
        return loss if aux is None else loss + aux

    def forward(self, batch: Mapping[str, Any], frame_rate: float | None) -> Tensor:  # type: ignore[override]
        """The training loss (``forward`` so DDP can wrap the model)."""
        return self.loss(batch, frame_rate)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def drop_condition(cond: Condition, p: float) -> Condition:
    """Each row's condition replaced by its CFG null (:meth:`Condition.null_like`) with probability ``p``
    (global RNG: a resumed run draws the same rows). Trains the null that ``generate.cfg_coef`` guides from."""
    drop = torch.rand(cond.batch_size, device=cond.tokens.device) < p  # [B]
    if not bool(drop.any()):
        return cond
    null = cond.null_like().tokens
    tokens = torch.where(drop[:, None, None], null.to(cond.tokens.dtype), cond.tokens)  # [B, N, D]
    return Condition(tokens, cond.mask, cond.times, cond.null_tokens, cond.extras)


def _set_if_field(cfg: Any, name: str, value: Any, only_if_none: bool = False) -> Any:
    names = {f.name for f in dataclasses.fields(cfg)}
    if name not in names:
        return cfg
    if only_if_none and getattr(cfg, name) is not None:
        return cfg
    return dataclasses.replace(cfg, **{name: value})


def build_codec(cfg: DictConfig) -> MusicCodec:
    comp, ccfg = component_from_config(cfg, "codec")
    return comp.build(ccfg)


def build_model(cfg: DictConfig, codec: MusicCodec, seed: int | None = None) -> VidMusicModel:
    """Build encoder, backbone and layout from ``cfg`` and wire them to ``codec``."""
    if seed is not None:
        torch.manual_seed(seed)
    enc_comp, enc_cfg = component_from_config(cfg, "encoder")
    encoder = enc_comp.build(enc_cfg)
    bb_comp, bb_cfg = component_from_config(cfg, "backbone")
    bb_cfg = _set_if_field(bb_cfg, "n_codebooks", codec.n_codebooks)
    bb_cfg = _set_if_field(bb_cfg, "audio_vocab", codec.cardinality, only_if_none=True)
    bb_cfg = _set_if_field(bb_cfg, "latent_dim", codec.latent_dim, only_if_none=True)
    if codec.vocab_name is not None:  # symbolic codecs: the backbone reads the same vocabulary
        bb_cfg = _set_if_field(bb_cfg, "vocab", codec.vocab_name)
    backbone = bb_comp.build(bb_cfg)
    backbone.check_codec(codec)
    if isinstance(backbone, TokenLM) and backbone.cardinality != codec.cardinality:  # training needs every code
        raise ConfigError(f"backbone {bb_comp.name!r} predicts {backbone.cardinality} codes per codebook but codec "
                          f"{cfg.codec.name!r} has {codec.cardinality}; leave backbone.audio_vocab unset (it follows "
                          "the codec) or set it to match")
    lay_comp, lay_cfg = component_from_config(cfg, "layout")
    supported: Sequence[str] = backbone.supported_layouts
    if lay_comp.name not in supported:
        raise ConfigError(f"backbone {bb_comp.name!r} does not support layout {lay_comp.name!r}; it supports "
                          f"{', '.join(supported) or 'none'}")
    own_specials = isinstance(backbone, TokenLM) and backbone.n_special_rows == 0  # else the backbone's rows (or none)
    wiring = {"cond_dim": int(encoder.dim), "width": int(backbone.width), "delays": list(codec.delays),
              "frame_rate": codec.frame_rate, "own_specials": own_specials, "cardinality": codec.cardinality}
    if codec.vocab_name is not None:
        wiring["vocab"] = codec.vocab_name
    if cfg.generate.structure is not None:  # the label of the structure row (prefix layout)
        wiring["structure"] = str(cfg.generate.structure)
    for k, v in wiring.items():
        lay_cfg = _set_if_field(lay_cfg, k, v)
    layout = lay_comp.build(lay_cfg)
    return VidMusicModel(encoder, layout, backbone,
                         {"encoder": enc_comp.name, "layout": lay_comp.name, "backbone": bb_comp.name},
                         {"encoder": enc_cfg, "layout": lay_cfg, "backbone": bb_cfg})
