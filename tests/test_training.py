"""Training: byte-identical resume after SIGKILL, 2-process DDP (gloo), NaN stop; the whole `run` loop at smoke size."""
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
    full = root / "full" / "run"  # the same run-directory name: model_index.yaml records it
    vm("train", *args, "--run-dir", str(full))
    ref = losses(full)
    assert len(ref) == 60

    killed = root / "killed" / "run"
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
    assert got == ref

    def tree(run):
        last = run / "checkpoints" / "last"
        return {p.relative_to(last): p.read_bytes() for p in sorted(last.rglob("*")) if p.is_file()}

    ckpt = tree(killed)
    assert len(ckpt) >= 8 and ckpt == tree(full)  # weights, optimizer/RNG state and the model directory
    assert not (killed / "checkpoints" / "last.tmp").exists()


def torchrun(*args, nproc=2, check=True):
    """`vidmusic train` under ``torchrun --standalone`` (a free rendezvous port of its own) on gloo."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "vidmusic_core.cli", "train", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env())
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_two_process_ddp_replicas_identical(prepared):
    root, data = prepared
    run_dir = root / "ddp"
    torchrun(*SMALL, f"data.root={data}", "train.steps=6", "--run-dir", str(run_dir))
    info = json.loads((run_dir / "ddp.json").read_text())
    assert info["world_size"] == 2 and info["identical"] and len(info["param_checksums"]) == 2
    last = run_dir / "checkpoints" / "last"
    # without EMA the weights are stored once, in the model directory generation loads
    assert (last / "model" / "model_index.yaml").is_file() and not (last / "model.safetensors").exists()


def test_global_batch_splits_over_ranks_whatever_the_world_size():
    """A step's global batch is the same items under 1, 2 or 4 ranks × grad_accum micro-steps; each rank
    takes a disjoint share; a resumed sampler continues exactly; an indivisible global batch is an error."""
    from vidmusic_core.errors import BatchError
    from vidmusic_core.training import StepBatches, split_batch

    def steps(world, accum, start, n):
        streams = [iter(StepBatches(26, 8, 5, start, r, world, accum)) for r in range(world)]
        out = []
        for _ in range(n):
            parts = [[next(s) for _ in range(accum)] for s in streams]  # rank r's micro-batches of this step
            assert all(len(m) == 8 // (world * accum) for p in parts for m in p)
            out.append([i for p in parts for m in p for i in m])
        return out

    ref = steps(1, 1, 0, 9)  # 3 global batches per epoch: 3 epochs
    assert all(len(set(b)) == 8 for b in ref) and len({tuple(b) for b in ref}) == 9
    for world, accum in ((2, 1), (4, 1), (2, 2), (1, 4)):
        assert steps(world, accum, 0, 9) == ref
        assert steps(world, accum, 4, 5) == ref[4:]  # resumed at step 4 (mid-epoch)
    assert split_batch(26, 3, None, 2, 2) == (12, 3)  # unset: batch_size per rank and micro-step
    assert split_batch(26, 3, 8, 2, 2) == (8, 2)
    assert split_batch(5, 16, None, 2, 1) == (4, 2)  # a tiny dataset caps it
    with pytest.raises(BatchError, match="does not split over 2 rank"):
        split_batch(26, 3, 6, 2, 2)
    with pytest.raises(BatchError, match="larger than the 26"):
        split_batch(26, 3, 28, 2, 2)


def test_resume_under_another_world_size_follows_the_global_step(prepared):
    """train.global_batch_size=4: 2 ranks × 2 examples to step 4, stopped, then 1 rank × 4 to step 8 (and the
    other way round) reads the batches of an uninterrupted 1-rank run, so the losses of both halves are those of that run (up to float rounding of
    the gradient all-reduce); an indivisible global batch stops the run with a clear error."""
    root, data = prepared
    args = [*SMALL, f"data.root={data}", "train.global_batch_size=4", "train.steps=8", "train.ckpt_every=4"]
    ref_dir, mixed = root / "ws1" / "run", root / "ws21" / "run"
    vm("train", *args, "--run-dir", str(ref_dir))
    torchrun(*args, "--run-dir", str(mixed), "--max-steps", "4")
    vm("train", *args, "--run-dir", str(mixed))
    grown = root / "ws12" / "run"  # and the other way: 1 rank, then 2
    vm("train", *args, "--run-dir", str(grown), "--max-steps", "4")
    torchrun(*args, "--run-dir", str(grown))
    ref = losses(ref_dir)
    assert len(set(ref)) == 8
    for run in (mixed, grown):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, 9))
        # a 2-rank loss is the global batch's mean; another batch order would differ by far more than this
        assert [r["loss"] for r in rows] == pytest.approx(ref, rel=1e-5)
    bad = vm("train", *SMALL, f"data.root={data}", "train.global_batch_size=3", "train.grad_accum=2",
             "--run-dir", str(root / "indivisible"), check=False)
    assert bad.returncode == 2 and "train.global_batch_size=3 does not split over 1 rank(s) × train.grad_accum=2" \
        in bad.stderr, bad.stderr[-2000:]


def test_two_process_fsdp_trains_resumes_and_saves_whole_weights(prepared):
    root, data = prepared
    run_dir = root / "fsdp"

    def fsdp(steps):
        torchrun(*SMALL, f"data.root={data}", "train.fsdp=true", f"train.steps={steps}", "train.ckpt_every=2",
                 "--run-dir", str(run_dir))

    fsdp(4)
    fsdp(6)  # resumes at step 4: sharded optimizer state restored from the whole-state file
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
    assert json.loads((run_dir / "bad_items.json").read_text()) == []
    # a generated sample that cannot be read: `vidmusic eval RUN_DIR` names it, and exits 1
    (run_dir / "samples" / f"{test_items[0]}.wav").write_bytes(b"RIFF" + bytes(40))
    bad = vm("eval", str(run_dir), check=False)
    assert bad.returncode == 1, bad.stderr[-2000:]
    assert f"skipped {test_items[0]}: " in bad.stderr and "0 items scored, 1 skipped" in bad.stderr
    listed = json.loads((run_dir / "bad_items.json").read_text())
    assert [b["name"] for b in listed] == test_items and listed[0]["path"].endswith(f"samples/{test_items[0]}.wav")


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
    from vidmusic_core.model_dir import model_weights

    # the model directory holds the average; the raw training weights (for resume) go beside it, once each
    raw, ema = load_weights(last / "model.safetensors"), model_weights(last / "model")
    assert not (last / "ema.safetensors").exists()
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


def test_model_directory_moves_and_generates_without_the_data_cache(prepared, tmp_path):
    """Training writes checkpoints/last/model/ (model_index.yaml + encoder/layout/backbone/codec, the fitted
    codec included); copied elsewhere with the data and its cache deleted, it generates through
    `vidmusic generate --model` and `vidmusic.load`, the same music for the same seed. A broken video among good
    ones costs only itself (exit code 1), and a call that writes nothing leaves no output folder."""
    import numpy as np
    import soundfile as sf
    import yaml

    import vidmusic

    root, data = prepared
    own = tmp_path / "data"
    shutil.copytree(data, own)
    run_dir = tmp_path / "run"
    vm("train", *SMALL, f"data.root={own}", "train.steps=3", "--run-dir", str(run_dir))
    model = run_dir / "checkpoints" / "last" / "model"
    index = yaml.safe_load((model / "model_index.yaml").read_text())
    assert index["format"] == "vidmusic-model/1" and index["provenance"]["step"] == 3
    assert {s: c["path"] for s, c in index["components"].items()} == {s: s for s in ("encoder", "layout", "backbone", "codec")}
    assert index["generate"]["window_seconds"] == 2.0  # the trained clip length
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, moved)
    video = tmp_path / "clip.mp4"
    shutil.copy(own / "toy_00000.mp4", video)
    shutil.rmtree(own)  # the data and its cache (where the fitted codec used to live) are gone
    shutil.rmtree(run_dir)

    vm("generate", str(video), "--model", str(moved), "-o", str(tmp_path / "cli"), "--seed", "3")
    cli_audio, sr = sf.read(str(tmp_path / "cli" / "clip.wav"))
    meta = json.loads((tmp_path / "cli" / "clip.json").read_text())
    assert abs(len(cli_audio) / sr - 2.0) < 0.05 and meta["model"] == str(moved)
    assert (tmp_path / "cli" / "clip.mp4").is_file()

    pipe = vidmusic.load(moved, device="cpu")
    result, = pipe.generate([video], tmp_path / "py", seed=3, progress=False)
    assert result.ok and result.mp4.is_file() and result.json.is_file() and result.meta["seed"] == meta["seed"]
    np.testing.assert_array_equal(sf.read(str(result.wav))[0], cli_audio)  # same model, seed and settings

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = vm("generate", str(broken), str(video), "--model", str(moved), "-o", str(tmp_path / "mixed"), check=False)
    assert out.returncode == 1 and "error: " in out.stderr and "broken.mp4" in out.stderr
    assert (tmp_path / "mixed" / "clip.wav").is_file() and not (tmp_path / "mixed" / "broken.wav").exists()
    none = vm("generate", str(broken), "--model", str(moved), "-o", str(tmp_path / "nothing"), check=False)
    assert none.returncode == 1 and not (tmp_path / "nothing").exists()
    typo = vm("generate", str(video), "--model", str(moved), "-o", str(tmp_path / "t"), "--set", "generate.topk=5",
              check=False)
    assert typo.returncode == 2 and "topk" in typo.stderr and "top_k" in typo.stderr


def test_dataloader_workers_give_the_same_batches(prepared):
    """`data.num_workers` reader processes (spawned, each with its own bounded reader) yield exactly the batches
    of the in-process reader, in step order, from any start step (resume)."""
    import torch

    from vidmusic_core.config import compose
    from vidmusic_core.data.prepare import load_codec
    from vidmusic_core.model import build_model
    from vidmusic_core.training import batch_stream, load_training_data

    root, data = prepared
    cfg = compose(presets=["smoke"], sugar={"encoder": "clip"}, overrides=SMALL[4:] + [f"data.root={data}"])
    ds = load_training_data(cfg, build_model(cfg, load_codec(cfg, progress=False)))
    ref = batch_stream(ds, 2, 0, 3, 0, 1)
    par = batch_stream(ds, 2, 0, 3, 0, 1, num_workers=2)
    for _ in range(5):
        a, b = next(ref), next(par)
        assert a["name"] == b["name"] and torch.equal(a["codes"], b["codes"])
        assert torch.equal(a["features"]["clip"], b["features"]["clip"])


def test_validation_loss_logged_without_changing_training(prepared):
    """train.eval_every logs val_loss on the valid split; the training losses (and so the RNG stream) are
    exactly those of a run without it."""
    root, data = prepared
    args = [*SMALL, f"data.root={data}", "train.steps=6"]
    vm("train", *args, "--run-dir", str(root / "noval"))
    vm("train", *args, "train.eval_every=3", "--run-dir", str(root / "val"))
    assert losses(root / "val") == losses(root / "noval")
    rows = [json.loads(x) for x in (root / "val" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    assert all(r["val_loss"] > 0 for r in rows if "val_loss" in r)


def test_validation_losses_pair_music_with_another_clips_video(prepared):
    import torch

    from vidmusic_core.config import compose
    from vidmusic_core.data.dataset import collate
    from vidmusic_core.data.prepare import load_codec
    from vidmusic_core.model import build_model
    from vidmusic_core.training import load_training_data, validation_losses

    root, data = prepared
    cfg = compose(presets=["smoke"], sugar={"encoder": "clip"}, overrides=SMALL[4:] + [f"data.root={data}"])
    codec = load_codec(cfg, progress=False)
    model = build_model(cfg, codec, seed=0)
    torch.nn.init.normal_(model.layout.aligned_proj.weight, std=0.5)  # the default layout: aligned (zero-init)
    ds = load_training_data(cfg, model, split=None)  # all 8 clips
    rng = torch.get_rng_state()
    got = validation_losses(model, ds, codec.frame_rate, batch_size=3, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # RNG untouched, mode restored
    exs = sorted((ds[i] for i in range(len(ds))), key=lambda e: e["name"])
    model.eval()
    with torch.no_grad():
        own = float(model.loss(collate(exs), codec.frame_rate))
        swapped = [{**e, "features": o["features"], "local_times": o["local_times"], "local_mask": o["local_mask"],
                    "duration": o["duration"]} for e, o in zip(exs, exs[1:] + exs[:1])]
        other = float(model.loss(collate(swapped), codec.frame_rate))
    assert got["val_loss"] == pytest.approx(own, rel=1e-5)
    assert got["val_loss_shuffled"] == pytest.approx(other, rel=1e-5)
    assert got["val_condition_gap"] == pytest.approx(other - own, rel=1e-4, abs=1e-6)
    assert abs(other - own) > 1e-6  # the video matters to this model, so the pairing is visible


def test_condition_dropout_replaces_rows_by_the_null():
    import torch

    from vidmusic_core import Condition
    from vidmusic_core.model import drop_condition

    null = torch.full((1, 6, 4), 7.0)
    cond = Condition(torch.randn(64, 6, 4), torch.ones(64, 6, dtype=torch.bool), torch.zeros(64, 6), null)
    torch.manual_seed(0)
    out = drop_condition(cond, 0.3)
    dropped = (out.tokens == 7.0).all(dim=(1, 2))
    kept = torch.isclose(out.tokens, cond.tokens).all(dim=(1, 2))
    assert bool((dropped ^ kept).all())  # each row is either its own condition or the null
    assert 8 <= int(dropped.sum()) <= 32  # ~30 % of 64
    assert drop_condition(cond, 0.0) is cond
