"""The ``vidmusic`` command line. Thin: parse arguments, call a library function, print the result.

Library errors (:class:`~vidmusic_core.errors.VidmusicError`) are printed as ``error: …`` with exit
code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import VidmusicError

COMPONENT_OPTIONS = ("encoder", "layout", "backbone", "codec")


def _friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VidmusicError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    wrapper._friendly = True  # type: ignore[attr-defined]
    return wrapper


#: a :class:`VidmusicError` becomes ``error: ...`` and exit code 2 (commands that plugins add through
#: ``register_commands`` get it without asking: plugins never import the CLI)
friendly_errors = _friendly_errors


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every config-taking command shares: presets, files, component sugar, overrides."""
    fn = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(fn)
    for name in reversed(COMPONENT_OPTIONS):
        fn = click.option(f"--{name}", default=None, metavar="NAME", help=f"shorthand for {name}.name=NAME")(fn)
    fn = click.option("-c", "--config", "files", multiple=True, type=click.Path(dir_okay=False),
                      help="YAML file merged on top of the presets (repeatable)")(fn)
    fn = click.option("-p", "--preset", "presets", multiple=True, metavar="NAME", cls=_PresetOption,
                      help="a registered preset or a YAML path")(fn)
    return fn


class _PresetOption(click.Option):
    """``-p``, whose help names the registered presets only when help is shown: importing this module must not
    load every plugin (a spawned ``prepare --workers`` decode process imports it as its main module)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = _preset_help()
        return super().get_help_record(ctx)


def _preset_help() -> str:
    """``-p`` help naming the presets the installed package ships (read from its presets folder)."""
    from .config import preset_names

    shipped = [n for n in preset_names() if n != "default"]
    return f"a registered preset ({', '.join(shipped)}) or a YAML path, applied after 'default' (repeatable)"


def compose_from_options(presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...],
                         **components: str | None) -> Any:
    """Compose the run config from the shared command-line options."""
    from .config import compose

    return compose(presets=presets, files=files, sugar={k: components.get(k) for k in COMPONENT_OPTIONS},
                   overrides=overrides)


def _echo_scores(results: dict[str, Any], indent: str = "") -> None:
    """One line per metric: conditioned and shuffled control (or why there is no control)."""
    from .control import control_missing, control_warning

    missing, warning = control_missing(results), control_warning(results)
    for key, v in sorted(results.get("metrics", {}).items()):
        shuffled = f"shuffled {v['shuffled']:.3f}" if "shuffled" in v else f"shuffled: {missing or 'none'}"
        click.echo(f"{indent}{key:24s} conditioned {v.get('conditioned', float('nan')):.3f}   {shuffled}")
    if warning and not missing:
        click.echo(f"{indent}shuffled-video control: {warning}")


class _Group(click.Group):
    """Lists every command with its whole first sentence (click cuts them at the terminal width)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidmusic")
def cli() -> None:
    """vidmusic: research framework for music generation conditioned on video."""


@cli.command()
@click.option("--kind", type=click.Choice(["encoder", "layout", "backbone", "codec", "metric", "importer",
                                            "visualizer"]),
              default=None, help="only this component kind")
@_friendly_errors
def plugins(kind: str | None) -> None:
    """List plugins and the components they register (with config fields and defaults)."""
    from rich.console import Console
    from rich.table import Table

    from .plugins import get_host

    host = get_host()
    reg = host.registry
    console = Console(width=max(Console().width, 120))
    dists = host.plugin_distributions()
    table = Table(title="vidmusic components", show_lines=False)
    for col in ("kind", "name", "aliases", "plugin", "config fields (defaults)"):
        table.add_column(col, overflow="fold")
    for comp in reg.components(kind):
        fields = ", ".join(f"{n}={v!r}" for n, v in comp.config_fields()) or "-"
        table.add_row(comp.kind, comp.name, ", ".join(comp.aliases) or "-", comp.plugin, fields)
    console.print(table)
    plug = Table(title="plugins")
    plug.add_column("plugin")
    plug.add_column("distribution")
    plug.add_column("status")
    broken = {b.plugin: b for b in reg.broken}
    for name, _ in sorted(host.pm.list_name_plugin()):
        plug.add_row(name, dists.get(name, "-"), "ok" if name not in broken else f"BROKEN ({broken[name].stage})")
    for b in reg.broken:
        if not host.pm.has_plugin(b.plugin):
            plug.add_row(b.plugin, "-", f"BROKEN ({b.stage})")
    console.print(plug)
    for b in reg.broken:
        console.print(f"[red]plugin {b.plugin!r} failed in {b.stage}:[/red] {b.error}", markup=True)


