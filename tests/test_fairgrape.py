"""FairGRAPE: the share-keeping greedy on hand-computed importances, and the pruner on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.data.base import GroupData, Splits
from fairprune.engine import Task, TrainConfig
from fairprune.masks import get_masks, prunable_parameters
from fairprune.methods_spec import METHODS
from fairprune.pruners import build_pruner, fairgrape, pruner_class, run_pruner
from fairprune.pruners.fairgrape import FairGrape, group_taylor_scores, share_keeping_order

CONFIG = TrainConfig(batch_size=64, lr=0.05, eval_every=2)


def test_registered_and_not_a_fairness_method():
    assert pruner_class("fairgrape") is FairGrape
    assert not METHODS["fairgrape"].fair


def test_greedy_keeps_each_groups_share():
    # targets 10/13 and 3/13; group 1 gets its turn whenever its share falls below 3/13
    importance = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0, 1.0]])
    assert share_keeping_order(importance).tolist() == [0, 4, 1, 5, 2, 3]
    assert share_keeping_order(importance, chunk=2).tolist() == [0, 1, 4, 5, 2, 3]
    # no importance at all: equal targets, group 0 first, ties by index
    assert share_keeping_order(torch.zeros(2, 3)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="expected \\(n_groups, n_units\\).*got shape \\(6,\\)"):
        share_keeping_order(importance[0])


# --- a hand-built model: group 0 uses features 0-1 only, the minority group 1 features 2-3 -------

# logits = W x; x is a one-hot e_j; column j holds the logits of every sample with x = e_j
W = torch.tensor([[1.0, -0.8, 0.5, -0.2], [-0.9, 1.1, -0.3, 0.4]])
LABEL = torch.tensor([0, 1, 0, 1])  # of e_0 .. e_3


def _hand_task() -> Task:
    """8 majority samples (4 x e_0, 4 x e_1), 2 minority ones (e_2, e_3); one batch = all of them."""
    feature = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 3])
    data = GroupData(torch.eye(4)[feature], LABEL[feature], (feature >= 2).long())
    splits = Splits("hand", "y", "g", data, data, data, ("0", "1"), ("majority", "minority"))
    return Task(splits, None, TrainConfig(batch_size=10), seed=0)


def _hand_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W)
    return model


def test_group_taylor_scores_match_the_hand_computed_values():
    # dL_g/dW[:, j] = (softmax(W[:, j]) - onehot(y_j)) / 2 on each group's own two columns, per batch
    grad = (torch.softmax(W, 0) - nn.functional.one_hot(LABEL, 2).T.float()) / 2
    imp = group_taylor_scores(_hand_model(), _hand_task(), n_batches=3)
    expected = (3 * W * grad).abs()
    torch.testing.assert_close(imp[0]["0.weight"][:, :2], expected[:, :2])
    torch.testing.assert_close(imp[1]["0.weight"][:, 2:], expected[:, 2:])
    assert torch.all(imp[0]["0.weight"][:, 2:] == 0) and torch.all(imp[1]["0.weight"][:, :2] == 0)


@pytest.mark.parametrize("rounds", [1, 3])
def test_keeps_the_minoritys_weights_that_magnitude_and_snip_remove(rounds):
    # importances I_0: W00 .0650, W01 .0520, W10 .0585, W11 .0715; I_1: W02 .0775, W03 .0354,
    # W12 .0465, W13 .0708 (targets .52 / .48): the greedy keeps W11, W02, W00, W13
    task = _hand_task()
    kept = {}
    for method, params in [("fairgrape", {"rounds": rounds}), ("magnitude", {}), ("snip", {})]:
        result = run_pruner(build_pruner(method, finetune_steps=0, **params), _hand_model(), 0.5, task)
        kept[method] = result.masks["0.weight"]
    assert kept["fairgrape"].tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    assert kept["magnitude"].tolist() == kept["snip"].tolist() == [[1.0, 1.0, 0.0, 0.0]] * 2


def test_channel_mode_keeps_a_unit_of_each_group():
    """Hidden units 0-1 read the majority's features, 2-3 (smaller weights) the minority's: the
    L1 filter norm drops both minority units, FairGRAPE keeps one unit of each group."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(torch.tensor([2.0, 1.6, 0.6, 0.5])))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, -1.2, 0.5, -0.3], [-1.0, 1.2, -0.5, 0.3]]))
    task = _hand_task()
    keep = {}
    for method in ("fairgrape", "magnitude"):
        pruner = build_pruner(method, structure="channel", finetune_steps=0)
        keep[method] = run_pruner(pruner, copy.deepcopy(model), 0.5, task).channels.keep["0"].tolist()
    assert keep["magnitude"] == [True, True, False, False]
    assert keep["fairgrape"][:2].count(True) == 1 and keep["fairgrape"][2:].count(True) == 1


