"""The README's set-up commands and .ci/run stay in sync."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, test_cmd = readme_commands()
    assert "pip install torch==2.13.0" in install_and_run and "vidmusic " in install_and_run
    assert "pytest" in test_cmd and "\n" not in test_cmd
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines
