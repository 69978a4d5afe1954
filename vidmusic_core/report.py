"""``report.html``: one self-contained page per run (audio/video players, loss curve, spectrograms with
the visual beats marked, the metrics table with the shuffled-video control)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from .checkpoint import atomic_path
from .control import control_warning
from .report_controls import controls_panel

#: clips with players and spectrograms in the page (the page says when it shows a subset)
MAX_SAMPLES = 8


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def loss_curve(run_dir: Path) -> str | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train")
    for key, label in (("val_loss", "valid"), ("val_loss_shuffled", "valid, shuffled video")):
        val = [r for r in rows if key in r]
        if val:
            ax.plot([r["step"] for r in val], [r[key] for r in val], marker=".", label=label)
    if any("val_loss" in r for r in rows):
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    return _png(fig)


def spectrogram(wav: Path, beats: list[float], cuts: list[float]) -> str:
    """The mel spectrogram of ``wav`` with visual ``beats`` (cyan) and ``cuts`` (white, dashed), as a data URI."""
    return _png(spectrogram_figure(wav, beats, cuts))


def write_spectrogram(wav: Path, beats: list[float], cuts: list[float], out: Path) -> Path:
    """The plot of :func:`spectrogram` as a PNG file ``out``."""
    import matplotlib.pyplot as plt

    fig = spectrogram_figure(wav, beats, cuts)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out


def spectrogram_figure(wav: Path, beats: list[float], cuts: list[float]) -> Any:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    y, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y.mean(axis=1), sr=sr, n_mels=64, hop_length=256))
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.imshow(mel, origin="lower", aspect="auto", extent=(0, len(y) / sr, 0, 64), cmap="magma")
    for b in beats:
        ax.axvline(b, color="cyan", lw=0.6, alpha=0.8)
    for c in cuts:
        ax.axvline(c, color="white", lw=1.5, ls="--")
    ax.set_xlabel("s (cyan: visual beats, white: cuts)")
    ax.set_yticks([])
    return fig


def _metrics_table(results: dict[str, Any]) -> str:
    n = results.get("n_items")
    warning = control_warning(results)
    head = (f"<p>Scored on <b>{n} test clip{'' if n == 1 else 's'}</b>.</p>" if isinstance(n, int) else "")
    if warning:
        head += f"<p class='warn'>Shuffled-video control: {html.escape(warning)}.</p>"
    rows = []
    for key, v in sorted(results.get("metrics", {}).items()):
        cells = [f"{v[c]:.3f}" if isinstance(v.get(c), (int, float)) else "–" for c in ("conditioned", "shuffled", "delta")]
        rows.append(f"<tr><td>{html.escape(key)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return head + "<p>No metrics computed (set <code>eval.metrics</code>).</p>"
    return (head + "<table><tr><th>metric</th><th>conditioned</th><th>shuffled video</th><th>difference</th></tr>"
            + "".join(rows) + "</table>")


def _samples_intro(shown: int, total: int) -> str:
    subset = (f"Showing <b>{shown} of {total} clips</b> (the first {shown} by name; all are in "
              "<code>samples/</code>). " if shown < total else f"All {total} clip{'' if total == 1 else 's'}. ")
    return (f"<h2>Samples</h2><p>{subset}Each row: the clip with the generated soundtrack, the audio alone, its "
            "mel spectrogram with the video's beats and cuts, and the shuffled-video control.</p>")


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from what the run directory holds."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").is_file() else {}
    parts = [f"<h1>vidmusic run <code>{html.escape(run_dir.name)}</code></h1>"]
    cfg = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    parts.append("<h2>Metrics</h2>" + _metrics_table(results))
    parts.append(controls_panel(run_dir, results))
    curve = loss_curve(run_dir)
    if curve:
        parts.append(f"<h2>Training</h2><img src='{curve}'>")
    every = sorted((run_dir / "samples").glob("*.json")) if (run_dir / "samples").is_dir() else []
    samples = every[:MAX_SAMPLES]
    if samples:
        parts.append(_samples_intro(len(samples), len(every)))
    for meta_path in samples:
        meta = json.loads(meta_path.read_text())
        name = meta["item"]
        truth_path = Path(meta["video"]).with_suffix(".json")
        truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
        beats = [float(b) for b in truth.get("beat_times", truth.get("beats", []))]
        cuts = [float(c) for c in truth.get("cut_times", truth.get("cuts", []))]
        spec = spectrogram(meta_path.with_suffix(".wav"), beats, cuts)
        shuffled = run_dir / "samples_shuffled" / f"{name}.wav"
        parts.append(
            f"<h3>{html.escape(name)} <small>seed {meta['seed']}</small></h3>"
            f"<video controls width=240 src='samples/{name}.mp4'></video> "
            f"<audio controls src='samples/{name}.wav'></audio><br><img src='{spec}'>"
            + (f"<br>shuffled control (video of {html.escape(json.loads(shuffled.with_suffix('.json').read_text())['shuffled_from'])}): "
               f"<audio controls src='samples_shuffled/{name}.wav'></audio>" if shuffled.is_file() else ""))
    parts.append(f"<h2>Config</h2><pre>{html.escape(cfg)}</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>vidmusic report</title><style>"
            "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
            ".warn{color:#a40}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    out = run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out


def write_folder_report(out: str | Path, results: dict[str, Any]) -> Path:
    """``out/report.html`` of ``vidmusic eval --videos --music``: the metrics table (paired vs shuffled
    pairing), what was skipped and why, and every judge with its version and licence."""
    out = Path(out)
    parts = ["<h1>vidmusic eval of a folder of outputs</h1>",
             "<p>" + html.escape(" · ".join(f"{k}: {v}" for k, v in results.get("inputs", {}).items())) + "</p>",
             "<h2>Metrics</h2>" + _metrics_table(results).replace("shuffled video", "shuffled pairing")]
    for name, why in sorted(results.get("skipped", {}).items()):
        parts.append(f"<p class='warn'>{html.escape(name)} skipped: {html.escape(why)}</p>")
    rows = "".join(f"<tr><td>{html.escape(str(j['judge']))}</td><td>{html.escape(str(j['package']))}</td>"
                   f"<td>{html.escape(str(j['version']))}</td><td>{html.escape(str(j['licence']))}</td>"
                   f"<td>{html.escape(', '.join(j['metrics']))}</td></tr>" for j in results.get("judges", []))
    ve = results.get("visual_events")
    if ve:
        parts.append(f"<p>Visual events of every pair: {html.escape(str(ve['judge']))} ({html.escape(str(ve['what']))}).</p>")
    parts.append("<h2>Judges</h2><table><tr><th>judge</th><th>package</th><th>version</th><th>licence of weights</th>"
                 f"<th>metrics</th></tr>{rows}</table>")
    parts.append("<h2>Pairs</h2><ul>" + "".join(
        f"<li>{html.escape(p['name'])}: {html.escape(p['video'])} + {html.escape(p['music'])}</li>"
        for p in results.get("pairs", [])) + "</ul>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>vidmusic eval</title><style>"
            "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
            ".warn{color:#a40}</style></head><body>" + "\n".join(parts) + "</body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path
