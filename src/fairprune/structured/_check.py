"""Checks before training: the channel groups slim to a model equal to the masked one.

:func:`check_channel_plan` runs on an example batch before the first step: it draws a random
keep-vector at the target (which also proves the target reachable), masks a deep copy, slims it
and compares the outputs; where they differ it finds the group to blame by slimming one group at
a time. :func:`check_slim` is the same comparison for a finished model (``squash_mask``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from fairprune.errors import SlimMismatchError
from fairprune.masks import get_masks
from fairprune.model_io import Features, eval_logits
from fairprune.structured._groups import ChannelGroup
from fairprune.structured._masks import apply_channel_masks, slim

__all__ = ["SLIM_TOLERANCE", "check_channel_groups", "check_channel_plan", "check_slim"]

SLIM_TOLERANCE = 1e-4  # max |slim - masked| output difference, relative to (max |masked| + 1)


def check_channel_groups(model: nn.Module, groups: Sequence[ChannelGroup]) -> None:
    """Every group removes prunable weights and reaches a prunable consumer.

    Raises:
        ValueError: One line naming the group's module (e.g. attention whose weights are not
            prunable parameters, such as HF ``Conv1D`` without coverage).
    """
    for g in groups:
        if not any(s.prunable for s in g.slices) or not any(s.prunable and s.is_input for s in g.slices):
            names = sorted({s.name for s in g.slices})
            raise ValueError(
                f"{g.id} ({g.kind}): its weights {names} are not all prunable parameters, so removing "
                f"its channels is not counted; expected Linear/Conv weights (use structure='unstructured' "
                f"or pass ignored=[{g.id!r}])"
            )


def check_slim(masked: nn.Module, slimmed: nn.Module, example: Features, *, what: str = "model") -> float:
    """The largest output difference between ``slimmed`` and ``masked`` on ``example`` (eval).

    Raises:
        SlimMismatchError: Beyond :data:`SLIM_TOLERANCE` of the outputs' scale (one line).
    """
    expected = eval_logits(masked, example)
    diff = float((eval_logits(slimmed, example) - expected).abs().max())
    bound = SLIM_TOLERANCE * (float(expected.abs().max()) + 1.0)
    if not diff <= bound:
        raise SlimMismatchError(
            f"the slimmed {what} differs from the masked one by {diff:.3g} (expected at most {bound:.3g}); "
            "it has an op that mixes channels which the grouping does not know: pass that module in "
            "ignored= or use structure='unstructured'"
        )
    return diff


def _trial(
    model: nn.Module, groups: list[ChannelGroup], keep: Mapping[str, Tensor], example: Features
) -> str:
    """``""`` if masking with ``keep`` and slimming agree on ``example``, else why not."""
    masked = copy.deepcopy(model)
    apply_channel_masks(masked, groups, keep)
    try:
        check_slim(masked, slim(masked, groups, keep, example, sync_config=False), example)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return ""


def check_channel_plan(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    example: Features,
    topk: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    *,
    seed: int = 0,
) -> None:
    """Before training: random channels dropped at the target slim to a model equal to the masked
    one, and no prunable weight loses all of its entries.

    Args:
        model: The model about to be trained (left unchanged).
        groups: Its channel groups.
        example: An example batch (eval mode is used).
        topk: Scores -> keep-vectors at the target (raises if the target is out of reach).
        seed: Seed of the random scores.

    Raises:
        ValueError: One line naming the module whose channels cannot be removed, or the target
            that is out of reach and what to do.
    """
    groups = list(groups)
    generator = torch.Generator().manual_seed(seed)
    scores = {g.id: torch.rand(g.n_channels, generator=generator) for g in groups}
    try:
        keep = topk(scores)
    except ValueError as error:
        raise ValueError(
            f"channel mode: {error}; lower the sparsity or use structure='unstructured'"
        ) from None
    masked = copy.deepcopy(model)
    apply_channel_masks(masked, groups, keep)
    empty = sorted(name for name, m in get_masks(masked).items() if not bool(m.any()))
    if empty:
        raise ValueError(
            f"channel masks would remove {empty[0]} whole; expected every layer to keep a channel"
        )
    if not _trial(model, groups, keep, example):
        return
    for g in groups:  # find the group to blame: drop its channels alone
        if bool(keep[g.id].all()):
            continue
        alone = {
            h.id: keep[g.id] if h.id == g.id else torch.ones(h.n_channels, dtype=torch.bool) for h in groups
        }
        why = _trial(model, groups, alone, example)
        if why:
            raise ValueError(
                f"channels of {g.id} ({g.kind}) cannot be removed exactly ({why}); pass ignored=[{g.id!r}] "
                "or use structure='unstructured'"
            )
    raise ValueError(
        f"the slimmed model differs from the masked one ({_trial(model, groups, keep, example)}), "
        "although each group slims alone; use structure='unstructured'"
    )
