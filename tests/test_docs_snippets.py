"""Every fenced block of README.md, docs/**/*.md and examples/**/README.md is checked (issue 23, point 2).

Each block has an entry in SPECS saying how: python runs (a fresh namespace and directory each, inside
one driver subprocess), shell lines of ``vidmusic`` run through the real CLI (commands that train are
parsed by their click command and their config composed — every grid point of a sweep; import lines
resolve the importer and validate its options), toml installs the example plugin with the real build
backend, yaml composes as a ``-c`` file, json is compared with a generated toy clip. What cannot run
here is listed with the reason. A block without an entry fails the test, and so does an entry
without a block.
"""
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from docs_snippets import ROOT, blocks, shell_commands

EXAMPLE = ROOT / "examples" / "vidmusic-plugin-example"
PLUGIN_INSTALL = ["pip", "install", "-e", "examples/vidmusic-plugin-example"]


@dataclass
class Spec:
    how: str  # diagram | cli | python | calls | excerpt | pytest | plugin-toml | config-yaml | toy-json | skip
    reason: str = ""  # why (skip, calls, and anything a cli block does not run)
    replace: dict = field(default_factory=dict)  # cheap sizes for expensive arguments
    prelude: str = ""  # python: names the snippet assumes
    post: str = ""  # python: checks after it ran
    expect_error: tuple = ()  # python: (exception class name, text in its message) the snippet documents
    expect: dict = field(default_factory=dict)  # cli: "argv joined" -> texts the output must contain
    setup: tuple = ()  # cli: non-vidmusic commands of the block that are not run (the reason says why)
    not_run: tuple = ()  # cli: vidmusic subcommands that are not run (the reason says why)
    target: str = ""  # excerpt: the file the snippet is an excerpt of


ITEMS = """
import json
from pathlib import Path
import soundfile
from vidmusic_core.audio import load_audio
items = []
for n in ("toy_00000", "toy_00001"):
    audio, sr = load_audio(Path(TOY) / f"{n}.wav", None, mono=True)[0], soundfile.info(Path(TOY) / f"{n}.wav").samplerate
    items.append({"name": n, "audio": audio, "sample_rate": sr, "video": str(Path(TOY) / f"{n}.mp4"),
                  "reference": json.loads((Path(TOY) / f"{n}.json").read_text()), "reference_audio": audio})
"""
VENV = "a fresh venv and install (minutes); .ci/run runs the test line verbatim (tests/test_readme.py)"
WEIGHTS = "needs an imported upstream checkpoint and a local EnCodec (nothing is downloaded); tests/test_vidmuse_generate.py runs this path on tiny random models"


def backbone_check(name: str, post: str = "") -> str:
    """Register the snippet's ``register_backbones`` (with the core's layouts) on a fresh host and run the
    contract checks on backbone ``name`` and on each layout it supports paired with it (docs/writing-a-backbone.md)."""
    return ("import types, vidmusic_core.builtins\nfrom vidmusic_core import PluginHost, use_host\n"
            "from vidmusic_core.config import compose\nfrom vidmusic_core.testing import check_component_contract\n"
            "host = PluginHost(load_entry_points=False)\nhost.register_plugin(vidmusic_core.builtins, name='core')\n"
            "hooks = {k: v for k, v in globals().items() if k in ('register_backbones', 'register_presets')}\n"
            "host.register_plugin(types.SimpleNamespace(**hooks), name='snippet')\n"
            f"with use_host(host):\n    m = check_component_contract('backbone', {name!r})\n"
            f"    for lay in m.supported_layouts:\n        check_component_contract('layout', lay, backbone={name!r})\n"
            f"    cfg = compose(sugar={{'encoder': 'none', 'backbone': {name!r}}}, base=None)\n" + post)


