"""`vidmusic demo` (issue 21): the real CLI serves the page on a free loopback port; gradio_client uploads real
files and headless Chromium (Debian's, driven by playwright) runs a generation in the page. One tiny trained run
serves every test, twice (the run and its checkpoint's model directory) for the A/B test."""
import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
SMALL = ["-p", "smoke", "--encoder", "clip", "encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
         "data.toy_n=8", "data.toy_seconds=2", "data.clip_seconds=2", "codec.cardinality=16", "codec.n_mels=32",
         "train.batch_size=2", "train.log_every=1"]
MAX_SECONDS = 4.0
CHROMIUM = Path("/usr/bin/chromium")


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", GRADIO_ANALYTICS_ENABLED="False",
                NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


def vm(*args, timeout=600):
    out = subprocess.run([str(BIN / "vidmusic"), *args], capture_output=True, text=True, timeout=timeout, env=env())
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, a toy clip of 2 s): toy data, prepare, 3 training steps."""
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    vm("toy-data", str(data), "--n", "8", "--seconds", "2", "--workers", "1")
    vm("prepare", str(data), *SMALL, f"data.root={data}")
    vm("train", *SMALL, f"data.root={data}", "train.steps=3", "--run-dir", str(root / "run"))
    return root / "run", data / "toy_00000.mp4"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """(url, votes csv, run dir): `vidmusic demo` on the run and on its checkpoint's model directory."""
    run, _ = trained
    work = tmp_path_factory.mktemp("server")
    votes, port = work / "votes.csv", free_port()
    log = open(work / "demo.log", "w")
    proc = subprocess.Popen([str(BIN / "vidmusic"), "demo", "--model", str(run), "--model",
                             str(run / "checkpoints" / "last" / "model"), "--port", str(port), "--votes", str(votes),
                             "--max-seconds", str(MAX_SECONDS)], cwd=work, env=env(), stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while "Running on local URL" not in (work / "demo.log").read_text():
        assert proc.poll() is None, (work / "demo.log").read_text()[-3000:]
        assert time.time() < deadline, "the demo did not start in 240 s"
        time.sleep(0.3)
    try:
        yield url, votes, run
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def test_the_server_binds_loopback_only(server):
    port = int(server[0].rsplit(":", 1)[1].strip("/"))
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss (iproute2) is not installed")
    addrs = [line.split()[3] for line in out.stdout.splitlines()]
    assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), addrs


def test_client_uploads_a_clip_and_gets_the_video_with_its_soundtrack(client, trained):
    import av
    import soundfile as sf
    from gradio_client import handle_file

    mp4, wav, midi, spec, info, meta, status = client.predict(
        video=handle_file(str(trained[1])), text="", seed=7, extra="", api_name="/generate")
    with av.open(mp4) as f:  # the video with its new soundtrack
        assert len(f.streams.video) == 1 and len(f.streams.audio) == 1
    assert abs(sf.info(wav).duration - 2.0) < 0.1
    assert midi is None  # an audio model: no MIDI
    assert Path(spec).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert meta["seconds"] == pytest.approx(2.0) and "seed **7**" in info and status.startswith("Done")
    again = client.predict(video=handle_file(str(trained[1])), text="", seed=7, extra="", api_name="/generate")
    a, b = sf.read(wav)[0], sf.read(again[1])[0]
    assert np.array_equal(a, b), "the seed shown does not reproduce the music"


def test_bad_input_gets_a_readable_message(client, trained, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from vidmusic_core import write_video

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AppError, match="broken.mp4 is not a video this demo can read") as e:
        client.predict(video=handle_file(str(broken)), text="", extra="", api_name="/generate")
    assert "Traceback" not in str(e.value)
    with pytest.raises(AppError, match="unknown generate setting.*typo.*valid keys"):
        client.predict(video=handle_file(str(trained[1])), text="", extra="typo=1", api_name="/generate")
    long = tmp_path / "long.mp4"
    write_video(long, np.zeros((60, 32, 32, 3), np.uint8), 12)  # 5 s > --max-seconds 4
    with pytest.raises(AppError, match=r"long.mp4 is 5.0 s long; this demo makes music for at most 4 s"):
        client.predict(video=handle_file(str(long)), text="", extra="", api_name="/generate")


