"""Confidence bounds: the exact (Clopper–Pearson) bounds on a proportion that certificates are
built from (:mod:`fairprune.fairness.certificate`), and the normal upper bounds on the exact
fairness metrics for constraints that must hold on unseen data and not only on the split where
they are checked.

A gap metric is a worst case over strata ``s`` (one stratum for ``accuracy_gap`` and
``demographic_parity``; ``y = 0`` and ``y = 1`` for ``equalized_odds``) of
``max_g r_{s,g} - min_g r_{s,g}``, where ``r_{s,g}`` is a proportion over the ``n_{s,g}``
samples of group ``g`` in stratum ``s`` (the accuracy, or the rate of ``ŷ = 1``). Its bound at
confidence ``c`` is::

    max_s [ (r_{s,hi} - r_{s,lo}) + z_c * sqrt(v_{s,hi} / n_{s,hi} + v_{s,lo} / n_{s,lo}) ]

with ``hi`` / ``lo`` the groups that attain the max and the min, ``z_c`` the standard normal
quantile of ``c`` and ``v = p(1 - p)`` at the Laplace-smoothed rate ``p = (k + 1) / (n + 2)`` (so
that a rate of 0 or 1 on a handful of samples does not claim zero variance). This is the one-
sided normal (Wald) bound on the difference of the two extreme groups' proportions.

Why it exists: when the same validation split drives the dual updates and the checkpoint
selection, the chosen state's violation there is optimistic — on the face protocol's CelebA
runs the constrained methods' test accuracy gap exceeded their validation gap by 0.008 on
average, the unconstrained methods' by 0.001 (see docs/experiments/face-protocol.md).
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv
from scipy.stats import norm
from torch import Tensor

__all__ = ["BOUNDED_METRICS", "violation_upper_bound", "clopper_pearson_upper", "clopper_pearson_lower"]

BOUNDED_METRICS = ("accuracy_gap", "demographic_parity", "equalized_odds")


def _strata(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(mask of the stratum's samples, per-sample 0/1 value whose group means are compared)``."""
    if metric == "accuracy_gap":
        return [(np.ones_like(y_true, dtype=bool), y_true == y_pred)]
    if metric == "demographic_parity":
        return [(np.ones_like(y_true, dtype=bool), y_pred == 1)]
    return [(y_true == label, y_pred == 1) for label in (0, 1)]


def violation_upper_bound(
    metric: str,
    y_true: Tensor | np.ndarray,
    y_pred: Tensor | np.ndarray,
    *,
    groups: Tensor | np.ndarray,
    n_groups: int,
    confidence: float,
) -> float:
    """The one-sided upper confidence bound of ``metric`` at ``confidence`` (module docstring).

    ``confidence = 0.5`` gives the metric itself (``z = 0``).

    Raises:
        ValueError: For a metric without a bound, a confidence outside [0.5, 1), or a
            (stratum, group) cell with no samples.
    """
    if metric not in BOUNDED_METRICS:
        raise ValueError(f"fairness.confidence supports the metrics {list(BOUNDED_METRICS)}; got {metric!r}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"expected a confidence in [0.5, 1), got {confidence}")
    z = float(norm.ppf(confidence))
    y_true, y_pred, group_ids = (np.asarray(a).astype(np.int64) for a in (y_true, y_pred, groups))
    bounds = []
    for stratum, values in _strata(metric, y_true, y_pred):
        counts = np.bincount(group_ids[stratum], minlength=n_groups).astype(np.float64)
        if (counts == 0).any():
            raise ValueError(
                f"group {int(np.flatnonzero(counts == 0)[0])} has no samples in a stratum of "
                f"{metric!r}; received group sizes {counts.astype(int).tolist()}"
            )
        hits = np.bincount(group_ids[stratum], weights=values[stratum].astype(np.float64), minlength=n_groups)
        rates = hits / counts  # (G,)
        hi, lo = int(rates.argmax()), int(rates.argmin())
        smoothed = (hits + 1.0) / (counts + 2.0)
        var = smoothed * (1.0 - smoothed) / counts
        bounds.append(rates[hi] - rates[lo] + z * float(np.sqrt(var[hi] + var[lo])))
    return float(max(bounds))


def clopper_pearson_upper(k: np.ndarray | float, n: np.ndarray | float, level: float) -> np.ndarray:
    """One-sided exact upper bound ``Beta⁻¹(1 - level; k + 1, n - k)`` on a proportion (1 when
    ``k = n``); ``k`` and ``n`` may be real (scaled counts)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    full = k >= n
    return np.where(full, 1.0, betaincinv(k + 1.0, np.where(full, 1.0, n - k), 1.0 - level))


def clopper_pearson_lower(k: np.ndarray | float, n: np.ndarray | float, level: float) -> np.ndarray:
    """One-sided exact lower bound ``Beta⁻¹(level; k, n - k + 1)`` (0 when ``k = 0``)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    empty = k <= 0
    return np.where(empty, 0.0, betaincinv(np.where(empty, 1.0, k), n - k + 1.0, level))
