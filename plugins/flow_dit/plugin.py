"""Hook implementations of the `flow_dit` plugin (registered through the `vidmusic` entry-point group).

- backbone ``flow``: a DiT trained by conditional flow matching on codec latents, sampled with diffusers'
  flow-matching Euler scheduler (:class:`flow_dit.backbone.FlowBackbone`);
- codec ``oobleck``: a diffusers ``AutoencoderOobleck`` loaded from a local directory (the Stable Audio Open
  VAE format), audio <-> latents (:class:`flow_dit.oobleck.OobleckCodec`).
"""
from __future__ import annotations

from vidmusic_core import Preset, hookimpl

from .backbone import FlowBackbone, FlowConfig


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("flow", FlowBackbone, FlowConfig)


#: what `--backbone flow` needs in place of the embedded default's (token) choices: the no-download latent codec,
#: 16 ODE steps, and a schedule that beats the shuffled control on the toy data; the layout stays the default's
#: (`aligned` with the condition prefix as cross-attention memory)
FLOW_RUN = {
    "codec": {"name": "mel_latent"},
    "layout": {"clip_prior": False},  # a prior over codes: latents have none
    "backbone": {"name": "flow"},
    "data": {"toy_n": 200},  # the figures in docs/plugins/flow.md were measured on 200 clips
    "generate": {"steps": 16, "cfg_coef": 1.0},
    "train": {"steps": 400, "batch_size": 16, "lr": 0.001, "warmup_steps": 50, "ckpt_every": 200},
    "eval": {"metrics": ["beat_f1", "tempo_acc", "key_acc", "fd_mel"]},
}


@hookimpl
def register_presets(register) -> None:  # type: ignore[no-untyped-def]
    register("flow", lambda: Preset(FLOW_RUN, default_for="flow",
                                    description="flow matching over mel_latent latents (no downloads)"))


@hookimpl
def register_codecs(register) -> None:  # type: ignore[no-untyped-def]
    from .oobleck import OobleckCodec, OobleckConfig  # local: diffusers' autoencoder module loads on demand

    register("oobleck", OobleckCodec, OobleckConfig)
