"""The gradio page of ``vidmusic demo`` (gradio is imported here only; :mod:`.session` does the work)."""
import os
from contextlib import contextmanager
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, VidmusicError
from ..interrupt import GenerationControl, Interrupted
from .session import MAX_SECONDS, SETTINGS, DemoModel, generate, setting_overrides
from .votes import VoteLog, format_summary, summarise_votes

#: how long the Stop button waits for the generation to reach its next step (and end) before it answers
STOP_WAIT = 30.0
INTRO = ("Upload a video (or pick a toy clip), press **Generate**, and listen to the video with its new soundtrack. "
         "The spectrogram marks the video's visual beats (cyan) and cuts (white).")


def import_gradio() -> Any:
    """gradio, offline (no analytics); a :class:`ConfigError` naming the extra when it is not installed."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gradio as gr
    except ImportError as exc:
        raise ConfigError(f"vidmusic demo needs gradio ({exc}); install the extra: pip install 'vidmusic[demo]'") from None
    return gr


def toy_clips(out_dir: Path, seconds: float, n: int = 2) -> list[str]:
    """``n`` procedural toy clips (the same generator as ``vidmusic toy-data``) to try the page with."""
    from ..data.toy import make_toy_dataset

    summary = make_toy_dataset(out_dir, n=n, seconds=seconds, workers=1, progress=False)
    return [str(Path(summary.out_dir) / f"{name}.mp4") for name in summary.names]


def _theme(gr: Any) -> Any:
    """The default look with system fonts (no font is fetched from the web)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def build_app(models: Sequence[DemoModel], work_dir: Path, *, votes: Path | None = None,
              max_seconds: float = MAX_SECONDS, examples: Sequence[str] = ()) -> Any:
    """The page over ``models``: generate with one, and with two or more the blind A/B test whose votes go to
    ``votes`` (a CSV). Outputs go under ``work_dir``."""
    gr = import_gradio()
    by_label = {m.label: m for m in models}
    out_root = work_dir / "outputs"
    controls: dict[str, GenerationControl] = {}
    vote_log = VoteLog(votes or work_dir / "demo_votes.csv")
    first = models[0]

    @contextmanager
    def control_for(request: Any) -> Iterator[GenerationControl]:
        """The stop flag of this session's generation while it runs (the Stop button finds it here)."""
        key = getattr(request, "session_hash", None) or "-"
        c = controls[key] = GenerationControl()
        try:
            yield c
        finally:
            if controls.get(key) is c:
                del controls[key]

    def stop(request: gr.Request) -> str:
        c = controls.get(getattr(request, "session_hash", None) or "-")
        if c is None:
            return "Nothing is running (a generation still waiting in the queue is cancelled)."
        c.stop()
        deadline = time.monotonic() + STOP_WAIT
        while c.running and time.monotonic() < deadline:  # the loops stop at their next step: wait for it, so
            time.sleep(0.05)                              # the page's last word is where it stopped
        return stopped_message(c) if not c.running else f"Stopping at {c.describe()}…"

    def progress_cb(progress: Any, label: str) -> Any:
        def cb(c: GenerationControl) -> None:
            frac = c.fraction
            progress(frac if frac is not None else 0.0, desc=f"{label}: {c.describe() or 'reading the video'}")
        return cb

    def run_one(model: DemoModel, video: str, values: dict[str, Any], extra: str, text: str,
                control: GenerationControl, progress: Any) -> Any:
        """One generation; :class:`Interrupted` goes through (the caller shows a stopped state, not an error)."""
        try:
            overrides, seed, seconds = setting_overrides(model, values, extra)
            return generate(model, video, out_root, seed=seed, seconds=seconds, overrides=overrides,
                            text=text or None, control=control, max_seconds=max_seconds,
                            on_wait=progress_cb(progress, model.label))
        except Interrupted:
            raise
        except VidmusicError as exc:
            raise gr.Error(str(exc), title="Cannot generate") from None

    keys = list(SETTINGS)  # the order of on_generate's setting arguments
    assert keys == ["seed", "seconds", "window_seconds", "temperature", "top_k", "cfg_coef", "steps"], keys

    def on_generate(label: str, video: str | None, text: str, seed: Any, seconds: Any, window_seconds: Any,
                    temperature: Any, top_k: Any, cfg_coef: Any, steps: Any, extra: str, request: gr.Request,
                    progress: Any = gr.Progress()) -> Any:
        model = by_label.get(label)
        if model is None:
            raise gr.Error(f"unknown model {label!r}; this demo serves {', '.join(by_label)}")
        vals = dict(seed=seed, seconds=seconds, window_seconds=window_seconds, temperature=temperature, top_k=top_k,
                    cfg_coef=cfg_coef, steps=steps)
        with control_for(request) as control:
            try:
                r = run_one(model, video or "", vals, extra, text, control, progress)
            except Interrupted:
                return (None, None, None, None, "", None, stopped_message(control))
        return (str(r.mp4), str(r.wav), str(r.midi) if r.midi else None, str(r.spectrogram), r.summary(), r.meta,
                f"Done: {r.mp4.name}")

    def on_model(label: str) -> list[Any]:
        m = by_label[label]
        shown, d = m.settings_shown(), m.defaults()
        return ([gr.update(visible=m.takes_text), gr.update(visible=m.symbolic)]
                + [gr.update(value=d[k], visible=k in shown) for k in keys])

    with gr.Blocks(title="vidmusic demo", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as app:
        gr.Markdown("# vidmusic demo\n" + INTRO)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    model_box = gr.Dropdown([m.label for m in models], value=first.label, label="model",
                                            visible=len(models) > 1, elem_id="model")
                    video = gr.Video(label="video", sources=["upload"], elem_id="input-video", height=320)
                    if examples:
                        gr.Examples([[e] for e in examples], inputs=[video], label="toy clips")
                    text = gr.Textbox(label="text prompt", visible=first.takes_text, placeholder="e.g. calm piano",
                                      elem_id="text-prompt")
                    shown, d = first.settings_shown(), first.defaults()
                    with gr.Row():
                        widgets = [gr.Number(value=d[k], label=SETTINGS[k].label, info=SETTINGS[k].info or None,
                                             precision=0 if SETTINGS[k].kind == "int" else None,
                                             minimum=SETTINGS[k].minimum, maximum=SETTINGS[k].maximum,
                                             step=SETTINGS[k].step, visible=k in shown, elem_id=f"setting-{k}")
                                   for k in keys]
                    extra = gr.Textbox(label="more settings (KEY=VALUE, one a line)", lines=1,
                                       placeholder="top_p=0.9")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                    status = gr.Markdown(elem_id="status")
                with gr.Column():
                    out_video = gr.Video(label="video with its new soundtrack", interactive=False, elem_id="result-video",
                                         height=320)
                    out_audio = gr.Audio(label="music (wav)", type="filepath", interactive=False)
                    out_midi = gr.File(label="MIDI", visible=first.symbolic, interactive=False, elem_id="result-midi")
                    out_spec = gr.Image(label="spectrogram: visual beats (cyan) and cuts (white)", type="filepath",
                                        interactive=False)
                    out_info = gr.Markdown(elem_id="result-info")
                    with gr.Accordion("everything that made it (json)", open=False):
                        out_meta = gr.JSON()
            model_box.change(on_model, [model_box], [text, out_midi, *widgets], api_name=False)
            gen_event = go.click(on_generate, [model_box, video, text, *widgets, extra],
                                 [out_video, out_audio, out_midi, out_spec, out_info, out_meta, status],
                                 api_name="generate")
            stop_btn.click(stop, None, [status], cancels=[gen_event], api_name="stop", queue=False)
        if len(models) > 1:
            _ab_tab(gr, models, run_one, control_for, stop, vote_log, examples)
    return app


def _ab_tab(gr: Any, models: Sequence[DemoModel], run_one: Any, control_for: Any, stop: Any, vote_log: VoteLog,
            examples: Sequence[str]) -> None:
    """The blind A/B test: the same video and seed through two of the models, shown in random order."""
    by_label = {m.label: m for m in models}

    def on_pair(video: str | None, seed: Any, seconds: Any, request: gr.Request, progress: Any = gr.Progress()) -> Any:
        a, b = random.sample(list(by_label), 2)
        values = {"seed": seed, "seconds": seconds}
        with control_for(request) as control:
            try:
                ra = run_one(by_label[a], video or "", values, "", "", control, progress)
                rb = run_one(by_label[b], video or "", values, "", "", control, progress)
            except Interrupted:
                return None, None, None, stopped_message(control)
        pair = {"left": a, "right": b, "video": video, "seed": int(ra.seed), "seconds": float(ra.meta["seconds"]),
                "voted": False}
        return (str(ra.mp4), str(rb.mp4), pair, "Listen to both, then vote: which fits the video better?")

    def on_vote(choice: str, pair: dict[str, Any] | None, request: gr.Request) -> Any:
        if not pair:
            raise gr.Error("Generate a pair first.", title="No pair")
        if pair.get("voted"):
            raise gr.Error("This pair has its vote; generate the next one.", title="Already voted")
        vote_log.write(session=getattr(request, "session_hash", "") or "", video=pair["video"], seed=pair["seed"],
                       seconds=pair["seconds"], left=pair["left"], right=pair["right"], choice=choice,
                       left_dir=str(by_label[pair["left"]].path), right_dir=str(by_label[pair["right"]].path))
        pair = {**pair, "voted": True}
        return pair, (f"Recorded **{choice}**. A was **{pair['left']}**, B was **{pair['right']}**. "
                      f"Votes so far:\n```\n{format_summary(summarise_votes(vote_log.path))}\n```")

    with gr.Tab("A/B listening test"):
        gr.Markdown("The same video and seed through two models, in random order; the names show after your vote. "
                    f"Votes go to `{vote_log.path}` (docs/demo.md: reading the results).")
        with gr.Row():
            ab_video = gr.Video(label="video", sources=["upload"], elem_id="ab-input-video", height=240)
            with gr.Column():
                if examples:
                    gr.Examples([[e] for e in examples], inputs=[ab_video], label="toy clips")
                ab_seed = gr.Number(value=0, precision=0, label="seed", elem_id="ab-seed")
                ab_seconds = gr.Number(value=0, label="seconds (0 = all of it)", elem_id="ab-seconds")
                with gr.Row():
                    ab_go = gr.Button("Generate a pair", variant="primary", elem_id="ab-generate")
                    ab_stop = gr.Button("Stop", variant="stop", elem_id="ab-stop")
        with gr.Row():
            left = gr.Video(label="A", interactive=False, elem_id="ab-left", height=240)
            right = gr.Video(label="B", interactive=False, elem_id="ab-right", height=240)
        with gr.Row():
            votes = [gr.Button(text, elem_id=f"vote-{choice}") for text, choice in
                     (("A fits better", "left"), ("about the same", "tie"), ("B fits better", "right"))]
        pair = gr.State(None)
        ab_status = gr.Markdown(elem_id="ab-status")
        ev = ab_go.click(on_pair, [ab_video, ab_seed, ab_seconds], [left, right, pair, ab_status], api_name="ab_generate")
        ab_stop.click(stop, None, [ab_status], cancels=[ev], api_name="ab_stop", queue=False)
        for btn, choice in zip(votes, ("left", "tie", "right")):
            btn.click(_bind(gr, on_vote, choice), [pair], [pair, ab_status], api_name=f"vote_{choice}")


def stopped_message(control: GenerationControl) -> str:
    """The page's status after Stop: where the generation ended (nothing of it is kept)."""
    if control.stopped and not control.interrupted:
        return ("Stop came after the last step: the music was made. Press Generate to make it again (same seed, "
                "same music).")
    where = control.describe()
    return (f"**Stopped** at {where}: nothing of this run was kept. Press Generate to start again." if where
            else "**Stopped**: nothing of this run was kept. Press Generate to start again.")


def _bind(gr: Any, fn: Any, choice: str) -> Any:
    def vote(pair: Any, request: gr.Request) -> Any:
        return fn(choice, pair, request)
    return vote


def launch(model_dirs: Sequence[str | Path], *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           device: str | None = None, votes: str | Path | None = None, max_seconds: float = MAX_SECONDS,
           work_dir: str | Path | None = None, toy: bool = True, block: bool = True) -> Any:
    """Load the models and serve the page on ``host:port`` (returns the gradio app; ``block=False`` returns at once)."""
    from .session import load_models

    gr = import_gradio()
    models = load_models(model_dirs, device)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="vidmusic-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = float(first_window(models))
    examples = toy_clips(work / "toy", seconds) if toy else []
    app = build_app(models, work, votes=Path(votes) if votes else None, max_seconds=max_seconds, examples=examples)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(work)], prevent_thread_lock=not block,
               theme=_theme(gr), ssr_mode=False, show_error=True, quiet=False)
    return app


def first_window(models: Sequence[DemoModel]) -> float:
    """The length of the toy clips: the first model's window (4 s when it has none), 2 to 8 s."""
    w = models[0].defaults().get("window_seconds") or 4.0
    return min(8.0, max(2.0, float(w)))
