"""The component contracts: encoders, layouts, backbones, codecs, metrics, visualizers (DESIGN §3, notes/architecture.md).

Everything the core reads from a component is declared here, with a default where it is optional; the
core never discovers a protocol with ``getattr``/``hasattr``. Two backbone families stand side by side:

* :class:`TokenLM` — an autoregressive LM over codec tokens (audio codes or a symbolic vocabulary); its
  :meth:`~TokenLM.generate` is the KV-cached / CFG sampling loop of :mod:`vidmusic_core.sampling`.
* any other :class:`MusicBackbone` — e.g. a flow-matching or diffusion model over continuous
  :class:`~vidmusic_core.types.MusicLatents` — subclasses :class:`MusicBackbone` and runs its own solver.

Codecs say what they produce (:attr:`MusicCodec.representation`: ``tokens`` | ``latents`` | ``symbolic``)
and write their own outputs (:meth:`MusicCodec.write`).
"""
from __future__ import annotations

import abc
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError
from .types import (IGNORE_INDEX, BackboneInput, BackboneOutput, Condition, FrameSpec, Frames, GenerationRequest,
                    MusicLatents, MusicOutput, MusicTokens)

if TYPE_CHECKING:  # pragma: no cover
    from .song import SongAnalysis

#: values of :attr:`MusicCodec.representation` / :attr:`MusicBackbone.representation`
REPRESENTATIONS = ("tokens", "latents", "symbolic")


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------
class ConditionEncoder(nn.Module, abc.ABC):
    """Video -> :class:`Condition`. Subclasses nest their options as ``Config`` (a dataclass) and take
    only that in ``__init__``.

    Attributes set in ``__init__``: ``frame_spec`` (:class:`FrameSpec`), ``dim`` (token width D).
    ``forward(frames) == forward_features(frozen_features(frames), frames)``: the frozen part
    (e.g. CLIP hidden states, returned as a dict of tensors with batch first) can be cached by
    ``prepare``; the trainable rest runs in the training step. Encoders with nothing frozen return
    ``{}`` from ``frozen_features``.
    """

    kind: ClassVar[str] = "encoder"
    frame_spec: FrameSpec
    dim: int

    def frozen_features(self, frames: Frames) -> dict[str, Tensor]:
        """The part of the computation that never trains (cacheable). Default: nothing."""
        return {}

    @abc.abstractmethod
    def forward_features(self, features: Mapping[str, Tensor], frames: Frames | None) -> Condition:
        """The trainable part: cached ``features`` (+ frame times from ``frames``) -> Condition."""

    def forward(self, frames: Frames) -> Condition:  # type: ignore[override]
        """``frames`` -> Condition with ``tokens [B, N, D]``, ``mask [B, N]``, ``times [B, N]``."""
        return self.forward_features(self.frozen_features(frames), frames)

    def feature_config(self) -> dict[str, Any]:
        """The options that determine ``frozen_features`` (the cache key; default: the ``cfg`` dataclass)."""
        cfg = self.__dict__.get("cfg")
        return asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else {}


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------
class SequenceLayout(nn.Module, abc.ABC):
    """Arranges condition, text and music for a backbone (``prefix``, ``cross``, ``aligned``, …).

    For a :class:`TokenLM`: :meth:`forward` (teacher forcing), :meth:`prompt` and :meth:`step_embeds`
    (generation). For a non-autoregressive backbone over latents: :meth:`frame_input` (the condition per
    music frame and/or as cross-attention memory); :meth:`forward` with :class:`MusicLatents` returns that
    input with the clean latents as ``target``.
    """

    kind: ClassVar[str] = "layout"

    @property
    def reads_text(self) -> bool:
        """Whether this layout puts a text prompt into the backbone's input (when the backbone takes text);
        False: text given to :meth:`prompt` is ignored."""
        return False

    @abc.abstractmethod
    def forward(self, backbone: "MusicBackbone", condition: Condition, music: MusicOutput,  # type: ignore[override]
                text: Sequence[str] | None = None, seconds: Tensor | None = None) -> BackboneInput:
        """Training input: labels on music positions only (IGNORE_INDEX elsewhere), or ``target`` latents."""

    @abc.abstractmethod
    def prompt(self, backbone: "TokenLM", condition: Condition, text: Sequence[str] | None = None,
               seconds: Tensor | None = None, cfg_null: bool = False) -> BackboneInput:
        """The generation prompt (everything before the first music token). ``cfg_null``: the batch is
        ``[conditional rows; their classifier-free-guidance null rows]`` (the sampling loop doubles it, with
        ``condition.null_like()`` and empty text in the second half); a layout may build the null half its own
        way (the prefix layout does as upstream InspireMusic)."""

    def step_embeds(self, backbone: "TokenLM", codes: Tensor, position: int,
                    condition: Condition) -> Tensor:
        """Embeddings ``[B, 1, D]`` of the music frame ``codes [B, K, 1]`` at music position ``position``."""
        return backbone.embed(codes)

    def frame_input(self, backbone: "MusicBackbone", condition: Condition, n_frames: int,
                    mask: Tensor | None = None) -> BackboneInput:
        """The condition for ``n_frames`` music frames at once (non-autoregressive backbones):
        ``inputs_embeds [B, n_frames, D]`` (the condition at each frame's time, zeros where the layout
        has none) and/or ``memory [B, M, D]``; ``mask [B, n_frames]`` marks real frames. Default: this
        layout has no such input (a clear error)."""
        raise ConfigError(f"layout {type(self).__name__} cannot condition a non-autoregressive backbone "
                          f"({type(backbone).__name__}); use a layout that backbone supports")

    def aux_loss(self, condition: Condition, music: MusicOutput) -> Tensor | None:
        """An extra training loss of the layout's own heads (e.g. attributes predicted from the video), or None."""
        return None

    def logit_prior(self, condition: Condition) -> Tensor | None:
        """Log-probabilities ``[B, K, V]`` the sampling loop adds (× ``generate.prior_weight``) to every
        column's logits of the token codes (e.g. :class:`~vidmusic_core.layouts.prior.ClipPrior`), or None."""
        return None

    def forced_codes(self, condition: Condition) -> Tensor | None:
        """Codes ``[B, K, F]`` the layout forces at the start of the music (``-1`` = free), or None."""
        return None


