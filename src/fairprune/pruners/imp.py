"""Iterative magnitude pruning with rewinding: the Lottery Ticket procedure (Frankle & Carbin,
ICLR 2019; rewinding as in Frankle et al., ICML 2020) — the paper's "Lottery" baseline."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from torch import nn

from fairprune.engine import Task
from fairprune.methods_spec import defaults
from fairprune.pruners.base import Outcome, PrunerBase, prune_and_finetune
from fairprune.pruners.importance import MagnitudeImportance, SurvivorsFirst

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
class IMP(PrunerBase):
    """Rounds of: global magnitude pruning of the surviving weights (or channels), rewinding the
    weights to the pruner's starting point (the trained dense model: late rewinding), and
    retraining — each round one score-then-fine-tune step
    (:func:`~fairprune.pruners.base.prune_and_finetune`) with the survivors-first magnitude.

    Attributes:
        rate: Fraction of the remaining weights pruned per round (0.2 in the Lottery Ticket papers).
        round_steps: Training iterations per round.
    """

    key = "imp"
    rate: float = defaults("imp")["rate"]
    round_steps: int = defaults("imp")["round_steps"]

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        start = copy.deepcopy(model)
        space = self.space(model, task)
        outcome = Outcome(space=space)
        importance = SurvivorsFirst(MagnitudeImportance())  # pruned weights stay pruned
        for level in imp_schedule(sparsity, self.rate):
            scores = importance(model, space, task)
            _rewind(model, start)
            round_ = prune_and_finetune(
                model, space, scores, level, task, finetune_steps=self.round_steps, fair=False,
                desc=f"imp {level:.3f}",
            )  # fmt: skip
            outcome.add(round_, sparsity=level if level < sparsity else None)
        if not outcome.history:
            space.apply(model, space.magnitude(model), sparsity)
        return outcome


def _rewind(model: nn.Module, start: nn.Module) -> None:
    """Copy every weight and buffer of ``start`` into ``model``, leaving the masks alone (also
    where a mask parametrization sits on a bias or a BatchNorm parameter)."""
    source = {_plain_name(n): t for n, t in [*start.named_parameters(), *start.named_buffers()]}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        plain = _plain_name(name)
        if plain is not None and plain in source:
            tensor.data.copy_(source[plain])


def _plain_name(name: str) -> str | None:
    """``a.parametrizations.weight.original`` -> ``a.weight``; ``None`` for a mask buffer."""
    if ".parametrizations." not in name and not name.startswith("parametrizations."):
        return name
    head, _, tail = name.rpartition("parametrizations.")
    param, _, rest = tail.partition(".")
    return head + param if rest == "original" else None
