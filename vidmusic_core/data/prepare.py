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
import os
import shutil
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from ..checkpoint import CONFIG_NAME, atomic_path, load_component, save_component
from ..config import component_from_config
from .cache import ShardStore, config_key
from ..errors import VidmusicError
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
    loop_seconds: float = 0.0  # of ``seconds``: decoding and encoding the shards (not scanning, checks, codec fit)


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


ENCODE_BATCH = 8  # items per frozen-encoder call (groups with equal frame counts, fixed by the shard)


def _encoder_rows(encoder: Any, items: Sequence[Item], samples: Sequence[Any], clip_seconds: float) -> list[Any]:
    """Frozen features of decoded items, batched: one row dict (or :class:`Skip`) per item, in order."""
    from .decode import Skip

    from ..video import frames_from_samples

    out: list[Any] = [None] * len(items)
    groups: list[list[int]] = []
    for i, smp in enumerate(samples):
        g = groups[-1] if groups else None
        if g and len(g) < ENCODE_BATCH and len(samples[g[0]].local) == len(smp.local) \
                and samples[g[0]].global_frames.shape == smp.global_frames.shape:
            g.append(i)
        else:
            groups.append([i])
    for g in groups:
        try:
            frames = frames_from_samples([samples[i] for i in g], encoder.frame_spec)
            with torch.inference_mode():
                feats = encoder.frozen_features(frames)  # each [B, ...]
        except Exception as exc:  # a broken item costs itself: retry the group one item at a time
            if len(g) > 1:
                for i in g:
                    out[i] = _encoder_rows(encoder, [items[i]], [samples[i]], clip_seconds)[0]
            else:
                out[g[0]] = Skip(f"the encoder failed on it: {type(exc).__name__}: {exc}")
            continue
        for b, i in enumerate(g):
            row: dict[str, Any] = {"key": items[i].content_hash, "name": items[i].name}
            for k, v in feats.items():
                row[k] = v[b].float().cpu().numpy()
            row["local_times"] = frames.local_times[b].numpy().astype(np.float32)
            row["local_mask"] = frames.local_mask[b].numpy()
            if frames.global_times is not None:
                row["global_times"] = frames.global_times[b].numpy().astype(np.float32)
            dur = float(frames.duration[b]) if frames.duration is not None else clip_seconds
            row["duration"] = np.array([min(dur, clip_seconds)], dtype=np.float32)
            out[i] = row
    return out


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
    save it under ``store_dir/codec`` (later calls and other shards load that). The folder appears whole, by one
    rename of a finished temporary folder, so processes preparing the same cache at once (the points of a
    parallel sweep, the shards of a job array) never read a half-written codec; the fit is deterministic, so
    the first finished copy serves all."""
    saved = store_dir / "codec"
    if (saved / CONFIG_NAME).is_file():
        return load_component(saved, expected_kind="codec")
    comp, ccfg = component_from_config(cfg, "codec")
    codec = comp.build(ccfg)
    if not codec.is_fitted():
        train = [it for it in items if it.split == "train"] or list(items)
        audio = (load_item_audio(it, codec.sample_rate, cfg.data.clip_seconds) for it in sorted(train, key=lambda i: i.name))
        codec.fit(audio)
    store_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".codec.", dir=store_dir))
    try:
        save_component(tmp, codec, "codec", comp.name, ccfg)
        try:
            os.replace(tmp, saved)
        except OSError:  # a non-empty folder is not replaced: another process's codec got there first,
            if not (saved / CONFIG_NAME).is_file():  # or a half-written one from before folders were renamed
                shutil.rmtree(saved)
                os.replace(tmp, saved)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return codec


def load_codec(cfg: DictConfig, progress: bool = True) -> Any:
    """The run's codec as ``prepare`` left it (fitted on the train split and saved on first use)."""
    from .manifest import read_manifest

    cache = cache_root(cfg, data_root(cfg))
    cdir, _ = codec_store_dir(cfg, cache)
    return fit_or_load_codec(cfg, cdir, read_manifest(cache / MANIFEST_NAME), progress)


