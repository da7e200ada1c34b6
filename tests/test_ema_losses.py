"""The trainer's small parts against hand computations: EMA, losses, lr schedule, optimiser groups."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stemserver_training.distributed import Distributed, gather_with_grad, shard
from stemserver_training.ema import ema_rate, ema_update
from stemserver_training.losses import InfoNCE, column_shift_loss, jepa_loss
from stemserver_training.optim import build_optimizer, parameter_groups, scaled_lr
from stemserver_training.schedule import learning_rate


def test_ema_rate_is_linear_from_start_to_end():
    assert ema_rate(0, 101, 0.99, 1.0) == 0.99
    assert ema_rate(50, 101, 0.99, 1.0) == pytest.approx(0.995, abs=1e-15)
    assert ema_rate(100, 101, 0.99, 1.0) == 1.0
    assert ema_rate(500, 101, 0.99, 1.0) == 1.0  # past the end: stays at tau_end
    assert ema_rate(0, 1, 0.99, 1.0) == 1.0


def test_ema_update_exact_values():
    target, context = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, -2.0]]))
        target.bias.fill_(4.0)
        context.weight.copy_(torch.tensor([[3.0, 2.0]]))
        context.bias.fill_(0.0)
    ema_update(target, context, tau=0.75)  # 0.75 t + 0.25 c, exact in binary floating point
    assert torch.equal(target.weight, torch.tensor([[1.5, -1.0]]))
    assert torch.equal(target.bias, torch.tensor([3.0]))
    assert torch.equal(context.weight, torch.tensor([[3.0, 2.0]]))  # the context is untouched
    ema_update(target, context, tau=1.0)  # tau 1 freezes the target
    assert torch.equal(target.weight, torch.tensor([[1.5, -1.0]]))
    ema_update(target, context, tau=0.0)  # tau 0 copies the context
    assert torch.equal(target.weight, context.weight)
    assert not target.weight.requires_grad or target.weight.grad is None
    with pytest.raises(ValueError, match="parameters"):
        ema_update(nn.Linear(2, 1), nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1)), 0.5)


def _hand_info_nce(context: list[list[float]], target: list[list[float]], temperature: float,
                   symmetric: bool, center: bool) -> float:
    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    def centred(rows):
        means = [sum(col) / len(rows) for col in zip(*rows)]
        return [[x - m for x, m in zip(row, means)] for row in rows] if center else rows

    c, t = [unit(v) for v in centred(context)], [unit(v) for v in centred(target)]
    sim = [[sum(a * b for a, b in zip(ci, tj)) / temperature for tj in t] for ci in c]

    def cross_entropy(rows):
        return sum(math.log(sum(math.exp(x) for x in row)) - row[i] for i, row in enumerate(rows)) / len(rows)

    forward = cross_entropy(sim)
    if not symmetric:
        return forward
    transposed = [list(col) for col in zip(*sim)]
    return (forward + cross_entropy(transposed)) / 2


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("center", [True, False])
def test_info_nce_matches_a_hand_computation(symmetric, center):
    context = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-1.0, 0.4, 0.9]]
    target = [[0.9, 0.1, 0.4], [0.5, 0.5, 0.0], [-0.3, 0.1, 1.0]]
    loss = InfoNCE(temperature=0.2, symmetric=symmetric, center=center)
    value = loss(torch.tensor(context, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))
    assert value.item() == pytest.approx(_hand_info_nce(context, target, 0.2, symmetric, center), rel=1e-5)
    assert loss.temperature.item() == pytest.approx(0.2)


def test_info_nce_temperature_is_learnable_and_clamped():
    loss = InfoNCE(temperature=0.1, min_temperature=0.05, max_temperature=0.5)
    context, target = torch.randn(4, 8), torch.randn(4, 8)
    loss(context, target).backward()
    assert loss.log_temperature.grad is not None and loss.log_temperature.grad != 0
    with torch.no_grad():
        loss.log_temperature.fill_(math.log(1e-4))
    assert loss.temperature.item() == pytest.approx(0.05)
    with torch.no_grad():
        loss.log_temperature.fill_(math.log(10.0))
    assert loss.temperature.item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        InfoNCE(temperature=1.0, max_temperature=0.5)


def test_info_nce_is_low_for_matching_pairs_and_blind_to_a_shared_offset():
    x = F.normalize(torch.eye(4), dim=-1)
    loss = InfoNCE(temperature=0.05, center=False)
    assert loss(x, x).item() < 1e-6  # each context picks its own target with certainty
    assert loss(x, x.roll(1, dims=0)).item() > 10  # every pair wrong
    centred = InfoNCE(temperature=0.05)
    offset = 100 * torch.ones(4)  # a direction every embedding shares, as at initialisation
    assert centred(x + offset, x - offset).item() == pytest.approx(centred(x, x).item(), abs=1e-4)
    assert loss(x + offset, x + offset).item() == pytest.approx(math.log(4), abs=1e-3)  # uncentred: chance


def test_jepa_loss_on_known_vectors():
    target = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # layer norm: zero mean, unit variance
    normalised = (target - 2.5) / math.sqrt(1.25 + 1e-5)
    assert jepa_loss(normalised, target).item() == pytest.approx(0.0, abs=1e-6)
    assert jepa_loss(3 * normalised, target).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert jepa_loss(-normalised, target).item() == pytest.approx(4.0, abs=1e-6)
    orthogonal = torch.tensor([[1.0, -1.0, -1.0, 1.0]])  # orthogonal to the centred target
    assert jepa_loss(orthogonal, target).item() == pytest.approx(2.0, abs=1e-6)
    # The target's offset and scale do not matter (layer norm), the prediction's offset does.
    assert jepa_loss(normalised, 10 * target + 7).item() == pytest.approx(0.0, abs=1e-5)
    # Averaged per patch: one perfect patch and one opposite patch give (0 + 4) / 2.
    patches = torch.cat([normalised, -normalised])[None]  # (1, 2, 4)
    assert jepa_loss(patches, torch.cat([target, target])[None]).item() == pytest.approx(2.0, abs=1e-6)


def test_column_shift_loss_rewards_columns_that_follow_the_moment_not_the_position():
    torch.manual_seed(0)
    content = torch.randn(3, 5, 20, 8)  # (B, rows, columns, d): every moment of every stem distinct
    shift = 4
    first, second = content[:, :, : 20 - shift], content[:, :, shift:]  # second's column i is first's i + 4
    loss, accuracy = column_shift_loss(first, second, shift, columns=6, temperature=0.1)
    assert accuracy == 1.0 and loss < 0.1
    positional = torch.randn(1, 5, 16, 8).expand(3, -1, -1, -1)  # columns that only say where they sit
    loss_positional, accuracy_positional = column_shift_loss(positional, positional, shift, 6, 0.1)
    assert accuracy_positional == 0.0 and loss_positional > math.log(3 * 6)
    with pytest.raises(ValueError, match="no overlap"):
        column_shift_loss(first[:, :, :8], second[:, :, :8], shift, 6, 0.1)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    lr = [learning_rate(s, 1.0, 10, 110, final_lr=0.01) for s in range(110)]
    assert lr[0] == pytest.approx(0.1) and lr[4] == pytest.approx(0.5) and lr[9] == pytest.approx(1.0)
    assert lr[10] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert lr[109] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert learning_rate(0, 1.0, 0, 1) == pytest.approx(1.0)


def test_optimizer_decays_only_weight_matrices():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Conv2d(1, 2, 3))
    temperature = nn.Parameter(torch.tensor(0.0))
    frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)
    decay, no_decay = parameter_groups([*model.parameters(), temperature, frozen], weight_decay=0.05)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                                                   id(model[2].bias), id(temperature)}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    optimizer = build_optimizer(model.parameters(), lr=1e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert scaled_lr(1e-3, 256) == 1e-3 and scaled_lr(1e-3, 64) == pytest.approx(2.5e-4)


def test_shard_splits_a_batch_in_rank_order():
    batch = range(16, 24)
    parts = [shard(batch, Distributed(rank=r, local_rank=r, world_size=4)) for r in range(4)]
    assert [list(p) for p in parts] == [[16, 17], [18, 19], [20, 21], [22, 23]]
    assert shard(batch, Distributed()) == batch
    with pytest.raises(ValueError, match="evenly"):
        shard(range(5), Distributed(rank=0, local_rank=0, world_size=2))
    x = torch.randn(3, 2)
    assert gather_with_grad(x, Distributed()) is x  # single process: nothing to gather
