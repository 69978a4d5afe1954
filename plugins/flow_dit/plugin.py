"""Hook implementations of the `flow_dit` plugin (registered through the `vidmusic` entry-point group).

- backbone ``flow``: a DiT trained by conditional flow matching on codec latents, sampled with diffusers'
  flow-matching Euler scheduler (:class:`flow_dit.backbone.FlowBackbone`);
- codec ``oobleck``: a diffusers ``AutoencoderOobleck`` loaded from a local directory (the Stable Audio Open
  VAE format), audio <-> latents (:class:`flow_dit.oobleck.OobleckCodec`).
"""
from __future__ import annotations

from vidmusic_core import hookimpl

from .backbone import FlowBackbone, FlowConfig


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("flow", FlowBackbone, FlowConfig)


@hookimpl
def register_codecs(register) -> None:  # type: ignore[no-untyped-def]
    from .oobleck import OobleckCodec, OobleckConfig  # local: diffusers' autoencoder module loads on demand

    register("oobleck", OobleckCodec, OobleckConfig)