SPECS = {
    "README.md: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/vidmusic run --encoder lstv --backbone inspire":
        Spec("cli", VENV, setup=("python3 -m venv", ".venv/bin/pip install")),
    'README.md: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[test]" && .venv/bin/python -m pytest -q':
        Spec("skip", VENV),
    "README.md: toy-data → prepare → train → generate (test split + shuffled-video control) → eval → report": Spec("diagram"),
    "README.md: vidmusic sweep -p smoke --grid encoder.name=clip,lstv --grid layout.name=prefix,aligned": Spec("cli"),
    "README.md: vidmusic config -p smoke --encoder clip encoder.output=cls train.steps=50": Spec("cli", expect={
        "config -p smoke --encoder clip encoder.output=cls train.steps=50": ["name: clip", "steps: 50"],
        "config --encoder clip encoder.typo=1": ["Valid keys"]}),
    "README.md: from vidmusic_core import api": Spec("calls", "trains a model (~1 min); tests/test_training.py runs the loop"),
    "README.md: import vidmusic": Spec("calls", "needs a trained run; tests/test_training.py moves a model directory and "
                                                "generates from it with vidmusic.load"),
    "README.md: vidmusic import vidmuse_full VidMuse/state_dict.bin -o models/vidmuse clip_heads=12 codec_dir=models/encodec_32khz":
        Spec("cli", WEIGHTS, not_run=("generate",)),
    "docs/codecs/rvq_mel.md: audio [B,C,L] ─mean over C─▶ STFT (n_fft 1024, hop 320, Hann, centred) ─▶ |X|² ─Slaney mel─▶ log(mel + 1e-5)": Spec("diagram"),
    "docs/codecs/rvq_mel.md: from vidmusic_core import save_component, load_component": Spec(
        "python", prelude="import torch\ng = torch.Generator().manual_seed(0)\n"
        "clip_audio_tensors = [0.1 * torch.randn(16000 * 3, generator=g) for _ in range(3)]\n"
        "audio = clip_audio_tensors[0][None, None]\n",
        post="assert tokens.codes.shape[:2] == (1, 4) and audio_hat.shape[:2] == (1, 1) and log_mel_hat.shape[1] == 128"),
    "docs/codecs/wavtokenizer.md: # use the upstream folder directly (read at every start)": Spec("cli"),
    "docs/codecs/wavtokenizer.md: from inspire_llm.wavtokenizer import WavTokenizerCodec, import_wavtokenizer":
        Spec("calls", "needs InspireMusic's WavTokenizer weights; tests/test_wavtokenizer.py runs it on a random one"),
    "docs/codecs/wavtokenizer.md: audio [B,C,L] ─mean over C─▶ (soxr HQ resample to 24 kHz if sample_rate given) ─▶ [B, L]": Spec("diagram"),
    'docs/demo.md: pip install -e ".[demo]"                                        # gradio; the demo is an optional extra':
        Spec("skip", "serves a web page until stopped; tests/test_demo.py starts `vidmusic demo` on a free port and "
                     "drives it with gradio_client and headless Chromium"),
    "docs/demo.md: from vidmusic_core.demo import summarise_votes": Spec("python", prelude=(
        "from vidmusic_core.demo import VoteLog\nopen('clip.mp4', 'wb').write(b'x')\nlog = VoteLog('demo_votes.csv')\n"
        "for c in ['left'] * 3 + ['right', 'tie']:\n"
        "    log.write(session='s', video='clip.mp4', seed=0, seconds=2, left='m1', right='m2', choice=c)\n"),
        post="assert (s.a, s.wins_a, s.wins_b, s.ties) == ('m1', 3, 1, 1) and abs(s.p_value - 0.625) < 1e-9"),
    "docs/encoders/motion.md: from vidmusic_core.encoders.motion import MotionEncoder, analyse_motion, detect_beats_and_cuts":
        Spec("python", prelude="import shutil, pathlib\nshutil.copy(pathlib.Path(TOY) / 'toy_00000.mp4', 'clip.mp4')\n",
             post="assert len(beats) > 0 and a.tempo > 0"),
    "docs/encoders/motion.md: vidmusic run --encoder motion --layout aligned --backbone inspire layout.prefix_condition=false": Spec("cli"),
    "docs/encoders/motion.md: encoder:": Spec("config-yaml"),
    "docs/metrics.md: from vidmusic_core.plugins import get_component": Spec(
        "python", prelude=ITEMS, post="assert {'beat_precision', 'beat_f1', 'onset_f1'} <= set(scores) and manifest"),
    'docs/metrics.md: comp = get_component("metric", "fad")': Spec(
        "python", prelude=ITEMS + "from vidmusic_core.plugins import get_component\n",
        expect_error=("MissingWeightsError", "/models/clap-htsat-unfused")),
    "docs/metrics.md: vidmusic eval --videos samples/videos --music samples/vidmuse --reference samples/original_music -o eval/vidmuse":
        Spec("skip", "needs folders of videos and music; tests/test_eval_folders.py runs this command on folders it writes"),
    "docs/metrics.md: class VGGishEmbedder:": Spec("python", post="assert VGGishEmbedder.sample_rate == 16000"),
    "docs/metrics.md: from vidmusic_core.hookspecs import hookimpl": Spec("python", post=(
        "import types\nfrom vidmusic_core import PluginHost\nhost = PluginHost(load_entry_points=False)\n"
        "host.register_plugin(types.SimpleNamespace(register_metrics=register_metrics), name='snippet')\n"
        "assert host.registry.get('metric', 'fad_vggish').default_config().embedder == 'mypackage.embedders:VGGishEmbedder'")),
    "docs/plugins/inspire.md: vidmusic import inspiremusic pretrained_models/InspireMusic-Base -o models/inspire-base": Spec("cli"),
    "docs/plugins/lstv.md: local frames  [B,T_v,224,224,3] ─CLIP─▶ last_hidden_state [B,T_v,50,768] ─+local_pos_embedding─▶ per-frame transformer ─┐": Spec("diagram"),
    "docs/plugins/lstv.md: vidmusic import vidmuse path/to/state_dict.bin -o runs/vidmuse-lstv [n_global=32]": Spec("cli"),
    "docs/plugins/musecoco.md: I1s2_0_1 I1s2_1_1 … TM1_0  <sep>  Bar_None TimeSig_4/4 Position_0 Tempo_135.61 Position_4 Program_-1 PitchDrum_36 Velocity_107 Duration_0.3.12 …": Spec("diagram"),
    "docs/plugins/musecoco.md: vidmusic import musecoco path/to/attribute2music.pt -o models/musecoco-1b [dict_file=path/to/dict.txt] [dtype=bf16]": Spec("cli"),
    "docs/plugins/musecoco.md: vidmusic run --encoder lstv --backbone musecoco              # toy default: 200 clips, ~tiny models, CPU": Spec("cli"),
    "docs/plugins/musecoco.md: vidmusic run --encoder lstv --backbone musecoco --layout attribute_head": Spec("cli"),
    "docs/plugins/musecoco.md: vidmusic run --encoder lstv --backbone musecoco --layout attribute_head \\": Spec("cli"),
    "docs/plugins/musecoco.md: vidmusic corpus corpus_bach --collection bach                         # all 410 Bach chorales, full length": Spec(
        "cli", replace={"--collection bach ": "--collection bach --n 1 --seconds 4 ", "--n 2000 --seconds 30": "--n 1 --seconds 4"},
        expect={"corpus corpus_bach --collection bach --n 1 --seconds 4": ["1 written", "licence: public-domain"]}),
    "docs/plugins/musecoco.md: vidmusic corpus corpus_bach --collection bach --seconds 30": Spec(
        "cli", "the export is run by the block above", not_run=("corpus",)),
    'docs/plugins/musecoco.md: vidmusic run --encoder lstv --backbone musecoco train.init_from=runs/<the corpus run> "train.init_modules=[backbone]"': Spec(
        "cli", replace={"runs/<the corpus run>": "runs/THE_CORPUS_RUN"}),
    "docs/plugins/musicgen.md: vidmusic import musicgen path/to/musicgen-small -o models/musicgen-small [dtype=fp16]": Spec("cli"),
    "docs/plugins/musicgen.md: OUT/": Spec("diagram"),
    "docs/plugins/musicgen.md: vidmusic generate VIDEO... --model models/vidmuse -o out/ [--seed N] [--device cuda] [--set generate.top_k=50]":
        Spec("skip", WEIGHTS),
    "docs/scaling.md: pip install 'vidmusic[slurm]'": Spec(
        "cli", "needs a Slurm cluster; tests/test_scaling.py runs the same path with submitit's LocalExecutor",
        setup=("pip install",)),
    "docs/scaling.md: torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint head-node:29500 -m vidmusic_core.cli train -p smoke data.root=data/v2m train.global_batch_size=256": Spec(
        "skip", "needs two machines; tests/test_training.py runs 2-process torchrun on gloo"),
    "docs/sweeps.md: vidmusic sweep -p smoke --grid encoder.name=clip,lstv --grid layout.name=prefix,aligned --workers 2": Spec("cli"),
    "docs/sweeps.md: import itertools, submitit": Spec("skip", "needs submitit and a Slurm cluster (not installed here)"),
    "docs/sweeps.md: from pathlib import Path": Spec("python", prelude=(
        "import json, pathlib\nd = pathlib.Path('runA'); d.mkdir()\n"
        "(d / 'results.json').write_text(json.dumps({'metrics': {'beat_f1': {'conditioned': 0.5, 'shuffled': 0.2}}}))\n"
        "points, run_dirs = [['layout.name=prefix']], [str(d)]\n"),
        post="assert '0.500' in Path('sweep_out/table.md').read_text() and Path('sweep_out/chart.png').is_file()"),
    "docs/toy-data.md: vidmusic toy-data OUT --n 200 --seconds 8 --seed 0": Spec(
        "cli", replace={"--n 200 --seconds 8": "--n 2 --seconds 2 --workers 1"}, expect={
            "toy-data OUT --n 2 --seconds 2 --workers 1 --seed 0": ["wrote 2 clips"]}),
    "docs/toy-data.md: from vidmusic_core.data.toy import make_toy_dataset": Spec(
        "python", replace={"n=200, seconds=8.0": "n=2, seconds=2.0", "workers=None": "workers=1"},
        post="assert len(summary.names) == 2 and sum(map(len, summary.splits.values())) == 2"),
    "docs/toy-data.md: {": Spec("toy-json"),
    "docs/visualizers.md: vidmusic visualize song.wav -o out.mp4                     # reactive, 512x512, 24 fps: no weights needed":
        Spec("cli", "needs a song and, for clip_guided, local CLIP/Wav2CLIP/VQGAN directories; tests/test_visualize.py "
             "and tests/test_clip_guided.py run these commands", not_run=("visualize",),
             expect={"plugins --kind visualizer": ["reactive", "clip_guided"]}),
    "docs/visualizers.md: from vidmusic_core.visualize import visualize": Spec(
        "python", prelude="from pathlib import Path\nfrom vidmusic_core.testing import write_test_song\n"
                          "write_test_song(Path('song.wav'), seconds=2.0)\n",
        replace={"size=(512, 512), fps=24": "size=(64, 64), fps=8"},
        post="assert result.mp4.is_file() and result.frames == 16 and result.song.tempo > 0"),
    "docs/visualizers.md: vidmusic cycle data/toy/toy_00000.wav data/toy/toy_00001.wav --model runs/MY_RUN -o cycle_out --visualizer reactive":
        Spec("skip", "needs a trained model; tests/test_cycle.py runs `vidmusic cycle` with one"),
    "docs/writing-a-backbone.md: # a token LM: embeddings, a GRU whose hidden state is the cache, a head per codebook":
        Spec("python", post=backbone_check("tiny_gru", "assert m.eos_id == m.cardinality == 32 and cfg.backbone.name == 'tiny_gru'")),
    "docs/writing-a-backbone.md: # a one-step flow over latents": Spec("python", post=backbone_check(
        "tiny_flow", "assert m.latent_dim == 8 and cfg.codec.name == 'mel_latent' and cfg.generate.steps == 1")),
    "docs/writing-a-backbone.md: import vidmusic_core.builtins": Spec("excerpt", target="tests/test_contracts.py"),
    "docs/writing-a-plugin.md: vidmusic-plugin-example/": Spec("diagram"),
    "docs/writing-a-plugin.md: # pyproject.toml": Spec("plugin-toml"),
    "docs/writing-a-plugin.md: class ColourStatsEncoder(ConditionEncoder):": Spec("excerpt", target="examples/vidmusic-plugin-example/vidmusic_example/encoder.py"),
    "docs/writing-a-plugin.md: from vidmusic_core import hookimpl": Spec("excerpt", target="examples/vidmusic-plugin-example/vidmusic_example/plugin.py"),
    "docs/writing-a-plugin.md: pip install -e examples/vidmusic-plugin-example": Spec("cli", expect={
        "plugins --kind encoder": ["colour_stats", "vidmusic-plugin-example"],
        "config --encoder colour_stats encoder.dim=8": ["name: colour_stats", "dim: 8"],
        "colour-stats-info": ["colour_stats: 4.0 fps, 32px frames, dim 16"]}),
    "docs/writing-a-plugin.md: from vidmusic_core.testing import check_component_contract": Spec("pytest"),
    "docs/writing-a-plugin.md: import vidmusic_example.plugin as plugin": Spec("pytest"),
    "examples/vidmusic-plugin-example/README.md: pip install -e examples/vidmusic-plugin-example": Spec("cli", expect={
        "plugins --kind encoder": ["colour_stats"], "config --encoder colour_stats": ["name: colour_stats"]}),
}
NEEDS_PLUGIN = {k for k, s in SPECS.items() if s.how == "cli" and k.split(": ", 1)[1] == " ".join(PLUGIN_INSTALL)}
BLOCKS = {b.key: b for b in blocks()}


