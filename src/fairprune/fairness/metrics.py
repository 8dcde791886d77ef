"""Exact group-fairness metrics, for reports.

Every function takes the data positionally and the group ids keyword-only
(``metric(y_true, y_pred, *, groups)``), accepts 1-D numpy arrays, torch tensors or sequences of
integer labels, and returns Python floats (per-group functions return numpy arrays).

Groups are the ids ``0 .. G-1`` with ``G = n_groups`` when given, else ``max(groups) + 1``. A group
in that range with no samples is an error, never a NaN: a fairness number is only as good as the
groups it was measured on. Binary tasks follow fairlearn's conventions (positive label ``1``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from fairprune.schema import GROUP_ACCURACY, GROUP_SIZE, group_key

__all__ = [
    "METRICS",
    "METRIC_COLUMNS",
    "accuracy_gap",
    "degradation",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "excess_degradation",
    "excess_degradations",
    "fairness_report",
    "PER_GROUP_METRICS",
    "group_accuracies",
    "group_sizes",
    "worst_group_accuracy",
]

Labels = np.ndarray | torch.Tensor | Sequence[int]


def _as_labels(values: Labels, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array, or a ValueError/TypeError saying why not."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per sample); received shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one sample")
    if array.dtype.kind == "f" and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer labels; received dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _prepare(
    named: dict[str, Labels], groups: Labels, n_groups: int | None
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Convert and validate the label arrays and the group ids; resolve ``G``."""
    arrays = [_as_labels(values, name) for name, values in named.items()]
    group_ids = _as_labels(groups, "groups")
    lengths = {name: len(a) for name, a in zip(named, arrays, strict=True)}
    lengths["groups"] = len(group_ids)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have one length (one entry per sample); received {lengths}")
    return arrays, group_ids, _resolve_n_groups(group_ids, n_groups)


def _resolve_n_groups(groups: np.ndarray, n_groups: int | None) -> int:
    lowest, highest = int(groups.min()), int(groups.max())
    if lowest < 0:
        raise ValueError(f"groups must be non-negative integer ids; received group id {lowest}")
    if n_groups is None:
        return highest + 1
    if n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer; received {n_groups}")
    if highest >= n_groups:
        raise ValueError(
            f"group id {highest} is out of range; expected ids in 0..{n_groups - 1} for n_groups={n_groups}"
        )
    return n_groups


def _group_means(values: np.ndarray, groups: np.ndarray, n_groups: int, what: str) -> np.ndarray:
    """Mean of ``values`` within each group; ValueError naming any empty group."""
    counts = np.bincount(groups, minlength=n_groups)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"group {int(empty[0])} has no samples{what}; every group id in 0..{n_groups - 1} "
            f"needs at least one (received group sizes{what}: {counts.tolist()})"
        )
    return np.bincount(groups, weights=values.astype(np.float64), minlength=n_groups) / counts


def _gap(values: np.ndarray) -> float:
    return float(values.max() - values.min())


def _check_binary(metric: str, **named: np.ndarray) -> None:
    for name, values in named.items():
        received = np.unique(values)
        if not np.isin(received, (0, 1)).all():
            raise ValueError(
                f"{metric} needs binary labels in {{0, 1}}; received {name} values {received[:10].tolist()}"
            )


def group_sizes(groups: Labels, *, n_groups: int | None = None) -> np.ndarray:
    """Number of samples of each group id ``0 .. G-1`` (zeros included), shape ``(G,)``."""
    group_ids = _as_labels(groups, "groups")
    return np.bincount(group_ids, minlength=_resolve_n_groups(group_ids, n_groups))


def group_accuracies(
    y_true: Labels, y_pred: Labels, *, groups: Labels, n_groups: int | None = None
) -> np.ndarray:
    """Accuracy of each group, ``acc_g = mean_{i: g_i = g} 1[ŷ_i = y_i]``, shape ``(G,)``."""
    (y_true, y_pred), group_ids, n = _prepare({"y_true": y_true, "y_pred": y_pred}, groups, n_groups)
    return _group_means(y_true == y_pred, group_ids, n, "")


