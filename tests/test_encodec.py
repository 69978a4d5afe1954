"""`encodec` codec: transformers EncodecModel from a local directory (offline), shapes and errors."""
import pytest
import torch

from vidmusic_core import ConfigError, MusicTokens, build
from vidmusic_core.codecs.encodec import EncodecCodec
from vidmusic_core.testing import check_component_contract


def test_contract():
    check_component_contract("codec", "encodec")


def test_local_directory_roundtrip(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(1)
    hf = EncodecModel(EncodecConfig(sampling_rate=32000, codebook_size=2048, num_filters=8, hidden_size=16,
                                    codebook_dim=16, num_lstm_layers=1, upsampling_ratios=[8, 5, 4, 4],
                                    target_bandwidths=[2.2], use_causal_conv=False, use_conv_shortcut=False))
    hf.save_pretrained(tmp_path / "encodec_32khz")
    codec = build("codec", "encodec", EncodecCodec.Config(weights=str(tmp_path / "encodec_32khz")))
    assert (codec.sample_rate, codec.frame_rate, codec.n_codebooks, codec.cardinality) == (32000, 50.0, 4, 2048)
    audio = 0.1 * torch.randn(2, 1, 32000)
    toks = codec.encode(audio)
    assert toks.codes.shape == (2, 4, 50) and int(toks.codes.max()) < 2048
    ref = hf.encode(audio, bandwidth=2.2).audio_codes[0]
    assert torch.equal(toks.codes, ref)  # the same model, loaded offline from the directory
    out = codec.decode(toks)
    torch.testing.assert_close(out, hf.decode(ref[None], [None]).audio_values)
    masked = codec.decode(MusicTokens(toks.codes, torch.arange(50)[None].expand(2, 50) < 25, 50.0))
    assert masked[..., 640 * 25:].abs().max() == 0 and masked[..., : 640 * 25].abs().max() > 0


def test_missing_directory_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="never downloads"):
        build("codec", "encodec", EncodecCodec.Config(weights=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="4 codebooks"):
        build("codec", "encodec", EncodecCodec.Config(delays=[0, 1]))
