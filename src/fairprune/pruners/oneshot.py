"""One-shot pruners: score every weight (or channel) once, keep the top, fine-tune.

``dense`` (no pruning), ``random``, ``magnitude`` (Han et al., 2015; with ``structure="channel"``
the L1 filter norm of Li et al., 2017), ``snip`` (Lee et al., 2019) and ``fpgm`` (He et al.,
CVPR 2019: filters near the geometric median of their layer are redundant; channels only). Each
is a :class:`~fairprune.pruners.base.ScoreThenFinetune` with its importance
(:mod:`fairprune.pruners.importance`) and plain fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fairprune.masks import apply_masks, prunable_parameters
from fairprune.methods_spec import DENSE, defaults
from fairprune.pruners.base import Outcome, PrunerBase, ScoreThenFinetune
from fairprune.pruners.importance import (
    FpgmImportance,
    Importance,
    MagnitudeImportance,
    RandomImportance,
    SnipImportance,
)
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
class RandomPruner(ScoreThenFinetune):
    """Random masks at the target sparsity, then fine-tuning (the sanity-check baseline)."""

    key = "random"
    importance = RandomImportance()
    finetune_steps: int = defaults("random")["finetune_steps"]


@dataclass(frozen=True)
class Magnitude(ScoreThenFinetune):
    """Keep the largest ``|theta|`` (or channel L1 norms), then fine-tune."""

    key = "magnitude"
    importance = MagnitudeImportance()
    finetune_steps: int = defaults("magnitude")["finetune_steps"]


@dataclass(frozen=True)
class Snip(ScoreThenFinetune):
    """Keep the largest connection sensitivity ``|theta * dL/dtheta|`` (summed per channel in
    channel mode) over ``n_batches`` training batches (one iteration each), then fine-tune."""

    key = "snip"
    finetune_steps: int = defaults("snip")["finetune_steps"]
    n_batches: int = defaults("snip")["n_batches"]

    @property
    def importance(self) -> Importance:
        return SnipImportance(self.n_batches)


@dataclass(frozen=True)
class Fpgm(ScoreThenFinetune):
    """FPGM: drop the filters closest to the geometric median of their layer, then fine-tune.

    A structured method: ``structure`` must be ``"channel"`` (the default here).
    """

    key = "fpgm"
    importance = FpgmImportance()
    structure: str = defaults("fpgm")["structure"]
    finetune_steps: int = defaults("fpgm")["finetune_steps"]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.structure != "channel":
            raise ValueError("fpgm prunes filters; expected structure='channel'")
