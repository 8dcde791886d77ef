"""Fairness certificates: a Seldonian safety test on a held-out certification split.

A certificate states that the chosen model's TRUE (population) violation is within the user's
tolerance, with probability at least ``c = 1 - alpha`` over the draw of the certification samples.
It is valid only if those samples never influenced the model: read them once, at the end.

Every metric is a worst case over strata ``s`` (all samples; or ``y = 0`` and ``y = 1`` for
``equalized_odds``) of gaps between group rates ``r_{s,g} = P(v = 1 | s, g)`` of a per-sample 0/1
value ``v`` (correct, or ``ŷ = 1``): ``V = max_s (max_g r_{s,g} - min_g r_{s,g})``. On ``k`` ones of
``n`` samples the one-sided Clopper–Pearson bounds at level ``a`` are::

    UB_a(k, n) = Beta⁻¹(1 - a; k + 1, n - k)   (1 when k = n)
    LB_a(k, n) = Beta⁻¹(a; k, n - k + 1)       (0 when k = 0)

each failing with probability at most ``a``; a statement built from ``M`` of them, each at
``a = alpha / M``, fails with probability at most ``alpha`` (union bound).

Absolute (tolerance ``tau``): ``V(p) <= max_s [max_g UB(r_{s,g}) - min_g LB(r_{s,g})]``,
``M = 2 S G``.

Paired (no less fair than the dense model ``d``, factor ``f``, slack ``eps``): bound
``V(p) - f V(d)``. Per cell, ``δ_g = r_g(p) - r_g(d)`` is the mean of ``v_i(p) - v_i(d) ∈ {-1, 0, 1}``,
so with ``P± = P(v(p) - v(d) = ±1)``: ``UB(δ) = UB(P+) - LB(P-)``, ``LB(δ) = LB(P+) - UB(P-)``,
tight when the models mostly agree. ``V(p) - V(d) = max_{s,g≠g'} [r_g(p) - r_g'(p)] - V(d)`` and
``V(d) >= r_{s',h}(d) - r_{s',h'}(d)`` for ANY stratum ``s'`` and groups ``h, h'`` (``h = h'``:
``V(d) >= 0``), so each term is at most
``min_{s'} [min_h UB(r_g(p) - r_h(d)) + min_h' UB(r_h'(d) - r_g'(p))]`` with
``UB(r_g(p) - r_h(d)) = UB(r_g(p)) - LB(r_h(d))``, also ``<= UB(δ_g)`` when ``(s', h) = (s, g)``,
and ``UB(r_h'(d) - r_g'(p)) = UB(r_h'(d)) - LB(r_g'(p))``, also ``<= -LB(δ_g')`` when
``(s', h') = (s, g')``. The cross-group choices keep a model that LIFTS the worst group from being
charged its own improvement. For ``f ≠ 1`` add ``(1 - f) V(d)``, bounded by the absolute
``UB(V(d))`` (``f < 1``) or ``LB(V(d)) = max(0, max_s [max_g LB(r_g(d)) - min_g UB(r_g(d))])``
(``f > 1``). Eight bounds per cell (UB/LB of ``P+``, ``P-``, ``r(p)``, ``r(d)``): ``M = 8 S G``.

Excess degradation (always against the dense model): with ``e_i = 1[d correct] - 1[p correct]``,
``R_g = E[e | g]`` and ``R = E[e]``, ``psi_g = R_g - R <= UB(R_g) - LB(R)`` where
``UB(R_g) = UB(Q+_g) - LB(Q-_g)``, ``LB(R) = LB(Q+) - UB(Q-)`` and ``Q± = P(e = ±1)`` (per group,
and over all samples): ``M = 2 G + 2``.

``scale`` multiplies every ``k`` and ``n`` (real counts are fine: ``Beta⁻¹`` is
``scipy.special.betaincinv``, the function behind ``scipy.stats.beta.ppf``), keeping the rates but
sizing the intervals for a split ``scale`` times larger: a prediction, on validation data, of
whether a checkpoint would pass on the certification split (Seldonian candidate selection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fairprune.fairness.bounds import _strata, clopper_pearson_lower, clopper_pearson_upper
from fairprune.fairness.metrics import Labels, _check_binary, _prepare

__all__ = [
    "CERTIFIABLE_METRICS",
    "MIN_CELL",
    "Certificate",
    "cell_sizes",
    "certify",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
]

CERTIFIABLE_METRICS = ("accuracy_gap", "demographic_parity", "equalized_odds", "excess_degradation")
MIN_CELL = 20
_NAMES = {
    "accuracy_gap": "accuracy gap",
    "demographic_parity": "demographic parity difference",
    "equalized_odds": "equalized odds difference",
    "excess_degradation": "excess degradation",
}


@dataclass(frozen=True)
class Certificate:
    """The outcome of :func:`certify`; ``bound`` is compared with ``threshold``.

    ``bound`` is an upper confidence bound on ``V(pruned)`` (kind ``"absolute"``) or on
    ``V(pruned) - f V(dense)`` (kind ``"paired"``); ``smallest_certifiable`` is the bound an ideal
    model gets on these cell sizes: no model can certify a threshold below it here (for a paired
    claim with ``dense_factor < 1``, the bound of a model equal to the dense one, which does not
    meet such a claim by construction: a model that does can certify less).
    ``samples_needed`` (when the threshold is below that): about how many certification samples,
    in the same proportions, would let an ideal model certify it (None when none would).
    ``trivial``: the model is a (near-)constant predictor on the certification samples
    (:func:`fairprune.selection.is_trivial`); every group metric scores it as fair for no merit,
    so it is never ``certified``, whatever its bound.
    """

    metric: str
    kind: str
    confidence: float
    bound: float
    threshold: float
    certified: bool
    n_samples: int
    cell_sizes: tuple[tuple[int, ...], ...]
    smallest_certifiable: float
    dense_factor: float = 1.0
    samples_needed: int | None = None
    trivial: bool = False

    def describe(self, group_names: Sequence[str] | None = None) -> str:
        """One sentence for a report, naming the smallest (stratum, group) cell."""
        sizes = np.array(self.cell_sizes)
        s, g = (int(i) for i in np.unravel_index(int(sizes.argmin()), sizes.shape))
        group = group_names[g] if group_names is not None else f"group {g}"
        where = f" at y={s}" if sizes.shape[0] > 1 else ""
        samples = f"{self.n_samples:,} certification samples"
        smallest = f"smallest group: {group}{where}, {sizes[s, g]:,}"
        level = f"{100 * self.confidence:g}% confidence"
        name = _NAMES[self.metric]
        if self.trivial:
            return (
                f"{name} NOT certified: the model is trivial on the certification samples (no more "
                "accurate than always predicting the majority class, or one class for nearly everyone), "
                f"which a group metric can score as fair for no merit (bound {self.bound:.3f}; {samples})"
            )
        if not self.certified:
            needed = ""
            if self.samples_needed is not None:
                needed = (
                    f"; certifying {self.threshold:g} would need about {self.samples_needed:,} "
                    "in these proportions"
                )
            ideal = f"the smallest threshold these group sizes can certify is {self.smallest_certifiable:.3f}"
            if self.kind == "paired" and self.dense_factor != 1 and self.metric != "excess_degradation":
                ideal = f"a model equal to the dense one would be bounded at {self.smallest_certifiable:.3f}"
            return (
                f"{name} NOT certified at {level}: bound {self.bound:.3f} > {self.threshold:g}; {ideal} "
                f"({samples}; {smallest}{needed})"
            )
        if self.kind == "absolute" or self.metric == "excess_degradation":
            claim = f"{self.threshold:g}"
        else:
            factor = "" if self.dense_factor == 1 else f"{self.dense_factor:g} x "
            claim = f"{factor}the dense model's + {self.threshold:.3f}"
        return f"{name} <= {claim} with {level}, on {samples} ({smallest})"

    def to_row(self) -> dict[str, float | bool | str | int]:
        """The record columns of this certificate."""
        return {
            "certified": self.certified,
            "violation_bound": self.bound,
            "certify_threshold": self.threshold,
            "certify_kind": self.kind,
            "certify_dense_factor": self.dense_factor,
            "certify_confidence": self.confidence,
            "certify_samples": self.n_samples,
            "certify_min_cell": min(min(row) for row in self.cell_sizes),
            "certify_smallest": self.smallest_certifiable,
            "certify_samples_needed": -1 if self.samples_needed is None else self.samples_needed,
        }


def _bounds(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    return clopper_pearson_upper(k, n, level), clopper_pearson_lower(k, n, level)


def _gap_bound(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``max_s (max_g upper - min_g lower)`` over the last two axes ``(S, G)``."""
    return (upper.max(-1) - lower.min(-1)).max(-1)


