"""The `clip` encoder: contract, shapes and times, offline loading of a saved tiny CLIP."""
import torch

from vidmusic_core import ConfigError, Frames, build
from vidmusic_core.config import compose, component_from_config
from vidmusic_core.testing import check_component_contract, make_frames


def test_contract():
    check_component_contract("encoder", "clip")


def test_contract_cls_and_mean_outputs():
    from clip_frames.encoder import ClipFramesEncoder

    for output in ("cls", "mean"):
        check_component_contract("encoder", "clip", ClipFramesEncoder.Config(output=output, image_size=64, patch_size=16))


def test_tokens_shapes_and_times():
    comp, cfg = component_from_config(compose(sugar={"encoder": "clip"}, overrides=["encoder.image_size=64",
                                                                                  "encoder.patch_size=16"]), "encoder")
    enc = comp.build(cfg)
    frames = make_frames(enc.frame_spec, batch=2, seconds=1.5)  # 3 frames at 2 fps, last row: 1 padded frame
    cond = enc(frames)
    P = 1 + (64 // 16) ** 2
    assert enc.tokens_per_frame == P == 17
    assert cond.tokens.shape == (2, 3 * P, 64)
    assert torch.equal(cond.times[0], torch.tensor([0.0, 0.5, 1.0]).repeat_interleave(P))
    assert cond.mask[0].all() and not cond.mask[1, -P:].any() and cond.mask[1, :-P].all()
    # a frame's tokens depend on that frame only (per-frame encoder)
    frames2 = Frames(frames.local.clone(), frames.local_times, frames.local_mask)
    frames2.local[:, 2] = 0
    cond2 = enc(frames2)
    assert torch.equal(cond2.tokens[:, : 2 * P], cond.tokens[:, : 2 * P])
    assert not torch.equal(cond2.tokens[:, 2 * P:], cond.tokens[:, 2 * P:])


def test_frames_of_another_size_are_resized():
    from clip_frames.encoder import ClipFramesEncoder

    enc = build("encoder", "clip", ClipFramesEncoder.Config(output="cls", image_size=64, patch_size=16))
    frames = Frames(torch.randint(0, 255, (1, 2, 40, 56, 3), dtype=torch.uint8), torch.tensor([[0.0, 0.5]]))
    assert enc(frames).tokens.shape == (1, 2, 64)


def test_clip_is_frozen():
    enc = build("encoder", "clip")
    assert not any(p.requires_grad for p in enc.clip.parameters())
    enc.train()
    assert not enc.clip.training


def test_loads_saved_pretrained_dir_offline(tmp_path):
    """A tiny CLIPModel (vision + text) saved with save_pretrained loads into the encoder, offline."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionModel

    from clip_frames.encoder import ClipFramesEncoder

    torch.manual_seed(3)
    full = CLIPModel(CLIPConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=64, patch_size=16),
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100),
        projection_dim=16))
    full.save_pretrained(tmp_path / "clip")
    enc = build("encoder", "clip", ClipFramesEncoder.Config(weights=str(tmp_path / "clip")))
    assert enc.image_size == 64 and enc.dim == 32 and enc.tokens_per_frame == 17
    frames = make_frames(enc.frame_spec, batch=1, seconds=1.0)
    cond = enc(frames)
    # reference: the vision tower of the saved model run directly
    from vidmusic_core import normalize_frames

    px = normalize_frames(frames.local[0], enc.frame_spec.mean, enc.frame_spec.std)
    with torch.no_grad():
        ref = full.vision_model(pixel_values=px).last_hidden_state  # [T, 17, 32]
    torch.testing.assert_close(cond.tokens[0], ref.reshape(-1, 32))
    # and a vision-only directory (transformers 5 keys without the vision_model. prefix)
    enc.clip.save_pretrained(tmp_path / "vision")
    again = build("encoder", "clip", ClipFramesEncoder.Config(weights=str(tmp_path / "vision")))
    torch.testing.assert_close(again(frames).tokens, cond.tokens)
    assert isinstance(again.clip, CLIPVisionModel)


def test_missing_weights_dir_is_clear(tmp_path):
    import pytest

    from clip_frames.encoder import ClipFramesEncoder

    with pytest.raises(ConfigError, match="never downloads"):
        build("encoder", "clip", ClipFramesEncoder.Config(weights=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="encoder.output='pooled' is not one of"):
        build("encoder", "clip", ClipFramesEncoder.Config(output="pooled"))
