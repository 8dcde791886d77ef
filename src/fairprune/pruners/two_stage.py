"""The paper's two-stage baselines: fairness and pruning handled one after the other.

``prune_then_fair`` (P&F): magnitude pruning, then fine-tuning under the fairness constraint.
``fair_then_prune`` (F&P): fairness training of the dense model, then magnitude pruning and
fine-tuning. Both work on weights or, with ``structure="channel"``, on channels (L1 norms).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fairprune.engine import Task, train_weights
from fairprune.methods_spec import defaults
from fairprune.pruners.base import Outcome, ScoreThenFinetune
from fairprune.pruners.importance import MagnitudeImportance

__all__ = ["PruneThenFair", "FairThenPrune"]


@dataclass(frozen=True)
class PruneThenFair(ScoreThenFinetune):
    """Magnitude pruning, then ``finetune_steps`` of fine-tuning with the fairness term."""

    key = "prune_then_fair"
    importance = MagnitudeImportance()
    fair = True
    finetune_steps: int = defaults("prune_then_fair")["finetune_steps"]


@dataclass(frozen=True)
class FairThenPrune(ScoreThenFinetune):
    """``fair_steps`` of fairness training on the dense model, then magnitude pruning and
    ``finetune_steps`` of plain fine-tuning."""

    key = "fair_then_prune"
    importance = MagnitudeImportance()
    fair_steps: int = defaults("fair_then_prune")["fair_steps"]
    finetune_steps: int = defaults("fair_then_prune")["finetune_steps"]

    def before_scoring(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        return Outcome().add(
            train_weights(model, task, self.fair_steps, constraint=task.constraint(), desc="fair dense"),
            sparsity=0.0,  # the dense model: fair, but not yet a pruned one
        )
