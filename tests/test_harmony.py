"""Learnability of a clip-level attribute (issue 19): a tiny model on a toy set where only the key varies.

Each clip's "key" (one of 4) is shown in its video as a colour (a fixed direction of the condition
tokens, plus noise that differs per clip) and decides the set of codes its music uses (8 of the 32 codes
per key, drawn at random frame by frame: no rhythm, no order, nothing else to learn). The default
layout (``aligned``) with ``layout.clip_prior`` is trained on 64 clips and generates for 16 unseen ones
from their own video and from another clip's video (of another key). The key of the music is the code set
most of its codes come from. If a change breaks the path from a clip-level cue in the video to the music,
the conditioned accuracy falls to the control's.
"""
import torch

from vidmusic_core import Condition, MusicTokens
from vidmusic_core.config import compose
from vidmusic_core.model import build_model
from vidmusic_core.sampling import SamplingConfig, generate_tokens

from test_layouts import FakeCodec

KEYS, V, T, D, FRAMES = 4, 32, 40, 64, 4


def toy_set(n, g, colours):
    """Clips i = 0..n-1 of key i % KEYS: condition [n, FRAMES*3, D], codes [n, 2, T] from the key's code set."""
    keys = torch.arange(n) % KEYS
    tokens = colours[keys][:, None, :] + torch.randn(n, FRAMES * 3, D, generator=g)  # colour + per-clip noise
    times = (torch.arange(FRAMES) / 2.0).repeat_interleave(3).repeat(n, 1)
    cond = Condition(tokens, torch.ones(n, FRAMES * 3, dtype=torch.bool), times)
    codes = keys[:, None, None] * (V // KEYS) + torch.randint(0, V // KEYS, (n, 2, T), generator=g)
    return cond, MusicTokens(codes, torch.ones(n, T, dtype=torch.bool), 50.0), keys


def key_of(codes):
    """[B, K, T] codes -> the key whose code set holds most of them [B]."""
    return torch.stack([((codes // (V // KEYS)) == k).sum(dim=(1, 2)) for k in range(KEYS)], dim=1).argmax(1)


def test_the_key_in_the_video_reaches_the_music():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    colours = 2.0 * torch.randn(KEYS, D, generator=g)
    cfg = compose(sugar={"encoder": "clip", "layout": "aligned", "backbone": "inspire"}, base=None,
                  overrides=["encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16",
                             "backbone.hidden=64", "backbone.layers=2", "backbone.intermediate=128",
                             "layout.use_time=false", "layout.clip_prior=true", "layout.clip_prior_hidden=64"])
    model = build_model(cfg, FakeCodec(K=2, V=V, delays=(0, 1)), seed=0)
    cond, music, _ = toy_set(64, g, colours)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3)
    model.train()
    for step in range(120):
        idx = torch.randperm(64, generator=g)[:16]
        c = cond.index_select(idx)
        m = MusicTokens(music.codes[idx], music.mask[idx], 50.0)
        inp = model.layout(model.backbone, c, m)
        loss = model.backbone.loss(inp) + model.layout.aux_loss(c, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_cond, _, keys = toy_set(16, g, colours)
    shuffled = test_cond.index_select(torch.arange(1, 17) % 16)  # clip i gets clip i+1's video (another key)
    sc = SamplingConfig(temperature=1.0)
    own = generate_tokens(model.layout, model.backbone, test_cond, T, seeds=list(range(16)), sampling=sc, delays=(0, 1))
    other = generate_tokens(model.layout, model.backbone, shuffled, T, seeds=list(range(16)), sampling=sc, delays=(0, 1))
    acc = float((key_of(own.codes) == keys).float().mean())
    acc_shuffled = float((key_of(other.codes) == keys).float().mean())
    assert acc >= 0.9 and acc_shuffled <= 0.1, (acc, acc_shuffled)
