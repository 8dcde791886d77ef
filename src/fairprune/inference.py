"""Predictions and exact metrics of a model on a split: evaluation, no training.

Every prediction goes through here (the loops' validation checks, the sweep's reported metrics,
the export's re-checks, ``fairprune.prune``'s result), in eval mode and in batches, on the CPU
at the end.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from fairprune.batches import model_inputs
from fairprune.data.base import GroupData
from fairprune.distributed import all_gather_cat, is_distributed, rank, world_size
from fairprune.fairness.metrics import fairness_report
from fairprune.model_io import forward_logits, rows

__all__ = [
    "Postprocessor",
    "logits_of",
    "predict",
    "predict_gathered",
    "evaluate",
    "classes_of",
    "dense_and_pruned",
    "worst_group_accuracy",
]


class Postprocessor(Protocol):
    """Maps a model's logits and each sample's group to class predictions (group-specific
    decision thresholds): a model that needs the sensitive attribute at prediction time."""

    def __call__(self, logits: Tensor, groups: Tensor) -> Tensor: ...


@torch.no_grad()
def logits_of(model: nn.Module, data: GroupData, batch_size: int = 1024, device: str = "cpu") -> Tensor:
    """The model's outputs on ``data`` in eval mode, on the CPU: ``(N, C)`` or ``(N,)``/``(N, 1)``."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        batch = model_inputs(rows(data.x, start, start + batch_size), device)
        outputs.append(forward_logits(model, batch).cpu())
    model.train(was_training)
    return torch.cat(outputs)


def predict(
    model: nn.Module,
    data: GroupData,
    batch_size: int = 1024,
    device: str = "cpu",
    *,
    postprocessor: Postprocessor | None = None,
) -> Tensor:
    """Class predictions ``(N,)`` of ``model`` in eval mode (through ``postprocessor``, with the
    samples' groups, when given)."""
    logits = logits_of(model, data, batch_size, device)
    if postprocessor is not None:
        return postprocessor(logits, data.groups)
    return classes_of(logits)


def predict_gathered(model: nn.Module, data: GroupData, device: str = "cpu") -> Tensor:
    """:func:`predict` on ``data``; under ``torchrun`` each rank predicts every ``W``-th sample
    and the predictions are gathered (the same ``(N,)`` tensor, in ``data``'s order, on every rank)."""
    if not is_distributed():
        return predict(model, data, device=device)
    world, n = world_size(), len(data)
    local = predict(model, data.subset(torch.arange(rank(), n, world)), device=device)
    gathered = all_gather_cat(local)  # rank 0's samples, then rank 1's, ...
    order = torch.cat([torch.arange(r, n, world) for r in range(world)])
    pred = torch.empty_like(gathered)
    pred[order] = gathered
    return pred


def classes_of(logits: Tensor) -> Tensor:
    """Class predictions of ``(N, C)`` logits (argmax) or one binary logit ``(N,)``/``(N, 1)`` (> 0)."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return (logits.reshape(-1) > 0).long()
    return logits.argmax(dim=-1)


def evaluate(
    model: nn.Module,
    data: GroupData,
    n_groups: int,
    *,
    dense_pred: Tensor | None = None,
    device: str = "cpu",
    postprocessor: Postprocessor | None = None,
) -> dict[str, float]:
    """Exact accuracy and fairness metrics of ``model`` on one split (see ``fairness_report``)."""
    pred = predict(model, data, device=device, postprocessor=postprocessor)
    return fairness_report(data.y, pred, groups=data.groups, n_groups=n_groups, y_pred_dense=dense_pred)


def dense_and_pruned(
    dense: nn.Module | None, pruned: nn.Module, data: GroupData, n_groups: int, *, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """The exact metrics of a pruned model beside its dense one on one split: ``{"dense": ...,
    "pruned": ...}`` (:func:`~fairprune.fairness.metrics.fairness_report`, the pruned model's
    with the degradation metrics against the dense predictions); no ``"dense"`` without one."""
    pruned_pred = predict(pruned, data, device=device)
    if dense is None:
        return {"pruned": fairness_report(data.y, pruned_pred, groups=data.groups, n_groups=n_groups)}
    dense_pred = predict(dense, data, device=device)
    y, groups = data.y, data.groups
    return {
        "dense": fairness_report(y, dense_pred, groups=groups, n_groups=n_groups),
        "pruned": fairness_report(y, pruned_pred, groups=groups, n_groups=n_groups, y_pred_dense=dense_pred),
    }


def worst_group_accuracy(y: Tensor, pred: Tensor, groups: Tensor, n_groups: int) -> float:
    """The lowest accuracy of a group present in the data (NaN when none is)."""
    correct = torch.bincount(groups, weights=(pred == y).double(), minlength=n_groups)
    counts = torch.bincount(groups, minlength=n_groups)
    present = counts > 0
    if not present.any():
        return math.nan
    return float((correct[present] / counts[present]).min())
