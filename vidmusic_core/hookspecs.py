"""The vidmusic extension API: pluggy hook specifications (project name ``vidmusic``).

A plugin is a module (or object) with functions decorated by :data:`vidmusic_core.hookimpl` and named
like the specs below. It is found through the entry-point group ``vidmusic``::

    # pyproject.toml of your package
    [project.entry-points.vidmusic]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    from vidmusic_core import hookimpl

    @hookimpl
    def register_encoders(register):
        register("mine", MyEncoder, MyEncoder.Config, aliases=("my-encoder",))

Every ``register_<kind>s`` hook receives a ``register(name, factory, config_cls, aliases=())``
callable. Calling it records a component of that kind:

- ``name``: the name users write in configs (``encoder.name=mine``), unique within the kind across all
  plugins, aliases included. A clash is an error that names both plugins.
- ``factory``: a callable ``factory(cfg) -> component`` taking an instance of ``config_cls``; usually the
  component class itself.
- ``config_cls``: a dataclass whose fields (with defaults) are the component's options. They become the
  ``encoder.*`` (``layout.*`` …) section of the run config, checked in omegaconf struct mode.
- ``aliases``: other names that resolve to this component.

Hooks are called once, when the registry is first built; an implementation may accept a subset of
the arguments (pluggy rule). An exception in a hook is reported with the plugin's name, and the other
plugins still load (``vidmusic plugins`` lists the broken one).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

PROJECT = "vidmusic"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, factory, config_cls, aliases=())``
RegisterFn = Callable[..., None]


@hookspec
def register_encoders(register: RegisterFn) -> None:
    """Register condition encoders (video -> :class:`~vidmusic_core.types.Condition`).

    The factory builds a :class:`~vidmusic_core.types.ConditionEncoder` (a ``torch.nn.Module``) that
    declares ``frame_spec`` (which frames it wants: local fps, global frame count, size, normalisation)
    and ``dim`` (token width D), and maps :class:`~vidmusic_core.types.Frames` to a ``Condition`` with
    ``tokens [B, N, D]``, ``mask [B, N]`` and ``times [B, N]`` (seconds of video each token describes).
    Frozen parts (e.g. CLIP) are exposed through ``frozen_features`` so ``prepare`` can cache them.
    """


@hookspec
def register_layouts(register: RegisterFn) -> None:
    """Register sequence layouts: how condition, text and music tokens are arranged for a backbone.

    The factory builds a :class:`~vidmusic_core.types.SequenceLayout`, which turns (Condition, optional
    text, music tokens) into a :class:`~vidmusic_core.types.BackboneInput` for teacher-forced training
    and into a prompt plus per-step inputs for generation. A backbone lists the layouts it supports in
    ``supported_layouts``; an unsupported pairing is a config error naming both.
    """


@hookspec
def register_backbones(register: RegisterFn) -> None:
    """Register music backbones: subclasses of :class:`~vidmusic_core.components.MusicBackbone`.

    A backbone trains with ``loss(BackboneInput)`` and generates with ``generate(layout, GenerationRequest,
    codec)``; it declares ``representation`` (``tokens`` or ``latents``) and ``supported_layouts``. Token LMs
    subclass :class:`~vidmusic_core.components.TokenLM` (``embed``, ``forward(inp, cache, logits_positions)``,
    a cache, ``eos_id``, ``constrain_logits``, the prefix-layout protocol; the sampling loop is inherited);
    other families (flow matching, diffusion) subclass ``MusicBackbone`` and run their own solver. Run
    choices a backbone needs (its codec, layout, sampling) are a preset with ``default_for`` (hook
    ``register_presets``). ``state_dict`` names match the upstream checkpoint where there is one. Register
    the class itself: ``register("name", MyBackbone, MyBackbone.Config)``. See docs/writing-a-backbone.md.
    """


@hookspec
def register_codecs(register: RegisterFn) -> None:
    """Register music codecs: audio or MIDI <-> tokens ``[B, K, T]``.

    The factory builds a :class:`~vidmusic_core.types.MusicCodec` declaring ``sample_rate``,
    ``frame_rate`` (None for symbolic), ``n_codebooks``, ``cardinality`` and ``delays``, with
    ``encode``, ``decode`` and, for symbolic codecs, ``render`` to audio.
    """


@hookspec
def register_metrics(register: RegisterFn) -> None:
    """Register evaluation metrics.

    The factory builds a :class:`~vidmusic_core.types.Metric` with ``name``, ``needs`` (a subset of
    ``{"audio", "midi", "video", "reference"}``), ``compute(items) -> dict[str, float]`` and
    ``protocol() -> dict`` (everything a score depends on: embedder and checkpoint hash, sample
    rate, clip length, reference set, tolerance window). Scores are stored with their protocol.
    """


@hookspec
def register_importers(register: RegisterFn) -> None:
    """Register upstream-checkpoint importers (``vidmusic import <name> PATH``).

    The factory is ``factory(source: Path, out_dir: Path, cfg) -> ImportReport`` where ``cfg`` is an
    instance of ``config_cls`` (import options; may be an empty dataclass). It reads the upstream file
    safely (``torch.load(..., weights_only=True)`` or safetensors), maps the keys to vidmusic names,
    writes ``model.safetensors`` + ``config.yaml`` under ``out_dir`` and returns an
    :class:`~vidmusic_core.types.ImportReport` listing missing/unexpected keys by name.
    """


@hookspec
def register_visualizers(register: RegisterFn) -> None:
    """Register visualizers (music -> video, ``vidmusic visualize SONG --visualizer NAME``).

    The factory builds a :class:`~vidmusic_core.components.Visualizer`: ``plan(song, size, fps, seed)`` once per
    song (from the core's :class:`~vidmusic_core.song.SongAnalysis`), then ``render(plan, times) -> uint8
    [T, H, W, 3]`` window by window (consecutive windows equal one render of their union; seeded). Models load
    from local directories named in the config; nothing downloads. See docs/visualizers.md.
    """


@hookspec
def register_presets(register: RegisterFn) -> None:
    """Register run presets (``vidmusic run -p NAME``): ``register(name, factory)`` with ``factory()`` returning a
    :class:`~vidmusic_core.config.Preset` — run-config sections (a mapping, or a YAML file) and, with
    ``default_for=BACKBONE``, the backbone whose choices it carries: it is applied right after the
    ``default`` preset whenever that backbone is chosen (``--backbone musecoco`` picks the ``remi`` codec
    that way), so anything the user sets still wins. Example::

        @hookimpl
        def register_presets(register):
            register("musecoco", lambda: Preset({"codec": {"name": "remi"}}, default_for="musecoco"))
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands to the ``vidmusic`` command-line interface.

    ``cli`` is the root ``click.Group``; decorate new functions with ``@cli.command()``. Keep commands
    thin: parse arguments, call a library function, print its result.
    """

