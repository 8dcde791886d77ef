"""Channel importance scores: structured magnitude (L1) and FPGM.

Raw scores of different groups are not comparable: a channel's L1 sum grows with the number of
weights it holds, and at initialisation ``|w|`` scales with ``1 / sqrt(fan)``. Ranked globally,
raw scores empty whole groups (one channel left) while wide ones stay intact. So by default each
group's scores are divided by their mean (torch-pruning's ``normalizer="mean"``): a global ranking
then prunes the channels that are weakest *relative to their group*. ``normalize=False`` gives
the raw values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from fairprune.structured._groups import ChannelGroup


def _effective_weight(model: nn.Module, name: str) -> Tensor:
    module_name, _, param = name.rpartition(".")
    return getattr(model.get_submodule(module_name), param).detach()  # mask * weight if masked


def normalize_per_group(scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Each group's scores divided by their mean (see the module docstring)."""
    return {gid: _finish(score, True) for gid, score in scores.items()}


def _finish(score: Tensor, normalize: bool) -> Tensor:
    mean = score.mean()
    return (score / mean if normalize and mean > 0 else score).float()


def channel_sums(
    groups: Iterable[ChannelGroup], tensors: Mapping[str, Tensor], *, inputs_only: bool = False
) -> dict[str, Tensor]:
    """Per channel of each group, the sum of ``tensors`` over the channel's slices (only the
    consumers' input slices with ``inputs_only``).

    ``tensors`` maps prunable weight names to tensors shaped like them (``|w|``, a gradient
    term, ...); a channel's value sums its output slices in the producers and its input slices
    in the consumers. This is the chain rule of a channel mask that multiplies all of those
    weights: ``d L / d m_c = sum over the channel's weights of d L / d m_w``.

    Returns:
        ``(n_channels,)`` float64 sums per group id (on the CPU).
    """
    out: dict[str, Tensor] = {}
    for g in groups:
        total = torch.zeros(g.n_channels, dtype=torch.float64)
        for s in g.slices:
            if s.prunable and s.name in tensors and (s.is_input or not inputs_only):
                t = tensors[s.name].detach().double().movedim(s.dim, 0)
                per_position = t.reshape(t.shape[0], -1).sum(1).cpu()  # (size along dim,)
                total.index_add_(0, s.channels, per_position[s.positions])
        out[g.id] = total
    return out


def l1_channel_scores(
    model: nn.Module, groups: Iterable[ChannelGroup], *, normalize: bool = True
) -> dict[str, Tensor]:
    """Structured magnitude: per channel, ``sum |w|`` over its slices of every prunable weight.

    The sum runs over the group's producers (output slices) and consumers (input slices), on the
    effective (masked) weights.

    Args:
        model: The model the groups were found on.
        groups: From :func:`~fairprune.structured.channel_groups`.
        normalize: Divide each group's scores by their mean (see the module docstring).

    Returns:
        ``(n_channels,)`` float scores per group id; larger = more important.
    """
    groups = list(groups)
    names = {s.name for g in groups for s in g.slices if s.prunable}
    sums = channel_sums(groups, {name: _effective_weight(model, name).abs() for name in names})
    return {gid: _finish(score, normalize) for gid, score in sums.items()}


def fpgm_channel_scores(
    model: nn.Module, groups: Iterable[ChannelGroup], *, normalize: bool = True
) -> dict[str, Tensor]:
    """FPGM (He et al., CVPR 2019): a filter's distance to the geometric median of its layer.

    As in the paper, the distance to the geometric median is approximated by the sum of Euclidean
    distances to all other filters of the layer, ``score_c = sum_j ||F_c - F_j||_2``; filters near
    the median are redundant (small score, pruned first). A group's score sums this over its
    producing layers (the output slices of its prunable weights).

    Args:
        model: The model the groups were found on.
        groups: From :func:`~fairprune.structured.channel_groups`.
        normalize: Divide each group's scores by their mean (see the module docstring).

    Returns:
        ``(n_channels,)`` float scores per group id; larger = more important.
    """
    out: dict[str, Tensor] = {}
    for g in groups:
        score = torch.zeros(g.n_channels, dtype=torch.float64)
        for s in g.slices:
            if s.prunable and not s.is_input:
                w = _effective_weight(model, s.name).double().movedim(s.dim, 0)
                filters = w.reshape(w.shape[0], -1)[s.positions.to(w.device)]  # (P, fan_in)
                score.index_add_(0, s.channels, torch.cdist(filters, filters).sum(1).cpu())
        out[g.id] = _finish(score, normalize)
    return out
