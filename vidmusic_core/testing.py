"""Test helpers for plugin authors. Installed with vidmusic; pytest is optional.

Functions (no pytest needed):
- :func:`check_component_contract` builds a component from its default config on the CPU, runs a tiny
  batch, checks the documented contract of its kind, round-trips the config through omegaconf and the
  weights through safetensors. Every built-in component's tests start with it::

      from vidmusic_core.testing import check_component_contract

      def test_contract():
          check_component_contract("encoder", "mine")

  Backbones are checked by family (a :class:`~vidmusic_core.TokenLM`, or a non-token
  :class:`~vidmusic_core.MusicBackbone` over latents) through each layout they support; layouts paired with
  a backbone; codecs by ``representation`` (tokens, latents, symbolic). See ``docs/writing-a-backbone.md``.

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
from typing import Any, Callable, Iterator

import torch
from omegaconf import OmegaConf

from . import contract_checks as cc
from .checkpoint import load_state_strict, load_weights, save_weights
from .components import REPRESENTATIONS, ConditionEncoder, Metric, MusicCodec, SequenceLayout, TokenLM
from .plugins import Component, PluginHost, get_registry, use_host
from .types import Frames, MusicLatents, MusicTokens, check_shapes

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

FILE_SUFFIXES = (".wav", ".mid", ".midi", ".flac", ".mp3", ".ogg", ".npy", ".json", ".pt", ".safetensors")


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


def _check_encoder(who: str, module: Any) -> cc.Run:
    if not isinstance(module, ConditionEncoder):
        cc.fail(who, f"{type(module).__name__} is not a ConditionEncoder")
    if not (isinstance(module.dim, int) and module.dim > 0):
        cc.fail(who, f"dim must be a positive int, got {module.dim!r}")
    frames = make_frames(module.frame_spec)
    with torch.no_grad():
        cond = module(frames)
        if not isinstance(cond, cc.Condition):
            cc.fail(who, f"forward must return a Condition, got {type(cond).__name__}")
        check_shapes(who, "Condition.tokens", cond.tokens, (frames.batch_size, None, module.dim))
        assert cond.times.min() >= -1e-6 and cond.times.max() <= float(frames.duration.max()) + 1e-6, (
            f"{who}: Condition.times outside the clip [0, {float(frames.duration.max())}] s")
        assert cond.mask[0].any(), f"{who}: every token of an unpadded clip is masked out"
        again = module.forward_features(module.frozen_features(frames), frames)
        cc.close(who, "forward != forward_features(frozen_features(frames))", again.tokens, cond.tokens, 1e-5, 1e-5)
        assert cond.null_like().tokens.shape == cond.tokens.shape
    return lambda m: {"tokens": m(frames).tokens}


# -- codecs, by representation -------------------------------------------------------------------
def _check_written(who: str, meta: Any, out_dir: Path, need: tuple[str, ...], seconds: float, sample_rate: int) -> None:
    """``write()``'s metadata is a dict naming ``need`` (``wav``, ``midi``) and every file it names exists."""
    import soundfile

    if not isinstance(meta, dict):
        cc.fail(who, f"write() must return a dict of metadata, got {type(meta).__name__}")
    for key in need:
        if not isinstance(meta.get(key), str):
            cc.fail(who, f"write() metadata has no {key!r} file name: {meta}")
    for key, value in meta.items():
        if isinstance(value, str) and Path(value).suffix.lower() in FILE_SUFFIXES:
            f = out_dir / value
            if not (f.is_file() and f.stat().st_size > 0):
                cc.fail(who, f"write() names {key}={value!r} but wrote no such file in {out_dir}")
    info = soundfile.info(str(out_dir / meta["wav"]))
    if info.samplerate != sample_rate or abs(info.duration - seconds) > 0.05 * seconds + 0.05:
        cc.fail(who, f"write(seconds={seconds}) wrote {meta['wav']} of {info.duration:.3f} s at {info.samplerate} Hz; "
                     f"want {seconds} s at the codec's sample_rate {sample_rate}")


