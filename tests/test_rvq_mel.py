"""The ``rvq_mel`` codec (log-mel residual k-means + Griffin-Lim) and the delay-pattern utilities."""
from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vidmusic_core.builtins as core_builtins
from vidmusic_core import VidmusicError, load_component, save_component
from vidmusic_core.codecs.delay import apply_delays, delay_mask, undo_delays
from vidmusic_core.codecs.rvq_mel import CodecError, NotFittedError, RVQMelCodec, log_mel_distance
from vidmusic_core.errors import ConfigError, ShapeError
from vidmusic_core.plugins import PluginHost, use_host
from vidmusic_core.testing import check_component_contract
from vidmusic_core.types import MusicTokens

SR = 16000
CHORDS = [(262, 330, 392), (220, 262, 330), (196, 247, 294), (175, 220, 262), (330, 415, 494), (147, 185, 220)]
NOTES = [392, 440, 523, 587, 659, 784]


def synth(rng: np.random.Generator, seconds: float = 4.0, plucks: bool = True,
          noise: float = 1e-3) -> tuple[torch.Tensor, np.ndarray]:
    """A held chord (random amplitudes and phases), plucked notes on a 4 Hz grid, decaying 1.5 kHz clicks
    and faint noise -> (audio ``[1, L]``, click times in seconds)."""
    n = int(SR * seconds)
    t = np.arange(n) / SR
    y = np.zeros(n)
    for f in CHORDS[rng.integers(len(CHORDS))]:
        y += rng.uniform(0.03, 0.1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    step = int(0.25 * SR)
    tt = np.arange(step) / SR
    for s in range(0, n - step, step) if plucks else ():
        if rng.random() < 0.6:
            f = NOTES[rng.integers(len(NOTES))]
            y[s:s + step] += rng.uniform(0.05, 0.2) * np.exp(-tt / 0.1) * np.sin(2 * np.pi * f * tt)
    clicks = np.sort(rng.choice(np.arange(0.3, seconds - 0.3, 0.25), size=int(seconds * 1.5), replace=False))
    burst = np.arange(int(0.03 * SR))
    for c in clicks:
        i = int(c * SR)
        y[i:i + burst.size] += 0.8 * np.exp(-burst / (0.005 * SR)) * np.sin(2 * np.pi * 1500 * burst / SR)
    y += noise * rng.standard_normal(n)
    return torch.tensor(y, dtype=torch.float32).unsqueeze(0), clicks


def small_cfg(**kw: object) -> RVQMelCodec.Config:
    return RVQMelCodec.Config(kmeans_iters=10, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    rng = np.random.default_rng(0)
    train = [synth(rng)[0] for _ in range(12)]  # 48 s, 2400 frames: every chord is seen
    test = torch.stack([synth(rng)[0] for _ in range(2)])  # held out
    clicky = [synth(rng, plucks=False) for _ in range(2)]  # held out, the clicks are the only onsets
    return {"train": train, "test": test, "clicky": torch.stack([c[0] for c in clicky]),
            "clicks": [c[1] for c in clicky]}


@pytest.fixture(scope="module")
def codec(data: dict) -> RVQMelCodec:
    c = RVQMelCodec(small_cfg())
    c.fit(data["train"])
    return c


@pytest.fixture
def core_host():
    host = PluginHost(load_entry_points=False)
    host.register_plugin(core_builtins, "core")
    with use_host(host):
        yield host


@pytest.mark.filterwarnings("ignore:rvq_mel.fit. only")  # the contract fits on 2 s = 100 frames < 256 entries
def test_contract(core_host: PluginHost) -> None:
    check_component_contract("codec", "rvq_mel")


def test_too_little_audio_warns() -> None:
    c = RVQMelCodec(small_cfg(n_codebooks=1, delays=[0]))
    with pytest.warns(UserWarning, match="duplicates"):
        c.fit([0.1 * torch.randn(1, SR)])  # 50 frames for 256 entries
    assert bool(c.fitted) and c.encode(0.1 * torch.randn(1, 1, SR)).codes.max() < 256


def test_registered_with_defaults(core_host: PluginHost) -> None:
    comp = core_host.registry.get("codec", "rvq_mel")
    c = comp.build()
    assert isinstance(c, RVQMelCodec)
    assert (c.sample_rate, c.frame_rate, c.n_codebooks, c.cardinality, c.delays) == (16000, 50.0, 4, 256, (0, 1, 2, 3))


@pytest.mark.parametrize("n_samples", [1, 319, 320, 321, 16000, 16001])
def test_frame_count_formula(codec: RVQMelCodec, n_samples: int) -> None:
    audio = torch.zeros(1, 1, n_samples)
    assert codec.log_mel(audio).shape == (1, 128, math.ceil(n_samples / 320)) == (1, 128, codec.num_frames(n_samples))


def test_shapes_and_range(codec: RVQMelCodec) -> None:
    g = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(3, 2, SR + 123, generator=g)  # stereo, not a multiple of hop
    tok = codec.encode(audio)
    T = math.ceil((SR + 123) / 320)
    assert tok.codes.shape == (3, 4, T) and tok.codes.dtype == torch.long
    assert tok.frame_rate == 50.0 and bool(tok.mask.all())
    assert int(tok.codes.min()) >= 0 and int(tok.codes.max()) < 256
    assert codec.decode_mel(tok).shape == (3, 128, T)
    out = codec.decode(MusicTokens(tok.codes[:1, :, :20]))
    assert out.shape == (1, 1, 20 * 320) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # the channels are mixed to mono before the mel
    mono = audio.mean(1, keepdim=True)
    assert torch.equal(codec.encode(mono).codes, tok.codes)


def test_fit_is_deterministic_for_a_seed(data: dict, codec: RVQMelCodec) -> None:
    again = RVQMelCodec(small_cfg())
    again.fit(data["train"])
    assert torch.equal(again.codebooks, codec.codebooks)
    other = RVQMelCodec(small_cfg(seed=1))
    other.fit(data["train"])
    assert not torch.equal(other.codebooks, codec.codebooks)
    rnd = RVQMelCodec(small_cfg(kmeans_init="random"))
    rnd.fit(data["train"])
    assert bool(rnd.fitted) and not torch.equal(rnd.codebooks, codec.codebooks)


def test_reconstruction_improves_with_each_codebook(data: dict, codec: RVQMelCodec) -> None:
    x = data["test"]  # held-out clips, [2, 1, 64000]
    ref = codec.log_mel(x)  # [2, 128, 200]
    tok = codec.encode(x)
    dist = [log_mel_distance(codec.decode_mel(tok, n_codebooks=k), ref) for k in range(1, 5)]
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    # baseline: every frame replaced by the mean training frame
    train_mel = torch.cat([codec.log_mel(a.unsqueeze(0)) for a in data["train"]], dim=-1)
    baseline = log_mel_distance(train_mel.mean(-1, keepdim=True).expand_as(ref), ref)
    assert dist[-1] < 0.4 and dist[-1] < 0.3 * baseline, (dist, baseline)
    # training frames are reconstructed better still (residual MSE falls codebook by codebook)
    mse = codec.fit_info["residual_mse"]
    assert all(a > b for a, b in zip(mse, mse[1:])), mse


def test_griffin_lim_audio_keeps_the_clicks(data: dict, codec: RVQMelCodec) -> None:
    def onsets(y: np.ndarray) -> np.ndarray:  # 10 ms hop, at most one onset per 50 ms
        return librosa.onset.onset_detect(y=y, sr=SR, units="time", hop_length=160, wait=5)

    decoded = codec.decode(codec.encode(data["clicky"]))  # [2, 1, 64000]
    ref = codec.log_mel(data["clicky"])
    assert log_mel_distance(codec.log_mel(codec.mel_to_audio(ref)), ref) < 0.3  # Griffin-Lim of the true mel
    assert log_mel_distance(codec.log_mel(decoded), ref) < 0.6  # measured 0.46
    for x, y, clicks in zip(data["clicky"], decoded, data["clicks"]):
        y = y[0].numpy()
        assert np.abs(y).max() > 0.05
        for found in (onsets(x[0].numpy()), onsets(y)):  # the detector finds the clicks in the input too
            assert len(found) > 0
            recall = np.mean([np.abs(found - c).min() <= 0.05 for c in clicks])
            precision = np.mean([np.abs(clicks - o).min() <= 0.05 for o in found])
            assert recall == 1.0 and precision >= 0.8, (clicks, found)


def test_nnls_mel_inversion_option(codec: RVQMelCodec) -> None:
    nnls = RVQMelCodec(small_cfg(mel_inversion="nnls"))
    nnls.load_state_dict(codec.state_dict())
    tok = MusicTokens(torch.randint(0, 256, (1, 4, 25)))
    out = nnls.decode(tok)
    assert out.shape == (1, 1, 25 * 320) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="mel_inversion"):
        RVQMelCodec(small_cfg(mel_inversion="pinv"))


def test_mask_decodes_to_silence(codec: RVQMelCodec) -> None:
    codes = torch.randint(0, 256, (1, 4, 10))
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 6:] = False
    mel = codec.decode_mel(MusicTokens(codes, mask))
    assert torch.allclose(mel[0, :, 6:], torch.full((128, 4), math.log(1e-5)))


