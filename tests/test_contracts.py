"""Contract checks (issue 16, item 6): every built-in component passes check_component_contract; third-party
backbones of both families and a latent codec, defined here and registered on a fresh host, pass the same
checks with no change to the core; broken components are caught with a message naming what is wrong."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
import torch
from torch import nn

import vidmusic_core.builtins
from musecoco_symbolic.codec import RemiCodec, RemiConfig
from vidmusic_core import (BackboneInput, BackboneOutput, ConfigError, GenerationRequest, LatentCodec, MusicBackbone,
                           MusicLatents, PluginHost, ShapeError, TokenLM, get_registry, hookimpl, select_positions)
from vidmusic_core.layouts.prefix import PrefixConfig, PrefixLayout
from vidmusic_core.testing import check_component_contract

KINDS = ("encoder", "layout", "backbone", "codec", "metric", "importer", "visualizer")
#: built-ins the default-config check cannot build, and where they are checked instead
EXCLUDED = {
    ("codec", "oobleck"): "needs a local AutoencoderOobleck directory (no weights ship): test_oobleck_contract "
                          "writes a tiny random one",
    ("visualizer", "clip_guided"): "needs local CLIP, Wav2CLIP and VQModel directories (no weights ship): "
                                   "tests/test_clip_guided.py::test_contract builds tiny random ones",
}
#: built-ins checked with a smaller config than their default (the default is checked in the named test)
SMALL = {
    ("encoder", "clip"): lambda: get_registry().get("encoder", "clip").config_cls(output="cls", image_size=32,
                                                                               patch_size=16),  # test_clip.py: default
}


def builtin_components() -> list[tuple[str, str]]:
    host = PluginHost(load_entry_points=True)
    return [(k, n) for k in KINDS for n in host.registry.names(k)]


def layout_pairs() -> list[tuple[str, str]]:
    """(layout, backbone) for every built-in backbone and each layout it supports."""
    reg = PluginHost(load_entry_points=True).registry
    return [(lay, c.name) for c in reg.components("backbone") for lay in c.factory.supported_layouts]


@pytest.mark.parametrize("kind,name", [p for p in builtin_components() if p not in EXCLUDED])
def test_builtin_component_passes(kind, name):
    cfg = SMALL[(kind, name)]() if (kind, name) in SMALL else None
    check_component_contract(kind, name, cfg)


def test_every_exclusion_is_a_registered_component():
    assert set(EXCLUDED) | set(SMALL) <= set(builtin_components())


@pytest.mark.parametrize("layout,backbone", layout_pairs())
def test_builtin_layout_with_each_backbone_that_supports_it(layout, backbone):
    check_component_contract("layout", layout, backbone=backbone)


def test_layout_pairs_cover_both_families():
    pairs = layout_pairs()
    assert ("prefix", "inspire") in pairs and ("cross", "musicgen") in pairs and ("aligned", "flow") in pairs
    assert ("attribute_head", "musecoco") in pairs


def test_oobleck_contract(tmp_path):
    from diffusers import AutoencoderOobleck

    from flow_dit.oobleck import OobleckConfig

    torch.manual_seed(0)
    AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2], decoder_channels=8,
                       decoder_input_channels=4, audio_channels=1, sampling_rate=8000).save_pretrained(tmp_path / "vae")
    codec = check_component_contract("codec", "oobleck", OobleckConfig(weights=str(tmp_path / "vae")))
    assert (codec.latent_dim, codec.frame_rate) == (4, 1000.0)


# -- third-party components, defined here ----------------------------------------------------------
class TinyFlow(MusicBackbone):
    """A non-autoregressive backbone: an MLP regressing the flow velocity from [x_t, t, per-frame condition];
    ``generate`` is one Euler step from seeded noise (t = 1) to data (t = 0)."""

    representation = "latents"
    supported_layouts = ("aligned", "prefix")

    @dataclass
    class Config:
        width: int = 16
        latent_dim: Optional[int] = None  # wiring: build_model sets it from the codec

    def __init__(self, cfg: "TinyFlow.Config") -> None:
        super().__init__()
        if cfg.latent_dim is None:
            raise ConfigError("tiny_flow: latent_dim is unset (build it with build_model)")
        self.width, self.latent_dim = cfg.width, cfg.latent_dim
        self.net = nn.Sequential(nn.Linear(cfg.latent_dim + 1 + cfg.width, 32), nn.GELU(), nn.Linear(32, cfg.latent_dim))

    def velocity(self, x, t, cond):  # x [B, T, C], t [B], cond [B, T, D] -> [B, T, C]
        return self.net(torch.cat([x, t[:, None, None].expand(*x.shape[:2], 1), cond], dim=-1))

    def loss(self, inp: BackboneInput) -> torch.Tensor:
        x0, mask = inp.target, inp.target_mask  # [B, T, C], [B, T]
        t = torch.rand(x0.shape[0])
        eps = torch.randn_like(x0)
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * eps
        err = ((self.velocity(xt, t, inp.inputs_embeds) - (eps - x0)) ** 2).mean(-1)  # [B, T]
        return (err * mask).sum() / mask.sum()

    def noise(self, seeds, n):  # one generator per row: a row depends only on its seed
        return torch.stack([torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(int(s)))
                            for s in seeds])

    @torch.no_grad()
    def generate(self, layout, request: GenerationRequest, codec) -> MusicLatents:
        P = 0 if request.prompt is None else request.prompt.length
        inp = layout.frame_input(self, request.condition, P + request.n_frames)
        eps, t = self.noise(request.seeds, P + request.n_frames), torch.ones(len(request.seeds))
        v = self.velocity(eps, t, inp.inputs_embeds)
        if request.sampling.cfg_coef != 1.0:  # CFG against the null condition (no per-frame input)
            null = self.velocity(eps, t, torch.zeros_like(inp.inputs_embeds))
            v = null + request.sampling.cfg_coef * (v - null)
        return MusicLatents((eps - v)[:, P:], None, codec.frame_rate)


class TinyGRU(TokenLM):
    """An autoregressive token LM: summed codebook embeddings, a GRU (its hidden state is the cache), a head per
    codebook with an EOS past the codes."""

    supported_layouts = ("prefix", "aligned")

    @dataclass
    class Config:
        n_codebooks: int = 2
        audio_vocab: Optional[int] = 32
        width: int = 16

    def __init__(self, cfg: "TinyGRU.Config") -> None:
        super().__init__()
        self.n_codebooks, self.cardinality, self.width = cfg.n_codebooks, cfg.audio_vocab or 32, cfg.width
        self.eos_id = self.cardinality
        self.codebooks = nn.ModuleList(nn.Embedding(self.cardinality, cfg.width) for _ in range(cfg.n_codebooks))
        self.rnn = nn.GRU(cfg.width, cfg.width, batch_first=True)
        self.head = nn.Linear(cfg.width, cfg.n_codebooks * (self.cardinality + 1))

    def embed(self, codes):  # [B, K, T] -> [B, T, D]
        return sum(e(codes[:, k]) for k, e in enumerate(self.codebooks))

    def new_cache(self):
        return {"h": None}

    def forward(self, inp, cache=None, logits_positions="all"):
        x = inp.inputs_embeds * inp.attention_mask[..., None]  # padding enters as zeros
        y, h = self.rnn(x, None if cache is None else cache["h"])
        if cache is not None:
            cache["h"] = h
        sel = select_positions(y, logits_positions)  # [B, S', D]
        logits = self.head(sel).view(*sel.shape[:2], self.n_codebooks, -1).transpose(1, 2)  # [B, K, S', V + 1]
        return BackboneOutput(logits, y, cache)


class TinyMelMean(LatentCodec):
    """A latent codec: the mean |x| and mean x of each 20 ms hop as 2 channels; decode holds them as a tone."""

    @dataclass
    class Config:
        sample_rate: int = 8000
        hop: int = 160

    def __init__(self, cfg: "TinyMelMean.Config") -> None:
        super().__init__()
        self.sample_rate, self.hop, self.frame_rate, self.latent_dim = cfg.sample_rate, cfg.hop, cfg.sample_rate / cfg.hop, 2

    def encode(self, audio):  # [B, C, L] -> [B, ceil(L / hop), 2]
        x = torch.nn.functional.pad(audio.mean(1), (0, (-audio.shape[-1]) % self.hop)).unflatten(1, (-1, self.hop))
        return MusicLatents(torch.stack([x.abs().mean(-1), x.mean(-1)], dim=-1), None, self.frame_rate)

    def decode(self, latents):  # [B, T, 2] -> [B, 1, T * hop]
        amp = latents.latents[..., 0].repeat_interleave(self.hop, dim=1)
        return (amp * torch.sin(torch.arange(amp.shape[1]) * 0.3))[:, None]


# broken variants: each breaks one rule
class SeedlessFlow(TinyFlow):
    def noise(self, seeds, n):
        return torch.randn(len(seeds), n, self.latent_dim)  # the global RNG: the seeds are ignored


class FixedNoiseFlow(TinyFlow):
    def noise(self, seeds, n):
        return super().noise([0] * len(seeds), n)  # every seed gives the same music


class UnlayoutedFlow(TinyFlow):
    @torch.no_grad()
    def generate(self, layout, request, codec):  # never asks the layout: generates without the video
        eps = self.noise(request.seeds, request.n_frames)
        return MusicLatents(eps - self.velocity(eps, torch.ones(len(request.seeds)), torch.zeros(
            *eps.shape[:2], self.width)), None, codec.frame_rate)


class ForgetfulGRU(TinyGRU):
    def forward(self, inp, cache=None, logits_positions="all"):
        return super().forward(inp, None, logits_positions)  # never continues the cache


class ChannelsFirstCodec(TinyMelMean):
    def encode(self, audio):
        lat = super().encode(audio).latents.transpose(1, 2)  # [B, 2, T]: the wrong layout
        return MusicLatents(lat, None, self.frame_rate)


class LastIsFirstGRU(TinyGRU):
    def forward(self, inp, cache=None, logits_positions="all"):
        out = super().forward(inp, cache, "all")
        return BackboneOutput(out.logits[:, :, :1] if logits_positions == "last" else out.logits, out.hidden, cache)


class NoMidiRemi(RemiCodec):
    def write(self, music, row, seconds, out_dir, stem):
        meta = super().write(music, row, seconds, out_dir, stem)
        (out_dir / meta["midi"]).unlink()  # names a file it does not leave behind
        return meta


class LeakyPrefix(PrefixLayout):
    def forward(self, backbone, condition, music, text=None, seconds=None):
        inp = super().forward(backbone, condition, music, text, seconds)
        if inp.labels is not None:
            inp.labels[:, :, 0] = 0  # a label on the first prefix position
        return inp


class LeakyGRU(TinyGRU):
    supported_layouts = ("leaky_prefix",)


class third_party:
    """A plugin module, as a third-party package's ``plugin.py``."""

    @staticmethod
    @hookimpl
    def register_backbones(register):
        for name, cls in [("tiny_flow", TinyFlow), ("tiny_gru", TinyGRU), ("seedless_flow", SeedlessFlow),
                          ("fixed_noise_flow", FixedNoiseFlow), ("unlayouted_flow", UnlayoutedFlow),
                          ("forgetful_gru", ForgetfulGRU), ("leaky_gru", LeakyGRU), ("last_is_first_gru", LastIsFirstGRU)]:
            register(name, cls, cls.Config)

    @staticmethod
    @hookimpl
    def register_codecs(register):
        register("tiny_mel_mean", TinyMelMean, TinyMelMean.Config)
        register("channels_first", ChannelsFirstCodec, ChannelsFirstCodec.Config)
        register("no_midi_remi", NoMidiRemi, RemiConfig)

    @staticmethod
    @hookimpl
    def register_layouts(register):
        register("leaky_prefix", LeakyPrefix, PrefixConfig)


