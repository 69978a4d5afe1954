"""``transcription_f1``: does the symbolic path's rendered audio play its own MIDI? (basic-pitch judge)

The item's ``audio`` (the rendered wav) is transcribed to notes by Basic Pitch (Spotify's ICASSP 2022
model, the ONNX file inside the ``basic-pitch`` wheel, run by onnxruntime; ``vidmusic[judges]`` plus
``pip install --no-deps basic-pitch==0.4.0``), and the notes are matched against the item's ``midi``
(pitched notes; drums dropped) with ``mir_eval.transcription.precision_recall_f1_overlap``: onset within
±``onset_tolerance`` s and pitch within 50 cents, offsets ignored. A renderer or soundfont that is off
pitch, drops notes or smears onsets scores low; a faithful render scores near Basic Pitch's own ceiling.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..components import Metric
from . import Item, MetricError, base_protocol, check_items, check_positive, item_audio, mean, midi_notes
from .judges import _missing, judge_manifest

BASIC_PITCH_RATE = 22050


@functools.lru_cache(maxsize=1)
def _basic_pitch() -> tuple[Any, Any]:
    """``(predict, Model)`` of basic-pitch with the ONNX model of its wheel."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # at import basic-pitch warns for each backend it lacks (TF, TFLite, CoreML)
    try:
        from basic_pitch import ICASSP_2022_MODEL_PATH
        from basic_pitch.inference import Model, predict
    except ImportError as exc:
        raise _missing("basic_pitch", exc) from exc
    finally:
        root.setLevel(level)
    if Path(ICASSP_2022_MODEL_PATH).suffix != ".onnx":
        raise MetricError(f"basic-pitch picked {ICASSP_2022_MODEL_PATH}; install onnxruntime (vidmusic[judges]) "
                          "so it runs the ONNX model inside its wheel")
    return predict, Model(ICASSP_2022_MODEL_PATH)


def transcribe(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Notes of mono ``audio`` by Basic Pitch -> ``[N, 3]`` (onset s, offset s, MIDI pitch)."""
    import soundfile as sf

    predict, model = _basic_pitch()
    with tempfile.TemporaryDirectory() as d:  # basic-pitch reads a path
        wav = Path(d) / "x.wav"
        sf.write(wav, np.asarray(audio, dtype=np.float32), sample_rate)
        _, _, events = predict(wav, model)
    rows = [(float(s), float(e), float(p)) for s, e, p, *_ in events]
    return np.asarray(sorted(rows), dtype=np.float64).reshape(-1, 3)


class TranscriptionF1(Metric):
    """Onset+pitch F1 of Basic Pitch's transcription of the rendered audio against the item's MIDI."""

    name = "transcription_f1"
    version = 1
    needs = frozenset({"audio", "midi"})

    @dataclass
    class Config:
        onset_tolerance: float = 0.05  # s (mir_eval's default)

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        check_positive(self.name, onset_tolerance=self.cfg.onset_tolerance)

    def compute(self, items: Sequence[Item]) -> dict[str, float]:
        import mir_eval

        check_items(self.name, items)
        rows = []
        for item in items:
            if item.get("midi") is None:
                continue
            ref = midi_notes(item["midi"])
            ref = ref[ref[:, 4] == 0]  # pitched notes
            if not len(ref):
                continue
            est = transcribe(item_audio(item, BASIC_PITCH_RATE, self.name), BASIC_PITCH_RATE)
            if not len(est):
                rows.append((0.0, 0.0, 0.0))
                continue
            hz = lambda p: 440.0 * 2 ** ((p - 69) / 12)  # noqa: E731
            p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
                ref[:, :2], hz(ref[:, 2]), est[:, :2], hz(est[:, 2]), onset_tolerance=self.cfg.onset_tolerance,
                offset_ratio=None)
            rows.append((p, r, f))
        if not rows:
            raise MetricError(f"metric {self.name}: no item has a 'midi' with pitched notes")
        p, r, f = np.mean(np.asarray(rows), axis=0)
        return {"transcription_precision": float(p), "transcription_recall": float(r), "transcription_f1": float(f)}

    def protocol(self) -> dict[str, Any]:
        return {**base_protocol(self.name, self.version, self.cfg, ("mir_eval", "onnxruntime")),
                "judges": [judge_manifest("basic_pitch", onset_threshold=0.5, frame_threshold=0.3)],
                "matching": "mir_eval.transcription onset + pitch (50 cents), offsets ignored"}
