"""Channel top-k, expansion of channel keep-vectors into masks, and physical slimming."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from fairprune.masks import Mask, Masks, apply_masks, bake_masks, prunable_parameters
from fairprune.model_io import Features
from fairprune.structured._attention import find_units, slim_units
from fairprune.structured._groups import ChannelGroup, ChannelSlice, traced_copy
from fairprune.structured._hf import sync_hf_config
from fairprune.structured._uniform import uniform_topk


def _check_keep(groups: list[ChannelGroup], keep: Mapping[str, Tensor]) -> None:
    ids = {g.id: g for g in groups}
    unknown = sorted(set(keep) - set(ids))
    if unknown:
        raise ValueError(f"keep names unknown groups {unknown}; groups: {sorted(ids)}")
    for gid, k in keep.items():
        if k.dtype != torch.bool or k.shape != (ids[gid].n_channels,) or not bool(k.any()):
            raise ValueError(
                f"keep[{gid!r}] must be a bool tensor of shape ({ids[gid].n_channels},) with at least "
                f"one True, got dtype {k.dtype}, shape {tuple(k.shape)}, {int(k.sum())} kept"
            )


def structured_topk(
    scores: Mapping[str, Tensor],
    groups: Iterable[ChannelGroup],
    target_sparsity: float,
    *,
    n_prunable: int,
    round_to: int = 1,
    at_least: bool = False,
    weight_cost: Mapping[str, int] | None = None,
    uniform: bool = False,
) -> dict[str, Tensor]:
    """Keep the highest-scoring channels, globally, at ``target_sparsity`` to the nearest channel.

    Greedy by score: channels are dropped from the lowest score up (ties: group order, then
    channel index), never the last channel of a group, until the prunable weights removed would
    pass ``target_sparsity * n_prunable``; the channel that crosses it is dropped only if that
    lands closer to the target. The count is exact — a weight tensor whose output channels and
    input channels both shrink loses ``C_out * C_in * k - C_out' * C_in' * k`` weights — so
    ``|achieved - target| * n_prunable <= round_to * max(group_param_counts(groups).values()) / 2``
    whenever the target is reachable.

    With ``round_to = r > 1`` every group keeps a multiple of ``r`` channels (or all of them),
    which CPU and GPU kernels run faster: the units of removal are then a group's ``n mod r``
    weakest channels, then blocks of its next ``r`` weakest, ranked by their mean score.

    Args:
        scores: ``(n_channels,)`` real scores per group id; larger = more important. Groups
            without scores keep all their channels.
        groups: From :func:`channel_groups`.
        target_sparsity: Fraction of the prunable weights to remove, in [0, 1).
        n_prunable: All prunable weights of the model (:func:`n_prunable`), the denominator.
        round_to: Kept channels per group are a multiple of this (at least this many).
        at_least: Never remove fewer weights than the target (a hard size budget): the channel
            that crosses the target is always dropped, so ``0 <= achieved - target`` and the
            excess is below one removal unit.
        weight_cost: The budget: what removing one weight of each prunable tensor saves
            (:func:`weight_costs`; default 1, parameters). With FLOPs costs, ``target_sparsity``
            is the fraction of the prunable layers' FLOPs to remove and ``n_prunable`` their
            total cost, ``sum(numel * cost)``.

    Returns:
        ``(n_channels,)`` bool keep-vector per group id.

    Raises:
        ValueError: On bad inputs, or when the channels that must stay cannot reach the target.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}")
    if round_to < 1:
        raise ValueError(f"round_to must be a positive channel count, got {round_to}")
    groups = list(groups)
    _check_scores(groups, scores)
    if uniform:
        keep = {g.id: torch.ones(g.n_channels, dtype=torch.bool) for g in groups}
        options = dict(n_prunable=n_prunable, round_to=round_to, at_least=at_least, weight_cost=weight_cost)
        keep.update(uniform_topk(structured_topk, scores, groups, target_sparsity, **options))
        return keep
    ranked = [_Units.of(g, scores[g.id], round_to) for g in groups if g.id in scores]
    order = _unit_order(ranked)  # (U, 2): (group index, unit index), weakest unit first
    removed = _removed_after(ranked, order, groups, weight_cost)  # (U + 1,) cost removed by each prefix
    goal = target_sparsity * n_prunable
    taken = int(np.searchsorted(removed, goal, side="left"))  # first prefix reaching the goal
    if taken == len(removed):
        raise ValueError(
            f"target_sparsity {target_sparsity} is out of reach: keeping {round_to} channel(s) per "
            f"group removes at most {removed[-1] / n_prunable:.4f} of the prunable weights"
        )
    crossing = taken > 0 and not at_least and removed[taken] > goal
    if crossing and removed[taken] - goal >= goal - removed[taken - 1]:
        taken -= 1  # the crossing unit lands farther from the goal than stopping short
    keep = {g.id: torch.ones(g.n_channels, dtype=torch.bool) for g in groups}
    n_taken = np.bincount(order[:taken, 0], minlength=len(ranked))  # a prefix of each group's units
    for units, t in zip(ranked, n_taken.tolist(), strict=True):
        keep[units.group.id][torch.from_numpy(units.order[: units.cuts[t]])] = False
    return keep