@pytest.fixture
def host(vidmusic_host):
    vidmusic_host.register_plugin(vidmusic_core.builtins, name="core")  # the layouts
    vidmusic_host.register_plugin(third_party, name="third_party")
    return vidmusic_host


def test_third_party_backbones_and_codec_pass(host):
    check_component_contract("backbone", "tiny_flow")
    check_component_contract("backbone", "tiny_gru")
    check_component_contract("codec", "tiny_mel_mean")
    for layout in ("aligned", "prefix"):
        check_component_contract("layout", layout, backbone="tiny_flow")
        check_component_contract("layout", layout, backbone="tiny_gru")


def test_third_party_flow_trains_through_the_model_builder(host):
    from vidmusic_core.config import compose
    from vidmusic_core.model import build_model

    cfg = compose(sugar={"encoder": "none", "layout": "aligned", "backbone": "tiny_flow", "codec": "tiny_mel_mean"},
                  base=None)
    codec = host.registry.get("codec", "tiny_mel_mean").build(TinyMelMean.Config())
    model = build_model(cfg, codec, seed=0)
    assert model.backbone.latent_dim == 2  # from the codec
    lat = codec.encode(0.1 * torch.randn(2, 1, 8000))  # [2, 50, 2]
    batch = {"features": {}, "local_times": torch.zeros(2, 1), "local_mask": torch.ones(2, 1, dtype=torch.bool),
             "latents": lat.latents, "latents_mask": lat.mask}
    loss = model.loss(batch, codec.frame_rate)
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="does not support layout 'cross'"):
        build_model(compose(sugar={"encoder": "none", "layout": "cross", "backbone": "tiny_flow",
                                   "codec": "tiny_mel_mean"}, base=None), codec)


