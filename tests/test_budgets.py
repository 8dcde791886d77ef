"""Channel pruning to a FLOPs budget, and the warm-started exact top-k of learned masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fairprune.data.base import GroupData, Splits
from fairprune.engine import Task, TrainConfig
from fairprune.export import count_flops
from fairprune.masks import TopK, topk_masks
from fairprune.pruners import build_pruner, run_pruner
from fairprune.structured import (
    ChannelGroup,
    ChannelSlice,
    channel_groups,
    l1_channel_scores,
    slim,
    structured_topk,
    weight_costs,
)


def tiny_cnn() -> nn.Sequential:
    """6x6 input: conv 1->4 (3x3, out 4x4), conv 4->2 (3x3, out 2x2), flatten (8), linear 8->2."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False),
        nn.ReLU(),
        nn.Conv2d(4, 2, 3, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 2, bias=False),
    )


X = torch.randn(1, 1, 6, 6)
# multiply-accumulates per image: conv1 36 weights x 16 positions, conv2 72 x 4, linear 16 x 1
DENSE_MACS = 36 * 16 + 72 * 4 + 16  # 880
# per channel: conv1's = its 9 weights x 16 + its input slice of conv2 (2 x 9) x 4 = 216;
# conv2's = its 36 weights x 4 + its slice of the linear (2 outputs x 4 features) x 1 = 152


def test_weight_costs_are_output_positions_per_weight():
    model = tiny_cnn()
    assert weight_costs(model, X, "flops") == {"0.weight": 16, "2.weight": 4, "5.weight": 1}
    assert weight_costs(model, X, "params") == {"0.weight": 1, "2.weight": 1, "5.weight": 1}
    assert count_flops(model, X) == 2 * DENSE_MACS
    with pytest.raises(ValueError, match="unknown budget 'latency'"):
        weight_costs(model, X, "latency")


def test_flops_budget_counts_each_channel_by_hand():
    model = tiny_cnn()
    groups = channel_groups(model, X)
    cost = weight_costs(model, X, "flops")
    scores = {"0": torch.tensor([0.1, 0.5, 0.6, 0.7]), "2": torch.tensor([0.2, 0.9])}
    # goal 0.3 * 880 = 264: dropping conv1 ch0 removes 216; then conv2 ch0 brings it to 332:
    # conv1 144, conv2 keeps 1 x 3 x 9 of its 72 weights (45 x 4 = 180), the linear 8 of 16;
    # 216 is 48 short, 332 is 68 over: the nearest stops at 216, at_least goes on to 332
    keep = structured_topk(scores, groups, 0.3, n_prunable=DENSE_MACS, weight_cost=cost)
    assert keep["0"].tolist() == [False, True, True, True] and keep["2"].all()
    assert count_flops(slim(model, groups, keep, X), X) == 2 * (DENSE_MACS - 216)
    keep = structured_topk(scores, groups, 0.3, n_prunable=DENSE_MACS, weight_cost=cost, at_least=True)
    assert keep["0"].tolist() == [False, True, True, True] and keep["2"].tolist() == [False, True]
    assert count_flops(slim(model, groups, keep, X), X) == 2 * (DENSE_MACS - 332)


def test_flops_and_params_budgets_pick_different_channels():
    model = tiny_cnn()
    groups = channel_groups(model, X)
    scores = {"0": torch.tensor([0.1, 0.5, 0.6, 0.7]), "2": torch.tensor([0.05, 0.9])}
    # params: 124 weights, goal 12.4; conv2 ch0 first removes 36 + 8 = 44 (31.6 over vs 12.4 short)
    by_params = structured_topk(scores, groups, 0.1, n_prunable=124)
    assert all(k.all() for k in by_params.values())
    # flops: goal 88; conv2 ch0 removes 36 * 4 + 8 = 152 (64 over vs 88 short): dropped
    cost = weight_costs(model, X, "flops")
    by_flops = structured_topk(scores, groups, 0.1, n_prunable=DENSE_MACS, weight_cost=cost)
    assert by_flops["2"].tolist() == [False, True] and by_flops["0"].all()


