"""WavTokenizer's feature extractor: SEANet encoder + one Euclidean codebook (our code, upstream's key names).

Mirrors the parameter layout of FunAudioLLM/InspireMusic @0aefb55 (Apache-2.0):
``inspiremusic/wavtokenizer/decoder/feature_extractors.py`` (``EncodecFeatures``),
``encoder/modules/seanet.py`` (``SEANetEncoder``, ``SEANetResnetBlock``), ``encoder/modules/conv.py``
(``SConv1d`` -> ``NormConv1d`` -> weight-normed ``Conv1d``), ``encoder/modules/lstm.py`` (``SLSTM``) and
``encoder/quantization/{vq,core_vq}.py`` (``ResidualVectorQuantizer`` -> ``LanguageVectorQuantization`` ->
``VectorQuantization`` -> ``EuclideanCodebook``). So the keys are, under ``feature_extractor.``::

    encodec.encoder.model.{i}.conv.conv.{weight_g,weight_v,bias}          SConv1d (old-style weight_norm)
    encodec.encoder.model.{i}.{block.1,block.3,shortcut}.conv.conv.*      SEANetResnetBlock
    encodec.encoder.model.{n}.lstm.{weight,bias}_{ih,hh}_l{0,1}           SLSTM (nn.LSTM, 2 layers)
    encodec.quantizer.vq.layers.{q}._codebook.{inited,cluster_size,embed,embed_avg}

Upstream also holds a SEANet *decoder* under ``encodec.decoder.*`` that WavTokenizer never runs; it is
not built here (the loader drops those keys by name, see ``files.py``). Inference only: the codebook's
EMA/k-means training state is kept as buffers so checkpoints load strictly, but never updated.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Box(nn.Module):
    """A plain container whose attribute names give the state-dict path (``Box(vq=Box(layers=…))``)."""

    def __init__(self, **children: nn.Module) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


class WNConv1d(nn.Module):
    """``Conv1d`` under ``torch.nn.utils.weight_norm`` (dim 0), stored as upstream stores it:
    ``weight_g [O, 1, 1]``, ``weight_v [O, I, k]``, ``bias [O]``; weight = g * v / ||v|| (norm over I, k)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation)  # for torch's default init
        self.stride, self.dilation, self.kernel = stride, dilation, kernel
        self.weight_v = nn.Parameter(conv.weight.detach().clone())
        self.weight_g = nn.Parameter(conv.weight.detach().norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(conv.bias.detach().clone())

    def weight(self) -> Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight(), self.bias, self.stride, dilation=self.dilation)


