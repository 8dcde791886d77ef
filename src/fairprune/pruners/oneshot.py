"""One-shot pruners: score every weight once, keep the top, fine-tune.

``dense`` (no pruning), ``random``, ``magnitude`` (Han et al., 2015) and ``snip`` (Lee et al., 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fairprune.engine import Task
from fairprune.masks import apply_masks, prunable_parameters
from fairprune.pruners.base import SNIP_BATCHES, Outcome, magnitude_scores, prune_and_finetune, snip_scores

__all__ = ["Dense", "RandomPruner", "Magnitude", "Snip"]


@dataclass(frozen=True)
class Dense:
    """No pruning: all-ones masks, the dense reference. Accepts only sparsity 0."""

    scope: str = "global"

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        if sparsity != 0.0:
            raise ValueError(f"method 'dense' prunes nothing; expected sparsity 0, got {sparsity}")
        apply_masks(model, {n: torch.ones_like(p) for n, p in prunable_parameters(model).items()})
        return Outcome()


@dataclass(frozen=True)
class RandomPruner:
    """Random masks at the target sparsity, then fine-tuning (the sanity-check baseline)."""

    scope: str = "global"
    finetune_steps: int = 500

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        gen = torch.Generator().manual_seed(task.seed)
        scores = {n: torch.rand(p.shape, generator=gen) for n, p in prunable_parameters(model).items()}
        return prune_and_finetune(
            model,
            scores,
            sparsity,
            task,
            scope=self.scope,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="random",
        )


@dataclass(frozen=True)
class Magnitude:
    """Keep the largest ``|theta|`` (global or per-layer), then fine-tune."""

    scope: str = "global"
    finetune_steps: int = 500

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        return prune_and_finetune(
            model,
            magnitude_scores(model),
            sparsity,
            task,
            scope=self.scope,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="magnitude",
        )


@dataclass(frozen=True)
class Snip:
    """Keep the largest connection sensitivity ``|theta * dL/dtheta|``, then fine-tune."""

    scope: str = "global"
    finetune_steps: int = 500
    n_batches: int = SNIP_BATCHES

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        scores = snip_scores(model, task, self.n_batches)
        outcome = prune_and_finetune(
            model,
            scores,
            sparsity,
            task,
            scope=self.scope,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="snip",
        )
        outcome.train_iterations += self.n_batches  # the scoring passes
        return outcome