@dataclass(frozen=True)
class _Units:
    """A group's units of removal: its ``n mod r`` weakest channels, then blocks of the next
    ``r`` weakest (``order[cuts[j]:cuts[j + 1]]`` is unit ``j``); its last block always stays."""

    group: ChannelGroup
    order: np.ndarray  # (n_channels,) channel ids, weakest first
    cuts: np.ndarray  # (n_units + 1,) unit boundaries in ``order``
    means: np.ndarray  # (n_units,) mean score of each unit

    @classmethod
    def of(cls, group: ChannelGroup, score: Tensor, round_to: int) -> _Units:
        values = score.detach().double().cpu().numpy()
        order = np.argsort(values, kind="stable")
        first = group.n_channels % round_to
        cuts = np.array(
            ([0] if first else []) + list(range(first, group.n_channels, round_to)), dtype=np.int64
        )
        if len(cuts) < 2:
            return cls(group, order, cuts[:1], np.zeros(0))
        means = np.add.reduceat(values[order], cuts)[:-1] / np.diff(cuts)  # the last block stays
        return cls(group, order, cuts, means)


def _unit_order(ranked: list[_Units]) -> np.ndarray:
    """``(U, 2)`` (group index, unit index) of every unit by mean score (ties: group, unit)."""
    means = np.concatenate([u.means for u in ranked] + [np.zeros(0)])
    group = np.concatenate([np.full(len(u.means), i) for i, u in enumerate(ranked)] + [np.zeros(0, np.int64)])
    unit = np.concatenate([np.arange(len(u.means)) for u in ranked] + [np.zeros(0, np.int64)])
    index = np.lexsort((unit, group, means))
    return np.stack([group[index], unit[index]], axis=1).astype(np.int64)


def _removed_after(
    ranked: list[_Units],
    order: np.ndarray,
    groups: list[ChannelGroup],
    weight_cost: Mapping[str, int] | None,
) -> np.ndarray:
    """``(U + 1,)`` prunable weights (times their cost) removed by the first ``0 .. U`` units of
    ``order``, counted exactly: a weight whose output and input channels both shrink keeps
    ``C_out' * C_in' * k``."""
    layout = _layout(tuple(groups))
    cut = np.zeros((len(order), 2 * len(layout.names)), dtype=np.int64)  # positions each unit removes
    position = np.empty(len(order), dtype=np.int64)
    offsets = np.cumsum([0] + [len(u.means) for u in ranked])
    position[offsets[order[:, 0]] + order[:, 1]] = np.arange(len(order))  # (group, unit) -> rank
    for i, units in enumerate(ranked):
        if not len(units.means):
            continue
        rows = position[offsets[i] : offsets[i + 1]]
        for column, per_channel in layout.slices[units.group.id]:
            cut[rows, column] += np.add.reduceat(per_channel[units.order], units.cuts)[:-1]
    names = layout.names
    cost = np.array([1 if weight_cost is None else weight_cost[n] for n in names], dtype=np.int64)
    kept = layout.full - np.vstack([np.zeros((1, cut.shape[1]), np.int64), np.cumsum(cut, axis=0)])
    kept = kept.reshape(len(order) + 1, len(names), 2)
    return ((layout.full.reshape(-1, 2).prod(1) - kept.prod(2)) * layout.rest * cost).sum(1)