def accuracy_gap(y_true: Labels, y_pred: Labels, *, groups: Labels, n_groups: int | None = None) -> float:
    """Performance fairness (paper Def. 1): ``max_g acc_g - min_g acc_g``."""
    return _gap(group_accuracies(y_true, y_pred, groups=groups, n_groups=n_groups))


def worst_group_accuracy(
    y_true: Labels, y_pred: Labels, *, groups: Labels, n_groups: int | None = None
) -> float:
    """``min_g acc_g``."""
    return float(group_accuracies(y_true, y_pred, groups=groups, n_groups=n_groups).min())


def demographic_parity_difference(
    y_true: Labels, y_pred: Labels, *, groups: Labels, n_groups: int | None = None
) -> float:
    """``max_g P(ŷ=1 | g) - min_g P(ŷ=1 | g)``, binary labels only (fairlearn's definition)."""
    (y_true, y_pred), group_ids, n = _prepare({"y_true": y_true, "y_pred": y_pred}, groups, n_groups)
    _check_binary("demographic_parity_difference", y_true=y_true, y_pred=y_pred)
    return _gap(_group_means(y_pred == 1, group_ids, n, ""))


def equalized_odds_difference(
    y_true: Labels, y_pred: Labels, *, groups: Labels, n_groups: int | None = None
) -> float:
    """Worst case over ``y ∈ {0, 1}`` of ``max_g P(ŷ=1 | y, g) - min_g P(ŷ=1 | y, g)``.

    The larger of the true- and false-positive-rate differences, as fairlearn's
    ``equalized_odds_difference(agg="worst_case")``. Every ``(y, group)`` cell needs a sample.
    """
    (y_true, y_pred), group_ids, n = _prepare({"y_true": y_true, "y_pred": y_pred}, groups, n_groups)
    _check_binary("equalized_odds_difference", y_true=y_true, y_pred=y_pred)
    gaps = []
    for label in (0, 1):
        stratum = y_true == label
        rates = _group_means(y_pred[stratum] == 1, group_ids[stratum], n, f" with y_true={label}")
        gaps.append(_gap(rates))
    return max(gaps)


def degradation(
    y_true: Labels,
    y_pred_dense: Labels,
    y_pred_pruned: Labels,
    *,
    groups: Labels,
    n_groups: int | None = None,
) -> np.ndarray:
    """Per-group accuracy drop from pruning (paper Def. 2), ``R_g = acc_g(dense) - acc_g(pruned)``.

    Returns:
        ``(G,)`` array; positive entries are groups that lost accuracy.
    """
    (y_true, dense, pruned), group_ids, n = _prepare(
        {"y_true": y_true, "y_pred_dense": y_pred_dense, "y_pred_pruned": y_pred_pruned},
        groups,
        n_groups,
    )
    return _group_means(y_true == dense, group_ids, n, "") - _group_means(y_true == pruned, group_ids, n, "")


def degradation_gap(
    y_true: Labels,
    y_pred_dense: Labels,
    y_pred_pruned: Labels,
    *,
    groups: Labels,
    n_groups: int | None = None,
) -> float:
    """Degradation fairness (paper Def. 3): ``max_g R_g - min_g R_g``."""
    return _gap(degradation(y_true, y_pred_dense, y_pred_pruned, groups=groups, n_groups=n_groups))


def excess_degradations(
    y_true: Labels,
    y_pred: Labels,
    *,
    groups: Labels,
    y_pred_dense: Labels,
    n_groups: int | None = None,
) -> np.ndarray:
    """Per-group excess accuracy degradation (CEAG, Hashemizadeh et al., "Balancing Act:
    Constraining Disparate Impact in Sparse Models", ICLR 2024): ``psi_g = R_g - R`` with
    ``R_g = acc_g(dense) - acc_g(pruned)`` and ``R = acc(dense) - acc(pruned)`` over all samples.

    Returns:
        ``(G,)`` array; a positive entry is a group that lost more accuracy than the whole.
    """
    (y_true, dense, pruned), group_ids, n = _prepare(
        {"y_true": y_true, "y_pred_dense": y_pred_dense, "y_pred": y_pred}, groups, n_groups
    )
    overall = float(np.mean(y_true == dense)) - float(np.mean(y_true == pruned))
    return degradation(y_true, dense, pruned, groups=group_ids, n_groups=n) - overall