def unlisted(found):
    return [f"{b.path}:{b.line}" for b in found if b.key not in SPECS]


def test_every_block_has_a_spec_and_every_spec_a_block():
    assert len(BLOCKS) == len(blocks()), "two blocks of one file start with the same line: make them distinct"
    missing = unlisted(blocks())
    assert not missing, f"fenced blocks without an entry in SPECS (tests/test_docs_snippets.py): {missing}"
    assert not [k for k in SPECS if k not in BLOCKS], "SPECS entries whose block is gone"
    for k, s in SPECS.items():
        assert s.how != "skip" or s.reason, f"{k}: a skipped block needs a reason"
        assert s.how != "calls" or s.reason, f"{k}: say why the block cannot run"


def test_a_new_block_is_caught(tmp_path, monkeypatch):
    import docs_snippets

    doc = tmp_path / "docs" / "new.md"
    doc.parent.mkdir()
    doc.write_text("# New\n\n```bash\nvidmusic run --encoder lstv\n```\n")
    monkeypatch.setattr(docs_snippets, "ROOT", tmp_path)
    assert unlisted(docs_snippets.blocks()) == ["docs/new.md:3"]


def test_diagrams_hold_no_commands():
    for k, s in SPECS.items():
        if s.how == "diagram":
            b = BLOCKS[k]
            assert b.lang == "", f"{k}: a {b.lang} block is code, not a diagram"
            assert not any(x.lstrip().startswith(("vidmusic ", "python", "pip ", "from ", "import ")) for x in b.body.splitlines()), k


