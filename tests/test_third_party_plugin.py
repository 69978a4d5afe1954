"""A separate distribution is discovered through its entry point, without editing the core."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vidmusic-plugin-example"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example package into a private target directory (no deps, no network)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    assert list(target.glob("vidmusic_plugin_example-*.dist-info/entry_points.txt"))
    return target


def run_cli(site, *args):
    env = dict(os.environ, PYTHONPATH=str(site), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "vidmusic_core.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_plugins_lists_the_external_encoder(installed_example):
    out = run_cli(installed_example, "plugins")
    assert out.returncode == 0, out.stderr
    assert "colour_stats" in out.stdout and "color_stats" in out.stdout
    assert "vidmusic-plugin-example 0.1.0" in out.stdout


def test_config_sees_the_external_encoder(installed_example):
    out = run_cli(installed_example, "config", "--encoder", "colour_stats", "encoder.dim=8")
    assert out.returncode == 0, out.stderr
    assert "name: colour_stats" in out.stdout and "dim: 8" in out.stdout
    bad = run_cli(installed_example, "config", "--encoder", "colour_stats", "encoder.width=8")
    assert bad.returncode == 2 and "Valid keys: fps, size, dim" in bad.stderr


def test_plugin_command_and_contract(installed_example):
    out = run_cli(installed_example, "colour-stats-info")
    assert out.returncode == 0, out.stderr
    assert "colour_stats: 4.0 fps, 32px frames, dim 16" in out.stdout
    code = ("from vidmusic_core.testing import check_component_contract as c; "
            "m = c('encoder', 'colour_stats'); print(type(m).__name__)")
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(installed_example)),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ColourStatsEncoder"


def test_not_visible_without_the_distribution():
    out = run_cli(ROOT / "nonexistent-site", "config", "--encoder", "colour_stats")
    assert out.returncode == 2 and "unknown encoder 'colour_stats'" in out.stderr