@pytest.mark.parametrize("kind,name,error,message", [
    ("backbone", "seedless_flow", AssertionError, "backbone 'seedless_flow' with layout 'aligned': generate with the "
                                                  "same seeds gave different latents"),
    ("backbone", "fixed_noise_flow", AssertionError, "seeds [3, 4] gave the latents of seeds [1, 2]: the seeds are ignored"),
    ("backbone", "unlayouted_flow", AssertionError, "generate through a layout without frame_input did not raise"),
    ("backbone", "forgetful_gru", AssertionError, "backbone 'forgetful_gru' with layout 'prefix': cached generation"),
    ("backbone", "last_is_first_gru", AssertionError, 'backbone \'last_is_first_gru\': forward(logits_positions="last") '
                                                      'differs from the last position of "all"'),
    ("codec", "no_midi_remi", AssertionError, "codec 'no_midi_remi': write() names midi='row.mid' but wrote no such file"),
    ("codec", "channels_first", ShapeError, "codec 'channels_first': encode(audio [1, 1, L]).latents expected [1, *, 2]"),
    ("layout", "leaky_prefix", AssertionError, "layout 'leaky_prefix' (with backbone 'leaky_gru'): labels on prefix "
                                               "positions"),
])
def test_broken_component_is_caught(host, kind, name, error, message):
    with pytest.raises(error) as info:
        check_component_contract(kind, name)
    assert message in str(info.value), str(info.value)


def test_unsupported_pairing_is_refused(host):
    with pytest.raises(AssertionError, match=r"backbone 'tiny_gru' does not list the layout"):
        check_component_contract("layout", "cross", backbone="tiny_gru")
