"""Importance criteria against hand computations, and a score-then-fine-tune method declared
in a few lines."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.fairness.objective import FairnessObjective
from fairprune.masks import apply_masks, get_masks, prunable_parameters
from fairprune.pruners import build_pruner, run_pruner
from fairprune.pruners.base import ScoreThenFinetune
from fairprune.pruners.importance import (
    FpgmImportance,
    MagnitudeImportance,
    RandomImportance,
    SnipImportance,
    SurvivorsFirst,
    scoring_batches,
)
from fairprune.pruners.space import ChannelSpace, Scores, Space, WeightSpace

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


def test_the_registered_methods_declare_their_importance() -> None:
    assert build_pruner("magnitude").importance == MagnitudeImportance()
    assert build_pruner("random").importance == RandomImportance()
    assert build_pruner("snip", n_batches=3).importance == SnipImportance(3)
    assert build_pruner("fpgm").importance == FpgmImportance()
    assert build_pruner("prune_then_fair").importance == MagnitudeImportance()
    assert build_pruner("ceag").importance == SurvivorsFirst(MagnitudeImportance())
    fair = {k: build_pruner(k).fair for k in ("magnitude", "prune_then_fair", "fair_then_prune", "ceag")}
    assert fair == {"magnitude": False, "prune_then_fair": True, "fair_then_prune": False, "ceag": True}


def test_score_then_finetune_is_masking_then_training(dense: nn.Module, planted_splits: Splits) -> None:
    """prune_then_fair == magnitude masks, then fine-tuning under the constraint, bit for bit;
    snip's iterations are its fine-tuning plus its scoring passes."""
    task = Task(planted_splits, FairnessObjective("equalized_odds", 0.1), CONFIG, seed=3, dense=dense)
    model = copy.deepcopy(dense)
    result = run_pruner(build_pruner("prune_then_fair", finetune_steps=4), model, 0.8, task)
    by_hand = copy.deepcopy(dense)
    torch.manual_seed(task.seed)
    space = WeightSpace()
    space.apply(by_hand, space.magnitude(by_hand), 0.8)
    train_weights(by_hand, task, 4, constraint=task.constraint(), desc="by hand")
    for (name, a), b in zip(model.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert result.train_iterations == 4
    snip = run_pruner(build_pruner("snip", finetune_steps=4, n_batches=2), copy.deepcopy(dense), 0.8, task)
    assert snip.train_iterations == 4 + 2


@dataclass(frozen=True)
class _SmallestFirst:
    """Keeps the smallest weights (an anti-magnitude), after two pretend scoring passes."""

    passes: ClassVar[int] = 2

    def __call__(self, model: nn.Module, space: Space, task: Task) -> Scores:
        return {name: -s for name, s in space.magnitude(model).items()}


@dataclass(frozen=True)
class _KeepSmallest(ScoreThenFinetune):
    importance = _SmallestFirst()
    finetune_steps: int = 3


def test_a_new_method_is_one_declaration(dense: nn.Module, planted_splits: Splits) -> None:
    model = copy.deepcopy(dense)
    magnitudes = {n: p.detach().abs().clone() for n, p in prunable_parameters(model).items()}
    result = run_pruner(_KeepSmallest(), model, 0.5, Task(planted_splits, None, CONFIG, seed=0))
    masks = get_masks(model)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.5 * total)
    kept = torch.cat([magnitudes[n][m == 1] for n, m in masks.items()])
    pruned = torch.cat([magnitudes[n][m == 0] for n, m in masks.items()])
    assert float(kept.max()) <= float(pruned.min())
    assert result.train_iterations == 3 + 2