@cli.command("config")
@config_options
@click.option("--hash", "show_hash", is_flag=True, help="print only the run hash")
@_friendly_errors
def config_cmd(presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...], show_hash: bool,
               **components: str | None) -> None:
    """Print the resolved run config as YAML (and its hash)."""
    from .config import config_hash, to_yaml

    cfg = compose_from_options(presets, files, overrides, **components)
    if show_hash:
        click.echo(config_hash(cfg))
        return
    click.echo(f"# run hash: {config_hash(cfg)}")
    click.echo(to_yaml(cfg), nl=False)


@cli.command("import", short_help="Convert an upstream checkpoint into vidmusic's format "
             "(`vidmusic plugins --kind importer` lists the importers).")
@click.argument("importer")
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="output directory (model.safetensors + config.yaml)")
@click.argument("options", nargs=-1, metavar="[KEY=VALUE]...")
@_friendly_errors
def import_cmd(importer: str, source: str, out_dir: str, options: tuple[str, ...]) -> None:
    """Convert an upstream checkpoint (e.g. `vidmuse state_dict.bin`) into vidmusic's format."""
    from .importing import run_importer

    report = run_importer(importer, Path(source), Path(out_dir), options)
    click.echo(f"wrote {report.out_dir}")
    for label, items in (("missing", report.missing), ("unexpected", report.unexpected),
                         ("shape mismatch", report.shape_mismatches)):
        if items:
            click.echo(f"{label} ({len(items)}): " + ", ".join(items))
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        sys.exit(1)


@cli.command("toy-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", default=200, show_default=True, help="number of clips")
@click.option("--seconds", default=8.0, show_default=True, help="clip length")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default=96, show_default=True, help="frame side in pixels")
@click.option("--fps", default=12, show_default=True)
@click.option("--workers", default=None, type=int, help="processes (default: one per CPU)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@_friendly_errors
def toy_data(out: str, n: int, seconds: float, seed: int, size: int, fps: int, workers: int | None,
             no_progress: bool) -> None:
    """Generate the procedural toy dataset (video carries key, tempo, beats, sections)."""
    from .data.toy import make_toy_dataset

    summary = make_toy_dataset(out, n=n, seconds=seconds, seed=seed, size=size, fps=fps, workers=workers,
                               progress=not no_progress)
    click.echo(f"wrote {len(summary.names)} clips to {summary.out_dir} in {summary.seconds_elapsed:.1f} s "
               f"(splits: " + ", ".join(f"{k} {len(v)}" for k, v in summary.splits.items()) + ")")


@cli.command()
@click.argument("data_dir", type=click.Path(file_okay=False), required=False)
@config_options
@click.option("--shard", default=None, metavar="I/N", help="process only shards k with k %% N == I")
@click.option("--strict", is_flag=True, help="exit non-zero when any item was skipped (after caching the good ones)")
@click.option("--shard-size", default=32, show_default=True, help="items per parquet shard")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=0),
              help="decode processes (0: decode in this process, no crash isolation)")
@click.option("--launcher", type=click.Choice(["slurm", "local"]), default=None,
              help="submit --jobs shards as a submitit job array (pip install 'vidmusic[slurm]'); see docs/scaling.md")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="shards (jobs) for --launcher")