@dataclass(frozen=True)
class _Layout:
    """What :func:`_removed_after` needs of the groups alone (computed once per group list)."""

    names: list[str]  # the prunable weights the groups touch, sorted
    full: np.ndarray  # (1, 2 * len(names)): each weight's full size along dims 0 and 1
    rest: np.ndarray  # (len(names),): the product of its other dims
    slices: dict[str, list[tuple[int, np.ndarray]]]  # group id -> (column, positions per channel)


@functools.lru_cache(maxsize=16)
def _layout(groups: tuple[ChannelGroup, ...]) -> _Layout:
    shapes = {s.name: s.shape for g in groups for s in g.slices if s.prunable}
    names = sorted(shapes)
    column = {name: k for k, name in enumerate(names)}
    slices = {
        g.id: [
            (2 * column[s.name] + s.dim, np.bincount(s.channels.numpy(), minlength=g.n_channels))
            for s in g.slices
            if s.prunable
        ]
        for g in groups
    }
    full = np.array([[shapes[n][0], shapes[n][1]] for n in names], dtype=np.int64).reshape(1, -1)
    rest = np.array([math.prod(shapes[n][2:]) for n in names], dtype=np.int64)
    return _Layout(names, full, rest, slices)


def _check_scores(groups: list[ChannelGroup], scores: Mapping[str, Tensor]) -> None:
    ids = {g.id: g.n_channels for g in groups}
    unknown = sorted(set(scores) - set(ids))
    if unknown:
        raise ValueError(f"scores name unknown groups {unknown}; groups: {sorted(ids)}")
    for gid, score in scores.items():
        if score.shape != (ids[gid],) or not bool(torch.isfinite(score).all()):
            raise ValueError(
                f"scores[{gid!r}] must be finite with shape ({ids[gid]},), got shape {tuple(score.shape)}"
            )


def _slice_mask(s: ChannelSlice, drop: Tensor, like: Tensor) -> Tensor:
    """Ones shaped like ``like``, zero on the positions of ``s`` that belong to ``drop``."""
    mask = torch.ones_like(like, memory_format=torch.contiguous_format).detach()
    positions = s.positions[torch.isin(s.channels, drop)].to(like.device)
    return mask.index_fill_(s.dim, positions, 0.0)


_NOTHING = torch.zeros(0, dtype=torch.long)


def _dropped(keep: Mapping[str, Tensor], group: ChannelGroup) -> Tensor:
    """``(D,)`` long, the channels of ``group`` that ``keep`` drops (none if it has no entry)."""
    if group.id not in keep:
        return _NOTHING
    return torch.nonzero(~keep[group.id].cpu()).flatten()


def expand_channel_masks(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    keep: Mapping[str, Tensor],
    *,
    inputs_only: bool = False,
) -> Masks:
    """Unstructured 0/1 masks of every prunable weight for the channel keep-vectors ``keep``.

    Zeroes the output slices of dropped channels in their producers and the input slices in
    their consumers; groups missing from ``keep`` keep every channel. Masks already on ``model``
    are not included (multiply with :func:`~fairprune.masks.get_masks` to combine). Use with
    :func:`~fairprune.masks.apply_masks`, or :func:`apply_channel_masks` to mask biases and
    BatchNorm too.

    ``inputs_only`` zeroes only the consumers' input slices: the dropped channels are still
    computed but reach nothing downstream (the same outputs), so a gradient with respect to the
    masks still tells how much each dropped channel would matter — a channel *gate*.
    """
    groups = list(groups)
    _check_keep(groups, keep)
    params = prunable_parameters(model)
    masks: Masks = {name: torch.ones_like(p).detach() for name, p in params.items()}
    for g in groups:
        drop = _dropped(keep, g)
        for s in g.slices:
            if s.prunable and len(drop) and (s.is_input or not inputs_only):
                masks[s.name] *= _slice_mask(s, drop, params[s.name])
    return masks


