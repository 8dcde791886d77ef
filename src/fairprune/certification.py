"""A run's fairness certificate: the objective's certification settings, the held-out split,
the bound at the end, and whether what it states held on the test split.

The statistics are :mod:`fairprune.fairness.certificate`'s; this module ties them to a run: the
sweep (:mod:`fairprune.sweep.runs`) and :func:`fairprune.prune` both certify through
:func:`certify_predictions`, so a certificate means the same on both routes.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from torch import Tensor, nn

from fairprune.data._once import warn_once
from fairprune.data.base import GroupData, Splits
from fairprune.errors import DataError
from fairprune.fairness.certificate import CERTIFIABLE_METRICS, MIN_CELL, Certificate, cell_sizes, certify
from fairprune.fairness.metrics import METRICS, PER_GROUP_METRICS
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import predict
from fairprune.selection import is_trivial

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO",
    "AUTO_CONFIDENCE",
    "confidence_of",
    "hold_out",
    "with_certification",
    "resolve_tau",
    "certify_predictions",
    "claim_holds",
    "claim_value",
]


AUTO = "auto"
"""``certify = "auto"`` (the default): certify at :data:`AUTO_CONFIDENCE` where the data allow
it, else run without a certificate and say why (a level given as a number makes that an error)."""
AUTO_CONFIDENCE = 0.95


def confidence_of(certify: float | str) -> float:
    """The confidence level a ``certify`` setting asks for (0: none)."""
    return AUTO_CONFIDENCE if certify == AUTO else float(certify)


def hold_out(
    splits: Splits, metric: str, certify: float | str, fraction: float, seed: int, *, min_cell: int = MIN_CELL
) -> Splits:
    """``splits`` with ``fraction`` of validation held out for the certificate
    (:meth:`~fairprune.data.base.Splits.with_certification`), checked before anything trains:
    every (stratum, group) cell the certificate of ``metric`` bounds must hold ``min_cell``
    samples. ``certify = 0``: ``splits`` unchanged. ``certify = "auto"`` and a cell too small:
    ``splits`` unchanged (no certificate; training reads all of validation), with a warning
    naming the cell.

    Raises:
        DataError: For a confidence level given as a number and a cell too small: naming the
            group (and the label, for equalized odds), its size, and what would help.
    """
    if confidence_of(certify) == 0.0 or (certify == AUTO and metric not in CERTIFIABLE_METRICS):
        return splits
    held = splits.with_certification(fraction, seed)
    cert = held.certify
    assert cert is not None
    sizes = cell_sizes(metric, cert.y, cert.groups, splits.n_groups)
    small = [(s, g, n) for s, row in enumerate(sizes) for g, n in enumerate(row) if n < min_cell]
    if not small:
        return held
    s, g, n = small[0]
    where = f" with {splits.target}={splits.class_names[s]}" if len(sizes) > 1 else ""
    message = (
        f"certification split too small to bound group {splits.group_names[g]!r}{where}: {n} samples "
        f"(certify_fraction={fraction:g} of {len(splits.val)} validation samples of {splits.name}); "
        f"expected at least {min_cell}"
    )
    if certify == AUTO:
        warn_once(logger, "%s: running without a certificate (certify = 0 says so quietly)", message)
        return splits
    raise DataError(f"{message} — give a larger validation split or certify_fraction, or set certify = 0")


def resolve_tau(
    metric: str, tolerance: float | str, dense_val_pred: Tensor, splits: Splits, dense_factor: float = 1.0
) -> float:
    """tau, the one place it is resolved (the sweep's cells and :func:`fairprune.prune`): a number
    as given, or for ``"dense"`` ``dense_factor`` times the dense model's value of ``metric`` on
    the validation data training reads (never the certification split)."""
    if tolerance != "dense":
        return float(tolerance)
    val = splits.val
    value = METRICS[metric](val.y, dense_val_pred, groups=val.groups, n_groups=splits.n_groups)
    return dense_factor * float(value)


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


def degradation_bound(
    objective: FairnessObjective, data: GroupData, pred: Tensor, dense_pred: Tensor, n_groups: int
) -> float:
    """The per-group claim beside a run's certificate: an upper confidence bound, at the
    objective's level on the same certification samples, of ``max_g psi_g`` — how much more
    accuracy the worst-hit group lost to pruning than the average (``excess_degradation``).
    It is a statement of its own at that level (with the certificate, both hold at ``2c - 1``)."""
    cert = certify(
        "excess_degradation", data.y, pred, groups=data.groups, n_groups=n_groups,
        confidence=objective.certify, tolerance=objective.slack, y_pred_dense=dense_pred,
    )  # fmt: skip
    return float(cert.bound)


def certify_models(
    objective: FairnessObjective | None, splits: Splits, dense: nn.Module, pruned: nn.Module, device: str
) -> tuple[Certificate | None, float | None]:
    """The certificate of a pruned model on the certification split (read here once) and the
    per-group bound beside it (:func:`degradation_bound`); ``(None, None)`` without a constraint,
    with ``certify=0`` or without a certification split."""
    if objective is None or objective.certify == 0.0 or splits.certify is None:
        return None, None
    pred = predict(pruned, splits.certify, device=device)
    dense_pred = predict(dense, splits.certify, device=device)
    return certify_with_groups(objective, splits.certify, pred, dense_pred, splits.n_groups)


def certify_with_groups(
    objective: FairnessObjective, data: GroupData, pred: Tensor, dense_pred: Tensor, n_groups: int
) -> tuple[Certificate, float]:
    """:func:`certify_predictions` and the :func:`degradation_bound` beside it, on the same
    certification samples: what every certified run states, in the sweep and the one call."""
    certificate = certify_predictions(objective, data, pred, dense_pred, n_groups)
    if is_trivial(data.y, pred):  # a constant predictor is "fair" for no merit: never certified
        certificate = dataclasses.replace(certificate, certified=False, trivial=True)
    return certificate, degradation_bound(objective, data, pred, dense_pred, n_groups)


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