@click.option("--slurm", "slurm", multiple=True, metavar="KEY=VALUE", help="an sbatch option, e.g. partition=cpu, time=240")
@_friendly_errors
def prepare(data_dir: str | None, presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...],
            shard: str | None, strict: bool, shard_size: int, workers: int, launcher: str | None, jobs: int,
            slurm: tuple[str, ...], **components: str | None) -> None:
    """Scan DATA_DIR and cache the encoder's frozen features and the codec's tokens (resumable). Items that
    cannot be used are skipped and listed with their reason in bad_items.json."""
    from .data.prepare import StrictError, prepare as run_prepare

    cfg = compose_from_options(presets, files, overrides, **components)
    if launcher is not None:
        from .data.prepare import cache_root, data_root
        from .launch import prepare_array

        if shard is not None:
            raise click.UsageError("--launcher makes the shards itself (--jobs N); leave out --shard")
        cache = cache_root(cfg, data_root(cfg, data_dir))
        _, res, rep = prepare_array(cfg, data_dir, jobs, launcher, cache / "jobs", shard_size, workers,
                                    _slurm_options(slurm))
        click.echo(f"{jobs} job(s) done: " + ", ".join(f"{r['shard']} wrote {len(r['written'])}" for r in res))
        rep.shards_written = [p for r in res for p in r["written"]]
    else:
        try:
            rep = run_prepare(cfg, data_dir, shard=shard, strict=strict, shard_size=shard_size, workers=workers)
        except StrictError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    for b in rep.bad:
        click.echo(f"  skipped {b.name}: {b.reason}")
    click.echo(f"{rep.items} items prepared, {len(rep.bad)} skipped" +
               (f": see {rep.cache_dir / 'bad_items.json'}" if rep.bad else "") +
               f" ({len(rep.shards_written)} shard(s) written in {rep.seconds:.1f} s, {rep.loop_seconds:.2f} s of it "
               f"decoding and encoding -> {rep.cache_dir})")
    if strict and rep.bad and launcher is not None:
        sys.exit(1)


def _slurm_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("partition=gpu", "time=120")`` -> submitit's Slurm parameters (numbers as int)."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise click.UsageError(f"--slurm {p!r} must look like KEY=VALUE, e.g. partition=gpu")
        k, v = p.split("=", 1)
        out[k] = int(v) if v.isdigit() else v
    return out


@cli.command()
@config_options
@click.option("--stage", "stages", multiple=True, type=click.Choice(["data", "prepare", "train", "generate", "eval",
              "report"]), help="run only these stages (default: all)")
@_friendly_errors
def run(presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...], stages: tuple[str, ...],
        **components: str | None) -> None:
    """toy data -> prepare -> train -> generate -> eval -> report; finished stages are skipped."""
    from .pipeline import STAGES, run as run_pipeline

    cfg = compose_from_options(presets, files, overrides, **components)
    rep = run_pipeline(cfg, stages=stages or STAGES)
    click.echo(f"run directory: {rep.run_dir}")
    click.echo("stage seconds: " + ", ".join(f"{k} {v}" for k, v in rep.seconds.items())
               + (f" (skipped: {', '.join(rep.skipped)})" if rep.skipped else ""))
    _echo_scores(rep.results, "  ")
    if (rep.run_dir / "report.html").is_file():
        click.echo(f"report: {rep.run_dir / 'report.html'}")
    _exit_on_bad_items(rep.results or {}, rep.run_dir)


@cli.command()
@config_options
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="default: runs/<components>-<hash>")
@click.option("--no-resume", is_flag=True, help="start over instead of continuing the last checkpoint")
@click.option("--max-steps", type=int, default=None, help="stop after this many steps (the schedule keeps train.steps)")
@_friendly_errors
def train(presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...], run_dir: str | None,
          no_resume: bool, max_steps: int | None, **components: str | None) -> None:
    """Train on the prepared data (run `vidmusic prepare` first). Works under torchrun (DDP)."""
    from . import api

    cfg = compose_from_options(presets, files, overrides, **components)
    res = api.train(cfg, run_dir, resume=not no_resume, max_steps=max_steps)
    click.echo(f"step {res.step}, loss {res.last_loss:.4f}, {res.seconds:.1f} s -> {res.run_dir}")


@cli.command(short_help="Music for videos from a trained run or an imported model (wav + mp4 + json).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="a model directory (model_index.yaml) or a trained run directory; then every path is a video")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="same as --model for a run directory (also: give RUN_DIR as the first path)")
@click.option("--text", multiple=True, help="a caption per video (optional)")
@click.option("--seconds", type=float, default=None, help="length (default: the whole video)")
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="cpu, cuda, … (default: a run's run.device; a model directory: cuda "
                                             "when available)")