def test_save_load_roundtrip(tmp_path, data: dict, codec: RVQMelCodec, core_host: PluginHost) -> None:
    save_component(tmp_path / "codec", codec, "codec", "rvq_mel", codec.cfg)
    state = load_file(str(tmp_path / "codec" / "model.safetensors"))
    assert set(state) == {"codebooks", "fitted"}  # mel filters and window are rebuilt from the config
    loaded = load_component(tmp_path / "codec", expected_kind="codec")
    assert isinstance(loaded, RVQMelCodec) and bool(loaded.fitted) and loaded.cfg == codec.cfg
    x = data["test"]
    assert torch.equal(loaded.encode(x).codes, codec.encode(x).codes)


def test_unfitted_codec_says_what_to_do() -> None:
    c = RVQMelCodec()
    with pytest.raises(NotFittedError, match=r"not fitted.*vidmusic prepare.*fit") as err:
        c.encode(torch.zeros(1, 1, 3200))
    assert isinstance(err.value, VidmusicError)
    with pytest.raises(NotFittedError):
        c.decode(MusicTokens(torch.zeros(1, 4, 5, dtype=torch.long)))


def test_bad_inputs(codec: RVQMelCodec) -> None:
    with pytest.raises(CodecError, match=r"\[0, 256\)"):
        codec.decode_mel(MusicTokens(torch.full((1, 4, 3), 256)))
    with pytest.raises(ShapeError):
        codec.decode_mel(MusicTokens(torch.zeros(1, 3, 3, dtype=torch.long)))  # wrong K
    with pytest.raises(ShapeError):
        codec.encode(torch.zeros(16000))  # not [B, C, L]
    with pytest.raises(CodecError, match="0 samples"):
        codec.encode(torch.zeros(1, 1, 0))
    with pytest.raises(ConfigError, match="codec.delays"):
        RVQMelCodec(RVQMelCodec.Config(n_codebooks=2))
    with pytest.raises(CodecError, match="no samples"):
        RVQMelCodec().fit([])


