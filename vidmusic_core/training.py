"""The trainer: AdamW + warmup/cosine, clipping, accumulation, optional EMA and autocast, DDP under
torchrun, atomic checkpoints and exact resume.

A run directory holds ``config.yaml`` (the resolved run config), ``metrics.jsonl`` (one JSON line per
logged step) and ``checkpoints/last/`` = ``model/`` (the model directory generation loads, the fitted codec
included) + ``train_state.pt`` (optimizer, scheduler, RNG states, step; read with ``torch.load(weights_only=True)``)
+ with EMA on, ``model.safetensors`` (the raw training weights; the directory holds the average).
A checkpoint directory is written beside the old one and swapped in by rename, so a crash never leaves
a half-written checkpoint. ``train.fsdp=true`` under torchrun shards parameters, gradients and optimizer
state (PyTorch FSDP2, one unit at the model root); checkpoints still hold whole tensors. ``resume``
continues from ``last``: the data order is a function of (seed, epoch) and the step, so the resumed
loss curve equals the uninterrupted one. ``train.global_batch_size`` is split over the ranks and
``grad_accum`` micro-steps; a step's global batch does not depend on the world size, so a run also resumes
under another one (see :mod:`vidmusic_core.data.order`).
"""
from __future__ import annotations

import json
import sys
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from .checkpoint import load_state_strict, load_weights, save_weights
from .data.cache import ShardStore
from .data.dataset import CachedDataset, collate
from .data.stream import BatchStream
from .data.manifest import MANIFEST_NAME, read_manifest
from .data.order import StepBatches  # noqa: F401  (benchmarks import it from here)
from .data.prepare import cache_root, codec_store_dir, data_root, encoder_store_dir
from .errors import BatchError, VidmusicError
from .model import VidMusicModel, build_model
from .model_dir import MODEL_INDEX
from .devices import resolve_device
from .components import MusicCodec

CKPT_DIR = "checkpoints"
STATE_NAME = "train_state.pt"
EMA_NAME = "ema.safetensors"


class TrainingError(VidmusicError):
    """Training cannot continue (e.g. a NaN loss); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    seconds: float


# --------------------------------------------------------------------------------------------------
# distributed helpers
# --------------------------------------------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (0, 1 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if dist_info()[1] > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


# --------------------------------------------------------------------------------------------------
# pieces
# --------------------------------------------------------------------------------------------------
def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine to 0.1 at ``total``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def split_batch(n_items: int, batch_size: int, global_batch_size: int | None, world: int,
                grad_accum: int) -> tuple[int, int]:
    """(global batch, per-rank micro-batch): ``global_batch_size`` split over ``world`` ranks × ``grad_accum``
    micro-steps (a :class:`BatchError` when it does not divide or exceeds the data), or, unset,
    ``batch_size`` per rank and micro-step (capped to what ``n_items`` can fill, as on a tiny dataset)."""
    parts = world * grad_accum
    if global_batch_size is not None:
        g = int(global_batch_size)
        if g <= 0 or g % parts:
            raise BatchError(f"train.global_batch_size={g} does not split over {world} rank(s) × train.grad_accum="
                             f"{grad_accum}: use a positive multiple of {parts}")
        if g > n_items:
            raise BatchError(f"train.global_batch_size={g} is larger than the {n_items} training items")
        return g, g // parts
    g = min(int(batch_size) * parts, n_items // parts * parts)
    if g <= 0:
        raise BatchError(f"{n_items} training item(s) cannot give each of {world} rank(s) × train.grad_accum="
                         f"{grad_accum} micro-steps one example")
    return g, g // parts


def batch_stream(dataset: CachedDataset, global_batch: int, seed: int, start_step: int, rank: int, world: int,
                 num_workers: int = 0, pin_memory: bool = False, grad_accum: int = 1,
                 shuffle_groups: int = 0) -> BatchStream:
    """Collated micro-batches of this rank for optimizer steps ``start_step, …`` (:class:`StepBatches`; with
    ``shuffle_groups`` > 0 the epoch order is shuffled by row group, see :func:`epoch_order`), read by
    ``num_workers`` spawned processes that each own a share of the row groups; the batches do not depend on
    the worker count."""
    groups = dataset.row_groups() if shuffle_groups > 0 else None
    sampler = StepBatches(len(dataset), global_batch, seed, start_step, rank, world, grad_accum, groups,
                          shuffle_groups)
    return BatchStream(dataset, sampler, num_workers=num_workers, pin_memory=pin_memory, seed=seed)


def load_training_data(cfg: DictConfig, model: VidMusicModel, split: str = "train") -> CachedDataset:
    """The prepared cache of the run's data (raises with what to run when it is missing)."""
    root = data_root(cfg)
    cache = cache_root(cfg, root)
    items = read_manifest(cache / MANIFEST_NAME)
    edir, _ = encoder_store_dir(cfg, cache, model.encoder)
    cdir, _ = codec_store_dir(cfg, cache)
    return CachedDataset(items, ShardStore(edir), ShardStore(cdir), split=split)


