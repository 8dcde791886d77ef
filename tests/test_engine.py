"""Training loop pieces: stratified batches, the constraint, checkpoint selection, NaN handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fairprune.data.base import GroupData, Splits
from fairprune.engine import CheckpointSelector, Task, TrainConfig, is_trivial, run_loop, stratified_batches
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.objective import FairnessObjective


def _data(n_per_cell: list[int]) -> GroupData:
    # cells in order (y=0,g=0), (y=0,g=1), (y=1,g=0), (y=1,g=1)
    ys, gs = [], []
    for cell, n in enumerate(n_per_cell):
        ys += [cell // 2] * n
        gs += [cell % 2] * n
    y = torch.tensor(ys)
    return GroupData(torch.randn(len(y), 3), y, torch.tensor(gs))


def test_stratified_batches_hold_every_cell_in_proportion():
    data = _data([400, 100, 300, 200])  # proportions .4 .1 .3 .2
    batches = stratified_batches(data, 50, torch.Generator().manual_seed(0), n_groups=2)
    for _ in range(40):  # two epochs
        b = next(batches)
        cell = b.y * 2 + b.groups
        counts = torch.bincount(cell, minlength=4).tolist()
        for got, share in zip(counts, [0.4, 0.1, 0.3, 0.2], strict=True):
            assert abs(got - 50 * share) <= 1


def test_stratified_batches_cover_an_epoch_exactly_once():
    data = GroupData(
        torch.arange(100.0).reshape(100, 1),
        torch.zeros(100, dtype=torch.long),
        torch.tensor([0] * 70 + [1] * 30),
    )
    batches = stratified_batches(data, 10, torch.Generator().manual_seed(1), n_groups=2)
    seen = torch.cat([next(batches).x.flatten() for _ in range(10)])
    assert sorted(seen.tolist()) == list(range(100))


def test_dual_ascent_is_projected_and_moves_by_the_violation():
    c = Constraint(FairnessObjective("accuracy_gap", tolerance=0.1, mode="lagrangian", dual_step=2.0), 2)
    c.dual_step(0.3)
    assert c.multiplier == pytest.approx(0.4)
    c.dual_step(0.0)
    assert c.multiplier == pytest.approx(0.2)
    c.dual_step(0.0)
    assert c.multiplier == 0.0  # projected, never negative
    p = Constraint(FairnessObjective("accuracy_gap", tolerance=0.1, mode="penalty", penalty_weight=2.0), 2)
    p.dual_step(0.5)
    assert p.multiplier == 0.0 and math.isnan(p.state()["multiplier"])


def test_per_group_constraint_has_one_multiplier_per_group_and_restores_them():
    objective = FairnessObjective("excess_degradation", tolerance=0.05, dual_step=2.0)
    c = Constraint(objective, 3)
    # group 0 lost 0.1 more than the whole, group 1 0.02 more, group 2 0.1 less
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    dense = y.clone()
    pruned = y.clone()
    pruned[[0, 4]] = 1 - pruned[[0, 4]]  # group 0: 1 of 4 wrong, group 1: 1 of 3, overall 2 of 10
    psi = c.violations(y, pruned, groups, y_pred_dense=dense)
    assert psi == pytest.approx([0.25 - 0.2, 1 / 3 - 0.2, 0.0 - 0.2])
    assert c.violation(y, pruned, groups, y_pred_dense=dense) == pytest.approx(1 / 3 - 0.2)
    c.dual_step(psi)
    assert c.multipliers == pytest.approx([0.0, 2 * (1 / 3 - 0.2 - 0.05), 0.0])
    state = c.state()
    assert state["multiplier"] == pytest.approx(2 * (1 / 3 - 0.25)) and state["multiplier_2"] == 0.0
    # the loss term weights each group's surrogate by its own multiplier
    logits = torch.randn(10, 2, requires_grad=True)
    expected = (torch.as_tensor(c.multipliers, dtype=logits.dtype) * c.surrogate(logits, y, groups)).sum()
    assert c.term(logits, y, groups).item() == pytest.approx(expected.item())
    restored = Constraint(objective, 3)
    restored.load_state_dict(c.state_dict())
    assert restored.multipliers == pytest.approx(c.multipliers)
    with pytest.raises(ValueError, match="expected 3 multiplier"):
        restored.load_state_dict({"multipliers": [0.0]})
    with pytest.raises(ValueError, match="dense model's predictions"):
        c.violations(y, pruned, groups)


def test_penalty_term_is_lambda_times_surrogate_and_scale_free():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 2.0], [0.1, 0.4]])
    y = torch.tensor([0, 1, 1, 0])
    g = torch.tensor([0, 0, 1, 1])
    c = Constraint(FairnessObjective("demographic_parity", 0.0, "penalty", 3.0, scale_free=False), 2)
    # positive rates: group 0 sigmoid(-3), sigmoid(-0.2); group 1 sigmoid(3), sigmoid(0.3)
    s = torch.sigmoid(torch.tensor([-3.0, -0.2, 3.0, 0.3]))
    expected = 3.0 * abs((s[2] + s[3]) / 2 - (s[0] + s[1]) / 2)
    assert float(c.term(logits, y, g)) == pytest.approx(float(expected), rel=1e-6)
    free = Constraint(FairnessObjective("demographic_parity", 0.0, "penalty", 3.0), 2)
    assert float(free.term(10 * logits, y, g)) == pytest.approx(float(free.term(logits, y, g)), rel=1e-6)


def _toy_run(objective: FairnessObjective | None) -> tuple[list[int], Constraint | None, bool | None]:
    """Two groups with a free bias each; P(y=1) is .9 in group a and .3 in group b."""
    torch.manual_seed(0)
    n = 2000
    g = torch.tensor([0, 1] * (n // 2))
    y = torch.where(g == 0, (torch.rand(n) < 0.9).long(), (torch.rand(n) < 0.3).long())
    data = GroupData(nn.functional.one_hot(g, 2).float(), y, g)
    splits = Splits("toy", "y", "g", data, data, data, ("0", "1"), ("a", "b"))
    model = nn.Linear(2, 2)
    constraint = None if objective is None else Constraint(objective, 2)
    task = Task(splits, objective, TrainConfig(batch_size=200, eval_every=10, grad_clip=0), 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    batches = stratified_batches(data, 200, torch.Generator().manual_seed(0), 2)

    def step(_next):
        b = next(batches)
        logits = model(b.x)
        loss = nn.functional.cross_entropy(logits, b.y)
        if constraint is not None:
            loss = loss + constraint.term(logits, b.y, b.groups)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach()), 1

    # the constrained optimum here is a constant predictor: allow it
    selector = CheckpointSelector(constrained=constraint is not None, band=0.005, allow_trivial=True)
    result = run_loop(model, task, 600, step, constraint=constraint, desc="toy", selector=selector)
    return model(torch.eye(2)).argmax(-1).tolist(), constraint, result.feasible


def test_lagrangian_converges_to_the_known_constrained_optimum():
    # unconstrained: predict 1 in group a, 0 in group b (demographic parity difference 1)
    assert _toy_run(None)[0] == [1, 0]
    # with DP <= 0.1 the only feasible hard predictors give both groups one class; the more
    # accurate is "1 for both" (accuracy (.9 + .3) / 2 = .6 against (.1 + .7) / 2 = .4)
    objective = FairnessObjective("demographic_parity", 0.1, "lagrangian", dual_step=5.0)
    predictions, constraint, feasible = _toy_run(objective)
    assert predictions == [1, 1]
    assert feasible is True
    assert constraint is not None and constraint.multiplier >= 0


def test_selector_prefers_the_fairest_state_within_the_accuracy_band():
    model = nn.Linear(1, 1)
    c = Constraint(FairnessObjective("accuracy_gap", tolerance=0.1), 2)
    sel = CheckpointSelector(constrained=True, band=0.01)
    for acc, viol, bias in [(0.80, 0.20, 1.0), (0.85, 0.09, 2.0), (0.849, 0.02, 3.0), (0.70, 0.0, 4.0)]:
        with torch.no_grad():
            model.bias.fill_(bias)
        sel.offer(acc, viol, c, model)
    chosen = sel.choose()
    assert chosen is not None and chosen.state["bias"].item() == 3.0 and chosen.feasible


def test_selector_falls_back_to_the_smallest_violation():
    model = nn.Linear(1, 1)
    c = Constraint(FairnessObjective("accuracy_gap", tolerance=0.01), 2)
    sel = CheckpointSelector(constrained=True, band=0.01)
    for viol, bias in [(0.3, 1.0), (0.1, 2.0), (0.2, 3.0)]:
        with torch.no_grad():
            model.bias.fill_(bias)
        sel.offer(0.9, viol, c, model)
    chosen = sel.choose()
    assert chosen is not None and chosen.state["bias"].item() == 2.0 and not chosen.feasible


def test_selector_never_calls_a_trivial_predictor_feasible():
    """A model that predicts one class has every group metric 0; it is not a fair model."""
    model = nn.Linear(1, 1)
    c = Constraint(FairnessObjective("equalized_odds", tolerance=0.05), 2)
    sel = CheckpointSelector(constrained=True, band=0.01)
    for acc, viol, trivial, bias in [(0.5, 0.0, True, 1.0), (0.9, 0.2, False, 2.0), (0.5, 0.0, True, 3.0)]:
        with torch.no_grad():
            model.bias.fill_(bias)
        sel.offer(acc, viol, c, model, trivial=trivial)
    chosen = sel.choose()
    assert chosen is not None and chosen.state["bias"].item() == 2.0 and not chosen.feasible
    only_constant = CheckpointSelector(constrained=True, band=0.01)
    only_constant.offer(0.5, 0.0, c, model, trivial=True)
    assert only_constant.choose() is not None and not only_constant.choose().feasible


def test_is_trivial_means_no_better_than_the_majority_class():
    y = torch.tensor([0, 0, 0, 1])
    assert is_trivial(y, torch.tensor([0, 0, 0, 0]))  # constant: 0.75 = majority rate
    assert is_trivial(y, torch.tensor([0, 0, 1, 0]))  # 0.5: worse than constant
    assert not is_trivial(y, torch.tensor([0, 0, 0, 1]))
    labels = torch.tensor([0, 1] * 100)
    almost_constant = torch.zeros(200, dtype=torch.long)
    almost_constant[1] = 1  # 101 of 200 right, above the majority rate, but 99.5% one class
    assert is_trivial(labels, almost_constant)


def test_a_constrained_selector_refuses_states_without_a_violation():
    sel = CheckpointSelector(constrained=True, band=0.01)
    with pytest.raises(ValueError, match="needs the violation"):
        sel.offer(0.9, math.nan, None, nn.Linear(1, 1))


def test_nan_loss_stops_with_the_step_number(planted_splits):
    model = nn.Linear(25, 2)
    task = Task(planted_splits, None, TrainConfig(eval_every=5), 0)
    calls = iter(range(100))

    def step(_next):
        return (math.nan if next(calls) == 6 else 1.0), 1

    with pytest.raises(ValueError, match="became nan at step 7 of 20"):
        run_loop(model, task, 20, step, constraint=None, desc="toy")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "equalised_odds"}, "unknown fairness metric"),
        ({"mode": "hard"}, "unknown constraint mode"),
        ({"tolerance": -0.1}, "tolerance must be a finite number >= 0"),
        ({"tolerance": float("nan")}, "tolerance must be a finite number >= 0"),
    ],
)
def test_bad_objectives_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FairnessObjective(**kwargs)
