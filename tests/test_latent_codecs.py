"""Latent codecs: ``mel_latent`` (core, fitted, no downloads) and ``oobleck`` (flow_dit: a local diffusers
AutoencoderOobleck), and the prepare cache of float16 latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidmusic_core import ConfigError, MusicLatents, load_component, save_component
from vidmusic_core.audio import load_audio, write_wav
from vidmusic_core.codecs.mel_latent import MelLatentCodec, MelLatentConfig
from vidmusic_core.codecs.rvq_mel import NotFittedError, log_mel_distance
from vidmusic_core.config import compose
from vidmusic_core.data.cache import ShardStore
from vidmusic_core.data.dataset import CachedDataset, collate
from vidmusic_core.data.manifest import read_manifest
from vidmusic_core.data.prepare import codec_store_dir, prepare

SR = 16000


def synth_wav(path, seed: int, seconds: float = 3.0):
    """A chord plus decaying clicks every 0.25-0.5 s, written as a 16-bit wav."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    y = sum(rng.uniform(0.05, 0.1) * np.sin(2 * np.pi * f * t) for f in rng.choice([196, 262, 330, 392, 440], 3))
    burst = np.arange(int(0.03 * SR))
    for c in np.cumsum(rng.uniform(0.25, 0.5, 12)):
        i = int(c * SR)
        if i + burst.size < t.size:
            y[i:i + burst.size] += 0.6 * np.exp(-burst / 80) * np.sin(2 * np.pi * 1500 * burst / SR)
    write_wav(path, y[None].astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wav")
    return [synth_wav(d / f"{i}.wav", i) for i in range(4)]


def audio(path) -> torch.Tensor:
    return torch.from_numpy(load_audio(path, SR, mono=True))  # [1, L]


def test_mel_latent_fit_encode_decode_round_trip(wavs, tmp_path):
    codec = MelLatentCodec(MelLatentConfig(griffin_lim_iters=16))
    assert codec.frame_rate == 25.0 and codec.latent_dim == 128 and codec.representation == "latents"
    with pytest.raises(NotFittedError, match="not fitted"):
        codec.encode(audio(wavs[0])[None])
    codec.fit(audio(w) for w in wavs[:3])
    assert codec.is_fitted()
    x = audio(wavs[0])[None]  # [1, 1, L]
    lat = codec.encode(x)
    assert isinstance(lat, MusicLatents) and lat.latents.shape == (1, -(-x.shape[-1] // 640), 128)
    train = torch.cat([codec.encode(audio(w)[None]).latents[0] for w in wavs[:3]])  # [N, C]
    torch.testing.assert_close(train.mean(0), torch.zeros(128), atol=0.05, rtol=0)  # standardised on the fit data
    assert 0.9 < float(train.std(0)[train.std(0) > 0.01].mean()) < 1.1
    log_mel = codec.mel.log_mel(x)
    torch.testing.assert_close(codec.decode_mel(lat), log_mel, atol=1e-4, rtol=1e-4)  # exact inverse (no PCA)
    y = codec.decode(lat)
    assert y.shape == (1, 1, lat.length * 640)
    recon = log_mel_distance(codec.mel.log_mel(y), log_mel)
    other = log_mel_distance(codec.mel.log_mel(audio(wavs[3])[None]), log_mel)
    assert recon < 0.5 * other, (recon, other)  # Griffin-Lim keeps the spectrogram, far closer than another clip
    save_component(tmp_path / "c", codec, "codec", "mel_latent", codec.cfg)
    back = load_component(tmp_path / "c", expected_kind="codec")
    torch.testing.assert_close(back.encode(x).latents, lat.latents)


def test_mel_latent_pca_whitens_and_reconstructs(wavs):
    codec = MelLatentCodec(MelLatentConfig(pca_dim=24))
    codec.fit(audio(w) for w in wavs[:3])
    assert codec.latent_dim == 24 and codec.fit_info["explained_variance"] > 0.8
    train = torch.cat([codec.encode(audio(w)[None]).latents[0] for w in wavs[:3]])  # [N, 24]
    torch.testing.assert_close(train.std(0), torch.ones(24), atol=0.05, rtol=0)  # whitened: unit variance each
    x = audio(wavs[0])[None]
    lat = codec.encode(x)
    err = float((codec.decode_mel(lat) - codec.mel.log_mel(x)).pow(2).mean())
    base = float((codec.mel.log_mel(x) - codec.mean[:, None]).pow(2).mean())  # error of the mean alone
    assert err < 0.25 * base, (err, base)
    with pytest.raises(ConfigError, match="pca_dim=200"):
        MelLatentCodec(MelLatentConfig(pca_dim=200))


def tiny_oobleck(path, channels: int = 1):
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
                             decoder_channels=8, decoder_input_channels=4, audio_channels=channels, sampling_rate=SR)
    vae.save_pretrained(path)
    return vae


def test_oobleck_loads_a_local_directory_and_round_trips_shapes(tmp_path, wavs):
    from flow_dit.oobleck import OobleckCodec, OobleckConfig

    vae = tiny_oobleck(tmp_path / "vae", channels=2)
    codec = OobleckCodec(OobleckConfig(weights=str(tmp_path / "vae")))
    assert (codec.sample_rate, codec.hop, codec.frame_rate, codec.latent_dim) == (SR, 8, SR / 8, 4)
    x = audio(wavs[0])[None, :, :4001]  # mono into a stereo VAE; not a whole number of frames
    lat = codec.encode(x)
    assert lat.latents.shape == (1, 501, 4) and lat.frame_rate == SR / 8
    with torch.no_grad():
        want = vae.encode(torch.nn.functional.pad(x.expand(-1, 2, -1), (0, 7))).latent_dist.mean.transpose(1, 2)
    torch.testing.assert_close(lat.latents, want)  # the distribution's mean, from the weights on disk
    y = codec.decode(lat)
    assert y.shape == (1, 2, 501 * 8)
    sampled = OobleckCodec(OobleckConfig(weights=str(tmp_path / "vae"), encode_mode="sample", seed=3))
    a, b = sampled.encode(x).latents, sampled.encode(x).latents
    torch.testing.assert_close(a, b)
    assert (a - lat.latents).abs().max() > 1e-4


def test_oobleck_without_a_directory_is_a_clear_error(tmp_path):
    from flow_dit.oobleck import OobleckCodec, OobleckConfig

    with pytest.raises(ConfigError, match="needs codec.weights=DIR"):
        OobleckCodec(OobleckConfig())
    with pytest.raises(ConfigError, match="no config.json there"):
        OobleckCodec(OobleckConfig(weights=str(tmp_path)))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from vidmusic_core.data.toy import make_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "data"
    make_toy_dataset(root, n=6, seconds=2.0, seed=0, progress=False)
    return root


def test_prepare_writes_float16_latent_shards_and_resumes(toy, tmp_path):
    cache = tmp_path / "cache"
    cfg = compose(sugar={"encoder": "motion", "backbone": "flow"},
                  overrides=[f"data.root={toy}", f"data.cache_dir={cache}", "data.clip_seconds=2"])
    assert cfg.codec.name == "mel_latent"
    rep = prepare(cfg, progress=False, shard_size=2)
    cdir, _ = codec_store_dir(cfg, cache)
    assert rep.codec_store == cdir and len(list(cdir.glob("part-*.parquet"))) == 3
    store = ShardStore(cdir)
    items = read_manifest(cache / "manifest.jsonl")
    row = store.read(items[0].content_hash)
    assert set(row) == {"latents"} and row["latents"].dtype == np.float16 and row["latents"].shape == (50, 128)
    codec = load_component(cdir / "codec", expected_kind="codec")
    assert codec.is_fitted()
    got = codec.encode(audio(items[0].music)[None, :, :2 * SR]).latents[0].numpy()
    np.testing.assert_allclose(row["latents"].astype(np.float32), got, atol=2e-2, rtol=1e-2)
    before = {p.name: p.read_bytes() for p in cdir.glob("part-*.parquet")}
    assert prepare(cfg, progress=False, shard_size=2).shards_written == []  # resumable: nothing to redo
    (cdir / "part-00001.parquet").unlink()
    again = prepare(cfg, progress=False, shard_size=2)
    assert [p.split("/")[-1] for p in again.shards_written] == ["part-00001.parquet"]
    assert {p.name: p.read_bytes() for p in cdir.glob("part-*.parquet")} == before  # same content, same bytes
    from vidmusic_core.data.prepare import encoder_store_dir
    from vidmusic_core.model import build_model

    model = build_model(cfg, codec)
    edir, _ = encoder_store_dir(cfg, cache, model.encoder)
    ds = CachedDataset(items, ShardStore(edir), store, split=None)
    assert ds.lengths() == [50] * len(items)
    batch = collate([ds[0], ds[1]])
    assert batch["latents"].shape == (2, 50, 128) and batch["latents"].dtype == torch.float32
    assert batch["latents_mask"].all() and "codes" not in batch
    loss = model.loss(batch, codec.frame_rate)
    assert loss.ndim == 0 and torch.isfinite(loss)
