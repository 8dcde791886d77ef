"""Importance criteria: what a pruner ranks the units of its space by.

An importance is a callable ``(model, space, task) -> Scores`` — one score per unit of the space
(per weight, or per channel of each dependency group), the highest kept — with ``passes``, the
training iterations (forward and backward passes over a batch) it spends. The space turns the
scores into masks (:meth:`~fairprune.pruners.space.WeightSpace.apply`); a pruner that scores once
and fine-tunes is then a declaration (:class:`~fairprune.pruners.base.ScoreThenFinetune`), as in
Torch-Pruning's importance objects and ShrinkBench's strategies.

- :class:`MagnitudeImportance`: ``|theta|`` (Han et al., 2015); channels: the L1 filter norm of
  Li et al. (ICLR 2017), normalised per dependency group.
- :class:`RandomImportance`: ``U(0, 1)`` from the task's seed (the sanity-check baseline).
- :class:`SnipImportance`: SNIP's connection sensitivity ``|theta * dL/dtheta|`` summed over a few
  training batches (Lee, Ajanthan & Torr, ICLR 2019); channels: the per-weight sums pooled.
- :class:`FpgmImportance`: a filter's distance to the geometric median of its layer (He et al.,
  CVPR 2019); channels only.
- :class:`SurvivorsFirst`: another importance with every unit already pruned ranked below every
  survivor, so pruning again never revives one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor, nn

from fairprune.engine import stratified_batches, train_inputs
from fairprune.masks import prunable_parameters
from fairprune.model_io import Features, forward_logits
from fairprune.pruners.space import ChannelSpace, Scores, Space
from fairprune.structured import fpgm_channel_scores
from fairprune.task import Task

__all__ = [
    "Importance",
    "MagnitudeImportance",
    "RandomImportance",
    "SnipImportance",
    "FpgmImportance",
    "SurvivorsFirst",
    "SNIP_BATCHES",
    "scoring_batches",
    "snip_scores",
]

SNIP_BATCHES = 4  # training batches SNIP scores are summed over (each one iteration)


class Importance(Protocol):
    """A pruning criterion: ``importance(model, space, task)`` scores every unit of ``space``
    at ``model``'s current weights (higher: kept first). A criterion read off the weights takes
    ``task=None`` (a user's loop has no task); one that reads training batches needs the task."""

    @property
    def passes(self) -> int:
        """Training iterations the scoring spends (0 for a criterion read off the weights)."""
        ...

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores: ...


@dataclass(frozen=True)
class MagnitudeImportance:
    """``|theta|`` of every weight; in a channel space the L1 norm of each channel's weights,
    normalised per dependency group (:meth:`~fairprune.pruners.space.ChannelSpace.magnitude`)."""

    passes: ClassVar[int] = 0

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores:
        return space.magnitude(model)


@dataclass(frozen=True)
class RandomImportance:
    """``U(0, 1)`` per unit, drawn from a generator seeded with ``seed`` (default: the task's
    seed): the same scores for the same seed, whatever the global random state.

    Attributes:
        seed: The generator's seed (``None``: the task's).
    """

    passes: ClassVar[int] = 0
    seed: int | None = None

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores:
        if self.seed is None and task is None:
            raise ValueError("RandomImportance needs a seed: RandomImportance(seed=...) or a task")
        seed = self.seed if self.seed is not None else task.seed  # type: ignore[union-attr]
        return space.random(model, torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class SnipImportance:
    """SNIP: ``|theta * sum_b dL_b/dtheta|`` over ``n_batches`` training batches
    (:func:`snip_scores`), summed per channel and normalised per group in a channel space.

    Attributes:
        n_batches: Training batches the gradients are summed over (one iteration each).
    """

    n_batches: int = SNIP_BATCHES

    @property
    def passes(self) -> int:
        return self.n_batches

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores:
        if task is None:
            raise ValueError("SNIP scores from training batches; expected a task (in a loop: pass scores=)")
        return space.pool(snip_scores(model, task, self.n_batches))


@dataclass(frozen=True)
class FpgmImportance:
    """FPGM: each channel's summed distance to the other filters of its layers
    (:func:`~fairprune.structured.fpgm_channel_scores`); filters near the geometric median are
    redundant and go first. Channel spaces only."""

    passes: ClassVar[int] = 0

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores:
        if not isinstance(space, ChannelSpace):
            raise TypeError(f"FPGM scores filters; expected a ChannelSpace, got {type(space).__name__}")
        return fpgm_channel_scores(model, space.groups)


@dataclass(frozen=True)
class SurvivorsFirst:
    """``inner``'s scores with every unit pruned now ranked below every survivor
    (:meth:`~fairprune.pruners.space.WeightSpace.survivors_first`).

    Attributes:
        inner: The importance that ranks the survivors.
    """

    inner: Importance

    @property
    def passes(self) -> int:
        return self.inner.passes

    def __call__(self, model: nn.Module, space: Space, task: Task | None) -> Scores:
        return space.survivors_first(model, self.inner(model, space, task))


def scoring_batches(
    model: nn.Module, task: Task, n_batches: int
) -> Iterator[tuple[Features, Tensor, Tensor]]:
    """The ``n_batches`` training batches ``(x, y, groups)`` a gradient score is summed over:
    stratified by (target, group), drawn with the task's seed, on the task's device.

    Moves ``model`` to the task's device in train mode now (before the first batch is drawn),
    so tensors made like its parameters afterwards live where the gradients will.
    """
    gen = torch.Generator().manual_seed(task.seed)
    batches = stratified_batches(task.splits.train, task.train.batch_size, gen, task.splits.n_groups)
    model.to(task.train.device).train()
    return (train_inputs(next(batches), task) for _ in range(n_batches))


def snip_scores(model: nn.Module, task: Task, n_batches: int = SNIP_BATCHES) -> dict[str, Tensor]:
    """SNIP connection sensitivity ``|theta * dL/dtheta|`` summed over a few training batches
    (Lee, Ajanthan & Torr, ICLR 2019), at the model's current weights."""
    params = prunable_parameters(model)
    batches = scoring_batches(model, task, n_batches)
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    for x, y, _ in batches:
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(forward_logits(model, x), y)
        loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                grads[name] += p.grad.detach()
    model.zero_grad(set_to_none=True)
    return {name: (p.detach() * grads[name]).abs() for name, p in params.items()}