def _cli_jobs(keys):
    jobs = []
    for k in keys:
        s, body = SPECS[k], BLOCKS[k].body
        for a, b in s.replace.items():
            assert a in body, f"{k}: replace {a!r} is no longer in the block"
            body = body.replace(a, b)
        commands = []
        for argv, comment in shell_commands(body):
            if argv[:1] == ["vidmusic"] or argv[:1] == [".venv/bin/vidmusic"]:
                if argv[1] in s.not_run:
                    assert s.reason, k
                    continue
                commands.append((argv[1:], comment))
            elif argv == PLUGIN_INSTALL:
                assert k in NEEDS_PLUGIN  # the installed_snippet fixture did it
            else:
                assert s.setup and " ".join(argv).startswith(s.setup), f"{k}: runs {argv!r}, which the test does not run"
        assert commands, f"{k}: nothing in the block runs: make it a skip with the reason"
        for cmd in s.expect:
            assert any(" ".join(a) == cmd for a, _ in commands), f"{k}: expect names {cmd!r}, not in the block"
        jobs.append({"key": k, "kind": "cli", "commands": commands, "expect": s.expect})
    return jobs


def _python_jobs(keys):
    jobs = []
    for k in keys:
        s = SPECS[k]
        jobs.append({"key": k, "kind": "python", "body": BLOCKS[k].body, "replace": s.replace, "prelude": s.prelude,
                     "post": s.post, "expect_error": list(s.expect_error), "calls_only": s.how == "calls",
                     "needs_toy": "TOY" in s.prelude})
    return jobs