VIDEO_KEYS = ("features", "local_times", "local_mask", "duration", "global_times")


def validation_losses(model: VidMusicModel, data: CachedDataset, frame_rate: float | None, batch_size: int,
                      device: torch.device) -> dict[str, float]:
    """``val_loss`` on ``data`` and ``val_loss_shuffled``: the same clips' music with another clip's video
    (clip i takes clip i+1's, by name, as the generation control does); ``val_condition_gap`` = shuffled −
    conditioned. Eval mode, no gradient, and the global RNG untouched (a resumed run stays identical)."""
    from .control import shuffled_sources

    order = sorted(range(len(data)), key=lambda i: data.items[i].name)
    examples = [data[i] for i in order]
    sources = shuffled_sources(examples)
    was_training = model.training
    model.eval()
    totals = {"val_loss": 0.0, "val_loss_shuffled": 0.0}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(0)  # backbones whose loss samples (flow matching: noise and times) see the same draws
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            n = len(chunk)
            totals["val_loss"] += float(model(_to_device(collate(chunk), device), frame_rate)) * n  # forward: FSDP hooks
            if sources is not None:
                swapped = [{**ex, **{k: src[k] for k in VIDEO_KEYS if k in src}}
                           for ex, src in zip(chunk, sources[s:s + batch_size])]
                totals["val_loss_shuffled"] += float(model(_to_device(collate(swapped), device), frame_rate)) * n
    model.train(was_training)
    out = {"val_loss": totals["val_loss"] / len(examples)}
    if sources is not None:
        out["val_loss_shuffled"] = totals["val_loss_shuffled"] / len(examples)
        out["val_condition_gap"] = out["val_loss_shuffled"] - out["val_loss"]
    return out


