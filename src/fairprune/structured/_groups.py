"""Channel groups: output channels that must be removed together, found by torch-pruning."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

from fairprune.masks import bake_masks, prunable_parameters
from fairprune.model_io import Features, call_model, output_logits, rows
from fairprune.structured._attention import Units, find_units
from fairprune.structured._trace import GRAPH_TIME_LIMIT, trace, walk_groups

log = logging.getLogger(__name__)

_OP = tp.ops.OPTYPE
_PARAMETER_FREE = {_OP.ELEMENTWISE, _OP.RESHAPE, _OP.CONCAT, _OP.SPLIT, _OP.SLICE, _OP.UNBIND, _OP.EXPAND}


@dataclass(frozen=True, eq=False)
class ChannelSlice:
    """The positions along one dim of one parameter that belong to a group's channels.

    Attributes:
        name: Full parameter name (``"layer1.0.conv1.weight"``, ``"bn1.bias"``).
        dim: The dim that the channels index (0: output channels; 1: input channels).
        positions: ``(P,)`` long, positions along ``dim``.
        channels: ``(P,)`` long, the group channel of each position (several positions share a
            channel where a flatten spreads one channel over many features).
        shape: The parameter's full shape.
        prunable: Whether the parameter is one of :func:`~fairprune.masks.prunable_parameters`.
        input_dim: The dim of the parameter's input features (1 for Linear/Conv weights, 0 for
            Hugging Face ``Conv1D`` weights, stored ``(in, out)``).
    """

    name: str
    dim: int
    positions: Tensor
    channels: Tensor
    shape: tuple[int, ...]
    prunable: bool
    input_dim: int = 1

    @property
    def is_input(self) -> bool:
        """Whether the slice is a consumer's input slice (else a producer's output slice)."""
        return self.dim == self.input_dim and len(self.shape) > 1


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Channels removed together: ``id`` is the root module's name, channels ``0 .. n_channels-1``.

    ``kind``: ``"channels"`` (found by torch-pruning, slimmed by it), ``"heads"`` (an attention
    module's heads, or key/value groups with grouped-query attention; ``id`` names the attention
    module) or ``"neurons"`` (the hidden neurons of an MLP that torch-pruning cannot trace).
    """

    id: str
    n_channels: int
    slices: tuple[ChannelSlice, ...]
    kind: str = "channels"


def traced_copy(
    model: nn.Module, example_input: Features, limit: float = GRAPH_TIME_LIMIT
) -> tuple[nn.Module, tp.DependencyGraph]:
    """A baked deep copy of ``model`` and its dependency graph (traced in eval mode)."""
    twin = bake_masks(copy.deepcopy(model))
    training = model.training
    twin.eval()  # tracing runs a forward pass: keep BatchNorm statistics untouched
    try:
        graph = trace(twin, example_input, limit)
    finally:
        twin.train(training)
    return twin, graph


def _param_dims(node: tp.dependency.Node, is_out: bool) -> list[tuple[str, int]] | None:
    """``(parameter, dim)`` pairs that a channel slice of ``node`` touches; ``None`` if unsafe."""
    module = node.module
    if node.type in _PARAMETER_FREE:
        return []
    depthwise = node.type == _OP.DEPTHWISE_CONV and module.in_channels == module.out_channels == module.groups
    if depthwise or (node.type == _OP.BN and module.affine):
        return [("weight", 0)] + ([("bias", 0)] if module.bias is not None else [])
    if node.type == _OP.BN:
        return []
    if node.type == _OP.LINEAR or (node.type == _OP.CONV and module.groups == 1 and not module.transposed):
        if not is_out:
            return [("weight", 1)]
        return [("weight", 0)] + ([("bias", 0)] if module.bias is not None else [])
    return None