# --------------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------------
class MusicBackbone(nn.Module, abc.ABC):
    """A music generator conditioned through a layout: trains with :meth:`loss`, generates with :meth:`generate`.

    ``representation``: what it models (``tokens`` — codec tokens, symbolic vocabularies included — or
    ``latents``); ``supported_layouts``: layout names it works with (others are a config error);
    ``width``: D of what layouts hand it; ``context_length``: the longest window it generates, in music
    frames (None = unbounded; long videos go in windows of at most that).
    """

    kind: ClassVar[str] = "backbone"
    representation: ClassVar[str] = "tokens"
    supported_layouts: ClassVar[tuple[str, ...]] = ()
    width: int
    context_length: int | None = None

    @abc.abstractmethod
    def loss(self, inp: BackboneInput) -> Tensor:
        """The training loss (a scalar) of a layout's training input."""

    @abc.abstractmethod
    def generate(self, layout: SequenceLayout, request: GenerationRequest, codec: "MusicCodec") -> MusicOutput:
        """Music for ``request`` (one row per condition row) in the codec's representation."""

    def check_codec(self, codec: "MusicCodec") -> None:
        """Raise :class:`ConfigError` when this backbone cannot model ``codec``'s output."""
        wants = ("tokens", "symbolic") if self.representation == "tokens" else (self.representation,)
        if codec.representation not in wants:
            raise ConfigError(f"backbone {type(self).__name__} models {self.representation} but codec "
                              f"{type(codec).__name__} produces {codec.representation}; pick a "
                              f"{' or '.join(wants)} codec")


