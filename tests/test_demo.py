"""`vidmusic demo` (issue 21): the real CLI serves the page on a free loopback port; gradio_client uploads real
files and headless Chromium (Debian's, driven by playwright) drives the page: a generation, the Stop button, the
A/B vote. One server has a tiny trained run twice (the run and its checkpoint's model directory); the other has
the embedded default's model (`vidmusic run --encoder lstv --backbone inspire`, at smoke size) and a symbolic
(musecoco) run, two different models for the A/B test in the browser."""
import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from contextlib import contextmanager

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


@contextmanager
def serve(models, work, max_seconds=MAX_SECONDS):
    """`vidmusic demo --model M ...` on a free port; yields (url, votes csv). Its temporary files (the outputs
    under vidmusic-demo-*/outputs/) go to ``work / "tmp"``."""
    votes, port, tmp = work / "votes.csv", free_port(), work / "tmp"
    tmp.mkdir()
    log = open(work / "demo.log", "w")
    args = [a for m in models for a in ("--model", str(m))]
    proc = subprocess.Popen([str(BIN / "vidmusic"), "demo", *args, "--port", str(port), "--votes", str(votes),
                             "--max-seconds", str(max_seconds)], cwd=work, env=dict(env(), TMPDIR=str(tmp)),
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while "Running on local URL" not in (work / "demo.log").read_text():
        assert proc.poll() is None, (work / "demo.log").read_text()[-3000:]
        assert time.time() < deadline, "the demo did not start in 240 s"
        time.sleep(0.3)
    try:
        yield url, votes
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """(url, votes csv, run dir): `vidmusic demo` on the run and on its checkpoint's model directory."""
    run, _ = trained
    with serve([run, run / "checkpoints" / "last" / "model"], tmp_path_factory.mktemp("server")) as (url, votes):
        yield url, votes, run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"default": the run directory `vidmusic run --encoder lstv --backbone inspire` writes (the embedded
    default's model: lstv, aligned layout with the clip prior, inspire, rvq_mel; smoke-sized, 3 steps on 8 clips
    of 2 s), "musecoco": a symbolic run (remi codec; 60 steps, enough to write notes), "clip": a toy clip}."""
    root = tmp_path_factory.mktemp("runs")
    tiny = ["-p", "smoke", "--encoder", "lstv", f"run.root={root}", "data.toy_n=8", "data.toy_seconds=2",
            "data.clip_seconds=2", "train.batch_size=2", "--stage", "data", "--stage", "prepare", "--stage", "train"]
    vm("run", "--backbone", "inspire", *tiny, "train.steps=3")
    vm("run", "--backbone", "musecoco", *tiny, "train.steps=60")
    (default,) = root.glob("lstv-aligned-inspire-*")
    (musecoco,) = root.glob("lstv-prefix-musecoco-*")
    (clip,) = root.glob("data/*/toy_00000.mp4")
    return {"default": default, "musecoco": musecoco, "clip": clip}


@pytest.fixture(scope="module")
def server2(runs, tmp_path_factory):
    """(url, votes csv, temporary dir of the server): `vidmusic demo` on the embedded default's run and the
    symbolic run, up to 60 s of video."""
    work = tmp_path_factory.mktemp("server2")
    with serve([runs["default"], runs["musecoco"]], work, max_seconds=60) as (url, votes):
        yield url, votes, work / "tmp"


@pytest.fixture(scope="module")
def client2(server2):
    from gradio_client import Client

    return Client(server2[0], verbose=False)


@contextmanager
def chromium(tmp_path):
    """A page in Debian's headless Chromium (no browser download)."""
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must `apt-get install -y chromium` (see .ci/run)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"], viewport={"width": 1280, "height": 900})
        try:
            yield browser.new_page()
        finally:
            browser.close()


def screenshot_path(tmp_path, name):
    """Where a browser test writes its screenshot ``name``: beside ``$VIDMUSIC_SCREENSHOT`` when set (e.g.
    docs/img/demo.png, as docs/demo.md says), else in the test's temporary directory."""
    shot = os.environ.get("VIDMUSIC_SCREENSHOT")
    return Path(shot).with_name(name) if shot else tmp_path / name


