"""``vidmusic sweep``: the cartesian product of config values, run locally in a process pool, then one
ablation table (markdown + CSV) and a bar chart.

Every grid point is an ordinary ``vidmusic run`` (its own run directory, named by its config hash),
so a sweep resumes: finished stages are skipped. One failing point does not stop the others; its
error is recorded in the table. For a cluster, run each point as its own job (see docs/sweeps.md).
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import atomic_path
from .config import COMPONENT_SECTIONS, compose
from .control import control_missing
from .errors import ConfigError
from .progress import progress_bar


@dataclass
class SweepPoint:
    overrides: list[str]  # the grid's key=value for this point
    run_dir: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None


def parse_grid(grid: Sequence[str]) -> list[list[str]]:
    """``["encoder.name=clip,lstv", "train.lr=1e-3,3e-4"]`` -> the list of points' overrides. A component section
    alone names the component: ``backbone=inspire,flow`` is ``backbone.name=inspire,flow``."""
    axes = []
    for g in grid:
        if "=" not in g:
            raise ConfigError(f"--grid {g!r} must look like key=v1,v2,...")
        key, values = g.split("=", 1)
        key = f"{key}.name" if key in COMPONENT_SECTIONS else key
        vals = [v for v in values.split(",") if v != ""]
        if not vals:
            raise ConfigError(f"--grid {g!r} lists no values")
        axes.append([f"{key}={v}" for v in vals])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _run_point(args: tuple[list[str], list[str], list[str], dict[str, str | None], list[str]]) -> SweepPoint:
    presets, files, overrides, sugar, point = args
    sp = SweepPoint(point)
    try:
        from .pipeline import run

        cfg = compose(presets=presets, files=files, sugar=sugar, overrides=[*overrides, *point])
        rep = run(cfg, progress=False)
        sp.run_dir, sp.results = str(rep.run_dir), rep.results or _read_results(rep.run_dir)
    except Exception as exc:  # noqa: BLE001 - one failure must not stop the sweep
        sp.error = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3)
    return sp


def _read_results(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / "results.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def sweep(grid: Sequence[str], presets: Sequence[str] = (), files: Sequence[str] = (), overrides: Sequence[str] = (),
          sugar: dict[str, str | None] | None = None, workers: int = 1, out_dir: str | Path | None = None,
          progress: bool = True, launcher: str | None = None,
          slurm: dict[str, Any] | None = None) -> tuple[Path, list[SweepPoint]]:
    """Run every grid point (``workers`` processes, or with ``launcher`` one submitit job each: ``slurm`` or
    ``local``, see :mod:`vidmusic_core.launch`) and write ``table.md``, ``table.csv``, ``chart.png``;
    ``progress``: one bar over the points (the points themselves run without bars)."""
    points = parse_grid(grid)
    sugar = dict(sugar or {})
    # check every point's config before starting any work (typos fail fast)
    cfgs = [compose(presets=presets, files=files, sugar=sugar, overrides=[*overrides, *p]) for p in points]
    key = hashlib.sha256(json.dumps([list(presets), [str(f) for f in files], list(overrides), sugar, list(grid)]
                                    ).encode()).hexdigest()[:10]
    out = Path(out_dir) if out_dir else Path(cfgs[0].run.root) / "sweeps" / key
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(list(presets), [str(f) for f in files], list(overrides), sugar, p) for p in points]
    results: list[SweepPoint] = []
    with progress_bar(total=len(jobs), desc="sweep", unit="point", disable=not progress) as bar:
        if launcher is not None:
            from .launch import map_jobs

            results = map_jobs(_run_point, jobs, launcher, out / "jobs", slurm)
            bar.update(len(results))
        elif workers > 1:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                for sp in pool.map(_run_point, jobs):
                    results.append(sp)
                    bar.update(1)
        else:
            for j in jobs:
                results.append(_run_point(j))
                bar.update(1)
    write_table(out, results)
    write_chart(out, results)
    return out, results


def _metric_keys(points: Sequence[SweepPoint]) -> list[str]:
    keys: set[str] = set()
    for p in points:
        keys |= set((p.results or {}).get("metrics", {}))
    return sorted(keys)


def write_table(out: Path, points: Sequence[SweepPoint]) -> None:
    """``table.md`` and ``table.csv``: one row per point; each metric conditioned / shuffled control (or
    ``n/a: <why>`` where the point has no control, e.g. a single test clip)."""
    keys = _metric_keys(points)
    header = ["config", *[f"{k} ({v})" for k in keys for v in ("cond", "shuffled")], "run", "error"]
    rows = []
    for p in points:
        m = (p.results or {}).get("metrics", {})
        missing = control_missing(p.results or {})  # e.g. "not possible with 1 test clip"
        cells = [" ".join(p.overrides) or "(base)"]
        for k in keys:
            for v in ("conditioned", "shuffled"):
                x = m.get(k, {}).get(v)
                cells.append(f"{x:.3f}" if x is not None else f"n/a: {missing}" if v == "shuffled" and missing else "")
        cells += [p.run_dir or "", (p.error or "").split("\n")[0]]
        rows.append(cells)
    with atomic_path(out / "table.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")


def write_chart(out: Path, points: Sequence[SweepPoint]) -> None:
    """``chart.png``: per metric, conditioned vs shuffled-video control for every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = _metric_keys(points) or ["(no metrics)"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 1, 3.2), squeeze=False)
    labels = [" ".join(o.split("=", 1)[1] for o in p.overrides) or "base" for p in points]
    x = np.arange(len(points))
    for ax, k in zip(axes[0], keys):
        for j, (v, colour) in enumerate((("conditioned", "tab:blue"), ("shuffled", "tab:gray"))):
            vals = [(p.results or {}).get("metrics", {}).get(k, {}).get(v) for p in points]
            vals = [float("nan") if x is None else x for x in vals]  # no bar where there is no value
            ax.bar(x + (j - 0.5) * 0.4, vals, 0.4, label=v, color=colour)
        ax.set_title(k, fontsize=9)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "chart.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
