"""Iterative magnitude pruning with rewinding: the Lottery Ticket procedure (Frankle & Carbin,
ICLR 2019; rewinding as in Frankle et al., ICML 2020) — the paper's "Lottery" baseline."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from torch import nn

from fairprune.engine import Task, train_weights
from fairprune.masks import apply_masks, get_masks, prunable_parameters, topk_masks
from fairprune.pruners.base import Outcome, magnitude_scores

__all__ = ["IMP", "imp_schedule"]


def imp_schedule(sparsity: float, rate: float) -> list[float]:
    """Sparsities of the rounds: prune ``rate`` of the remaining weights per round, the last
    round landing exactly on ``sparsity`` (0.2 gives 0.2, 0.36, 0.488, ...)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"IMP rate must be in (0, 1), got {rate}")
    if sparsity == 0.0:
        return []
    rounds = max(1, math.ceil(math.log(1.0 - sparsity) / math.log(1.0 - rate) - 1e-9))
    levels = [1.0 - (1.0 - rate) ** r for r in range(1, rounds)]
    return [s for s in levels if s < sparsity] + [sparsity]


@dataclass(frozen=True)
class IMP:
    """Rounds of: global magnitude pruning of the surviving weights, rewinding the weights to
    the pruner's starting point (the trained dense model: late rewinding), and retraining.

    Attributes:
        rate: Fraction of the remaining weights pruned per round (0.2 in the Lottery Ticket papers).
        round_steps: Training iterations per round.
    """

    scope: str = "global"
    rate: float = 0.2
    round_steps: int = 100

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        start = copy.deepcopy(model)
        outcome = Outcome()
        for level in imp_schedule(sparsity, self.rate):
            scores = magnitude_scores(model)
            masks = get_masks(model)
            # pruned weights stay pruned: rank only the survivors
            scores = {n: s * masks[n] + (masks[n] - 1.0) for n, s in scores.items()}
            new_masks = topk_masks(scores, level, scope=self.scope)
            _rewind(model, start)
            apply_masks(model, new_masks)
            outcome.add(train_weights(model, task, self.round_steps, desc=f"imp {level:.3f}"))
        if not outcome.history:
            apply_masks(model, topk_masks(magnitude_scores(model), sparsity, scope=self.scope))
        return outcome


def _rewind(model: nn.Module, start: nn.Module) -> None:
    """Copy every weight and buffer of ``start`` into ``model``, leaving the masks alone."""
    source = {**dict(start.named_parameters()), **dict(start.named_buffers())}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if ".parametrizations." not in name and name in source:
            tensor.data.copy_(source[name])
    start_weights = prunable_parameters(start)
    for name, param in prunable_parameters(model).items():
        param.data.copy_(start_weights[name])
