"""``rvq_mel``: the embedded default music codec, fitted on the training audio (no downloaded weights).

Encode: audio ``[B, C, L]`` -> mono mix -> log-mel ``[B, M, T]`` (STFT ``n_fft``/``hop``, librosa's
Slaney mel filters, ``log(mel_power + log_offset)``) -> residual quantisation: codebook 0 takes the
nearest entry to each frame, codebook ``k`` the nearest entry to what codebooks ``0..k-1`` left over
-> codes ``[B, K, T]``. Decode: the sum of the chosen entries is the log-mel estimate; ``decode_mel``
returns it, ``decode`` turns it into audio (non-negative mel -> STFT inversion, librosa's Griffin-Lim).

Frames: ``T = ceil(L / hop)``; frame ``t`` is centred on sample ``t * hop`` (time ``t / frame_rate``).
``decode`` returns ``T * hop`` samples. The codebooks are fitted by :meth:`RVQMelCodec.fit`
(residual k-means in torch, k-means++ init, deterministic for a seed) and stored as buffers, so
``state_dict`` / ``save_component`` carry them.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, VidmusicError
from ..components import MusicCodec
from ..types import MusicTokens, check_shapes


class CodecError(VidmusicError, ValueError):
    """Input a codec cannot use (empty audio, codes out of range, nothing to fit on)."""


class NotFittedError(CodecError):
    """``encode``/``decode`` on a codec whose codebooks were never fitted."""


# --------------------------------------------------------------------------------------------------
# k-means (torch, batched over frames, deterministic for a generator)
# --------------------------------------------------------------------------------------------------
def _nearest(x: Tensor, centers: Tensor, chunk: int = 32768) -> tuple[Tensor, Tensor]:
    """Nearest center of each row: ``x [N, M]``, ``centers [V, M]`` -> (index long ``[N]``, sq. dist ``[N]``)."""
    c2 = (centers * centers).sum(1)  # [V]
    idx, dist = [], []
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]  # [n, M]
        d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ centers.T + c2  # [n, V]
        m, i = d.min(1)
        idx.append(i)
        dist.append(m.clamp_min_(0.0))
    return torch.cat(idx), torch.cat(dist)


def _kmeanspp(x: Tensor, k: int, gen: torch.Generator, max_rows: int = 16384) -> Tensor:
    """k-means++ seeding: ``x [N, M]`` -> ``[k, M]`` (each new center drawn with probability ~ d^2), on a
    random subset of at most ``max(max_rows, 4 k)`` rows (the seeding is sequential in k)."""
    if x.shape[0] > max(max_rows, 4 * k):
        x = x[torch.randperm(x.shape[0], generator=gen, device=gen.device)[: max(max_rows, 4 * k)].to(x.device)]
    n = x.shape[0]
    x2 = (x * x).sum(1)  # [N]

    def sqdist(j: int) -> Tensor:  # [N] squared distances to row j
        return (x2 - 2.0 * (x @ x[j]) + x2[j]).clamp_min_(0.0)

    first = int(torch.randint(n, (1,), generator=gen, device=gen.device).item())
    centers = [x[first]]
    d2 = sqdist(first)
    for _ in range(1, k):
        w = d2.double()
        if not bool(w.sum() > 0):  # every point is already a center: uniform
            w = torch.ones_like(w)
        j = int(torch.multinomial(w, 1, generator=gen).item())
        centers.append(x[j])
        d2 = torch.minimum(d2, sqdist(j))
    return torch.stack(centers)


def kmeans(x: Tensor, k: int, iters: int, gen: torch.Generator, init: str = "kmeans++") -> Tensor:
    """Lloyd's k-means on ``x [N, M]`` -> centers ``[k, M]``.

    ``init``: ``kmeans++`` or ``random`` (k distinct rows). Stops early when no assignment changes.
    An empty cluster is re-seeded with the point farthest from its center (deterministic). With fewer
    than ``k`` distinct rows some centers are duplicates (harmless: the first one wins in ``argmin``).
    """
    n = x.shape[0]
    if init == "kmeans++":
        centers = _kmeanspp(x, k, gen)
    elif init == "random":  # k distinct rows (with repeats only when n < k)
        pick = torch.randperm(n, generator=gen, device=gen.device)[:k]
        if n < k:
            pick = torch.cat([pick, torch.randint(n, (k - n,), generator=gen, device=gen.device)])
        centers = x[pick.to(x.device)].clone()
    else:
        raise ConfigError(f"codec.kmeans_init must be 'kmeans++' or 'random', got {init!r}")
    prev: Tensor | None = None
    for _ in range(iters):
        idx, dist = _nearest(x, centers)
        if prev is not None and torch.equal(idx, prev):
            break
        prev = idx
        sums = torch.zeros_like(centers).index_add_(0, idx, x)  # [k, M]
        counts = torch.bincount(idx, minlength=k)  # [k]
        centers = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            far = torch.topk(dist, min(n, empty.numel())).indices
            far = far.repeat(math.ceil(empty.numel() / far.numel()))[: empty.numel()]
            centers[empty] = x[far]
    return centers


# --------------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------------
class RVQMelCodec(MusicCodec):
    """Log-mel residual k-means codec. ``encode``: audio ``[B, C, L]`` -> codes ``[B, K, ceil(L / hop)]``;
    ``decode``: codes ``[B, K, T]`` -> audio ``[B, 1, T * hop]``; ``decode_mel``: -> log-mel ``[B, M, T]``."""

    @dataclass
    class Config:
        """Options of ``rvq_mel`` (the ``codec.*`` config section)."""

        sample_rate: int = 16000
        n_fft: int = 1024
        hop: int = 320  # 16000 / 320 = 50 frames per second
        n_mels: int = 128  # 64 loses pitch (key) under Griffin-Lim; see docs/codecs/rvq_mel.md
        fmin: float = 0.0
        fmax: float | None = None  # None: sample_rate / 2
        log_offset: float = 1e-5  # log-mel = log(mel_power + log_offset)
        n_codebooks: int = 4
        cardinality: int = 256
        delays: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # MusicGen's pattern; one per codebook
        kmeans_iters: int = 20
        kmeans_init: str = "kmeans++"  # or "random"
        fit_max_frames: int = 200_000  # frames sampled (reservoir) from the fit audio
        seed: int = 0
        mel_inversion: str = "multiplicative"  # mel -> STFT magnitude: "multiplicative" or "nnls" (librosa)
        mel_inversion_iters: int = 30
        griffin_lim_iters: int = 32

    def __init__(self, cfg: "RVQMelCodec.Config | None" = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else self.Config()
        self.cfg = cfg
        delays = tuple(int(d) for d in cfg.delays)
        if len(delays) != cfg.n_codebooks or any(d < 0 for d in delays):
            raise ConfigError(
                f"codec.delays={list(delays)} must hold {cfg.n_codebooks} non-negative entries (one per "
                f"codebook, codec.n_codebooks={cfg.n_codebooks}); e.g. codec.delays={list(range(cfg.n_codebooks))}"
            )
        if cfg.n_codebooks < 1 or cfg.cardinality < 2 or cfg.hop < 1 or cfg.n_fft < cfg.hop:
            raise ConfigError(f"codec: need n_codebooks >= 1, cardinality >= 2, 1 <= hop <= n_fft; got {cfg}")
        if cfg.kmeans_init not in ("kmeans++", "random"):
            raise ConfigError(f"codec.kmeans_init must be 'kmeans++' or 'random', got {cfg.kmeans_init!r}")
        if cfg.mel_inversion not in ("multiplicative", "nnls"):
            raise ConfigError(f"codec.mel_inversion must be 'multiplicative' or 'nnls', got {cfg.mel_inversion!r}")
        self.sample_rate = int(cfg.sample_rate)
        self.frame_rate = cfg.sample_rate / cfg.hop
        self.n_codebooks = int(cfg.n_codebooks)
        self.cardinality = int(cfg.cardinality)
        self.delays = delays
        self.hop = int(cfg.hop)
        self.n_mels = int(cfg.n_mels)
        self.fit_info: dict[str, Any] = {}

        import librosa  # local: keeps `import vidmusic_core.codecs` light

        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                 fmax=cfg.fmax)  # [M, F]
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("codebooks", torch.zeros(cfg.n_codebooks, cfg.cardinality, cfg.n_mels))  # [K, V, M]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # -- features ----------------------------------------------------------------------------------
    def num_frames(self, n_samples: int) -> int:
        """Frames ``encode`` makes from ``n_samples`` samples: ``ceil(n_samples / hop)``."""
        return math.ceil(n_samples / self.hop)

    def log_mel(self, audio: Tensor) -> Tensor:
        """Audio ``[B, C, L]`` (channels are averaged) -> log-mel ``[B, M, ceil(L / hop)]``, float32."""
        check_shapes("rvq_mel", "audio", audio, ("B", "C", "L"))
        if audio.shape[-1] == 0:
            raise CodecError("rvq_mel: audio has 0 samples; nothing to encode")
        dev = self.codebooks.device
        x = audio.to(device=dev, dtype=torch.float32).mean(1)  # [B, L]
        spec = torch.stft(x, self.cfg.n_fft, self.hop, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)  # [B, F, 1 + L // hop]
        power = spec.real ** 2 + spec.imag ** 2
        power = power[..., : self.num_frames(x.shape[-1])]  # [B, F, T]
        return torch.log(self.mel_fb @ power + self.cfg.log_offset)  # [B, M, T]

    # -- fitting -----------------------------------------------------------------------------------
    def _as_audio(self, item: Any) -> Tensor:
        """One fit item ``[L]``, ``[C, L]`` or ``[B, C, L]`` (tensor or array) -> ``[B, C, L]``."""
        x = torch.as_tensor(np.asarray(item) if not isinstance(item, Tensor) else item)
        if x.dim() == 1:
            x = x.view(1, 1, -1)
        elif x.dim() == 2:
            x = x.unsqueeze(0)
        elif x.dim() != 3:
            raise CodecError(f"rvq_mel.fit: audio items must be [L], [C, L] or [B, C, L], got shape {list(x.shape)}")
        return x

    @torch.no_grad()
    def _collect_frames(self, audio: Iterable[Any], max_frames: int) -> tuple[Tensor, int]:
        """Log-mel frames ``[N <= max_frames, M]`` of every item, a uniform reservoir sample when there are
        more; also returns how many frames were seen."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        buf: Tensor | None = None
        seen = 0
        for item in audio:
            x = self._as_audio(item)
            if x.shape[-1] == 0:
                continue
            frames = self.log_mel(x).transpose(1, 2).reshape(-1, self.n_mels)  # [B * T, M]
            if buf is None or buf.shape[0] < max_frames:  # fill the reservoir
                take = max_frames - (0 if buf is None else buf.shape[0])
                head = frames[:take]
                buf = head.clone() if buf is None else torch.cat([buf, head])
                seen += head.shape[0]
                frames = frames[take:]
            if frames.shape[0]:  # Algorithm R, vectorised: frame i replaces slot j ~ U[0, i] if j < max_frames
                pos = torch.arange(seen, seen + frames.shape[0], dtype=torch.float64)
                j = (torch.rand(frames.shape[0], generator=gen, dtype=torch.float64) * (pos + 1)).long()
                keep = (j < max_frames).nonzero().flatten()
                if keep.numel():  # within a chunk the last frame drawing a slot wins
                    slots, inv = torch.unique(j[keep], return_inverse=True)
                    last = torch.full_like(slots, -1).scatter_reduce_(0, inv, keep, reduce="amax")
                    buf[slots.to(buf.device)] = frames[last.to(frames.device)]
                seen += frames.shape[0]
        if buf is None:
            raise CodecError("rvq_mel.fit: the audio iterable yielded no samples")
        return buf, seen

    @torch.no_grad()
    def fit(self, audio: Iterable[Any], max_frames: int | None = None) -> None:
        """Fit the ``K`` codebooks on ``audio`` (an iterable of ``[L]``, ``[C, L]`` or ``[B, C, L]`` at
        ``sample_rate``): residual k-means on at most ``max_frames`` (default ``cfg.fit_max_frames``)
        log-mel frames. Deterministic for ``cfg.seed``. Sets ``fit_info`` (frames, seconds, residual MSE)."""
        t0 = time.perf_counter()
        frames, seen = self._collect_frames(audio, int(max_frames or self.cfg.fit_max_frames))
        if frames.shape[0] < self.cardinality:
            warnings.warn(
                f"rvq_mel.fit: only {frames.shape[0]} log-mel frames ({frames.shape[0] / self.frame_rate:.1f} s of "
                f"audio) for codec.cardinality={self.cardinality} entries per codebook; codebooks will hold "
                f"duplicates. Fit on at least {self.cardinality / self.frame_rate:.0f} s of audio (far more is "
                "better).",
                stacklevel=2,
            )
        gen = torch.Generator(device=frames.device).manual_seed(self.cfg.seed)
        residual = frames.clone()
        books, mse = [], []
        for _ in range(self.n_codebooks):
            c = kmeans(residual, self.cardinality, self.cfg.kmeans_iters, gen, self.cfg.kmeans_init)  # [V, M]
            idx, _ = _nearest(residual, c)
            residual -= c[idx]
            books.append(c)
            mse.append(float((residual ** 2).mean()))
        self.codebooks.copy_(torch.stack(books))
        self.fitted.fill_(True)
        self.fit_info = {"frames_used": int(frames.shape[0]), "frames_seen": seen,
                         "seconds_seen": seen / self.frame_rate, "residual_mse": mse,
                         "fit_seconds": time.perf_counter() - t0}

    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has learnt the codebooks (``prepare`` fits on the train split)."""
        return bool(self.fitted)

    def _check_fitted(self, what: str) -> None:
        if not bool(self.fitted):
            raise NotFittedError(
                f"rvq_mel.{what}: the codec is not fitted; its codebooks are learnt from your training audio. "
                "Run `vidmusic prepare` (which fits it), call codec.fit(audio_iterable), or load a fitted "
                "codec with vidmusic_core.load_component(dir)."
            )

    # -- tokens ------------------------------------------------------------------------------------
    @torch.no_grad()
    def quantize(self, log_mel: Tensor) -> Tensor:
        """Log-mel ``[B, M, T]`` -> codes long ``[B, K, T]`` (nearest entry of each residual codebook)."""
        self._check_fitted("encode")
        check_shapes("rvq_mel", "log_mel", log_mel, ("B", self.n_mels, "T"))
        b, _, t = log_mel.shape
        residual = log_mel.to(self.codebooks).transpose(1, 2).reshape(-1, self.n_mels)  # [B * T, M]
        codes = []
        for book in self.codebooks:  # [V, M]
            idx, _ = _nearest(residual, book)
            residual = residual - book[idx]
            codes.append(idx)
        return torch.stack(codes).view(self.n_codebooks, b, t).transpose(0, 1).contiguous()  # [B, K, T]

    @torch.no_grad()
    def encode(self, audio: Tensor) -> MusicTokens:
        """Audio ``[B, C, L]`` at ``sample_rate`` -> tokens ``codes [B, K, ceil(L / hop)]`` at ``frame_rate``."""
        self._check_fitted("encode")
        return MusicTokens(self.quantize(self.log_mel(audio)), frame_rate=self.frame_rate)

    @torch.no_grad()
    def decode_mel(self, tokens: MusicTokens, n_codebooks: int | None = None) -> Tensor:
        """Tokens ``[B, K, T]`` -> log-mel ``[B, M, T]``: the sum of the first ``n_codebooks`` (default all)
        codebooks' entries. Frames where ``tokens.mask`` is False are set to silence (``log(log_offset)``)."""
        self._check_fitted("decode")
        codes = tokens.codes
        check_shapes("rvq_mel", "codes", codes, ("B", self.n_codebooks, "T"))
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise CodecError(f"rvq_mel.decode: n_codebooks must be in 1..{self.n_codebooks}, got {n}")
        codes = codes[:, :n].to(self.codebooks.device)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cardinality):
            raise CodecError(
                f"rvq_mel.decode: codes must lie in [0, {self.cardinality}), got range "
                f"[{int(codes.min())}, {int(codes.max())}] (undo the delay pattern / drop special tokens first)"
            )
        mel = sum(self.codebooks[k][codes[:, k]] for k in range(n))  # [B, T, M]
        mel = mel.transpose(1, 2).contiguous()  # [B, M, T]
        assert tokens.mask is not None
        silence = math.log(self.cfg.log_offset)
        return mel.masked_fill(~tokens.mask.to(mel.device).unsqueeze(1), silence)

    @torch.no_grad()
    def mel_to_stft(self, mel_power: Tensor) -> Tensor:
        """Mel power ``[B, M, T]`` -> non-negative STFT magnitude ``[B, F, T]`` (``F = n_fft / 2 + 1``).

        ``mel_inversion="multiplicative"``: ``mel_inversion_iters`` Lee-Seung updates of the non-negative
        least-squares problem ``min |fb S - mel|``, started from ``fb^T mel``; the dense solution it finds
        keeps pitch and decodes better than the sparse one of ``"nnls"`` (librosa's ``mel_to_stft``, also
        ~10x slower); see docs/codecs/rvq_mel.md.
        """
        cfg = self.cfg
        if cfg.mel_inversion == "nnls":
            import librosa

            mag = librosa.feature.inverse.mel_to_stft(mel_power.cpu().numpy(), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                                      power=2.0, fmin=cfg.fmin, fmax=cfg.fmax)
            return torch.from_numpy(mag).to(mel_power)
        fb = self.mel_fb.to(mel_power)  # [M, F]
        num = fb.T @ mel_power  # [B, F, T]
        spec = num.clamp_min(1e-12)
        for _ in range(cfg.mel_inversion_iters):
            spec = spec * num / (fb.T @ (fb @ spec) + 1e-12)
        return spec.sqrt()

    @torch.no_grad()
    def mel_to_audio(self, log_mel: Tensor) -> Tensor:
        """Log-mel ``[B, M, T]`` -> audio ``[B, 1, T * hop]``: :meth:`mel_to_stft`, then librosa's
        Griffin-Lim (``griffin_lim_iters`` iterations, phase initialised from ``seed``)."""
        import librosa

        cfg = self.cfg
        check_shapes("rvq_mel", "log_mel", log_mel, ("B", self.n_mels, "T"))
        mel = (log_mel.detach().float().exp() - cfg.log_offset).clamp_min(0.0)  # [B, M, T] power
        mag = self.mel_to_stft(mel.to(self.mel_fb.device)).cpu().numpy()  # [B, F, T]
        # a centred STFT of T * hop samples has T + 1 frames: repeat the last one (centred past the end)
        mag = np.concatenate([mag, mag[..., -1:]], axis=-1)  # [B, F, T + 1]
        y = librosa.griffinlim(mag, n_iter=cfg.griffin_lim_iters, hop_length=cfg.hop, n_fft=cfg.n_fft,
                               window="hann", center=True, length=log_mel.shape[-1] * cfg.hop,
                               random_state=cfg.seed)  # [B, T * hop]
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).unsqueeze(1).to(log_mel.device)

    def decode(self, tokens: MusicTokens, n_codebooks: int | None = None) -> Tensor:
        """Tokens ``[B, K, T]`` -> mono audio ``[B, 1, T * hop]`` at ``sample_rate`` (Griffin-Lim)."""
        return self.mel_to_audio(self.decode_mel(tokens, n_codebooks))


def log_mel_distance(a: Tensor, b: Tensor) -> float:
    """Mean absolute difference of two log-mel tensors of equal shape (natural-log units)."""
    if a.shape != b.shape:
        raise CodecError(f"log_mel_distance: shapes differ, {list(a.shape)} vs {list(b.shape)}")
    return float((a.float() - b.float()).abs().mean())


__all__ = ["CodecError", "NotFittedError", "RVQMelCodec", "kmeans", "log_mel_distance"]