def _absolute_bound(k: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """Upper bound on ``V`` from ``(..., S, G)`` counts, ``M = 2 S G``."""
    return _gap_bound(*_bounds(k, n, alpha / (2 * k.shape[-1] * k.shape[-2])))


def _paired_bound(
    n: np.ndarray, kp: np.ndarray, kd: np.ndarray, plus: np.ndarray, minus: np.ndarray, alpha: float, f: float
) -> np.ndarray:
    """Upper bound on ``V(p) - f V(d)`` from ``(..., S, G)`` counts, ``M = 8 S G`` (module docstring).

    ``plus`` counts samples with ``v(p) = 1, v(d) = 0``; ``minus`` those with ``v(p) = 0, v(d) = 1``.
    """
    n_strata, n_groups = n.shape[-2:]
    level = alpha / (8 * n_strata * n_groups)
    upper, lower = _bounds(np.stack([kp, kd, plus, minus]), n, level)  # (4, ..., S, G) each
    (up_p, up_d, up_plus, up_minus), (lo_p, lo_d, lo_plus, lo_minus) = upper, lower
    same = np.einsum("st,gh->sgth", np.eye(n_strata), np.eye(n_groups)).astype(bool)  # (S, G, S', H)
    # first[..., s, g, s', h] = UB(r_{s,g}(p) - r_{s',h}(d))
    first = up_p[..., :, :, None, None] - lo_d[..., None, None, :, :]
    first = np.where(same, np.minimum(first, (up_plus - lo_minus)[..., :, :, None, None]), first)
    # second[..., s', h', s, g'] = UB(r_{s',h'}(d) - r_{s,g'}(p))
    second = up_d[..., :, :, None, None] - lo_p[..., None, None, :, :]
    second = np.where(same, np.minimum(second, (up_minus - lo_plus)[..., None, None, :, :]), second)
    a = np.moveaxis(first.min(-1), -1, -3)[..., None]  # (..., S', S, G, 1)
    b = second.min(-3)[..., :, :, None, :]  # (..., S', S, 1, G')
    terms = (a + b).min(-4)  # (..., S, G, G')
    if n_groups > 1:
        terms = np.where(np.eye(n_groups, dtype=bool), -np.inf, terms)
    bound = terms.max((-1, -2, -3))
    if f < 1:
        bound = bound + (1 - f) * _gap_bound(up_d, lo_d)
    elif f > 1:
        bound = bound + (1 - f) * np.maximum(0.0, (lo_d.max(-1) - up_d.min(-1)).max(-1))
    return bound


def _excess_bound(n: np.ndarray, plus: np.ndarray, minus: np.ndarray, alpha: float) -> np.ndarray:
    """Upper bound on ``max_g psi_g`` from ``(..., G)`` counts of degraded (``plus``: dense
    correct, pruned wrong) and improved (``minus``) samples, ``M = 2 G + 2``."""
    level = alpha / (2 * n.shape[-1] + 2)
    up_group = clopper_pearson_upper(plus, n, level) - clopper_pearson_lower(minus, n, level)
    total, total_plus, total_minus = n.sum(-1), plus.sum(-1), minus.sum(-1)
    lo_total = clopper_pearson_lower(total_plus, total, level) - clopper_pearson_upper(
        total_minus, total, level
    )
    return up_group.max(-1) - lo_total


def _check_settings(
    metric: str, confidence: float, scale: float, slack: float, dense_factor: float | None, has_dense: bool
) -> None:
    paired = dense_factor is not None or metric == "excess_degradation"
    if metric not in CERTIFIABLE_METRICS:
        raise ValueError(f"certify supports the metrics {list(CERTIFIABLE_METRICS)}; received {metric!r}")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"fairness.certify (the confidence) must be in (0.5, 1); received {confidence!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive (a size ratio); received {scale!r}")
    if not slack >= 0:
        raise ValueError(f"slack must be >= 0; received {slack!r}")
    if dense_factor is not None and not dense_factor >= 0:
        raise ValueError(f"dense_factor must be >= 0; received {dense_factor!r}")
    if paired and not has_dense:
        why = (
            "excess_degradation" if metric == "excess_degradation" else "a paired certificate (dense_factor)"
        )
        raise ValueError(f"{why} needs y_pred_dense, the dense model's predictions; received None")


