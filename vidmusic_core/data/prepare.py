"""``vidmusic prepare``: manifest + cached frozen encoder features + codec tokens, resumable.

Layout under the cache directory (``data.cache_dir``, default ``<data root>/.vidmusic-cache``)::

    manifest.jsonl          every usable item (see manifest.py)
    bad_items.json          items that were skipped, with the reason
    encoder-<name>-<hash>/  ShardStore of the encoder's frozen features (+ frame times)
    codec-<name>-<hash>/    ShardStore of music tokens (``codes``) or, for latent codecs, float16 ``latents
                            [T_a, C]``; ``codec/`` holds a fitted codec (e.g. rvq_mel, mel_latent)

``<hash>`` covers only the options that determine that store, so changing an encoder option
invalidates only that encoder's cache. Work is split into shards of ``shard_size`` items (sorted by
name); ``--shard i/n`` takes shards ``k`` with ``k % n == i``; shards already on disk are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from ..checkpoint import atomic_path, load_component, save_component
from ..config import component_from_config
from .cache import ShardStore, config_key
from .manifest import MANIFEST_NAME, BadItem, DataError, Item, scan, write_manifest

SHARD_SIZE = 32


@dataclass
class PrepareReport:
    cache_dir: Path
    items: int
    bad: list[BadItem]
    encoder_store: Path | None = None
    codec_store: Path | None = None
    shards_written: list[str] = field(default_factory=list)
    seconds: float = 0.0


def data_root(cfg: DictConfig, override: str | Path | None = None) -> Path:
    root = override or cfg.data.root
    if root is None:
        raise DataError("no data folder: pass DATA_DIR or set data.root")
    return Path(root)


def cache_root(cfg: DictConfig, root: Path) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else root / ".vidmusic-cache"


def encoder_store_dir(cfg: DictConfig, cache: Path, encoder: Any) -> tuple[Path, dict[str, Any]]:
    """Directory and identity of the encoder feature cache."""
    meta = {"kind": "encoder", "name": cfg.encoder.name, "features": encoder.feature_config(),
            "frame_spec": dataclasses.asdict(encoder.frame_spec), "clip_seconds": cfg.data.clip_seconds}
    return cache / f"encoder-{cfg.encoder.name}-{config_key(meta)}", meta


def codec_store_dir(cfg: DictConfig, cache: Path) -> tuple[Path, dict[str, Any]]:
    """Directory and identity of the codec token cache (the whole codec config + clip length)."""
    meta = {"kind": "codec", "codec": dict(cfg.codec), "clip_seconds": cfg.data.clip_seconds}
    return cache / f"codec-{cfg.codec.name}-{config_key(meta)}", meta


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); None -> (0, 1)."""
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise DataError(f"--shard {spec!r} must look like i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise DataError(f"--shard {spec!r}: need 0 <= i < n")
    return i, n


def _chunks(items: Sequence[Item], size: int) -> list[list[Item]]:
    ordered = sorted(items, key=lambda it: it.name)
    return [ordered[s:s + size] for s in range(0, len(ordered), size)]


def _encoder_row(encoder: Any, item: Item, clip_seconds: float) -> dict[str, Any]:
    from ..video import load_frames

    frames = load_frames([item.video], encoder.frame_spec, 0.0, clip_seconds)
    with torch.inference_mode():
        feats = encoder.frozen_features(frames)
    row: dict[str, Any] = {"key": item.content_hash, "name": item.name}
    for k, v in feats.items():
        row[k] = v[0].float().cpu().numpy()
    row["local_times"] = frames.local_times[0].numpy().astype(np.float32)
    row["local_mask"] = frames.local_mask[0].numpy()
    if frames.global_times is not None:
        row["global_times"] = frames.global_times[0].numpy().astype(np.float32)
    dur = float(frames.duration[0]) if frames.duration is not None else clip_seconds
    row["duration"] = np.array([min(dur, clip_seconds)], dtype=np.float32)
    return row


def load_item_audio(item: Item, sample_rate: int, clip_seconds: float) -> torch.Tensor:
    """The item's music as mono float audio ``[1, L]`` (the first ``clip_seconds``)."""
    from ..audio import load_audio

    if item.music_kind == "midi":
        raise DataError(f"{item.music}: an audio codec cannot encode MIDI; give a rendered .wav beside it "
                        "or use a symbolic codec")
    audio = load_audio(item.music, sample_rate, mono=True)  # [1, L]
    return torch.from_numpy(np.ascontiguousarray(audio[:, : int(round(clip_seconds * sample_rate))]))


def item_midi(item: Item, codec_name: str) -> str:
    """The MIDI file of ``item`` for a symbolic codec; a clear error when the item has none."""
    if item.midi:
        return item.midi
    if item.music_kind == "midi":
        return item.music
    raise DataError(f"{item.video}: codec {codec_name!r} is symbolic and reads MIDI, but there is no "
                    f"{Path(item.video).stem}.mid beside the video; add one, or use an audio codec (rvq_mel)")


def fit_or_load_codec(cfg: DictConfig, store_dir: Path, items: Sequence[Item], progress: bool) -> Any:
    """Build the codec; if it needs fitting (``codec.is_fitted()`` False), fit it on the train split once and
    save it under ``store_dir/codec`` (later calls and other shards load that)."""
    saved = store_dir / "codec"
    if (saved / "model.safetensors").is_file():
        return load_component(saved, expected_kind="codec")
    comp, ccfg = component_from_config(cfg, "codec")
    codec = comp.build(ccfg)
    if not codec.is_fitted():
        train = [it for it in items if it.split == "train"] or list(items)
        audio = (load_item_audio(it, codec.sample_rate, cfg.data.clip_seconds) for it in sorted(train, key=lambda i: i.name))
        codec.fit(audio)
    save_component(saved, codec, "codec", comp.name, ccfg)
    return codec


def load_codec(cfg: DictConfig, progress: bool = True) -> Any:
    """The run's codec as ``prepare`` left it (fitted on the train split and saved on first use)."""
    from .manifest import read_manifest

    cache = cache_root(cfg, data_root(cfg))
    cdir, _ = codec_store_dir(cfg, cache)
    return fit_or_load_codec(cfg, cdir, read_manifest(cache / MANIFEST_NAME), progress)


def prepare(cfg: DictConfig, root: str | Path | None = None, shard: str | None = None, strict: bool = False,
            progress: bool = True, shard_size: int = SHARD_SIZE,
            on_shard: Callable[[str], None] | None = None) -> PrepareReport:
    """Scan ``root``, write the manifest, and cache the encoder's frozen features and the codec's tokens."""
    t0 = time.perf_counter()
    root = data_root(cfg, root)
    cache = cache_root(cfg, root)
    i_shard, n_shard = parse_shard(shard)
    items, bad = scan(root)
    if bad and strict:
        raise DataError(f"{len(bad)} bad item(s) under {root} (--strict): " +
                        "; ".join(f"{b.name}: {b.reason}" for b in bad[:5]))
    if not items:
        raise DataError(f"no usable items under {root}: " + "; ".join(f"{b.name}: {b.reason}" for b in bad[:5]))
    cache.mkdir(parents=True, exist_ok=True)
    write_manifest(items, cache / MANIFEST_NAME)
    with atomic_path(cache / "bad_items.json") as tmp:
        tmp.write_text(json.dumps([dataclasses.asdict(b) for b in bad], indent=1))
    report = PrepareReport(cache, len(items), bad)
    chunks = _chunks(items, shard_size)
    mine = [k for k in range(len(chunks)) if k % n_shard == i_shard]

    stores: list[tuple[ShardStore, Callable[[Item], dict[str, Any]], dict[str, Any]]] = []
    if cfg.encoder.name is not None:
        comp, ecfg = component_from_config(cfg, "encoder")
        torch.manual_seed(0)
        encoder = comp.build(ecfg).eval()
        edir, emeta = encoder_store_dir(cfg, cache, encoder)
        estore = ShardStore(edir, emeta)
        report.encoder_store = edir
        if any(not estore.has_shard(k) for k in mine):
            stores.append((estore, lambda it: _encoder_row(encoder, it, cfg.data.clip_seconds),
                           {"float_fields": ("local_times", "global_times", "duration")}))
    if cfg.codec.name is not None:
        cdir, cmeta = codec_store_dir(cfg, cache)
        cstore = ShardStore(cdir, cmeta)
        report.codec_store = cdir
        if any(not cstore.has_shard(k) for k in mine):
            codec = fit_or_load_codec(cfg, cdir, items, progress)

            def codec_row(it: Item) -> dict[str, Any]:
                if codec.frame_rate is None:  # a symbolic codec reads the MIDI, cut to the clip
                    toks = codec.encode(item_midi(it, cfg.codec.name), seconds=cfg.data.clip_seconds)
                    return {"key": it.content_hash, "name": it.name, "codes": toks.codes[0][:, toks.mask[0]].numpy()}
                audio = load_item_audio(it, codec.sample_rate, cfg.data.clip_seconds)
                with torch.inference_mode():
                    music = codec.encode(audio[None])  # tokens [1, K, T_a] or latents [1, T_a, C]
                if codec.representation == "latents":  # stored as float16 [T_a, C]
                    return {"key": it.content_hash, "name": it.name, "latents": music.latents[0].cpu().numpy()}
                return {"key": it.content_hash, "name": it.name, "codes": music.codes[0].cpu().numpy()}

            bits = 16 if codec.cardinality < 2 ** 15 else 32
            stores.append((cstore, codec_row, {"int_bits": bits}))

    from ..progress import progress_bar

    todo = [(store, fn, kw, k) for store, fn, kw in stores for k in mine if not store.has_shard(k)]
    total = sum(len(chunks[k]) for *_, k in todo)
    with progress_bar(total=total, unit="item", desc="prepare", disable=not progress) as bar:
        for store, fn, kw, k in todo:
            rows = []
            for it in chunks[k]:
                rows.append(fn(it))
                bar.update(1)
            path = store.write_shard(k, rows, **kw)
            report.shards_written.append(str(path))
            if on_shard is not None:
                on_shard(str(path))
    report.seconds = time.perf_counter() - t0
    return report