class TokenLM(MusicBackbone):
    """An autoregressive LM over ``n_codebooks`` codebooks of ``cardinality`` entries, ``width`` D wide.

    Declared with defaults (override what applies): ``eos_id`` (an EOS id, inside the vocabulary for
    symbolic LMs or past the codes for audio LMs; None = none), ``special_id`` (the input code at delayed
    positions, e.g. MusicGen's; None = 0), :meth:`constrain_logits` (a token grammar), :meth:`new_cache`. The prefix layout's backbone
    side: ``n_special_rows`` rows of :meth:`special` (sos, task, video task; 0 = the layout owns them),
    ``takes_text`` with :meth:`tokenize` + :meth:`embed_text`, ``takes_time`` with :meth:`embed_time`,
    ``takes_structure`` with :meth:`embed_structure`.
    """

    representation: ClassVar[str] = "tokens"
    n_codebooks: int
    cardinality: int
    eos_id: int | None = None
    special_id: int | None = None
    n_special_rows: int = 0
    takes_text: ClassVar[bool] = False
    takes_time: ClassVar[bool] = False
    takes_structure: ClassVar[bool] = False

    @abc.abstractmethod
    def embed(self, codes: Tensor) -> Tensor:
        """Music tokens ``[B, K, T]`` -> embeddings ``[B, T, D]``."""

    @abc.abstractmethod
    def forward(self, inp: BackboneInput, cache: Any = None,  # type: ignore[override]
                logits_positions: "str | Tensor | None" = "all") -> BackboneOutput:
        """Logits ``[B, K, S', V]`` for ``logits_positions`` (``all`` | ``last`` | ``none`` | a positions
        tensor, see :func:`~vidmusic_core.types.select_positions`) of ``inp``, continuing ``cache`` if given."""

    def new_cache(self) -> Any:
        """An empty KV cache for generation (None: the backbone keeps no cache)."""
        return None

    def constrain_logits(self, logits: Tensor, column: int) -> Tensor:
        """Logits ``[B, K, V]`` at generated column ``column`` with a token grammar applied. Default: unchanged."""
        return logits

    # -- the prefix layout's protocol -----------------------------------------------------------
    def special(self, row: int) -> Tensor:
        """Row ``row`` (< ``n_special_rows``) of the backbone's special embeddings: ``[D]``."""
        raise ConfigError(f"{type(self).__name__} has no special embeddings (n_special_rows = 0)")

    def tokenize(self, text: str) -> list[int]:
        """Text -> ids for :meth:`embed_text` (backbones with ``takes_text``)."""
        raise ConfigError(f"{type(self).__name__} takes no text")

    def embed_text(self, ids: Tensor) -> Tensor:
        """Text ids long ``[B, L]`` -> ``[B, L, D]``."""
        raise ConfigError(f"{type(self).__name__} takes no text")

    def embed_time(self, seconds: Tensor) -> Tensor:
        """Seconds float ``[B, S]`` -> ``[B, S, D]`` (backbones with ``takes_time``)."""
        raise ConfigError(f"{type(self).__name__} has no time embedding")

    def embed_structure(self, labels: "Tensor | Sequence[str]") -> Tensor:
        """Structure labels (ids long ``[B, S]``, or one label name per row) -> ``[B, S, D]`` (backbones with
        ``takes_structure``)."""
        raise ConfigError(f"{type(self).__name__} has no structure embedding")

    # -- training and generation ----------------------------------------------------------------
    def loss(self, inp: BackboneInput) -> Tensor:
        """Mean cross-entropy of ``inp.labels [B, K, S]`` (IGNORE_INDEX skipped).

        Default: full logits of :meth:`forward`; backbones override it to compute logits only where
        labels are (no full-vocabulary logits over a long prefix).
        """
        if inp.labels is None:
            raise ValueError(f"{type(self).__name__}.loss needs BackboneInput.labels")
        logits = self.forward(inp).logits  # [B, K, S, V]
        return torch.nn.functional.cross_entropy(logits.permute(0, 3, 1, 2).float(), inp.labels,
                                                 ignore_index=IGNORE_INDEX)

    def generate(self, layout: SequenceLayout, request: GenerationRequest, codec: "MusicCodec") -> MusicTokens:
        """Sample ``request.n_frames`` frames with the KV-cached / CFG loop (:func:`~vidmusic_core.sampling.
        generate_tokens`), continuing ``request.prompt`` (``MusicTokens [B, K, P]``) when given."""
        from .sampling import ContinuationLayout, generate_tokens

        if request.prompt is not None:
            if not isinstance(request.prompt, MusicTokens):
                raise ConfigError(f"{type(self).__name__}: a continuation prompt must be MusicTokens")
            layout = ContinuationLayout(layout, request.prompt.codes, codec.delays)
        return generate_tokens(layout, self, request.condition, request.n_frames, request.seeds, request.sampling,
                               text=request.text, seconds=request.seconds, delays=codec.delays,
                               frame_rate=codec.frame_rate, forced=request.forced, controller=request.controller)

    def check_codec(self, codec: "MusicCodec") -> None:
        """The codec decodes every code this LM can sample: the same codebooks, and no more codes than the codec
        has (an imported LM may use fewer; training wires them equal, see ``build_model``)."""
        super().check_codec(codec)
        if self.n_codebooks != codec.n_codebooks or self.cardinality > codec.cardinality:
            raise ConfigError(
                f"backbone {type(self).__name__} predicts {self.n_codebooks} codebook(s) x {self.cardinality} but "
                f"codec {type(codec).__name__} has {codec.n_codebooks} x {codec.cardinality}; set "
                "backbone.audio_vocab / n_codebooks to match, or pick another codec")