def test_ab_vote_is_blind_and_lands_in_the_csv(client, server, trained):
    from gradio_client import handle_file

    _, votes, run = server
    left, right, status = client.predict(video=handle_file(str(trained[1])), seed=3, seconds=0,
                                         api_name="/ab_generate")
    assert Path(left).is_file() and Path(right).is_file() and "vote" in status
    reveal = client.predict(api_name="/vote_right")
    rows = list(csv.DictReader(open(votes)))
    assert len(rows) == 1
    r = rows[0]
    assert {r["left"], r["right"]} == {"run", "run #2"} and r["choice"] == "right"
    assert r["winner"] == r["right"] and r["loser"] == r["left"] and r["seed"] == "3" and r["video"] == "toy_00000.mp4"
    assert {r["left_dir"], r["right_dir"]} == {str(run), str(run / "checkpoints" / "last" / "model")}
    assert f"A was **{r['left']}**, B was **{r['right']}**" in reveal
    out = vm("demo-results", str(votes)).stdout
    assert "run #2" in out and "0/1" in out  # one decided vote, the right player chosen


def test_vote_summary_sign_test(tmp_path):
    from scipy.stats import binomtest

    from vidmusic_core.demo import VoteLog, summarise_votes

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    log = VoteLog(tmp_path / "v.csv")
    for i in range(12):  # "big" wins 9, "small" 1, 2 ties; big sits left in the even rounds
        left, right = ("big", "small") if i % 2 == 0 else ("small", "big")
        choice = "tie" if i >= 10 else ("left" if (left == "big") != (i == 3) else "right")
        log.write(session="s", video=clip, seed=i, seconds=2, left=left, right=right, choice=choice)
    (s,) = summarise_votes(tmp_path / "v.csv")
    assert (s.a, s.b, s.wins_a, s.wins_b, s.ties) == ("big", "small", 9, 1, 2)
    assert s.win_rate_a == pytest.approx(0.9) and s.p_value == pytest.approx(binomtest(9, 10).pvalue)
    assert s.p_value < 0.05


def test_stop_interrupts_a_running_generation(trained, tmp_path):
    """A stop request between two token columns ends the real sampling loop: Interrupted, no mp4."""
    from vidmusic_core import GenerationControl, Interrupted
    from vidmusic_core.demo import DemoModel, generate

    model = DemoModel.load(trained[0], device="cpu")

    class StopAtColumn3(GenerationControl):  # as if the Stop button were pressed while column 3 was sampled
        @property
        def stopped(self):
            return self.done >= 3

    control, polled = StopAtColumn3(), []
    with pytest.raises(Interrupted, match="stopped at token column 3 of"):
        generate(model, trained[1], tmp_path, seed=0, seconds=None, control=control, on_wait=polled.append)
    assert polled and polled[0] is control  # the page's progress callback saw the control
    assert control.stopped and control.done < control.total, (control.done, control.total)
    assert not list(tmp_path.rglob("*.mp4"))
    done = generate(model, trained[1], tmp_path, seed=0, seconds=None)  # the model still works after a stop
    assert done.mp4.is_file()


