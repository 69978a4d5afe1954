"""The shuffled-video control never pairs a clip with itself; without one the results, report and sweep
table say why; the report states n and when it shows a subset of the clips (issue 23, points 1 and 6)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vidmusic_core.control import RESULTS_KEY, control_note, identical_samples, shuffled_sources
from vidmusic_core.report import MAX_SAMPLES, write_report
from vidmusic_core.sweep import SweepPoint, write_table

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_shuffled_sources_is_a_derangement(n):
    items = [f"clip{i}" for i in range(n)]
    src = shuffled_sources(items)
    assert src is not None and sorted(src) == sorted(items)  # every video used once ...
    assert all(s != it for s, it in zip(src, items))  # ... and never by its own clip


@pytest.mark.parametrize("n", [0, 1])
def test_no_control_below_two_clips(n):
    assert shuffled_sources(["a"] * n) is None
    assert control_note(n).startswith(f"not possible with {n} test clip")


def _wav(path, seed):
    sf.write(str(path), np.random.default_rng(seed).uniform(-0.5, 0.5, 4000).astype(np.float32), 16000)


def test_control_note_flags_identical_samples(tmp_path):
    cond, shuf = tmp_path / "samples", tmp_path / "samples_shuffled"
    cond.mkdir(), shuf.mkdir()
    for i, name in enumerate(["a", "b", "c"]):
        _wav(cond / f"{name}.wav", i)
        _wav(shuf / f"{name}.wav", i if name == "b" else 10 + i)  # b: the model ignored the video
    assert identical_samples(cond, shuf) == ["b"]
    note = control_note(3, cond, shuf)
    assert "next test clip" in note and "WARNING: 1 of 3" in note and note.endswith(": b")
    assert control_note(3, cond, tmp_path / "missing") == "not generated (eval.shuffled_control is false)"


def _fake_run(tmp_path, n, results):
    """A run directory as the pipeline leaves it: n samples (json + wav) and results.json."""
    run = tmp_path / f"run{n}"
    (run / "samples").mkdir(parents=True)
    for i in range(n):
        name = f"toy_{i:05d}"
        _wav(run / "samples" / f"{name}.wav", i)
        (run / "samples" / f"{name}.json").write_text(json.dumps(
            {"item": name, "video": str(run / f"{name}.mp4"), "seed": i, "seconds": 0.1}))
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_report_states_n_and_the_subset_shown(tmp_path):
    n = MAX_SAMPLES + 12
    results = {"metrics": {"beat_f1": {"conditioned": 0.5, "shuffled": 0.2, "delta": 0.3}}, "n_items": n,
               RESULTS_KEY: "each clip generated from the video of the next test clip (by name)"}
    page = write_report(_fake_run(tmp_path, n, results)).read_text()
    assert "Shuffled-video control" not in page  # nothing to warn about
    assert f"Scored on <b>{n} test clips</b>" in page
    assert f"Showing <b>{MAX_SAMPLES} of {n} clips</b>" in page
    assert page.count("<audio controls src='samples/") == MAX_SAMPLES


def test_report_says_why_there_is_no_control(tmp_path):
    results = {"metrics": {"beat_f1": {"conditioned": 0.5}}, "n_items": 1, RESULTS_KEY: control_note(1)}
    page = write_report(_fake_run(tmp_path, 1, results)).read_text()
    assert "Scored on <b>1 test clip</b>" in page and "All 1 clip." in page
    assert "Shuffled-video control: not possible with 1 test clip" in page
    assert "<td>0.500</td><td>–</td><td>–</td>" in page  # no number in the control's column


def test_sweep_table_shows_why_instead_of_numbers(tmp_path):
    ok = {"metrics": {"beat_f1": {"conditioned": 0.5, "shuffled": 0.25}}, RESULTS_KEY: "each clip generated ..."}
    single = {"metrics": {"beat_f1": {"conditioned": 0.5}}, RESULTS_KEY: control_note(1)}
    write_table(tmp_path, [SweepPoint(["train.lr=1"], "r1", ok), SweepPoint(["train.lr=2"], "r2", single)])
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert rows[0]["beat_f1 (shuffled)"] == "0.250"
    assert rows[1]["beat_f1 (shuffled)"] == "n/a: not possible with 1 test clip"
    assert "n/a: not possible with 1 test clip" in (tmp_path / "table.md").read_text()


def test_smoke_run_control_differs_or_says_why(tmp_path):
    """`vidmusic run -p smoke` (clip count from the preset, tiny model): every test clip's control comes from
    another clip's video, and each control sample differs from its conditioned sample or results.json and
    the report name it."""
    args = ["run", "-p", "smoke", "--encoder", "clip", "encoder.output=cls", "encoder.image_size=32",
            "encoder.patch_size=16", "data.toy_seconds=2", "data.clip_seconds=2", "codec.cardinality=16",
            "codec.n_mels=32", "train.steps=4", "train.batch_size=2", "eval.metrics=[beat_f1]", f"run.root={tmp_path}"]
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = Path(out.stdout.split("run directory: ")[1].split()[0])
    data = next((tmp_path / "data").iterdir())
    test = json.loads((data / "splits.json").read_text())["test"]
    assert len(test) >= 2, "the smoke preset must give the control at least 2 test clips"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["n_items"] == len(test) and "shuffled" in results["metrics"]["beat_f1"]
    note = results[RESULTS_KEY]
    assert note.startswith("each clip generated from the video of the next test clip")
    page = (run_dir / "report.html").read_text()
    for name in test:
        meta = json.loads((run_dir / "samples_shuffled" / f"{name}.json").read_text())
        assert meta["shuffled_from"] != name and meta["shuffled_from"] in test
        assert Path(meta["video"]).stem == meta["shuffled_from"]
        same = (run_dir / "samples" / f"{name}.wav").read_bytes() == (run_dir / "samples_shuffled" / f"{name}.wav").read_bytes()
        if same:  # allowed only when said out loud
            assert name in note.split("WARNING")[1] and "WARNING" in page and "shuffled-video control:" in out.stdout