def _check_cells(n: np.ndarray, scale: float, min_cell: int) -> None:
    """ValueError naming the first (stratum, group) cell below ``min_cell`` (or empty)."""
    small = np.argwhere((n == 0) | (n * scale < min_cell))
    if small.size:
        s, g = small[0]
        where = f" at y={s}" if n.shape[0] > 1 else ""
        scaled = f" (x scale {scale:g})" if scale != 1 else ""
        raise ValueError(
            f"group {g}{where} has {n[s, g] * scale:g} certification samples{scaled}; expected at least "
            f"min_cell={min_cell} in every (stratum, group) cell; received sizes {n.astype(int).tolist()}"
        )


def _sums(strata: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``(S, G)`` sums of each stratum's per-sample values (booleans) within each group."""
    return np.stack(
        [np.bincount(groups, weights=mask & values, minlength=n_groups) for mask, values in strata]
    )


def _stratify(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    binary = min(y_true.min(), y_pred.min()) >= 0 and max(y_true.max(), y_pred.max()) <= 1
    if metric in ("demographic_parity", "equalized_odds") and not binary:
        _check_binary(metric, y_true=y_true, y_pred=y_pred)  # raises, naming the labels received
    return _strata("accuracy_gap" if metric == "excess_degradation" else metric, y_true, y_pred)


def cell_sizes(metric: str, y_true: Labels, groups: Labels, n_groups: int) -> tuple[tuple[int, ...], ...]:
    """Samples per (stratum, group) cell, as in :attr:`Certificate.cell_sizes`: one stratum (all
    samples) for every metric but ``equalized_odds`` (``y = 0``, then ``y = 1``). Check a split with it."""
    _check_settings(metric, 0.9, 1.0, 0.0, None, True)
    (y,), group_ids, n_groups = _prepare({"y_true": y_true}, groups, n_groups)
    strata = _stratify(metric, y, y)
    sizes = _sums([(mask, np.ones_like(mask)) for mask, _ in strata], group_ids, n_groups)
    return tuple(tuple(int(v) for v in row) for row in sizes)


def certify(
    metric: str,
    y_true: Labels,
    y_pred: Labels,
    *,
    groups: Labels,
    n_groups: int,
    confidence: float,
    tolerance: float | None = None,
    y_pred_dense: Labels | None = None,
    dense_factor: float | None = None,
    slack: float = 0.0,
    scale: float = 1.0,
    min_cell: int = MIN_CELL,
) -> Certificate:
    """Certify ``metric`` of ``y_pred`` on certification data at ``confidence`` (module docstring).

    Args:
        tolerance: ``tau`` of an absolute certificate (``dense_factor=None``): ``V(p) <= tau``.
        y_pred_dense: The dense model's predictions on the same samples (paired certificates and
            ``excess_degradation``).
        dense_factor: ``f`` of a paired certificate, ``V(p) - f V(d) <= slack``; ``tolerance`` is
            then unused. ``excess_degradation`` is always paired (``V(d) = 0``), against
            ``tolerance`` when ``dense_factor`` is None, else against ``slack``.
        scale: Keep the proportions but size the intervals as if every cell had ``scale`` times its
            samples (to predict certification on a split of another size).
        min_cell: Fewest samples (after ``scale``) allowed in a (stratum, group) cell.

    Raises:
        ValueError: For an unsupported metric, a confidence outside (0.5, 1), a missing
            ``y_pred_dense`` or ``tolerance``, a cell below ``min_cell``, or non-binary labels for
            ``demographic_parity`` / ``equalized_odds``.
    """
    _check_settings(metric, confidence, scale, slack, dense_factor, y_pred_dense is not None)
    paired = dense_factor is not None or metric == "excess_degradation"
    threshold = slack if dense_factor is not None else tolerance
    if threshold is None:
        raise ValueError("certify needs a tolerance (absolute) or a dense_factor (paired); received neither")
    named = {"y_true": y_true, "y_pred": y_pred}
    if paired:
        named["y_pred_dense"] = y_pred_dense  # type: ignore[assignment]
    arrays, group_ids, n_groups = _prepare(named, groups, n_groups)
    pruned = _stratify(metric, arrays[0], arrays[1])
    n = _sums([(mask, np.ones_like(mask)) for mask, _ in pruned], group_ids, n_groups)
    _check_cells(n, scale, min_cell)
    kp, alpha = _sums(pruned, group_ids, n_groups) * scale, 1.0 - confidence
    if not paired:
        ideal = n * scale * kp.sum(-1, keepdims=True) / (n * scale).sum(-1, keepdims=True)  # pooled rates
        bound, smallest = _absolute_bound(np.stack([kp, ideal]), n * scale, alpha)

        def ideal_bound(x: float) -> float:
            return float(_absolute_bound(ideal * x, n * scale * x, alpha))

    else:
        dense = _stratify(metric, arrays[0], arrays[2])
        pairs = list(zip(pruned, dense, strict=True))
        kd = _sums(dense, group_ids, n_groups) * scale
        plus = _sums([(m, p & ~d) for (m, p), (_, d) in pairs], group_ids, n_groups) * scale  # p up, d down
        minus = _sums([(m, d & ~p) for (m, p), (_, d) in pairs], group_ids, n_groups) * scale
        bound, smallest = _paired(metric, n * scale, kp, kd, plus, minus, alpha, dense_factor)

        def ideal_bound(x: float) -> float:
            args = (n * scale * x, kp * x, kd * x, plus * x, minus * x)
            return float(_paired(metric, *args, alpha, dense_factor)[1])

    needed = _samples_needed(ideal_bound, float(smallest), threshold, len(group_ids) * scale)
    sizes = tuple(tuple(int(round(v)) for v in row) for row in n * scale)
    return Certificate(
        metric=metric,
        kind="paired" if paired else "absolute",
        confidence=confidence,
        bound=float(bound),
        threshold=float(threshold),
        certified=bool(bound <= threshold),
        n_samples=int(round(len(group_ids) * scale)),
        cell_sizes=sizes,
        smallest_certifiable=float(smallest),
        dense_factor=1.0 if dense_factor is None else float(dense_factor),
        samples_needed=needed,
    )


def _samples_needed(
    ideal_bound: Callable[[float], float], smallest: float, threshold: float, n_samples: float
) -> int | None:
    """Certification samples, in these proportions, with which ideal data would certify
    ``threshold`` (``None``: these samples already could, or no size could)."""
    if smallest <= threshold:
        return None
    factor = _growth_needed(ideal_bound, threshold)
    return None if factor is None else int(np.ceil(n_samples * factor))


def _growth_needed(ideal_bound: Callable[[float], float], threshold: float) -> float | None:
    """The factor ``x > 1`` (to 1%) by which every cell must grow for ``ideal_bound(x) <= threshold``;
    None when even 10,000 times the samples would not do (e.g. ``(1 - f) V(dense)`` above it)."""
    low, high = 1.0, 1e4
    if ideal_bound(high) > threshold:
        return None
    while high / low > 1.01:  # the bound falls as the cells grow
        mid = float(np.sqrt(low * high))
        low, high = (low, mid) if ideal_bound(mid) <= threshold else (mid, high)
    return high


def _paired(
    metric: str,
    n: np.ndarray,
    kp: np.ndarray,
    kd: np.ndarray,
    plus: np.ndarray,
    minus: np.ndarray,
    alpha: float,
    dense_factor: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(bound, smallest certifiable)`` of a paired certificate, the latter for ``p = d``: one
    batched call on ``(2, S, G)`` counts."""
    none = np.zeros_like(n)
    n2, kp2, kd2, plus2, minus2 = (
        np.stack(pair) for pair in ((n, n), (kp, kd), (kd, kd), (plus, none), (minus, none))
    )
    if metric == "excess_degradation":  # one stratum; degraded = dense right, pruned wrong = minus
        bounds = _excess_bound(n2[:, 0], minus2[:, 0], plus2[:, 0], alpha)
    else:
        bounds = _paired_bound(
            n2, kp2, kd2, plus2, minus2, alpha, 1.0 if dense_factor is None else dense_factor
        )
    return bounds[0], bounds[1]
