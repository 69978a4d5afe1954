"""Registry behaviour: registration, aliases, duplicate names, unknown names, broken plugins."""
import sys
import types
from dataclasses import dataclass

import pytest

from vidmusic_core import DuplicateComponentError, UnknownComponentError, hookimpl
from vidmusic_core.plugins import PluginHost


@dataclass
class Opts:
    width: int = 8


class Enc:
    def __init__(self, cfg: Opts):
        self.cfg = cfg


def make_plugin(name, comp_name, aliases=()):
    mod = types.ModuleType(name)

    @hookimpl
    def register_encoders(register):
        register(comp_name, Enc, Opts, aliases=aliases)

    mod.register_encoders = register_encoders
    return mod


def test_register_build_and_alias(vidmusic_host):
    vidmusic_host.register_plugin(make_plugin("p1", "alpha", aliases=("a",)), name="p1")
    reg = vidmusic_host.registry
    comp = reg.get("encoder", "a")
    assert comp.name == "alpha" and comp.plugin == "p1" and comp.aliases == ("a",)
    built = comp.build(Opts(width=3))
    assert isinstance(built, Enc) and built.cfg.width == 3
    assert comp.config_fields() == [("width", 8)]
    assert reg.names("encoder") == ["alpha"]


def test_duplicate_name_names_both_plugins(vidmusic_host):
    vidmusic_host.register_plugin(make_plugin("first_plugin", "alpha"), name="first_plugin")
    vidmusic_host.register_plugin(make_plugin("second_plugin", "beta", aliases=("alpha",)), name="second_plugin")
    with pytest.raises(DuplicateComponentError) as info:
        vidmusic_host.registry
    msg = str(info.value)
    assert "first_plugin" in msg and "second_plugin" in msg and "'alpha'" in msg


def test_unknown_name_lists_names_and_suggests(vidmusic_host):
    vidmusic_host.register_plugin(make_plugin("p1", "lstv"), name="p1")
    vidmusic_host.register_plugin(make_plugin("p2", "clip"), name="p2")
    with pytest.raises(UnknownComponentError) as info:
        vidmusic_host.registry.get("encoder", "lsvt")
    msg = str(info.value)
    assert "Did you mean 'lstv'" in msg and "clip, lstv" in msg


def test_plugin_raising_in_hook_is_reported_and_others_load(vidmusic_host):
    bad = types.ModuleType("bad")

    @hookimpl
    def register_encoders(register):
        raise RuntimeError("boom in hook")

    bad.register_encoders = register_encoders
    vidmusic_host.register_plugin(bad, name="bad_plugin")
    vidmusic_host.register_plugin(make_plugin("good", "fine"), name="good")
    reg = vidmusic_host.registry
    assert reg.names("encoder") == ["fine"]
    assert [(b.plugin, b.stage) for b in reg.broken] == [("bad_plugin", "register_encoders")]
    assert "boom in hook" in reg.broken[0].error
    with pytest.raises(UnknownComponentError, match="Broken plugins.*bad_plugin"):
        reg.get("encoder", "missing")


def test_entry_point_that_fails_to_import_is_reported(monkeypatch, tmp_path):
    """A real entry point (dist-info on sys.path) whose module raises on import."""
    dist = tmp_path / "brokenplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vidmusic]\nbrokenplug = brokenplug_mod\n")
    (tmp_path / "brokenplug_mod.py").write_text("raise ImportError('needs a missing library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost(load_entry_points=True)
    broken = {b.plugin: b for b in host.registry.broken}
    assert "brokenplug" in broken and "needs a missing library" in broken["brokenplug"].error
    assert "clip" in host.registry.names("encoder")  # the built-ins still loaded
    sys.modules.pop("brokenplug_mod", None)


def test_disable_env_skips_entry_point(monkeypatch):
    monkeypatch.setenv("VIDMUSIC_DISABLE_PLUGINS", "clip_frames")
    host = PluginHost(load_entry_points=True)
    assert "clip" not in host.registry.names("encoder")
    assert not host.pm.has_plugin("clip_frames")


def test_builtin_plugins_come_from_entry_points():
    host = PluginHost(load_entry_points=True)
    names = {n for n, _ in host.pm.list_name_plugin()}
    assert {"core", "clip_frames", "vidmuse_lstv", "inspire_llm", "musecoco_symbolic", "musicgen_lm"} <= names
    assert host.registry.get("encoder", "clip").plugin == "clip_frames"
