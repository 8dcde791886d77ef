"""Differentiable surrogates: hand-computed values, gradients, the T -> 0 limit, missing groups."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from fairprune.fairness import (
    METRICS,
    PER_GROUP_METRICS,
    SURROGATES,
    gap_over_present,
    group_sums_counts,
    margins,
    positive_scores,
    soft_accuracy_gap,
    soft_correctness,
    soft_demographic_parity,
    soft_equalized_odds,
)


def test_margins_three_classes_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.5, -1.0]])
    y = torch.tensor([0, 2, 1])
    # 2 - max(1, 0.5); 1 - max(0, 3); 1.5 - max(1, -1)
    assert margins(logits, y).tolist() == [1.0, -2.0, 0.5]


def test_margins_single_logit_and_two_logit_forms_agree() -> None:
    f = torch.tensor([0.5, -2.0, 1.5])
    y = torch.tensor([1, 1, 0])
    assert margins(f, y).tolist() == [0.5, -2.0, -1.5]
    assert margins(f[:, None], y).tolist() == [0.5, -2.0, -1.5]
    two_logits = torch.stack([torch.zeros(3), f], dim=1)  # (3, 2), logit_1 - logit_0 = f
    assert margins(two_logits, y).tolist() == [0.5, -2.0, -1.5]


def test_positive_scores() -> None:
    logits = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
    assert positive_scores(logits).tolist() == [2.0, -3.0]
    assert positive_scores(torch.tensor([[0.5], [-1.0]])).tolist() == [0.5, -1.0]
    with pytest.raises(ValueError, match=r"\(N, 2\).*received \(2, 3\)"):
        positive_scores(torch.zeros(2, 3))


def test_soft_correctness_values() -> None:
    z = torch.tensor([-2.0, 0.0, 0.5])
    assert soft_correctness(z).tolist() == pytest.approx([1 / (1 + math.e**2), 0.5, 0.6224593])
    assert soft_correctness(z, kind="hinge", temperature=0.5).tolist() == [0.0, 1.0, 2.0]


def test_hinge_upper_bounds_the_indicator() -> None:
    z = torch.linspace(-3, 3, 601)
    for temperature in (0.1, 1.0, 5.0):
        bound = soft_correctness(z, kind="hinge", temperature=temperature)
        assert bool((bound >= (z > 0).float()).all())


def test_group_sums_counts_by_hand() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    groups = torch.tensor([0, 2, 0, 2, 2])
    sums, counts = group_sums_counts(values, groups, 4)
    assert sums.tolist() == [4.0, 0.0, 11.0, 0.0]
    assert counts.tolist() == [2.0, 0.0, 3.0, 0.0]


def test_statistics_add_up_across_shards() -> None:
    # What an all-reduce does: the sums and counts of two shards give the whole batch's gap.
    gen = torch.Generator().manual_seed(0)
    values, groups = torch.rand(40, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    whole = gap_over_present(*group_sums_counts(values, groups, 3))
    (s1, c1), (s2, c2) = (group_sums_counts(values[i::2], groups[i::2], 3) for i in (0, 1))
    assert gap_over_present(s1 + s2, c1 + c2).item() == pytest.approx(whole.item())


def _batch(n: int, n_groups: int, n_logits: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if n_logits == 0 else (n, n_logits)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, max(n_logits, 2), (n,), generator=gen)
    groups = torch.arange(n) % n_groups  # every (y, group) cell is very likely filled
    return logits, y, groups


GRADCHECK_CASES = [
    ("accuracy_gap", 3, {"kind": "sigmoid"}),
    ("accuracy_gap", 3, {"kind": "hinge"}),
    ("accuracy_gap", 2, {"kind": "sigmoid"}),
    ("accuracy_gap", 0, {"kind": "hinge"}),
    ("demographic_parity", 2, {}),
    ("demographic_parity", 0, {}),
    ("equalized_odds", 2, {}),
    ("equalized_odds", 0, {}),
]


@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize(("key", "n_logits", "extra"), GRADCHECK_CASES)
def test_gradcheck(key: str, n_logits: int, extra: dict[str, str], n_groups: int) -> None:
    logits, y, groups = _batch(24, n_groups, n_logits, seed=n_groups + n_logits)

    def fn(x: Tensor) -> Tensor:
        return SURROGATES[key](x, y, groups=groups, n_groups=n_groups, temperature=0.7, **extra)

    value = fn(logits)
    assert value.item() > 0
    assert torch.autograd.gradcheck(fn, (logits,))


def _separated_logits(predictions: Tensor, n_classes: int) -> Tensor:
    """Logits whose argmax is ``predictions``, with margins of at least 1."""
    logits = torch.zeros(len(predictions), n_classes, dtype=torch.float64)
    return logits.scatter_(1, predictions[:, None], 2.0)


LIMIT_CASES = [
    # (y, predictions, groups, n_groups)
    ([1, 0, 1, 1, 0, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 1, 0, 0, 0, 0], [0] * 4 + [1] * 6, 2),
    (
        [1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0],
        [1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1],
        [0] * 4 + [1] * 4 + [2] * 4,
        3,
    ),
]


@pytest.mark.parametrize(("y", "pred", "groups", "n_groups"), LIMIT_CASES)
@pytest.mark.parametrize("key", sorted(set(SURROGATES) - set(PER_GROUP_METRICS)))
def test_low_temperature_matches_exact_metric(
    key: str, y: list[int], pred: list[int], groups: list[int], n_groups: int
) -> None:
    y_t, pred_t, groups_t = torch.tensor(y), torch.tensor(pred), torch.tensor(groups)
    exact = METRICS[key](y_t, pred_t, groups=groups_t, n_groups=n_groups)
    assert exact > 0
    for logits in (_separated_logits(pred_t, 2), 4.0 * pred_t.double() - 2.0):  # (N, 2), (N,)
        soft = SURROGATES[key](logits, y_t, groups=groups_t, n_groups=n_groups, temperature=1e-3)
        assert soft.item() == pytest.approx(exact, abs=1e-12)


def test_low_temperature_accuracy_gap_multiclass() -> None:
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2])
    pred = torch.tensor([0, 1, 1, 2, 1, 1, 0, 1, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    soft = soft_accuracy_gap(_separated_logits(pred, 3), y, groups=groups, n_groups=3, temperature=1e-3)
    assert soft.item() == pytest.approx(1 / 2, abs=1e-12)  # accuracies 2/3, 1, 1/2


SIGNATURE_SURROGATES: list[Callable[..., Tensor]] = [
    soft_accuracy_gap,
    soft_demographic_parity,
    soft_equalized_odds,
]


@pytest.mark.parametrize("surrogate", SIGNATURE_SURROGATES)
def test_single_group_batch_is_a_connected_zero(surrogate: Callable[..., Tensor]) -> None:
    logits = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    value = surrogate(logits, y, groups=torch.zeros(6, dtype=torch.long), n_groups=3)
    value.backward()
    assert value.item() == 0.0
    assert logits.grad is not None
    assert logits.grad.abs().sum().item() == 0.0


def test_equalized_odds_skips_a_stratum_with_one_group() -> None:
    # y = 1 holds only group 0, so only the y = 0 stratum counts.
    f = torch.tensor([1.0, -1.0, 0.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 0])
    groups = torch.tensor([0, 1, 0, 0, 1])
    value = soft_equalized_odds(f, y, groups=groups, n_groups=2)
    expected = torch.sigmoid(torch.tensor(1.0)) - (torch.sigmoid(torch.tensor([-1.0, 3.0]))).mean()
    assert value.item() == pytest.approx(abs(expected.item()))
    value.backward()
    assert f.grad is not None
    assert f.grad[2:4].tolist() == [0.0, 0.0]  # the y = 1 samples get no gradient


def test_two_group_accuracy_gap_is_absolute_difference() -> None:
    logits = torch.tensor([0.3, -1.2, 2.0, 0.4], dtype=torch.float64)
    y = torch.tensor([1, 1, 0, 1])
    groups = torch.tensor([0, 0, 1, 1])
    u = torch.sigmoid(margins(logits, y))
    expected = (u[:2].mean() - u[2:].mean()).abs()
    assert soft_accuracy_gap(logits, y, groups=groups, n_groups=2).item() == pytest.approx(expected.item())


def test_errors() -> None:
    logits, y, groups = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="temperature must be positive; received 0"):
        soft_demographic_parity(logits, y, groups=groups, n_groups=2, temperature=0.0)
    with pytest.raises(ValueError, match="kind must be 'sigmoid' or 'hinge'; received 'relu'"):
        soft_accuracy_gap(logits, y, groups=groups, n_groups=2, kind="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ids in 0\.\.1; received \[0, 1, 2\]"):
        soft_accuracy_gap(logits, y, groups=torch.tensor([0, 1, 2, 1]), n_groups=2)
    with pytest.raises(ValueError, match=r"binary targets.*received \[0, 2\]"):
        soft_equalized_odds(logits, torch.tensor([0, 2, 0, 2]), groups=groups, n_groups=2)
    with pytest.raises(TypeError, match="integer tensor; received dtype torch.float32"):
        soft_accuracy_gap(logits, y, groups=groups.float(), n_groups=2)
    with pytest.raises(ValueError, match=r"groups must have shape \(4,\); received \(3,\)"):
        soft_accuracy_gap(logits, y, groups=groups[:3], n_groups=2)
    with pytest.raises(ValueError, match=r"class ids in 0\.\.1; received \[0, 3\]"):
        margins(logits, torch.tensor([0, 3, 0, 3]))


def test_soft_excess_degradations_limit_gradient_and_absent_groups() -> None:
    from fairprune.fairness import excess_degradations, soft_excess_degradations

    n = 3
    y, pred, groups = (torch.tensor(v) for v in LIMIT_CASES[1][:3])
    dense = y.clone()  # a dense model right everywhere: psi_g = (1 - acc_g) - (1 - acc) = acc - acc_g
    soft = soft_excess_degradations(
        _separated_logits(pred, 2), y, groups=groups, n_groups=n, temperature=1e-3
    )
    exact = excess_degradations(y, pred, groups=groups, y_pred_dense=dense, n_groups=n)
    assert soft.tolist() == pytest.approx(list(exact), abs=1e-9)
    logits, yb, gb = _batch(24, 4, 2, seed=3)

    def fn(x: Tensor) -> Tensor:
        return soft_excess_degradations(x, yb, groups=gb, n_groups=4, temperature=0.7)

    assert fn(logits).shape == (4,)
    assert torch.autograd.gradcheck(fn, (logits,))
    # a group absent from the batch: 0, with no NaN in the gradient
    absent = soft_excess_degradations(logits, yb, groups=gb, n_groups=6, temperature=0.7)
    assert absent[4:].tolist() == [0.0, 0.0]
    (grad,) = torch.autograd.grad(absent.sum(), logits)
    assert torch.isfinite(grad).all()
