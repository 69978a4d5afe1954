"""Layouts: token positions and loss masks, the aligned path's timing, cached steps == full forward."""
import pytest
import torch

from vidmusic_core import IGNORE_INDEX, Condition, ConfigError, MusicCodec, MusicTokens
from vidmusic_core.config import compose
from vidmusic_core.sampling import SamplingConfig, generate_tokens
from vidmusic_core.layouts.reduce import group_by_time, pool_to_rate, reduce_condition, resample_to_frames
from vidmusic_core.model import build_model
from vidmusic_core.testing import check_component_contract

FR = 50.0


class FakeCodec(MusicCodec):
    """A token codec with the sizes build_model wires from (the real codec is tested in test_rvq_mel.py)."""

    sample_rate = 16000

    def __init__(self, K=4, V=32, delays=(0, 1, 2, 3)):
        super().__init__()
        self.n_codebooks, self.cardinality, self.delays, self.frame_rate = K, V, tuple(delays), FR

    def encode(self, audio):
        raise NotImplementedError("layout tests never encode audio")

    def decode(self, music):
        raise NotImplementedError("layout tests never decode audio")


def model(layout="prefix", K=4, delays=(0, 1, 2, 3), overrides=()):
    cfg = compose(sugar={"encoder": "clip", "layout": layout, "backbone": "inspire"}, base=None,
                  overrides=["encoder.output=cls", "encoder.image_size=32", "encoder.patch_size=16", *overrides])
    return build_model(cfg, FakeCodec(K, 32, delays), seed=0)


def condition(B=2, frames=4, D=64, fps=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    times = (torch.arange(frames) / fps).repeat_interleave(3).repeat(B, 1)  # 3 tokens per frame
    return Condition(torch.randn(B, frames * 3, D, generator=g), torch.ones(B, frames * 3, dtype=torch.bool), times)


def music(B=2, K=4, T=10, lengths=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 32, (B, K, T), generator=g)
    mask = None
    if lengths is not None:
        mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return MusicTokens(codes, mask, FR)


def test_contract_builds_only_through_the_model_builder():
    from vidmusic_core.plugins import get_component

    comp = get_component("layout", "prefix")
    with pytest.raises(ConfigError, match="build_model"):
        comp.build(comp.default_config())  # unwired
    check_component_contract("layout", "prefix")  # the check wires it as build_model does (tests/test_contracts.py)


def test_prefix_positions_and_labels_with_delays():
    m = model("prefix", overrides=["layout.use_time=false"])
    cond, mus = condition(), music(lengths=[10, 7])
    inp = m.layout(m.backbone, cond, mus)
    P = inp.music_start
    # sos, sos, 4 frame tokens (frame_mean reduction), task
    assert P == 1 + 1 + 4 + 1
    B, K, S = inp.labels.shape
    assert S == P + 10 + 3 and inp.inputs_embeds.shape[:2] == (2, S)
    d = (0, 1, 2, 3)
    for b, n in enumerate([10, 7]):
        for k in range(K):
            # position P-1+c predicts delayed column c: codes[k, c - d_k] for d_k <= c < d_k + n
            for c in range(S - P + 1):
                want = mus.codes[b, k, c - d[k]] if d[k] <= c < d[k] + n else IGNORE_INDEX
                if k == 0 and c == n + 3:
                    want = m.backbone.eos_id  # EOS after the last real column
                assert int(inp.labels[b, k, P - 1 + c]) == int(want), (b, k, c)
        assert (inp.labels[b, :, : P - 1] == IGNORE_INDEX).all()
        assert inp.attention_mask[b].sum() == P + n + 3
    loss = m.backbone.loss(inp)
    assert torch.isfinite(loss)


def test_text_and_time_enter_the_prefix_left_padded():
    m = model("prefix")
    cond = condition()
    inp = m.layout(m.backbone, cond, music(), text=["a calm piano piece", ""])
    mask = inp.attention_mask[:, : inp.music_start]
    assert mask[0].all()  # the longest prefix has no padding
    n_text = len(m.backbone.tokenizer.encode("a calm piano piece"))
    assert (~mask[1]).sum() == n_text and not mask[1, :n_text].any()  # padding moved to the left
    no_time = model("prefix", overrides=["layout.use_time=false"]).layout(m.backbone, cond, music())
    assert inp.music_start == no_time.music_start + 3 + n_text  # time start, end, structure (InspireMusic's)


def test_reductions_keep_the_whole_clip():
    cond = condition(frames=60, fps=2.0)  # 30 s
    per_frame = group_by_time(cond)
    assert per_frame.tokens.shape == (2, 60, 64)
    torch.testing.assert_close(per_frame.tokens[0, 5], cond.tokens[0, 15:18].mean(dim=0))
    assert float(per_frame.times[0, -1]) == 29.5
    first = reduce_condition(cond, "frame_first")
    torch.testing.assert_close(first.tokens[0, 5], cond.tokens[0, 15])
    half = pool_to_rate(cond, 1.0)  # 1 token per second
    assert half.tokens.shape[1] == 30 and half.mask.all()
    torch.testing.assert_close(half.tokens[0, 0], cond.tokens[0, :6].mean(dim=0))


def test_resample_sample_and_hold():
    tokens = torch.arange(3.0).view(1, 3, 1)
    times = torch.tensor([[0.0, 0.5, 1.0]])
    out = resample_to_frames(tokens, times, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0.0, 0.49, 0.5, 0.99, 2.0]))
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 2.0]


