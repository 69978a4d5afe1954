"""Tests of the `wavtokenizer` codec (inspire_llm plugin): upstream-format loading, shapes, reference math,
InspireMusic token files and the `inspiremusic` importer's wavtokenizer/ folder."""
from __future__ import annotations

import argparse
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import inspire_llm.plugin
from inspire_llm.wavtokenizer import WavTokenizerCodec, import_wavtokenizer, read_token_file, write_token_file
from vidmusic_core import CheckpointError, MusicTokens, load_component
from vidmusic_core.testing import check_component_contract

# tiny widths; rates as the released model (hop 320 = 75 Hz at 24 kHz, n_fft 1280)
NF, DIM, V, BB, INTER, LAYERS, ADA, N_FFT, HOP = 4, 16, 4096, 32, 64, 2, 4, 1280, 320
RATIOS = [8, 5, 4, 2]


@pytest.fixture
def host(vidmusic_host):
    import vidmusic_core.builtins

    vidmusic_host.register_plugin(vidmusic_core.builtins, name="core")  # always there: the importer uses its parts
    vidmusic_host.register_plugin(inspire_llm.plugin, name="inspire_llm")
    return vidmusic_host


def test_contract(host) -> None:
    m = check_component_contract("codec", "wavtokenizer")
    assert (m.sample_rate, m.frame_rate, m.n_codebooks, m.cardinality, m.delays) == (24000, 75.0, 1, 4096, (0,))
    assert m.source == "random init"