def _drive(jobs, work, site=None):
    work.mkdir(parents=True, exist_ok=True)
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200",
               PYTHONPATH=os.pathsep.join(filter(None, [str(site) if site else "", str(ROOT / "tests")])))
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "docs_snippets.py"), str(work / "jobs.json"),
                          str(work / "results.json")], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((work / "results.json").read_text())


@pytest.fixture(scope="module")
def installed_snippet(tmp_path_factory):
    """The docs' pyproject.toml with the example's package, installed with the real build backend (offline)."""
    tmp = tmp_path_factory.mktemp("plugin")
    pkg, site = tmp / "pkg", tmp / "site"
    shutil.copytree(EXAMPLE, pkg, ignore=shutil.ignore_patterns("pyproject.toml", "*.egg-info", "build"))
    (pkg / "pyproject.toml").write_text(BLOCKS["docs/writing-a-plugin.md: # pyproject.toml"].body)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(pkg)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"the pyproject.toml of docs/writing-a-plugin.md does not install:\n{out.stderr[-2000:]}"
    return site


RUN_HERE = [k for k, s in SPECS.items() if s.how in ("cli", "python", "calls") and k not in NEEDS_PLUGIN]


@pytest.fixture(scope="module")
def snippet_run(tmp_path_factory):
    """(results by key, work dir): every runnable block, in one driver subprocess."""
    work = tmp_path_factory.mktemp("snippets")
    jobs = _cli_jobs([k for k in RUN_HERE if SPECS[k].how == "cli"])
    jobs += _python_jobs([k for k in RUN_HERE if SPECS[k].how != "cli"])
    jobs[0]["needs_toy"] = True  # toy-json compares with the driver's toy clip
    return _drive(jobs, work), work