def _validation_data(cfg: DictConfig, model: VidMusicModel) -> CachedDataset | None:
    """The ``valid`` split when ``train.eval_every`` > 0 and the split has items, else None (with a note)."""
    if int(cfg.train.eval_every) <= 0:
        return None
    data = load_training_data(cfg, model, "valid")
    if len(data) == 0:
        print("train.eval_every is set but the data has no 'valid' split items: no validation loss",
              file=sys.stderr)
        return None
    return data


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer for ``run_dir/tensorboard`` (the optional ``tensorboard`` package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TrainingError("train.tensorboard=true needs the tensorboard package: pip install "
                            "'vidmusic[tensorboard]' (or set train.tensorboard=false)") from exc
    return SummaryWriter(str(run_dir / "tensorboard"))


def _full_states(model: nn.Module, opt: torch.optim.Optimizer, fsdp: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole (unsharded) model and optimizer state dicts; under FSDP every rank must call this."""
    if not fsdp:
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, opt, options=options)


@dataclass
class ModelDirSpec:
    """What a checkpoint's model directory needs besides the weights: the components' registered names and
    typed configs (as built), the fitted codec, and the run's generate settings."""

    names: dict[str, str]
    configs: dict[str, Any]
    codec: MusicCodec
    generate: dict[str, Any]
    run_dir: Path

    @classmethod
    def of(cls, cfg: DictConfig, model: Any, codec: MusicCodec, run_dir: Path) -> "ModelDirSpec":
        from omegaconf import OmegaConf

        from .config import component_from_config

        comp, ccfg = component_from_config(cfg, "codec")
        gen = OmegaConf.to_container(cfg.generate)
        assert isinstance(gen, dict)
        if gen.get("window_seconds") is None:  # the trained length
            gen["window_seconds"] = float(cfg.data.clip_seconds)
        return cls({**model.names, "codec": comp.name}, {**model.configs, "codec": ccfg}, codec, gen, run_dir)

    def write(self, out: Path, state: dict[str, torch.Tensor], step: int) -> Path:
        """The model directory of whole-model ``state`` (keys ``encoder.*``, ``layout.*``, ``backbone.*``)."""
        from .model_dir import write_model_dir

        states = {s: {k[len(s) + 1:]: v for k, v in state.items() if k.startswith(s + ".")}
                  for s in ("encoder", "layout", "backbone")}
        states["codec"] = self.codec.state_dict()
        return write_model_dir(out, states, self.names, self.configs, self.generate,
                               {"run": self.run_dir.name, "step": step})


def _atomic_checkpoint(run_dir: Path, model_state: dict[str, torch.Tensor], state: dict[str, Any],
                       ema: dict[str, torch.Tensor] | None = None, model_dir: "ModelDirSpec | None" = None) -> Path:
    """``checkpoints/last/``: the model directory that generation loads (``model/``, the EMA weights when EMA is on),
    the optimizer/RNG state, and the raw training weights as ``model.safetensors`` only where they differ from the
    directory's (EMA on, or no ``model_dir``), all swapped in at once: each tensor is stored once."""
    ckpts = run_dir / CKPT_DIR
    ckpts.mkdir(parents=True, exist_ok=True)
    tmp, last, old = ckpts / "last.tmp", ckpts / "last", ckpts / "last.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if model_dir is not None:
        model_dir.write(tmp / "model", {**model_state, **(ema or {})}, int(state["step"]))
    if model_dir is None or ema is not None:
        save_weights(model_state, tmp / "model.safetensors")
    if model_dir is None and ema is not None:
        save_weights(ema, tmp / EMA_NAME)
    torch.save(_canonical(state), tmp / STATE_NAME)
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        last.rename(old)
    tmp.rename(last)
    shutil.rmtree(old, ignore_errors=True)
    return last


def _canonical(obj: Any) -> Any:
    """A copy with fresh containers and interned strings, so the pickle's memo (and so the bytes of
    ``train_state.pt``) depends only on the values: a resumed optimizer state, loaded from a file, has other
    string objects than a fresh one."""
    if isinstance(obj, dict):
        return {(sys.intern(k) if isinstance(k, str) else k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return sys.intern(obj) if isinstance(obj, str) else obj


def latest_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/last`` (or ``last.old`` when a crash hit between the two renames)."""
    for name in ("last", "last.old"):
        p = run_dir / CKPT_DIR / name
        if (p / STATE_NAME).is_file() and ((p / "model.safetensors").is_file() or (p / "model" / MODEL_INDEX).is_file()):
            return p
    return None


def checkpoint_weights(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """The training weights of checkpoint ``ckpt`` and its EMA weights (None without EMA), named as in
    ``VidMusicModel``: from ``model.safetensors`` where it is there (EMA on, or a checkpoint from before model
    directories), else from the model directory ``model/``, which then holds the EMA weights."""
    from .model_dir import model_weights

    raw, in_dir = ckpt / "model.safetensors", (ckpt / "model" / MODEL_INDEX).is_file()
    if not raw.is_file():
        weights = model_weights(ckpt / "model") if in_dir else None
        if weights is None:
            raise TrainingError(f"{ckpt} has neither model.safetensors nor a model directory (model/{MODEL_INDEX}); "
                                "it is not a checkpoint written by vidmusic training")
        return weights, None
    if in_dir:
        return load_weights(raw), model_weights(ckpt / "model")
    return load_weights(raw), load_weights(ckpt / EMA_NAME) if (ckpt / EMA_NAME).is_file() else None


def warm_start(model: nn.Module, source: str | Path, modules: Sequence[str] = ()) -> str:
    """Load into ``model`` the tensors of ``source`` (a run directory: its last checkpoint; a model directory; one
    component written by ``vidmusic import``, e.g. a ``musicgen`` backbone; or a directory / file with
    ``model.safetensors``) whose name and shape match, limited to the top-level ``modules`` (``[]`` = all).
    Returns a one-line report; loading nothing is a :class:`TrainingError`."""
    from .model_dir import model_weights

    src = Path(source)
    imported = model_weights(src) if src.is_dir() and latest_checkpoint(src) is None else None
    if imported is not None:
        state = imported
    elif src.is_dir() and latest_checkpoint(src) is not None:
        src = latest_checkpoint(src)  # type: ignore[assignment]
        imported = checkpoint_weights(src)[0]
        state = imported
    elif src.is_dir():
        src = src / "model.safetensors"
    if imported is None and not src.is_file():
        raise TrainingError(f"train.init_from={str(source)!r}: no model.safetensors there (give a run directory "
                            "with checkpoints/last, a model directory, an imported component or a checkpoint "
                            "directory)")
    if imported is None:
        state = load_weights(src)
    own = model.state_dict()
    keep = [k for k in own if not modules or k.split(".", 1)[0] in modules]
    loaded = {k: state[k] for k in keep if k in state and state[k].shape == own[k].shape}
    shaped = sorted(k for k in keep if k in state and state[k].shape != own[k].shape)
    if not loaded:
        raise TrainingError(f"train.init_from={str(source)!r}: no tensor of {src} matches the model by name and shape"
                            + (f" within {list(modules)}" if modules else "") + "; is it the same backbone config?")
    model.load_state_dict(loaded, strict=False)
    fresh = len(keep) - len(loaded)
    return (f"init_from {src}: loaded {len(loaded)} of {len(keep)} tensors"
            + (f"; {fresh} start fresh" if fresh else "")
            + (f" (shape differs: {', '.join(shaped[:5])}{' …' if len(shaped) > 5 else ''})" if shaped else ""))


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines after ``step`` (they belong to work lost in a crash)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


# --------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------
def train(cfg: DictConfig, run_dir: str | Path, codec: MusicCodec, resume: bool = True, progress: bool = True,
          max_steps: int | None = None) -> TrainResult:
    """Train the model of ``cfg`` on its prepared data, writing checkpoints and metrics to ``run_dir``.

    ``max_steps`` stops early (for tests and for splitting work); the schedule still follows
    ``train.steps``. With ``resume`` an existing checkpoint is continued.
    """
    t0 = time.perf_counter()
    tc = cfg.train
    run_dir = Path(run_dir)
    rank, world = dist_info()
    device = resolve_device(str(cfg.run.device), "run.device")
    _init_distributed(device)
    torch.manual_seed(tc.seed)
    model = build_model(cfg, codec, seed=tc.seed).to(device)
    if not 0.0 <= float(tc.condition_dropout) < 1.0:
        raise TrainingError(f"train.condition_dropout={tc.condition_dropout}: use a fraction in [0, 1)")
    model.condition_dropout = float(tc.condition_dropout)
    model_spec = ModelDirSpec.of(cfg, model, codec, run_dir)
    data = load_training_data(cfg, model)
    val_data = _validation_data(cfg, model)
    step = 0
    metrics_path = run_dir / "metrics.jsonl"
    ckpt = latest_checkpoint(run_dir) if resume else None
    state = None
    ckpt_ema = None
    if ckpt is not None:  # weights go into the whole (unsharded) model first
        ckpt_weights, ckpt_ema = checkpoint_weights(ckpt)
        load_state_strict(model, ckpt_weights, str(ckpt))
        state = torch.load(ckpt / STATE_NAME, map_location="cpu", weights_only=True)
    elif tc.init_from:
        msg = warm_start(model, tc.init_from, list(tc.init_modules))
        if rank == 0:
            print(msg, file=sys.stderr)
    fsdp = bool(tc.fsdp) and world > 1
    if fsdp:
        if tc.ema > 0:
            raise TrainingError("train.ema with train.fsdp is not supported; turn one of them off")
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        # one FSDP unit: the root's forward (the loss) gathers every parameter, then reshards
        fully_shard(model, mesh=init_device_mesh(device.type, (world,)))
    params = model.trainable_parameters()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, tc.warmup_steps, tc.steps))
    if state is not None:
        if fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            # strict=False: parameters that never received a gradient (e.g. the text embedding when no
            # text is fed) have no AdamW state in the file, exactly as in the uninterrupted run
            set_optimizer_state_dict(model, opt, optim_state_dict=state["optimizer"],
                                     options=StateDictOptions(full_state_dict=True, strict=False))
        else:
            opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
        if rank == 0:
            _truncate_metrics(metrics_path, step)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()} if tc.ema > 0 else None
    if ema is not None and ckpt is not None and ckpt_ema is not None:
        ema = {k: ckpt_ema[k].to(device) for k in ema}
    ddp_model: nn.Module = model
    if world > 1 and not fsdp:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, find_unused_parameters=True)
    if tc.compile:
        ddp_model = torch.compile(ddp_model)  # type: ignore[assignment]
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
    use_amp = amp_dtype is not None and device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=amp_dtype) if use_amp else nullcontext()
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    end = min(tc.steps, max_steps if max_steps is not None else tc.steps)
    global_batch, micro = split_batch(len(data), tc.batch_size, tc.global_batch_size, world, tc.grad_accum)
    stream = batch_stream(data, global_batch, tc.seed, step, rank, world, num_workers=int(cfg.data.num_workers),
                          pin_memory=device.type == "cuda", grad_accum=tc.grad_accum,
                          shuffle_groups=int(cfg.data.shuffle_groups))
    model.train()

    from .progress import progress_bar

    bar = progress_bar(total=end, initial=step, unit="step", desc="train", disable=not progress or rank != 0)
    last_loss = float("nan")
    shown: dict[str, str] = {}  # the bar's postfix: loss, and the last validation loss
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    writer = _tensorboard(run_dir) if tc.tensorboard and rank == 0 else None
    while step < end:
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(tc.grad_accum):
            batch = _to_device(next(stream), device)
            with autocast:
                loss = ddp_model(batch, codec.frame_rate) / tc.grad_accum
            scaler.scale(loss).backward()
            total += float(loss.detach())
        if world > 1:  # the logged loss is the global batch's: the mean over the ranks
            total = _mean_over_ranks(total, device, world)
        if not math.isfinite(total):
            raise TrainingError(f"loss is {total} at step {step + 1}; training stopped. The last good checkpoint "
                                f"(step {step - step % tc.ckpt_every}) is in {run_dir / CKPT_DIR}. Lower "
                                "train.lr or check the data.")
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip) if tc.grad_clip > 0 else torch.tensor(0.0)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
            grad_norm = grad_norm.full_tensor()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if k in ema:
                        ema[k].lerp_(v, 1.0 - tc.ema)
        step += 1
        last_loss = total
        bar.update(1)
        val = {}
        if val_data is not None and (step % int(tc.eval_every) == 0 or step == end):
            # every rank computes it (FSDP's forward is collective); only rank 0 writes
            val = validation_losses(model, val_data, codec.frame_rate, micro, device)
            shown["val"] = f"{val['val_loss']:.4f}"
        shown["loss"] = f"{total:.4f}"
        bar.set_postfix(**shown)
        if rank == 0 and (step % tc.log_every == 0 or step == end or val):
            row = {"step": step, "loss": total, "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                   "time": time.perf_counter() - t0, **val}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if writer is not None:
                for key in ("loss", "lr", "grad_norm"):
                    writer.add_scalar(f"train/{key}", row[key], step)
                for key, value in val.items():
                    writer.add_scalar(f"valid/{key[4:]}", value, step)
        if step % tc.ckpt_every == 0 or step == end:
            model_state, opt_state = _full_states(model, opt, fsdp)  # collective under FSDP
            if rank == 0:
                _atomic_checkpoint(run_dir, model_state, {"optimizer": opt_state, "scheduler": sched.state_dict(),
                                                          "rng": _rng_state(), "step": step}, ema, model_spec)
    bar.close()
    if writer is not None:
        writer.close()
    if world > 1 and not fsdp:
        _check_replicas(model, run_dir, rank, world)
    elif fsdp:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(run_dir, step, last_loss, time.perf_counter() - t0)


def _mean_over_ranks(value: float, device: torch.device, world: int) -> float:
    """``value`` averaged over the ranks (every rank calls this, in the same order)."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world


def _check_replicas(model: nn.Module, run_dir: Path, rank: int, world: int) -> None:
    """All ranks must hold the same weights after DDP training; rank 0 records the checksums."""
    import torch.distributed as dist

    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    sums = [float(g) for g in gathered]
    if rank == 0:
        with open(run_dir / "ddp.json", "w") as f:
            json.dump({"world_size": world, "param_checksums": sums, "identical": len(set(sums)) == 1}, f)
    dist.barrier()
    if len(set(sums)) != 1:
        raise TrainingError(f"DDP replicas diverged: parameter checksums {sums}")


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif isinstance(v, dict):
            out[k] = {kk: vv.to(device) for kk, vv in v.items()}
        else:
            out[k] = v
    return out