# -- a tiny upstream directory, key names written by hand from upstream's module tree ------------------
def upstream_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of upstream ``WavTokenizer.state_dict()`` (InspireMusic @0aefb55 wavtokenizer/: EncodecFeatures
    with SEANetEncoder + SEANetDecoder + LanguageVectorQuantization, VocosBackbone with pos_net, ISTFTHead) plus
    two Lightning training-only keys, at tiny widths. Written from upstream's code, not from our modules."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    sd: dict[str, torch.Tensor] = {}

    def wn(prefix: str, cout: int, cin: int, k: int, transposed: bool = False) -> None:  # old-style weight_norm
        v = r(cin, cout, k) if transposed else r(cout, cin, k)
        g_ = 0.5 + r(v.shape[0], 1, 1).abs()  # weight_norm's dim 0: in-channels for a transposed conv
        sd.update({prefix + "weight_g": g_, prefix + "weight_v": v, prefix + "bias": r(cout)})

    def resblock(prefix: str, c: int) -> None:
        wn(prefix + "block.1.conv.conv.", c // 2, c, 3)
        wn(prefix + "block.3.conv.conv.", c, c // 2, 1)
        wn(prefix + "shortcut.conv.conv.", c, c, 1)

    def lstm(prefix: str, c: int) -> None:
        for layer in range(2):
            sd.update({f"{prefix}lstm.weight_ih_l{layer}": r(4 * c, c), f"{prefix}lstm.weight_hh_l{layer}": r(4 * c, c),
                       f"{prefix}lstm.bias_ih_l{layer}": r(4 * c), f"{prefix}lstm.bias_hh_l{layer}": r(4 * c)})

    enc = "feature_extractor.encodec.encoder.model."
    wn(enc + "0.conv.conv.", NF, 1, 7)
    for i, ratio in enumerate(reversed(RATIOS)):  # 1 + 3i: resblock, 2 + 3i: ELU, 3 + 3i: strided conv
        c = NF * 2 ** i
        resblock(f"{enc}{1 + 3 * i}.", c)
        wn(f"{enc}{3 + 3 * i}.conv.conv.", 2 * c, c, 2 * ratio)
    lstm(enc + "13.", 16 * NF)
    wn(enc + "15.conv.conv.", DIM, 16 * NF, 7)
    dec = "feature_extractor.encodec.decoder.model."  # unused by WavTokenizer, present in its checkpoints
    wn(dec + "0.conv.conv.", 16 * NF, DIM, 7)
    lstm(dec + "1.", 16 * NF)
    for i, ratio in enumerate(RATIOS):
        c = 16 * NF // 2 ** i
        wn(f"{dec}{3 + 3 * i}.convtr.convtr.", c // 2, c, 2 * ratio, transposed=True)
        resblock(f"{dec}{4 + 3 * i}.", c // 2)
    wn(dec + "15.conv.conv.", 1, NF, 7)
    cb = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."
    embed = r(V, DIM, scale=0.05)
    sd.update({cb + "inited": torch.ones(1), cb + "cluster_size": r(V).abs(), cb + "embed": embed,
               cb + "embed_avg": embed.clone()})

    sd.update({"backbone.embed.weight": r(BB, DIM, 7), "backbone.embed.bias": r(BB),
               "backbone.norm.scale.weight": 1 + r(ADA, BB), "backbone.norm.shift.weight": r(ADA, BB),
               "backbone.final_layer_norm.weight": 1 + r(BB), "backbone.final_layer_norm.bias": r(BB)})
    for i in range(LAYERS):
        p = f"backbone.convnext.{i}."
        sd.update({p + "dwconv.weight": r(BB, 1, 7), p + "dwconv.bias": r(BB),
                   p + "norm.scale.weight": 1 + r(ADA, BB), p + "norm.shift.weight": r(ADA, BB),
                   p + "pwconv1.weight": r(INTER, BB), p + "pwconv1.bias": r(INTER),
                   p + "pwconv2.weight": r(BB, INTER), p + "pwconv2.bias": r(BB), p + "gamma": r(BB)})
    for i in (0, 1, 3, 4):
        p = f"backbone.pos_net.{i}."
        for n in ("norm1", "norm2"):
            sd.update({p + n + ".weight": 1 + r(BB), p + n + ".bias": r(BB)})
        for n in ("conv1", "conv2"):
            sd.update({p + n + ".weight": r(BB, BB, 3, scale=0.05), p + n + ".bias": r(BB)})
    p = "backbone.pos_net.2."
    sd.update({p + "norm.weight": 1 + r(BB), p + "norm.bias": r(BB)})
    for n in ("q", "k", "v", "proj_out"):
        sd.update({p + n + ".weight": r(BB, BB, 1), p + n + ".bias": r(BB)})
    sd.update({"backbone.pos_net.5.weight": 1 + r(BB), "backbone.pos_net.5.bias": r(BB)})
    sd.update({"head.out.weight": r(N_FFT + 2, BB, scale=0.05), "head.out.bias": r(N_FFT + 2, scale=0.05),
               "head.istft.window": torch.hann_window(N_FFT)})
    # training-only modules of the Lightning experiment, dropped by prefix as upstream does
    sd.update({"multiperioddisc.discriminators.0.convs.0.weight": r(4, 1, 5, 1),
               "melspec_loss.mel_spec.spectrogram.window": torch.hann_window(16)})
    return sd


UPSTREAM_YAML = {
    "seed_everything": 3407,
    "model": {"class_path": "decoder.experiment.WavTokenizer", "init_args": {
        "sample_rate": 24000, "initial_learning_rate": 2e-4, "mel_loss_coeff": 45,
        "feature_extractor": {"class_path": "decoder.feature_extractors.EncodecFeatures", "init_args": {
            "encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6], "train_codebooks": True,
            "num_quantizers": 1, "dowmsamples": RATIOS, "vq_bins": V, "vq_kmeans": 200}},
        "backbone": {"class_path": "decoder.models.VocosBackbone", "init_args": {
            "input_channels": DIM, "dim": BB, "intermediate_dim": INTER, "num_layers": LAYERS,
            "adanorm_num_embeddings": ADA}},
        "head": {"class_path": "decoder.heads.ISTFTHead", "init_args": {
            "dim": BB, "n_fft": N_FFT, "hop_length": HOP, "padding": "same"}}}},
    "trainer": {"max_steps": 20000000, "accelerator": "gpu"}}


def write_upstream_dir(d: Path, state: dict[str, torch.Tensor] | None = None, extra: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(UPSTREAM_YAML))
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6",
            "state_dict": upstream_state() if state is None else state, **(extra or {})}
    torch.save(ckpt, d / "model.pt")
    return d


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_upstream_dir(tmp_path_factory.mktemp("wt") / "wavtokenizer")


@pytest.fixture(scope="module")
def codec(tiny_dir) -> WavTokenizerCodec:
    return WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(tiny_dir)))


def test_import_tiny_upstream_dir(host, tiny_dir: Path, codec: WavTokenizerCodec, tmp_path: Path) -> None:
    state = upstream_state()
    used = {k: v for k, v in state.items() if k.startswith(("feature_extractor.", "backbone.", "head."))
            and not k.startswith("feature_extractor.encodec.decoder.")}
    own = codec.state_dict()
    assert set(own) == set(used)  # zero missing, zero unexpected
    for k, v in used.items():
        assert torch.equal(own[k], v), k
    assert codec.source.endswith("model.pt") and codec.arch["n_filters"] == NF and codec.arch["dimension"] == DIM

    report = import_wavtokenizer(tiny_dir, tmp_path / "imported")
    assert report.ok and report.missing == [] and report.unexpected == [] and report.shape_mismatches == []
    assert any("feature_extractor.encodec.decoder." in n for n in report.notes)
    loaded = load_component(tmp_path / "imported", expected_kind="codec")
    assert isinstance(loaded, WavTokenizerCodec) and loaded.cfg.model_dir is None
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, own[k]), k
    again = WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(tmp_path / "imported")))  # our folder as model_dir
    assert all(torch.equal(v, own[k]) for k, v in again.state_dict().items())

    bad = dict(state)
    del bad["backbone.pos_net.2.q.bias"]
    bad["backbone.extra.weight"] = torch.zeros(1)
    bad["head.out.bias"] = torch.zeros(7)
    report = import_wavtokenizer(write_upstream_dir(tmp_path / "bad", bad), tmp_path / "out_bad")
    assert report.missing == ["backbone.pos_net.2.q.bias"] and report.unexpected == ["backbone.extra.weight"]
    assert report.shape_mismatches == ["head.out.bias: checkpoint [7] vs model [1282]"]
    assert not (tmp_path / "out_bad" / "model.safetensors").exists()
    with pytest.raises(CheckpointError, match=r"missing \(1\): backbone.pos_net.2.q.bias"):
        WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(tmp_path / "bad")))


