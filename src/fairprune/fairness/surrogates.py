"""Differentiable fairness surrogates, for training.

Each surrogate shares its registry key with the exact metric in ``metrics.METRICS`` that it
relaxes, so what training constrains is what the report measures. Every surrogate is built from
per-group sums and counts (``group_sums_counts``) reduced by ``gap_over_present``. Every
surrogate takes ``reduce``: a function applied to the stacked sums and counts before the reduction;
``fairprune.distributed.all_reduce_sum`` there (what :class:`~fairprune.fairness.Constraint` passes
under ``torchrun``) makes the term the global batch's, with gradients, on every rank.

A group with no samples in the batch is left out of the max and min; when fewer than two groups are
present the surrogate is an exact zero that stays connected to the graph (zero gradient, no NaN).
The reductions are written without data-dependent Python branches, so they do not synchronise
with an accelerator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "SURROGATES",
    "gap_over_present",
    "group_sums_counts",
    "margins",
    "positive_scores",
    "reduced",
    "soft_accuracy_gap",
    "soft_correctness",
    "soft_demographic_parity",
    "soft_equalized_odds",
    "soft_excess_degradations",
]

CorrectnessKind = Literal["sigmoid", "hinge"]
Direction = Literal["both", "lift"]
Fixed = Literal["max", "min"] | None
Reduce = Callable[[Tensor], Tensor]
"""Sums per-group statistics over processes (``None``: the local batch is the whole batch)."""


def _check_ids(ids: Tensor, name: str, n: int) -> Tensor:
    """``ids`` as an int64 ``(N,)`` tensor, checked against ``n`` samples."""
    if ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{name} must be an integer tensor; received dtype {ids.dtype}")
    if ids.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); received {tuple(ids.shape)}")
    return ids.long()


def _check_group_range(groups: Tensor, n_groups: int) -> None:
    if n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer; received {n_groups}")
    if ((groups < 0) | (groups >= n_groups)).any():
        raise ValueError(
            f"groups must hold ids in 0..{n_groups - 1}; received {groups.unique()[:10].tolist()}"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; received {temperature}")


def _check_binary_targets(y: Tensor) -> None:
    if ((y != 0) & (y != 1)).any():
        received = y.unique()[:10].tolist()
        raise ValueError(f"y must hold binary targets in {{0, 1}}; received {received}")


def _direction(direction: str) -> str:
    if direction not in ("both", "lift"):
        raise ValueError(f"direction must be 'both' or 'lift'; received {direction!r}")
    return direction


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample margin of the true class, positive exactly when the prediction is right.

    ``z_i = logit_{y_i} - max_{c != y_i} logit_c`` for logits ``(N, C)`` with ``C >= 2``; for a
    single logit ``f`` (shape ``(N,)`` or ``(N, 1)``), ``z_i = (2 y_i - 1) f_i``. Both forms agree
    for ``C = 2`` with ``f = logit_1 - logit_0``.

    Args:
        logits: ``(N, C)``, ``(N, 1)`` or ``(N,)`` scores.
        y: ``(N,)`` target class ids.

    Returns:
        ``(N,)`` margins.
    """
    if logits.ndim not in (1, 2):
        raise ValueError(f"logits must be (N, C), (N, 1) or (N,); received {tuple(logits.shape)}")
    y = _check_ids(y, "y", logits.shape[0])
    if logits.ndim == 1 or logits.shape[1] == 1:
        _check_binary_targets(y)
        return (2 * y - 1).to(logits.dtype) * logits.reshape(-1)  # (N,)
    n_classes = logits.shape[1]
    if ((y < 0) | (y >= n_classes)).any():
        received = y.unique()[:10].tolist()
        raise ValueError(f"y must hold class ids in 0..{n_classes - 1}; received {received}")
    true_logit = logits.gather(1, y[:, None]).squeeze(1)  # (N, 1) -> (N,)
    is_true = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, y[:, None], True)  # (N, C)
    best_other = logits.masked_fill(is_true, float("-inf")).amax(dim=1)  # (N,)
    return true_logit - best_other


def positive_scores(logits: Tensor) -> Tensor:
    """Binary score ``f`` whose sign is the prediction: ``logit_1 - logit_0`` or the logit itself.

    Args:
        logits: ``(N, 2)``, ``(N, 1)`` or ``(N,)``.

    Returns:
        ``(N,)`` scores; ``sigmoid(f)`` is the model's probability of the positive class.
    """
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        return logits.reshape(-1)  # (N,)
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(
        f"a binary score needs logits of shape (N, 2), (N, 1) or (N,); received {tuple(logits.shape)}"
    )