def _codec_row(codec: Any, cfg: DictConfig, it: Item, audio: np.ndarray | None) -> dict[str, Any]:
    """The codec's row for one item: tokens ``codes [K, T_a]`` or float16 ``latents [T_a, C]``."""
    if codec.frame_rate is None:  # a symbolic codec reads the MIDI, cut to the clip
        toks = codec.encode(item_midi(it, cfg.codec.name), seconds=cfg.data.clip_seconds)
        return {"key": it.content_hash, "name": it.name, "codes": toks.codes[0][:, toks.mask[0]].numpy()}
    with torch.inference_mode():
        music = codec.encode(torch.from_numpy(audio)[None])  # tokens [1, K, T_a] or latents [1, T_a, C]
    if codec.representation == "latents":
        return {"key": it.content_hash, "name": it.name, "latents": music.latents[0].cpu().numpy()}
    return {"key": it.content_hash, "name": it.name, "codes": music.codes[0].cpu().numpy()}


class StrictError(DataError):
    """``--strict``: the good items are cached, but some were skipped."""


def _write_bad(cache: Path, bad: Sequence[BadItem]) -> None:
    with atomic_path(cache / "bad_items.json") as tmp:
        tmp.write_text(json.dumps([dataclasses.asdict(b) for b in bad], indent=1))


