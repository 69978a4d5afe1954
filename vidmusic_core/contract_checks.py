"""The music side of :func:`vidmusic_core.testing.check_component_contract`: backbones by family, layouts
paired with a backbone, codecs by representation (issue 16, item 6).

Every check builds tiny inputs on the CPU and raises :class:`AssertionError` (or :class:`ShapeError`) naming
the component (``backbone 'flow'``, ``layout 'prefix' (with backbone 'inspire')``) and the broken rule. Each
returns a function of the built module giving tensors the caller compares after a safetensors round trip.
Partners a check needs (the layout of a backbone, the backbone of a layout) are built from their default
config and wired as :func:`vidmusic_core.model.build_model` wires them; a backbone is checked against a
stand-in codec that only declares the sizes (the backbone's own, as ``build_model`` sizes it from a codec).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NoReturn, Sequence

import torch
from torch import Tensor

from .codecs.delay import apply_delays
from .components import MusicBackbone, MusicCodec, SequenceLayout, TokenLM
from .errors import ConfigError, UnknownComponentError
from .layouts.music import delay_pad
from .model import _set_if_field
from .plugins import Component, PluginHost, get_registry
from .types import (IGNORE_INDEX, BackboneInput, BackboneOutput, Condition, GenerationRequest, MusicLatents,
                    MusicTokens, SamplingConfig, check_shapes)

Run = Callable[[Any], dict[str, Tensor]]
COND_DIM = 16  # width of the synthetic video condition
FRAME_RATE = 25.0  # the stand-in codec's frames per second
LATENT_DIM = 8  # latent channels wired into a latent backbone that leaves latent_dim open


def fail(who: str, msg: str) -> NoReturn:
    raise AssertionError(f"{who}: {msg}")


def make_condition(batch: int = 2, dim: int = COND_DIM, seconds: float = 2.0, fps: float = 2.0,
                   per_frame: int = 2, seed: int = 0) -> Condition:
    """A random condition: ``per_frame`` tokens per video frame at ``fps``; the last row's last frame is masked."""
    g = torch.Generator().manual_seed(seed)
    T = max(2, int(round(seconds * fps)))
    tokens = torch.randn(batch, T * per_frame, dim, generator=g)  # [B, N, D]
    times = (torch.arange(T, dtype=torch.float32) / fps).repeat_interleave(per_frame).repeat(batch, 1)  # [B, N]
    mask = torch.ones(batch, T * per_frame, dtype=torch.bool)
    mask[-1, -per_frame:] = False
    return Condition(tokens, mask, times)


class SizesCodec(MusicCodec):
    """A stand-in codec declaring only sizes (what ``build_model`` and ``generate`` read); it never codes audio."""

    def __init__(self, representation: str, n_codebooks: int = 0, cardinality: int = 0, latent_dim: int = 0,
                 delays: Sequence[int] = (), frame_rate: float | None = FRAME_RATE, vocab_name: str | None = None) -> None:
        super().__init__()
        self.representation = representation  # type: ignore[misc]
        self.n_codebooks, self.cardinality, self.latent_dim = n_codebooks, cardinality, latent_dim
        self.delays, self.frame_rate, self.vocab_name = tuple(delays), frame_rate, vocab_name
        self.sample_rate = 16000

    def encode(self, audio: Tensor) -> Any:
        raise AssertionError("the contract check's stand-in codec never encodes audio")

    def decode(self, music: Any) -> Any:
        raise AssertionError("the contract check's stand-in codec never decodes")


def _fields(cfg: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cfg)} if dataclasses.is_dataclass(cfg) else set()


def wire_backbone_config(cfg: Any) -> Any:
    """``cfg`` with ``latent_dim`` set where it is open (``build_model`` takes it from the codec)."""
    return _set_if_field(cfg, "latent_dim", LATENT_DIM, only_if_none=True) if "latent_dim" in _fields(cfg) else cfg