@pytest.mark.parametrize("key", RUN_HERE)
def test_block_runs(snippet_run, key):
    res = snippet_run[0][key]
    assert res["ok"], f"{key}\n{res['detail']}"


def test_plugin_blocks_run(installed_snippet, tmp_path):
    res = _drive(_cli_jobs(sorted(NEEDS_PLUGIN)), tmp_path, site=installed_snippet)
    for k in NEEDS_PLUGIN:
        assert res[k]["ok"], f"{k}\n{res[k]['detail']}"


def test_plugin_toml_installs_and_matches_the_example(installed_snippet):
    body = BLOCKS["docs/writing-a-plugin.md: # pyproject.toml"].body
    doc = tomllib.loads(body)
    assert doc == tomllib.loads((EXAMPLE / "pyproject.toml").read_text()), "docs and examples/ disagree"
    assert doc["project"]["entry-points"]["vidmusic"] == {"colour_stats": "vidmusic_example.plugin"}
    (dist,) = installed_snippet.glob("vidmusic_plugin_example-*.dist-info")
    assert "colour_stats = vidmusic_example.plugin" in (dist / "entry_points.txt").read_text()


def test_plugin_test_snippets_pass_under_pytest(installed_snippet, tmp_path):
    for i, k in enumerate(k for k, s in SPECS.items() if s.how == "pytest"):
        (tmp_path / f"test_snippet_{i}.py").write_text(BLOCKS[k].body)
    env = dict(os.environ, PYTHONPATH=str(installed_snippet), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "2 passed" in out.stdout, out.stdout[-3000:]


def test_excerpts_match_their_file():
    for k, s in SPECS.items():
        if s.how == "excerpt":
            source = [x.strip() for x in (ROOT / s.target).read_text().splitlines()]
            for line in BLOCKS[k].body.splitlines():
                code = line.split("  #")[0].strip()
                if code and code != "...":
                    assert any(x.startswith(code) for x in source), f"{k}: {code!r} is not in {s.target}"


def test_config_yaml_composes(tmp_path):
    from vidmusic_core.config import compose

    for k, s in SPECS.items():
        if s.how == "config-yaml":
            f = tmp_path / "snippet.yaml"
            f.write_text(BLOCKS[k].body)
            yaml.safe_load(f.read_text())
            cfg = compose(files=[str(f)])
            assert cfg.encoder.name == yaml.safe_load(f.read_text())["encoder"]["name"]


def test_toy_json_matches_a_generated_clip(snippet_run):
    (k,) = [k for k, s in SPECS.items() if s.how == "toy-json"]
    doc = json.loads(BLOCKS[k].body)
    real = json.loads((snippet_run[1] / "toy" / "toy_00000.json").read_text())  # the driver's toy data
    assert set(doc) == set(real), f"keys differ: {set(doc) ^ set(real)}"
    for key, value in doc.items():
        if isinstance(value, dict):
            assert set(value) == set(real[key]), key
