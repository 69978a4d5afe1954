"""Fan-out through submitit (``pip install 'vidmusic[slurm]'``): ``prepare`` shards as a Slurm job array, and
sweep points as jobs. ``launcher="slurm"`` submits to Slurm; ``"local"`` runs the same jobs as local
processes (submitit's ``LocalExecutor``; what the tests use).

Nothing here schedules: submitit writes the sbatch script, submits the array and pickles results back;
each job is an ordinary ``prepare(cfg, shard="i/n")`` (or one sweep point), so a failed or pre-empted job
is re-run by submitting again: finished shards are skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

LAUNCHERS = ("slurm", "local")


def executor(launcher: str, folder: str | Path, slurm: Mapping[str, Any] | None = None) -> Any:
    """A submitit executor writing its logs and pickles under ``folder``; ``slurm`` holds sbatch options
    without the ``slurm_`` prefix (``partition``, ``time`` in minutes, ``gpus_per_node``, ``array_parallelism``...)."""
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError("--launcher needs submitit: pip install 'vidmusic[slurm]'") from exc
    if launcher == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=int((slurm or {}).get("time", 60)))
        return ex
    if launcher != "slurm":
        raise ConfigError(f"launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    ex = submitit.SlurmExecutor(folder=str(folder))
    ex.update_parameters(**dict(slurm or {}))
    return ex


def _prepare_shard(cfg_yaml: str, root: str | None, shard: str, shard_size: int, workers: int) -> dict[str, Any]:
    from .data.prepare import prepare

    rep = prepare(OmegaConf.create(cfg_yaml), root, shard=shard, progress=False, shard_size=shard_size, workers=workers)
    return {"shard": shard, "items": rep.items, "bad": len(rep.bad), "written": rep.shards_written}


def prepare_array(cfg: DictConfig, root: str | Path | None, jobs: int, launcher: str, folder: str | Path,
                  shard_size: int, workers: int = 1, slurm: Mapping[str, Any] | None = None,
                  wait: bool = True) -> tuple[list[Any], list[dict[str, Any]], Any]:
    """Fit the codec here once (scan + manifest + ``codec/``, no shards), then submit ``prepare --shard i/jobs``
    for ``i < jobs`` as one array; with ``wait``, collect the jobs' summaries and finish here (the manifest
    and ``bad_items.json`` then include what every shard skipped). Returns (job handles, the jobs' summaries,
    the final :class:`~vidmusic_core.data.prepare.PrepareReport` or None without ``wait``)."""
    from .data.prepare import prepare

    prepare(cfg, root, shard=f"0/{jobs}", progress=False, shard_size=shard_size, workers=workers, setup_only=True)
    ex = executor(launcher, folder, slurm)
    text = OmegaConf.to_yaml(cfg)
    args = [(text, None if root is None else str(root), f"{i}/{jobs}", shard_size, workers) for i in range(jobs)]
    handles = ex.map_array(_prepare_shard, *zip(*args))
    if not wait:
        return handles, [], None
    results = [h.result() for h in handles]
    # all shards exist: this only merges what every job skipped into the manifest and bad_items.json
    return handles, results, prepare(cfg, root, progress=False, shard_size=shard_size, workers=workers)


def map_jobs(fn: Callable[..., Any], args: Sequence[Any], launcher: str, folder: str | Path,
             slurm: Mapping[str, Any] | None = None) -> list[Any]:
    """``[fn(a) for a in args]``, each as one job of an array; waits for the results."""
    ex = executor(launcher, folder, slurm)
    return [h.result() for h in ex.map_array(fn, list(args))]
