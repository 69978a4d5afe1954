"""The shape rules of the code base (issue 16, DESIGN §10), checked on the source so they stay true:
plugins import only the public ``vidmusic_core`` API (never the CLI or a submodule), the core never imports a
plugin, and the core discovers no component protocol at run time (``inspect.signature``, ``is_symbolic``)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file())


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_plugins_import_only_the_public_api():
    bad = [f"{f.relative_to(ROOT)}: {m}" for f in (ROOT / "plugins").rglob("*.py")
           for m in _imports(f) if m.startswith("vidmusic_core.")]
    assert not bad, "plugins import vidmusic_core submodules (export what they need instead):\n" + "\n".join(bad)


def test_core_never_imports_a_plugin():
    assert PLUGINS  # the built-in plugins are there to check against
    bad = [f"{f.relative_to(ROOT)}: {m}" for f in (ROOT / "vidmusic_core").rglob("*.py")
           for m in _imports(f) if m.split(".")[0] in PLUGINS]
    assert not bad, "the core imports plugins:\n" + "\n".join(bad)


def test_core_discovers_no_protocol_at_run_time():
    bad = [f"{f.relative_to(ROOT)}:{i}" for f in (ROOT / "vidmusic_core").rglob("*.py")
           for i, line in enumerate(f.read_text().splitlines(), 1)
           if ("inspect.signature" in line or "is_symbolic(" in line) and not line.lstrip().startswith("#")]
    assert not bad, "declare the protocol on the base class instead:\n" + "\n".join(bad)


def test_loading_and_generating_import_neither_the_trainer_nor_the_data_cache():
    """``vidmusic.load(DIR).generate(...)`` needs a model directory only: its modules pull in no trainer, data
    cache or run stages (notes/architecture.md: generating never imports the trainer or the data cache)."""
    import subprocess
    import sys

    code = ("import sys, vidmusic, vidmusic_core.videos, vidmusic_core.longform, vidmusic_core.symbolic\n"
            "bad = [m for m in ('vidmusic_core.training', 'vidmusic_core.data.prepare', 'vidmusic_core.data.dataset',"
            " 'vidmusic_core.pipeline') if m in sys.modules]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
