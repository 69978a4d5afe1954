"""`vidmusic sweep`: a 2x2 grid at smoke size produces the ablation table and chart."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidmusic_core import ConfigError
from vidmusic_core.sweep import parse_grid

BIN = Path(sys.executable).parent


def test_parse_grid():
    pts = parse_grid(["a.x=1,2", "b.y=p,q,r"])
    assert len(pts) == 6 and pts[0] == ["a.x=1", "b.y=p"] and pts[-1] == ["a.x=2", "b.y=r"]
    with pytest.raises(ConfigError, match="key=v1,v2"):
        parse_grid(["nokey"])


def test_sweep_2x2_smoke(tmp_path):
    base = ["-p", "smoke", "--encoder", "clip", "encoder.image_size=32", "encoder.patch_size=16", "data.toy_n=8", "data.toy_seconds=2",
            "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32", "train.steps=4", "train.batch_size=2",
            f"run.root={tmp_path}", "eval.metrics=[beat_f1,tempo_acc]"]
    out = subprocess.run([str(BIN / "vidmusic"), "sweep", *base, "--grid", "layout.name=prefix,aligned",
                          "--grid", "train.lr=0.001,0.0003", "--out", str(tmp_path / "sw")], capture_output=True,
                         text=True, timeout=1200, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "sw" / "table.csv")))
    assert len(rows) == 4
    assert {r["config"] for r in rows} == {"layout.name=prefix train.lr=0.001", "layout.name=prefix train.lr=0.0003",
                                           "layout.name=aligned train.lr=0.001", "layout.name=aligned train.lr=0.0003"}
    for r in rows:
        assert r["error"] == ""
        assert 0.0 <= float(r["tempo_acc (cond)"]) <= 1.0
        assert r["beat_f1 (shuffled)"] == "n/a: not possible with 1 test clip"  # toy_n=8: one test clip
    assert (tmp_path / "sw" / "chart.png").stat().st_size > 1000
    assert "| config |" in (tmp_path / "sw" / "table.md").read_text()
    assert len({r["run"] for r in rows}) == 4  # one run directory per point