def test_fit_reservoir_caps_frames(data: dict) -> None:
    a = RVQMelCodec(small_cfg(n_codebooks=2, delays=[0, 1], cardinality=32))
    a.fit(iter(data["train"]), max_frames=500)  # any iterable; 2400 frames seen, 500 kept
    assert a.fit_info["frames_used"] == 500 and a.fit_info["frames_seen"] == 2400
    b = RVQMelCodec(small_cfg(n_codebooks=2, delays=[0, 1], cardinality=32))
    b.fit(data["train"], max_frames=500)
    assert torch.equal(a.codebooks, b.codebooks)


def test_delay_pattern_roundtrip() -> None:
    codes = torch.arange(1, 10).view(1, 3, 3)
    delayed = apply_delays(codes, (0, 1, 2), pad_id=-5)
    P = -5
    assert delayed[0].tolist() == [[1, 2, 3, P, P], [P, 4, 5, 6, P], [P, P, 7, 8, 9]]
    assert delay_mask(3, 3, (0, 1, 2)).tolist() == (delayed[0] != P).tolist()
    assert torch.equal(undo_delays(delayed, (0, 1, 2)), codes)

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 256, (2, 4, 17), generator=g)
    for delays in [(0, 1, 2, 3), (0, 0, 0, 0), (0, 2, 2, 5)]:
        d = apply_delays(codes, delays, pad_id=256)
        assert d.shape == (2, 4, 17 + max(delays))
        assert torch.equal(undo_delays(d, delays), codes)
        assert torch.equal(undo_delays(d, delays, length=10), codes[..., :10])
    with pytest.raises(ShapeError):
        apply_delays(codes, (0, 1), pad_id=256)
