"""The README's set-up commands and .ci/run stay in sync (the other blocks: tests/test_docs_snippets.py)."""
from docs_snippets import ROOT, blocks


def readme_commands():
    return [b.body.strip() for b in blocks() if b.path == "README.md" and b.lang == "bash"][:2]


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, test_cmd = readme_commands()
    assert "pip install torch==2.13.0" in install_and_run and "vidmusic " in install_and_run
    assert "pytest" in test_cmd and "\n" not in test_cmd
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines
