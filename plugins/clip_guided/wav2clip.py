"""The Wav2CLIP audio encoder (Wu et al. 2022, descriptinc/lyrebird-wav2clip) and the importer of its checkpoint.

Upstream: a ResNet-18 (``BasicBlock``, layers ``[2, 2, 2, 2]``, one input channel) over the log power spectrogram
(``n_fft`` 512, hop 353, Hann, power 2) of 16 kHz audio, standardised per call, average-pooled to 512 values, then
the ``audio_transform`` MLP (512 -> 512 -> 512, ReLU) that maps it into CLIP's image-embedding space (the
``clip_loss_x`` checkpoint ``ResNet_CX.ckpt``, which ``wav2clip.get_model()`` loads with ``transform=True``). Its
keys: ``state_dict`` of a Lightning module with ``audio_encoder.*`` (``conv1``, ``bn1``, ``layer1..4.{0,1}.{conv1,
bn1,conv2,bn2,downsample.0,downsample.1}``, an unused ``fc`` classifier, the ``spectrogram.window`` buffer),
``audio_transform.sequential.{0,3}.*`` and training-only parts (``image_transform.*``, the losses).

Here the same modules carry the same names under ``encoder.*`` and ``transform.*``; ``width`` (64 upstream) scales
the channels so tests build tiny random models in the real layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from vidmusic_core import CheckpointError, ConfigError, ImportReport, load_weights, save_weights

SAMPLE_RATE = 16000
CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Spectrogram(nn.Module):
    """torchaudio's ``Spectrogram(n_fft=512, hop_length=353)``: centred, reflect-padded, power 2 (its ``window``
    buffer is in the upstream state dict)."""

    def __init__(self, n_fft: int = 512, hop: int = 353) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: Tensor) -> Tensor:  # [B, L] -> [B, 1 + n_fft/2, F]
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        return spec.abs() ** 2


class AudioResNet(nn.Module):
    """Upstream ``ResNet(BasicBlock, [2, 2, 2, 2])`` of wav2clip: audio ``[B, L]`` -> ``[B, 8 * width]``."""

    def __init__(self, width: int = 64, n_classes: int = 309) -> None:
        super().__init__()
        self.spectrogram = Spectrogram()
        self.conv1 = nn.Conv2d(1, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        cin = width
        for i, c in enumerate(chans):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c)))
            cin = c
        self.fc = nn.Linear(8 * width, n_classes)  # the pre-training classifier: in the checkpoint, never used

    def forward(self, audio: Tensor) -> Tensor:
        x = torch.log(self.spectrogram(audio).unsqueeze(1) + 1e-7)  # [B, 1, F_bins, T]
        x = (x - x.mean()) / (x.std() + 1e-9)  # upstream standardises over the whole batch
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))  # [B, 8 * width]


class MLP(nn.Module):
    """Upstream ``MLPLayers(units=[d, d, d])``: ``sequential`` = Linear, ReLU, Dropout, Linear (keys 0 and 3)."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.sequential = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.sequential(x)


class Wav2CLIP(nn.Module):
    """Audio float ``[B, L]`` at 16 kHz -> an embedding ``[B, dim]`` in CLIP's image space (``dim = 8 * width``)."""

    def __init__(self, width: int = 64, n_classes: int = 309) -> None:
        super().__init__()
        self.width, self.n_classes = width, n_classes
        self.encoder = AudioResNet(width, n_classes)
        self.transform = MLP(8 * width)
        self.dim = 8 * width

    def forward(self, audio: Tensor) -> Tensor:
        return self.transform(self.encoder(audio))

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(self.state_dict(), out_dir / WEIGHTS)
        (out_dir / CONFIG).write_text(yaml.safe_dump({"format": "wav2clip/1", "width": self.width,
                                                      "n_classes": self.n_classes, "sample_rate": SAMPLE_RATE}))
        return out_dir

    @classmethod
    def from_dir(cls, path: str | Path) -> "Wav2CLIP":
        d = Path(path)
        if not (d / CONFIG).is_file() or not (d / WEIGHTS).is_file():
            raise ConfigError(f"{d} is not a Wav2CLIP directory ({CONFIG} + {WEIGHTS}); write one with "
                              "`vidmusic import wav2clip ResNet_CX.ckpt OUT_DIR`")
        cfg = yaml.safe_load((d / CONFIG).read_text())
        model = cls(int(cfg["width"]), int(cfg["n_classes"]))
        missing, unexpected = model.load_state_dict(load_weights(d / WEIGHTS), strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{d / WEIGHTS}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model.eval()


@dataclass
class ImportConfig:
    """Options of ``vidmusic import wav2clip``: none (the width is read from the checkpoint)."""


def import_wav2clip(source: Path, out_dir: Path, cfg: Any = None) -> ImportReport:
    """``ResNet_CX.ckpt`` (a Lightning checkpoint, read with ``weights_only=True``; or a bare state dict) ->
    ``out_dir`` with ``config.yaml`` + ``model.safetensors`` (``audio_encoder.*`` -> ``encoder.*``,
    ``audio_transform.*`` -> ``transform.*``; training-only keys are listed in the report's notes)."""
    source, out_dir = Path(source), Path(out_dir)
    try:
        ckpt = torch.load(str(source), map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling refusal or a broken file
        raise CheckpointError(f"cannot read {source} with torch.load(weights_only=True): {exc}. If the file holds "
                              "objects weights_only refuses (e.g. Lightning hyper-parameters), save its 'state_dict' "
                              "alone with a trusted PyTorch Lightning install and import that file") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "audio_encoder.conv1.weight" not in state:
        raise CheckpointError(f"{source} is not a Wav2CLIP checkpoint: no state_dict with audio_encoder.conv1.weight")
    if not any(k.startswith("audio_transform.") for k in state):
        raise CheckpointError(f"{source} has no audio_transform.*: it is not the clip_loss_x checkpoint "
                              "(ResNet_CX.ckpt) whose audio embedding lies in CLIP's image space")
    width = int(state["audio_encoder.conv1.weight"].shape[0])
    n_classes = int(state["audio_encoder.fc.weight"].shape[0]) if "audio_encoder.fc.weight" in state else 309
    model = Wav2CLIP(width, n_classes)
    mapped, skipped = {}, []
    for k, v in state.items():
        if k.startswith("audio_encoder."):
            mapped["encoder." + k[len("audio_encoder."):]] = v
        elif k.startswith("audio_transform."):
            mapped["transform." + k[len("audio_transform."):]] = v
        else:
            skipped.append(k)
    own = model.state_dict()
    mismatches = [f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}" for k, v in mapped.items()
                  if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    report = ImportReport(out_dir, missing, unexpected, mismatches,
                          [f"width {width} (embedding {8 * width})", f"training-only keys skipped: {len(skipped)}"])
    if report.ok:
        model.load_state_dict(mapped)
        model.save(out_dir)
    return report
