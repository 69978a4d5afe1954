"""Plugin manager, entry-point loading and the component registry.

The only global state in vidmusic is the lazily created default :class:`PluginHost` (see
:func:`get_host`). Tests use a fresh host without entry-point autoload (``vidmusic_core.testing``).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator

import pluggy

from . import hookspecs
from .errors import DuplicateComponentError, PluginError, UnknownComponentError

ENTRY_POINT_GROUP = "vidmusic"
#: component kinds, each filled by the hook ``register_<kind>s``
KINDS = ("encoder", "layout", "backbone", "codec", "metric", "importer", "preset", "visualizer")
#: comma-separated entry-point names that are not loaded (e.g. to silence a broken third-party plugin)
DISABLE_ENV = "VIDMUSIC_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Component:
    """One registered component: what ``register(name, factory, config_cls, aliases)`` recorded."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config_cls: type | None
    plugin: str
    aliases: tuple[str, ...] = ()

    def default_config(self) -> Any:
        """An instance of ``config_cls`` with every default (None when the component has no options)."""
        return self.config_cls() if self.config_cls is not None else None

    def config_fields(self) -> list[tuple[str, Any]]:
        """``(field name, default)`` pairs of the config dataclass, in declaration order."""
        if self.config_cls is None:
            return []
        out = []
        for f in dataclasses.fields(self.config_cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = "???"
            out.append((f.name, default))
        return out

    def build(self, cfg: Any = None) -> Any:
        """Instantiate the component from ``cfg`` (an instance of ``config_cls``; defaults if None)."""
        if cfg is None:
            cfg = self.default_config()
        return self.factory(cfg) if self.config_cls is not None else self.factory()


@dataclass
class BrokenPlugin:
    """A plugin that raised while importing or inside a hook."""

    plugin: str
    stage: str  # "import" or the hook name
    error: str
    traceback: str = ""


class Registry:
    """Components by kind and name (aliases resolve to the same record)."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._alias: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self.broken: list[BrokenPlugin] = []

    # -- filling -------------------------------------------------------------------------------
    def add(self, comp: Component) -> None:
        """Record ``comp``; a clash of names or aliases is a :class:`DuplicateComponentError`."""
        if comp.kind not in self._by_kind:
            raise ValueError(f"unknown component kind {comp.kind!r}; kinds are {', '.join(KINDS)}")
        if comp.config_cls is not None and not dataclasses.is_dataclass(comp.config_cls):
            raise PluginError(
                f"plugin {comp.plugin!r} registered {comp.kind} {comp.name!r} with config_cls="
                f"{comp.config_cls!r}, which is not a dataclass; pass a @dataclass of its options"
            )
        for n in (comp.name, *comp.aliases):
            other = self._lookup(comp.kind, n)
            if other is not None:
                raise DuplicateComponentError(
                    f"{comp.kind} name {n!r} is registered twice: by plugin {other.plugin!r} "
                    f"({other.kind} {other.name!r}) and by plugin {comp.plugin!r} ({comp.kind} {comp.name!r}). "
                    f"Rename one of them, or disable a plugin with {DISABLE_ENV}=<entry point name>."
                )
        self._by_kind[comp.kind][comp.name] = comp
        for a in comp.aliases:
            self._alias[comp.kind][a] = comp.name

    # -- lookup --------------------------------------------------------------------------------
    def _lookup(self, kind: str, name: str) -> Component | None:
        comps = self._by_kind[kind]
        if name in comps:
            return comps[name]
        canonical = self._alias[kind].get(name)
        return comps[canonical] if canonical is not None else None

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (or alias) of ``kind``; unknown names list the registered ones."""
        if kind not in self._by_kind:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        comp = self._lookup(kind, name)
        if comp is not None:
            return comp
        known = sorted([*self._by_kind[kind], *self._alias[kind]])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        broken = ""
        if self.broken:
            broken = " Broken plugins (see `vidmusic plugins`): " + ", ".join(b.plugin for b in self.broken) + "."
        raise UnknownComponentError(f"unknown {kind} {name!r}.{hint} Registered {kind}s: {listing}.{broken}")

    def names(self, kind: str) -> list[str]:
        """Registered primary names of ``kind``, sorted."""
        return sorted(self._by_kind[kind])

    def components(self, kind: str | None = None) -> list[Component]:
        """All components (of one kind, or of every kind in :data:`KINDS` order)."""
        kinds = KINDS if kind is None else (kind,)
        return [self._by_kind[k][n] for k in kinds for n in sorted(self._by_kind[k])]


class PluginHost:
    """A pluggy ``PluginManager`` plus the :class:`Registry` built from its hooks."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.import_failures: list[BrokenPlugin] = []
        self._registry: Registry | None = None
        if load_entry_points:
            self.load_entry_points()

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every entry point of ``group`` with pluggy, one at a time so one failure spares the rest."""
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        names = sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})
        for name in names:
            if name in disabled or self.pm.has_plugin(name):
                continue
            try:
                self.pm.load_setuptools_entrypoints(group, name=name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
                self.import_failures.append(
                    BrokenPlugin(name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
                )
        self._registry = None

    def register_plugin(self, plugin: ModuleType | object, name: str | None = None) -> str:
        """Register a module/object with hook implementations (as an entry point would)."""
        registered = self.pm.register(plugin, name=name)
        self._registry = None
        assert registered is not None
        return registered

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._registry = None

    @property
    def registry(self) -> Registry:
        """The registry, built on first use from every ``register_*`` hook implementation."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        reg = Registry()
        reg.broken.extend(self.import_failures)
        for kind in KINDS:
            hook_name = f"register_{kind}s"
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin = impl.plugin_name

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    config_cls: type | None = None,
                    aliases: tuple[str, ...] | list[str] = (),
                    _kind: str = kind,
                    _plugin: str = plugin,
                ) -> None:
                    reg.add(Component(_kind, name, factory, config_cls, _plugin, tuple(aliases)))

                try:
                    impl.function(**{a: register for a in impl.argnames})
                except DuplicateComponentError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    reg.broken.append(
                        BrokenPlugin(plugin, hook_name, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                    )
        return reg

    def register_commands(self, cli: Any) -> list[BrokenPlugin]:
        """Call every ``register_commands`` implementation; returns the plugins that raised."""
        failures = []
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(**{a: cli for a in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                failures.append(BrokenPlugin(impl.plugin_name, "register_commands", f"{type(exc).__name__}: {exc}"))
        return failures

    def plugin_distributions(self) -> dict[str, str]:
        """Plugin name -> ``distribution version`` for plugins loaded from entry points."""
        out = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            name = self.pm.get_name(plugin)
            if name is not None:
                out[name] = f"{dist.metadata['name']} {dist.version}"
        return out


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The default host: created on first call, loading every ``vidmusic`` entry point once."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost(load_entry_points=True)
    return _HOST


def get_registry() -> Registry:
    """The registry of the default host."""
    return get_host().registry


@contextmanager
def use_host(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the default for the duration of the block (tests, notebooks)."""
    global _HOST
    previous = _HOST
    _HOST = host
    try:
        yield host
    finally:
        _HOST = previous


def get_component(kind: str, name: str) -> Component:
    """Shorthand for ``get_registry().get(kind, name)``."""
    return get_registry().get(kind, name)


def build(kind: str, name: str, cfg: Any = None) -> Any:
    """Build the component ``name`` of ``kind`` from ``cfg`` (its config dataclass, or defaults)."""
    return get_component(kind, name).build(cfg)


__all__ = [
    "BrokenPlugin",
    "Component",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginHost",
    "Registry",
    "build",
    "get_component",
    "get_host",
    "get_registry",
    "use_host",
]