def codec_for(backbone: MusicBackbone, cfg: Any) -> SizesCodec:
    """The stand-in codec ``backbone`` models: its sizes, a staircase delay pattern for several codebooks."""
    vocab = getattr(cfg, "vocab", None) if "vocab" in _fields(cfg) else None  # a symbolic LM's vocabulary name
    if isinstance(backbone, TokenLM):
        K = int(backbone.n_codebooks)
        return SizesCodec("tokens", K, int(backbone.cardinality), delays=tuple(range(K)) if K > 1 else (0,),
                          vocab_name=vocab if isinstance(vocab, str) else None)
    C = getattr(cfg, "latent_dim", None) if "latent_dim" in _fields(cfg) else None
    return SizesCodec(backbone.representation, latent_dim=int(C or LATENT_DIM))


def layout_component(name: str) -> Component:
    """The layout ``name`` of the active registry, else the core's own (a host without the core plugin)."""
    try:
        return get_registry().get("layout", name)
    except UnknownComponentError:
        from . import builtins

        host = PluginHost(load_entry_points=False)
        host.register_plugin(builtins, name="core")
        return host.registry.get("layout", name)


def wire_layout(name: str, backbone: MusicBackbone, codec: MusicCodec, cfg: Any = None) -> tuple[SequenceLayout, Any]:
    """Build layout ``name`` wired to ``backbone`` and ``codec`` as ``build_model`` does; returns (layout, config)."""
    comp = layout_component(name)
    cfg = comp.default_config() if cfg is None else cfg
    if cfg is not None:
        wiring: dict[str, Any] = {"cond_dim": COND_DIM, "width": int(backbone.width), "delays": list(codec.delays),
                                  "frame_rate": codec.frame_rate,
                                  "own_specials": isinstance(backbone, TokenLM) and backbone.n_special_rows == 0}
        if codec.vocab_name is not None:
            wiring["vocab"] = codec.vocab_name
        for k, v in wiring.items():
            cfg = _set_if_field(cfg, k, v)
    return comp.build(cfg), cfg


def backbone_class(comp: Component) -> type[MusicBackbone] | None:
    f = comp.factory
    return f if isinstance(f, type) and issubclass(f, MusicBackbone) else None


def default_backbone_for(layout: str) -> str:
    """The first registered token LM whose ``supported_layouts`` has ``layout``, else the first backbone."""
    comps = [c for c in get_registry().components("backbone")
             if (cls := backbone_class(c)) is not None and layout in cls.supported_layouts]
    comps.sort(key=lambda c: not issubclass(backbone_class(c), TokenLM))  # type: ignore[arg-type]
    if not comps:
        raise AssertionError(f"layout {layout!r}: no registered backbone lists it in supported_layouts; pass "
                             "backbone=NAME to check_component_contract")
    return comps[0].name


def close(who: str, what: str, got: Tensor, want: Tensor, atol: float = 1e-4, rtol: float = 1e-3) -> None:
    try:
        torch.testing.assert_close(got.float(), want.float(), atol=atol, rtol=rtol)
    except AssertionError as exc:
        first = str(exc).splitlines()[:4]
        fail(who, f"{what}\n  " + "\n  ".join(first))


def check_supported_layouts(who: str, backbone: MusicBackbone) -> list[str]:
    names = backbone.supported_layouts
    if not (isinstance(names, tuple) and names and all(isinstance(n, str) for n in names)):
        fail(who, f"supported_layouts must be a non-empty tuple of layout names, got {names!r}")
    for n in names:
        try:
            layout_component(n)
        except UnknownComponentError:
            fail(who, f"supported_layouts names {n!r}, which is not a registered layout")
    return list(names)