def _image_task() -> Task:
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> GroupData:
        return GroupData(
            torch.randn(n, 1, 6, 6, generator=gen), torch.arange(n) % 2, (torch.arange(n) // 2) % 2
        )

    splits = Splits("tiny", "y", "g", split(64), split(32), split(32), ("0", "1"), ("a", "b"))
    return Task(splits, None, train=TrainConfig(batch_size=16, eval_every=5))


def test_a_pruner_meets_a_flops_budget_and_run_pruner_checks_it():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, bias=False), nn.ReLU(), nn.Conv2d(16, 16, 3, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(64, 2),
    )  # fmt: skip
    pruner = build_pruner("magnitude", structure="channel", budget="flops", finetune_steps=0)
    result = run_pruner(pruner, model, 0.5, _image_task())
    kept = result.channels
    assert kept is not None
    slimmed = kept.slim(model)
    dense_macs = 16 * 9 * 16 + 16 * 16 * 9 * 4 + 64 * 2  # 11,648
    removed = 1 - count_flops(slimmed, X) / (2 * dense_macs)
    largest_unit = 9 * 16 + 16 * 9 * 4  # a conv1 channel: its filter and its slice of conv2
    assert abs(removed - 0.5) * dense_macs <= largest_unit / 2


def test_budget_is_checked():
    with pytest.raises(ValueError, match="budget: expected 'params' or 'flops'; got 'watts'"):
        build_pruner("magnitude", structure="channel", budget="watts")
    with pytest.raises(ValueError, match="structure='channel' only"):
        build_pruner("magnitude", budget="flops")


def test_flops_budget_at_70_percent_leaves_at_most_30_percent_of_the_flops():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 16, 2),
    )  # fmt: skip
    x = torch.randn(1, 3, 16, 16)
    groups = channel_groups(model, x)
    scores = l1_channel_scores(model, groups)
    cost = weight_costs(model, x, "flops")
    total = sum(p.numel() * cost[n] for n, p in model.named_parameters() if n.endswith("weight"))
    flops_keep = structured_topk(scores, groups, 0.7, n_prunable=total, weight_cost=cost, at_least=True)
    flops = count_flops(slim(model, groups, flops_keep, x), x) / count_flops(model, x)
    assert 0.0 < flops <= 0.3 + 1e-9


# --- the warm-started top-k ------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_warm_topk_equals_topk_masks_as_scores_move(scope: str, monkeypatch: pytest.MonkeyPatch):
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(300, generator=gen), "b": torch.randn(20, 35, generator=gen)}
    topk = TopK()
    calls = []
    real_topk = torch.topk
    monkeypatch.setattr(torch, "topk", lambda *a, **k: calls.append(1) or real_topk(*a, **k))
    for _ in range(12):
        warm = topk.masks(scores, 0.7, scope=scope)
        cold = topk_masks(scores, 0.7, scope=scope)
        assert all(torch.equal(warm[k], cold[k]) for k in scores)
        scores = {k: s + 0.02 * torch.randn(s.shape, generator=gen) for k, s in scores.items()}
    # warm calls ranked nothing: only the first call and the cold references called topk
    per_call = 2 if scope == "layer" else 1
    assert len(calls) == per_call * (1 + 12)


def test_warm_topk_with_ties_at_the_cut_keeps_the_exact_count():
    topk = TopK()
    first = topk.masks({"a": torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}, 0.5)
    assert first["a"].tolist() == [0, 0, 0, 1, 1, 1]
    tied = {"a": torch.tensor([0.1, 0.2, 0.35, 0.35, 0.35, 0.6])}
    masks = topk.masks(tied, 0.5)
    assert int(masks["a"].sum()) == 3 and torch.equal(masks["a"], topk_masks(tied, 0.5)["a"])


def test_a_groups_last_removable_channel_is_ranked_by_its_own_score():
    def piece(name: str, shape: tuple[int, ...]) -> ChannelSlice:
        return ChannelSlice(name, 0, torch.arange(shape[0]), torch.arange(shape[0]), shape, True)

    groups = [ChannelGroup("a", 3, (piece("w1", (3, 4)),)), ChannelGroup("b", 2, (piece("w2", (2, 5)),))]
    scores = {"a": torch.tensor([0.1, 0.25, 0.9]), "b": torch.tensor([0.3, 0.35])}
    # the two weakest channels are a0 and a1 (8 of 22 weights); a1 is a's last removable one and
    # must not be ranked by 0.25 + 0.9 (the channel that stays)
    keep = structured_topk(scores, groups, 8 / 22, n_prunable=22)
    assert keep["a"].tolist() == [False, False, True] and keep["b"].all()
