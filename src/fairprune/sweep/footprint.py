"""What a pruned model costs to ship, next to the dense one: parameters, FLOPs, latency
(:func:`fairprune.export.model_footprint`, the one footprint a model card holds too).

A channel-pruned model is shipped slimmed (:meth:`~fairprune.pruners.ChannelSelection.slim`):
its outputs are checked against the masked model's on a validation batch before anything is
reported, and a mismatch is an error. An unstructured model is shipped with its masks baked in:
its non-zero parameters shrink, its FLOPs and latency on dense kernels do not (reported as
they are: a FLOPs ratio of 1, latency not timed).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn

from fairprune.batches import model_inputs
from fairprune.config import ExportConfig
from fairprune.data.base import GroupData
from fairprune.export import model_footprint
from fairprune.masks import bake_masks
from fairprune.model_io import rows
from fairprune.pruners import PruneResult
from fairprune.schema import FOOTPRINT_COLUMNS
from fairprune.structured import check_slim

__all__ = ["footprint", "FOOTPRINT_COLUMNS"]


def footprint(
    dense: nn.Module,
    pruned: nn.Module,
    result: PruneResult,
    data: GroupData,
    export: ExportConfig,
    device: str,
) -> tuple[dict[str, Any], nn.Module]:
    """The shipped model of a run and its footprint columns (ratios are shipped / dense).

    Args:
        dense: The dense model the run started from.
        pruned: The pruned (masked) model.
        result: The pruner's result (``result.channels`` set for a structured pruner).
        data: Samples for the example batch and the slim check (the validation split).
        export: What to measure (``latency``, ``latency_batch``, ``latency_repeats``).
        device: Where to time the models.

    Raises:
        SlimMismatchError: If the slimmed model's outputs differ from the masked model's.
    """
    batch = model_inputs(rows(data.x, 0, export.latency_batch), device)
    row: dict[str, Any] = {c: math.nan for c in FOOTPRINT_COLUMNS}
    dense = dense.to(device)
    if result.channels is None:
        shipped = bake_masks(copy.deepcopy(pruned).eval())
        foot = model_footprint(shipped, dense, batch, latency=False)  # dense kernels: the dense FLOPs
        row["params"] = foot["nonzero_params"]
    else:
        shipped = result.channels.slim(pruned).to(device).eval()
        row["slim_max_abs_diff"] = check_slim(pruned, shipped, batch)
        row["channel_fraction"] = result.channels.channel_fraction
        foot = model_footprint(shipped, dense, batch, latency=export.latency, repeats=export.latency_repeats)
        row["params"] = foot["params"]
        row.update({k: foot[k] for k in ("latency_ms", "latency_dense_ms", "latency_ratio") if k in foot})
    row["flops"] = foot["flops"]
    row["params_ratio"] = row["params"] / foot["dense_params"]
    row["flops_ratio"] = row["flops"] / foot["dense_flops"]
    return row, shipped