@click.option("--set", "settings", multiple=True, metavar="generate.KEY=VALUE",
              help="a generate setting instead of the model's (repeatable), e.g. generate.top_k=50, "
                   "generate.window_seconds=10, generate.prompt_bars=2, generate.attributes={K1:0}")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@_friendly_errors
def generate(paths: tuple[str, ...], out_dir: str, model_dir: str | None, run_dir: str | None,
             text: tuple[str, ...], seconds: float | None,
             seed: int | None, device: str | None, settings: tuple[str, ...], no_progress: bool) -> None:
    """Music for videos: `generate VIDEO... --model DIR -o OUT` (a model directory or a trained run; also
    `generate RUN_DIR VIDEO... -o OUT`; `vidmusic import` writes model directories too); writes wav + mp4 (the
    video with the new soundtrack) + json (seed, settings), .mid for symbolic models. Long videos are generated in windows. A video that cannot be used gets an error line and
    the others still get their music (exit code 1 when any failed)."""
    from pathlib import Path

    from . import api

    if model_dir is not None and run_dir is not None:
        raise click.UsageError("give one of --model, --run, not both")
    model_dir = model_dir or run_dir
    if model_dir is None:
        if len(paths) < 2:
            raise click.UsageError("give --model DIR (or RUN_DIR first) and at least one VIDEO")
        model_dir, paths = paths[0], paths[1:]
    if not paths:
        raise click.UsageError("give at least one VIDEO")
    d = Path(model_dir)
    if not (d / "model_index.yaml").is_file() and (d / "config.yaml").is_file() and (d / "checkpoints").is_dir():
        # a run: its config (sampling as trained), and the model of its last checkpoint
        results = api.generate(model_dir, paths, out_dir, text=list(text) or None, seconds=seconds, seed=seed,
                               progress=not no_progress, overrides=settings, device=device)
    else:
        results = api.load_model(model_dir, device).generate(paths, out_dir, text=list(text) or None,
                                                             seconds=seconds, seed=seed, overrides=settings,
                                                             progress=not no_progress)
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            click.echo(f"wrote {r.wav} and {r.mp4}")
        else:
            click.echo(f"error: {r.video}: {r.error}", err=True)
    if failed:
        click.echo(f"{len(results) - len(failed)} of {len(results)} video(s) got music; {len(failed)} failed", err=True)
        sys.exit(1)


@cli.command(short_help="A local web page to hear models on your videos (and a blind A/B listening test).")
@click.option("--model", "models", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="a model directory or a trained run directory (repeat for the A/B test)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; anything but 127.0.0.1/localhost serves the page to your network")
@click.option("--port", type=int, default=None, help="port (default: gradio's, 7860 or the next free one)")
@click.option("--share", is_flag=True, help="also open a public gradio.live link (anyone with it can use your machine)")
@click.option("--device", default=None, help="cpu, cuda, … (default: cuda when available)")
@click.option("--votes", type=click.Path(dir_okay=False), default="demo_votes.csv", show_default=True,
              help="the CSV the A/B votes are appended to")
@click.option("--max-seconds", type=float, default=60.0, show_default=True, help="the longest stretch of video it makes music for")
@_friendly_errors
def demo(models: tuple[str, ...], host: str, port: int | None, share: bool, device: str | None, votes: str,
         max_seconds: float) -> None:
    """Serve a web page (gradio; pip install 'vidmusic[demo]') over the model API: upload a video, set the
    generate settings, hear it with its new soundtrack, see the spectrogram with its beats and cuts; with two or
    more --model a blind A/B vote written to --votes (docs/demo.md)."""
    from .demo import launch

    if share or host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: the demo is reachable {'through a public gradio.live link' if share else f'on {host}'}: "
                   "anyone who can open it runs models on this machine", err=True)
    launch(models, host=host, port=port, share=share, device=device, votes=votes, max_seconds=max_seconds)


@cli.command("demo-results")
@click.argument("csv_path", metavar="VOTES_CSV", type=click.Path(exists=True, dir_okay=False))
@_friendly_errors
def demo_results(csv_path: str) -> None:
    """Summarise an A/B vote CSV of `vidmusic demo`: wins per pair, win rate and sign-test p-value."""
    from .demo.votes import format_summary, summarise_votes

    click.echo(format_summary(summarise_votes(csv_path)))


