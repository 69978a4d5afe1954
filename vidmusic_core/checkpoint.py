"""Our checkpoint format: ``model.safetensors`` + ``config.yaml`` per component, written atomically."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

RELATIVE_PATH = "vidmusic.relative_path"  # dataclass field metadata: a local path, relative to the component dir


def path_field(default: str | None = None) -> Any:
    """A config field holding a local directory or file. ``save_component`` stores it as given; a relative value
    is taken relative to the component's directory when it is loaded (``load_component``), so a model directory
    that carries its files (an EnCodec, a tokenizer) still works when moved or copied."""
    return dataclasses.field(default=default, metadata={RELATIVE_PATH: True})


def resolve_paths(cfg: Any, base: str | os.PathLike[str]) -> Any:
    """``cfg`` with each relative :func:`path_field` taken relative to ``base``."""
    if not dataclasses.is_dataclass(cfg):
        return cfg
    changed = {f.name: str(Path(base) / getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
               if f.metadata.get(RELATIVE_PATH) and getattr(cfg, f.name) and not Path(getattr(cfg, f.name)).is_absolute()}
    return dataclasses.replace(cfg, **changed) if changed else cfg

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (atomic on POSIX).

    A crash leaves at most a ``.tmp`` file, never a half-written ``path`` that is later read as whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write a state dict as safetensors, atomically (tied tensors are stored once per key)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file is a :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError
        raise CheckpointError(f"cannot read weights {path}: {exc}. Is it a complete safetensors file?") from exc


def save_component(out_dir: str | os.PathLike[str], module: torch.nn.Module | dict[str, torch.Tensor], kind: str,
                   name: str, cfg: Any) -> Path:
    """Write ``model.safetensors`` (``module``'s state dict, or a state dict) + ``config.yaml`` (``kind``,
    ``name``, ``config``) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(module.state_dict() if isinstance(module, torch.nn.Module) else module, out / WEIGHTS_NAME)
    conf = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else (cfg or {})
    text = OmegaConf.to_yaml(OmegaConf.create({"kind": kind, "name": name, "config": conf}))
    with atomic_path(out / CONFIG_NAME) as tmp:
        tmp.write_text(text)
    return out


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        def fmt(label: str, items: list[str]) -> str:
            return f"\n  {label} ({len(items)}): " + ", ".join(items[:20]) + (" …" if len(items) > 20 else "")

        msg = f"checkpoint {where} does not match the model:"
        msg += (fmt("missing", missing) if missing else "") + (fmt("unexpected", unexpected) if unexpected else "")
        msg += fmt("shape mismatch", shapes) if shapes else ""
        raise CheckpointError(msg)
    module.load_state_dict(state, strict=True)


def read_component_meta(path: str | os.PathLike[str], expected_kind: str | None = None) -> dict[str, Any]:
    """The ``config.yaml`` of a component directory (``kind``, ``name``, ``config``), checked for its kind."""
    cfg_file = Path(path) / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{Path(path)} has no {CONFIG_NAME}; expected a directory written by save_component")
    meta = OmegaConf.to_container(OmegaConf.load(cfg_file))
    if not isinstance(meta, dict):
        raise CheckpointError(f"{cfg_file} is not a mapping; expected the kind/name/config written by save_component")
    if expected_kind is not None and meta.get("kind") != expected_kind:
        raise CheckpointError(f"{cfg_file} holds a {meta.get('kind')!r}, expected a {expected_kind!r}")
    return meta  # type: ignore[return-value]


def load_component(path: str | os.PathLike[str], expected_kind: str | None = None,
                   meta: dict[str, Any] | None = None) -> torch.nn.Module:
    """Build a component from ``config.yaml`` (or its already-read ``meta``, :func:`read_component_meta`) through
    the registry and load ``model.safetensors`` strictly."""
    from .config import component_config  # local: config imports the registry
    from .plugins import get_component

    d = Path(path)
    cfg_file = d / CONFIG_NAME
    meta = read_component_meta(d, expected_kind) if meta is None else meta
    kind, name = meta.get("kind"), meta.get("name")
    comp = get_component(str(kind), str(name))
    cfg = component_config(comp, meta.get("config") or {}, where=str(cfg_file))
    cfg = resolve_paths(cfg, d)  # relative path fields in config.yaml: relative to its directory
    module = comp.build(cfg)
    load_state_strict(module, load_weights(d / WEIGHTS_NAME), str(d / WEIGHTS_NAME))
    return module
