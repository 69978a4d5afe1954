"""Codec ``wavtokenizer``: InspireMusic's audio tokens (one codebook of 4096, 75 Hz, 24 kHz mono).

``encode``: audio ``[B, C, L]`` -> channel mean -> (resample to 24 kHz when ``sample_rate`` is given) ->
SEANet encoder -> nearest codebook entry -> codes ``[B, 1, T]``, ``T = ceil(L / hop)`` per chunk.
``decode``: codes ``[B, 1, T]`` -> codebook vectors -> Vocos backbone -> ISTFT head -> ``[B, 1, T * hop]``.

The module's children are ``feature_extractor``, ``backbone`` and ``head``, so ``state_dict`` has upstream's
key names. With ``model_dir`` unset the model is built at the (tiny, by default) widths of the config with
**random weights**: right shapes, meaningless sound. Real use needs InspireMusic's ``wavtokenizer/`` folder
(``codec.model_dir``) or a folder written by :func:`import_wavtokenizer`. See docs/codecs/wavtokenizer.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor

from vidmusic_core import (CheckpointError, ConfigError, ImportReport, MusicCodec, MusicTokens, ShapeError,
                           check_shapes, load_weights, save_component)

from .decoder import ISTFTHead, VocosBackbone
from .encoder import EncodecFeatures
from .files import (arch_from_upstream, compare_keys, find_wavtokenizer_dir, load_checkpoint, read_upstream_config,
                    split_state)

ARCH_FIELDS = ("sample_rate", "downsamples", "n_filters", "dimension", "lstm_layers", "vq_bins", "num_quantizers",
               "backbone_dim", "intermediate_dim", "num_layers", "adanorm_num_embeddings", "layer_scale_init_value",
               "n_fft", "hop_length", "padding")
#: the released 75 Hz model (WavTokenizer ``..._frame75_..._code4096_dim512_...attn.yaml``; InspireMusic-*/wavtokenizer)
UPSTREAM_75HZ = dict(sample_rate=24000, downsamples=[8, 5, 4, 2], n_filters=32, dimension=512, lstm_layers=2,
                     vq_bins=4096, num_quantizers=1, backbone_dim=768, intermediate_dim=2304, num_layers=12,
                     adanorm_num_embeddings=4, layer_scale_init_value=None, n_fft=1280, hop_length=320, padding="same")


class WavTokenizerCodec(MusicCodec):
    """InspireMusic's WavTokenizer. ``encode(audio [B, C, L], sample_rate=None) -> codes [B, 1, T]`` (75 Hz);
    ``decode(codes [B, 1, T]) -> audio [B, 1, T * 320]`` at 24 kHz."""

    @dataclass
    class Config:
        """Options of ``wavtokenizer`` (the ``codec.*`` section).

        ``model_dir``: InspireMusic's ``wavtokenizer/`` folder (``config_file`` + ``checkpoint_file``), an
        InspireMusic model dir holding one, or a folder written by ``import_wavtokenizer``; None = random
        weights at the architecture fields below (default: tiny). With ``model_dir`` the architecture comes
        from the files and the fields below are ignored. ``allow_globals``: ``module.Name`` objects the
        checkpoint may hold besides tensors (only for files you trust; the load error lists them).
        ``chunk_seconds``: encode audio longer than this in independent chunks (upstream: 30 s), dropping a
        last chunk shorter than ``min_chunk_samples`` (upstream: 720). ``decode_chunk_seconds``: decode
        longer token sequences in windows of this length with ``decode_context_seconds`` of extra tokens on
        each side that are decoded and discarded (0 = one pass, as upstream).
        """

        model_dir: Optional[str] = None
        config_file: str = "config.yaml"
        checkpoint_file: str = "model.pt"
        allow_globals: list[str] = field(default_factory=list)
        # architecture (tiny defaults; UPSTREAM_75HZ holds the released model's)
        sample_rate: int = 24000
        downsamples: list[int] = field(default_factory=lambda: [8, 5, 4, 2])
        n_filters: int = 4
        dimension: int = 16
        lstm_layers: int = 2
        vq_bins: int = 4096
        num_quantizers: int = 1
        backbone_dim: int = 32
        intermediate_dim: int = 64
        num_layers: int = 2
        adanorm_num_embeddings: Optional[int] = 4
        layer_scale_init_value: Optional[float] = None
        n_fft: int = 1280
        hop_length: int = 320
        padding: str = "same"
        # runtime
        bandwidth_id: int = 0
        chunk_seconds: float = 30.0
        min_chunk_samples: int = 720
        decode_chunk_seconds: float = 0.0
        decode_context_seconds: float = 1.0

    def __init__(self, cfg: "WavTokenizerCodec.Config | None" = None, strict: bool = True) -> None:
        """``strict=False``: key problems with ``model_dir``'s checkpoint are left in ``key_problems``
        (missing, unexpected, shape mismatches) instead of raised, and no weights are loaded."""
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else self.Config()
        state: dict[str, Tensor] | None = None
        self.source: str = "random init"  # or the file __init__ loaded (load_component loads its weights later)
        self.load_notes: list[str] = []
        arch = {k: getattr(cfg, k) for k in ARCH_FIELDS}
        if cfg.model_dir is not None:
            arch, state, self.source = self._read_model_dir(cfg)
        self.arch = arch
        if arch["hop_length"] != int(np.prod(arch["downsamples"])):
            raise ConfigError(f"codec: head hop_length {arch['hop_length']} != prod(downsamples) "
                              f"{int(np.prod(arch['downsamples']))}; tokens and audio frames would disagree")
        if arch["backbone_dim"] % 32:
            raise ConfigError(f"codec.backbone_dim={arch['backbone_dim']} must be a multiple of 32 (GroupNorm(32))")
        self.feature_extractor = EncodecFeatures(arch["downsamples"], arch["n_filters"], arch["dimension"],
                                                 arch["vq_bins"], arch["num_quantizers"], arch["lstm_layers"])
        self.backbone = VocosBackbone(arch["dimension"], arch["backbone_dim"], arch["intermediate_dim"],
                                      arch["num_layers"], arch["layer_scale_init_value"],
                                      arch["adanorm_num_embeddings"])
        self.head = ISTFTHead(arch["backbone_dim"], arch["n_fft"], arch["hop_length"], arch["padding"])
        self.sample_rate = int(arch["sample_rate"])
        self.hop = int(arch["hop_length"])
        self.frame_rate = self.sample_rate / self.hop
        self.n_codebooks = 1
        self.cardinality = int(arch["vq_bins"])
        self.delays = (0,)
        self.key_problems: tuple[list[str], list[str], list[str]] = ([], [], [])
        if state is not None:
            missing, unexpected, shapes = self.key_problems = compare_keys(self.state_dict(), state)
            if (missing or unexpected or shapes) and not strict:
                return
            if missing or unexpected or shapes:
                raise CheckpointError(f"{self.source} does not match the WavTokenizer built from its config:"
                                      + _fmt("missing", missing) + _fmt("unexpected", unexpected)
                                      + _fmt("shape mismatch", shapes))
            self.load_state_dict(state, strict=True)
        self.eval()

    # -- loading -----------------------------------------------------------------------------------
    def _read_model_dir(self, cfg: "WavTokenizerCodec.Config") -> tuple[dict[str, Any], dict[str, Tensor], str]:
        d = find_wavtokenizer_dir(cfg.model_dir, cfg.config_file)  # type: ignore[arg-type]
        ours = d / "model.safetensors"
        meta = OmegaConf.to_container(OmegaConf.load(d / cfg.config_file)) if ours.is_file() else None
        if isinstance(meta, dict) and meta.get("kind") == "codec":  # a folder written by import_wavtokenizer
            if meta.get("name") != "wavtokenizer":
                raise CheckpointError(f"{d / cfg.config_file} holds codec {meta.get('name')!r}, not 'wavtokenizer'")
            saved = meta.get("config") or {}
            return {k: saved[k] for k in ARCH_FIELDS if k in saved} | {
                k: getattr(cfg, k) for k in ARCH_FIELDS if k not in saved}, load_weights(ours), str(ours)
        ckpt = d / cfg.checkpoint_file
        state, ignored, other = split_state(load_checkpoint(ckpt, cfg.allow_globals))
        arch = arch_from_upstream(read_upstream_config(d / cfg.config_file), state, str(d / cfg.config_file))
        self.load_notes = [f"{ckpt}: {len(state)} tensors loaded"]
        if ignored:
            self.load_notes.append(f"ignored {len(ignored)} keys under feature_extractor.encodec.decoder. "
                                   "(EnCodec's SEANet decoder, unused by WavTokenizer)")
        if other:
            self.load_notes.append(f"dropped {len(other)} training-only keys outside feature_extractor./backbone./"
                                   f"head. (e.g. {other[0]}), as upstream's from_pretrained_feat does")
        return arch, state, str(ckpt)

    def resolved_config(self) -> "WavTokenizerCodec.Config":
        """This codec's config with the architecture it was built with and no ``model_dir`` (what an imported
        folder stores next to its ``model.safetensors``)."""
        arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.arch.items()}
        return dataclasses.replace(self.cfg, model_dir=None, allow_globals=[], **arch)

    # -- tokens ------------------------------------------------------------------------------------
    def _mono(self, audio: Tensor, sample_rate: Optional[int]) -> Tensor:
        check_shapes("wavtokenizer", "audio", audio, ("B", "C", "L"))
        if audio.shape[-1] == 0:
            raise ShapeError("wavtokenizer: audio has 0 samples; nothing to encode")
        x = audio.float().mean(1)  # [B, L] mono
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            import soxr

            y = soxr.resample(np.ascontiguousarray(x.cpu().numpy().T), int(sample_rate), self.sample_rate, quality="HQ")
            x = torch.from_numpy(np.ascontiguousarray(y.T, dtype=np.float32)).reshape(x.shape[0], -1)
        return x.to(self.head.istft.window.device)

    def chunks(self, n_samples: int) -> list[tuple[int, int]]:
        """Sample ranges ``encode`` tokenises independently (upstream's ``split_wav_into_chunks``): back-to-back
        ``chunk_seconds`` pieces (rounded down to whole 320-sample frames); a last piece shorter than
        ``min_chunk_samples`` is dropped (not when it is the only one)."""
        size = int(self.cfg.chunk_seconds * self.sample_rate) // self.hop * self.hop  # whole frames (30 s: 2250)
        if self.cfg.chunk_seconds <= 0 or size <= 0 or n_samples <= size:
            return [(0, n_samples)]
        spans = [(s, min(s + size, n_samples)) for s in range(0, n_samples, size)]
        return [(a, b) for a, b in spans if b - a >= self.cfg.min_chunk_samples] or [(0, n_samples)]

    @torch.no_grad()
    def encode(self, audio: Tensor, sample_rate: Optional[int] = None) -> MusicTokens:
        """Audio ``[B, C, L]`` (at ``sample_rate``, default 24 kHz; channels averaged) -> codes long ``[B, 1, T]``
        with ``T = sum over chunks of ceil(chunk / 320)`` (``ceil(L / 320)`` up to 30 s)."""
        x = self._mono(audio, sample_rate)
        codes = [self.feature_extractor.encode(x[:, a:b]) for a, b in self.chunks(x.shape[-1])]  # each [B, T_c]
        return MusicTokens(torch.cat(codes, dim=-1).unsqueeze(1), frame_rate=self.frame_rate)

    def _decode_codes(self, codes: Tensor) -> Tensor:
        """Codes ``[B, T]`` -> audio ``[B, T * hop]`` in one pass."""
        feats = self.feature_extractor.codes_to_features(codes)  # [B, D, T]
        return self.head(self.backbone(feats, self.cfg.bandwidth_id))

    @torch.no_grad()
    def decode(self, tokens: MusicTokens | Tensor) -> Tensor:
        """Codes ``[B, 1, T]`` -> audio float ``[B, 1, T * 320]`` at 24 kHz. Frames where ``tokens.mask`` is
        False (padding) come out silent, whatever their code."""
        codes = tokens.codes if isinstance(tokens, MusicTokens) else tokens
        check_shapes("wavtokenizer", "codes", codes, ("B", 1, "T"))
        dev = self.head.istft.window.device
        codes = codes[:, 0].long().to(dev)  # [B, T]
        mask = tokens.mask.to(dev) if isinstance(tokens, MusicTokens) and tokens.mask is not None else None
        if mask is not None and not bool(mask.all()):
            audio = self.decode(codes.masked_fill(~mask, 0).unsqueeze(1))  # [B, 1, T * hop]
            return audio * mask.repeat_interleave(self.hop, dim=1).unsqueeze(1).to(audio.dtype)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cardinality):
            raise ShapeError(f"wavtokenizer: codes must lie in [0, {self.cardinality}), got [{int(codes.min())}, "
                             f"{int(codes.max())}] (id {self.cardinality} is the LM's EOS: strip it before decoding)")
        T = codes.shape[-1]
        win = int(round(self.cfg.decode_chunk_seconds * self.frame_rate))
        if win <= 0 or T <= win:
            return self._decode_codes(codes).unsqueeze(1)
        ctx, hop = int(round(self.cfg.decode_context_seconds * self.frame_rate)), self.hop
        out = []
        for s in range(0, T, win):  # overlap-discard: decode [s - ctx, e + ctx), keep [s, e)
            e = min(T, s + win)
            a, b = max(0, s - ctx), min(T, e + ctx)
            out.append(self._decode_codes(codes[:, a:b])[:, (s - a) * hop:(e - a) * hop])
        return torch.cat(out, dim=-1).unsqueeze(1)


def _fmt(label: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"\n  {label} ({len(items)}): " + ", ".join(items[:20]) + (" …" if len(items) > 20 else "")


def import_wavtokenizer(source: str | Path, out_dir: str | Path,
                        allow_globals: list[str] | None = None) -> ImportReport:
    """Upstream WavTokenizer folder -> ``out_dir/{model.safetensors, config.yaml}`` (a ``wavtokenizer`` codec
    that needs no ``model_dir``: ``load_component(out_dir)`` or ``codec.model_dir=out_dir``). Keys are checked
    by name; nothing is written when they do not match."""
    out = Path(out_dir)
    report = ImportReport(out_dir=out)
    cfg = WavTokenizerCodec.Config(model_dir=str(source), allow_globals=list(allow_globals or []))
    codec = WavTokenizerCodec(cfg, strict=False)  # a missing/unreadable file still raises, naming it
    report.missing, report.unexpected, report.shape_mismatches = codec.key_problems
    if not report.ok:
        report.notes.append(f"nothing written: {codec.source} does not match the WavTokenizer built from its config")
        return report
    report.notes += codec.load_notes
    save_component(out, codec, "codec", "wavtokenizer", codec.resolved_config())
    report.notes.append(f"wavtokenizer: {codec.cardinality} codes at {codec.frame_rate:g} Hz, "
                        f"{codec.sample_rate} Hz audio -> {out}")
    return report


def import_wavtokenizer_folder(model_dir: Path, out_dir: Path, report: ImportReport) -> None:
    """For the ``inspiremusic`` importer: import ``model_dir/wavtokenizer/`` into ``out_dir/wavtokenizer/``
    when present (key problems are added to ``report`` prefixed ``wavtokenizer/``), else add a note."""
    src = Path(model_dir) / "wavtokenizer"
    if not src.is_dir():
        report.notes.append(f"no wavtokenizer/ folder in {model_dir}: the LM's tokens cannot be turned into audio. "
                            "Copy InspireMusic's wavtokenizer/ (config.yaml + model.pt) there and import again, or "
                            "set codec.model_dir to it")
        return
    sub = import_wavtokenizer(src, Path(out_dir) / "wavtokenizer")
    report.missing += [f"wavtokenizer/{k}" for k in sub.missing]
    report.unexpected += [f"wavtokenizer/{k}" for k in sub.unexpected]
    report.shape_mismatches += [f"wavtokenizer/{k}" for k in sub.shape_mismatches]
    report.notes += sub.notes
