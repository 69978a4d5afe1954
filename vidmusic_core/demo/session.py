"""What the demo page does, without gradio: the models it serves, the settings each one shows, the checks on an
upload, and one generation (the public :class:`~vidmusic_core.model_dir.VidMusicPipeline` API, stoppable through
:mod:`vidmusic_core.interrupt`) with the spectrogram of the result."""
from __future__ import annotations

import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..components import SymbolicCodec, TokenLM
from ..errors import ConfigError, VidmusicError
from ..interrupt import GenerationControl, Interrupted, controlled
from ..model_dir import RUN_MODEL, VidMusicPipeline, find_model_dir

#: the longest stretch of video (seconds) the demo generates for, unless ``vidmusic demo --max-seconds`` says otherwise
MAX_SECONDS = 60.0


class DemoInputError(VidmusicError):
    """An upload or a setting the demo cannot use; the page shows the message as it is."""


@dataclass(frozen=True)
class Setting:
    """One generate setting on the form: ``key`` of ``GenerateConfig``, its widget kind and bounds."""

    key: str
    label: str
    kind: str  # "int" | "float"
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    info: str = ""


#: every setting the form may show (which ones a model gets: :meth:`DemoModel.settings_shown`)
SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("seed", "seed", "int", 0, None, 1, "the same seed and settings give the same music"),
    Setting("seconds", "seconds", "float", 0, None, 0.5, "how much of the video gets music (0 = all of it)"),
    Setting("window_seconds", "window (s)", "float", 0.5, None, 0.5, "longer videos are generated in windows of this"),
    Setting("temperature", "temperature", "float", 0.05, 3.0, 0.05),
    Setting("top_k", "top-k", "int", 0, None, 1, "0 = off"),
    Setting("cfg_coef", "CFG", "float", 0.0, 10.0, 0.5, "classifier-free guidance; 1 = off"),
    Setting("steps", "ODE steps", "int", 1, 200, 1, "solver steps of the flow backbone"),
)}
TOKEN_ONLY = ("temperature", "top_k")
LATENT_ONLY = ("steps",)


def model_label(path: str | Path) -> str:
    """A short name for the model in ``path``: the run's name for a run directory or its checkpoint, else the
    directory's name."""
    d = find_model_dir(path).resolve()
    if d.parts[-len(RUN_MODEL.parts):] == RUN_MODEL.parts:
        return d.parents[len(RUN_MODEL.parts) - 1].name
    return d.name


@dataclass
class DemoModel:
    """A loaded model and its name on the page."""

    label: str
    path: Path
    pipe: VidMusicPipeline
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path, label: str | None = None, device: str | None = None) -> "DemoModel":
        return cls(label or model_label(path), Path(path), VidMusicPipeline.from_dir(path, device=device))

    @property
    def takes_text(self) -> bool:
        """A text prompt reaches the model: a backbone that takes text under a layout that reads it
        (``SequenceLayout.reads_text``: the prefix family with ``use_text``; the ``cross`` layout and
        ``use_text: false``, as in the embedded default, ignore text)."""
        b = self.pipe.backbone
        return isinstance(b, TokenLM) and b.takes_text and self.pipe.layout.reads_text

    @property
    def symbolic(self) -> bool:
        return isinstance(self.pipe.codec, SymbolicCodec)

    def settings_shown(self) -> list[str]:
        """The keys of :data:`SETTINGS` this model's backbone reads (token LMs sample, flow backbones solve)."""
        tokens = isinstance(self.pipe.backbone, TokenLM)
        return [k for k in SETTINGS if not (k in TOKEN_ONLY and not tokens) and not (k in LATENT_ONLY and tokens)]

    def defaults(self) -> dict[str, Any]:
        """The stored generate settings of the model, for the form (``seconds`` None -> 0: the whole video)."""
        g = self.pipe.settings()
        return {k: (0 if k == "seconds" and g[k] is None else g[k]) for k in SETTINGS}


def load_models(paths: Sequence[str | Path], device: str | None = None) -> list[DemoModel]:
    """The models of ``paths`` with distinct labels (the same directory twice gets ``name``, ``name #2``)."""
    if not paths:
        raise ConfigError("give at least one model directory (--model DIR)")
    models: list[DemoModel] = []
    for p in paths:
        base = model_label(p)
        label, i = base, 2
        while any(m.label == label for m in models):
            label, i = f"{base} #{i}", i + 1
        models.append(DemoModel.load(p, label, device))
    return models


def setting_overrides(model: DemoModel, values: Mapping[str, Any], extra: str = "") -> tuple[list[str], int, float | None]:
    """``(generate.KEY=VALUE overrides, seed, seconds)`` from the form's ``values`` (keys of :data:`SETTINGS`; a
    missing or empty value keeps the model's) and ``extra`` (more ``KEY=VALUE`` lines, ``generate.`` optional),
    checked against the model's settings: an unknown key or a wrong value is a :class:`DemoInputError`."""
    shown = model.settings_shown()
    overrides: list[str] = []
    seed, seconds = int(model.defaults()["seed"]), None
    for key, value in values.items():
        if key not in SETTINGS:
            raise DemoInputError(f"unknown setting {key!r}; the form's settings are {', '.join(SETTINGS)}")
        if value is None or value == "" or key not in shown:
            continue
        s = SETTINGS[key]
        try:
            number = int(value) if s.kind == "int" else float(value)
        except (TypeError, ValueError):
            raise DemoInputError(f"{s.label}: {value!r} is not a number") from None
        if s.minimum is not None and number < s.minimum or s.maximum is not None and number > s.maximum:
            raise DemoInputError(f"{s.label}: {number} is outside [{s.minimum}, {s.maximum}]")
        if key == "seed":
            seed = number
        elif key == "seconds":
            seconds = float(number) or None
        else:
            overrides.append(f"generate.{key}={number}")
    for line in (extra or "").replace(",", "\n").splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise DemoInputError(f"more settings: {line!r} is not KEY=VALUE (e.g. top_p=0.9)")
        overrides.append(line if line.startswith("generate.") else f"generate.{line}")
    try:
        g = model.pipe.settings(overrides)
    except ConfigError as exc:
        raise DemoInputError(str(exc).split(": ", 1)[-1] if "model_index.yaml" in str(exc) else str(exc)) from None
    if not model.symbolic and g["window_seconds"] <= g["overlap_seconds"]:  # audio windows continue an overlap
        raise DemoInputError(f"window (s): {g['window_seconds']:g} must be longer than the overlap of the windows "
                             f"(overlap_seconds={g['overlap_seconds']:g}; set it lower under more settings)")
    return overrides, seed, seconds


