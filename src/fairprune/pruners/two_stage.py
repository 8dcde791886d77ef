"""The paper's two-stage baselines: fairness and pruning handled one after the other.

``prune_then_fair`` (P&F): magnitude pruning, then fine-tuning under the fairness constraint.
``fair_then_prune`` (F&P): fairness training of the dense model, then magnitude pruning and
fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fairprune.engine import Task, train_weights
from fairprune.pruners.base import Outcome, magnitude_scores, prune_and_finetune

__all__ = ["PruneThenFair", "FairThenPrune"]


@dataclass(frozen=True)
class PruneThenFair:
    """Magnitude pruning, then ``finetune_steps`` of fine-tuning with the fairness term."""

    scope: str = "global"
    finetune_steps: int = 1000

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        return prune_and_finetune(
            model,
            magnitude_scores(model),
            sparsity,
            task,
            scope=self.scope,
            finetune_steps=self.finetune_steps,
            fair=True,
            desc="prune_then_fair",
        )


@dataclass(frozen=True)
class FairThenPrune:
    """``fair_steps`` of fairness training on the dense model, then magnitude pruning and
    ``finetune_steps`` of plain fine-tuning."""

    scope: str = "global"
    fair_steps: int = 500
    finetune_steps: int = 500

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        outcome = Outcome().add(
            train_weights(model, task, self.fair_steps, constraint=task.constraint(), desc="fair dense")
        )
        tail = prune_and_finetune(
            model,
            magnitude_scores(model),
            sparsity,
            task,
            scope=self.scope,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="fair_then_prune",
        )
        return outcome.add(tail)
