"""``encodec``: transformers ``EncodecModel`` as a music codec (MusicGen's and VidMuse's tokenizer).

``weights=DIR`` loads a local transformers EnCodec directory (``facebook/encodec_32khz`` layout: 32 kHz
mono, 4 codebooks x 2048, 50 Hz) with ``local_files_only``; nothing is downloaded. Without weights a
tiny random model of the same rates is built (shape tests and plugin contracts only: it makes noise).
Tokens: ``[B, K, T]`` with MusicGen's delays ``(0, 1, 2, 3)`` for the generation loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ..checkpoint import path_field
from ..errors import ConfigError, ShapeError
from ..components import MusicCodec
from ..types import MusicTokens


#: weight files of a transformers EnCodec directory; without one, the directory's config.json gives the
#: architecture and the weights come from the component's own model.safetensors (a model directory's codec/)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class EncodecConfig:
    weights: Optional[str] = path_field()  # local transformers EnCodec directory; None = tiny random model
    bandwidth: float = 2.2  # kbps; 2.2 = 4 codebooks at 32 kHz
    delays: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    seed: int = 0


class EncodecCodec(MusicCodec):
    """Audio ``[B, C, L]`` at ``sample_rate`` <-> codes ``[B, K, T]`` at ``frame_rate``."""

    Config = EncodecConfig

    def __init__(self, cfg: Optional[EncodecConfig] = None) -> None:
        super().__init__()
        from transformers import EncodecConfig as HFConfig
        from transformers import EncodecModel

        self.cfg = cfg = cfg or EncodecConfig()
        if cfg.weights:
            d = Path(cfg.weights)
            if not (d / "config.json").is_file():
                raise ConfigError(f"codec.weights={cfg.weights!r}: expected a local transformers EnCodec directory "
                                  "with config.json (e.g. a copy of facebook/encodec_32khz); vidmusic never downloads")
            if any((d / f).is_file() for f in HF_WEIGHT_FILES):
                self.model = EncodecModel.from_pretrained(str(d), local_files_only=True)
            else:  # the architecture only; load_component loads the weights from the component's file
                self.model = EncodecModel(HFConfig.from_pretrained(str(d), local_files_only=True))
        else:
            hf = HFConfig(sampling_rate=32000, codebook_size=2048, num_filters=8, hidden_size=16, codebook_dim=16,
                          num_lstm_layers=1, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[cfg.bandwidth],
                          use_causal_conv=False, use_conv_shortcut=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                self.model = EncodecModel(hf)
        self.model.eval().requires_grad_(False)
        c = self.model.config
        self.sample_rate = int(c.sampling_rate)
        self.frame_rate = float(c.frame_rate)
        self.cardinality = int(c.codebook_size)
        self.n_codebooks = int(round(cfg.bandwidth * 1000 / (self.frame_rate * c.codebook_nbits)))
        if len(cfg.delays) != self.n_codebooks:
            raise ConfigError(f"codec.delays={list(cfg.delays)} has {len(cfg.delays)} entries for "
                              f"{self.n_codebooks} codebooks at {cfg.bandwidth} kbps")
        self.delays = tuple(cfg.delays)

    @classmethod
    def for_codebooks(cls, d: Path, n_codebooks: int, delays: "list[int] | tuple[int, ...]") -> "EncodecCodec":
        """The ``encodec`` codec of local directory ``d`` at the bandwidth that gives ``n_codebooks`` codebooks; a
        clear error naming the bandwidths ``d`` offers when none does."""
        from transformers import EncodecConfig as HFConfig

        from ..errors import CheckpointError

        hf = HFConfig.from_pretrained(str(d), local_files_only=True)
        per_codebook = float(hf.frame_rate) * int(hf.codebook_nbits) / 1000.0  # kbps one codebook adds
        options = {round(float(b) / per_codebook): float(b) for b in hf.target_bandwidths}
        if n_codebooks not in options:
            raise CheckpointError(
                f"{d}/config.json: the LM predicts {n_codebooks} codebooks but this EnCodec offers "
                + ", ".join(f"{k} (at {b:g} kbps)" for k, b in sorted(options.items()))
                + " at its target_bandwidths; use the EnCodec the model was trained with")
        return cls(EncodecConfig(weights=str(d), bandwidth=options[n_codebooks], delays=list(delays)))

    @torch.no_grad()
    def encode(self, audio: Tensor) -> MusicTokens:
        """Audio ``[B, C, L]`` (mixed to mono) -> codes ``[B, K, ceil(L / hop)]``."""
        if audio.dim() != 3:
            raise ShapeError(f"encodec: audio expected [B, C, L], got {list(audio.shape)}")
        x = audio.mean(dim=1, keepdim=True).to(next(self.model.parameters()).dtype)
        out = self.model.encode(x, bandwidth=self.cfg.bandwidth)
        codes = out.audio_codes[0]  # [chunks=1, B, K, T] -> [B, K, T]
        return MusicTokens(codes.long(), None, self.frame_rate)

    @torch.no_grad()
    def decode(self, tokens: MusicTokens) -> Tensor:
        """Codes ``[B, K, T]`` -> audio ``[B, 1, T * hop]``; masked frames are silent."""
        audio = self.model.decode(tokens.codes[None], [None]).audio_values  # [B, 1, L]
        if tokens.mask is not None and not bool(tokens.mask.all()):
            hop = int(round(self.sample_rate / self.frame_rate))
            keep = tokens.mask.repeat_interleave(hop, dim=1)[:, None, : audio.shape[-1]]
            audio = audio[..., : keep.shape[-1]] * keep
        return audio