#: the name older plugins subclass (a token LM)
Backbone = TokenLM


# --------------------------------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------------------------------
class MusicCodec(nn.Module, abc.ABC):
    """Audio (or MIDI) <-> music the backbone models: tokens ``[B, K, T_a]`` (``representation`` ``tokens``),
    latents ``[B, T_a, C]`` (:class:`LatentCodec`) or a symbolic vocabulary (:class:`SymbolicCodec`).

    Declared with defaults: :meth:`is_fitted` (data-dependent state that ``prepare`` fits on the train
    split), :meth:`n_frames` (frames for a length of music), :meth:`plan_request` (codec-specific
    generation rules), :meth:`write` (the files of one generated row).
    """

    kind: ClassVar[str] = "codec"
    representation: ClassVar[str] = "tokens"
    sample_rate: int
    frame_rate: float | None
    n_codebooks: int = 0
    cardinality: int = 0
    latent_dim: int = 0
    delays: tuple[int, ...] = ()
    vocab_name: str | None = None

    @abc.abstractmethod
    def encode(self, audio: Tensor) -> MusicOutput:
        """Audio float ``[B, C, L]`` at ``sample_rate`` (or a score, for symbolic codecs) -> tokens / latents."""

    @abc.abstractmethod
    def decode(self, music: Any) -> Any:
        """Tokens / latents -> audio float ``[B, C, L]`` at ``sample_rate`` (symbolic codecs: scores)."""

    def fit(self, audio: Iterable[Tensor]) -> None:
        """Fit data-dependent state (e.g. ``rvq_mel`` codebooks). Default: nothing to fit."""

    def is_fitted(self) -> bool:
        """False while :meth:`fit` still has to run (``prepare`` fits on the train split and saves the codec)."""
        return True

    def n_frames(self, seconds: float) -> int:
        """Music frames for ``seconds`` of music."""
        if self.frame_rate is None:
            raise ConfigError(f"{type(self).__name__} has no frame rate; it must define n_frames")
        return max(1, int(round(float(seconds) * float(self.frame_rate))))

    def plan_request(self, request: GenerationRequest, layout: SequenceLayout,
                     videos: Sequence[str | Path] | None = None,
                     spans: Sequence[tuple[float, float]] | None = None) -> GenerationRequest:
        """The request with this codec's generation rules applied (token budgets, EOS, forced codes,
        controllers set from the rows' ``videos`` over ``spans`` seconds). Default: unchanged."""
        return request

    def windows(self, backbone: "MusicBackbone", seconds: float, window_s: float, overlap_s: float, out_dir: Path,
                stem: str, prompt_bars: int = 1) -> Any:
        """The window policy of a video of ``seconds`` longer than one window, for the one long-video loop
        (:func:`vidmusic_core.longform.generate_windows`). Default: windows of audio frames, each continuing the
        last ``overlap_s`` of music (:class:`~vidmusic_core.longform.AudioWindows`)."""
        import sys

        from .longform import AudioWindows

        return AudioWindows(self, backbone, seconds, window_s, overlap_s, log=lambda msg: print(msg, file=sys.stderr))

    def write(self, music: MusicOutput, row: int, seconds: float, out_dir: Path, stem: str) -> dict[str, Any]:
        """Write row ``row`` of generated ``music`` as ``out_dir/<stem>.wav`` (cut to ``seconds``); returns the
        item's metadata (file names relative to ``out_dir``, plus anything the codec records)."""
        from .audio import write_wav

        one = _row(music, row)
        with torch.inference_mode():
            audio = self.decode(one)[0, :, : int(round(seconds * self.sample_rate))]  # [C, L]
        write_wav(out_dir / f"{stem}.wav", audio.float().cpu().numpy(), self.sample_rate)
        return {"wav": f"{stem}.wav", "frames": int(one.mask.sum())}  # type: ignore[union-attr]