def test_aligned_input_at_column_c_sees_the_video_at_column_c():
    m = model("aligned", overrides=["layout.use_time=false"])
    torch.nn.init.normal_(m.layout.aligned_proj.weight)  # zero-init otherwise
    cond, mus = condition(frames=4), music(T=100)  # 2 s of music at 50 Hz, video frames at 0, .5, 1, 1.5 s
    base = m.layout(m.backbone, cond, mus)
    changed = Condition(cond.tokens.clone(), cond.mask, cond.times)
    changed.tokens[:, 6:9] += 1.0  # the frame at t = 1.0 s
    inp = m.layout(m.backbone, changed, mus)
    P = base.music_start
    diff = (inp.inputs_embeds - base.inputs_embeds).abs().sum(dim=-1)[0]  # [S]
    cols = torch.nonzero(diff > 0).flatten() - (P - 1)
    assert cols.min() == 50 and cols.max() == 74  # columns with times in [1.0, 1.5) s


def test_global_condition_adds_the_clip_mean_at_every_music_position():
    m = model("prefix", overrides=["layout.global_condition=true", "layout.use_time=false"])
    lay = m.layout
    cond, mus = condition(), music()
    zero = lay(m.backbone, cond, mus)
    b = lay(m.backbone, Condition(cond.tokens * 0 + 5, cond.mask, cond.times), mus)
    P = zero.music_start
    assert torch.equal(zero.inputs_embeds[:, P - 1:], b.inputs_embeds[:, P - 1:])  # zero-initialised path
    torch.nn.init.normal_(lay.global_proj.weight, std=0.1)
    base = lay(m.backbone, cond, mus)
    masked = Condition(cond.tokens.clone(), cond.mask.clone(), cond.times)
    masked.tokens[0, -3:] += 100.0  # a padded frame: must not count
    masked.mask[0, -3:] = False
    moved = lay(m.backbone, masked, mus)
    want = lay.global_proj(cond.tokens[0, :-3].mean(0)) - lay.global_proj(cond.tokens[0].mean(0))  # [D]
    delta = moved.inputs_embeds[0, P - 1:] - base.inputs_embeds[0, P - 1:]  # [S_m + 1, D]
    torch.testing.assert_close(delta, want.expand_as(delta), atol=1e-4, rtol=1e-4)
    lat = lay.frame_input(m.backbone, cond, n_frames=7)  # latent backbones get it at every frame too
    torch.testing.assert_close(lat.inputs_embeds[0], lay.global_embeds(cond)[0].expand(7, -1))


def test_aligned_is_zero_initialised():
    m = model("aligned")
    cond = condition()
    a = m.layout(m.backbone, cond, music())
    b = m.layout(m.backbone, Condition(cond.tokens * 0 + 5, cond.mask, cond.times), music())
    assert torch.equal(a.inputs_embeds, b.inputs_embeds)


