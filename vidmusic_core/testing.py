"""Test helpers for plugin authors. Installed with vidmusic; pytest is optional.

Functions (no pytest needed):
- :func:`check_component_contract` builds a component from its default config on the CPU, runs a tiny
  batch, checks the documented shapes, round-trips the config through omegaconf and the weights
  through safetensors. Every built-in component's tests start with it::

      from vidmusic_core.testing import check_component_contract

      def test_contract():
          check_component_contract("encoder", "mine")

Fixtures (with pytest installed, e.g. ``pip install "vidmusic[test]"``; this module is a pytest plugin,
loaded through the ``pytest11`` entry point):
- ``vidmusic_host``: a fresh :class:`~vidmusic_core.plugins.PluginHost` **without** entry-point
  autoload, installed as the default host for the test. Register what you test with
  ``vidmusic_host.register_plugin(my_plugin_module)``. Without pytest, ``with use_host(PluginHost(
  load_entry_points=False)) as host:`` does the same.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf

from .checkpoint import load_state_strict, load_weights, save_weights
from .plugins import Component, PluginHost, get_registry, use_host
from .components import Backbone, ConditionEncoder, Metric, MusicCodec, SequenceLayout
from .types import IGNORE_INDEX, BackboneInput, BackboneOutput, Condition, Frames, MusicTokens, check_shapes


try:  # the fixture needs pytest; the contract checks below do not
    import pytest
except ImportError:  # pragma: no cover - exercised in a subprocess by tests/test_testing_helpers.py
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def vidmusic_host() -> Iterator[PluginHost]:
        """A fresh plugin host without entry-point autoload, made the default for the test."""
        host = PluginHost(load_entry_points=False)
        with use_host(host):
            yield host


def make_frames(spec: Any, batch: int = 2, seconds: float = 2.0, seed: int = 0) -> Frames:
    """Random uint8 frames following a FrameSpec; the last row is one local frame shorter (masked)."""
    g = torch.Generator().manual_seed(seed)
    T = max(2, math.ceil(seconds * spec.fps))
    local = torch.randint(0, 256, (batch, T, spec.size, spec.size, 3), generator=g, dtype=torch.uint8)
    times = (torch.arange(T, dtype=torch.float32) / spec.fps).repeat(batch, 1)
    mask = torch.ones(batch, T, dtype=torch.bool)
    mask[-1, -1] = False
    glob = gtimes = None
    if spec.n_global:
        glob = torch.randint(0, 256, (batch, spec.n_global, spec.size, spec.size, 3), generator=g, dtype=torch.uint8)
        gtimes = torch.linspace(0, seconds, spec.n_global).repeat(batch, 1)
    return Frames(local, times, mask, glob, gtimes, torch.full((batch,), seconds))


def _roundtrip_config(comp: Component, cfg: Any) -> None:
    if cfg is None:
        return
    yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    back = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(comp.config_cls), OmegaConf.create(yaml)))
    assert dataclasses.asdict(back) == dataclasses.asdict(cfg), (
        f"{comp.kind} {comp.name!r}: config does not survive an omegaconf YAML round trip:\n{yaml}"
    )


def _run(kind: str, module: Any, seed: int = 0, fit: bool = True) -> dict[str, torch.Tensor]:
    """Run the kind's tiny batch; return named outputs (for the weights round trip).

    ``fit``: let data-dependent components (codecs) fit on the batch first (not after loading weights).
    """
    torch.manual_seed(seed)
    name = type(module).__name__
    if kind == "encoder":
        assert isinstance(module, ConditionEncoder), f"{name} is not a ConditionEncoder"
        assert isinstance(module.dim, int) and module.dim > 0, f"{name}.dim must be a positive int"
        frames = make_frames(module.frame_spec)
        with torch.no_grad():
            cond = module(frames)
            assert isinstance(cond, Condition), f"{name}.forward must return a Condition"
            check_shapes(name, "Condition.tokens", cond.tokens, (frames.batch_size, None, module.dim))
            assert cond.times.min() >= -1e-6 and cond.times.max() <= float(frames.duration.max()) + 1e-6, (
                f"{name}: Condition.times outside the clip [0, {float(frames.duration.max())}] s")
            assert cond.mask[0].any(), f"{name}: every token of an unpadded clip is masked out"
            again = module.forward_features(module.frozen_features(frames), frames)
            torch.testing.assert_close(again.tokens, cond.tokens, msg=f"{name}: forward != "
                                       "forward_features(frozen_features(frames))")
            null = cond.null_like()
            assert null.tokens.shape == cond.tokens.shape
        return {"tokens": cond.tokens}
    if kind == "codec":
        assert isinstance(module, MusicCodec), f"{name} is not a MusicCodec"
        if module.frame_rate is None:
            return {}  # symbolic codecs test encode/decode on scores in their own tests
        g = torch.Generator().manual_seed(seed)
        audio = 0.1 * torch.randn(1, 1, int(module.sample_rate * 2), generator=g)
        if fit:
            module.fit([audio[0]])
        toks = module.encode(audio)
        assert isinstance(toks, MusicTokens)
        check_shapes(name, "codes", toks.codes, (1, module.n_codebooks, None))
        assert int(toks.codes.min()) >= 0 and int(toks.codes.max()) < module.cardinality, f"{name}: codes out of range"
        out = module.decode(toks)
        check_shapes(name, "decoded audio", out, (1, None, None))
        return {"codes": toks.codes.float()}
    if kind == "backbone":
        assert isinstance(module, Backbone), f"{name} is not a Backbone"
        B, S, K = 2, 6, module.n_codebooks
        codes = torch.randint(0, module.cardinality, (B, K, S))
        emb = module.embed(codes)
        check_shapes(name, "embed(codes)", emb, (B, S, module.width))
        mask = torch.ones(B, S, dtype=torch.bool)
        mask[1, -2:] = False
        labels = codes.clone()
        labels[..., 0] = IGNORE_INDEX
        with torch.no_grad():
            out = module(BackboneInput(inputs_embeds=emb, attention_mask=mask, labels=labels))
        assert isinstance(out, BackboneOutput), f"{name}.forward must return a BackboneOutput"
        check_shapes(name, "logits", out.logits, (B, K, S, None))
        assert out.logits.shape[-1] >= module.cardinality
        return {"logits": out.logits}
    if kind == "layout":
        assert isinstance(module, SequenceLayout), f"{name} is not a SequenceLayout"
        return {}  # layouts are checked with a backbone in their own tests (check_layout_contract)
    if kind == "metric":
        assert isinstance(module, Metric), f"{name} is not a Metric"
        proto = module.protocol()
        assert isinstance(proto, dict) and proto, f"{name}.protocol() must be a non-empty dict"
        return {}
    return {}


def check_component_contract(kind: str, name: str, cfg: Any = None) -> Any:
    """Build ``kind``/``name`` from its default config (or ``cfg``) on the CPU and check its contract.

    Returns the built component. Raises AssertionError/ShapeError describing the first broken rule.
    """
    comp = get_registry().get(kind, name)
    cfg = comp.default_config() if cfg is None else cfg
    _roundtrip_config(comp, cfg)
    if kind == "importer":
        assert callable(comp.factory)
        return comp.factory
    torch.manual_seed(0)
    module = comp.build(cfg)
    outputs = _run(kind, module)
    if isinstance(module, torch.nn.Module):
        state = module.state_dict()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.safetensors"
            save_weights(state, path)
            torch.manual_seed(12345)  # a different init: only the loaded weights can make outputs equal
            fresh = comp.build(cfg)
            load_state_strict(fresh, load_weights(path), f"{kind} {name}")
        if outputs:
            module.eval()
            fresh.eval()
            again = _run(kind, fresh, fit=False)
            for key, value in outputs.items():
                torch.testing.assert_close(again[key], value, msg=f"{kind} {name}: {key} differs after a "
                                           "safetensors round trip of the weights")
    return module