def _row(music: MusicOutput, row: int) -> MusicOutput:
    """Row ``row`` of a batch of tokens or latents, keeping the batch axis."""
    if isinstance(music, MusicLatents):
        return MusicLatents(music.latents[row:row + 1], music.mask[row:row + 1], music.frame_rate)  # type: ignore[index]
    return MusicTokens(music.codes[row:row + 1], music.mask[row:row + 1], music.frame_rate)  # type: ignore[index]


class LatentCodec(MusicCodec):
    """Audio <-> continuous latents ``[B, T_a, C]`` at ``frame_rate`` (``latent_dim`` = C), e.g. a VAE."""

    representation: ClassVar[str] = "latents"


    @abc.abstractmethod
    def encode(self, audio: Tensor) -> MusicLatents:
        """Audio float ``[B, C_audio, L]`` at ``sample_rate`` -> latents ``[B, T_a, C]``."""

    @abc.abstractmethod
    def decode(self, latents: MusicLatents) -> Tensor:  # type: ignore[override]
        """Latents ``[B, T_a, C]`` -> audio float ``[B, C_audio, L]`` at ``sample_rate``."""


class SymbolicCodec(MusicCodec):
    """MIDI <-> one stream of event tokens (``frame_rate`` None): a row is as long as its music.

    Declared: :meth:`decode` (tokens -> scores), :meth:`write_midi`, :meth:`render` (scores -> audio),
    :meth:`n_frames` (a token budget for a length of music) and, with an attribute prefix,
    ``prefix_length`` + :meth:`prefix_codes` + :meth:`attributes_of`. :meth:`write` writes ``.mid`` + the
    rendered ``.wav``; :meth:`row_meta` adds what a subclass records per row (e.g. per-bar controls).
    """

    representation: ClassVar[str] = "symbolic"
    frame_rate: float | None = None
    prefix_length: int = 0

    @abc.abstractmethod
    def decode(self, tokens: MusicTokens, seconds: float | None = None) -> list[Any]:  # type: ignore[override]
        """Tokens ``[B, 1, T]`` -> one score per row (cut to ``seconds`` when given)."""

    @abc.abstractmethod
    def write_midi(self, score: Any, path: Path) -> Path:
        """Write ``score`` as a MIDI file; returns its path."""

    @abc.abstractmethod
    def render(self, scores: Sequence[Any], seconds: float | None = None) -> Tensor:
        """Scores -> audio float ``[B, 1, L]`` at ``sample_rate``."""

    def prefix_codes(self, attributes: Mapping[str, Any]) -> list[int]:
        """Prefix ids (``-1`` = the model's choice) for the attribute values the user sets."""
        raise ConfigError(f"generate.attributes is set but codec {type(self).__name__} has no attribute prefix")

    def attributes_of(self, tokens: MusicTokens) -> list[dict[str, Any] | None]:
        """The attribute values in each row's prefix (None without a prefix)."""
        return [None] * int(tokens.codes.shape[0])

    def row_meta(self, tokens: MusicTokens, row: int) -> dict[str, Any]:
        """What a generated row's json records beyond its files (default: nothing)."""
        return {}

    def windows(self, backbone: "MusicBackbone", seconds: float, window_s: float, overlap_s: float, out_dir: Path,
                stem: str, prompt_bars: int = 1) -> Any:
        """Windows that end on bar lines and continue the last ``prompt_bars`` bars
        (:class:`~vidmusic_core.symbolic.BarWindows`; one ``<stem>.wNNN.mid`` per window)."""
        from .symbolic import BarWindows

        return BarWindows(self, seconds, window_s, out_dir, stem, prompt_bars)

    def window_cut(self, tokens: MusicTokens, limit: float, n_bars: int, after: float = 0.0) -> Any:
        """Where a long video's window of generated ``tokens`` (one row) should end so the next window can
        continue it: an object with ``seconds``/``ticks`` (the end, on the row's clock), ``prompt`` (ids of the
        last ``n_bars`` bars before it), ``prompt_seconds``/``prompt_ticks`` (their length); None when the
        window cannot end on a bar line by ``limit`` s after ``after`` s (then windows are independent).
        Default: None."""
        return None

    def decode_between(self, tokens: MusicTokens, start_ticks: int, end_ticks: int | None = None,
                       end_seconds: float | None = None) -> Any:
        """The first row as a score of the notes from ``start_ticks`` to the end (``end_ticks``, else the tick
        at ``end_seconds``, else the end), moved to start at 0: a window that began with a continuation prompt.
        Codecs whose :meth:`window_cut` can return a cut must define it."""
        raise ConfigError(f"{type(self).__name__} cannot continue windows (no decode_between)")

    def write(self, music: MusicOutput, row: int, seconds: float, out_dir: Path, stem: str) -> dict[str, Any]:
        """Row ``row`` -> ``<stem>.mid`` (cut to ``seconds``) and its rendering ``<stem>.wav``."""
        from .audio import write_wav

        assert isinstance(music, MusicTokens) and music.mask is not None
        one = MusicTokens(music.codes[row:row + 1], music.mask[row:row + 1], None)
        scores = self.decode(one, seconds=seconds)
        midi = self.write_midi(scores[0], out_dir / f"{stem}.mid")
        audio = self.render(scores, seconds=seconds)  # [1, 1, L]
        write_wav(out_dir / f"{stem}.wav", audio[0].cpu().numpy(), self.sample_rate)
        attrs = self.attributes_of(one)[0] if self.prefix_length else None
        return {"wav": f"{stem}.wav", "midi": Path(midi).name, "attributes": attrs, "tokens": int(one.mask.sum()),  # type: ignore[union-attr]
                **self.row_meta(music, row)}


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
class Metric(abc.ABC):
    """A registered evaluation metric; ``compute`` returns named scores, ``protocol`` what they depend on."""

    kind: ClassVar[str] = "metric"
    name: str
    needs: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def compute(self, items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Scores over ``items`` (each a dict with the keys in ``needs``)."""

    @abc.abstractmethod
    def protocol(self) -> dict[str, Any]:
        """Everything the score depends on (embedder, sample rate, window, reference set …)."""


# --------------------------------------------------------------------------------------------------
# Visualizers (music -> video)
# --------------------------------------------------------------------------------------------------
class Visualizer(abc.ABC):
    """Music -> frames (``vidmusic visualize``, :func:`vidmusic_core.visualize.visualize`). Subclasses nest their
    options as ``Config`` (a dataclass) and take only that in ``__init__``.

    The core analyses the song once (:class:`~vidmusic_core.song.SongAnalysis`: beats, downbeats, onsets, key,
    sections, energy curves, and :meth:`~vidmusic_core.song.SongAnalysis.audio` for any span of samples), calls
    :meth:`plan` once, then :meth:`render` window by window and encodes each window before the next: memory
    stays flat in song length. ``render`` of consecutive windows must equal ``render`` of their union (the
    contract check tests it), and the same ``seed`` must give the same frames.
    """

    kind: ClassVar[str] = "visualizer"

    def plan(self, song: "SongAnalysis", size: tuple[int, int], fps: float, seed: int) -> Any:
        """Everything that does not depend on the window (layouts, keyframes, …), for frames ``size = (W, H)``
        at ``fps``. Default: ``(song, size, fps, seed)``."""
        return (song, size, fps, seed)

    @abc.abstractmethod
    def render(self, plan: Any, times: np.ndarray) -> np.ndarray:
        """Frames at ``times [T]`` seconds (ascending): uint8 ``[T, H, W, 3]``."""