def test_encode_decode_shapes_and_chunks(codec: WavTokenizerCodec) -> None:
    g = torch.Generator().manual_seed(0)
    audio = 0.3 * torch.randn(2, 1, 2 * 24000, generator=g)
    toks = codec.encode(audio)
    assert toks.codes.shape == (2, 1, 150) and toks.frame_rate == 75.0 and toks.codes.dtype == torch.long
    assert 0 <= int(toks.codes.min()) and int(toks.codes.max()) < V and len(toks.codes.unique()) > 1
    out = codec.decode(toks)
    assert out.shape == (2, 1, 48000) and torch.isfinite(out).all()
    # codes are the nearest codebook entries of the encoder latents
    z = codec.feature_extractor.latents(audio[:, 0])  # [B, D, T]
    dist = torch.cdist(z.transpose(1, 2), codec.feature_extractor.codebook.embed[None].expand(2, -1, -1))
    assert (dist.argmin(-1) == toks.codes[:, 0]).float().mean() > 0.99  # ties/rounding aside
    for n in (1000, 48001, 320 * 7):
        assert codec.encode(torch.randn(1, 1, n)).codes.shape[-1] == math.ceil(n / HOP)
    # stereo at 44.1 kHz: mixed down and resampled, 2 s -> 150 tokens
    assert codec.encode(torch.randn(1, 2, 88200), sample_rate=44100).codes.shape == (1, 1, 150)
    # chunks: encoded independently and concatenated; a short last chunk (< 720 samples) is dropped
    short = WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=codec.cfg.model_dir, chunk_seconds=0.41))
    x = torch.randn(1, 1, 48000 + 100)  # chunks of 9600 samples (0.41 s rounded down to 30 frames)
    want = torch.cat([codec.encode(x[..., s:s + 9600]).codes for s in range(0, 48000, 9600)], -1)
    assert torch.equal(short.encode(x).codes, want) and want.shape[-1] == 150
    assert short.encode(torch.randn(1, 1, 48000 + 1000)).codes.shape[-1] == 150 + 4
    # windowed decode: with context covering everything it equals one pass
    wide = WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=codec.cfg.model_dir, decode_chunk_seconds=0.5,
                                                      decode_context_seconds=5.0))
    torch.testing.assert_close(wide.decode(toks), out, atol=1e-5, rtol=1e-5)
    mask = torch.ones(2, 150, dtype=torch.bool)
    mask[1, 100:] = False  # padding: silent, and its (EOS) codes are never looked up
    padded = toks.codes.clone()
    padded[1, 0, 100:] = V
    quiet = codec.decode(MusicTokens(padded, mask))
    assert torch.equal(quiet[1, 0, 100 * HOP:], torch.zeros(50 * HOP)) and torch.equal(quiet[0], out[0])
    with pytest.raises(ValueError, match="EOS"):
        codec.decode(torch.full((1, 1, 3), V))


