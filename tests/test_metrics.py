"""Exact fairness metrics: hand-computed values, agreement with fairlearn, and error cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.metrics import MetricFrame
from fairlearn.metrics import demographic_parity_difference as fl_demographic_parity
from fairlearn.metrics import equalized_odds_difference as fl_equalized_odds
from sklearn.metrics import accuracy_score

from fairprune.fairness import (
    METRIC_COLUMNS,
    METRICS,
    PER_GROUP_METRICS,
    SURROGATES,
    accuracy_gap,
    degradation,
    degradation_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    group_accuracies,
    group_sizes,
    worst_group_accuracy,
)

SCALAR_METRICS = sorted(set(METRICS) - set(PER_GROUP_METRICS))  # the ones needing no dense model

# Two groups, binary. Group 0: 4 samples, group 1: 6 samples.
Y2 = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0])
P2 = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 0])
D2 = np.array([1, 0, 1, 1, 0, 1, 0, 0, 0, 0])  # a "dense" model's predictions
G2 = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])

# Three groups, binary, four samples each.
Y3 = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0])
P3 = np.array([1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1])
G3 = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])

# Three groups, three classes.
YM = np.array([0, 1, 2, 2, 1, 0, 0, 1, 2])
PM = np.array([0, 1, 1, 2, 1, 1, 0, 1, 0])
GM = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])


def test_two_groups_by_hand() -> None:
    # acc_0 = 3/4, acc_1 = 4/6; positive rates 2/4 and 2/6;
    # TPR: 2/3 vs 1/2, FPR: 0/1 vs 1/4.
    np.testing.assert_allclose(group_accuracies(Y2, P2, groups=G2), [3 / 4, 4 / 6])
    np.testing.assert_array_equal(group_sizes(G2), [4, 6])
    assert accuracy_gap(Y2, P2, groups=G2) == pytest.approx(3 / 4 - 4 / 6)
    assert worst_group_accuracy(Y2, P2, groups=G2) == pytest.approx(4 / 6)
    assert demographic_parity_difference(Y2, P2, groups=G2) == pytest.approx(2 / 4 - 2 / 6)
    assert equalized_odds_difference(Y2, P2, groups=G2) == pytest.approx(1 / 4)


def test_three_groups_by_hand() -> None:
    # acc 3/4, 3/4, 1/2; positive rates 3/4, 1/4, 1; TPR 1, 1/2, 1; FPR 1/2, 0, 1.
    np.testing.assert_allclose(group_accuracies(Y3, P3, groups=G3), [3 / 4, 3 / 4, 1 / 2])
    assert accuracy_gap(Y3, P3, groups=G3) == pytest.approx(1 / 4)
    assert worst_group_accuracy(Y3, P3, groups=G3) == pytest.approx(1 / 2)
    assert demographic_parity_difference(Y3, P3, groups=G3) == pytest.approx(3 / 4)
    assert equalized_odds_difference(Y3, P3, groups=G3) == pytest.approx(1.0)


def test_multiclass_three_groups_by_hand() -> None:
    np.testing.assert_allclose(group_accuracies(YM, PM, groups=GM), [2 / 3, 1.0, 1 / 2])
    assert accuracy_gap(YM, PM, groups=GM) == pytest.approx(1 / 2)
    assert worst_group_accuracy(YM, PM, groups=GM) == pytest.approx(1 / 2)


def test_degradation_by_hand() -> None:
    # Dense accuracies 1 and 5/6, pruned 3/4 and 4/6.
    np.testing.assert_allclose(degradation(Y2, D2, P2, groups=G2), [1 / 4, 1 / 6])
    assert degradation_gap(Y2, D2, P2, groups=G2) == pytest.approx(1 / 4 - 1 / 6)


def test_group_sizes_counts_empty_groups_as_zero() -> None:
    np.testing.assert_array_equal(group_sizes(np.array([0, 2, 2]), n_groups=4), [1, 0, 2, 0])


def test_fairness_report_binary() -> None:
    report = fairness_report(Y2, P2, groups=G2, n_groups=2, y_pred_dense=D2)
    assert report == pytest.approx(
        {
            "accuracy": 7 / 10,
            "accuracy_gap": 3 / 4 - 4 / 6,
            "worst_group_accuracy": 4 / 6,
            "demographic_parity_difference": 2 / 4 - 2 / 6,
            "equalized_odds_difference": 1 / 4,
            "degradation_gap": 1 / 4 - 1 / 6,
            "excess_degradation": 1 / 4 - (9 / 10 - 7 / 10),  # R_0 - R
            "group_size_0": 4,
            "group_size_1": 6,
            "group_accuracy_0": 3 / 4,
            "group_accuracy_1": 4 / 6,
        }
    )
    assert all(isinstance(value, (int, float)) for value in report.values())


def test_fairness_report_multiclass_omits_binary_metrics() -> None:
    report = fairness_report(YM, PM, groups=GM, n_groups=3)
    assert report == pytest.approx(
        {
            "accuracy": 6 / 9,
            "accuracy_gap": 1 / 2,
            "worst_group_accuracy": 1 / 2,
            "group_size_0": 3,
            "group_size_1": 2,
            "group_size_2": 4,
            "group_accuracy_0": 2 / 3,
            "group_accuracy_1": 1.0,
            "group_accuracy_2": 1 / 2,
        }
    )


def _random_binary(seed: int, n_groups: int, n: int = 300) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=n)
    y_true = rng.integers(0, 2, size=n)
    # Group-dependent flip rates so that the metrics are far from zero.
    flip = rng.random(n) < 0.1 + 0.15 * groups
    y_pred = np.where(flip, 1 - y_true, y_true)
    return y_true, y_pred, groups


@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_fairlearn(seed: int, n_groups: int) -> None:
    y_true, y_pred, groups = _random_binary(seed, n_groups)
    frame = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    assert accuracy_gap(y_true, y_pred, groups=groups) == pytest.approx(frame.difference())
    assert worst_group_accuracy(y_true, y_pred, groups=groups) == pytest.approx(frame.group_min())
    assert demographic_parity_difference(y_true, y_pred, groups=groups) == pytest.approx(
        fl_demographic_parity(y_true, y_pred, sensitive_features=groups)
    )
    assert equalized_odds_difference(y_true, y_pred, groups=groups) == pytest.approx(
        fl_equalized_odds(y_true, y_pred, sensitive_features=groups, agg="worst_case")
    )


@pytest.mark.parametrize("key", SCALAR_METRICS)
def test_torch_inputs_match_numpy(key: str) -> None:
    y_true, y_pred, groups = _random_binary(7, 3)
    expected = METRICS[key](y_true, y_pred, groups=groups)
    received = METRICS[key](
        torch.from_numpy(y_true), torch.from_numpy(y_pred), groups=torch.from_numpy(groups)
    )
    assert isinstance(received, float)
    assert received == pytest.approx(expected)


def test_torch_inputs_for_degradation() -> None:
    expected = degradation_gap(Y3, P3, 1 - P3, groups=G3)
    as_tensors = [torch.as_tensor(a) for a in (Y3, P3, 1 - P3)]
    assert degradation_gap(*as_tensors, groups=torch.as_tensor(G3)) == pytest.approx(expected)


def test_registries_share_keys_and_columns() -> None:
    assert set(METRIC_COLUMNS) == set(METRICS)
    assert set(SURROGATES) <= set(METRICS)
    report = fairness_report(Y3, P3, groups=G3, n_groups=3)
    for key, column in METRIC_COLUMNS.items():
        if key not in PER_GROUP_METRICS:
            assert report[column] == pytest.approx(METRICS[key](Y3, P3, groups=G3))
    assert "excess_degradation" not in report  # needs the dense predictions
    with_dense = fairness_report(Y3, P3, groups=G3, n_groups=3, y_pred_dense=1 - P3)
    expected = METRICS["excess_degradation"](Y3, P3, groups=G3, y_pred_dense=1 - P3)
    assert with_dense["excess_degradation"] == pytest.approx(expected)


@pytest.mark.parametrize("key", SCALAR_METRICS)
def test_mismatched_lengths(key: str) -> None:
    with pytest.raises(ValueError, match=r"one length.*'y_pred': 9"):
        METRICS[key](Y2, P2[:-1], groups=G2)


def test_mismatched_lengths_degradation() -> None:
    with pytest.raises(ValueError, match=r"one length.*'groups': 9"):
        degradation(Y2, D2, P2, groups=G2[:-1])


@pytest.mark.parametrize("key", SCALAR_METRICS)
def test_empty_input(key: str) -> None:
    empty = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match="y_true is empty"):
        METRICS[key](empty, empty, groups=empty)


@pytest.mark.parametrize("key", SCALAR_METRICS)
def test_group_without_samples(key: str) -> None:
    with pytest.raises(ValueError, match=r"group 2 has no samples.*sizes.*: \[\d+, \d+, 0\]"):
        METRICS[key](Y2, P2, groups=G2, n_groups=3)


def test_group_without_samples_in_report_and_degradation() -> None:
    with pytest.raises(ValueError, match="group 2 has no samples"):
        fairness_report(Y2, P2, groups=G2, n_groups=3)
    with pytest.raises(ValueError, match="group 2 has no samples"):
        degradation_gap(Y2, D2, P2, groups=G2, n_groups=3)


def test_equalized_odds_empty_cell() -> None:
    y_true = np.array([1, 0, 1, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 0])
    groups = np.array([0, 0, 1, 1, 2])  # group 2 has no sample with y_true = 1
    with pytest.raises(ValueError, match="group 2 has no samples with y_true=1"):
        equalized_odds_difference(y_true, y_pred, groups=groups)


@pytest.mark.parametrize("key", SCALAR_METRICS)
def test_negative_group_id(key: str) -> None:
    with pytest.raises(ValueError, match="non-negative.*received group id -1"):
        METRICS[key](Y2, P2, groups=G2 - 1)


def test_group_id_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"group id 2 is out of range.*0\.\.1"):
        accuracy_gap(Y3, P3, groups=G3, n_groups=2)


@pytest.mark.parametrize("metric", [demographic_parity_difference, equalized_odds_difference])
def test_binary_metrics_reject_multiclass(metric: object) -> None:
    with pytest.raises(ValueError, match=r"binary labels.*received y_true values \[0, 1, 2\]"):
        metric(YM, PM, groups=GM)  # type: ignore[operator]


def test_non_integer_labels_rejected() -> None:
    with pytest.raises(TypeError, match="integer labels; received dtype float64"):
        accuracy_gap(np.array([0.5, 1.0]), np.array([0, 1]), groups=np.array([0, 1]))


def test_two_dimensional_labels_rejected() -> None:
    with pytest.raises(ValueError, match=r"must be 1-D.*\(2, 1\)"):
        accuracy_gap(np.array([[0], [1]]), np.array([0, 1]), groups=np.array([0, 1]))


def test_excess_degradation_by_hand() -> None:
    # group 0: 4 samples, group 1: 6. Dense is right everywhere; the pruned model is wrong on
    # 2 of group 0 and 1 of group 1: R_0 = 0.5, R_1 = 1/6, R = 3/10.
    y = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0])
    pruned = y.copy()
    pruned[[0, 1, 4]] = 1 - pruned[[0, 1, 4]]
    groups = np.array([0] * 4 + [1] * 6)
    from fairprune.fairness import excess_degradations

    psi = excess_degradations(y, pruned, groups=groups, y_pred_dense=y)
    assert psi == pytest.approx([0.5 - 0.3, 1 / 6 - 0.3])
    assert METRICS["excess_degradation"](y, pruned, groups=groups, y_pred_dense=y) == pytest.approx(0.2)
    assert METRICS["excess_degradation"](y, y, groups=groups, y_pred_dense=y) == 0.0  # dense vs dense
    # size-weighted, the excesses average to zero
    assert float(np.dot(psi, [4, 6])) == pytest.approx(0.0)