def soft_correctness(z: Tensor, *, kind: CorrectnessKind = "sigmoid", temperature: float = 1.0) -> Tensor:
    """Smooth stand-in ``u(z)`` for the correctness indicator ``1[z > 0]`` of a margin ``z``.

    - ``"sigmoid"``: ``u(z) = sigmoid(z / T)``, which tends to ``1[z > 0]`` as ``T -> 0``.
    - ``"hinge"``: ``u(z) = max(0, 1 + z / T)``, the convex surrogate ``kappa`` of Wu, Zhang & Wu
      ("On Convexity and Bounds of Fairness-aware Classification", WWW 2019). It is an upper
      bound of ``1[z > 0]`` for every ``z`` (and unbounded above, so soft accuracies may exceed 1).

    Args:
        z: Margins, any shape.
        kind: ``"sigmoid"`` or ``"hinge"``.
        temperature: ``T > 0``.
    """
    _check_temperature(temperature)
    if kind == "sigmoid":
        return torch.sigmoid(z / temperature)
    if kind == "hinge":
        return torch.clamp(1 + z / temperature, min=0)
    raise ValueError(f"kind must be 'sigmoid' or 'hinge'; received {kind!r}")


def group_sums_counts(values: Tensor, groups: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group sums and sample counts of ``values`` (all-reducible statistics).

    ``sums_g = Σ_{i: g_i = g} values_i`` and ``counts_g = |{i: g_i = g}|``.

    Args:
        values: ``(N,)`` float values.
        groups: ``(N,)`` group ids in ``0 .. n_groups - 1``.
        n_groups: ``G``.

    Returns:
        ``(sums, counts)``, each ``(G,)`` with the dtype and device of ``values``.
    """
    groups = _check_ids(groups, "groups", values.shape[0])
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D (N,); received shape {tuple(values.shape)}")
    _check_group_range(groups, n_groups)
    sums = values.new_zeros(n_groups).index_add(0, groups, values)
    counts = values.new_zeros(n_groups).index_add(0, groups, torch.ones_like(values))
    return sums, counts


def reduced(sums: Tensor, counts: Tensor, reduce: Reduce | None) -> tuple[Tensor, Tensor]:
    """``(sums, counts)`` passed through ``reduce`` as one stacked tensor (one collective call);
    unchanged when ``reduce`` is ``None``."""
    if reduce is None:
        return sums, counts
    both = reduce(torch.stack([sums, counts]))  # (2, ...)
    return both[0], both[1]


def gap_over_present(sums: Tensor, counts: Tensor, *, fixed: Fixed = None) -> Tensor:
    """``max_g mean_g - min_g mean_g`` over the groups with ``counts_g > 0``, along the last dim.

    ``mean_g = sums_g / counts_g``. Where fewer than two groups are present the result is an
    exact ``0`` that is still part of the graph (its gradient is zero, never NaN).

    Args:
        sums: ``(..., G)`` per-group sums.
        counts: ``(..., G)`` per-group counts.
        fixed: ``None``: both extremes get a gradient. ``"max"``: the max is a constant
            (detached), so lowering the gap can only raise the lowest group; ``"min"``: the min is,
            so it can only lower the highest group. The value is the same.

    Returns:
        ``(...)`` gaps.
    """
    present = counts > 0  # (..., G)
    means = sums / counts.clamp_min(1)  # (..., G), 0 for absent groups
    highest = means.masked_fill(~present, float("-inf")).amax(dim=-1)  # (...)
    lowest = means.masked_fill(~present, float("inf")).amin(dim=-1)  # (...)
    if fixed == "max":
        highest = highest.detach()
    elif fixed == "min":
        lowest = lowest.detach()
    enough = present.sum(dim=-1) >= 2  # (...)
    return torch.where(enough, highest - lowest, torch.zeros_like(highest))


def soft_accuracy_gap(
    logits: Tensor,
    y: Tensor,
    *,
    groups: Tensor,
    n_groups: int,
    temperature: float = 1.0,
    kind: CorrectnessKind = "sigmoid",
    reduce: Reduce | None = None,
    direction: Direction = "both",
) -> Tensor:
    """Soft accuracy gap, relaxing ``metrics.accuracy_gap``.

    Soft accuracy of group ``g``: ``a_g = mean_{i: g_i = g} u(z_i)`` with ``z`` the margins and
    ``u`` from ``soft_correctness``. The gap is ``max_g a_g - min_g a_g`` over the groups present
    in the batch: the exact metric's own definition (for two groups ``|a_0 - a_1|``; the paper's
    Eq. 8 is the signed difference of these importance-weighted group means). Its gradient flows
    to the arg-max and the arg-min group only.

    Args:
        logits: ``(N, C)``, ``(N, 1)`` or ``(N,)`` scores.
        y: ``(N,)`` target class ids.
        groups: ``(N,)`` group ids.
        n_groups: ``G``.
        temperature: ``T > 0`` of ``u``.
        kind: ``"sigmoid"`` or ``"hinge"`` (see ``soft_correctness``).
        reduce: Sums the per-group statistics over processes (``None``: this batch only).
        direction: ``"both"``, or ``"lift"``: the best group's soft accuracy is a constant, so
            the gap's gradient only raises the worst group (it cannot be lowered by pulling the
            best group down: no levelling down).

    Returns:
        Scalar gap; an exact, graph-connected ``0`` when fewer than two groups are present.
    """
    u = soft_correctness(margins(logits, y), kind=kind, temperature=temperature)  # (N,)
    fixed: Fixed = "max" if _direction(direction) == "lift" else None
    return gap_over_present(*reduced(*group_sums_counts(u, groups, n_groups), reduce), fixed=fixed)


def soft_demographic_parity(
    logits: Tensor,
    y: Tensor,
    *,
    groups: Tensor,
    n_groups: int,
    temperature: float = 1.0,
    reduce: Reduce | None = None,
) -> Tensor:
    """Soft demographic parity difference, relaxing ``metrics.demographic_parity_difference``.

    Soft positive rate of group ``g``: ``p_g = mean_{i: g_i = g} sigmoid(f_i / T)`` with ``f``
    from ``positive_scores``; the result is ``max_g p_g - min_g p_g`` over present groups.
    ``y`` is unused (accepted for the shared signature).

    Returns:
        Scalar gap; an exact, graph-connected ``0`` when fewer than two groups are present.
    """
    _check_temperature(temperature)
    _check_ids(y, "y", logits.shape[0])
    rate = torch.sigmoid(positive_scores(logits) / temperature)  # (N,)
    return gap_over_present(*reduced(*group_sums_counts(rate, groups, n_groups), reduce))


def soft_equalized_odds(
    logits: Tensor,
    y: Tensor,
    *,
    groups: Tensor,
    n_groups: int,
    temperature: float = 1.0,
    reduce: Reduce | None = None,
    direction: Direction = "both",
) -> Tensor:
    """Soft equalized odds difference, relaxing ``metrics.equalized_odds_difference``.

    For each stratum ``y ∈ {0, 1}``, ``p_{y,g} = mean_{i: y_i = y, g_i = g} sigmoid(f_i / T)``
    and ``D_y = max_g p_{y,g} - min_g p_{y,g}`` over the groups present in that stratum (``0``
    when fewer than two are). The result is ``max(D_0, D_1)``, fairlearn's worst case.
    ``direction="lift"``: only the worst-off side gets a gradient — the lowest true-positive
    rate (``y = 1``: its max is a constant) and the highest false-positive rate (``y = 0``: its
    min is) — so no group's error rate is pushed up to close a gap.

    Returns:
        Scalar; an exact, graph-connected ``0`` when no stratum holds two groups.
    """
    _check_temperature(temperature)
    y = _check_ids(y, "y", logits.shape[0])
    _check_binary_targets(y)
    rate = torch.sigmoid(positive_scores(logits) / temperature)  # (N,)
    groups = _check_ids(groups, "groups", logits.shape[0])
    _check_group_range(groups, n_groups)
    cells = y * n_groups + groups  # (N,) cell id y * G + g in 0..2G-1
    sums, counts = reduced(*group_sums_counts(rate, cells, 2 * n_groups), reduce)  # (2G,) each
    sums, counts = sums.view(2, n_groups), counts.view(2, n_groups)
    if _direction(direction) == "lift":
        gaps = torch.stack(
            [
                gap_over_present(sums[0], counts[0], fixed="min"),
                gap_over_present(sums[1], counts[1], fixed="max"),
            ]
        )  # (2,): false-positive rates (y = 0) may only fall, true-positive rates (y = 1) only rise
    else:
        gaps = gap_over_present(sums, counts)  # (2,)
    return gaps.amax()


def soft_excess_degradations(
    logits: Tensor,
    y: Tensor,
    *,
    groups: Tensor,
    n_groups: int,
    temperature: float = 1.0,
    kind: CorrectnessKind = "sigmoid",
    reduce: Reduce | None = None,
) -> Tensor:
    """Per-group soft excess degradation, relaxing ``metrics.excess_degradations`` (CEAG).

    ``psi_g = R_g - R = (A_g^dense - A^dense) - (a_g - a)`` with ``a_g`` the soft accuracy of group
    ``g`` and ``a`` the batch's; the dense model's accuracies are constants, so the surrogate
    returns ``a - a_g`` (the same gradient; the dual step reads the exact ``psi_g`` on
    validation, dense terms included).

    Returns:
        ``(G,)``; ``0`` for a group absent from the batch (graph-connected, zero gradient).
    """
    u = soft_correctness(margins(logits, y), kind=kind, temperature=temperature)  # (N,)
    sums, counts = reduced(*group_sums_counts(u, groups, n_groups), reduce)  # (G,) each
    overall = sums.sum() / counts.sum().clamp_min(1)
    present = counts > 0
    return torch.where(present, overall - sums / counts.clamp_min(1), torch.zeros_like(sums))


SURROGATES: dict[str, Callable[..., Tensor]] = {
    "accuracy_gap": soft_accuracy_gap,
    "demographic_parity": soft_demographic_parity,
    "equalized_odds": soft_equalized_odds,
    "excess_degradation": soft_excess_degradations,
}
"""Differentiable surrogates by registry key, shared with ``metrics.METRICS``. Each returns a
scalar, except those of ``metrics.PER_GROUP_METRICS``, which return one value per group."""