@pytest.mark.parametrize("layout", ["prefix", "aligned", "aligned+global"])
def test_cached_steps_equal_full_forward(layout):
    """Feeding the training sequence step by step through prompt()/step_embeds() with a KV cache gives
    the logits of one full forward (the generation path and the training path agree)."""
    glob = layout.endswith("+global")
    layout = layout.removesuffix("+global")
    m = model(layout, overrides=["layout.train_eos=false", f"layout.global_condition={str(glob).lower()}"]).eval()
    if layout == "aligned":
        torch.nn.init.normal_(m.layout.aligned_proj.weight, std=0.1)
    if glob:
        torch.nn.init.normal_(m.layout.global_proj.weight, std=0.1)
    cond, mus = condition(B=2), music(T=6)
    with torch.no_grad():
        full = m.layout(m.backbone, cond, mus, seconds=torch.tensor([0.12, 0.12]))
        ref = m.backbone(full).logits  # [B, K, S, V]
        cache = m.backbone.new_cache()
        prompt = m.layout.prompt(m.backbone, cond, seconds=torch.tensor([0.12, 0.12]))
        P = prompt.music_start
        steps = [m.backbone(prompt, cache).logits[:, :, -1]]
        delayed = torch.stack([full.labels[:, :, P - 1 + c] for c in range(6 + 3)], dim=-1).clamp(min=0)
        for c in range(6 + 2):
            x = m.layout.step_embeds(m.backbone, delayed[:, :, c:c + 1], c, cond)
            from vidmusic_core import BackboneInput

            step = BackboneInput(x, torch.ones(2, 1, dtype=torch.bool))
            steps.append(m.backbone(step, cache).logits[:, :, -1])
    got = torch.stack(steps, dim=2)  # [B, K, 9, V]
    torch.testing.assert_close(got, ref[:, :, P - 1: P - 1 + 9], atol=1e-5, rtol=1e-5)


def test_cross_layout_memory_and_labels():
    m = model("prefix")  # only for its backbone's embed
    from vidmusic_core.layouts.cross import CrossLayout

    lay = CrossLayout(CrossLayout.Config(cond_dim=64, width=64, delays=[0, 1, 2, 3]))
    cond, mus = condition(), music(lengths=[10, 5])
    inp = lay(m.backbone, cond, mus)
    assert inp.memory.shape == (2, 12, 64) and inp.memory_mask.all() and inp.music_start == 1
    assert inp.labels.shape == (2, 4, 1 + 13)
    assert int(inp.labels[0, 0, 0]) == int(mus.codes[0, 0, 0]) and int(inp.labels[0, 3, 3]) == int(mus.codes[0, 3, 0])
    assert (inp.labels[1, 0, 5:] == IGNORE_INDEX).all()  # row 1 has 5 frames
    with pytest.raises(ConfigError, match="does not support layout 'cross'"):
        model("cross")


def test_long_condition_prefix_runs_without_truncation():
    """A 30 s LSTV-sized condition (3000 tokens) in the prefix, unreduced: forward + backward at toy width."""
    m = model("prefix", K=1, delays=(0,), overrides=["layout.reduce=none", "layout.use_time=false"])
    times = (torch.arange(60) / 2.0).repeat_interleave(50)[None]  # 60 frames x 50 tokens
    cond = Condition(torch.randn(1, 3000, 64), torch.ones(1, 3000, dtype=torch.bool), times)
    inp = m.layout(m.backbone, cond, music(B=1, K=1, T=200))
    assert inp.music_start == 3003
    loss = m.backbone.loss(inp)
    loss.backward()
    assert torch.isfinite(loss) and m.layout.visual_feature_proj.weight.grad is not None


def test_generation_cfg_one_equals_conditional_and_seeds():
    m = model("prefix").eval()
    cond = condition()
    greedy = SamplingConfig(temperature=0.0)
    a = generate_tokens(m.layout, m.backbone, cond, 12, seeds=[0, 0], sampling=greedy, delays=(0, 1, 2, 3))
    guided = SamplingConfig(temperature=0.0, cfg_coef=1.0 + 1e-7)  # runs the null rows, weight ~0
    b = generate_tokens(m.layout, m.backbone, cond, 12, seeds=[0, 0], sampling=guided, delays=(0, 1, 2, 3))
    assert torch.equal(a.codes, b.codes) and a.codes.shape == (2, 4, 12)
    s = SamplingConfig(top_k=10)
    x1 = generate_tokens(m.layout, m.backbone, cond, 12, seeds=[1, 2], sampling=s, delays=(0, 1, 2, 3))
    x2 = generate_tokens(m.layout, m.backbone, cond, 12, seeds=[1, 2], sampling=s, delays=(0, 1, 2, 3))
    x3 = generate_tokens(m.layout, m.backbone, cond, 12, seeds=[3, 4], sampling=s, delays=(0, 1, 2, 3))
    assert torch.equal(x1.codes, x2.codes) and not torch.equal(x1.codes, x3.codes)
    assert int(x1.codes.max()) < 32  # EOS never leaks into codes


