"""One-shot pruners: score every weight (or channel) once, keep the top, fine-tune.

``dense`` (no pruning), ``random``, ``magnitude`` (Han et al., 2015; with ``structure="channel"``
the L1 filter norm of Li et al., 2017), ``snip`` (Lee et al., 2019) and ``fpgm`` (He et al.,
CVPR 2019: filters near the geometric median of their layer are redundant; channels only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fairprune.masks import apply_masks, prunable_parameters
from fairprune.methods_spec import DENSE, defaults
from fairprune.pruners.base import Outcome, PrunerBase, prune_and_finetune
from fairprune.pruners.importance import snip_scores
from fairprune.pruners.space import ChannelSpace
from fairprune.structured import fpgm_channel_scores
from fairprune.task import Task

__all__ = ["Dense", "RandomPruner", "Magnitude", "Snip", "Fpgm"]


@dataclass(frozen=True)
class Dense(PrunerBase):
    """No pruning: all-ones masks, the dense reference. Accepts only sparsity 0."""

    key = DENSE

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        if sparsity != 0.0:
            raise ValueError(f"method 'dense' prunes nothing; expected sparsity 0, got {sparsity}")
        apply_masks(model, {n: torch.ones_like(p) for n, p in prunable_parameters(model).items()})
        return Outcome()


@dataclass(frozen=True)
class RandomPruner(PrunerBase):
    """Random masks at the target sparsity, then fine-tuning (the sanity-check baseline)."""

    key = "random"
    finetune_steps: int = defaults("random")["finetune_steps"]

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        scores = space.random(model, torch.Generator().manual_seed(task.seed))
        return prune_and_finetune(
            model,
            space,
            scores,
            sparsity,
            task,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="random",
        )


@dataclass(frozen=True)
class Magnitude(PrunerBase):
    """Keep the largest ``|theta|`` (or channel L1 norms), then fine-tune."""

    key = "magnitude"
    finetune_steps: int = defaults("magnitude")["finetune_steps"]

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        return prune_and_finetune(
            model,
            space,
            space.magnitude(model),
            sparsity,
            task,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="magnitude",
        )


@dataclass(frozen=True)
class Snip(PrunerBase):
    """Keep the largest connection sensitivity ``|theta * dL/dtheta|`` (summed per channel in
    channel mode), then fine-tune."""

    key = "snip"
    finetune_steps: int = defaults("snip")["finetune_steps"]
    n_batches: int = defaults("snip")["n_batches"]

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        scores = space.pool(snip_scores(model, task, self.n_batches))
        outcome = prune_and_finetune(
            model, space, scores, sparsity, task, finetune_steps=self.finetune_steps, fair=False, desc="snip"
        )
        outcome.train_iterations += self.n_batches  # the scoring passes
        return outcome


@dataclass(frozen=True)
class Fpgm(PrunerBase):
    """FPGM: drop the filters closest to the geometric median of their layer, then fine-tune.

    A structured method: ``structure`` must be ``"channel"`` (the default here).
    """

    key = "fpgm"
    structure: str = defaults("fpgm")["structure"]
    finetune_steps: int = defaults("fpgm")["finetune_steps"]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.structure != "channel":
            raise ValueError("fpgm prunes filters; expected structure='channel'")

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        assert isinstance(space, ChannelSpace)
        return prune_and_finetune(
            model,
            space,
            fpgm_channel_scores(model, space.groups),
            sparsity,
            task,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="fpgm",
        )
