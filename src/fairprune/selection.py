"""Checkpoint selection on the validation split, and what counts as a trivial model.

Every training loop offers its states to a :class:`CheckpointSelector` at each validation; the
selector keeps the ones worth restoring and says why it chose the one it returns
(:attr:`CheckpointSelector.reason`). :func:`is_trivial` says when a model's good fairness numbers
mean nothing.
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
    worst: float = math.nan  # worst-group validation accuracy (NaN: not given)
    step: int | None = None


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

    **No levelling down** (``floor``, constrained selection only): a state *levels down* when its
    validation accuracy or its worst group's accuracy is more than ``floor`` below those of the
    *anchor*, the most accurate non-trivial state the run offered (early in a constrained run,
    before the multiplier has grown, that is about the unconstrained pruned model). Such a state
    bought its fairness by making groups worse, so it is never chosen, feasible or not; when
    every state within tau levelled down, the anchor itself is returned, marked infeasible.
    ``floor=None`` turns the guard off.
    """

    def __init__(
        self, *, constrained: bool, band: float, allow_trivial: bool = False, floor: float | None = None
    ) -> None:
        self.constrained, self.band, self.allow_trivial = constrained, band, allow_trivial
        self.floor = floor if constrained else None
        self.feasible: list[_Candidate] = []
        self.fallback: _Candidate | None = None
        self.anchor: _Candidate | None = None
        self.offered = 0
        self.levelled = 0
        self.reason = "no state was offered"

    def offer(
        self,
        accuracy: float,
        violation: float,
        constraint: Constraint | None,
        model: nn.Module,
        *,
        trivial: bool = False,
        worst: float = math.nan,
        step: int | None = None,
    ) -> None:
        """Consider the current state of ``model``: its validation ``accuracy``, ``violation``
        (what is compared with tau), worst-group accuracy ``worst`` and training ``step``."""
        if self.constrained and constraint is None:
            raise ValueError("a constrained CheckpointSelector needs the violation of every state offered")
        self.offered += 1
        if trivial and constraint is not None and not self.allow_trivial:
            violation = math.inf  # ranks behind every real fallback
        if (
            self.floor is not None
            and not trivial
            and (self.anchor is None or accuracy > self.anchor.accuracy)
        ):
            self.anchor = _Candidate(accuracy, violation, False, _copy(model), worst, step)
        if self.floor is not None and self._levelled(accuracy, worst):
            self.levelled += 1
            return
        ok = constraint is None or constraint.satisfied(violation)
        if not ok:
            if not self.feasible and (self.fallback is None or violation < self.fallback.violation):
                self.fallback = _Candidate(accuracy, violation, False, _copy(model), worst, step)
            return
        best = max((c.accuracy for c in self.feasible), default=-math.inf)
        band = self.band if self.constrained else 0.0
        if accuracy < best - band or (not self.constrained and accuracy <= best):
            return
        self.feasible.append(_Candidate(accuracy, violation, True, _copy(model), worst, step))
        top = max(best, accuracy)
        self.feasible = [c for c in self.feasible if c.accuracy >= top - band]
        self.fallback = None

    def _levelled(self, accuracy: float, worst: float) -> bool:
        """Whether a state is more than ``floor`` below the anchor in accuracy or worst group."""
        if self.anchor is None or self.floor is None:
            return False
        below = accuracy < self.anchor.accuracy - self.floor
        if not math.isnan(worst) and not math.isnan(self.anchor.worst):
            below = below or worst < self.anchor.worst - self.floor
        return below

    def choose(self) -> _Candidate | None:
        """The state to restore (``None``: nothing was offered); :attr:`reason` says why."""
        feasible = [c for c in self.feasible if not self._levelled(c.accuracy, c.worst)]
        if feasible:
            if not self.constrained:
                chosen = max(feasible, key=lambda c: c.accuracy)
                self.reason = f"the most accurate state on validation ({_at(chosen)})"
                return chosen
            chosen = min(feasible, key=lambda c: (c.violation, -c.accuracy))
            self.reason = (
                f"within tau: the fairest state within {self.band:g} of the best validation "
                f"accuracy among states within tau ({_at(chosen)}){self._levelled_note()}"
            )
            return chosen
        fallback = self.fallback
        if fallback is not None and not self._levelled(fallback.accuracy, fallback.worst):
            self.reason = (
                f"no state met tau: the one with the smallest violation ({_at(fallback)})"
                f"{self._levelled_note()}"
            )
            return fallback
        if self.anchor is not None:
            self.reason = (
                f"no state met tau without levelling down: the most accurate state ({_at(self.anchor)})"
                f"{self._levelled_note()}"
            )
            return self.anchor
        if fallback is not None:
            self.reason = f"every state was trivial: the one offered at {_at(fallback)}"
        return fallback

    def _levelled_note(self) -> str:
        if not self.levelled:
            return ""
        return (
            f"; {self.levelled} of {self.offered} states were refused for levelling down (accuracy "
            f"or worst group more than {self.floor:g} below the run's most accurate state)"
        )


def _copy(model: nn.Module) -> dict[str, Tensor]:
    return copy.deepcopy(model.state_dict())


def _at(candidate: _Candidate) -> str:
    where = "" if candidate.step is None else f"step {candidate.step}, "
    return f"{where}validation accuracy {candidate.accuracy:.4f}, violation {candidate.violation:.4f}"


NEAR_CONSTANT = 0.99  # share of one predicted class above which predictions count as constant


def is_trivial(y_true: Tensor, y_pred: Tensor) -> bool:
    """Whether predictions are no more accurate than always predicting the majority class of
    ``y_true``, or (near-)constant: one class for at least ``NEAR_CONSTANT`` of the samples
    where the labels are not. Either way every group metric is about 0 for no merit."""
    majority = float(torch.bincount(y_true).max()) / len(y_true)
    accuracy = float((y_pred == y_true).float().mean())
    predicted = float(torch.bincount(y_pred).max()) / len(y_pred)
    return accuracy <= majority + 1e-9 or (predicted >= NEAR_CONSTANT and majority < NEAR_CONSTANT)
