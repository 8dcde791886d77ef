"""Checkpoint selection on the validation split, and what counts as a trivial model.

Every training loop offers its states to a :class:`CheckpointSelector` at each validation; the
selector keeps the ones worth restoring. :func:`is_trivial` says when a model's good fairness
numbers mean nothing.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fairprune.fairness.constraints import Constraint

__all__ = ["CheckpointSelector", "is_trivial", "NEAR_CONSTANT"]


@dataclass
class _Candidate:
    accuracy: float
    violation: float
    feasible: bool
    state: dict[str, Tensor]


class CheckpointSelector:
    """Model selection on the validation split.

    Unconstrained: the most accurate state. Constrained: among states within the tolerance,
    those within ``band`` of the best feasible accuracy (differences the validation noise cannot
    resolve) and, among them, the fairest; when no state is within the tolerance, the one with
    the smallest violation. A trivial state (:func:`is_trivial`: no more accurate than always
    predicting the majority class; a constant predictor has a violation of 0 under every group
    metric) has not met the tolerance in any useful sense — a run that collapses under a large
    multiplier ends there — so by default (``allow_trivial=False``) it never counts as feasible,
    and is the fallback only when every state was trivial.
    """

    def __init__(self, *, constrained: bool, band: float, allow_trivial: bool = False) -> None:
        self.constrained, self.band, self.allow_trivial = constrained, band, allow_trivial
        self.feasible: list[_Candidate] = []
        self.fallback: _Candidate | None = None

    def offer(
        self,
        accuracy: float,
        violation: float,
        constraint: Constraint | None,
        model: nn.Module,
        *,
        trivial: bool = False,
    ) -> None:
        if trivial and constraint is not None and not self.allow_trivial:
            violation = math.inf  # ranks behind every real fallback
        if self.constrained and constraint is None:
            raise ValueError("a constrained CheckpointSelector needs the violation of every state offered")
        ok = constraint is None or constraint.satisfied(violation)
        if not ok:
            if not self.feasible and (self.fallback is None or violation < self.fallback.violation):
                self.fallback = _Candidate(accuracy, violation, False, copy.deepcopy(model.state_dict()))
            return
        best = max((c.accuracy for c in self.feasible), default=-math.inf)
        band = self.band if self.constrained else 0.0
        if accuracy < best - band or (not self.constrained and accuracy <= best):
            return
        self.feasible.append(_Candidate(accuracy, violation, True, copy.deepcopy(model.state_dict())))
        top = max(best, accuracy)
        self.feasible = [c for c in self.feasible if c.accuracy >= top - band]
        self.fallback = None

    def choose(self) -> _Candidate | None:
        if self.feasible:
            if not self.constrained:
                return max(self.feasible, key=lambda c: c.accuracy)
            return min(self.feasible, key=lambda c: (c.violation, -c.accuracy))
        return self.fallback


NEAR_CONSTANT = 0.99  # share of one predicted class above which predictions count as constant


def is_trivial(y_true: Tensor, y_pred: Tensor) -> bool:
    """Whether predictions are no more accurate than always predicting the majority class of
    ``y_true``, or (near-)constant: one class for at least ``NEAR_CONSTANT`` of the samples
    where the labels are not. Either way every group metric is about 0 for no merit."""
    majority = float(torch.bincount(y_true).max()) / len(y_true)
    accuracy = float((y_pred == y_true).float().mean())
    predicted = float(torch.bincount(y_pred).max()) / len(y_pred)
    return accuracy <= majority + 1e-9 or (predicted >= NEAR_CONSTANT and majority < NEAR_CONSTANT)