def video_duration(page, selector, timeout=120_000):
    """The duration of the video the player ``selector`` holds, once it has loaded its metadata."""
    page.locator(f"{selector} video").wait_for(timeout=timeout)
    return page.wait_for_function(
        f"() => {{ const v = document.querySelector('{selector} video');"
        " return v && v.readyState >= 1 && isFinite(v.duration) && v.duration > 0 ? v.duration : null; }",
        timeout=60_000).json_value()


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
    with pytest.raises(AppError, match=r"window \(s\): 0.5 must be longer than the overlap of the windows "
                       r"\(overlap_seconds=0.5"):
        client.predict(video=handle_file(str(trained[1])), text="", window_seconds=0.5, extra="", api_name="/generate")
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
    assert not list(tmp_path.rglob("*")), "a stopped generation left files"
    done = generate(model, trained[1], tmp_path, seed=0, seconds=None)  # the model still works after a stop
    assert done.mp4.is_file()


def test_the_stop_button_interrupts_a_generation_in_the_server(client, tmp_path):
    """Through the page's API: the progress bar follows the sampler, and /stop (the Stop button) ends the
    generation mid-way; the page gets a 'Stopped' state (where it stopped) instead of a result."""
    from gradio_client import handle_file

    from vidmusic_core import write_video

    video = tmp_path / "four.mp4"  # 4 s in 1-s windows: several windows of sampling
    write_video(video, np.random.default_rng(0).integers(0, 255, (48, 32, 32, 3)).astype(np.uint8), 12)
    job = client.submit(video=handle_file(str(video)), text="", extra="", window_seconds=1.0, api_name="/generate")
    deadline = time.time() + 120
    while not any("token column" in (u.desc or "") for u in (job.status().progress_data or [])):
        assert not job.done(), "the generation finished before the progress bar showed a token column"
        assert time.time() < deadline
        time.sleep(0.02)
    said = client.predict(api_name="/stop")  # answers once the generation has ended at its next step
    m = re.fullmatch(r"\*\*Stopped\*\* at window (\d+) of (\d+)(?:, token column \d+ of \d+)?: nothing of this run "
                     r"was kept\. Press Generate to start again\.", said)
    assert m and int(m[1]) < int(m[2]), said  # before the last window: it did not run to the end
    *outputs, status = job.result()  # the run's own answer: a stopped state, not an error
    assert outputs == [None, None, None, None, "", None] and status == said
    assert client.predict(api_name="/stop").startswith("Nothing is running")


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
    shot = screenshot_path(tmp_path, "demo.png")
    with chromium(tmp_path) as page:
        page.goto(server[0], wait_until="domcontentloaded")
        page.locator("#input-video input[type=file]").set_input_files(str(trained[1]))
        page.locator("#input-video video").wait_for(timeout=60_000)
        page.locator("#generate").click()
        assert video_duration(page, "#result-video") == pytest.approx(2.0, abs=0.3)
        assert "toy_00000.mp4" in page.locator("#result-video video").get_attribute("src")
        page.wait_for_selector("#status :text('Done')", timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:4] == b"\x89PNG"


STOPPED = (r"Stopped at window (\d+) of (\d+)(?:, token column \d+ of \d+)?: nothing of this run was kept\. "
           r"Press Generate to start again\.")


def long_video(tmp_path):
    """40 s of noise at 12 fps: 76 one-second windows (0.5 s overlap) for the embedded default's model."""
    from vidmusic_core import write_video

    long = tmp_path / "long.mp4"
    write_video(long, np.random.default_rng(0).integers(0, 255, (480, 32, 32, 3)).astype(np.uint8), 12)
    return long


def wait_for_window(page, selector):
    """``[k, n]`` once the progress bar over ``selector`` shows window k of n."""
    return page.wait_for_function(
        f"() => {{ const m = /window (\\d+) of (\\d+)/.exec(document.querySelector('{selector}').innerText);"
        " return m ? [+m[1], +m[2]] : null; }", timeout=120_000).json_value()


def test_the_stop_button_in_the_browser_ends_a_long_generation_cleanly(server2, runs, tmp_path):
    """A 40 s video in 1-s windows (76 windows): Stop while the progress bar is at window k ends it there, the
    page shows where it stopped (no error, no traceback), nothing of it is left on the server, and the page
    generates again."""
    long = long_video(tmp_path)
    with chromium(tmp_path) as page:
        page.goto(server2[0], wait_until="domcontentloaded")  # the first model: the embedded default's
        page.locator("#input-video input[type=file]").set_input_files(str(long))
        page.locator("#input-video video").wait_for(timeout=60_000)
        page.locator("#setting-window_seconds input").fill("1")
        page.locator("#generate").click()
        seen = wait_for_window(page, "#result-video")  # the progress bar: at window k of n
        page.locator("#stop").click()
        status = page.locator("#status")
        status.locator(":text('Stopped')").wait_for(timeout=60_000)
        m = re.fullmatch(STOPPED, status.inner_text().strip())
        assert m and seen[0] <= int(m[1]) < int(m[2]) == seen[1], (seen, status.inner_text())
        time.sleep(1.0)  # what a late error would show
        body = page.locator("body").inner_text()
        assert "Traceback" not in body and "Error" not in body, body[-2000:]
        assert page.locator("#result-video video").count() == 0  # no result was shown
        left = [p for p in server2[2].glob("vidmusic-demo-*/outputs/**/*") if "long" in p.name]
        assert not left, left  # the stopped run's folder is gone (a run to the end leaves long.wav, long.mp4 here)
        page.locator("#input-video button[aria-label='Clear']").click()  # the app still works: the toy clip
        page.locator("#input-video input[type=file]").set_input_files(str(runs["clip"]))
        page.locator("#input-video video").wait_for(timeout=60_000)
        page.locator("#generate").click()
        assert video_duration(page, "#result-video") == pytest.approx(2.0, abs=0.3)
        page.wait_for_selector("#status :text('Done')", timeout=30_000)


