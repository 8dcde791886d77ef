"""A run's fairness certificate: the objective's certification settings, the held-out split,
the bound at the end, and whether what it states held on the test split.

The statistics are :mod:`fairprune.fairness.certificate`'s; this module ties them to a run: the
sweep (:mod:`fairprune.runs`) and :func:`fairprune.prune` both certify through
:func:`certify_predictions`, so a certificate means the same on both routes.
"""

from __future__ import annotations

import dataclasses
import math

from torch import Tensor

from fairprune.data.base import GroupData, Splits
from fairprune.fairness.certificate import Certificate, certify
from fairprune.fairness.constraints import FairnessObjective
from fairprune.fairness.metrics import METRICS, PER_GROUP_METRICS

__all__ = ["with_certification", "certify_predictions", "claim_holds", "claim_value"]


def with_certification(
    objective: FairnessObjective, splits: Splits, *, dense_factor: float | None
) -> FairnessObjective:
    """``objective`` with the certification split's settings: paired (``dense_factor``, tau set
    from the dense model) or absolute (``None``), and ``certify_scale`` = certification size /
    size of the validation data training reads. Unchanged without ``objective.certify`` or a
    certification split."""
    if objective.certify == 0.0 or splits.certify is None:
        return objective
    paired = None if objective.per_group else dense_factor
    scale = len(splits.certify) / len(splits.val)
    return dataclasses.replace(objective, dense_factor=paired, certify_scale=scale)


def certify_predictions(
    objective: FairnessObjective, data: GroupData, pred: Tensor, dense_pred: Tensor, n_groups: int
) -> Certificate:
    """The certificate of predictions ``pred`` on the certification split ``data`` (read here
    once), with the dense model's predictions ``dense_pred`` on the same samples."""
    return certify(
        objective.metric, data.y, pred, groups=data.groups, n_groups=n_groups,
        confidence=objective.certify, tolerance=objective.tolerance, y_pred_dense=dense_pred,
        dense_factor=objective.dense_factor, slack=objective.slack,
    )  # fmt: skip


def claim_value(
    objective: FairnessObjective, data: GroupData, pred: Tensor, dense_pred: Tensor, n_groups: int
) -> float:
    """What a certificate of ``objective`` bounds, measured on ``data`` (the test split): the
    violation (absolute), or ``V(pruned) - f * V(dense)`` (paired)."""
    metric = objective.metric
    if metric in PER_GROUP_METRICS:
        fn = PER_GROUP_METRICS[metric]
        return float(fn(data.y, pred, groups=data.groups, y_pred_dense=dense_pred, n_groups=n_groups).max())
    value = METRICS[metric](data.y, pred, groups=data.groups, n_groups=n_groups)
    if objective.dense_factor is None:
        return float(value)
    dense = METRICS[metric](data.y, dense_pred, groups=data.groups, n_groups=n_groups)
    return float(value - objective.dense_factor * dense)


def claim_holds(objective: FairnessObjective, value: float) -> bool:
    """Whether a :func:`claim_value` is within what a certificate of ``objective`` states:
    ``<= tau`` (absolute) or ``<= slack`` (paired)."""
    threshold = objective.tolerance if objective.dense_factor is None else objective.slack
    return not math.isnan(value) and value <= threshold + 1e-12
