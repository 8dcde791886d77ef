"""Uniform channel top-k: the same number of channels removed from every layer of one kind.

A Hugging Face config describes all layers with one head count and one MLP width, so a model
that must round-trip through ``save_pretrained`` / ``from_pretrained`` has to lose the same
number of heads (and of MLP neurons) in every layer. Groups with the same ``kind``, channel count
and tensor shapes form a *family*; each family is ranked as one virtual group whose channel ``r``
is the ``r``-th weakest channel of every member (its score: their mean), and
:func:`~fairprune.structured.structured_topk` picks from the virtual groups, counting the
removed weights exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from fairprune.structured._groups import ChannelGroup, ChannelSlice, group_param_counts

__all__ = ["uniform_topk", "removal_unit"]


def _family(group: ChannelGroup) -> tuple[object, ...]:
    shapes = tuple(sorted((s.shape, s.dim, s.prunable) for s in group.slices))
    return (group.kind, group.n_channels, shapes)


def uniform_topk(
    topk: Callable[..., dict[str, Tensor]],
    scores: Mapping[str, Tensor],
    groups: Iterable[ChannelGroup],
    target_sparsity: float,
    **kwargs: object,
) -> dict[str, Tensor]:
    """``topk`` (:func:`structured_topk`) over families of groups, every member of a family
    keeping the same number of channels (its strongest)."""
    groups = [g for g in groups if g.id in scores]
    families: dict[tuple[object, ...], list[ChannelGroup]] = {}
    for g in groups:
        families.setdefault(_family(g), []).append(g)
    virtual: list[ChannelGroup] = []
    virtual_scores: dict[str, Tensor] = {}
    ranks: dict[str, Tensor] = {}  # group id -> (n_channels,) rank of each channel, weakest 0
    for members in families.values():
        slices: list[ChannelSlice] = []
        ordered = []
        for g in members:
            order = torch.argsort(scores[g.id].detach().double().cpu(), stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(order))
            ranks[g.id] = rank
            ordered.append(scores[g.id].detach().double().cpu()[order])
            slices += [
                ChannelSlice(s.name, s.dim, s.positions, rank[s.channels], s.shape, s.prunable, s.input_dim)
                for s in g.slices
            ]
        head = members[0]
        virtual.append(ChannelGroup(head.id, head.n_channels, tuple(slices), head.kind))
        virtual_scores[head.id] = torch.stack(ordered).mean(0)
    keep_virtual = topk(virtual_scores, virtual, target_sparsity, **kwargs)
    keep: dict[str, Tensor] = {}
    for members, v in zip(families.values(), virtual, strict=True):
        for g in members:
            keep[g.id] = keep_virtual[v.id][ranks[g.id]]
    return keep


def removal_unit(
    groups: Iterable[ChannelGroup], weight_cost: Mapping[str, int] | None = None, *, uniform: bool = False
) -> int:
    """The most weights (times their cost) one step of the channel top-k removes: one channel of
    a group, or with ``uniform`` one channel of every member of a family."""
    groups = list(groups)
    counts = group_param_counts(groups, weight_cost)
    if not uniform:
        return max(counts.values())
    families: dict[tuple[object, ...], int] = {}
    for g in groups:
        families[_family(g)] = families.get(_family(g), 0) + counts[g.id]
    return max(families.values())
