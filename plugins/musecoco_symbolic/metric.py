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
