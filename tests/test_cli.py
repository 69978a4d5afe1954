"""The `vidmusic` console script, run for real in subprocesses."""
import shutil
import subprocess
import sys
from pathlib import Path

VIDMUSIC = shutil.which("vidmusic", path=str(Path(sys.executable).parent)) or "vidmusic"


def run(*args, **kw):
    return subprocess.run([VIDMUSIC, *args], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": str(Path(sys.executable).parent)}, **kw)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("vidmusic, version ")


def test_plugins_lists_clip_and_builtin_plugins():
    out = run("plugins")
    assert out.returncode == 0, out.stderr
    for name in ("clip", "clip_frames", "core", "vidmuse_lstv", "inspire_llm", "musecoco_symbolic", "musicgen_lm"):
        assert name in out.stdout, name
    assert "output='last_hidden_state'" in out.stdout
    assert "BROKEN" not in out.stdout


def test_config_typo_names_key_and_valid_keys():
    out = run("config", "--encoder", "clip", "encoder.typo=1")
    assert out.returncode == 2
    assert "'encoder.typo'" in out.stderr and "Valid keys: weights, output, fps" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_unknown_encoder_lists_encoders():
    out = run("config", "--encoder", "nope")
    assert out.returncode == 2 and "unknown encoder 'nope'" in out.stderr and "clip" in out.stderr


def test_config_prints_yaml_and_hash(tmp_path):
    out = run("config", "-p", "smoke", "--encoder", "clip", "train.steps=3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# run hash: ") and "steps: 3" in out.stdout and "toy_n: 20" in out.stdout
    h = run("config", "-p", "smoke", "--encoder", "clip", "train.steps=3", "--hash").stdout.strip()
    assert out.stdout.splitlines()[0] == f"# run hash: {h}"
    # the printed YAML is a valid -c file that reproduces the same hash
    f = tmp_path / "cfg.yaml"
    f.write_text(out.stdout)
    assert run("config", "-c", str(f), "--hash").stdout.strip() == h


def test_import_unknown_importer(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"")
    out = run("import", "nope", str(src), "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and "unknown importer 'nope'" in out.stderr