def _pad1d_reflect(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect padding that also works when the input is shorter than the pad (upstream ``pad1d``:
    zero-extend on the right first, reflect, cut the extension off again)."""
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., : y.shape[-1] - extra]


class SConv1d(nn.Module):
    """Non-causal SEANet conv with "same"-style reflect padding: ``[B, I, L] -> [B, O, ceil(L / stride)]``.

    Padding (upstream ``SConv1d.forward``): total ``k_eff - stride`` split right = total // 2, left = the
    rest, plus extra right padding so the last window is full.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = Box(conv=WNConv1d(cin, cout, kernel, stride, dilation))  # key: conv.conv.*

    def forward(self, x: Tensor) -> Tensor:
        conv: WNConv1d = self.conv.conv  # type: ignore[assignment]
        k = (conv.kernel - 1) * conv.dilation + 1  # effective kernel
        total = k - conv.stride
        n_frames = (x.shape[-1] - k + total) / conv.stride + 1
        extra = (math.ceil(n_frames) - 1) * conv.stride + (k - total) - x.shape[-1]
        right = total // 2
        return conv(_pad1d_reflect(x, total - right, right + extra))


class SEANetResnetBlock(nn.Module):
    """``x + block(x)`` with block = ELU, conv k3 (dim -> dim/2, dilated), ELU, conv k1 (-> dim); the skip
    is a k1 conv (upstream ``true_skip=False``)."""

    def __init__(self, dim: int, dilation: int = 1, kernel: int = 3, compress: int = 2) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(nn.ELU(), SConv1d(dim, hidden, kernel, dilation=dilation),
                                   nn.ELU(), SConv1d(hidden, dim, 1))
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """LSTM over time on a conv layout with a skip: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.lstm(x.permute(2, 0, 1))  # [T, B, C]
        return y.permute(1, 2, 0) + x


class SEANetEncoder(nn.Module):
    """Audio ``[B, 1, L]`` -> latents ``[B, dimension, ceil(L / prod(ratios))]``.

    ``ratios`` in upstream's (decoder) order, applied reversed: [8, 5, 4, 2] downsamples by 2, 4, 5, 8
    (hop 320 = 75 Hz at 24 kHz). Upstream's ``EncodecFeatures`` fixes ``n_filters=32``,
    ``dimension=512``, ``lstm=2``, one residual layer per stage, ELU, kernels 7/3/7, compress 2.
    """

    def __init__(self, ratios: Sequence[int], n_filters: int = 32, dimension: int = 512, lstm_layers: int = 2,
                 n_residual_layers: int = 1, dilation_base: int = 2) -> None:
        super().__init__()
        self.hop_length = int(math.prod(ratios))
        mult = 1
        layers: list[nn.Module] = [SConv1d(1, n_filters, 7)]
        for ratio in reversed(list(ratios)):
            c = mult * n_filters
            layers += [SEANetResnetBlock(c, dilation=dilation_base ** j) for j in range(n_residual_layers)]
            layers += [nn.ELU(), SConv1d(c, 2 * c, 2 * ratio, stride=ratio)]
            mult *= 2
        if lstm_layers:
            layers.append(SLSTM(mult * n_filters, lstm_layers))
        layers += [nn.ELU(), SConv1d(mult * n_filters, dimension, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class EuclideanCodebook(nn.Module):
    """One codebook ``embed [V, D]`` (nearest entry by squared Euclidean distance). ``inited``,
    ``cluster_size`` and ``embed_avg`` are upstream's training buffers, kept so checkpoints load strictly."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        embed = torch.randn(codebook_size, dim)  # random entries (upstream: zeros until k-means on data)
        self.register_buffer("inited", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: Tensor) -> Tensor:
        """``x [N, D]`` -> nearest entry ``[N]`` (upstream's expression and argmax, so ties break alike)."""
        e = self.embed.t()  # [D, V]
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))  # [N, V]
        return dist.max(dim=-1).indices


class VectorQuantization(nn.Module):
    """Holds ``_codebook`` (no projection: codebook dim = latent dim, as upstream's config)."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size)


class EncodecFeatures(nn.Module):
    """``encode(audio [B, L]) -> codes [B, T]``; ``codes_to_features(codes [B, T]) -> [B, D, T]``.

    ``num_quantizers`` layers are held (to load upstream's checkpoints) but only layer 0 is used, as
    upstream's ``infer`` (``n_q = 1``) and ``codes_to_features`` do.
    """

    def __init__(self, ratios: Sequence[int], n_filters: int, dimension: int, vq_bins: int, num_quantizers: int = 1,
                 lstm_layers: int = 2) -> None:
        super().__init__()
        encoder = SEANetEncoder(ratios, n_filters, dimension, lstm_layers)
        layers = nn.ModuleList([VectorQuantization(dimension, vq_bins) for _ in range(num_quantizers)])
        self.encodec = Box(encoder=encoder, quantizer=Box(vq=Box(layers=layers)))
        self.hop_length = encoder.hop_length

    @property
    def codebook(self) -> EuclideanCodebook:
        return self.encodec.quantizer.vq.layers[0]._codebook  # type: ignore[index,return-value]

    def latents(self, audio: Tensor) -> Tensor:
        """Mono audio ``[B, L]`` -> encoder latents ``[B, D, ceil(L / hop)]``."""
        return self.encodec.encoder(audio.unsqueeze(1))

    def encode(self, audio: Tensor) -> Tensor:
        """Mono audio ``[B, L]`` -> codes long ``[B, ceil(L / hop)]``."""
        z = self.latents(audio)  # [B, D, T]
        b, d, t = z.shape
        return self.codebook.encode(z.transpose(1, 2).reshape(b * t, d)).view(b, t)

    def codes_to_features(self, codes: Tensor) -> Tensor:
        """Codes ``[B, T]`` -> codebook vectors ``[B, D, T]`` (the decoder's input)."""
        return F.embedding(codes, self.codebook.embed).transpose(1, 2)