def _check_audio_codec(who: str, module: MusicCodec, tmp: Path) -> cc.Run:
    """Tokens ``[B, K, T]`` or latents ``[B, T, latent_dim]`` of ~n_frames(seconds) frames; decode ~ the length."""
    sr, fr, latent = module.sample_rate, module.frame_rate, module.representation == "latents"
    if not (isinstance(fr, (int, float)) and fr > 0):
        cc.fail(who, f"frame_rate must be positive for a {module.representation} codec, got {fr!r}")
    audio = 0.1 * torch.randn(1, 1, int(sr * 2), generator=torch.Generator().manual_seed(0))
    if not module.is_fitted():
        module.fit([audio[0]])
        if not module.is_fitted():
            cc.fail(who, "is_fitted() is still False after fit(audio)")
    music = module.encode(audio)
    if latent:
        if not isinstance(music, MusicLatents):
            cc.fail(who, f"a latent codec's encode must return MusicLatents, got {type(music).__name__}")
        if not (isinstance(module.latent_dim, int) and module.latent_dim > 0):
            cc.fail(who, f"latent_dim must be a positive int, got {module.latent_dim!r}")
        check_shapes(who, "encode(audio [1, 1, L]).latents", music.latents, (1, None, module.latent_dim))
    else:
        if not isinstance(music, MusicTokens):
            cc.fail(who, f"a token codec's encode must return MusicTokens, got {type(music).__name__}")
        check_shapes(who, "encode(audio [1, 1, L]).codes", music.codes, (1, module.n_codebooks, None))
        if int(music.codes.min()) < 0 or int(music.codes.max()) >= module.cardinality:
            cc.fail(who, f"codes outside 0..{module.cardinality - 1}")
    T, want = music.length, module.n_frames(2.0)
    if not (isinstance(want, int) and want > 0) or abs(T - want) > max(1, 0.02 * want):
        cc.fail(who, f"encode gave {T} frames for 2 s but n_frames(2.0) = {want!r} (frame_rate {fr})")
    out = module.decode(music)
    check_shapes(who, "decoded audio", out, (1, None, None))
    if not out.is_floating_point() or abs(out.shape[-1] - audio.shape[-1]) > math.ceil(sr / fr) + 1:
        cc.fail(who, f"decode gave {out.shape[-1]} {out.dtype} samples for {audio.shape[-1]} encoded "
                     f"(want float audio within one frame, {math.ceil(sr / fr)} samples)")
    _check_written(who, module.write(music, 0, 1.0, tmp, "row"), tmp, ("wav",), 1.0, sr)
    key = "latents" if latent else "codes"
    return lambda m: {key: (m.encode(audio).latents if latent else m.encode(audio).codes.float())}