def excess_degradation(
    y_true: Labels,
    y_pred: Labels,
    *,
    groups: Labels,
    y_pred_dense: Labels,
    n_groups: int | None = None,
) -> float:
    """The largest excess accuracy degradation ``max_g psi_g`` (see :func:`excess_degradations`);
    0 for the dense model itself."""
    return float(
        excess_degradations(y_true, y_pred, groups=groups, y_pred_dense=y_pred_dense, n_groups=n_groups).max()
    )


def fairness_report(
    y_true: Labels,
    y_pred: Labels,
    *,
    groups: Labels,
    n_groups: int,
    y_pred_dense: Labels | None = None,
) -> dict[str, float]:
    """All exact metrics of one evaluation, with the group sizes they were measured on.

    Keys: ``accuracy``, ``accuracy_gap``, ``worst_group_accuracy``; for binary tasks (``y_true``
    and ``y_pred`` both within ``{0, 1}``) also ``demographic_parity_difference`` and
    ``equalized_odds_difference`` (omitted for multiclass); ``degradation_gap`` and
    ``excess_degradation`` when ``y_pred_dense`` is given; then ``group_size_<g>`` and
    ``group_accuracy_<g>`` for every group.
    """
    (y_true, y_pred), group_ids, n = _prepare({"y_true": y_true, "y_pred": y_pred}, groups, n_groups)
    accuracies = group_accuracies(y_true, y_pred, groups=group_ids, n_groups=n)
    report: dict[str, float] = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "accuracy_gap": _gap(accuracies),
        "worst_group_accuracy": float(accuracies.min()),
    }
    if np.isin(y_true, (0, 1)).all() and np.isin(y_pred, (0, 1)).all():
        for key in ("demographic_parity", "equalized_odds"):
            report[METRIC_COLUMNS[key]] = METRICS[key](y_true, y_pred, groups=group_ids, n_groups=n)
    if y_pred_dense is not None:
        report["degradation_gap"] = degradation_gap(
            y_true, y_pred_dense, y_pred, groups=group_ids, n_groups=n
        )
        report["excess_degradation"] = excess_degradation(
            y_true, y_pred, groups=group_ids, y_pred_dense=y_pred_dense, n_groups=n
        )
    sizes = np.bincount(group_ids, minlength=n)
    report.update({group_key(GROUP_SIZE, g): int(sizes[g]) for g in range(n)})
    report.update({group_key(GROUP_ACCURACY, g): float(accuracies[g]) for g in range(n)})
    return report


METRICS: dict[str, Callable[..., float]] = {
    "accuracy_gap": accuracy_gap,
    "demographic_parity": demographic_parity_difference,
    "equalized_odds": equalized_odds_difference,
    "worst_group_accuracy": worst_group_accuracy,
    "excess_degradation": excess_degradation,
}
"""Exact metrics by registry key; the surrogates in ``surrogates.SURROGATES`` share the keys.
The keys of :data:`PER_GROUP_METRICS` also take ``y_pred_dense=`` (the dense model's predictions)."""

PER_GROUP_METRICS: dict[str, Callable[..., np.ndarray]] = {"excess_degradation": excess_degradations}
"""Metrics constrained group by group (one Lagrange multiplier per group): the per-group values
whose maximum is the metric of the same key in :data:`METRICS`."""

METRIC_COLUMNS: dict[str, str] = {
    "accuracy_gap": "accuracy_gap",
    "demographic_parity": "demographic_parity_difference",
    "equalized_odds": "equalized_odds_difference",
    "worst_group_accuracy": "worst_group_accuracy",
    "excess_degradation": "excess_degradation",
}
"""Column name in a ``fairness_report`` (and in run records) of each registry key."""
