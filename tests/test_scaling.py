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


def vm(*args):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=600,
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