def test_the_ab_tab_in_the_browser_plays_both_and_records_the_blind_vote(server2, runs, tmp_path):
    """Two different models, the same video and seed: both players load a result, the names stay hidden until
    the vote, and the CSV row names the winner with the model directories behind A and B."""
    url, votes, _ = server2
    labels = {runs["default"].name: runs["default"], runs["musecoco"].name: runs["musecoco"]}
    with chromium(tmp_path) as page:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="A/B listening test").click()
        page.locator("#ab-input-video input[type=file]").set_input_files(str(runs["clip"]))
        page.locator("#ab-input-video video").wait_for(timeout=60_000)
        page.locator("#ab-seed input").fill("5")
        page.locator("#ab-generate").click()
        for player in ("#ab-left", "#ab-right"):
            assert video_duration(page, player) == pytest.approx(2.0, abs=0.3)
        a, b = (page.locator(f"{p} video").get_attribute("src") for p in ("#ab-left", "#ab-right"))
        assert a != b and a.endswith("toy_00000.mp4") and b.endswith("toy_00000.mp4")  # two results of one clip
        page.locator("#ab-status :text('which fits the video better')").wait_for(timeout=30_000)
        assert not any(name in page.locator("body").inner_text() for name in labels)  # blind until the vote
        page.locator("#vote-right").click()
        page.locator("#ab-status :text('Recorded')").wait_for(timeout=30_000)
        shown = re.search(r"A was (\S+), B was (\S+)\.", page.locator("#ab-status").inner_text())
        shot = screenshot_path(tmp_path, "demo-ab.png")
        page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    assert shown, "the names were not revealed after the vote"
    rows = list(csv.DictReader(open(votes)))
    assert len(rows) == 1
    r = rows[0]
    assert (r["left"], r["right"]) == (shown[1], shown[2]) and {r["left"], r["right"]} == set(labels)
    assert r["choice"] == "right" and (r["winner"], r["loser"]) == (r["right"], r["left"])
    assert (r["left_dir"], r["right_dir"]) == (str(labels[r["left"]]), str(labels[r["right"]]))
    assert r["seed"] == "5" and r["video"] == "toy_00000.mp4" and float(r["seconds"]) == pytest.approx(2.0)


def test_the_ab_tabs_stop_button_ends_the_pair(server2, tmp_path):
    """Stop on the A/B tab while the first model of the pair samples a 40 s video: the tab says where it stopped,
    no player holds a result, no error shows, and that model's output folder is gone (it was interrupted)."""
    long = long_video(tmp_path)
    with chromium(tmp_path) as page:
        page.goto(server2[0], wait_until="domcontentloaded")
        page.get_by_role("tab", name="A/B listening test").click()
        page.locator("#ab-input-video input[type=file]").set_input_files(str(long))
        page.locator("#ab-input-video video").wait_for(timeout=60_000)
        page.locator("#ab-generate").click()
        page.wait_for_selector("#ab-left :text('token column')", timeout=120_000)  # the first model's progress
        page.locator("#ab-stop").click()
        status = page.locator("#ab-status")
        status.locator(":text('Stopped')").wait_for(timeout=60_000)
        assert re.fullmatch(r"Stopped at (?:window \d+ of \d+|[\d.]+ of [\d.]+ s made|token column \d+ of \d+)"
                            r"(?:, token column \d+ of \d+)?: nothing of this run was kept\. Press Generate to start "
                            r"again\.", status.inner_text().strip()), status.inner_text()  # symbolic: seconds
        time.sleep(1.0)  # what a late error would show
        body = page.locator("body").inner_text()
        assert "Traceback" not in body and "Error" not in body, body[-2000:]
        assert page.locator("#ab-left video").count() == 0 and page.locator("#ab-right video").count() == 0
    left = [p for p in server2[2].glob("vidmusic-demo-*/outputs/**/*") if "long" in p.name]
    assert not left, left  # a first model that ran to the end would have left its long.wav, long.mp4


