"""The fairness constraint ``F(f) <= tau`` in training: penalty or Lagrangian (dual ascent).

``penalty``: the loss gains ``lambda * Phi`` (the paper's relaxation; ``strength`` is lambda).

``lagrangian``: the loss gains ``mu * Phi`` with a multiplier ``mu >= 0`` updated by projected
dual ascent ``mu <- max(0, mu + eta * (Phi_hat - tau))`` (``strength`` is the dual step ``eta``),
where ``Phi_hat`` is the *exact* metric measured on the validation split, so the multiplier grows
until the user's tolerance ``tau`` holds where it is checked, not on a surrogate scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from fairprune.fairness.metrics import METRICS
from fairprune.fairness.surrogates import SURROGATES

__all__ = ["FairnessObjective", "Constraint", "CONSTRAINT_MODES"]

CONSTRAINT_MODES = ("penalty", "lagrangian")


@dataclass(frozen=True)
class FairnessObjective:
    """What to keep fair and how strictly.

    Attributes:
        metric: Registry key shared by the exact metric and its surrogate
            (``"equalized_odds"``, ``"demographic_parity"``, ``"accuracy_gap"``).
        tolerance: The user's tau, on the exact metric's scale (already resolved to a number).
        mode: ``"penalty"`` or ``"lagrangian"``.
        strength: lambda for ``penalty``; the dual step eta for ``lagrangian``.
        temperature: Temperature T of the soft surrogate.
        scale_free: Divide the logits by their batch RMS (centred over classes, detached) before
            the surrogate. Soft rates ``sigmoid(f/T)`` are otherwise equalised for free by shrinking
            every logit towards 0 (all rates -> 1/2), a degenerate direction that drives a heavily
            pruned model to a constant predictor; with the scale detached, only *relative*
            changes between groups lower Phi.
    """

    metric: str = "equalized_odds"
    tolerance: float = 0.0
    mode: str = "lagrangian"
    strength: float = 5.0
    temperature: float = 1.0
    scale_free: bool = True

    def __post_init__(self) -> None:
        if self.metric not in SURROGATES:
            raise ValueError(f"unknown fairness metric {self.metric!r}; expected one of {sorted(SURROGATES)}")
        if self.mode not in CONSTRAINT_MODES:
            raise ValueError(f"unknown constraint mode {self.mode!r}; expected one of {CONSTRAINT_MODES}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"fairness tolerance must be a finite number >= 0, got {self.tolerance}")
        if self.strength < 0 or self.temperature <= 0:
            raise ValueError(
                f"expected strength >= 0 and temperature > 0, got {self.strength}, {self.temperature}"
            )


class Constraint:
    """Training-time state of one :class:`FairnessObjective` (the Lagrange multiplier)."""

    def __init__(self, objective: FairnessObjective, n_groups: int) -> None:
        self.objective = objective
        self.n_groups = n_groups
        self.multiplier = 0.0

    def surrogate(self, logits: Tensor, y: Tensor, groups: Tensor) -> Tensor:
        """The differentiable violation Phi of one batch (0 if the batch lacks groups)."""
        fn = SURROGATES[self.objective.metric]
        if self.objective.scale_free:
            logits = logits / _logit_scale(logits)
        return fn(logits, y, groups=groups, n_groups=self.n_groups, temperature=self.objective.temperature)

    def term(self, logits: Tensor, y: Tensor, groups: Tensor, *, weight: float = 1.0) -> Tensor:
        """The loss term: ``weight * lambda * Phi`` or ``weight * mu * Phi``.

        ``weight`` switches the term off (0) for the ablations without fairness on a level.
        """
        coef = self.objective.strength if self.objective.mode == "penalty" else self.multiplier
        if weight == 0.0 or coef == 0.0:
            return logits.sum() * 0.0
        return weight * coef * self.surrogate(logits, y, groups)

    def violation(self, y_true: Tensor, y_pred: Tensor, groups: Tensor) -> float:
        """The exact metric (the number compared with tau)."""
        return float(METRICS[self.objective.metric](y_true, y_pred, groups=groups, n_groups=self.n_groups))

    def dual_step(self, violation: float) -> None:
        """Projected dual ascent on the multiplier (no-op in penalty mode)."""
        if self.objective.mode == "lagrangian":
            step = self.objective.strength * (violation - self.objective.tolerance)
            self.multiplier = max(0.0, self.multiplier + step)

    def satisfied(self, violation: float) -> bool:
        return violation <= self.objective.tolerance + 1e-12

    def state(self) -> dict[str, float]:
        return {"multiplier": self.multiplier if self.objective.mode == "lagrangian" else math.nan}


def _logit_scale(logits: Tensor) -> Tensor:
    """RMS of the class-centred logits of a batch, detached (a scalar >= 1e-3)."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        centred = logits.detach()
    else:
        centred = logits.detach() - logits.detach().mean(dim=-1, keepdim=True)  # (N, C)
    return centred.pow(2).mean().sqrt().clamp_min(1e-3)
