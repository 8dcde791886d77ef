"""Structured (channel) masks: dependency groups, channel top-k, expansion to masks, slimming.

A *channel group* is a set of output channels that must be removed together — a conv's filters,
the BatchNorm that follows, the residual add that ties several convs to one width, a depthwise
conv — together with the input slices of every layer that consumes them. torch-pruning's
``DependencyGraph`` finds the groups; a structured method gives one score per channel of a group
(:func:`l1_channel_scores`, :func:`fpgm_channel_scores`, or learned ones), and
:func:`structured_topk` keeps the best channels at a target sparsity of the prunable weights.

Typical use::

    groups = channel_groups(model, x[:1])
    keep = structured_topk(l1_channel_scores(model, groups), groups, 0.7, n_prunable=n_prunable(model))
    apply_masks(model, expand_channel_masks(model, groups, keep))   # train / evaluate masked
    small = slim(model, groups, keep, x[:1])                        # ship: same outputs, fewer FLOPs

Masked vs. slimmed. :func:`expand_channel_masks` zeroes the output slice of each dropped channel in
its producers *and* the input slice in every consumer. The consumer slice alone already makes the
dropped channel invisible downstream (so a BatchNorm bias left on a zeroed channel changes
nothing), which is why the masked model equals the slimmed one, in eval mode and (dropout aside)
in train mode.
:func:`apply_channel_masks` also masks biases and BatchNorm affine parameters (the same
:class:`~fairprune.masks.Mask` parametrization), so that dropped channels are exactly zero inside
the network too.

Which groups are offered. Groups that reach the model output (the classifier's classes) and
groups that touch a layer whose channels cannot be masked exactly are left out: LayerNorm /
GroupNorm / InstanceNorm (they mix channels), multi-head attention, embeddings, PReLU, LSTMs, bare
``nn.Parameter`` tensors, grouped (not depthwise) and transposed convs. For a ViT this leaves the
hidden width of each MLP block (attention heads and the embedding width stay dense). torch-pruning
treats unknown parameter-free ops as element-wise; an op that mixes channels without weights
(softmax over channels, channel shuffle) would break masked == slimmed.
"""

from fairprune.structured._groups import (
    BUDGETS,
    ChannelGroup,
    ChannelSlice,
    channel_groups,
    group_param_counts,
    n_prunable,
    weight_costs,
)
from fairprune.structured._masks import apply_channel_masks, expand_channel_masks, slim, structured_topk
from fairprune.structured._scores import (
    channel_sums,
    fpgm_channel_scores,
    l1_channel_scores,
    normalize_per_group,
)

__all__ = [
    "ChannelSlice",
    "ChannelGroup",
    "channel_groups",
    "group_param_counts",
    "n_prunable",
    "BUDGETS",
    "weight_costs",
    "structured_topk",
    "expand_channel_masks",
    "apply_channel_masks",
    "slim",
    "l1_channel_scores",
    "fpgm_channel_scores",
    "channel_sums",
    "normalize_per_group",
]
