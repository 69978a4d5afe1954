"""The report's "what the video controls" panel: rhythm and harmony metrics beside the shuffled-video
control, and a per-clip key table (reference, conditioned estimate, shuffled estimate)."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

#: (group, metric key) shown in the panel when the run computed them
ROWS = (("rhythm", "beat_f1"), ("rhythm", "onset_f1"), ("rhythm", "tempo_acc"),
        ("harmony", "key_acc"), ("harmony", "mode_acc"))


def key_table(run_dir: Path) -> list[dict[str, Any]]:
    """Per clip of ``samples/``: the reference key (the clip's ground-truth JSON beside its video) and the
    ``key_acc`` estimate of the conditioned and the shuffled-video sample; clips without a reference key
    are left out."""
    from .audio import load_audio
    from .metrics import MetricError, key_name, parse_key
    from .metrics.control import KeyAcc

    metric = KeyAcc()
    sr = metric.cfg.sample_rate
    rows = []
    for meta_path in sorted((run_dir / "samples").glob("*.json")):
        meta = json.loads(meta_path.read_text())
        truth_path = Path(meta["video"]).with_suffix(".json")
        truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
        key = truth.get("key")
        if not isinstance(key, dict) or "tonic" not in key:
            continue
        ref = parse_key(key, None)
        row: dict[str, Any] = {"name": meta["item"], "reference": key_name(*ref)}
        for variant in ("samples", "samples_shuffled"):
            wav = run_dir / variant / f"{meta['item']}.wav"
            if wav.is_file():
                y = load_audio(wav, sr, mono=True, allow_silent=True)[0]
                try:
                    est = metric.estimate({"name": meta["item"], "audio": y, "sample_rate": sr})
                except MetricError:  # e.g. a silent sample: say so in the table, keep the page
                    row[variant] = "(no pitch)"
                    continue
                row[variant] = key_name(*est)
        rows.append(row)
    return rows


def controls_panel(run_dir: Path, results: dict[str, Any]) -> str:
    """HTML of the panel, or "" when the run has none of its metrics."""
    metrics = results.get("metrics", {})
    lines = []
    for group, key in ROWS:
        v = metrics.get(key)
        if not v or "conditioned" not in v:
            continue
        c, s = v["conditioned"], v.get("shuffled")
        ratio = f"{c / s:.1f}×" if isinstance(s, (int, float)) and s > 0 else "–"
        shuffled = f"{s:.3f}" if isinstance(s, (int, float)) else "–"
        lines.append(f"<tr><td>{group}</td><td>{key}</td><td>{c:.3f}</td><td>{shuffled}</td><td>{ratio}</td></tr>")
    if not lines:
        return ""
    out = ("<h2>What the video controls</h2><p>Each metric on the music generated from the clip's own video "
           "and from another test clip's video (the shuffled control). A model that follows the video scores "
           "well above the control; one that ignores it scores the same.</p><table><tr><th>what</th><th>metric</th>"
           "<th>conditioned</th><th>shuffled video</th><th>ratio</th></tr>" + "".join(lines) + "</table>")
    if "key_acc" in metrics and (run_dir / "samples").is_dir():
        rows = key_table(run_dir)
        if rows:
            def cell(row: dict[str, Any], variant: str) -> str:
                est = row.get(variant, "–")
                mark = " ✓" if est == row["reference"] else ""
                return f"<td>{html.escape(est)}{mark}</td>"

            out += ("<h3>Key per clip</h3><table><tr><th>clip</th><th>reference</th><th>conditioned</th>"
                    "<th>shuffled video</th></tr>" + "".join(
                        f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(r['reference'])}</td>"
                        f"{cell(r, 'samples')}{cell(r, 'samples_shuffled')}</tr>" for r in rows) + "</table>")
    return out
