"""Upper confidence bounds on the fairness metrics (fairness.confidence)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, run_loop
from fairprune.fairness import Constraint, FairnessObjective, accuracy_gap, equalized_odds_difference
from fairprune.fairness.bounds import violation_upper_bound

Z90 = 1.2815515655446004  # standard normal 0.9 quantile


def _laplace_var(k: float, n: float) -> float:
    p = (k + 1) / (n + 2)
    return p * (1 - p) / n


def test_accuracy_gap_bound_by_hand() -> None:
    # group 0: 4 samples, 3 correct (0.75); group 1: 5 samples, 2 correct (0.4)
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1])
    pred = np.array([1, 1, 0, 1, 0, 0, 1, 0, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert accuracy_gap(y, pred, groups=groups) == pytest.approx(0.35)
    expected = 0.35 + Z90 * math.sqrt(_laplace_var(3, 4) + _laplace_var(2, 5))
    got = violation_upper_bound("accuracy_gap", y, pred, groups=groups, n_groups=2, confidence=0.9)
    assert got == pytest.approx(expected, abs=1e-12)


def test_equalized_odds_bound_is_the_worse_stratum_by_hand() -> None:
    # y=1: group 0 TPR 2/2, group 1 TPR 1/3 (gap 2/3); y=0: group 0 FPR 0/2, group 1 FPR 1/2 (gap 1/2)
    y = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert equalized_odds_difference(y, pred, groups=groups) == pytest.approx(2 / 3)
    tpr = 2 / 3 + Z90 * math.sqrt(_laplace_var(2, 2) + _laplace_var(1, 3))
    fpr = 1 / 2 + Z90 * math.sqrt(_laplace_var(0, 2) + _laplace_var(1, 2))
    got = violation_upper_bound("equalized_odds", y, pred, groups=groups, n_groups=2, confidence=0.9)
    assert got == pytest.approx(max(tpr, fpr), abs=1e-12)


def test_confidence_one_half_is_the_metric_and_the_bound_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    groups = rng.integers(0, 3, 400)
    plain = accuracy_gap(y, pred, groups=groups)
    assert violation_upper_bound(
        "accuracy_gap", y, pred, groups=groups, n_groups=3, confidence=0.5
    ) == pytest.approx(plain)
    small = violation_upper_bound("accuracy_gap", y, pred, groups=groups, n_groups=3, confidence=0.9)
    big = violation_upper_bound(
        "accuracy_gap",
        np.tile(y, 16),
        np.tile(pred, 16),
        groups=np.tile(groups, 16),
        n_groups=3,
        confidence=0.9,
    )
    assert plain < big < small  # the same rates on 16x the samples: a 4x smaller margin
    assert big - plain == pytest.approx((small - plain) / 4, rel=0.02)


def test_the_bound_covers_the_true_gap_at_its_level() -> None:
    """Groups of 80 and 120 samples with true accuracies 0.85 and 0.75 (true gap 0.1): the
    0.9-bound of a sample's gap is >= 0.1 in about 90% of 2,000 samples."""
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1], [80, 120])
    y = np.ones(200, dtype=np.int64)
    covered = 0
    trials = 2000
    for _ in range(trials):
        correct = rng.random(200) < np.where(groups == 0, 0.85, 0.75)
        pred = np.where(correct, 1, 0)
        covered += (
            violation_upper_bound("accuracy_gap", y, pred, groups=groups, n_groups=2, confidence=0.9) >= 0.1
        )
    assert 0.87 <= covered / trials <= 0.95


def test_bad_confidence_and_metric_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"confidence must be 0 \(off\) or in \[0.5, 1\), got 1.2"):
        FairnessObjective("accuracy_gap", 0.1, confidence=1.2)
    with pytest.raises(ValueError, match="supports the metrics"):
        FairnessObjective("excess_degradation", 0.1, confidence=0.9)


def test_the_constraint_checks_the_bound_and_the_history_keeps_the_plain_metric(
    planted_splits: Splits,
) -> None:
    objective = FairnessObjective("accuracy_gap", tolerance=0.0, confidence=0.9)
    constraint = Constraint(objective, planted_splits.n_groups)
    task = Task(planted_splits, objective, TrainConfig(eval_every=1), seed=0, progress=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(planted_splits.train.x.shape[1], 2)
    result = run_loop(model, task, 1, lambda _batch: (0.0, 1), constraint=constraint, desc="t")
    (row,) = result.history
    val = task.validation
    pred = model(val.x).argmax(1)
    plain = accuracy_gap(val.y, pred, groups=val.groups)
    bound = violation_upper_bound("accuracy_gap", val.y, pred, groups=val.groups, n_groups=2, confidence=0.9)
    assert row["violation"] == pytest.approx(plain)
    assert row["constraint_violation"] == pytest.approx(bound)
    assert bound > plain
    assert constraint.multiplier == pytest.approx(objective.dual_step * bound)  # dual step on the bound