def _group_slices(
    group: tp.dependency.Group, graph: tp.DependencyGraph, names: dict[nn.Module, str], twin: nn.Module
) -> tuple[ChannelSlice, ...] | None:
    merged: dict[tuple[str, int], dict[int, int]] = {}  # (parameter, dim) -> {position: channel}
    for item in group.items:
        node, is_out = item.dep.target, graph.is_out_channel_pruning_fn(item.dep.handler)
        if is_out and not node.outputs:
            return None  # reaches the model output: the classes
        pairs = _param_dims(node, is_out)
        if pairs is None:
            return None
        for param, dim in pairs:
            key = (f"{names[node.module]}.{param}".lstrip("."), dim)
            merged.setdefault(key, {}).update(zip(map(int, item.idxs), map(int, item.root_idxs), strict=True))
    params, prunable = dict(twin.named_parameters()), prunable_parameters(twin)
    return tuple(
        ChannelSlice(
            name,
            dim,
            torch.tensor(list(pos_to_channel), dtype=torch.long),
            torch.tensor(list(pos_to_channel.values()), dtype=torch.long),
            tuple(params[name].shape),
            name in prunable,
        )
        for (name, dim), pos_to_channel in merged.items()
    )


def _unit_group(units: Units, model: nn.Module, prunable: Mapping[str, Tensor]) -> ChannelGroup:
    """The channel group of an attention module's heads or an MLP's neurons (see ``_attention``)."""
    params = dict(model.named_parameters())
    slices = []
    for piece in units.pieces:
        shape = tuple(params[piece.name].shape)
        channels = piece.units(shape[piece.dim])
        positions = torch.arange(shape[piece.dim])
        slices.append(
            ChannelSlice(
                piece.name, piece.dim, positions, channels, shape, piece.name in prunable, piece.input_dim
            )
        )
    return ChannelGroup(units.name, units.n_units, tuple(slices), units.kind)


def channel_groups(
    model: nn.Module,
    example_input: Features,
    *,
    ignored: Iterable[str] = (),
    time_limit: float = GRAPH_TIME_LIMIT,
) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (see the module docstring for which are offered).

    Attention heads and Conv1D MLP neurons are our own groups (``kind`` ``"heads"`` /
    ``"neurons"``, see :mod:`fairprune.structured._attention`); torch-pruning finds the rest,
    with no walk starting inside an attention module. Where torch-pruning cannot trace a model
    that has such units (GPT-2), only those units are offered.

    Args:
        model: Any classifier; masks already on it are baked into a traced copy, ``model`` is
            left unchanged.
        example_input: A batch the model accepts: a tensor ``(1, C, H, W)``, a dict (``input_ids``,
            ...) or a tuple of tensors.
        ignored: Names of modules whose output channels must not be pruned (an attention module or
            one of its projections: its heads).
        time_limit: Seconds allowed for torch-pruning's tracing, and again for its grouping.

    Raises:
        ValueError: One line naming the module, for an attention layout whose heads cannot be
            removed exactly, a model torch-pruning cannot trace, or a grouping over the limit.
    """
    twin = bake_masks(copy.deepcopy(model))
    names = {module: name for name, module in twin.named_modules()}
    unknown = sorted(set(ignored) - set(names.values()))
    if unknown:
        raise ValueError(f"ignored names unknown modules {unknown}")
    skip = set(ignored)
    prunable = prunable_parameters(twin)
    units = [u for u in find_units(twin) if u.name not in skip and not skip & set(u.roots)]
    groups = [_unit_group(u, twin, prunable) for u in units]
    seen = {(s.name, s.dim) for g in groups for s in g.slices}
    try:
        twin, graph = traced_copy(twin, example_input, time_limit)
    except ValueError as error:
        if not groups:
            raise
        log.warning(
            "%s; offering only the attention heads and MLP neurons of %s", error, type(model).__name__
        )
        return groups
    names = {module: name for name, module in twin.named_modules()}
    roots = skip | {r for u in find_units(twin) for r in u.roots}
    walked = walk_groups(graph, names, [twin.get_submodule(name) for name in roots], time_limit)
    for group in walked:
        slices = _group_slices(group, graph, names, twin)
        if not slices or any((s.name, s.dim) in seen for s in slices):
            continue
        seen.update((s.name, s.dim) for s in slices)
        groups.append(ChannelGroup(names[group[0].dep.target.module], len(group[0].idxs), slices))
    return groups


def _channel_counts(group: ChannelGroup, s: ChannelSlice) -> Tensor:
    """``(n_channels,)`` prunable weights in ``s`` per channel of ``group`` (at full width)."""
    per_position = torch.Size(s.shape).numel() // s.shape[s.dim]
    return torch.bincount(s.channels, minlength=group.n_channels) * per_position


def group_param_counts(
    groups: Iterable[ChannelGroup], weight_cost: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Prunable weights removed per channel of each group, at full width.

    Counts the output slice of every producer and the input slice of every consumer (BatchNorm
    parameters and biases are not prunable weights). Where two groups meet in one weight tensor
    (one's output channels, the other's input channels) removing both double-counts their
    intersection; :func:`structured_topk` accounts for that exactly. Channels of one group have
    equal counts in practice; the largest is returned. With ``weight_cost`` (see
    :func:`weight_costs`) each weight counts its cost instead of 1.
    """
    out: dict[str, int] = {}
    for g in groups:
        total = torch.zeros(g.n_channels, dtype=torch.long)
        for s in g.slices:
            if s.prunable:
                total += _channel_counts(g, s) * (1 if weight_cost is None else weight_cost[s.name])
        out[g.id] = int(total.max())
    return out