@cli.command(short_help="Music -> video: render a song (wav or MIDI) with a visualizer into an mp4 with the song.")
@click.argument("song", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), required=True, help="the mp4 to write")
@click.option("--visualizer", default="reactive", show_default=True, help="a registered visualizer")
@click.option("--size", default="512", show_default=True, help="frame size: N (square) or WxH, even numbers")
@click.option("--fps", default=24.0, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--seconds", type=float, default=None, help="only the first SECONDS of the song")
@click.option("--window", "window_seconds", default=10.0, show_default=True, type=float,
              help="seconds of frames rendered and encoded at a time")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="a visualizer option (repeatable)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@_friendly_errors
def visualize(song: str, out: str, visualizer: str, size: str, fps: float, seed: int, seconds: float | None,
              window_seconds: float, settings: tuple[str, ...], no_progress: bool) -> None:
    """Render SONG (wav/flac/ogg/mp3 or .mid) with a visualizer (default `reactive`: beats pulse, key sets the
    hue, mode the brightness, sections cut) into OUT.mp4 with the song as its soundtrack, window by window."""
    from .visualize import visualize as run_visualize

    try:
        dims = tuple(int(v) for v in size.lower().split("x")) if "x" in size.lower() else int(size)
    except ValueError:
        raise click.BadParameter(f"{size!r}: give N or WxH", param_hint="--size") from None
    res = run_visualize(song, out, visualizer=visualizer, overrides=settings, size=dims, fps=fps, seed=seed,
                        seconds=seconds, window_seconds=window_seconds, progress=not no_progress)
    click.echo(f"wrote {res.mp4}: {res.frames} frames ({res.seconds:.1f} s, {res.size[0]}x{res.size[1]}, "
               f"{res.fps:g} fps) in {res.elapsed:.1f} s ({res.seconds_per_second:.2f} s per output second)")


@cli.command(short_help="The loop as a metric: song -> visualizer video -> model music, scored against the song.")
@click.argument("songs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="a trained video->music model (model directory or run directory)")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--visualizer", default="reactive", show_default=True)
@click.option("--size", default=96, show_default=True, type=int, help="video size (square; the toy data's is 96)")
@click.option("--fps", default=12.0, show_default=True, type=float)
@click.option("--seconds", type=float, default=None, help="only the first SECONDS of each song")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="a visualizer option (repeatable)")
@click.option("--no-progress", is_flag=True)
@_friendly_errors
def cycle(songs: tuple[str, ...], model_dir: str, out_dir: str, visualizer: str, size: int, fps: float,
          seconds: float | None, seed: int, settings: tuple[str, ...], no_progress: bool) -> None:
    """Render each SONG with a visualizer, generate music for that video with a trained model, and score the new
    music against the song (tempo, beat F1, key, sections) beside a control (against another song); writes
    OUT/cycle.json."""
    from .cycle import cycle as run_cycle, headline

    rep = run_cycle(model_dir, songs, out_dir, visualizer=visualizer, overrides=settings, size=size, fps=fps,
                    seconds=seconds, seed=seed, progress=not no_progress)
    for key, cond, shuf in headline(rep["scores"]):
        click.echo(f"{key:24s} cycle {cond:.3f}   " + (f"control {shuf:.3f}" if shuf is not None else "control: one song"))
    click.echo(f"wrote {Path(out_dir) / 'cycle.json'}")


@cli.command("eval")
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", "metrics", multiple=True, help="metric names (default: eval.metrics of the run)")
@click.option("--videos", type=click.Path(file_okay=False), default=None,
              help="folder of videos: score the music of --music (any system's) against them instead of a run")
@click.option("--music", type=click.Path(file_okay=False), default=None, help="folder of music, one file per video stem")
@click.option("--reference", type=click.Path(file_okay=False), default=None,
              help="folder of reference music by the same stems (fd_mel, fad, kad)")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="YAML whose eval.metrics (names or {name, options}) the folder mode scores")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder mode: where results.json, protocol.json, table.md, report.html go (default: eval-out)")
