"""Importance criteria against hand computations."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig
from fairprune.masks import apply_masks
from fairprune.pruners.importance import (
    FpgmImportance,
    MagnitudeImportance,
    RandomImportance,
    SnipImportance,
    SurvivorsFirst,
    scoring_batches,
)
from fairprune.pruners.space import ChannelSpace, WeightSpace

CONFIG = TrainConfig(batch_size=32, lr=0.05, eval_every=2)


def _linear(weight: list[list[float]]) -> nn.Module:
    model = nn.Sequential(nn.Linear(len(weight[0]), len(weight)))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(weight))
        model[0].bias.zero_()
    return model


def test_magnitude_is_the_absolute_weight(planted_splits: Splits) -> None:
    model = _linear([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    task = Task(planted_splits, None, CONFIG, seed=0)
    scores = MagnitudeImportance()(model, WeightSpace(), task)
    assert torch.equal(scores["0.weight"], torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert MagnitudeImportance().passes == 0


def test_random_draws_uniform_scores_from_the_task_seed(planted_splits: Splits) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    importance, space = RandomImportance(), WeightSpace()
    torch.manual_seed(1)
    first = importance(model, space, Task(planted_splits, None, CONFIG, seed=7))
    torch.manual_seed(2)  # the global state does not matter
    again = importance(model, space, Task(planted_splits, None, CONFIG, seed=7))
    gen = torch.Generator().manual_seed(7)
    expected = {"0.weight": torch.rand((2, 3), generator=gen), "2.weight": torch.rand((2, 2), generator=gen)}
    for name, value in expected.items():
        assert torch.equal(first[name], value) and torch.equal(again[name], value)
    other = importance(model, space, Task(planted_splits, None, CONFIG, seed=8))
    assert not torch.equal(other["0.weight"], first["0.weight"])
    assert importance.passes == 0


def test_snip_sums_the_cross_entropy_gradient_over_its_batches(planted_splits: Splits) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(25, 2))
    task = Task(planted_splits, None, CONFIG, seed=3)
    weight, bias = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    grad = torch.zeros_like(weight)
    for x, y, _ in scoring_batches(copy.deepcopy(model), task, 3):
        # d mean CE / dW = (softmax(x W^T + b) - onehot(y))^T x / B
        residual = torch.softmax(x @ weight.T + bias, dim=1) - nn.functional.one_hot(y, 2).float()
        grad += residual.T @ x / len(y)
    importance = SnipImportance(n_batches=3)
    scores = importance(model, WeightSpace(), task)
    torch.testing.assert_close(scores["0.weight"], (weight * grad).abs(), rtol=1e-5, atol=1e-7)
    assert importance.passes == 3


def test_fpgm_sums_each_filters_distances_to_the_others(planted_splits: Splits) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 0, 0], [3, 4, 0], [0, 0, 0], [0, 0, 0]]))
    space = ChannelSpace(model, torch.zeros(2, 3))
    (group,) = space.groups
    # filter 1 is 5 from each of the three others (sum 15), each other filter 5 from it: mean 7.5
    task = Task(planted_splits, None, CONFIG, seed=0)
    scores = FpgmImportance()(model, space, task)
    torch.testing.assert_close(scores[group.id], torch.tensor([2 / 3, 2.0, 2 / 3, 2 / 3]))
    with pytest.raises(TypeError, match="FPGM scores filters; expected a ChannelSpace, got WeightSpace"):
        FpgmImportance()(model, WeightSpace(), task)


def test_survivors_first_ranks_every_pruned_weight_last(planted_splits: Splits) -> None:
    model = _linear([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 0, 1], [0, 1, 1]])})
    importance = SurvivorsFirst(MagnitudeImportance())
    scores = importance(model, WeightSpace(), Task(planted_splits, None, CONFIG, seed=0))
    assert torch.equal(scores["0.weight"], torch.tensor([[1.0, -1, 3], [-1, 5, 6]]))
    assert SurvivorsFirst(SnipImportance(5)).passes == 5
