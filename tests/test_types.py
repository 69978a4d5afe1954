"""Data contracts: shape checks and Condition helpers."""
import pytest
import torch

from vidmusic_core import Condition, Frames, MusicTokens, ShapeError, check_shapes, normalize_frames


def test_check_shapes_binds_symbols_and_reports_component():
    dims = check_shapes("enc", "tokens", torch.zeros(2, 5, 8), ("B", "N", 8))
    assert dims == {"B": 2, "N": 5}
    with pytest.raises(ShapeError, match=r"enc: mask expected \[B, N\] with N=5, got shape \[2, 4\]"):
        check_shapes("enc", "mask", torch.zeros(2, 4), ("B", "N"), dims)
    with pytest.raises(ShapeError, match=r"expected 3 dims"):
        check_shapes("enc", "tokens", torch.zeros(2, 5), ("B", "N", 8))
    with pytest.raises(ShapeError, match=r"axis 2 is 7"):
        check_shapes("enc", "tokens", torch.zeros(2, 5, 7), ("B", "N", 8))


def test_condition_validates_and_null_like():
    tokens = torch.randn(2, 4, 3)
    with pytest.raises(ShapeError, match="Condition: times"):
        Condition(tokens, torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 5))
    c = Condition(tokens, torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 4))
    assert torch.equal(c.null_like().tokens, torch.zeros(2, 4, 3))
    black = torch.full((1, 4, 3), 0.5)
    c2 = Condition(tokens, torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 4), null_tokens=black)
    assert torch.equal(c2.null_like().tokens, black.expand(2, 4, 3))
    perm = c2.index_select([1, 0])
    assert torch.equal(perm.tokens[0], tokens[1])
    both = Condition.cat_batch([c2, c2])
    assert both.tokens.shape == (4, 4, 3) and torch.equal(both.null_tokens, black)


def test_frames_and_music_tokens_defaults():
    f = Frames(torch.zeros(1, 3, 8, 8, 3, dtype=torch.uint8), torch.tensor([[0.0, 0.5, 1.0]]))
    assert f.local_mask.dtype == torch.bool and f.local_mask.all()
    with pytest.raises(ShapeError, match="Frames: local"):
        Frames(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3))
    m = MusicTokens(torch.zeros(2, 4, 10, dtype=torch.long))
    assert m.mask.shape == (2, 10) and m.n_codebooks == 4 and m.length == 10


def test_normalize_frames_clip_constants():
    x = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    y = normalize_frames(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert y.shape == (1, 3, 2, 2) and torch.allclose(y, torch.full_like(y, 2.0))