def test_generation_eos_banned_before_min_frames():
    m = model("prefix", K=1, delays=(0,)).eval()
    with torch.no_grad():
        m.backbone.llm_decoder.bias[m.backbone.eos_id] = 50.0  # the model wants to stop at once
    out = generate_tokens(m.layout, m.backbone, condition(), 20, seeds=[0, 1],
                          sampling=SamplingConfig(use_eos=True, min_frames=7), delays=(0,))
    assert out.mask.sum(dim=1).tolist() == [7, 7]


def test_repetition_aware_sampling_breaks_loops():
    """With a backbone that always prefers one code, RAS (window 10, tau 0.1 -> any repeat) resamples."""
    m = model("prefix", K=1, delays=(0,)).eval()
    with torch.no_grad():
        m.backbone.llm_decoder.bias[5] = 3.0  # code 5 is the top choice (p ~ 0.4 of the full distribution)
    greedy_like = SamplingConfig(top_k=1)
    plain = generate_tokens(m.layout, m.backbone, condition(), 30, seeds=[0, 1], sampling=greedy_like, delays=(0,))
    assert (plain.codes == 5).all()
    ras = SamplingConfig(top_k=1, ras_window=10, ras_tau=0.1)
    out = generate_tokens(m.layout, m.backbone, condition(), 30, seeds=[0, 1], sampling=ras, delays=(0,))
    assert 0.1 < (out.codes == 5).float().mean() < 0.8  # repeats get resampled from the full distribution


@pytest.mark.parametrize("layout", ["aligned", "cross"])
def test_clip_prior_learns_the_clips_codes_and_steers_sampling(layout):
    """layout.clip_prior: aux_loss is the cross-entropy of the clip's codes under the prior (it falls when
    trained on a clip whose codes depend on its video), and generation adds prior_weight × log p to the logits."""
    from vidmusic_core.layouts.cross import CrossLayout

    m = model("aligned", overrides=["layout.clip_prior=true"])
    lay = m.layout
    if layout == "cross":  # musicgen's layout; the same head
        lay = CrossLayout(CrossLayout.Config(cond_dim=64, width=64, delays=[0, 1, 2, 3], cardinality=32, clip_prior=True))
    cond = condition(B=2)
    codes = torch.stack([torch.full((4, 10), 3), torch.full((4, 10), 17)])  # clip 0 uses code 3, clip 1 code 17
    codes[1, :, 5:] = 18
    mus = MusicTokens(codes, torch.ones(2, 10, dtype=torch.bool), 50.0)
    first = float(lay.aux_loss(cond, mus).detach())
    assert first == pytest.approx(float(torch.log(torch.tensor(32.0))), rel=0.15)  # ~uniform at init
    opt = torch.optim.Adam(lay.clip_prior.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = lay.aux_loss(cond, mus)
        loss.backward()
        opt.step()
    assert float(loss) < 0.8  # clip 1's best is log 2 (two codes, half each)
    p = lay.logit_prior(cond).exp()  # [B, K, V]
    assert float(p[0, :, 3].min()) > 0.9 and float(p[1, :, 17:19].sum(-1).min()) > 0.9
    if layout == "cross":
        return
    greedy = SamplingConfig(temperature=0.0, prior_weight=100.0)
    out = generate_tokens(lay, m.backbone, cond, 8, seeds=[0, 0], sampling=greedy, delays=(0, 1, 2, 3))
    assert (out.codes[0] == 3).all() and ((out.codes[1] == 17) | (out.codes[1] == 18)).all()
    off = generate_tokens(lay, m.backbone, cond, 8, seeds=[0, 0], sampling=SamplingConfig(temperature=0.0, prior_weight=0.0),
                          delays=(0, 1, 2, 3))
    lay.clip_prior = None  # the same model without the head samples what prior_weight=0 samples
    plain = generate_tokens(lay, m.backbone, cond, 8, seeds=[0, 0], sampling=SamplingConfig(temperature=0.0),
                            delays=(0, 1, 2, 3))
    assert torch.equal(off.codes, plain.codes) and not torch.equal(off.codes, out.codes)
