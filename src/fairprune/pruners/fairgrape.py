"""FairGRAPE: prune so that every group keeps its share of the network's importance.

Lin, Kim & Joo, "FairGRAPE: Fairness-aware GRAdient Pruning mEthod for face attribute
classification", ECCV 2022. Each group has its own first-order Taylor importance of every weight;
a greedy selection keeps, for every group, the fraction of the total importance that the group
held before the round, so a minority whose loss rests on a few weights of small magnitude keeps
them. The fairness objective is not used (no tau, no multiplier): the groups enter only through
their importances, and fine-tuning is plain cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fairprune.masks import get_masks, prunable_parameters
from fairprune.methods_spec import defaults
from fairprune.model_io import forward_logits
from fairprune.pruners.base import Outcome, PrunerBase, prune_and_finetune
from fairprune.pruners.importance import SNIP_BATCHES, scoring_batches
from fairprune.pruners.space import ChannelSpace, Scores, Space
from fairprune.structured import channel_sums
from fairprune.task import Task

__all__ = ["FairGrape", "group_taylor_scores", "share_keeping_order"]


def group_taylor_scores(model: nn.Module, task: Task, n_batches: int = SNIP_BATCHES) -> list[Scores]:
    """Per group ``g``: ``I_g = |theta * sum_b dL_g,b/dtheta|`` of every prunable weight.

    ``L_g,b`` is the mean cross-entropy of group ``g``'s samples in training batch ``b`` (the
    stratified batches of :func:`~fairprune.pruners.importance.scoring_batches`, one iteration each);
    a group absent from a batch adds nothing. Masked weights get 0 (their gradient is 0).

    Returns:
        One dict per group id, weight name -> importances shaped like the weight.
    """
    params = prunable_parameters(model)
    names = list(params)
    n_groups = task.splits.n_groups
    batches = scoring_batches(model, task, n_batches)
    grads = [{n: torch.zeros_like(p) for n, p in params.items()} for _ in range(n_groups)]
    for x, y, groups in batches:
        per_sample = nn.functional.cross_entropy(forward_logits(model, x), y, reduction="none")  # (B,)
        present = [g for g in range(n_groups) if bool((groups == g).any())]
        for i, g in enumerate(present):
            loss = per_sample[groups == g].mean()
            retain = i < len(present) - 1
            dg = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=retain, allow_unused=True)
            for n, d in zip(names, dg, strict=True):
                if d is not None:
                    grads[g][n] += d
    return [{n: (params[n].detach() * grads[g][n]).abs() for n in names} for g in range(n_groups)]


def share_keeping_order(importance: Tensor, chunk: int = 1) -> Tensor:
    """The order in which FairGRAPE's greedy selection keeps units (weights or channels).

    Targets: ``t_g = I_g(A) / sum_h I_h(A)``, each group's share of the importance of all units
    ``A`` (all groups equal if every importance is 0). Starting from ``S`` empty, repeat until
    ``S = A``: the group with the largest deficit ``t_g - I_g(S) / sum_h I_h(S)`` (share 0 while
    ``S`` holds no importance; ties: lowest group id) adds its ``chunk`` most important units not
    in ``S`` (ties: lowest index). Keeping the first ``k`` units keeps every group's share of the
    importance close to ``t_g`` — each group loses about the same fraction of its importance.

    Args:
        importance: ``(n_groups, n_units)`` non-negative importances.
        chunk: Units added per pick (1: the paper's one at a time).

    Returns:
        ``(n_units,)`` unit indices, the first kept first.
    """
    if importance.dim() != 2 or chunk < 1:
        raise ValueError(
            f"expected (n_groups, n_units) importances and chunk >= 1, got shape "
            f"{tuple(importance.shape)} and chunk {chunk}"
        )
    imp = importance.detach().double().cpu()
    n_groups, n = imp.shape
    total = imp.sum(1)  # (G,)
    target = total / total.sum() if total.sum() > 0 else torch.full((n_groups,), 1.0 / n_groups)
    orders = [torch.argsort(imp[g], descending=True, stable=True) for g in range(n_groups)]
    pointers = [0] * n_groups
    selected = torch.zeros(n, dtype=torch.bool)
    kept = torch.zeros(n_groups, dtype=torch.float64)  # I_g(S)
    out: list[Tensor] = []
    count = 0
    while count < n:
        share = kept / kept.sum() if kept.sum() > 0 else torch.zeros(n_groups, dtype=torch.float64)
        deficit = (target - share).tolist()
        g = max(range(n_groups), key=deficit.__getitem__)  # the first of equal deficits
        take, pointers[g] = _next_unselected(orders[g], pointers[g], selected, min(chunk, n - count))
        selected[take] = True
        kept += imp[:, take].sum(1)
        out.append(take)
        count += len(take)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _next_unselected(order: Tensor, start: int, selected: Tensor, k: int) -> tuple[Tensor, int]:
    """The first ``k`` entries of ``order[start:]`` not ``selected``, and where to look next."""
    picked = []
    while k > 0 and start < len(order):
        window = order[start : start + max(k, 256)]
        fresh = torch.nonzero(~selected[window]).flatten()[:k]  # positions in window
        picked.append(window[fresh])
        k -= len(fresh)
        start += int(fresh[-1]) + 1 if k == 0 else len(window)
    return torch.cat(picked), start


@dataclass(frozen=True)
class FairGrape(PrunerBase):
    """FairGRAPE: per-group Taylor importance, share-keeping greedy selection, fine-tuning.

    Sparsity rises over ``rounds`` to the target, removing the same fraction of the survivors
    each round (round ``r`` of ``R``: ``1 - (1 - sparsity) ** (r / R)``, like the official code's
    ``keep_per_iter``). In each round the survivors are ranked by :func:`share_keeping_order`
    on their per-group importances and the space keeps the first ones: exactly
    ``round(s * n)`` weights removed (per layer with ``scope="layer"``, the paper's setting), or
    channels to the nearest channel (a channel's importance for a group is the sum over its
    weights, divided by the mean over its dependency group of the all-groups sum, so layers
    compare and every group's share within a layer stays). Then ``finetune_steps`` of plain
    fine-tuning.

    Attributes:
        rounds: Pruning rounds up to the target sparsity.
        n_batches: Training batches the importances are summed over (one iteration each).
        recompute: Recompute the importances on the masked model before every round after the
            first (``n_batches`` iterations each); otherwise the dense model's are used.
        greedy_picks: Most greedy picks per round: units are added in chunks of
            ``ceil(survivors / greedy_picks)`` (one at a time, the paper's rule, up to this size).
        finetune_steps: Fine-tuning iterations after the last round.
    """

    key = "fairgrape"
    rounds: int = defaults("fairgrape")["rounds"]
    n_batches: int = defaults("fairgrape")["n_batches"]
    recompute: bool = defaults("fairgrape")["recompute"]
    greedy_picks: int = defaults("fairgrape")["greedy_picks"]
    finetune_steps: int = defaults("fairgrape")["finetune_steps"]

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        levels = [1.0 - (1.0 - sparsity) ** (r / self.rounds) for r in range(1, self.rounds)] + [sparsity]
        scoring = 0
        importance: list[Scores] = []
        for r, level in enumerate(levels):
            if r == 0 or self.recompute:
                importance = group_taylor_scores(model, task, self.n_batches)
                scoring += self.n_batches
            scores = self._scores(space, model, importance)
            if r < len(levels) - 1:
                space.apply(model, scores, level)
        tail = prune_and_finetune(
            model,
            space,
            scores,
            sparsity,
            task,
            finetune_steps=self.finetune_steps,
            fair=False,
            desc="fairgrape",
        )
        return Outcome(train_iterations=scoring).add(tail)  # the importance passes come first

    def _scores(self, space: Space, model: nn.Module, importance: list[Scores]) -> Scores:
        """Scores of the space's units: the survivors by greedy order (first kept highest, from
        their count down to 1), 0 for the units already removed."""
        units = _unit_importance(space, importance)
        if isinstance(space, ChannelSpace):
            alive = space.selection(model).keep
        else:
            alive = {n: m != 0 for n, m in get_masks(model).items()}
        keys = list(units[0])
        pools = [keys] if self.scope == "global" else [[k] for k in keys]
        scores: Scores = {}
        for pool in pools:
            live = torch.cat([alive[k].reshape(-1).cpu() for k in pool]).nonzero().flatten()  # (A,)
            imp = torch.stack([torch.cat([u[k].reshape(-1).cpu() for k in pool]) for u in units])  # (G, N)
            order = share_keeping_order(imp[:, live], math.ceil(len(live) / self.greedy_picks))
            flat = torch.zeros(imp.shape[1])
            flat[live[order]] = torch.arange(len(live), 0, -1, dtype=flat.dtype)
            for k, part in zip(pool, flat.split([units[0][k].numel() for k in pool]), strict=True):
                scores[k] = part.reshape(units[0][k].shape)
        return scores


def _unit_importance(space: Space, importance: list[Scores]) -> list[Scores]:
    """Per-group importances of the space's units: per weight, or summed per channel and
    scaled by one factor per dependency group (the mean of the all-groups channel sums)."""
    if not isinstance(space, ChannelSpace):
        return importance
    sums = [channel_sums(space.groups, imp) for imp in importance]  # per group: gid -> (n_channels,)
    out: list[Scores] = [{} for _ in sums]
    for gid in sums[0]:
        scale = float(torch.stack([s[gid] for s in sums]).sum(0).mean())
        for o, s in zip(out, sums, strict=True):
            o[gid] = (s[gid] / scale if scale > 0 else s[gid]).float()
    return out
