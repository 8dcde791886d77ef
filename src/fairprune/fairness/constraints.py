"""The fairness constraint ``F(f) <= tau`` in training: penalty or Lagrangian (dual ascent).

``penalty``: the loss gains ``lambda * Phi`` (the paper's relaxation; ``penalty_weight`` is lambda).

``lagrangian``: the loss gains ``mu * Phi`` with a multiplier ``mu >= 0`` driven by the error
``Phi_hat - tau``, where ``Phi_hat`` is the *exact* metric measured on the validation split, so the
multiplier grows until the user's tolerance ``tau`` holds where it is checked, not on a surrogate
scale. Its controller (:mod:`fairprune.fairness.controller`) is projected dual ascent
``mu <- max(0, mu + eta * (Phi_hat - tau))`` or nuPI (Sohrabi et al., ICML 2024), which adds a
damping term on the error's trend; ``dual_step`` is the step ``eta`` of either. Anti-windup stops a
multiplier that keeps climbing while the exact violation does not fall.

Per-group metrics (``metrics.PER_GROUP_METRICS``, e.g. ``excess_degradation``: CEAG, "Balancing
Act") have one multiplier per group, ``mu_g <- max(0, mu_g + eta (psi_g - tau))``, and the loss
gains ``sum_g mu_g Phi_g``; with 5-16 groups one multiplier on a max - min gap moves only the two
extreme groups at a time. They need the dense model's validation predictions and the Lagrangian.

A :class:`Constraint` is the state of the constrained problem (Cooper's ``Constraint`` with its
``Multiplier`` and dual optimiser): the training term (:meth:`Constraint.term`), the exact
violation (:meth:`Constraint.violations`), the explicit dual step (:meth:`Constraint.update`), and
a ``state_dict`` so that a checkpoint restores its multipliers and their controller. Under
``torchrun`` (a process group with more than one rank) the surrogate's per-group statistics and
the logit scale are the global batch's (:mod:`fairprune.distributed`), so every rank trains on the
same term.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairprune.distributed import all_reduce_sum, is_distributed
from fairprune.fairness.bounds import violation_upper_bound
from fairprune.fairness.certificate import Certificate, certify
from fairprune.fairness.controller import MultiplierController
from fairprune.fairness.metrics import METRICS, PER_GROUP_METRICS
from fairprune.fairness.objective import MARGIN_METRICS, FairnessObjective
from fairprune.fairness.surrogates import SURROGATES

__all__ = ["Constraint"]


class Constraint:
    """Training-time state of one :class:`FairnessObjective`: its Lagrange multiplier(s).

    Attributes:
        controller: The multipliers and their controller.
    """

    def __init__(self, objective: FairnessObjective, n_groups: int) -> None:
        self.objective = objective
        self.n_groups = n_groups
        self.controller = MultiplierController(
            n_groups if objective.per_group else 1,
            lr=objective.dual_step,
            controller=objective.controller,
            kp=objective.kp,
            ema_nu=objective.ema_nu,
            windup_window=objective.windup_window,
        )

    @property
    def multipliers(self) -> np.ndarray:
        """``(G,)`` for a per-group metric, else ``(1,)``; all 0 at the start. A view: writing to
        it sets the multipliers."""
        return self.controller.multipliers

    @multipliers.setter
    def multipliers(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        if values.shape != self.multipliers.shape:
            raise ValueError(
                f"expected {self.multipliers.shape[0]} multiplier(s) for {self.objective.metric!r}, "
                f"got shape {values.shape}"
            )
        self.multipliers[:] = values

    @property
    def multiplier(self) -> float:
        """The (largest) multiplier."""
        return float(self.multipliers.max())

    def surrogate(self, logits: Tensor, y: Tensor, groups: Tensor) -> Tensor:
        """The differentiable violation Phi of one batch (0 if the batch lacks groups): a
        scalar, or ``(G,)`` for a per-group metric. Computed in float32 (also under autocast);
        under ``torchrun``, Phi of the global batch (the ranks' batches together)."""
        fn = SURROGATES[self.objective.metric]
        logits = logits.float()  # a no-op for float32 logits
        reduce = all_reduce_sum if is_distributed() else None
        if self.objective.scale_free:
            logits = logits / _logit_scale(logits, global_batch=reduce is not None)
        lift = (
            {"direction": "lift"}
            if self.objective.direction == "lift"
            and self.objective.metric
            in (
                "accuracy_gap",
                "equalized_odds",
            )
            else {}
        )
        kind = {"kind": self.objective.surrogate} if self.objective.metric in MARGIN_METRICS else {}
        return fn(
            logits,
            y,
            groups=groups,
            n_groups=self.n_groups,
            temperature=self.objective.temperature,
            reduce=reduce,
            **lift,
            **kind,
        )

    def term(self, logits: Tensor, y: Tensor, groups: Tensor, *, weight: float = 1.0) -> Tensor:
        """The loss term: ``weight * lambda * Phi`` or ``weight * sum_g mu_g * Phi_g``.

        ``weight`` switches the term off (0) for the ablations without fairness on a level.
        """
        logits = logits.float()  # a no-op for float32 logits; float32 under autocast
        if self.objective.mode == "penalty":
            if weight == 0.0 or self.objective.penalty_weight == 0.0:
                return logits.sum() * 0.0
            return weight * self.objective.penalty_weight * self.surrogate(logits, y, groups)
        if weight == 0.0 or not self.multipliers.any():
            return logits.sum() * 0.0
        mu = torch.as_tensor(self.multipliers, dtype=logits.dtype, device=logits.device)
        return weight * (mu * self.surrogate(logits, y, groups)).sum()

    def violations(
        self, y_true: Tensor, y_pred: Tensor, groups: Tensor, *, y_pred_dense: Tensor | None = None
    ) -> np.ndarray:
        """The exact violation per multiplier: ``(G,)`` per-group values or ``(1,)``."""
        metric = self.objective.metric
        if self.objective.per_group:
            if y_pred_dense is None:
                raise ValueError(f"fairness metric {metric!r} needs the dense model's predictions")
            fn = PER_GROUP_METRICS[metric]
            return fn(y_true, y_pred, groups=groups, y_pred_dense=y_pred_dense, n_groups=self.n_groups)
        return np.array([METRICS[metric](y_true, y_pred, groups=groups, n_groups=self.n_groups)])

    def checked_violations(
        self, y_true: Tensor, y_pred: Tensor, groups: Tensor, *, y_pred_dense: Tensor | None = None
    ) -> np.ndarray:
        """What the dual step and the checkpoint selection compare with tau: :meth:`violations`,
        or with ``objective.confidence`` its upper confidence bound, ``(1,)``, or with
        ``objective.certify`` the predicted certificate on tau's scale (see
        :meth:`predicted_certificate`; per-group metrics keep their exact values for the dual
        step)."""
        if self.objective.certify != 0.0 and not self.objective.per_group:
            predicted = self.predicted_certificate(y_true, y_pred, groups, y_pred_dense=y_pred_dense)
            if predicted is not None:
                return np.array([self.on_tau_scale(predicted)])
        if self.objective.confidence == 0.0:
            return self.violations(y_true, y_pred, groups, y_pred_dense=y_pred_dense)
        bound = violation_upper_bound(
            self.objective.metric,
            y_true,
            y_pred,
            groups=groups,
            n_groups=self.n_groups,
            confidence=self.objective.confidence,
        )
        return np.array([bound])

    def predicted_certificate(
        self, y_true: Tensor, y_pred: Tensor, groups: Tensor, *, y_pred_dense: Tensor | None = None
    ) -> Certificate | None:
        """The certificate the state would get on a certification split ``certify_scale`` times
        the size of these data, computed on these data (``None`` without ``objective.certify``,
        or when even an ideal model could not certify at these sizes: then only the measured
        value can guide training)."""
        o = self.objective
        if o.certify == 0.0:
            return None
        predicted = certify(
            o.metric, y_true, y_pred, groups=groups, n_groups=self.n_groups, confidence=o.certify,
            tolerance=o.tolerance, y_pred_dense=y_pred_dense, dense_factor=o.dense_factor,
            slack=o.slack, scale=o.certify_scale, min_cell=1,
        )  # fmt: skip
        return None if predicted.smallest_certifiable > predicted.threshold else predicted

    def on_tau_scale(self, certificate: Certificate) -> float:
        """A certificate's bound as a violation compared with tau: ``tau + bound - threshold``
        (within tau exactly when it certifies)."""
        return self.objective.tolerance + certificate.bound - certificate.threshold

    def violation(
        self, y_true: Tensor, y_pred: Tensor, groups: Tensor, *, y_pred_dense: Tensor | None = None
    ) -> float:
        """The exact metric (the number compared with tau)."""
        return float(self.violations(y_true, y_pred, groups, y_pred_dense=y_pred_dense).max())

    def update(
        self, y_true: Tensor, y_pred: Tensor, groups: Tensor, *, y_pred_dense: Tensor | None = None
    ) -> np.ndarray:
        """The dual step from the exact violations of predictions ``y_pred`` (see
        :meth:`checked_violations`: their upper confidence bound with ``objective.confidence``);
        returns what the step used."""
        violations = self.checked_violations(y_true, y_pred, groups, y_pred_dense=y_pred_dense)
        self.dual_step(violations)
        return violations

    def dual_step(self, violations: float | np.ndarray) -> None:
        """One step of the multipliers' controller on the errors ``violations - tau`` (no-op in
        penalty mode)."""
        if self.objective.mode == "lagrangian":
            self.controller.step(np.asarray(violations, dtype=float) - self.objective.tolerance)

    def satisfied(self, violation: float) -> bool:
        return violation <= self.objective.tolerance + 1e-12

    def state(self) -> dict[str, float]:
        """Multiplier(s) for a history row: ``multiplier`` (the largest), ``multiplier_<g>`` for
        a per-group metric, ``windup`` (1 when a multiplier is wound up, else 0) and
        ``windup_checks`` (the dual steps so far at which one was)."""
        if self.objective.mode != "lagrangian":
            return {"multiplier": math.nan}
        out = {"multiplier": self.multiplier}
        if self.objective.per_group:
            out.update({f"multiplier_{g}": float(m) for g, m in enumerate(self.multipliers)})
        out.update(
            windup=float(self.controller.wound.any()), windup_checks=float(self.controller.windup_checks)
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        """The multipliers, with the metric they belong to, and their controller's state (plain
        Python values)."""
        return {
            "metric": self.objective.metric,
            "multipliers": [float(m) for m in self.multipliers],
            "controller": self.controller.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the multipliers of :meth:`state_dict` and their controller's state (a state
        saved without one restarts the controller from the multipliers).

        Raises:
            ValueError: If the state is of another metric or controller, or holds another number
                of multipliers.
        """
        metric = state.get("metric", self.objective.metric)
        if metric != self.objective.metric:
            raise ValueError(
                f"constraint state of metric {metric!r} cannot be loaded into a constraint on "
                f"{self.objective.metric!r}"
            )
        values = np.asarray(state["multipliers"], dtype=float)
        if values.shape != self.multipliers.shape:
            raise ValueError(
                f"expected {self.multipliers.shape[0]} multiplier(s) for {self.objective.metric!r}, "
                f"got {values.shape[0]}"
            )
        if "controller" in state:
            self.controller.load_state_dict(state["controller"])  # checks before changing anything
        else:
            self.controller.reset()
        self.multipliers[:] = values


def _logit_scale(logits: Tensor, *, global_batch: bool = False) -> Tensor:
    """RMS of the class-centred logits of a batch, detached (a scalar >= 1e-3); with
    ``global_batch``, over every rank's batch."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        centred = logits.detach()
    else:
        centred = logits.detach() - logits.detach().mean(dim=-1, keepdim=True)  # (N, C)
    if not global_batch:
        return centred.pow(2).mean().sqrt().clamp_min(1e-3)
    stats = all_reduce_sum(torch.stack([centred.pow(2).sum(), centred.new_tensor(centred.numel())]))
    return (stats[0] / stats[1]).sqrt().clamp_min(1e-3)