@_friendly_errors
def eval_cmd(run_dir: str | None, metrics: tuple[str, ...], videos: str | None, music: str | None,
             reference: str | None, config_file: str | None, out_dir: str | None) -> None:
    """Score a run's samples and its shuffled-video control, or (--videos DIR --music DIR) music that any
    system made; writes results.json."""
    if videos is None and music is None:
        if run_dir is None or reference or config_file or out_dir:
            raise click.UsageError("give RUN_DIR, or --videos DIR --music DIR [--reference DIR] [-o OUT]")
        from . import api

        res = api.evaluate(run_dir, list(metrics) or None)
        _echo_scores(res)
        _exit_on_bad_items(res, Path(run_dir))
        return
    if run_dir is not None or videos is None or music is None:
        raise click.UsageError("the folder mode takes --videos DIR and --music DIR (and no RUN_DIR)")
    from .eval_folders import evaluate_folders

    entries: list[Any] = list(metrics)
    if config_file:
        from omegaconf import OmegaConf

        entries += list(OmegaConf.to_container(OmegaConf.load(config_file)).get("eval", {}).get("metrics", []))
    out = Path(out_dir or "eval-out")
    res = evaluate_folders(videos, music, out, reference=reference, metrics=entries or None, progress=True)
    _echo_scores(res)
    for name, why in sorted(res["skipped"].items()):
        click.echo(f"{name} skipped: {why}")
    for j in res["judges"]:
        click.echo(f"judge {j['judge']} ({j['package']} {j['version']}; weights: {j['licence']})")
    click.echo(f"wrote {out / 'results.json'}, {out / 'protocol.json'}, {out / 'table.md'}, {out / 'report.html'}")
    _exit_on_bad_items(res, out)


def _exit_on_bad_items(res: dict[str, Any], out: Path) -> None:
    """Name each pair that could not be read; exit 1 when there was one (the rest were scored)."""
    bad = res.get("bad_items", [])
    for b in bad:
        click.echo(f"skipped {b['name']}: {b['reason']}", err=True)
    if bad:
        what = "pairs" if res.get("mode") == "folders" else "items"
        click.echo(f"{res['n_items']} {what} scored, {len(bad)} skipped: see {out / 'bad_items.json'}", err=True)
        sys.exit(1)


@cli.command()
@config_options
@click.option("--grid", multiple=True, required=True, metavar="KEY=V1,V2", help="a grid axis (repeatable)")
@click.option("--workers", default=1, show_default=True, help="grid points run in parallel (processes)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="default: <run.root>/sweeps/<hash>")
@click.option("--launcher", type=click.Choice(["slurm", "local"]), default=None,
              help="one submitit job per point (pip install 'vidmusic[slurm]'); see docs/scaling.md")
@click.option("--slurm", "slurm", multiple=True, metavar="KEY=VALUE", help="an sbatch option, e.g. partition=gpu, time=120")
@_friendly_errors
def sweep(presets: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...], grid: tuple[str, ...],
          workers: int, out_dir: str | None, launcher: str | None, slurm: tuple[str, ...],
          **components: str | None) -> None:
    """Run the cartesian product of --grid values; write an ablation table (md + csv) and a chart."""
    from .sweep import sweep as run_sweep

    out, points = run_sweep(grid, presets, files, overrides, components, workers=workers, out_dir=out_dir,
                            launcher=launcher, slurm=_slurm_options(slurm))
    click.echo((out / "table.md").read_text())
    click.echo(f"table: {out / 'table.md'}, {out / 'table.csv'}; chart: {out / 'chart.png'}")
    failed = [p for p in points if p.error]
    for p in failed:
        click.echo(f"FAILED {' '.join(p.overrides)}: {p.error}", err=True)
    if failed:
        sys.exit(1)


def _build_cli() -> click.Group:
    from .plugins import get_host

    builtin = set(cli.commands)
    failures = get_host().register_commands(cli)
    for name, cmd in cli.commands.items():  # plugin commands get the same error handling as ours
        if name not in builtin and cmd.callback is not None and not getattr(cmd.callback, "_friendly", False):
            cmd.callback = _friendly_errors(cmd.callback)
    for f in failures:
        click.echo(f"warning: plugin {f.plugin!r} failed to add commands: {f.error}", err=True)
    return cli


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return _build_cli().main(args=argv, prog_name="vidmusic")


if __name__ == "__main__":  # pragma: no cover
    main()
