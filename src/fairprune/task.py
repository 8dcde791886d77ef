"""The task a pruner is given: the data, the fairness objective, the training settings, the seed
and the dense reference model; and the training settings resolved for this machine."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import Tensor, nn

from fairprune.config import TrainConfig
from fairprune.data.base import GroupData, Splits
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import predict

__all__ = ["Task", "resolved", "stratified_subset"]


def resolved(config: TrainConfig) -> TrainConfig:
    """``config`` with ``device="auto"`` replaced by the device to use here.

    Raises:
        ValueError: If ``config.device`` is not a device torch knows.
    """
    if config.device == "auto":
        return replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(config.device)
    except RuntimeError as err:
        raise ValueError(f"train.device {config.device!r} is not a torch device or 'auto': {err}") from err
    return config


@dataclass
class Task:
    """Everything a pruner needs besides the model: data, fairness objective, budget, seed."""

    splits: Splits
    objective: FairnessObjective | None
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    progress: bool = False
    dense: nn.Module | None = None  # the dense reference (for metrics relative to it)

    def constraint(self, objective: FairnessObjective | None = None) -> Constraint | None:
        """A fresh constraint on ``objective`` (default: the task's own)."""
        objective = self.objective if objective is None else objective
        if objective is None:
            return None
        if objective.per_group and self.dense is None:
            raise ValueError(
                f"fairness metric {objective.metric!r} is relative to the dense model; expected a "
                "Task with dense= (the dense model)"
            )
        return Constraint(objective, self.splits.n_groups)

    @cached_property
    def dense_validation_pred(self) -> Tensor | None:
        """The dense model's predictions on :attr:`validation` (``None`` without ``dense``)."""
        if self.dense is None:
            return None
        return predict(self.dense, self.validation, device=self.train.device)

    @cached_property
    def validation(self) -> GroupData:
        """The validation data checked during training (see ``TrainConfig.eval_samples``)."""
        val = self.splits.val
        if self.train.eval_samples == 0 or self.train.eval_samples >= len(val):
            return val
        return val.subset(stratified_subset(val, self.train.eval_samples, self.splits.n_groups, self.seed))


def stratified_subset(data: GroupData, n: int, n_groups: int, seed: int) -> Tensor:
    """Indices of about ``n`` samples of ``data`` keeping each (target, group) cell's share
    (at least one sample of every non-empty cell), chosen with ``seed``; sorted."""
    gen = torch.Generator().manual_seed(seed)
    cell = data.y * n_groups + data.groups
    picked = []
    for c in torch.unique(cell):
        idx = torch.nonzero(cell == c).flatten()
        take = max(1, round(n * len(idx) / len(data)))
        picked.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    return torch.sort(torch.cat(picked)).values
