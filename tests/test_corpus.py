"""music21-corpus export (`musecoco_symbolic.corpus`): files, ground truth, remi round trip, prepare, resume."""
from __future__ import annotations

import builtins
import json
import subprocess
import sys

import pytest

pytest.importorskip("music21")

from musecoco_symbolic.codec import RemiCodec  # noqa: E402
from musecoco_symbolic.corpus import COLLECTIONS, CorpusError, export_corpus, hash_splits, list_works  # noqa: E402

N, SECONDS = 3, 8.0


@pytest.fixture(scope="module")
def bach(tmp_path_factory):
    out = tmp_path_factory.mktemp("bach")
    return out, export_corpus(out, "bach", n=N, seconds=SECONDS, progress=False)


def test_export_writes_items_splits_and_summary(bach):
    out, rep = bach
    assert len(rep.names) == len(rep.written) == N and not rep.failed and not rep.existing
    for name in rep.names:
        for ext in ("mid", "mp4", "json"):
            assert (out / f"{name}.{ext}").is_file(), f"{name}.{ext}"
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["source"]["path"].startswith("bach/") and meta["source"]["collection"] == "bach"
        assert meta["composer"] == "J.S. Bach" and meta["title"].startswith("BWV")
        assert meta["licence"]["class"] == "public-domain" and meta["licence"]["commercial_use"].startswith("yes")
        assert 0 < meta["duration"] <= SECONDS + 1e-6 and meta["caption"]
        assert meta["key"]["mode"] in ("major", "minor") and meta["programs"] == [19]  # church organ
        assert meta["beat_times"][0] == 0.0 and meta["tempo_bpm"] > 0
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == sorted(rep.names)
    assert all(splits[k] for k in ("train", "valid", "test"))  # >= 3 items: every split has one
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["collection"] == "bach" and sorted(ds["items"]) == sorted(rep.names)
    assert "no information" in ds["purpose"] and ds["licence"]["class"] == "public-domain"


def test_video_is_constant_and_as_long_as_the_midi(bach):
    from vidmusic_core.video import probe_video

    out, rep = bach
    for name in rep.names:
        info = probe_video(out / f"{name}.mp4")
        meta = json.loads((out / f"{name}.json").read_text())
        assert info.width == info.height == 32
        assert info.duration == pytest.approx(meta["duration"], abs=1.0 / info.fps + 0.05)


def test_midi_round_trips_through_remi(bach):
    from musecoco_symbolic.attributes import FAMILY_OF_PROGRAM, extract_attributes

    out, rep = bach
    codec = RemiCodec()
    for name in rep.names:
        toks = codec.encode(out / f"{name}.mid")
        prefix, music = codec.split(codec.rows(toks)[0])
        assert sum(t.startswith("Pitch_") for t in music) > 10
        attrs = extract_attributes(out / f"{name}.mid")
        assert attrs["K1"] in (0, 1) and attrs["TM1"] == 0  # a key is found; 8 s is in (0, 15]
        assert attrs["I1s2"][FAMILY_OF_PROGRAM[19]] == 0  # every part on church organ
        assert codec.attributes_of(toks)[0]["K1"] == attrs["K1"]


def test_prepare_caches_codec_tokens(bach):
    from vidmusic_core.config import compose
    from vidmusic_core.data.cache import ShardStore
    from vidmusic_core.data.manifest import read_manifest
    from vidmusic_core.data.prepare import prepare

    out, rep = bach
    cfg = compose(presets=["smoke"], sugar={"backbone": "musecoco", "encoder": "lstv"},
                  overrides=[f"data.root={out}", f"data.clip_seconds={SECONDS}"])
    report = prepare(cfg, progress=False)
    assert report.items == N and not report.bad and report.codec_store is not None
    assert report.codec_store.name.startswith("codec-remi-")
    items = read_manifest(report.cache_dir / "manifest.jsonl")
    assert {it.name for it in items} == set(rep.names) and all(it.midi and it.text for it in items)
    store = ShardStore(report.codec_store)
    for it in items:
        assert it.content_hash in store and store.read(it.content_hash)["codes"].size > 20
        assert it.meta["licence"]["class"] == "public-domain"


def test_second_export_writes_nothing(bach):
    out, rep = bach
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    again = export_corpus(out, "bach", n=N, seconds=SECONDS, progress=False)
    assert again.written == [] and sorted(again.existing) == sorted(rep.names)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == before


def test_cli_exports_a_folk_collection(tmp_path):
    out = tmp_path / "essen"
    res = subprocess.run([sys.executable, "-m", "vidmusic_core.cli", "corpus", str(out), "--collection", "essen",
                          "--n", "2", "--seconds", "4", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 written" in res.stdout and "non-commercial" in res.stdout
    metas = [json.loads(p.read_text()) for p in out.glob("essen-*.json")]
    assert len(metas) == 2 and all(m["licence"]["commercial_use"] == "no" for m in metas)


def test_collections_and_splits():
    assert {"bach", "essenFolksong", "oneills1850"} <= set(COLLECTIONS)
    assert len(list_works("bach")) > 400 and len(list_works("essen")) > 8000
    names = [f"x{i}" for i in range(50)]
    assert hash_splits(names) == hash_splits(list(reversed(names)))  # independent of order
    with pytest.raises(CorpusError, match="unknown music21 collection"):
        export_corpus("unused", "nope")


def test_missing_music21_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "music21" or name.startswith("music21."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(CorpusError, match=r'pip install "vidmusic\[corpus\]"'):
        export_corpus(tmp_path / "x", "bach", n=1)
    assert not (tmp_path / "x").exists()
