"""Which device a command runs on, checked against this torch build before any model is moved there."""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(device: str | None = None, where: str = "--device") -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: CUDA when there is one, else CPU) as a
    ``torch.device``; a name torch does not know, or a device this build or machine lacks, is a
    :class:`ConfigError` naming ``where`` the setting came from and what to do."""
    name = str(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{where}={name!r} is not a device torch knows ({str(exc).splitlines()[0]}); use cpu, "
                          "cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigError(f"{where}={name}: this torch {torch.__version__} ({build}) sees no CUDA device. "
                              "Install the CUDA build of torch (README, 'GPU users') on a machine with a GPU, or "
                              "use --device cpu: a model directory runs on either")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{where}={name}: there are {torch.cuda.device_count()} CUDA devices "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}={name}: MPS is not available in this torch build or on this machine; use cpu")
    return dev