def apply_channel_masks(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    keep: Mapping[str, Tensor],
    *,
    inputs_only: bool = False,
) -> Masks:
    """Mask ``model`` in place: prunable weights and the biases and BatchNorm affine parameters.

    Returns the masks of the prunable weights (as :func:`expand_channel_masks`). The other masks
    are :class:`~fairprune.masks.Mask` parametrizations too; :func:`~fairprune.masks.bake_masks`
    removes all of them. ``inputs_only``: gates (see :func:`expand_channel_masks`); the bias and
    BatchNorm masks are then all ones, registered all the same, so that the model's state has
    the same keys with gates and with full masks.
    """
    groups = list(groups)
    masks = expand_channel_masks(model, groups, keep, inputs_only=inputs_only)
    apply_masks(model, masks)
    extra: dict[str, Tensor] = {}
    for g in groups:
        drop = _NOTHING if inputs_only else _dropped(keep, g)  # gates leave biases and BN whole
        for s in g.slices:
            if not s.prunable:
                tensor = _original(model, s.name)
                extra[s.name] = extra.get(s.name, torch.ones_like(tensor).detach()) * _slice_mask(
                    s, drop, tensor
                )
    for name, mask in extra.items():
        _set_mask(model, name, mask)
    return masks


def _original(model: nn.Module, name: str) -> Tensor:
    """The parameter ``name`` itself, also where a parametrization is registered on it."""
    module_name, _, param = name.rpartition(".")
    module = model.get_submodule(module_name)
    if parametrize.is_parametrized(module, param):
        return cast(Tensor, cast(nn.ModuleDict, module.parametrizations)[param].original)
    return getattr(module, param)


def _set_mask(model: nn.Module, name: str, mask: Tensor) -> None:
    module_name, _, param = name.rpartition(".")
    module = model.get_submodule(module_name)
    if parametrize.is_parametrized(module, param):
        for p in cast(nn.ModuleList, cast(nn.ModuleDict, module.parametrizations)[param]):
            if isinstance(p, Mask):
                cast(Tensor, p.mask).copy_(mask)
                return
    parametrize.register_parametrization(module, param, Mask(mask))


def slim(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    keep: Mapping[str, Tensor],
    example_input: Features,
    *,
    sync_config: bool = True,
) -> nn.Module:
    """A smaller dense copy of ``model`` without the dropped channels (masks baked in first).

    In eval mode its outputs equal those of ``model`` masked by :func:`expand_channel_masks`
    (or :func:`apply_channel_masks`) with the same ``keep``. torch-pruning removes the channels
    of ``"channels"`` groups; attention heads and MLP neurons are removed here, with the
    attention modules' head counts (``num_heads``, ``all_head_size``, ...) set to match, and a
    Hugging Face model's config updated where it can describe the result
    (:func:`~fairprune.structured.sync_hf_config`; a warning where it cannot; ``sync_config=False``
    leaves the config alone). ``model`` is left unchanged.
    """
    groups = list(groups)
    _check_keep(groups, keep)
    generic = [g for g in groups if g.kind == "channels" and len(_dropped(keep, g))]
    if generic:
        twin, graph = traced_copy(model, example_input)
        for g in generic:
            root = twin.get_submodule(g.id)
            pruner = graph.get_pruner_of_module(root)
            graph.get_pruning_group(root, pruner.prune_out_channels, _dropped(keep, g).tolist()).prune()
    else:
        twin = bake_masks(copy.deepcopy(model))
    units = {u.name: u for u in find_units(twin)}
    for g in groups:
        if g.kind != "channels" and len(_dropped(keep, g)):
            slim_units(twin, units[g.id], keep[g.id])
    if sync_config:
        sync_hf_config(twin, strict=False)
    return twin
