"""Metric ``attribute_control``: MuseCoco's attribute-control accuracy (ASA) of generated MIDI.

The objective attributes are re-extracted from each item's generated ``midi`` (:mod:`.attributes`) and
compared with

- ``attr_asa`` (+ ``attr_acc_<key>``): the attributes the model was conditioned on, ``item["attributes"]``
  (values, as :func:`.attributes.tokens_to_values` / ``RemiCodec.attributes_of`` give them), when present;
- ``attr_ref_asa`` (+ ``attr_ref_acc_<key>``): the attributes of the reference music: of
  ``item["reference_midi"]`` (a path or Score) when present, else those the ``reference`` dict states
  (toy ground truth: ``tempo_bpm`` -> T1s1, ``key.mode`` -> K1, ``time_signature`` -> TS1s1, ``programs`` +
  drums -> I1s2). With the shuffled-video control beside it, this says whether the video steers them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from vidmusic_core import Metric

from .attributes import FAMILY_OF_PROGRAM, TIME_SIGNATURES, attribute_accuracy, extract_attributes, na_values


def reference_values(ref: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute values a ground-truth dict states (others NA)."""
    v = na_values()
    bpm = ref.get("tempo_bpm", ref.get("tempo"))
    if isinstance(bpm, (int, float)):
        v["T1s1"] = 2 if bpm >= 120 else (0 if bpm <= 76 else 1)
    key = ref.get("key")
    mode = key.get("mode") if isinstance(key, Mapping) else ref.get("mode")
    if mode in ("major", "minor"):
        v["K1"] = 0 if mode == "major" else 1
    ts = ref.get("time_signature")
    if isinstance(ts, (list, tuple)) and len(ts) == 2:
        v["TS1s1"] = TIME_SIGNATURES.index(tuple(ts)) if tuple(ts) in TIME_SIGNATURES else len(TIME_SIGNATURES)
    programs = ref.get("programs")
    if isinstance(programs, (list, tuple)) and programs:
        fam = {FAMILY_OF_PROGRAM[int(p)] for p in programs if 0 <= int(p) <= 128}
        if ref.get("drums"):
            fam.add(FAMILY_OF_PROGRAM[128])
        v["I1s2"] = [0 if f in fam else 1 for f in range(28)]
    return v


@dataclass
class AttributeControlConfig:
    """No options: the extractor is fixed (its version is in the protocol)."""


class AttributeControlMetric(Metric):
    name = "attribute_control"
    needs = frozenset({"midi", "reference"})
    version = 1
    Config = AttributeControlConfig

    def __init__(self, cfg: Optional[AttributeControlConfig] = None) -> None:
        self.cfg = cfg or AttributeControlConfig()

    def compute(self, items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        outs = [extract_attributes(it["midi"]) for it in items]
        scores: dict[str, float] = {}
        prompted = [(it["attributes"], o) for it, o in zip(items, outs) if it.get("attributes") is not None]
        if prompted:
            acc = attribute_accuracy([p for p, _ in prompted], [o for _, o in prompted])
            scores.update({f"attr_{k}": v for k, v in acc.items()})
        refs = []
        for it, o in zip(items, outs):
            if it.get("reference_midi") is not None:
                refs.append((extract_attributes(it["reference_midi"]), o))
            elif isinstance(it.get("reference"), Mapping):
                refs.append((reference_values(it["reference"]), o))
        if refs:
            acc = attribute_accuracy([r for r, _ in refs], [o for _, o in refs])
            scores.update({f"attr_ref_{k}": v for k, v in acc.items()})
        return scores

    def protocol(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "extractor": "musecoco_symbolic.attributes",
                "grid_per_quarter": 12, "keys": ["I1s2", "R1", "R3", "B1s1", "TS1s1", "K1", "T1s1", "P4", "TM1"],
                "score": "ASA: mean over items of the mean over the keys the prompt/reference sets"}


@dataclass
class BarDensityConfig:
    """``grid``: seconds between the times the two densities are compared at. ``edges``: class edges in
    notes per quarter (None: :data:`.density.DEFAULT_EDGES`, the codec's default)."""

    grid: float = 0.25
    edges: Optional[list[float]] = None


class BarDensityMetric(Metric):
    """Per-bar onset density (notes per quarter, every track) of the generated MIDI against the reference
    MIDI over time, and against the per-bar density classes the generation forced.

    - ``density_ref_acc``: share of grid times where the two bars' density classes agree (mean over items);
    - ``density_ref_corr``: Pearson correlation of the two densities over the grid times of all items;
    - ``density_ref_mae``: mean absolute difference in notes per quarter;
    - ``density_control_acc`` (items with ``bar_density``, the classes the controller forced, as the clip
      json records them): share of generated bars (the last, partial one left out) whose measured class
      is the forced one.
    With the shuffled-video control beside it, ``density_ref_*`` say whether the video steers the density.
    """

    name = "bar_density"
    needs = frozenset({"midi", "reference"})
    version = 1
    Config = BarDensityConfig

    def __init__(self, cfg: Optional[BarDensityConfig] = None) -> None:
        from .density import DEFAULT_EDGES, check_edges

        self.cfg = cfg or BarDensityConfig()
        self.edges = check_edges(self.cfg.edges if self.cfg.edges is not None else DEFAULT_EDGES)

    def compute(self, items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        import numpy as np

        from .attributes import load_score
        from .density import density_at, density_class, density_classes, score_bars

        accs, gens, refs, control = [], [], [], []
        for it in items:
            gen = load_score(it["midi"])
            audio, sr = it.get("audio"), it.get("sample_rate")
            seconds = len(audio) / float(sr) if audio is not None and sr else None
            bars = score_bars(gen, seconds)
            forced = it.get("bar_density")
            if forced:
                pairs = [(f, density_class(b.notes_per_quarter, self.edges))
                         for f, b in zip(forced[:-1], bars[:len(forced) - 1]) if f is not None]
                control += [f == m for f, m in pairs]
            if it.get("reference_midi") is None:
                continue
            ref_bars = score_bars(load_score(it["reference_midi"]), seconds)
            end = seconds if seconds is not None else max((b.end for b in ref_bars), default=0.0)
            t = np.arange(0.0, end, self.cfg.grid) + self.cfg.grid / 2
            t = t[t < end]
            g, r = density_at(bars, t), density_at(ref_bars, t)
            g = np.where(np.isnan(g), 0.0, g)  # after the generated music ends: no notes
            ok = ~np.isnan(r)
            if not ok.any():
                continue
            accs.append(float((density_classes(g[ok], self.edges) == density_classes(r[ok], self.edges)).mean()))
            gens.append(g[ok])
            refs.append(r[ok])
        scores: dict[str, float] = {}
        if accs:
            g_all, r_all = np.concatenate(gens), np.concatenate(refs)
            scores["density_ref_acc"] = float(np.mean(accs))
            scores["density_ref_mae"] = float(np.abs(g_all - r_all).mean())
            if g_all.std() > 0 and r_all.std() > 0:
                scores["density_ref_corr"] = float(np.corrcoef(g_all, r_all)[0, 1])
        if control:
            scores["density_control_acc"] = float(np.mean(control))
        return scores

    def protocol(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "grid_seconds": self.cfg.grid,
                "edges_notes_per_quarter": list(self.edges), "bars": "first time signature, tempo map",
                "density": "note onsets of every track (drums included) per quarter note"}