def check_video(video: str | Path | None, seconds: float | None, max_seconds: float) -> float:
    """The seconds of ``video`` that will get music; a :class:`DemoInputError` for no upload, a file that does
    not decode, or more than ``max_seconds``."""
    from ..video import probe_video

    if not video:
        raise DemoInputError("upload a video (or pick one of the toy clips) first")
    name = Path(video).name
    try:
        duration = probe_video(video).duration
    except VidmusicError as exc:
        raise DemoInputError(f"{name} is not a video this demo can read: "
                             f"{str(exc).replace(str(video), name)}") from None
    secs = duration if seconds is None else min(duration, seconds)
    if secs > max_seconds + 1e-6:
        raise DemoInputError(f"{name} is {duration:.1f} s long; this demo makes music for at most {max_seconds:g} s "
                             f"(set seconds to {max_seconds:g} or less, or start it with --max-seconds)")
    return secs


def beats_and_cuts(video: str | Path, seconds: float) -> tuple[list[float], list[float]]:
    """The video's visual beats and cuts (seconds) over its first ``seconds``, by the motion encoder's detector."""
    from ..encoders.motion import MotionConfig, MotionEncoder, detect_beats_and_cuts
    from ..video import load_frames

    frames = load_frames([video], MotionEncoder(MotionConfig()).frame_spec, 0.0, seconds)
    n = int(frames.local_mask[0].sum())  # type: ignore[index]
    beats, cuts = detect_beats_and_cuts(frames.local[0, :n].numpy(), frames.local_times[0, :n].numpy())
    return [float(b) for b in beats], [float(c) for c in cuts]


@dataclass
class DemoResult:
    """One generation for the page: the files, the settings it ran with and the spectrogram PNG."""

    model: str
    mp4: Path
    wav: Path
    midi: Path | None
    spectrogram: Path
    seed: int
    meta: dict[str, Any]
    shown: tuple[str, ...] = ()  # the settings the model reads (DemoModel.settings_shown)

    def summary(self) -> str:
        """One line for the page: model, seed (reusable), length and sampling settings."""
        s = self.meta.get("sampling", {})
        shown = ", ".join(f"{k} {s[k]}" for k in ("temperature", "top_k", "cfg_coef", "steps")
                          if k in s and k in self.shown)
        return (f"**{self.model}** · seed **{self.seed}** (item seed {self.meta.get('seed')}) · "
                f"{float(self.meta.get('seconds', 0)):.1f} s · {shown}")


def generate(model: DemoModel, video: str | Path, out_root: Path, *, seed: int, seconds: float | None,
             overrides: Sequence[str] = (), text: str | None = None, control: GenerationControl | None = None,
             max_seconds: float = MAX_SECONDS, on_wait: Callable[[GenerationControl], None] | None = None) -> DemoResult:
    """Music for ``video`` with ``model`` into a new folder under ``out_root``: runs ``model.pipe.generate`` in a
    worker thread under ``control`` (``control.stop()`` from any thread ends it with :class:`Interrupted`) and
    calls ``on_wait(control)`` about ten times a second meanwhile (the page's progress bar). A stopped
    generation's folder is removed: nothing half-made is left."""
    if text and not model.takes_text:
        raise DemoInputError(f"{model.label} takes no text prompt (its layout or backbone reads no text): leave it empty")
    secs = check_video(video, seconds, max_seconds)
    control = control or GenerationControl()
    out = out_root / uuid.uuid4().hex[:12]
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            with model.lock, controlled(control):  # one generation per model at a time
                box["result"] = model.pipe.generate([video], out, text=[text] if text else None, seconds=seconds,
                                                    seed=seed, overrides=overrides, progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="vidmusic-demo-generate", daemon=True)
    control.running = True
    worker.start()
    try:
        while worker.is_alive():
            if on_wait is not None:
                on_wait(control)
            worker.join(0.1)
        if isinstance(box.get("error"), Interrupted):  # a stopped run leaves nothing behind (a stop that came
            shutil.rmtree(out, ignore_errors=True)      # after the last step is too late: the music is returned)
            raise box["error"]
    finally:
        control.running = False
    if "error" in box:
        raise box["error"]
    (r,) = box["result"]
    if not r.ok:
        raise DemoInputError(str(r.error).replace(str(video), Path(video).name))
    beats, cuts = beats_and_cuts(video, secs)
    from ..report import write_spectrogram

    png = write_spectrogram(r.wav, beats, cuts, out / f"{Path(video).stem}.spectrogram.png")
    return DemoResult(model.label, r.mp4, r.wav, r.midi, png, seed, dict(r.meta), tuple(model.settings_shown()))
