"""Where a pruner's scores live: one per weight (unstructured) or one per channel (structured).

A pruner computes importance scores and hands them to a *space*, which turns them into masks at
the target sparsity:

- :class:`WeightSpace` (``structure = "unstructured"``): one score per weight, exact top-k,
  global or per layer.
- :class:`ChannelSpace` (``structure = "channel"``): one score per output channel of each
  dependency group (:func:`~fairprune.structured.channel_groups`), structured top-k to the
  nearest channel, masks on the channel's weights (producers and consumers), biases and
  BatchNorm. The model can then be slimmed (:meth:`ChannelSelection.slim`).

Sparsity is always counted in prunable weights (:func:`~fairprune.masks.prunable_parameters`),
so an unstructured and a structured model at "70%" hold the same number of weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fairprune.masks import (
    Masks,
    MaskSlots,
    apply_masks,
    check_sparsity,
    flat_alias,
    get_masks,
    mask_versions,
    prunable_parameters,
)
from fairprune.model_io import Features
from fairprune.prunable import tied_parameters
from fairprune.structured import (
    ChannelGroup,
    ChannelSlice,
    apply_channel_masks,
    channel_groups,
    channel_sums,
    check_channel_groups,
    check_channel_plan,
    check_slim,
    l1_channel_scores,
    normalize_per_group,
    removal_unit,
    slim,
    structured_topk,
    weight_costs,
)
from fairprune.topk import TopK, layer_floors

__all__ = [
    "Scores",
    "WeightSpace",
    "ChannelSpace",
    "ChannelSelection",
    "Space",
]

Scores = dict[str, Tensor]  # weight name -> scores shaped like it, or group id -> (n_channels,)


class WeightSpace:
    """Unstructured: one score per weight; exact top-k (``round(s * n)`` weights removed). Global
    top-k leaves every layer a weight, the last (the classifier) one per output row
    (:func:`~fairprune.topk.layer_floors`)."""

    structure = "unstructured"

    def __init__(self, scope: str = "global") -> None:
        self.scope = scope
        self._topk = TopK()  # warm-started: a learned mask re-thresholds every step
        self._floors: list[int] | None = None  # no layer removed whole (global top-k)

    def magnitude(self, model: nn.Module) -> Scores:
        """``|theta|`` of every prunable weight."""
        return {name: p.detach().abs().clone() for name, p in prunable_parameters(model).items()}

    def random(self, model: nn.Module, generator: torch.Generator, kind: str = "uniform") -> Scores:
        """Random scores: ``U(0, 1)`` (``kind="uniform"``) or ``|N(0, 1)|`` (``"normal"``)."""
        return {n: _random(p.shape, generator, kind) for n, p in prunable_parameters(model).items()}

    def pool(self, per_weight: Scores) -> Scores:
        """Per-weight importance values as scores of this space (here: unchanged)."""
        return per_weight

    def apply(
        self,
        model: nn.Module,
        scores: Scores,
        sparsity: float,
        *,
        gate: bool = False,
        slots: MaskSlots | None = None,
    ) -> None:
        """Mask ``model``, keeping the highest scores (``gate``: see :class:`ChannelSpace`).

        ``slots`` (the model's masks as flat vectors, for a learned mask's every step): one
        top-k over the scores in the slots' order, written into the masks already on ``model``.
        """
        if slots is None:
            apply_masks(model, self._topk.masks(scores, sparsity, scope=self.scope))
            return
        ordered = [scores[name] for name in slots.names]
        flat = flat_alias(ordered)  # scores that are slices of one buffer are read uncopied
        if flat is None or flat.dtype != torch.float32:
            flat = torch.cat([s.detach().reshape(-1).float() for s in ordered])
        if self._floors is None or len(self._floors) != len(slots.weights):
            self._floors = layer_floors([tuple(w.shape) for w in slots.weights])
        keep = self._topk.keep(flat, sparsity, scope=self.scope, segments=slots.segments, floors=self._floors)
        slots.write(keep)

    def mask_grads(self, per_weight: Scores) -> Scores:
        """Per-weight mask gradients as score gradients (here: unchanged)."""
        return per_weight

    def finalize(self, model: nn.Module) -> None:
        """Turn the masks a ``gate=True`` phase left into the final masks (here: nothing to do)."""

    def survivors_first(self, model: nn.Module, scores: Scores) -> Scores:
        """``scores`` with every weight pruned now ranked below every survivor."""
        masks = get_masks(model)
        return {n: s * masks[n] + (masks[n] - 1.0) for n, s in scores.items()}

    def check(self, model: nn.Module, sparsity: float) -> None:
        check_sparsity(get_masks(model), sparsity, scope=self.scope)

    def selection(self, model: nn.Module) -> ChannelSelection | None:
        return None


@dataclass(frozen=True)
class ChannelSelection:
    """Which channels a structured pruner kept: enough to slim the model and report on it."""

    groups: tuple[ChannelGroup, ...]
    keep: dict[str, Tensor]
    example_input: Features

    @property
    def channel_fraction(self) -> float:
        """Fraction of the prunable channels removed."""
        total = sum(g.n_channels for g in self.groups)
        return sum(int((~k).sum()) for k in self.keep.values()) / total

    def slim(self, model: nn.Module, *, check: bool = True) -> nn.Module:
        """A smaller dense copy of ``model`` without the removed channels (same outputs in eval).

        With ``check``, the outputs are compared with ``model``'s on the example input
        (:func:`~fairprune.structured.check_slim`: a one-line ``SlimMismatchError`` if they differ).
        """
        small = slim(model, self.groups, self.keep, self.example_input)
        if check:
            check_slim(model, small, self.example_input)
        return small


class ChannelSpace:
    """Structured: one score per output channel of each dependency group.

    Top-k is global over channels (:func:`~fairprune.structured.structured_topk`) and lands on
    the channel nearest to the target sparsity (with ``at_least``: the first at or above it);
    kept channels per group are a multiple of ``round_to`` (8 suits CPU and GPU kernels).
    ``budget="flops"`` removes channels until the target fraction of the prunable layers' FLOPs
    is gone, each weight counted with the output positions of its layer (the early, wide-image
    layers cost most); ``"params"`` counts weights. Transformers: attention heads and MLP
    neurons are the channels (:mod:`fairprune.structured`); ``uniform`` removes the same number
    from every layer (a Hugging Face config can then describe the slim model). ``example`` is an
    input batch as the model takes it (a tensor, or a dict / tuple of tensors; the pruners give
    one training sample, :func:`example_input`). With ``check``, the first
    :meth:`apply` first slims a copy at its sparsity with random channels and refuses (one line
    naming the group) if it differs from the masked copy or the target is out of reach.
    """

    structure = "channel"

    def __init__(
        self,
        model: nn.Module,
        example: Features,
        round_to: int = 1,
        at_least: bool = False,
        budget: str = "params",
        *,
        uniform: bool = False,
        check: bool = True,
        check_batch: Features | None = None,
    ) -> None:
        # the channel groups are traced on the example; the checks of a slimmed model compare
        # outputs on check_batch (a few samples: one may hide a difference), by default the example
        _refuse_tied(model)
        self.example = example
        self.check_batch = example if check_batch is None else check_batch
        self.groups = channel_groups(model, self.example)
        if not self.groups:
            raise ValueError(
                f"{type(model).__name__} has no channel that can be pruned on its own; expected "
                "hidden Linear/Conv widths (use structure='unstructured' for this model)"
            )
        check_channel_groups(model, self.groups)
        self.uniform, self._check_pending = uniform, check
        self.cost = weight_costs(model, self.example, budget)
        params = prunable_parameters(model)
        self.n_prunable = sum(p.numel() * self.cost[n] for n, p in params.items())  # the budget's total
        self.round_to, self.at_least, self.budget = round_to, at_least, budget
        # what apply() last wrote (keep-vectors, gate, mask fingerprint): unchanged -> no rewrite
        self._masked = sorted({s.name for g in self.groups for s in g.slices})
        self._written: tuple[dict[str, Tensor], bool, tuple[tuple[int, int, int], ...]] | None = None
        # gates: each weight's input slices (and their groups), and the weights each group gates
        self._gated: dict[str, list[tuple[ChannelSlice, str]]] = {}
        for g in self.groups:
            for sl in g.slices:
                if sl.prunable and sl.is_input:
                    self._gated.setdefault(sl.name, []).append((sl, g.id))
        self._gates_of = {
            g.id: sorted({sl.name for sl in g.slices if sl.prunable and sl.is_input}) for g in self.groups
        }

    def magnitude(self, model: nn.Module) -> Scores:
        """Structured magnitude: L1 norm of each channel's weights, normalised per group."""
        return l1_channel_scores(model, self.groups)

    def random(self, model: nn.Module, generator: torch.Generator, kind: str = "uniform") -> Scores:
        return {g.id: _random((g.n_channels,), generator, kind) for g in self.groups}

    def pool(self, per_weight: Scores) -> Scores:
        """Per-weight importance values summed over each channel's weights, each group's sums
        divided by their mean (raw sums of different groups are not comparable)."""
        return normalize_per_group(channel_sums(self.groups, per_weight))

    def apply(
        self,
        model: nn.Module,
        scores: Scores,
        sparsity: float,
        *,
        gate: bool = False,
        slots: MaskSlots | None = None,
    ) -> None:
        """Mask ``model``, keeping the highest-scoring channels. Nothing is written when the kept
        channels did not change, and with ``slots`` (the model's masks, see
        :class:`~fairprune.masks.MaskSlots`) a changed gate rewrites only its consumers' masks.

        ``gate=True`` masks only the consumers' input slices (a channel gate, same outputs): the
        dropped channels stay computed, so ``d loss / d mask`` on those slices is not zero and a
        learned score of a dropped channel can rise again. Full masks (producers, biases,
        BatchNorm) make a dropped channel's own gradient vanish. :meth:`finalize` turns gates into
        full masks.
        """
        if self._check_pending:  # before the first mask: a trial slim at the target (one line if not)
            check_channel_plan(model, self.groups, self.check_batch, lambda s: self._topk(s, sparsity))
            self._check_pending = False
        keep = self._topk(scores, sparsity)
        if self._written is not None:  # a learned mask: most steps keep the same channels
            old_keep, old_gate, versions = self._written
            if old_gate == gate and mask_versions(model, self._masked) == versions:
                changed = [g for g, k in keep.items() if not torch.equal(old_keep[g], k)]
                if not changed:
                    return
                if gate and slots is not None:  # only the gates of the changed groups' consumers
                    self._write_gates(slots, keep, changed)
                    self._written = (keep, gate, mask_versions(model, self._masked))
                    return
        apply_channel_masks(model, self.groups, keep, inputs_only=gate)
        self._written = (keep, gate, mask_versions(model, self._masked))

    def _topk(self, scores: Scores, sparsity: float) -> dict[str, Tensor]:
        return structured_topk(
            scores,
            self.groups,
            sparsity,
            n_prunable=self.n_prunable,
            round_to=self.round_to,
            at_least=self.at_least,
            weight_cost=self.cost,
            uniform=self.uniform,
        )

    def _write_gates(self, slots: MaskSlots, keep: dict[str, Tensor], changed: list[str]) -> None:
        """Rewrite, in place, the masks of the weights whose input channels belong to a group
        in ``changed``: the masks :func:`apply_channel_masks` writes with ``inputs_only`` (ones,
        zero on the input slices of every dropped channel), each a column vector broadcast."""
        modules = dict(zip(slots.names, slots.modules, strict=True))
        for name in sorted({n for g in changed for n in self._gates_of[g]}):
            mask = modules[name].mask
            dim = self._gated[name][0][0].dim  # the input dim: 1 (Linear, Conv) or 0 (HF Conv1D)
            column = torch.ones(mask.shape[dim], dtype=mask.dtype)
            for sl, gid in self._gated[name]:
                column[sl.positions] *= keep[gid][sl.channels].to(mask.dtype)
            view = tuple(-1 if d == dim else 1 for d in range(mask.ndim))
            mask.copy_(column.to(mask.device).view(view).expand_as(mask))

    def mask_grads(self, per_weight: Scores) -> Scores:
        """``d loss / d gate`` of each channel from the per-weight mask gradients: their sum over
        the channel's input slices in its consumers."""
        sums = channel_sums(self.groups, per_weight, inputs_only=True)
        return {k: v.float() for k, v in sums.items()}

    def finalize(self, model: nn.Module) -> None:
        apply_channel_masks(model, self.groups, self._keep(get_masks(model)))

    def survivors_first(self, model: nn.Module, scores: Scores) -> Scores:
        keep = self._keep(get_masks(model))
        low = min(float(s.min()) for s in scores.values()) - 1.0
        return {
            gid: torch.where(keep[gid], s.float(), torch.full_like(s.float(), low))
            for gid, s in scores.items()
        }

    def check(self, model: nn.Module, sparsity: float) -> None:
        """Raise unless the achieved sparsity (of the budget: weights or FLOPs) is within half a
        removal unit of ``sparsity`` (with ``at_least``: at or above it, by less than one unit)."""
        masks = get_masks(model)
        zeros = sum(int((m == 0).sum()) * self.cost[n] for n, m in masks.items())
        unit = self.round_to * removal_unit(self.groups, self.cost, uniform=self.uniform)
        excess = zeros - sparsity * self.n_prunable
        ok = -1e-6 <= excess <= unit if self.at_least else abs(excess) <= unit / 2 + 1e-6
        if not ok:
            how = "at least, by less than one" if self.at_least else "within half a"
            raise ValueError(
                f"channel masks prune {zeros} of {self.n_prunable} {self._unit_name}; expected "
                f"{sparsity * self.n_prunable:.0f} ({how} channel of {unit} {self._unit_name})"
            )

    @property
    def _unit_name(self) -> str:
        return "weights" if self.budget == "params" else "weight-positions (FLOPs / 2)"

    def selection(self, model: nn.Module) -> ChannelSelection:
        """The channels kept by the masks now on ``model`` (after any checkpoint restore)."""
        return ChannelSelection(tuple(self.groups), self._keep(get_masks(model)), self.check_batch)

    def _keep(self, masks: Masks) -> dict[str, Tensor]:
        """A channel is kept iff some weight of its consumers' input slices is unmasked (true
        of full masks and of gates)."""
        alive = channel_sums(self.groups, {n: (m != 0).float() for n, m in masks.items()}, inputs_only=True)
        return {gid: a > 0 for gid, a in alive.items()}


Space = WeightSpace | ChannelSpace


def _refuse_tied(model: nn.Module) -> None:
    """Channel pruning of a weight that several modules share would remove channels of all of
    them at once, which the dependency graph does not model: refuse it before any work."""
    prunable = set(prunable_parameters(model))
    tied = [names for first, names in tied_parameters(model).items() if first in prunable]
    if tied:
        raise ValueError(
            f"structure='channel' cannot prune tied weights {tied[0]} (one tensor shared by "
            "several modules); expected structure='unstructured' for this model"
        )


def _random(shape: torch.Size | tuple[int, ...], generator: torch.Generator, kind: str) -> Tensor:
    if kind == "uniform":
        return torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator).abs()