BUDGETS = ("params", "flops")


def weight_costs(model: nn.Module, example_input: Features, budget: str) -> dict[str, int]:
    """What one weight of each prunable tensor costs under ``budget``, per sample.

    ``"params"``: 1. ``"flops"``: the multiply-accumulates one weight takes part in, i.e. the
    output positions of its layer (``H_out * W_out`` for a conv, the tokens for a Linear, an
    attention's projections or a recurrent layer; a head's ``QK^T`` and ``AV`` products are
    charged to its q/k/v weights, :func:`_add_attention_products`),
    measured with forward hooks on one pass of ``example_input`` (batch 1) in eval mode. A
    tensor's FLOPs are then ``2 * numel * cost`` (:mod:`torch.utils.flop_counter`'s count).
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; expected one of {BUDGETS}")
    params = prunable_parameters(model)
    names = list(params)
    if budget == "params":
        return dict.fromkeys(names, 1)
    positions: dict[str, int] = {}

    def record(name: str) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            # MultiheadAttention and RNNs return a tuple: its first tensor is (B, T, features)
            out = output_logits(output)
            channels = out.shape[1] if isinstance(module, nn.modules.conv._ConvNd) else out.shape[-1]
            positions[name] = out[:1].numel() // channels

        return hook

    modules = {name: model.get_submodule(name.rpartition(".")[0]) for name in names}
    handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, rows(example_input, 0, 1))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    for name in set(names) - set(positions):  # MultiheadAttention calls out_proj's weight itself
        owner = name.rpartition(".")[0].removesuffix(".out_proj")
        packed = f"{owner}.in_proj_weight"
        if isinstance(model.get_submodule(owner), nn.MultiheadAttention) and packed in positions:
            positions[name] = positions[packed]
    missing = sorted(set(names) - set(positions))
    if missing:
        raise ValueError(f"budget='flops': layers {missing} did not run on the example input")
    for units in find_units(model):
        if units.kind == "heads":
            _add_attention_products(units, positions, params)
    return positions


def _add_attention_products(units: Units, positions: dict[str, int], params: dict[str, Tensor]) -> None:
    """Charge a head unit's ``QK^T`` and ``AV`` products (``2 T^2`` multiply-adds per query row,
    ``T`` tokens), which hold no weight, to the weights of its q/k/v projections: each of them
    costs ``T + 2 T^2 q / w`` (``q`` query rows and ``w`` projection weights per unit, rounded to
    a whole multiply-add), so that removing a head removes its products from the budget too."""
    weights = [p for p in units.pieces if p.name in params]
    projections = [p for p in weights if p.dim != p.input_dim]
    output = [p for p in weights if p.dim == p.input_dim]
    if not projections or len(output) != 1:
        return
    tokens = positions[projections[0].name]
    per_unit = sum(params[p.name].numel() for p in projections) / units.n_units
    extra = round(2 * tokens * tokens * output[0].width / per_unit)
    for p in projections:
        positions[p.name] = tokens + extra


def n_prunable(model: nn.Module) -> int:
    """The number of prunable weights of ``model`` (the denominator of ``sparsity``)."""
    return sum(p.numel() for p in prunable_parameters(model).values())
