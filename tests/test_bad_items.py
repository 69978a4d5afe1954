"""Messy folders never stop `prepare`: broken, NaN, silent, truncated and short music and broken videos (one
that fails mid-decode among them) are skipped with their reason; `--strict` exits non-zero with the same cache;
a dying decode worker costs one item."""
import faulthandler
import json
import operator
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from broken_files import corrupt_later_packets
from vidmusic_core.data.cache import ShardStore
from vidmusic_core.data.decode import DecodePool, Skip
from vidmusic_core.data.manifest import read_manifest

BIN = Path(sys.executable).parent
OPTS = ["--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
        "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32"]


def vm(*args, check=True):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """10 good toy pairs plus bad music (random bytes, NaN, silence, truncated wav, 0.3 s wav) and bad videos."""
    d = tmp_path_factory.mktemp("messy") / "data"
    vm("toy-data", str(d), "--n", "10", "--seconds", "2", "--workers", "1")
    good_video, good_wav = d / "toy_00000.mp4", d / "toy_00000.wav"
    x, sr = sf.read(str(good_wav), dtype="float32")
    for name in ("broken", "nan", "silent", "truncated", "short", "textvideo", "cutvideo", "middecode"):
        shutil.copy(good_video, d / f"{name}.mp4")
        shutil.copy(good_wav, d / f"{name}.wav")
    (d / "broken.wav").write_bytes(np.random.default_rng(0).bytes(6000))
    y = x.copy()
    y[1000:1100] = np.nan
    sf.write(str(d / "nan.wav"), y, sr, subtype="FLOAT")
    sf.write(str(d / "silent.wav"), np.zeros_like(x), sr)
    raw = good_wav.read_bytes()
    (d / "truncated.wav").write_bytes(raw[: len(raw) // 4])
    sf.write(str(d / "short.wav"), x[: int(0.3 * sr)], sr)
    (d / "textvideo.mp4").write_text("this is not a video\n" * 50)
    vid = good_video.read_bytes()
    (d / "cutvideo.mp4").write_bytes(vid[: len(vid) // 2])
    corrupt_later_packets(d / "middecode.mp4")
    return d


REASONS = {"broken": "cannot decode audio", "nan": "NaN or infinite", "silent": "silent audio",
           "truncated": "truncated audio", "short": "audio too short", "textvideo": "", "cutvideo": "",
           "middecode": "middecode.mp4 failed after "}


def stores(cache):
    return [ShardStore(p) for p in sorted(cache.iterdir()) if p.name.startswith(("encoder-", "codec-"))]


def shard_bytes(cache):
    return {p.relative_to(cache): p.read_bytes() for p in sorted(cache.glob("*/part-*"))}


def test_prepare_skips_every_bad_item_and_caches_the_good_ones(messy, tmp_path):
    cache = tmp_path / "cache"
    out = vm("prepare", str(messy), *OPTS, f"data.cache_dir={cache}", "--shard-size", "4")
    good = {f"toy_{i:05d}" for i in range(10)}
    assert f"10 items prepared, 8 skipped: see {cache / 'bad_items.json'}" in out.stdout
    items = read_manifest(cache / "manifest.jsonl")
    assert {it.name for it in items} == good
    keys = {it.content_hash for it in items}
    for store in stores(cache):  # features and tokens for exactly the 10 good pairs
        assert set(store.index()) == keys, store.root
    bad = {b["name"]: b["reason"] for b in json.loads((cache / "bad_items.json").read_text())}
    assert set(bad) == set(REASONS)
    for name, words in REASONS.items():
        assert words in bad[name] and f"skipped {name}: " in out.stdout, (name, bad[name])
    assert "silent.wav" in bad["silent"] and "-60 dBFS" in bad["silent"]
    assert "0.30 s" in bad["short"] and "0.50 s of the 2.00 s" in bad["truncated"]
    assert int(bad["middecode"].split("failed after ")[1].split()[0]) > 0  # some frames decoded, then the error

    # --strict, fresh cache, two decode workers: exit 1 after caching the same bytes
    strict = tmp_path / "strict"
    res = vm("prepare", str(messy), *OPTS, f"data.cache_dir={strict}", "--shard-size", "4", "--workers", "2",
             "--strict", check=False)
    assert res.returncode == 1 and "8 bad item(s)" in res.stderr and "10 good items are cached" in res.stderr
    assert shard_bytes(strict) == shard_bytes(cache)
    assert read_manifest(strict / "manifest.jsonl") == items


def test_a_dying_worker_costs_only_its_item():
    """Real crashes in real worker processes: os.abort (SIGABRT) and a segfault (faulthandler._sigsegv)."""
    with DecodePool(2) as pool:
        got = pool.map(operator.call, [(abs, -3), (os.abort,), (abs, -4), (faulthandler._sigsegv,), (abs, 5),
                                       (int, "x")])
        assert got[0] == 3 and got[2] == 4 and got[4] == 5
        assert got[1] == Skip(got[1].reason) and "worker died (signal 6" in got[1].reason
        assert "worker died (signal 11" in got[3].reason
        assert isinstance(got[5], Skip) and "ValueError" in got[5].reason  # an exception costs its item too
        assert pool.map(operator.call, [(abs, -1)] * 3) == [1, 1, 1]  # fresh workers carry on
    with DecodePool(1) as pool:  # the task queued behind the crash in the dead worker's pipe goes to a fresh one
        got = pool.map(operator.call, [(abs, -2), (os.abort,), (abs, -3), (abs, -4)])
        assert got[0] == 2 and "worker died (signal 6" in got[1].reason and got[2:] == [3, 4]


def _children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _open_video(pid, folder):
    """The .mp4 of ``folder`` that process ``pid`` has open, or None."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)) and target.endswith(".mp4"):
            return Path(target)
    return None


def test_a_decode_worker_killed_mid_item_costs_that_item_through_the_cli(tmp_path):
    """`vidmusic prepare --workers 2` while the kernel kills a decode worker (SIGKILL, as the OOM killer does)
    the moment it holds a video open: that item is skipped as 'the decoding worker died (signal 9 …)', a fresh
    worker takes the next, and the run caches every other item and exits 0."""
    import signal
    import time

    data, cache = tmp_path / "data", tmp_path / "cache"
    vm("toy-data", str(data), "--n", "12", "--seconds", "2", "--workers", "1")
    proc = subprocess.Popen([str(BIN / "vidmusic"), "prepare", str(data), *OPTS, f"data.cache_dir={cache}",
                             "--workers", "2", "--shard-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    victim, deadline = None, time.time() + 300
    while victim is None and proc.poll() is None and time.time() < deadline:
        for child in _children(proc.pid):
            try:
                spawned = b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            video = _open_video(child, data) if spawned else None
            if video is not None:
                os.kill(child, signal.SIGKILL)
                victim = video.stem
                break
        time.sleep(0.002)
    stdout, stderr = proc.communicate(timeout=300)
    assert victim is not None, "no decode worker was seen holding a video: " + stderr[-2000:]
    assert proc.returncode == 0, stderr[-3000:]
    bad = json.loads((cache / "bad_items.json").read_text())
    assert [b["name"] for b in bad] == [victim], bad
    assert "the decoding worker died (signal 9" in bad[0]["reason"]
    assert f"11 items prepared, 1 skipped: see {cache / 'bad_items.json'}" in stdout
    assert {it.name for it in read_manifest(cache / "manifest.jsonl")} == {f"toy_{i:05d}" for i in range(12)} - {victim}
    for store in stores(cache):
        assert len(store.index()) == 11
