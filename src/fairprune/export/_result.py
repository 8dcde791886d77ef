"""A :class:`~fairprune.PruningResult` in the card's terms: its ``pruning`` section and, when no
data are given to export, the ``data`` and ``metrics`` sections from the metrics it holds."""

from __future__ import annotations

from typing import Any

from fairprune.export._card import named_card_metrics, pruning_section
from fairprune.result import PruningResult
from fairprune.schema import GROUP_SIZE

__all__ = ["result_pruning", "result_data", "result_metrics"]

_SPLITS = ("val", "test")


def result_pruning(result: PruningResult) -> dict[str, Any]:
    """The card's ``pruning`` section of an API result (``fair``: the state met tau on
    validation; a sweep's run id, seed and tau setting are ``None``)."""
    cert = result.certificate
    return pruning_section(
        {
            "method": result.method,
            "label": result.method,
            "structure": result.structure,
            "sparsity": result.sparsity,
            "achieved_sparsity": result.achieved_sparsity,
            "channel_fraction": result.channel_fraction,
            "fairness": result.fairness,
            "tolerance": result.tolerance,
            "fair": result.feasible,
            **({} if cert is None else {"certified": cert.certified, "violation_bound": cert.bound}),
            "degradation_bound": result.degradation_bound,
            "certificate": None if cert is None else cert.describe(result.group_names),
            "train_iterations": result.train_iterations,
            "wall_seconds": result.wall_seconds,
        }
    )


def result_data(result: PruningResult) -> dict[str, Any]:
    """The card's ``data`` section from what a result knows: group names and sizes per split (the
    data set, target and class names are not in a result: ``None``)."""
    sizes = {
        split: [int(per["pruned"].get(GROUP_SIZE + name, 0)) for name in result.group_names]
        for split, per in result.metrics.items()
    }
    return {
        "dataset": None,
        "target": None,
        "class_names": None,
        "sensitive_attribute": None,
        "group_names": list(result.group_names),
        "group_sizes": sizes,
    }


def result_metrics(result: PruningResult) -> dict[str, Any]:
    """The card's ``metrics`` section (``val`` and ``test`` where given) from the result's."""
    return {
        split: {which: named_card_metrics(values) for which, values in result.metrics[split].items()}
        for split in _SPLITS
        if split in result.metrics
    }