def test_a_symbolic_model_in_the_browser_gives_its_midi(server2, runs, tmp_path):
    """Picking the musecoco run in the page: its settings (its preset's top-k 15, no ODE steps), no text box
    (it reads no text), the MIDI box; Generate gives a .mid to download that parses, with notes."""
    import symusic

    with chromium(tmp_path) as page:
        page.goto(server2[0], wait_until="domcontentloaded")
        assert not page.locator("#result-midi").is_visible()  # the first model (the embedded default's): no MIDI
        page.locator("#model input").click()
        page.get_by_role("option", name=runs["musecoco"].name).click()
        page.locator("#result-midi").wait_for(state="visible", timeout=30_000)
        assert page.locator("#setting-top_k input").input_value() == "15"
        assert not page.locator("#text-prompt").is_visible() and not page.locator("#setting-steps").is_visible()
        page.locator("#input-video input[type=file]").set_input_files(str(runs["clip"]))
        page.locator("#input-video video").wait_for(timeout=60_000)
        page.locator("#generate").click()
        link = page.locator("#result-midi a[href$='.mid']")
        link.wait_for(timeout=120_000)
        with page.expect_download() as download:
            link.click()
        midi = tmp_path / "got.mid"
        download.value.save_as(midi)
        page.wait_for_selector("#status :text('Done')", timeout=30_000)
    assert sum(len(t.notes) for t in symusic.Score(str(midi)).tracks) > 0


def test_the_embedded_defaults_run_generates_through_the_client(client2, runs):
    """`vidmusic demo --model runs/lstv-aligned-inspire-<hash>`: the model `vidmusic run --encoder lstv --backbone
    inspire` trains, served from its run directory."""
    import av
    import soundfile as sf
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    mp4, wav, midi, spec, info, meta, status = client2.predict(
        label=runs["default"].name, video=handle_file(str(runs["clip"])), text="", seed=2, extra="",
        api_name="/generate")
    with av.open(mp4) as f:
        assert len(f.streams.video) == 1 and len(f.streams.audio) == 1
    assert abs(sf.info(wav).duration - 2.0) < 0.1 and midi is None and status.startswith("Done")
    assert Path(meta["model"]).resolve() == (runs["default"] / "checkpoints" / "last" / "model").resolve()
    assert f"**{runs['default'].name}** · seed **2**" in info
    with pytest.raises(AppError, match="takes no text prompt"):  # layout.use_text is off: a prompt would be ignored
        client2.predict(label=runs["default"].name, video=handle_file(str(runs["clip"])), text="calm piano",
                        extra="", api_name="/generate")


def test_a_symbolic_model_gives_a_midi_with_notes(client2, runs):
    """A musecoco-style run (remi codec): the page's MIDI output is a .mid that parses, with notes, beside the
    rendered wav and the video."""
    import av
    import mido
    import symusic
    from gradio_client import handle_file

    mp4, wav, midi, spec, info, meta, status = client2.predict(
        label=runs["musecoco"].name, video=handle_file(str(runs["clip"])), text="", seed=0, extra="",
        api_name="/generate")
    assert midi and Path(midi).suffix == ".mid" and status.startswith("Done")
    score = symusic.Score(midi)
    assert sum(len(t.notes) for t in score.tracks) > 0
    notes = [m for t in mido.MidiFile(midi).tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert notes and all(0 <= m.note < 128 for m in notes)
    assert meta["midi"] == Path(midi).name
    with av.open(mp4) as f:
        assert len(f.streams.audio) == 1


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


def test_a_public_host_or_share_prints_a_warning(tmp_path):
    """`--host 0.0.0.0` and `--share` warn before anything is served (here the model directory is empty, so the
    command then stops with its error and never binds)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for flags, where in ((["--host", "0.0.0.0"], "on 0.0.0.0"), (["--share"], "through a public gradio.live link")):
        out = subprocess.run([str(BIN / "vidmusic"), "demo", "--model", str(empty), *flags], capture_output=True,
                             text=True, timeout=300, env=env())
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        warning = f"warning: the demo is reachable {where}: anyone who can open it runs models on this machine"
        assert warning in out.stderr
        assert "is not a model directory" in out.stderr
    quiet = subprocess.run([str(BIN / "vidmusic"), "demo", "--model", str(empty)], capture_output=True, text=True,
                           timeout=300, env=env())
    assert quiet.returncode != 0 and "warning" not in quiet.stderr  # loopback: no warning
