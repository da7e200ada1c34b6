"""The encoder and predictor: shapes, positional embeddings, and conditioning that really conditions."""

from __future__ import annotations

import pytest
import torch
from conftest import TEXT_DIM, tiny_config

from stemserver.model import (
    ENCODER_PRESETS,
    FiLM,
    ModelConfig,
    Predictor,
    StemJEPA,
    count_parameters,
    encoder_flops,
    sincos_2d,
)


@pytest.mark.parametrize("seconds, columns", [(1, 6), (8, 50), (20, 125)])
def test_encoder_grid_shape_for_any_duration(seconds, columns):
    model = StemJEPA(tiny_config()).eval()
    with torch.no_grad():
        grid = model.encode(torch.randn(2, 16000 * seconds) * 0.1)
    assert grid.shape == (2, 5, columns, 64)
    assert torch.isfinite(grid).all()


def test_encoder_refuses_less_than_one_column():
    model = StemJEPA(tiny_config())
    with pytest.raises(ValueError, match="at least 16"):
        model.encode(torch.randn(1, 160 * 10))


def test_positional_embedding_distinguishes_every_patch_and_extends_in_time():
    short, long = sincos_2d(5, 50, 64), sincos_2d(5, 125, 64)
    torch.testing.assert_close(long[:, :50], short)  # extending along time keeps earlier positions
    flat = long.reshape(-1, 64)
    distances = torch.cdist(flat, flat) + torch.eye(len(flat)) * 1e3
    assert distances.min() > 1e-3
    assert flat.abs().max() <= 1.0


def test_positions_reach_the_encoder(monkeypatch):
    """Attention alone is permutation-equivariant: swapping two columns of the input would just
    swap them in the output. The positional embeddings must break that."""
    model = StemJEPA(tiny_config()).eval()
    mel = torch.randn(1, 80, 32)
    swapped = torch.cat([mel[..., 16:], mel[..., :16]], dim=-1)
    with torch.no_grad():
        out, out_swapped = model.encoder(mel), model.encoder(swapped)
    assert not torch.allclose(out, out_swapped.flip(2), atol=1e-3)
    # The argument's premise: without positional embeddings the swap passes straight through.
    monkeypatch.setattr("stemserver.model.sincos_2d", lambda rows, cols, dim: torch.zeros(rows, cols, dim))
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(mel), model.encoder(swapped).flip(2), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("conditioning", ["film", "concat"])
def test_predictor_output_depends_on_the_condition(conditioning):
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(conditioning=conditioning)).eval()
    z = torch.randn(2, 5, 50, 64)
    bass, drums = torch.randn(2, TEXT_DIM).unbind(0)
    with torch.no_grad():
        a = predictor(z, bass.expand(2, -1))
        b = predictor(z, drums.expand(2, -1))
        again = predictor(z, bass.expand(2, -1))
    assert a.shape == z.shape
    torch.testing.assert_close(a, again)
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()


def test_each_batch_item_gets_its_own_condition():
    predictor = Predictor(tiny_config()).eval()
    z = torch.randn(1, 5, 4, 64).expand(2, -1, -1, -1)
    text = torch.randn(2, TEXT_DIM)
    with torch.no_grad():
        both = predictor(z, text)
        first = predictor(z[:1], text[:1])
    torch.testing.assert_close(both[:1], first)
    assert not torch.allclose(both[0], both[1])


def test_film_starts_at_identity_for_a_zero_condition_and_learns_from_gradients():
    film = FiLM(TEXT_DIM, 32)
    h = torch.randn(4, 10, 32)
    torch.testing.assert_close(film(h, torch.zeros(4, 1, TEXT_DIM)), h)
    predictor = Predictor(tiny_config())
    predictor(torch.randn(2, 5, 3, 64), torch.randn(2, TEXT_DIM)).square().mean().backward()
    for layer in predictor.film:
        assert layer.gamma.weight.grad.abs().sum() > 0
        assert layer.beta.weight.grad.abs().sum() > 0


def test_predictor_has_the_papers_depth_and_width():
    config = ModelConfig.preset("base")
    predictor = Predictor(config)
    assert len(predictor.layers) == 6 and len(predictor.film) == 5
    assert [layer.out_features for layer in predictor.layers] == [1024] * 5 + [768]


def test_presets_match_their_table_and_base_is_vit_base_sized():
    for name, (dim, depth, heads) in ENCODER_PRESETS.items():
        config = ModelConfig.preset(name)
        assert (config.embed_dim, config.depth, config.num_heads) == (dim, depth, heads)
    base = StemJEPA(ModelConfig.preset("base"))
    assert 84e6 < count_parameters(base.encoder) < 87e6  # ViT-B/16 without class token or head
    assert encoder_flops(base.config, columns=50) > 40e9  # ~43 GFLOP for 250 tokens


def test_target_encoder_starts_as_a_frozen_copy():
    model = StemJEPA(tiny_config())
    for (name, p), (_, q) in zip(model.encoder.named_parameters(), model.target_encoder.named_parameters()):
        torch.testing.assert_close(p, q, msg=name)
        assert p.requires_grad and not q.requires_grad


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(embed_dim=66, num_heads=2), "multiple of 4"),
        (dict(embed_dim=64, num_heads=3), "divisible"),
        (dict(conditioning="cross"), "conditioning"),
        (dict(predictor_layers=1), "at least 2"),
    ],
)
def test_invalid_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys():
    config = tiny_config(conditioning="concat")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="unknown model size"):
        ModelConfig.preset("huge")