def test_the_stop_button_interrupts_a_generation_in_the_server(client, tmp_path):
    """Through the page's API: the progress bar follows the sampler, and /stop (the Stop button) ends the
    generation mid-way; the page gets a 'Stopped' message instead of a result."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from vidmusic_core import write_video

    video = tmp_path / "four.mp4"  # 4 s in 1-s windows: several windows of sampling
    write_video(video, np.random.default_rng(0).integers(0, 255, (48, 32, 32, 3)).astype(np.uint8), 12)
    job = client.submit(video=handle_file(str(video)), text="", extra="", window_seconds=1.0, api_name="/generate")
    deadline = time.time() + 120
    while not any("token column" in (u.desc or "") for u in (job.status().progress_data or [])):
        assert not job.done(), "the generation finished before the progress bar showed a token column"
        assert time.time() < deadline
        time.sleep(0.02)
    said = client.predict(api_name="/stop")
    assert said.startswith("Stopped at token column"), said
    with pytest.raises(AppError, match="Stopped: the generation was interrupted"):
        job.result()
    assert client.predict(api_name="/stop") == "Nothing is running."


def test_a_flow_model_shows_ode_steps_and_stops_between_them(trained, tmp_path):
    """A flow backbone (trained 3 steps on the same toy data): the form shows ODE steps, not temperature/top-k; the
    steps setting reaches the solver, and a stop request ends the ODE loop between two steps."""
    from vidmusic_core import GenerationControl, Interrupted
    from vidmusic_core.demo import DemoModel, generate
    from vidmusic_core.demo.session import setting_overrides

    data = trained[1].parent
    flow = ["-p", "smoke", "--encoder", "motion", "--backbone", "flow", f"data.root={data}", "data.toy_n=8",
            "data.toy_seconds=2", "data.clip_seconds=2", "train.batch_size=2"]
    vm("prepare", str(data), *flow)
    vm("train", *flow, "train.steps=3", "--run-dir", str(tmp_path / "flow"))
    model = DemoModel.load(tmp_path / "flow", device="cpu")
    shown = model.settings_shown()
    assert "steps" in shown and "temperature" not in shown and "top_k" not in shown and "cfg_coef" in shown
    overrides, seed, seconds = setting_overrides(model, {"steps": 3, "temperature": 0.5})  # a hidden one is ignored
    assert overrides == ["generate.steps=3"]
    r = generate(model, trained[1], tmp_path / "out", seed=seed, seconds=seconds, overrides=overrides)
    assert r.meta["sampling"]["steps"] == 3 and r.mp4.is_file() and "steps 3" in r.summary()

    class StopAtStep2(GenerationControl):  # as if Stop were pressed during the second ODE step
        @property
        def stopped(self):
            return self.done >= 2

    with pytest.raises(Interrupted, match="stopped at ODE step 2 of 8"):
        generate(model, trained[1], tmp_path / "stopped", seed=0, seconds=None, overrides=["generate.steps=8"],
                 control=StopAtStep2())


def test_missing_gradio_names_the_extra(monkeypatch):
    from vidmusic_core.demo.app import import_gradio
    from vidmusic_core.errors import ConfigError

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'vidmusic\[demo\]'"):
        import_gradio()


def test_page_runs_a_generation_in_headless_chromium(server, trained, tmp_path):
    """Debian's Chromium (no browser download): upload, Generate, the result player holds a playable video."""
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must `apt-get install -y chromium` (see .ci/run)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    shot = Path(os.environ.get("VIDMUSIC_SCREENSHOT") or tmp_path / "demo.png")
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"], viewport={"width": 1280, "height": 900})
        try:
            page = browser.new_page()
            page.goto(server[0], wait_until="domcontentloaded")
            page.locator("#input-video input[type=file]").set_input_files(str(trained[1]))
            page.locator("#input-video video").wait_for(timeout=60_000)
            page.locator("#generate").click()
            player = page.locator("#result-video video")
            player.wait_for(timeout=120_000)
            duration = page.wait_for_function(
                "() => { const v = document.querySelector('#result-video video');"
                " return v && v.readyState >= 1 && isFinite(v.duration) && v.duration > 0 ? v.duration : null; }",
                timeout=60_000).json_value()
            assert duration == pytest.approx(2.0, abs=0.3)
            assert "toy_00000.mp4" in player.get_attribute("src")
            page.wait_for_selector("#status :text('Done')", timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_an_imported_model_directory_generates_in_the_demo(tmp_path, tmp_path_factory):
    """A `vidmusic import vidmuse_full ... codec_dir=` model directory (tiny VidMuse with the real key names, tiny
    EnCodec): the demo's settings are the import's (top-k 250), and a form override reaches the sampler."""
    import av

    sys.path.insert(0, str(Path(__file__).parent))
    from test_vidmuse_generate import imported as make_imported  # noqa: F401 - its fixture body, called directly

    from vidmusic_core.demo import DemoModel, generate
    from vidmusic_core.demo.session import setting_overrides

    imp = make_imported.__wrapped__(tmp_path_factory)  # that module's tiny import, built here
    res = subprocess.run([str(BIN / "vidmusic"), "import", "vidmuse_full", str(imp["root"] / "VidMuse" / "state_dict.bin"),
                          "-o", str(tmp_path / "m"), "clip_heads=2", f"codec_dir={imp['encodec']}"],
                         capture_output=True, text=True, timeout=600, env=env())
    assert res.returncode == 0, res.stderr[-3000:]
    model = DemoModel.load(tmp_path / "m", device="cpu")
    assert model.defaults()["top_k"] == 250 and "top_k" in model.settings_shown() and not model.symbolic
    overrides, seed, seconds = setting_overrides(model, {"seed": 4, "top_k": 50, "seconds": 1.5})
    assert overrides == ["generate.top_k=50"] and (seed, seconds) == (4, 1.5)
    r = generate(model, imp["clip"], tmp_path / "out", seed=seed, seconds=seconds, overrides=overrides)
    with av.open(str(r.mp4)) as f:
        assert len(f.streams.audio) == 1
    assert r.meta["sampling"]["top_k"] == 50 and r.meta["seconds"] == pytest.approx(1.5)
    assert r.spectrogram.read_bytes()[:4] == b"\x89PNG"
