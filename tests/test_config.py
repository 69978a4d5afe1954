"""Config composition (preset + file + sugar + dotlist), struct-mode errors and run hashing."""
import pytest
from omegaconf import OmegaConf

from vidmusic_core import ConfigError, UnknownComponentError
from vidmusic_core.config import compose, config_hash, preset_names, to_yaml


def test_presets_are_shipped():
    assert {"default", "smoke", "toy"} <= set(preset_names())
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*smoke"):
        compose(presets=["nope"])


def test_layers_compose_in_order(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("encoder:\n  name: clip\n  fps: 4.0\n  output: cls\ntrain:\n  steps: 7\n  lr: 0.5\n")
    cfg = compose(presets=["smoke"], files=[f], sugar={"encoder": "clip"}, overrides=["train.lr=0.25", "encoder.fps=8"])
    assert cfg.encoder.name == "clip"
    assert cfg.encoder.fps == 8.0 and cfg.encoder.output == "cls"  # file, then dotlist
    assert cfg.train.steps == 7 and cfg.train.lr == 0.25  # file over preset, dotlist over file
    assert cfg.data.toy_n == 20  # from the smoke preset
    assert cfg.encoder.hidden_size == 64  # default of the clip config dataclass
    with pytest.raises(Exception):
        cfg.train.lr = 1.0  # read-only


def test_alias_resolves_to_canonical_name_and_same_hash():
    a = compose(sugar={"encoder": "clip"})
    b = compose(sugar={"encoder": "clip_frames"})
    assert b.encoder.name == "clip" and config_hash(a) == config_hash(b)


def test_typo_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        compose(sugar={"encoder": "clip"}, overrides=["encoder.typo=1"])
    msg = str(info.value)
    assert "'encoder.typo'" in msg and "Valid keys: weights, output, fps" in msg
    with pytest.raises(ConfigError, match="Did you mean 'steps'"):
        compose(overrides=["train.stesp=3"])
    with pytest.raises(ConfigError, match="'trian'.*Valid keys: encoder, layout"):
        compose(overrides=["trian.steps=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.*steps"):
        compose(overrides=["train.steps=abc"])


def test_unknown_component_lists_registered():
    with pytest.raises(UnknownComponentError, match="unknown encoder 'nope'.*Registered encoders: .*clip"):
        compose(sugar={"encoder": "nope"})


def test_changing_component_name_drops_fields_of_the_previous_one(vidmusic_host, tmp_path):
    import types
    from dataclasses import dataclass

    from vidmusic_core import hookimpl

    @dataclass
    class ACfg:
        alpha_only: int = 1

    @dataclass
    class BCfg:
        beta_only: int = 2

    plug = types.ModuleType("ab")

    @hookimpl
    def register_encoders(register):
        register("a", lambda c: c, ACfg)
        register("b", lambda c: c, BCfg)

    plug.register_encoders = register_encoders
    vidmusic_host.register_plugin(plug, name="ab")
    f = tmp_path / "a.yaml"
    f.write_text("encoder:\n  name: a\n  alpha_only: 5\n")
    cfg = compose(files=[f], sugar={"encoder": "b"}, base=None)
    assert cfg.encoder.name == "b" and "alpha_only" not in cfg.encoder and cfg.encoder.beta_only == 2
    same = compose(files=[f], sugar={"encoder": "a"}, base=None)
    assert same.encoder.alpha_only == 5  # same name: the file's fields are kept


def test_hash_is_stable_and_ignores_non_result_fields(tmp_path):
    base = compose(presets=["smoke"])
    h = config_hash(base)
    assert len(h) == 10 and h == config_hash(compose(presets=["smoke"]))
    # the resolved YAML re-read as a file gives the same hash
    f = tmp_path / "resolved.yaml"
    f.write_text(to_yaml(base))
    assert config_hash(compose(files=[f])) == h
    # fields that do not change results leave the hash alone
    assert config_hash(compose(presets=["smoke"], overrides=["run.root=/elsewhere", "train.log_every=99",
                                                             "data.num_workers=3"])) == h
    # fields that do change results change it
    assert config_hash(compose(presets=["smoke"], overrides=["train.lr=0.5"])) != h
    assert config_hash(compose(presets=["smoke"], overrides=["encoder.fps=3"])) != h


def test_hash_value_is_pinned():
    """Guards against accidental changes to the hashing scheme (run directories are named by it)."""
    import hashlib
    import json

    from vidmusic_core.config import _hash_relevant
    from vidmusic_core.plugins import get_registry

    cfg = compose(presets=["smoke"])
    payload = json.dumps(_hash_relevant(cfg, get_registry()), sort_keys=True, separators=(",", ":"))
    assert config_hash(cfg) == hashlib.sha256(payload.encode()).hexdigest()[:10]
    assert '"run":{}' in payload and '"log_every"' not in payload


def test_bad_yaml_file_is_a_config_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("encoder: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        compose(files=[f])
    with pytest.raises(ConfigError, match="does not exist"):
        compose(files=[tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="key=value"):
        compose(overrides=["train.steps"])


def test_resolved_config_roundtrips_yaml():
    cfg = compose(presets=["toy"], sugar={"encoder": "clip"})
    again = OmegaConf.create(to_yaml(cfg))
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_preset_layout_follows_the_backbone_but_explicit_layout_is_kept():
    cfg = compose(sugar={"backbone": "musicgen"})  # the default preset's layout (aligned) is not supported
    assert cfg.layout.name == "cross" and "prefix_condition" not in cfg.layout
    explicit = compose(sugar={"backbone": "musicgen", "layout": "prefix"})
    assert explicit.layout.name == "prefix"  # kept: building the model then names both in an error
    assert compose(sugar={"backbone": "inspire"}).layout.name == "aligned"
    # the user's own layout options survive the switch (they were dropped silently before) ...
    mine = compose(sugar={"backbone": "musicgen"}, overrides=["layout.clip_prior=true"])
    assert mine.layout.name == "cross" and mine.layout.clip_prior is True
    # ... and one the backbone's layout lacks is an error naming it, not ignored
    with pytest.raises(ConfigError, match="layout.prefix_condition"):
        compose(sugar={"backbone": "musicgen"}, overrides=["layout.prefix_condition=false"])


def test_eval_metrics_take_options(tmp_path):
    """eval.metrics entries are names or {name, options}; options are the metric's config (typos fail at compose)."""
    from vidmusic_core.config import metric_specs

    y = tmp_path / "m.yaml"
    y.write_text("eval:\n  metrics: [tempo_acc, {name: beat_f1, options: {window: 0.1}}]\n")
    cfg = compose(files=[y])
    (tempo, _), (beat, opts) = metric_specs(cfg.eval.metrics)
    assert (tempo.name, beat.name, opts.window) == ("tempo_acc", "beat_f1", 0.1)
    assert beat.build(opts).protocol()["window"] == 0.1  # the score records the option it used
    y.write_text("eval:\n  metrics: [{name: beat_f1, options: {windw: 0.1}}]\n")
    with pytest.raises(ConfigError, match="windw"):
        compose(files=[y])
    y.write_text("eval:\n  metrics: [{metric: beat_f1}]\n")
    with pytest.raises(ConfigError, match=r"eval.metrics\[0\]"):
        compose(files=[y])


def test_plugin_presets_compose():
    """The presets plugins register (hook register_presets) compose into their systems' shapes."""
    from vidmusic_core.config import preset_names

    assert {"vidmuse", "inspiremusic-base", "musecoco", "smoke", "toy", "default"} <= set(preset_names())
    v = compose(presets=["vidmuse"])
    assert (v.encoder.name, v.encoder.out_dim, v.layout.name, v.layout.project, v.backbone.name, v.backbone.size,
            v.codec.name, v.generate.top_k, v.generate.window_seconds) == ("lstv", 1536, "cross", False, "musicgen",
                                                                           "medium", "encodec", 250, 30.0)
    i = compose(presets=["inspiremusic-base"])
    assert (i.backbone.size, i.backbone.hidden, i.codec.name, i.generate.eos, i.generate.min_length) == (
        "base", None, "wavtokenizer", True, 0.9)