# -- reference computations ---------------------------------------------------------------------------
def ola_reference(spec: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """'same'-padded ISTFT, one frame at a time: irfft, window, add, divide by the summed squared window."""
    B, _, T = spec.shape
    w = torch.hann_window(n_fft, dtype=torch.float64)
    y = torch.zeros(B, (T - 1) * hop + n_fft, dtype=torch.float64)
    env = torch.zeros((T - 1) * hop + n_fft, dtype=torch.float64)
    for t in range(T):
        y[:, t * hop:t * hop + n_fft] += torch.fft.irfft(spec[:, :, t].to(torch.complex128), n_fft) * w
        env[t * hop:t * hop + n_fft] += w ** 2
    pad = (n_fft - hop) // 2
    return (y / env)[:, pad:pad + T * hop]


def test_istft_head_vs_torch_istft(codec: WavTokenizerCodec) -> None:
    g = torch.Generator().manual_seed(1)
    T = 40
    spec = torch.polar(torch.rand(2, N_FFT // 2 + 1, T, generator=g), 6 * torch.rand(2, N_FFT // 2 + 1, T, generator=g))
    ours = codec.head.istft(spec)
    assert ours.shape == (2, T * HOP)
    ref = torch.istft(spec, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True, length=T * HOP - HOP // 2)
    torch.testing.assert_close(ours[:, HOP // 2:], ref, atol=1e-5, rtol=1e-5)  # 'same' = 'center' shifted by hop/2
    torch.testing.assert_close(ours, ola_reference(spec, N_FFT, HOP).float(), atol=1e-5, rtol=1e-5)  # edges too
    with pytest.raises(RuntimeError):  # why 'same' is not torch.istft(center=False): its NOLA check
        torch.istft(spec, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=False)


def reference_decode(sd: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """Upstream's decode (codes_to_features -> VocosBackbone -> ISTFTHead) written out with plain torch ops."""
    x = F.embedding(codes, sd["feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed"]).transpose(1, 2)
    x = F.conv1d(x, sd["backbone.embed.weight"], sd["backbone.embed.bias"], padding=3)

    def gn(h: torch.Tensor, p: str) -> torch.Tensor:
        return F.group_norm(h, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)

    def conv(h: torch.Tensor, p: str, pad: int) -> torch.Tensor:
        return F.conv1d(h, sd[p + ".weight"], sd[p + ".bias"], padding=pad)

    def swish(h: torch.Tensor) -> torch.Tensor:
        return h * torch.sigmoid(h)

    for i in (0, 1, 2, 3, 4):
        p = f"backbone.pos_net.{i}"
        if i == 2:  # AttnBlock, as upstream: bmm, scale, softmax, bmm
            h = gn(x, p + ".norm")
            q, k, v = (conv(h, f"{p}.{n}", 0) for n in "qkv")
            w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * q.shape[1] ** -0.5, dim=2)
            x = x + conv(torch.bmm(v, w.permute(0, 2, 1)), p + ".proj_out", 0)
        else:
            h = conv(swish(gn(x, p + ".norm1")), p + ".conv1", 1)
            x = x + conv(swish(gn(h, p + ".norm2")), p + ".conv2", 1)
    x = gn(x, "backbone.pos_net.5")

    def ada(h: torch.Tensor, p: str) -> torch.Tensor:  # bandwidth id 0
        return F.layer_norm(h, (BB,), eps=1e-6) * sd[p + ".scale.weight"][0] + sd[p + ".shift.weight"][0]

    x = ada(x.transpose(1, 2), "backbone.norm").transpose(1, 2)
    for i in range(LAYERS):
        p = f"backbone.convnext.{i}."
        h = F.conv1d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=BB).transpose(1, 2)
        h = F.gelu(F.linear(ada(h, p + "norm"), sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"]))
        x = x + (sd[p + "gamma"] * F.linear(h, sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])).transpose(1, 2)
    x = F.layer_norm(x.transpose(1, 2), (BB,), sd["backbone.final_layer_norm.weight"],
                     sd["backbone.final_layer_norm.bias"], eps=1e-6)
    mag, p = F.linear(x, sd["head.out.weight"], sd["head.out.bias"]).transpose(1, 2).chunk(2, dim=1)
    return torch.exp(mag).clip(max=1e2) * (torch.cos(p) + 1j * torch.sin(p))  # the head's spectrogram


def test_decode_matches_reference(codec: WavTokenizerCodec) -> None:
    codes = torch.randint(0, V, (2, 1, 60), generator=torch.Generator().manual_seed(2))
    spec = reference_decode(upstream_state(), codes[:, 0])
    ours = codec.decode(codes)[:, 0]
    assert ours.shape == (2, 60 * HOP)
    ref = torch.istft(spec, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True, length=60 * HOP - HOP // 2)
    scale = float(ref.abs().max())
    assert scale > 1e-3
    torch.testing.assert_close(ours[:, HOP // 2:], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, ola_reference(spec, N_FFT, HOP).float(), atol=1e-5, rtol=1e-5)


# -- files and errors ---------------------------------------------------------------------------------
def test_token_files_roundtrip(tmp_path: Path) -> None:
    toks = {"utt1": np.array([[1, 4095, 7]], dtype=np.int16), "utt2": torch.arange(10), "file": [5, 6]}
    want = {"utt1": [[1, 4095, 7]], "utt2": [list(range(10))], "file": [[5, 6]]}
    for name, kw in (("a.pt", {}), ("b.pt", {"as_numpy": True}), ("c.npz", {})):
        path = write_token_file(toks, tmp_path / name, **kw)
        back = read_token_file(path)
        assert {k: v.tolist() for k, v in back.items()} == want and all(v.dtype == np.int16 for v in back.values())
    assert isinstance(torch.load(tmp_path / "a.pt", weights_only=True)["utt1"], torch.Tensor)  # upstream reads it
    # upstream's own file: torch.save of numpy int16 arrays (semantic [1, T], acoustic [T, 4])
    upstream = {"u": np.arange(6, dtype=np.int16)[None], "v": np.zeros((5, 4), dtype=np.int16)}
    torch.save(upstream, tmp_path / "utt2semantic_token.pt")
    back = read_token_file(tmp_path / "utt2semantic_token.pt")
    assert back["u"].tolist() == [[0, 1, 2, 3, 4, 5]] and back["v"].shape == (5, 4)
    # the same written under numpy 1 (its pickle names numpy.core.multiarray._reconstruct)
    src = tmp_path / "utt2semantic_token.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "np1.pt", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    assert read_token_file(tmp_path / "np1.pt")["u"].tolist() == [[0, 1, 2, 3, 4, 5]]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def test_token_files_never_unpickle_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"u": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_token_file(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"u": np.array(["a", "b"], dtype=object)}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError):
        read_token_file(tmp_path / "obj.pt")
    torch.save({"u": np.zeros(3, dtype=np.float32)}, tmp_path / "float.pt")
    with pytest.raises(CheckpointError, match="integer"):
        read_token_file(tmp_path / "float.pt")


def test_missing_directory_and_file_errors(tmp_path: Path) -> None:
    cfg = WavTokenizerCodec.Config
    with pytest.raises(CheckpointError, match=r"nope does not exist"):
        WavTokenizerCodec(cfg(model_dir=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty has no config.yaml.*wavtokenizer/ folder"):
        WavTokenizerCodec(cfg(model_dir=str(tmp_path / "empty")))
    d = write_upstream_dir(tmp_path / "InspireMusic-Tiny" / "wavtokenizer")
    (d / "model.pt").rename(d / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"wavtokenizer/model.pt does not exist.*other.ckpt"):
        WavTokenizerCodec(cfg(model_dir=str(tmp_path / "InspireMusic-Tiny")))  # the model dir finds wavtokenizer/
    m = WavTokenizerCodec(cfg(model_dir=str(d), checkpoint_file="other.ckpt"))
    assert m.source.endswith("other.ckpt")


def test_checkpoint_with_objects_needs_allow_list(tmp_path: Path) -> None:
    d = write_upstream_dir(tmp_path / "wt", extra={"hyper_parameters": argparse.Namespace(sample_rate=24000)})
    with pytest.raises(CheckpointError, match=r"argparse.Namespace"):
        WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(d)))
    m = WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(d), allow_globals=["argparse.Namespace"]))
    assert m.cardinality == V


def test_inspiremusic_import_picks_up_wavtokenizer(host, tmp_path: Path) -> None:
    from inspire_llm.importer import import_inspiremusic
    from test_inspire import upstream_llm_pt, write_model_dir

    src = write_model_dir(tmp_path / "InspireMusic-Tiny", upstream_llm_pt())
    report = import_inspiremusic(src, tmp_path / "no_wt")
    assert report.ok and any("no wavtokenizer/ folder" in n for n in report.notes)
    assert not (tmp_path / "no_wt" / "wavtokenizer").exists()

    write_upstream_dir(src / "wavtokenizer")
    report = import_inspiremusic(src, tmp_path / "with_wt")
    assert report.ok, report
    codec = load_component(tmp_path / "with_wt" / "wavtokenizer", expected_kind="codec")
    assert (codec.cardinality, codec.frame_rate, codec.sample_rate) == (V, 75.0, 24000)
    assert (tmp_path / "with_wt" / "model.safetensors").is_file()
    assert (tmp_path / "with_wt" / "model_index.yaml").is_file() and not (tmp_path / "no_wt" / "model_index.yaml").exists()
    assert torch.equal(codec.state_dict()["head.out.weight"], upstream_state()["head.out.weight"])
    again = WavTokenizerCodec(WavTokenizerCodec.Config(model_dir=str(tmp_path / "with_wt")))  # the import's root
    assert again.source.endswith("wavtokenizer/model.safetensors")


def test_generate_with_imported_inspiremusic_checkpoint(tmp_path: Path) -> None:
    """`vidmusic generate VIDEO --model <imported dir>` writes a 24 kHz wav + muxed mp4; without a wavtokenizer/
    folder the import is one component and the error says so."""
    import os
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    from inspire_llm.importer import import_inspiremusic
    from test_inspire import upstream_llm_pt, write_model_dir
    from vidmusic_core.video import probe_video, write_video

    src = write_model_dir(tmp_path / "InspireMusic-Tiny", upstream_llm_pt())
    import_inspiremusic(src, tmp_path / "no_wt")
    write_upstream_dir(src / "wavtokenizer")
    assert import_inspiremusic(src, tmp_path / "imported").ok
    video = tmp_path / "clip.mp4"
    write_video(video, (np.random.default_rng(0).random((24, 32, 32, 3)) * 255).astype(np.uint8), 12)  # 2 s
    cli = [str(Path(sys.executable).parent / "vidmusic"), "generate", str(video)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([*cli, "--model", str(tmp_path / "imported"), "-o", str(tmp_path / "gen"),
                          "--text", "a calm piano piece"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    audio, sr = sf.read(str(tmp_path / "gen" / "clip.wav"))
    assert sr == 24000 and abs(len(audio) / sr - 2.0) < 0.02
    info = probe_video(tmp_path / "gen" / "clip.mp4")
    assert info.has_audio and abs(info.duration - 2.0) < 0.2
    bad = subprocess.run([*cli, "--model", str(tmp_path / "no_wt"), "-o", str(tmp_path / "gen2")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "holds one component (a backbone 'inspire'" in bad.stderr, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
