"""BiFP's update and its behaviour on data with a planted group bias."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import planted_bias_frame, splits_from_frame
from torch import nn

from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import evaluate
from fairprune.masks import get_masks
from fairprune.models import build_model
from fairprune.pruners import build_pruner, run_pruner
from fairprune.pruners.bifp_update import BiFPSparsifier


def _sgd_sparsifier(
    net: nn.Module, scores: dict[str, torch.Tensor], sparsity: float, gamma: float
) -> BiFPSparsifier:
    """A prepared sparsifier whose score step is plain SGD (lr 1) from the given raw scores."""
    sparsifier = BiFPSparsifier(sparsity, gamma=gamma)
    sparsifier.prepare(net, scores=scores)
    with torch.no_grad():  # undo the unit-RMS scaling: the hand computation uses the raw scores
        for name, score in sparsifier.scores.items():
            score.copy_(scores[name])
    sparsifier.optimizer = torch.optim.SGD(list(sparsifier.scores.values()), lr=1.0)
    return sparsifier


def test_upper_step_gradient_is_straight_through_plus_implicit_correction():
    """grad_s = theta * g - (1/gamma) * m * g * g, with g = dL/d(m * theta)."""
    net = nn.Sequential(nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0, -1.0]]))
    sparsifier = _sgd_sparsifier(net, {"0.weight": torch.tensor([[3.0, 1.0, 2.0]])}, 1 / 3, gamma=2.0)
    assert get_masks(net)["0.weight"].tolist() == [[1.0, 0.0, 1.0]]
    x = torch.tensor([[1.0, 1.0, 2.0]])
    net(x).sum().backward()  # g = x = [1, 1, 2]
    sparsifier.step()
    # theta * g = [1, 2, -2]; m * g^2 / gamma = [0.5, 0, 2]; grad = [0.5, 2, -4]
    torch.testing.assert_close(sparsifier.scores["0.weight"].detach(), torch.tensor([[2.5, -1.0, 6.0]]))
    # the mask is re-thresholded from the new scores: keep the top 2 of [2.5, -1, 6]
    assert get_masks(net)["0.weight"].tolist() == [[1.0, 0.0, 1.0]]


def test_bifp_lets_pruned_weights_come_back():
    """With a straight-through gradient, a pruned weight whose score rises re-enters the mask."""
    net = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
    sparsifier = _sgd_sparsifier(net, {"0.weight": torch.tensor([[1.0, 0.9]])}, 0.5, gamma=1e9)
    assert get_masks(net)["0.weight"].tolist() == [[1.0, 0.0]]
    (-net(torch.tensor([[0.0, 1.0]]))).sum().backward()  # only the pruned input matters
    sparsifier.step()
    assert get_masks(net)["0.weight"].tolist() == [[0.0, 1.0]]


@pytest.fixture(scope="module")
def planted() -> tuple[Splits, nn.Module, TrainConfig]:
    splits = splits_from_frame(planted_bias_frame(n=6000))
    config = TrainConfig(batch_size=128, lr=0.05, eval_every=20)
    torch.manual_seed(0)
    model = build_model("mlp", (25,), 2, hidden=[64, 64])
    train_weights(model, Task(splits, None, config, 0), 800)
    return splits, model, config


def test_bifp_meets_tau_where_magnitude_pruning_does_not(planted):
    """The minority follows its own rule; pruning to 97% keeps the majority's weights. Magnitude
    pruning (fine-tuned for as many iterations as BiFP used) violates tau; BiFP meets it."""
    splits, dense, config = planted
    tau, sparsity = 0.1, 0.97
    task = Task(splits, FairnessObjective("equalized_odds", tau), config, seed=0)
    fair_model = copy.deepcopy(dense)
    fair = run_pruner(build_pruner("bifp", steps=300, finetune_steps=100), fair_model, sparsity, task)
    base_model = copy.deepcopy(dense)
    run_pruner(build_pruner("magnitude", finetune_steps=fair.train_iterations), base_model, sparsity, task)
    fair_val = evaluate(fair_model, splits.val, 2)["equalized_odds_difference"]
    base_val = evaluate(base_model, splits.val, 2)["equalized_odds_difference"]
    fair_test = evaluate(fair_model, splits.test, 2)
    base_test = evaluate(base_model, splits.test, 2)
    assert fair.feasible is True and fair_val <= tau  # enforced where it is checked
    assert base_val > tau and base_test["equalized_odds_difference"] > tau + 0.05
    assert fair_test["equalized_odds_difference"] <= tau + 0.03  # test split: +- sampling noise
    assert fair_test["equalized_odds_difference"] < base_test["equalized_odds_difference"] - 0.05
    assert fair_test["accuracy"] >= base_test["accuracy"] - 0.02