def prepare(cfg: DictConfig, root: str | Path | None = None, shard: str | None = None, strict: bool = False,
            progress: bool = True, shard_size: int = SHARD_SIZE,
            on_shard: Callable[[str], None] | None = None, workers: int = 1, setup_only: bool = False) -> PrepareReport:
    """Scan ``root``, write the manifest, and cache the encoder's frozen features and the codec's tokens.

    Items that cannot be used are skipped with their reason (``bad_items.json``); ``strict`` raises
    :class:`StrictError` after the good items are cached. ``workers`` decode processes (``0``: in this
    process) decode video and audio; the encoder and codec run here, batched. ``setup_only`` stops after the
    manifest and the fitted codec (what a job array of ``--shard i/n`` needs to exist first).
    """
    from .decode import DecodePool, Skip, check_music, decode_item

    t0 = time.perf_counter()
    root = data_root(cfg, root)
    cache = cache_root(cfg, root)
    i_shard, n_shard = parse_shard(shard)
    clip = float(cfg.data.clip_seconds)
    items, bad = scan(root)
    from ..progress import progress_bar

    with DecodePool(workers) as pool:
        pool.start()  # the decode workers start up while the encoder is built here
        encoder = estore = codec = cstore = None
        if cfg.encoder.name is not None:
            comp, ecfg = component_from_config(cfg, "encoder")
            torch.manual_seed(0)
            encoder = comp.build(ecfg).eval()
        checked = pool.map(check_music, [(it, clip) for it in items])
        good = []
        for it, why in zip(items, checked):
            reason = why.reason if isinstance(why, Skip) else why
            if reason:
                bad.append(BadItem(it.name, it.music, reason))
            else:
                good.append(it)
        items = good
        if not items:
            raise DataError(f"no usable items under {root}: " + "; ".join(f"{b.name}: {b.reason}" for b in bad[:5]))
        cache.mkdir(parents=True, exist_ok=True)
        write_manifest(items, cache / MANIFEST_NAME)
        _write_bad(cache, bad)
        report = PrepareReport(cache, len(items), bad)
        chunks = _chunks(items, shard_size)
        mine = [k for k in range(len(chunks)) if k % n_shard == i_shard]

        if encoder is not None:
            edir, emeta = encoder_store_dir(cfg, cache, encoder)
            estore = ShardStore(edir, emeta)
            report.encoder_store = edir
        if cfg.codec.name is not None:
            cdir, cmeta = codec_store_dir(cfg, cache)
            cstore = ShardStore(cdir, cmeta)
            report.codec_store = cdir
            if setup_only or any(not cstore.has_shard(k) for k in mine):
                codec = fit_or_load_codec(cfg, cdir, items, progress)
        if setup_only:
            report.seconds = time.perf_counter() - t0
            return report
        todo = [k for k in mine if (estore is not None and not estore.has_shard(k))
                or (cstore is not None and not cstore.has_shard(k))]
        plan = {k: (estore is not None and not estore.has_shard(k), cstore is not None and not cstore.has_shard(k))
                for k in todo}
        tasks = []
        for k in todo:
            spec = encoder.frame_spec if plan[k][0] else None
            audio_sr = codec.sample_rate if plan[k][1] and codec.frame_rate is not None else None
            tasks += [(it, spec, clip, None if it.music_kind == "midi" else audio_sr) for it in chunks[k]]
        t_loop = time.perf_counter()
        stream = pool.imap(decode_item, tasks, ahead=2 * shard_size)  # decoding runs ahead of encoding
        with closing(stream), progress_bar(total=len(tasks), unit="item", desc="prepare", disable=not progress) as bar:
            for k in todo:
                chunk = chunks[k]
                do_enc, do_cod = plan[k]
                audio_sr = codec.sample_rate if do_cod and codec.frame_rate is not None else None
                decoded = [next(stream) for _ in chunk]
                skip: dict[str, str] = {it.content_hash: d.reason for it, d in zip(chunk, decoded) if isinstance(d, Skip)}
                if audio_sr is not None:
                    for it in chunk:
                        if it.music_kind == "midi" and it.content_hash not in skip:
                            skip[it.content_hash] = (f"{it.music}: an audio codec cannot encode MIDI; give a rendered "
                                                     ".wav beside it or use a symbolic codec")
                ok = [(it, d) for it, d in zip(chunk, decoded) if it.content_hash not in skip]
                enc_rows: list[Any] = []
                if do_enc:
                    enc_rows = _encoder_rows(encoder, [it for it, _ in ok], [d["frames"] for _, d in ok], clip)
                    for (it, _), row in zip(ok, enc_rows):
                        if isinstance(row, Skip):
                            skip[it.content_hash] = row.reason
                cod_rows: list[Any] = []
                if do_cod:
                    for it, d in ok:
                        if it.content_hash in skip:
                            cod_rows.append(None)
                            continue
                        try:
                            cod_rows.append(_codec_row(codec, cfg, it, d.get("audio")))
                        except Exception as exc:  # noqa: BLE001 - one item's failure is that item's only
                            why = str(exc) if isinstance(exc, VidmusicError) else f"{type(exc).__name__}: {exc}"
                            skip[it.content_hash] = f"the codec failed on it: {why}"
                            cod_rows.append(None)
                skipped = [{"name": it.name, "key": it.content_hash, "path": it.video, "reason": skip[it.content_hash]}
                           for it in chunk if it.content_hash in skip]
                bits = 16 if codec is None or codec.cardinality < 2 ** 15 else 32
                for store, rows, kw, do in ((estore, enc_rows, {"float_fields": ("local_times", "global_times", "duration")},
                                             do_enc), (cstore, cod_rows, {"int_bits": bits}, do_cod)):
                    if not do:
                        continue
                    keep = [r for (it, _), r in zip(ok, rows) if it.content_hash not in skip]
                    path = store.write_shard(k, keep, skipped=skipped, **kw)
                    report.shards_written.append(str(path))
                    if on_shard is not None:
                        on_shard(str(path))
                bar.update(len(chunk))
        report.loop_seconds = time.perf_counter() - t_loop
    # items skipped while encoding (this run or an earlier one, any --shard): out of the manifest, into bad_items
    late: dict[str, dict[str, str]] = {}
    for store in (estore, cstore):
        if store is not None:
            late.update(store.skipped())
    if late:
        names = {b.name for b in bad}
        bad = bad + [BadItem(v["name"], v["path"], v["reason"]) for v in late.values() if v["name"] not in names]
        write_manifest([it for it in items if it.content_hash not in late], cache / MANIFEST_NAME)
        _write_bad(cache, bad)
    report.bad, report.items = bad, len(items) - len(late)
    report.seconds = time.perf_counter() - t0
    if strict and bad:
        raise StrictError(f"{len(bad)} bad item(s) under {root} (--strict; the {report.items} good items are cached, "
                          f"see {cache / 'bad_items.json'}): " + "; ".join(f"{b.name}: {b.reason}" for b in bad[:5]))
    return report