# --- the pruner on the planted-bias data -----------------------------------------------------------


def _prune(dense, splits, sparsity, seed=3, **params):
    model = copy.deepcopy(dense)
    pruner = FairGrape(**{"finetune_steps": 2, "n_batches": 2, "rounds": 3, **params})
    return model, run_pruner(pruner, model, sparsity, Task(splits, None, CONFIG, seed))


@pytest.mark.parametrize(("scope", "picks"), [("global", 1024), ("global", 16), ("layer", 1024)])
@pytest.mark.parametrize("sparsity", [0.3, 0.55, 0.9])
def test_exact_sparsity(scope, picks, sparsity, dense, planted_splits):
    # 544 weights: with 16 greedy picks, chunks of up to 34 weights
    _, result = _prune(dense, planted_splits, sparsity, scope=scope, greedy_picks=picks, finetune_steps=0)
    masks = result.masks
    if scope == "global":
        masks = {"all": torch.cat([m.flatten() for m in masks.values()])}
    for mask in masks.values():
        assert int((mask == 0).sum()) == round(sparsity * mask.numel())


def test_each_group_keeps_about_its_share(dense, planted_splits):
    """The fraction of each group's importance kept differs by at most 0.01 (measured: 0.606 and
    0.607); SNIP's single ranking keeps 0.68 of the majority's and 0.44 of the minority's."""
    task = Task(planted_splits, None, CONFIG, 3)
    imp = group_taylor_scores(copy.deepcopy(dense), task, 2)

    def kept_fractions(masks):
        return [float(sum((i[n] * masks[n]).sum() for n in i) / sum(i[n].sum() for n in i)) for i in imp]

    _, fair = _prune(dense, planted_splits, 0.8, finetune_steps=0)
    snip = run_pruner(build_pruner("snip", n_batches=2, finetune_steps=0), copy.deepcopy(dense), 0.8, task)
    f0, f1 = kept_fractions(fair.masks)
    s0, s1 = kept_fractions(snip.masks)
    assert abs(f0 - f1) <= 0.01
    assert s0 - s1 >= 0.2


@pytest.mark.parametrize("params", [{}, {"recompute": True}, {"structure": "channel"}])
def test_deterministic_under_the_seed(params, dense, planted_splits):
    model, result = _prune(dense, planted_splits, 0.6, **params)
    again, result2 = _prune(dense, planted_splits, 0.6, **params)
    for name, mask in result.masks.items():
        assert torch.equal(mask, result2.masks[name])
    x = planted_splits.test.x[:16]
    torch.testing.assert_close(model(x), again(x))


@pytest.mark.parametrize("recompute", [False, True])
def test_recompute_scores_the_masked_model_before_each_round(recompute, dense, planted_splits, monkeypatch):
    seen = []  # the sparsity of the model each importance pass saw

    def recorded(model, task, n_batches):
        masks = get_masks(model)
        seen.append(sum(int((m == 0).sum()) for m in masks.values()))
        return group_taylor_scores(model, task, n_batches)

    monkeypatch.setattr(fairgrape, "group_taylor_scores", recorded)
    n = sum(p.numel() for p in prunable_parameters(dense).values())
    _prune(dense, planted_splits, 0.75, rounds=2, recompute=recompute)
    assert seen == ([0, round(0.5 * n)] if recompute else [0])  # round 1 of 2 prunes 1 - 0.25 ** 0.5


@pytest.mark.parametrize(
    ("params", "iterations"),
    [({}, 2 + 2), ({"recompute": True}, 3 * 2 + 2), ({"finetune_steps": 0}, 2), ({"rounds": 1}, 2 + 2)],
)
def test_iteration_accounting(params, iterations, dense, planted_splits):
    assert _prune(dense, planted_splits, 0.5, **params)[1].train_iterations == iterations


@pytest.mark.parametrize("field", ["rounds", "n_batches", "greedy_picks"])
def test_bad_hyperparameters_are_errors(field):
    expected = f"method 'fairgrape': {field}: expected a number greater than or equal to 1; got 0"
    with pytest.raises(ValueError, match=expected):
        build_pruner("fairgrape", **{field: 0})
