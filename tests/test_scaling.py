"""Fan-out: `prepare --launcher local --jobs N` (submitit's LocalExecutor, the Slurm path's code) gives the
same cache as one process; `prepare --workers 2` too."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("submitit", reason="the launcher path needs the slurm extra (in the test extra)")

BIN = Path(sys.executable).parent
OPTS = ["--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
        "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32", "--shard-size", "1"]


def vm(*args, timeout=600):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def shards(cache):
    return {p.relative_to(cache): p.read_bytes() for p in sorted(cache.glob("*/part-*"))}


def test_submitit_local_job_array_matches_one_process(tmp_path):
    data = tmp_path / "data"
    vm("toy-data", str(data), "--n", "4", "--seconds", "2", "--workers", "1")
    one, arr = tmp_path / "one", tmp_path / "array"
    vm("prepare", str(data), *OPTS, f"data.cache_dir={one}")
    out = vm("prepare", str(data), *OPTS, f"data.cache_dir={arr}", "--launcher", "local", "--jobs", "2", "--workers", "0")
    assert "2 job(s) done: 0/2 wrote 4, 1/2 wrote 4" in out.stdout  # 2 items each, encoder + codec shard per item
    assert "4 items prepared, 0 skipped" in out.stdout
    assert shards(arr) == shards(one) and len(shards(one)) == 8
    assert len(list((arr / "jobs").glob("*_result.pkl"))) == 2  # submitit's own job files
    assert (arr / "manifest.jsonl").read_text() == (one / "manifest.jsonl").read_text()


def test_sweep_through_the_submitit_local_launcher(tmp_path):
    """`vidmusic sweep --launcher local`: each grid point is one submitit job (LocalExecutor, the Slurm path's
    code); the table has a row per point with its run, and submitit's job files are in <out>/jobs. (It once hung:
    the toy-data pool's forked workers inherited submitit's SIGTERM handler and ignored Pool.terminate.)"""
    import csv

    base = ["-p", "smoke", "--encoder", "clip", "encoder.image_size=32", "encoder.patch_size=16", "data.toy_n=8",
            "data.toy_seconds=2", "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32", "train.steps=2",
            "train.batch_size=2", f"run.root={tmp_path}", "eval.metrics=[tempo_acc]"]
    out = vm("sweep", *base, "--grid", "train.lr=0.001,0.0003", "--out", str(tmp_path / "sw"), "--launcher", "local",
             "--slurm", "time=20", timeout=420)
    rows = list(csv.DictReader(open(tmp_path / "sw" / "table.csv")))
    assert [r["config"] for r in rows] == ["train.lr=0.001", "train.lr=0.0003"], out.stdout
    for r in rows:
        assert r["error"] == "" and 0.0 <= float(r["tempo_acc (cond)"]) <= 1.0
        assert (Path(r["run"]) / "results.json").is_file()
    assert rows[0]["run"] != rows[1]["run"]
    assert len(list((tmp_path / "sw" / "jobs").glob("*_result.pkl"))) == 2
