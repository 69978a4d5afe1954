"""Training: exact resume after SIGKILL, 2-process DDP (gloo), NaN stop; the whole `run` loop at smoke size."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SMALL = ["-p", "smoke", "--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
         "data.toy_n=8", "data.toy_seconds=2", "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32",
         "train.batch_size=2", "train.log_every=1"]


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")


def vm(*args, check=True, timeout=600):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=timeout, env=env())
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Toy data (8 clips of 2 s) prepared once for the module."""
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    vm("toy-data", str(data), "--n", "8", "--seconds", "2", "--workers", "1")
    vm("prepare", str(data), *SMALL, f"data.root={data}")
    return root, data


def losses(run_dir):
    return [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_sigkill_matches_uninterrupted(prepared):
    root, data = prepared
    args = [*SMALL, f"data.root={data}", "train.steps=60", "train.ckpt_every=5"]
    full = root / "full"
    vm("train", *args, "--run-dir", str(full))
    ref = losses(full)
    assert len(ref) == 60

    killed = root / "killed"
    err = open(root / "killed.err", "w")
    proc = subprocess.Popen([str(BIN / "vidmusic"), "train", *args, "--run-dir", str(killed)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, (root / "killed.err").read_text()[-3000:]
        m = killed / "metrics.jsonl"
        if m.is_file() and len(m.read_text().splitlines()) >= 12 and (killed / "checkpoints" / "last").is_dir():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert 12 <= done < 60, f"the kill came too late ({done} steps logged)"
    vm("train", *args, "--run-dir", str(killed))
    got = losses(killed)
    assert len(got) == 60
    assert max(abs(a - b) for a, b in zip(got, ref)) < 1e-6


def test_two_process_ddp_replicas_identical(prepared):
    root, data = prepared
    run_dir = root / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "vidmusic_core.cli", "train", *SMALL, f"data.root={data}", "train.steps=6", "--run-dir", str(run_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env())
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads((run_dir / "ddp.json").read_text())
    assert info["world_size"] == 2 and info["identical"] and len(info["param_checksums"]) == 2
    assert (run_dir / "checkpoints" / "last" / "model.safetensors").is_file()


def test_two_process_fsdp_trains_resumes_and_saves_whole_weights(prepared):
    root, data = prepared
    run_dir = root / "fsdp"

    def torchrun(steps, port):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "vidmusic_core.cli", "train", *SMALL, f"data.root={data}", "train.fsdp=true",
               f"train.steps={steps}", "train.ckpt_every=2", "--run-dir", str(run_dir)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env())
        assert out.returncode == 0, out.stderr[-3000:]

    torchrun(4, 29521)
    torchrun(6, 29522)  # resumes at step 4: sharded optimizer state restored from the whole-state file
    assert [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert all(l == l for l in losses(run_dir))  # finite, not NaN
    from vidmusic_core.runs import load_trained

    _, model, _ = load_trained(run_dir)  # the checkpoint holds whole tensors: loads strictly, unsharded
    assert sum(p.numel() for p in model.parameters()) > 0


def test_nan_loss_stops_with_step_and_keeps_checkpoint(prepared):
    root, data = prepared
    run_dir = root / "nan"
    out = vm("train", *SMALL, f"data.root={data}", "train.steps=30", "train.lr=1e15", "train.warmup_steps=0",
             "train.grad_clip=0", "train.ckpt_every=1", "--run-dir", str(run_dir), check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "training stopped" in out.stderr and "at step" in out.stderr
    assert (run_dir / "checkpoints" / "last" / "train_state.pt").is_file()


def test_run_loop_resumes_and_reports(prepared):
    root, data = prepared
    runs = root / "runs"
    args = ["run", *SMALL, f"data.root={data}", f"run.root={runs}", "train.steps=8"]
    first = vm(*args)
    run_dir = Path(first.stdout.split("run directory: ")[1].split()[0])
    for name in ("config.yaml", "env.json", "metrics.jsonl", "report.html", "timings.json"):
        assert (run_dir / name).is_file(), name
    test_items = json.loads((data / "splits.json").read_text())["test"]
    assert len(test_items) == 1  # 8 clips: no shuffled-video control is possible, and every output says so
    assert (run_dir / "samples" / f"{test_items[0]}.wav").is_file() and (run_dir / "samples" / f"{test_items[0]}.mp4").is_file()
    assert not (run_dir / "samples_shuffled").exists()  # never a clip generated from its own video
    assert json.loads((run_dir / "results.json").read_text())["shuffled_control"] == "not possible with 1 test clip"
    assert "shuffled: not possible with 1 test clip" in first.stdout
    again = vm(*args)
    assert "skipped: data, train" in again.stdout
    html = (run_dir / "report.html").read_text()
    assert "<audio" in html and "<video" in html and "data:image/png;base64" in html
    assert "Scored on <b>1 test clip</b>" in html and "Shuffled-video control: not possible with 1 test clip" in html


def test_generate_cli_short_and_long_video(prepared, tmp_path):
    """`vidmusic generate` on a clip (one pass) and on a video 3x the trained length (windows)."""
    import numpy as np
    import soundfile as sf

    from vidmusic_core.video import probe_video, write_video

    root, data = prepared
    run_dir = root / "gen_run"
    vm("train", *SMALL, f"data.root={data}", "train.steps=3", "--run-dir", str(run_dir))
    long_video = tmp_path / "long.mp4"
    frames = (np.random.default_rng(0).random((72, 48, 48, 3)) * 255).astype(np.uint8)  # 6 s at 12 fps
    write_video(long_video, frames, 12)
    out = tmp_path / "out"
    vm("generate", str(run_dir), str(data / "toy_00000.mp4"), str(long_video), "-o", str(out))
    short = json.loads((out / "toy_00000.json").read_text())
    long = json.loads((out / "long.json").read_text())
    assert "window_seeds" not in short and len(long["window_seeds"]) >= 3
    for stem, secs in (("toy_00000", 2.0), ("long", 6.0)):
        audio, sr = sf.read(str(out / f"{stem}.wav"))
        assert abs(len(audio) / sr - secs) < 0.05, (stem, len(audio) / sr)
        info = probe_video(out / f"{stem}.mp4")
        assert info.has_audio and abs(info.duration - secs) < 0.2


def test_ema_weights_saved_and_used(prepared):
    import torch

    from vidmusic_core.checkpoint import load_weights

    root, data = prepared
    run_dir = root / "ema"
    vm("train", *SMALL, f"data.root={data}", "train.steps=4", "train.ema=0.5", "--run-dir", str(run_dir))
    last = run_dir / "checkpoints" / "last"
    raw, ema = load_weights(last / "model.safetensors"), load_weights(last / "ema.safetensors")
    key = next(k for k in ema if "llm_decoder.weight" in k)
    assert not torch.equal(raw[key], ema[key])  # the average lags the weights
    from vidmusic_core.runs import load_trained

    _, model, _ = load_trained(run_dir)
    assert torch.equal(model.state_dict()[key], ema[key])  # generation uses the average


def test_tensorboard_logging(prepared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, data = prepared
    run_dir = root / "tb"
    vm("train", *SMALL, f"data.root={data}", "train.steps=3", "train.tensorboard=true", "--run-dir", str(run_dir))
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    losses_tb = [e.value for e in acc.Scalars("train/loss")]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    assert losses_tb == pytest.approx(losses(run_dir), rel=1e-6)
