"""Fenced code blocks of README.md, docs/**/*.md and examples/**/README.md, and the driver that checks
them inside one subprocess (``python tests/docs_snippets.py JOBS.json RESULTS.json``).

Shared by tests/test_docs_snippets.py (every block) and tests/test_readme.py (the set-up lines).
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import re
import shlex
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
# commands that build and configure without running: the config is composed from the parsed options
COMPOSE_ONLY = ("run", "train", "prepare", "sweep")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # of the opening fence
    lang: str
    body: str

    @property
    def key(self) -> str:
        first = next((x for x in self.body.splitlines() if x.strip()), "")
        return f"{self.path}: {first.strip()}"


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").rglob("README.md"))]
    return [f for f in files if f.is_file()]


def blocks() -> list[Block]:
    out = []
    for f in doc_files():
        text = f.read_text()
        for m in FENCE.finditer(text):
            out.append(Block(str(f.relative_to(ROOT)), text[:m.start()].count("\n") + 1, m.group(1), m.group(2)))
    return out


def shell_commands(body: str) -> list[tuple[list[str], str]]:
    """``(argv, trailing comment)`` per command of a shell block: ``\\`` continuations joined, ``&&``
    chains split, comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    cmds = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        code, _, comment = line.partition("  #")
        for part in code.split("&&"):
            cmds.append((shlex.split(part), comment.strip()))
    return cmds


# -- the driver (runs in the subprocess) --------------------------------------------------------

def _resolve(node: ast.AST, ns: dict) -> object | None:
    if isinstance(node, ast.Name):
        return ns.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, ns)
        if base is None:
            return None
        if not hasattr(base, node.attr):
            raise AttributeError(f"{ast.unparse(node)}: {base!r} has no attribute {node.attr!r}")
        return getattr(base, node.attr)
    return None


def check_calls(code: str) -> str:
    """Run the snippet's imports, then bind every call of an imported name to its real signature."""
    tree = ast.parse(code)
    ns: dict = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), "<snippet>", "exec"), ns)
    checked = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = _resolve(node.func, ns)
            if fn is None or not callable(fn):
                continue
            inspect.signature(fn).bind(*[None] * len(node.args), **{k.arg: None for k in node.keywords if k.arg})
            checked.append(ast.unparse(node.func))
    if not checked:
        raise AssertionError("no call of an imported name to check")
    return "signatures match: " + ", ".join(sorted(set(checked)))


def check_cli(argv: list[str]) -> tuple[int, str]:
    """Run ``vidmusic ARGV`` in this process (compose-only for training commands, registry lookups for import)."""
    from click.testing import CliRunner

    from vidmusic_core.cli import COMPONENT_OPTIONS, _build_cli
    from vidmusic_core.config import compose

    cli = _build_cli()
    sub = argv[0]
    if sub in COMPOSE_ONLY:
        params = cli.commands[sub].make_context(sub, list(argv[1:])).params
        sugar = {k: params.get(k) for k in COMPONENT_OPTIONS}
        points = [[]]
        if sub == "sweep":
            from vidmusic_core.sweep import parse_grid

            points = parse_grid(params["grid"])
        for p in points:
            compose(presets=params["presets"], files=params["files"], sugar=sugar,
                    overrides=[*params["overrides"], *p])
        return 0, f"parsed, {len(points)} config(s) composed"
    if sub == "import":
        from omegaconf import OmegaConf

        from vidmusic_core.config import component_config
        from vidmusic_core.plugins import get_component

        args = [a.strip("[]") for a in argv[1:]]
        name = args[0]
        opts = [a for a in args[2:] if "=" in a]
        comp = get_component("importer", name)
        component_config(comp, OmegaConf.to_container(OmegaConf.from_dotlist(opts)) if opts else {},
                         where=f"importer {name}")
        return 0, f"importer {name} registered, options {opts} valid"
    res = CliRunner().invoke(cli, argv, catch_exceptions=True)
    text = res.output  # stdout and stderr as the user sees them
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        text += "".join(traceback.format_exception(res.exception))
    return res.exit_code, text


def run_python(job: dict, work: Path) -> str:
    import os

    work.mkdir(parents=True, exist_ok=True)
    code = job["body"]
    for a, b in job.get("replace", {}).items():
        assert a in code, f"replace: {a!r} is no longer in the snippet"
        code = code.replace(a, b)
    if job.get("calls_only"):
        return check_calls(code)
    old = os.getcwd()
    os.chdir(work)
    try:
        import types

        module = types.ModuleType("__snippet__")  # a real module: dataclasses look their class's module up
        sys.modules["__snippet__"] = module
        ns = module.__dict__
        ns["TOY"] = job.get("toy")
        exec(compile(job.get("prelude", ""), "<prelude>", "exec"), ns)
        expect = job.get("expect_error")
        try:
            exec(compile(code, job["key"], "exec"), ns)
        except Exception as exc:  # noqa: BLE001
            if expect and type(exc).__name__ == expect[0] and expect[1] in str(exc):
                return f"raised as documented: {type(exc).__name__}: {exc}"
            raise
        if expect:
            raise AssertionError(f"expected {expect[0]} ({expect[1]!r})")
        exec(compile(job.get("post", ""), "<post>", "exec"), ns)
    finally:
        os.chdir(old)
    return "ran"


def main(jobs_path: str, results_path: str) -> None:
    jobs = json.loads(Path(jobs_path).read_text())
    work = Path(jobs_path).parent
    toy = None
    if any(j.get("needs_toy") for j in jobs):
        from vidmusic_core.data.toy import make_toy_dataset

        toy = str(make_toy_dataset(work / "toy", n=2, seconds=2.0, workers=1, progress=False).out_dir)
    results = {}
    for i, job in enumerate(jobs):
        job["toy"] = toy
        try:
            if job["kind"] == "python":
                results[job["key"]] = {"ok": True, "detail": run_python(job, work / f"py{i}")}
            else:
                detail = []
                for argv, want in job["commands"]:
                    with contextlib.redirect_stderr(io.StringIO()):
                        code, text = check_cli(argv)
                    expect_fail = want.startswith("error")
                    ok = (code == 2) if expect_fail else (code == 0)
                    for must in job.get("expect", {}).get(" ".join(argv), []):
                        ok = ok and must in text
                    detail.append(f"$ vidmusic {shlex.join(argv)} -> {code}: {text.strip()[-600:]}")
                    if not ok:
                        raise AssertionError("\n".join(detail))
                results[job["key"]] = {"ok": True, "detail": "\n".join(detail)}
        except BaseException:  # noqa: BLE001 - report, go on with the next block
            results[job["key"]] = {"ok": False, "detail": traceback.format_exc()[-3000:]}
    Path(results_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