# --------------------------------------------------------------------------------------------------
# Token LMs
# --------------------------------------------------------------------------------------------------
def _codes(bb: TokenLM, B: int, T: int, seed: int) -> Tensor:
    """Random codes ``[B, K, T]`` below ``cardinality`` that are not the EOS id (so labels can be counted)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, bb.cardinality, (B, bb.n_codebooks, T), generator=g)
    if bb.eos_id is not None and bb.eos_id < bb.cardinality:
        codes = torch.where(codes == bb.eos_id, (codes + 1) % bb.cardinality, codes)
    return codes


def text_for(bb: TokenLM, B: int) -> list[str] | None:
    return (["a calm piano piece", ""] + ["music"] * (B - 2))[:B] if bb.takes_text else None


def check_token_lm(who: str, bb: Any) -> Run:
    """Shapes of ``embed`` / ``forward`` and ``logits_positions`` ("all", "last", a positions tensor) agreeing."""
    if not isinstance(bb, TokenLM):
        fail(who, f"{type(bb).__name__} is not a TokenLM (representation tokens needs embed/forward)")
    for attr in ("width", "n_codebooks", "cardinality"):
        v = getattr(bb, attr, None)
        if not (isinstance(v, int) and v > 0):
            fail(who, f"{attr} must be a positive int, got {v!r}")
    if bb.eos_id is not None and not isinstance(bb.eos_id, int):
        fail(who, f"eos_id must be an int or None, got {bb.eos_id!r}")
    B, S, K, V = 2, 6, bb.n_codebooks, bb.cardinality
    codes = _codes(bb, B, S, 0)
    emb = bb.embed(codes)
    check_shapes(who, "embed(codes [B, K, S])", emb, (B, S, bb.width))
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, :2] = False  # a left-padded row, as batched prompts are
    inp = BackboneInput(inputs_embeds=emb, attention_mask=mask)
    with torch.no_grad():
        out = bb(inp, logits_positions="all")
        if not isinstance(out, BackboneOutput):
            fail(who, f"forward must return a BackboneOutput, got {type(out).__name__}")
        check_shapes(who, 'forward(logits_positions="all").logits', out.logits, (B, K, S, None))
        if out.logits.shape[-1] < V:
            fail(who, f"logits have {out.logits.shape[-1]} entries per codebook, fewer than cardinality {V}")
        last = bb(inp, logits_positions="last").logits
        check_shapes(who, 'forward(logits_positions="last").logits', last, (B, K, 1, out.logits.shape[-1]))
        close(who, 'forward(logits_positions="last") differs from the last position of "all"', last, out.logits[:, :, -1:])
        pos = torch.tensor([1, 3])
        close(who, "forward(logits_positions=tensor([1, 3])) differs from those positions of \"all\"",
              bb(inp, logits_positions=pos).logits, out.logits[:, :, pos])
    return lambda m: {"logits": m(inp, logits_positions="all").logits}


def check_token_pair(who: str, bb: TokenLM, layout: SequenceLayout, codec: MusicCodec, full: bool = True) -> Run:
    """A layout with a token LM: training labels only on music, prompt and step inputs equal to the teacher-forced
    sequence, cached steps equal to the full forward, loss with gradients, generation of the asked length; with
    ``full`` also: same seeds equal, other seeds differ."""
    B, T = 2, 5
    cond = make_condition(B)
    secs, text = torch.tensor([2.0, 1.5]), text_for(bb, B)
    codes = _codes(bb, B, T, 1)
    lengths = torch.tensor([T, T - 2])
    music = MusicTokens(codes, torch.arange(T)[None] < lengths[:, None], codec.frame_rate)
    torch.manual_seed(0)
    inp = layout(bb, cond, music, text=text, seconds=secs)
    if inp.labels is None or inp.music_start is None:
        fail(who, "forward(music tokens) must set labels [B, K, S] and music_start")
    check_shapes(who, "forward(...).labels", inp.labels, (B, bb.n_codebooks, inp.inputs_embeds.shape[1]))
    P = int(inp.music_start)
    if (inp.labels[:, :, : max(0, P - 1)] != IGNORE_INDEX).any():
        fail(who, f"labels on prefix positions (before music_start - 1 = {P - 1}): only music positions may carry "
                  "labels; use IGNORE_INDEX elsewhere")
    for b in range(B):
        for k in range(bb.n_codebooks):
            lab = inp.labels[b, k][inp.labels[b, k] != IGNORE_INDEX]
            n_eos = int((lab == bb.eos_id).sum()) if bb.eos_id is not None else 0
            if n_eos > (1 if k == 0 else 0):
                fail(who, f"row {b} codebook {k}: {n_eos} EOS labels (at most one, on codebook 0)")
            got = lab[lab != bb.eos_id] if bb.eos_id is not None else lab
            want = codes[b, k, : int(lengths[b])]
            if not torch.equal(got.sort().values, want.sort().values):
                fail(who, f"row {b} codebook {k}: the labels are not the row's {int(lengths[b])} real music codes "
                          f"(got {got.tolist()[:12]}, want {want.tolist()[:12]} in some order); masked frames take no label")
    full_mus = MusicTokens(codes, None, codec.frame_rate)
    inp_full = layout(bb, cond, full_mus, text=text, seconds=secs)
    prompt = layout.prompt(bb, cond, text, secs)
    check_shapes(who, "prompt(...).inputs_embeds", prompt.inputs_embeds, (B, None, bb.width))
    P = int(prompt.inputs_embeds.shape[1])
    if prompt.music_start not in (None, P) or inp_full.music_start != P:
        fail(who, f"prompt has {P} positions (music_start {prompt.music_start}) but the training input's music starts "
                  f"at {inp_full.music_start}: generation must see the prefix teacher forcing trained on")
    close(who, "prompt(...) differs from the training input's prefix (teacher forcing and generation disagree)",
          prompt.inputs_embeds, inp_full.inputs_embeds[:, :P])
    d = list(codec.delays) or [0] * bb.n_codebooks
    delayed = apply_delays(codes, d, delay_pad(bb))  # [B, K, T + max(d)]
    steps = [layout.step_embeds(bb, delayed[:, :, c:c + 1], c, cond) for c in range(delayed.shape[2])]
    for c, x in enumerate(steps):
        check_shapes(who, f"step_embeds(codes [B, K, 1], {c})", x, (B, 1, bb.width))
    close(who, "step_embeds(column c) differs from the training input at music_start + c",
          torch.cat(steps, dim=1), inp_full.inputs_embeds[:, P:P + len(steps)])
    _check_cache(who, bb, prompt, steps[:4])
    torch.manual_seed(0)
    loss = bb.loss(inp)
    _check_loss(who, bb, loss, layout.aux_loss(cond, music))
    n = 4
    req = GenerationRequest(cond, n, [1, 2], SamplingConfig(temperature=1.0), text=text, seconds=secs)
    out = bb.generate(layout, req, codec)
    if not isinstance(out, MusicTokens):
        fail(who, f"generate must return MusicTokens, got {type(out).__name__}")
    check_shapes(who, "generate(...).codes", out.codes, (B, bb.n_codebooks, n))
    if int(out.codes.min()) < 0 or int(out.codes.max()) >= codec.cardinality:
        fail(who, f"generate sampled codes outside 0..{codec.cardinality - 1}")
    run: Run = lambda m: {"generated": m.generate(layout, req, codec).codes.float()}  # noqa: E731
    if not full:
        return run
    again = bb.generate(layout, GenerationRequest(cond, n, [1, 2], req.sampling, text=text, seconds=secs), codec)
    if not torch.equal(out.codes, again.codes):
        fail(who, "generate with the same seeds gave different codes: sample with one torch.Generator per row's seed")
    other = bb.generate(layout, GenerationRequest(cond, n, [3, 4], req.sampling, text=text, seconds=secs), codec)
    if torch.equal(out.codes, other.codes):
        fail(who, "generate with seeds [3, 4] gave the codes of seeds [1, 2]: the seeds are ignored")
    return run


def _check_cache(who: str, bb: TokenLM, prompt: BackboneInput, steps: list[Tensor]) -> None:
    """Prompt then one step at a time through ``new_cache()`` == one forward over prompt + steps."""
    B, P = prompt.attention_mask.shape
    x = torch.cat([prompt.inputs_embeds, *[s.to(prompt.inputs_embeds.dtype) for s in steps]], dim=1)
    mask = torch.cat([prompt.attention_mask, prompt.attention_mask.new_ones(B, len(steps))], dim=1)
    pos = prompt.position_ids
    if pos is not None:
        pos = torch.cat([pos, pos[:, -1:] + torch.arange(1, len(steps) + 1)], dim=1)
    with torch.no_grad():
        full = bb(BackboneInput(x, mask, memory=prompt.memory, memory_mask=prompt.memory_mask, position_ids=pos,
                                music_start=prompt.music_start), logits_positions="all").logits  # [B, K, P + n, V]
        cache = bb.new_cache()
        got = [bb(prompt, cache, logits_positions="last").logits[:, :, -1]]
        one = torch.ones(B, 1, dtype=torch.bool)
        for s in steps:
            got.append(bb(BackboneInput(s, one), cache, logits_positions="last").logits[:, :, -1])
    close(who, f"cached generation (the prompt, then {len(steps)} steps through new_cache()) differs from one full "
               "forward over the same sequence", torch.stack(got, dim=2), full[:, :, P - 1:])


def _check_loss(who: str, bb: MusicBackbone, loss: Tensor, aux: Tensor | None = None) -> None:
    if not (isinstance(loss, Tensor) and loss.dim() == 0 and bool(torch.isfinite(loss))):
        fail(who, f"loss must be a finite scalar tensor, got {loss!r}")
    if aux is not None:
        if not (isinstance(aux, Tensor) and aux.dim() == 0 and bool(torch.isfinite(aux))):
            fail(who, f"aux_loss must be None or a finite scalar, got {aux!r}")
        loss = loss + aux
    bb.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in bb.parameters() if p.requires_grad and p.grad is not None]
    if not grads or not any(bool(g.abs().sum() > 0) for g in grads):
        fail(who, "loss has no gradient on any backbone parameter")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        fail(who, "loss gives non-finite gradients")
    bb.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------------
# Non-autoregressive backbones over latents
# --------------------------------------------------------------------------------------------------
class _NoFrameInput(SequenceLayout):
    """A layout with no frame input (the default): a latent backbone must refuse it with a ConfigError."""

    def forward(self, backbone: Any, condition: Any, music: Any, text: Any = None, seconds: Any = None) -> Any:
        raise ConfigError("this layout only serves token LMs")

    def prompt(self, backbone: Any, condition: Any, text: Any = None, seconds: Any = None) -> Any:
        raise ConfigError("this layout only serves token LMs")


def check_latent_backbone(who: str, bb: Any, codec: MusicCodec) -> None:
    """What every latent backbone declares; it accepts its codec and refuses a token codec."""
    if not isinstance(bb, MusicBackbone) or isinstance(bb, TokenLM):
        fail(who, f"{type(bb).__name__} is not a non-token MusicBackbone")
    if bb.representation != "latents":
        fail(who, f"representation must be 'latents' for a non-token backbone, got {bb.representation!r}")
    if not (isinstance(bb.width, int) and bb.width > 0):
        fail(who, f"width must be a positive int, got {bb.width!r}")
    bb.check_codec(codec)
    try:
        bb.check_codec(SizesCodec("tokens", 1, 16))
    except ConfigError:
        pass
    else:
        fail(who, "check_codec accepted a token codec: raise ConfigError for a codec it cannot model")


def check_latent_pair(who: str, bb: MusicBackbone, layout: SequenceLayout, codec: MusicCodec, full: bool = True) -> Run:
    """A layout with a latent backbone: frame input and target, loss with gradients, generation ``[B, n_frames,
    latent_dim]``; with ``full`` also: same seeds equal, other seeds differ, CFG, a continuation prompt, and a
    layout without frame input refused."""
    B, T, C = 2, 6, int(codec.latent_dim)
    cond = make_condition(B)
    g = torch.Generator().manual_seed(2)
    lat = MusicLatents(torch.randn(B, T, C, generator=g), torch.arange(T)[None] < torch.tensor([T, T - 2])[:, None],
                       codec.frame_rate)
    fi = layout.frame_input(bb, cond, T, lat.mask)
    check_shapes(who, "frame_input(...).inputs_embeds", fi.inputs_embeds, (B, T, bb.width))
    if not torch.equal(fi.attention_mask, lat.mask):
        fail(who, "frame_input(..., mask).attention_mask is not the mask it was given")
    if fi.memory is not None:
        check_shapes(who, "frame_input(...).memory", fi.memory, (B, None, bb.width))
    inp = layout(bb, cond, lat)
    if inp.target is None or not torch.equal(inp.target, lat.latents):
        fail(who, "forward(MusicLatents) must return the frame input with the clean latents as target")
    if inp.labels is not None:
        fail(who, "forward(MusicLatents) must not set token labels")
    torch.manual_seed(0)
    _check_loss(who, bb, bb.loss(inp), layout.aux_loss(cond, lat))
    n, sc = 5, SamplingConfig(steps=2)
    req = GenerationRequest(cond, n, [1, 2], sc)
    out = bb.generate(layout, req, codec)
    if not isinstance(out, MusicLatents):
        fail(who, f"generate must return MusicLatents, got {type(out).__name__}")
    check_shapes(who, "generate(...).latents", out.latents, (B, n, C))
    if not bool(torch.isfinite(out.latents).all()):
        fail(who, "generate returned non-finite latents")
    if out.frame_rate != codec.frame_rate:
        fail(who, f"generate's latents are at {out.frame_rate} frames/s, the codec's at {codec.frame_rate}")
    run: Run = lambda m: {"generated": m.generate(layout, req, codec).latents}  # noqa: E731
    if not full:
        return run
    again = bb.generate(layout, GenerationRequest(cond, n, [1, 2], sc), codec)
    if not torch.equal(out.latents, again.latents):
        fail(who, "generate with the same seeds gave different latents: draw the noise from one torch.Generator "
                  "per row's seed, not the global RNG")
    other = bb.generate(layout, GenerationRequest(cond, n, [3, 4], sc), codec)
    if torch.allclose(out.latents, other.latents):
        fail(who, "generate with seeds [3, 4] gave the latents of seeds [1, 2]: the seeds are ignored")
    guided = bb.generate(layout, GenerationRequest(cond, n, [1, 2], dataclasses.replace(sc, cfg_coef=3.0)), codec)
    check_shapes(who, "generate(cfg_coef=3).latents", guided.latents, (B, n, C))
    prompt = MusicLatents(torch.randn(B, 3, C, generator=g), None, codec.frame_rate)
    try:
        cont = bb.generate(layout, GenerationRequest(cond, n, [1, 2], sc, prompt=prompt), codec)
    except ConfigError:
        pass  # a clear refusal of continuation is allowed
    else:
        check_shapes(who, "generate(prompt=MusicLatents [B, 3, C]).latents (the new frames only)", cont.latents, (B, n, C))
    try:
        bb.generate(_NoFrameInput(), req, codec)
    except ConfigError:
        pass
    else:
        fail(who, "generate through a layout without frame_input did not raise ConfigError (the backbone must take "
                  "its condition from layout.frame_input)")
    return run


def check_frame_input(who: str, bb: MusicBackbone, layout: SequenceLayout) -> bool:
    """Shapes of ``frame_input`` where the layout provides one (False: it raises ConfigError, as the default)."""
    cond = make_condition(2)
    try:
        fi = layout.frame_input(bb, cond, 7, None)
    except ConfigError:
        return False
    check_shapes(who, "frame_input(..., 7).inputs_embeds", fi.inputs_embeds, (2, 7, bb.width))
    check_shapes(who, "frame_input(..., 7).attention_mask", fi.attention_mask, (2, 7))
    if fi.memory is not None:
        check_shapes(who, "frame_input(...).memory", fi.memory, (2, None, bb.width))
    return True

