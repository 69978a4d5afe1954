"""`vidmusic prepare`: manifest, bad items, atomic resumable shards, --shard i/n, cache keys, the dataset."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidmusic_core.config import compose
from vidmusic_core.data.cache import ShardStore
from vidmusic_core.data.dataset import CachedDataset, collate
from vidmusic_core.data.manifest import read_manifest
from vidmusic_core.data.prepare import prepare

BIN = Path(sys.executable).parent
OPTS = ["--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
        "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32"]


def env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def vm(*args, check=True):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=600, env=env())
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep") / "data"
    vm("toy-data", str(root), "--n", "8", "--seconds", "2", "--workers", "1")
    return root


def shards(cache):
    return {p.relative_to(cache): p.read_bytes() for p in sorted(cache.glob("*/part-*.parquet"))}


def test_codec_folder_appears_whole_and_a_half_written_one_is_replaced(data, tmp_path):
    """The fitted codec's folder is renamed into place finished (parallel sweep points read it while another
    writes it); a folder without config.yaml, as an interrupted writer left them before, is fitted again."""
    from vidmusic_core.data.manifest import scan
    from vidmusic_core.data.prepare import fit_or_load_codec

    cfg = compose(sugar={"encoder": "clip"}, overrides=[o for o in OPTS if "=" in o])
    items, _ = scan(data)
    store = tmp_path / "store"
    (store / "codec").mkdir(parents=True)
    (store / "codec" / "model.safetensors").write_bytes(b"half written")  # no config.yaml: never finished
    codec = fit_or_load_codec(cfg, store, items, progress=False)
    assert sorted(p.name for p in (store / "codec").iterdir()) == ["config.yaml", "model.safetensors"]
    assert [p.name for p in store.iterdir()] == ["codec"]  # no temporary folder left behind
    again = fit_or_load_codec(cfg, store, items, progress=False)  # loads the saved one
    assert all(torch.equal(a, b) for a, b in zip(codec.state_dict().values(), again.state_dict().values()))


def test_cli_prepare_writes_manifest_and_shards(data, tmp_path):
    cache = tmp_path / "cache"
    out = vm("prepare", str(data), *OPTS, f"data.cache_dir={cache}", "--shard-size", "3")
    assert "8 items prepared, 0 skipped" in out.stdout
    items = read_manifest(cache / "manifest.jsonl")
    assert len(items) == 8 and all(it.music_kind == "audio" and it.duration == pytest.approx(2.0, abs=0.1) for it in items)
    assert {it.split for it in items} <= {"train", "valid", "test"}
    enc = [d for d in cache.iterdir() if d.name.startswith("encoder-clip-")]
    cod = [d for d in cache.iterdir() if d.name.startswith("codec-rvq_mel-")]
    assert len(enc) == len(cod) == 1
    assert len(list(enc[0].glob("part-*.parquet"))) == 3  # 8 items in shards of 3
    assert (cod[0] / "codec" / "model.safetensors").is_file()  # the fitted codec is saved
    ds = CachedDataset(items, ShardStore(enc[0]), ShardStore(cod[0]), split=None)
    ex = ds[0]
    assert ex["features"]["clip"].shape == (4, 1, 64)  # 2 s at 2 fps, CLS token, width 64 (tiny default)
    assert ex["codes"].shape == (2, 50) and ex["codes"].max() < 16  # default codec: 2 codebooks, 25 Hz x 2 s
    batch = collate([ds[i] for i in range(3)])
    assert batch["codes"].shape == (3, 2, 50) and batch["features"]["clip"].shape == (3, 4, 1, 64)


def test_bad_items_reported_and_strict(data, tmp_path):
    d = tmp_path / "mixed"
    shutil.copytree(data, d)
    (d / "broken.mp4").write_bytes(b"not a video at all")
    (d / "broken.wav").write_bytes(b"")
    shutil.copy(d / "toy_00000.mp4", d / "orphan.mp4")  # video with no music and no audio track
    out = vm("prepare", str(d), *OPTS)
    assert "8 items prepared, 2 skipped: see" in out.stdout
    assert "skipped broken:" in out.stdout and "skipped orphan: no music" in out.stdout
    strict = vm("prepare", str(d), *OPTS, "--strict", check=False)
    assert strict.returncode == 1 and "bad item(s)" in strict.stderr and "broken" in strict.stderr


def test_sigkill_then_resume_gives_identical_shards(data, tmp_path):
    full = tmp_path / "full"
    vm("prepare", str(data), *OPTS, f"data.cache_dir={full}", "--shard-size", "1")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "vidmusic"), "prepare", str(data), *OPTS, f"data.cache_dir={killed}",
                             "--shard-size", "1"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(killed.glob("encoder-*/part-*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = shards(killed)
    assert 3 <= len(partial) < len(shards(full)), "the kill came too late to test resuming"
    vm("prepare", str(data), *OPTS, f"data.cache_dir={killed}", "--shard-size", "1")
    assert shards(killed) == shards(full)
    assert not list(killed.rglob("*.tmp"))


def test_shard_split_across_workers(data, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    vm("prepare", str(data), *OPTS, f"data.cache_dir={full}", "--shard-size", "2")
    for i in range(3):
        vm("prepare", str(data), *OPTS, f"data.cache_dir={split}", "--shard-size", "2", "--shard", f"{i}/3")
    assert shards(split) == shards(full)
    bad = vm("prepare", str(data), *OPTS, "--shard", "3/3", check=False)
    assert bad.returncode == 2 and "0 <= i < n" in bad.stderr


def test_encoder_option_invalidates_only_the_encoder_cache(data, tmp_path):
    cache = tmp_path / "c"
    base = compose(sugar={"encoder": "clip"}, overrides=OPTS[2:] + [f"data.cache_dir={cache}", f"data.root={data}"])
    r1 = prepare(base, progress=False)
    other = compose(sugar={"encoder": "clip"}, overrides=OPTS[2:] + [f"data.cache_dir={cache}", f"data.root={data}",
                                                                    "encoder.output=mean"])
    r2 = prepare(other, progress=False)
    assert r1.codec_store == r2.codec_store and r1.encoder_store != r2.encoder_store
    assert not [p for p in r2.shards_written if "codec-" in p]  # tokens reused
    again = prepare(base, progress=False)
    assert again.shards_written == []  # everything cached