def write_test_midi(path: Path) -> Path:
    """A C major scale, two bars at 120 bpm, on a piano (what the symbolic check encodes)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72]):
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.25 * i, end=0.25 * i + 0.25))
    pm.instruments.append(piano)
    pm.write(str(path))
    return path


def _check_symbolic_codec(who: str, module: Any, tmp: Path) -> cc.Run:
    """``encode([.mid path])`` -> tokens ``[1, 1, T]``; decode to scores; write_midi, render, n_frames, write."""
    from .components import SymbolicCodec

    if not isinstance(module, SymbolicCodec):
        cc.fail(who, f"{type(module).__name__} has representation symbolic but is no SymbolicCodec")
    if module.frame_rate is not None:
        cc.fail(who, f"a symbolic codec has no frame_rate (None), got {module.frame_rate!r}")
    mid = str(write_test_midi(tmp / "scale.mid"))
    toks = module.encode([mid])
    if not isinstance(toks, MusicTokens):
        cc.fail(who, f"encode([a .mid path]) must return MusicTokens, got {type(toks).__name__}")
    check_shapes(who, "encode([a .mid path]).codes", toks.codes, (1, module.n_codebooks, None))
    if toks.length < 1 or int(toks.codes.min()) < 0 or int(toks.codes.max()) >= module.cardinality:
        cc.fail(who, f"encode gave {toks.length} tokens, ids in {int(toks.codes.min())}..{int(toks.codes.max())} "
                     f"(want >= 1 token, ids below cardinality {module.cardinality})")
    scores = module.decode(toks)
    if not (isinstance(scores, list) and len(scores) == 1):
        cc.fail(who, f"decode(tokens of 1 row) must return a list of 1 score, got {type(scores).__name__}")
    back = module.write_midi(scores[0], tmp / "back.mid")
    if not (Path(back).is_file() and Path(back).stat().st_size > 0):
        cc.fail(who, f"write_midi wrote no file at {back}")
    audio = module.render(scores)
    check_shapes(who, "render(scores)", audio, (1, 1, None))
    if audio.shape[-1] == 0 or not bool(torch.isfinite(audio).all()) or float(audio.abs().max()) == 0:
        cc.fail(who, "render of a C major scale gave empty, silent or non-finite audio")
    n = module.n_frames(2.0)
    if not (isinstance(n, int) and n > 0):
        cc.fail(who, f"n_frames(2.0) must be a positive int token budget, got {n!r}")
    _check_written(who, module.write(toks, 0, 2.0, tmp, "row"), tmp, ("wav", "midi"), 2.0, module.sample_rate)
    return lambda m: {"codes": m.encode([mid]).codes.float()}


def _check_codec(who: str, module: Any, tmp: Path) -> cc.Run:
    if not isinstance(module, MusicCodec):
        cc.fail(who, f"{type(module).__name__} is not a MusicCodec")
    if module.representation not in REPRESENTATIONS:
        cc.fail(who, f"representation {module.representation!r} is none of {REPRESENTATIONS}")
    if not (isinstance(module.sample_rate, int) and module.sample_rate > 0):
        cc.fail(who, f"sample_rate must be a positive int, got {module.sample_rate!r}")
    if module.representation == "symbolic":
        return _check_symbolic_codec(who, module, tmp)
    return _check_audio_codec(who, module, tmp)


# -- backbones and layouts -------------------------------------------------------------------------
def _check_backbone(who: str, module: Any, cfg: Any, layout: str | None) -> list[cc.Run]:
    codec = cc.codec_for(module, cfg)
    module.eval()
    token = isinstance(module, TokenLM)
    runs = [cc.check_token_lm(who, module)] if token else []
    if not token:
        cc.check_latent_backbone(who, module, codec)
    names = cc.check_supported_layouts(who, module)
    if layout is not None and layout not in names:
        cc.fail(who, f"layout {layout!r} is not in supported_layouts {tuple(names)} (the model builder would refuse it)")
    for i, name in enumerate([layout] if layout else names):  # the seed and refusal checks on the first one
        torch.manual_seed(0)
        lay = cc.wire_layout(name, module, codec)[0].eval()
        pair = f"{who} with layout {name!r}"
        check = cc.check_token_pair if token else cc.check_latent_pair
        run = check(pair, module, lay, codec, full=i == 0)
        if i == 0:
            runs.append(run)  # the weights round trip compares generation through the first layout
    return runs


def _check_layout(who: str, comp: Component, cfg: Any, backbone: str | None) -> tuple[Any, Any, list[cc.Run], str]:
    """Layout ``comp`` wired to ``backbone`` (a name, or the default pairing): (layout, its wired config, the runs
    compared after the weights round trip, the name used in errors)."""
    bcomp = get_registry().get("backbone", backbone or cc.default_backbone_for(comp.name))
    bcfg = cc.wire_backbone_config(bcomp.default_config())
    torch.manual_seed(0)
    bb = bcomp.build(bcfg).eval()
    who = f"{who} (with backbone {bcomp.name!r})"
    if comp.name not in bb.supported_layouts:
        cc.fail(who, f"backbone {bcomp.name!r} does not list the layout in supported_layouts {bb.supported_layouts}")
    codec = cc.codec_for(bb, bcfg)
    torch.manual_seed(0)
    layout, wired = cc.wire_layout(comp.name, bb, codec, cfg)
    if not isinstance(layout, SequenceLayout):
        cc.fail(who, f"{type(layout).__name__} is not a SequenceLayout")
    layout.eval()
    cond = cc.make_condition(2)
    forced = layout.forced_codes(cond)
    if forced is not None:
        check_shapes(who, "forced_codes(condition)", forced, (2, bb.n_codebooks if isinstance(bb, TokenLM) else None, None))
        if forced.dtype != torch.long:
            cc.fail(who, f"forced_codes must be long codes (-1 = free), got {forced.dtype}")
    if isinstance(bb, TokenLM):
        cc.check_token_pair(who, bb, layout, codec)
        cc.check_frame_input(who, bb, layout)
        text, secs = cc.text_for(bb, 2), torch.tensor([2.0, 1.5])
        run: cc.Run = lambda m: {"prompt": m.prompt(bb, cond, text, secs).inputs_embeds}  # noqa: E731
    else:
        cc.check_latent_pair(who, bb, layout, codec)
        run = lambda m: {"frame_input": m.frame_input(bb, cond, 5).inputs_embeds}  # noqa: E731
    return layout, wired, [run], who


def _weights_roundtrip(who: str, module: Any, rebuild: Callable[[], Any], runs: list[cc.Run]) -> None:
    """Outputs of ``runs`` equal after the weights go through safetensors into a differently initialised copy."""
    if not isinstance(module, torch.nn.Module):
        return
    module.eval()
    with torch.no_grad():
        before = {f"{i}:{k}": v for i, r in enumerate(runs) for k, v in r(module).items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_weights(module.state_dict(), path)
        torch.manual_seed(12345)  # a different init: only the loaded weights can make outputs equal
        fresh = rebuild()
        load_state_strict(fresh, load_weights(path), who)
    fresh.eval()
    with torch.no_grad():
        after = {f"{i}:{k}": v for i, r in enumerate(runs) for k, v in r(fresh).items()}
    for key, value in before.items():
        cc.close(who, f"{key.split(':', 1)[1]} differs after a safetensors round trip of the weights", after[key], value,
                 1e-5, 1e-5)


def write_test_song(path: Path, seconds: float = 4.0, bpm: float = 120.0, sample_rate: int = 16000) -> Path:
    """A wav with a click and a low tone on every beat and a chord that changes half way (a tiny test song)."""
    import numpy as np

    from .audio import write_wav

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    y = 0.1 * np.sin(2 * np.pi * np.where(t < seconds / 2, 220.0, 330.0) * t)
    for b in np.arange(0.25, seconds, 60.0 / bpm):
        i = int(b * sample_rate)
        n = min(len(y) - i, int(0.05 * sample_rate))
        y[i:i + n] += 0.6 * np.exp(-np.arange(n) / (0.01 * sample_rate)) * np.sin(2 * np.pi * 1000 * t[:n])
    return write_wav(path, y.astype("float32"), sample_rate)


def _check_visualizer(who: str, module: Any, tmp: Path) -> None:
    """Frames of the declared shape and dtype; consecutive windows equal one render; the same seed, the same frames."""
    import numpy as np

    from .components import Visualizer
    from .song import analyse_song

    if not isinstance(module, Visualizer):
        cc.fail(who, f"{type(module).__name__} is not a Visualizer")
    song = analyse_song(write_test_song(tmp / "song.wav"))
    W, H, fps = 64, 48, 8.0
    times = np.arange(int(song.duration * fps)) / fps  # [T]
    plan = module.plan(song, (W, H), fps, 0)
    whole = module.render(plan, times)
    if not (isinstance(whole, np.ndarray) and whole.dtype == np.uint8 and whole.shape == (len(times), H, W, 3)):
        got = f"{getattr(whole, 'dtype', type(whole).__name__)} {list(getattr(whole, 'shape', []))}"
        cc.fail(who, f"render() must return uint8 [T, H, W, 3] = [{len(times)}, {H}, {W}, 3], got {got}")
    k = len(times) // 3
    parts = np.concatenate([module.render(plan, times[:k]), module.render(plan, times[k:])])
    if not np.array_equal(parts, whole):
        cc.fail(who, "render() of two consecutive windows differs from one render of both (frames must depend "
                     "only on the plan and their times, so long songs stream)")
    again = module.render(module.plan(song, (W, H), fps, 0), times)
    if not np.array_equal(again, whole):
        cc.fail(who, "the same seed gave different frames (plan/render must be reproducible)")
    if int(np.ptp(whole.astype(np.int16), axis=0).max()) == 0:
        cc.fail(who, "every frame is the same for a song with a beat every 0.5 s")


def check_component_contract(kind: str, name: str, cfg: Any = None, *, backbone: str | None = None,
                             layout: str | None = None) -> Any:
    """Build ``kind``/``name`` from its default config (or ``cfg``) on the CPU and check its contract.

    ``backbone``: for a layout, the backbone it is checked with (default: the first registered token LM listing
    it in ``supported_layouts``, else the first such backbone). ``layout``: for a backbone, check only through
    this layout (default: every layout in its ``supported_layouts``). A backbone whose config leaves
    ``latent_dim`` open gets a small one, as ``build_model`` would from a codec.

    Returns the built component. Raises AssertionError/ShapeError naming the component and the first broken rule.
    """
    comp = get_registry().get(kind, name)
    cfg = comp.default_config() if cfg is None else cfg
    _roundtrip_config(comp, cfg)
    who = f"{kind} {comp.name!r}"
    if kind == "importer":
        assert callable(comp.factory), f"{who}: the factory is not callable"
        return comp.factory
    if kind == "layout":
        module, wired, runs, who = _check_layout(who, comp, cfg, backbone)
        _weights_roundtrip(who, module, lambda: comp.build(wired), runs)
        return module
    if kind == "backbone":
        cfg = cc.wire_backbone_config(cfg)
    torch.manual_seed(0)
    module = comp.build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "encoder":
            runs = [_check_encoder(who, module)]
        elif kind == "codec":
            runs = [_check_codec(who, module, Path(tmp))]
        elif kind == "backbone":
            runs = _check_backbone(who, module, cfg, layout)
        elif kind == "visualizer":
            _check_visualizer(who, module, Path(tmp))
            runs = []
        elif kind == "metric":
            if not isinstance(module, Metric):
                cc.fail(who, f"{type(module).__name__} is not a Metric")
            proto = module.protocol()
            assert isinstance(proto, dict) and proto, f"{who}: protocol() must be a non-empty dict"
            runs = []
        else:
            runs = []
        _weights_roundtrip(who, module, lambda: comp.build(cfg), runs)
    return module
