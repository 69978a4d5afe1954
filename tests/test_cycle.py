"""The loop as a metric (issue 22 item 4): song -> reactive video -> a trained model's music, scored against the song."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from vidmusic_core.cycle import cycle_scores, reference_of
from vidmusic_core.data.toy import make_toy_dataset
from vidmusic_core.song import analyse_song

BIN = Path(sys.executable).parent
SMALL = ["-p", "smoke", "--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
         "data.toy_n=8", "data.toy_seconds=2", "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32",
         "train.batch_size=2", "train.log_every=1"]


def vm(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_scores_tell_the_song_from_another_song(tmp_path):
    """The original music scored as if a model had written it: far above the control on tempo and beats."""
    make_toy_dataset(tmp_path, n=4, seconds=6, progress=False, workers=1)
    wavs = sorted(tmp_path.glob("toy_*.wav"))
    refs = [reference_of(analyse_song(w)) for w in wavs]
    scores = cycle_scores(wavs, refs)
    assert scores["beat_f1"]["conditioned"] > 0.9 > scores["beat_f1"]["shuffled"] + 0.3
    assert scores["tempo_acc"]["conditioned"] == 1.0 and scores["tempo_acc"]["shuffled"] <= 0.5
    assert scores["key_acc"]["conditioned"] == 1.0 and scores["key_acc"]["shuffled"] < 1.0


def test_cycle_cli_with_a_trained_model(tmp_path):
    data = tmp_path / "data"
    vm("toy-data", str(data), "--n", "8", "--seconds", "2", "--workers", "1", "--no-progress")
    vm("prepare", str(data), *SMALL, f"data.root={data}")
    run = tmp_path / "run"
    vm("train", *SMALL, f"data.root={data}", "train.steps=3", "--run-dir", str(run))
    songs = [str(data / f"toy_0000{i}.wav") for i in range(3)]
    out = vm("cycle", *songs, "--model", str(run), "-o", str(tmp_path / "cyc"), "--no-progress")
    assert "beat_f1" in out.stdout and "control" in out.stdout
    rep = json.loads((tmp_path / "cyc" / "cycle.json").read_text())
    for key in ("beat_f1", "onset_f1", "tempo_acc", "key_acc"):
        assert set(rep["scores"][key]) == {"conditioned", "shuffled"}, key
        assert 0.0 <= rep["scores"][key]["conditioned"] <= 1.0
    for i in range(3):
        assert (tmp_path / "cyc" / "video" / f"toy_0000{i}.mp4").is_file()
        audio, sr = sf.read(str(tmp_path / "cyc" / "music" / f"toy_0000{i}.wav"))
        assert abs(len(audio) / sr - 2.0) < 0.1
