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

Which groups are offered. Transformers: each attention module's heads are one group (one
channel = one head: its query, key and value rows and its output-projection columns; with
grouped-query attention one channel = a key/value head with its query heads), and each MLP's
hidden neurons another (torchvision ``nn.MultiheadAttention``, timm ViT/DeiT, Hugging Face BERT,
GPT-2 and Llama-style attention; see :mod:`fairprune.structured._attention`). torch-pruning
finds the other groups; groups that reach the model output (the classes) and groups that touch a
layer whose channels cannot be masked exactly are left out: LayerNorm / GroupNorm / InstanceNorm
(they mix channels, so a transformer's embedding width stays dense), embeddings, PReLU, LSTMs,
bare ``nn.Parameter`` tensors, grouped (not depthwise) and transposed convs. torch-pruning treats
unknown parameter-free ops as element-wise; an op that mixes channels without weights (softmax
over channels, channel shuffle) would break masked == slimmed, which is why
:func:`check_channel_plan` slims a trial copy at the target before training and names the group
that differs. The graph analysis runs under a time limit (:data:`GRAPH_TIME_LIMIT`).

Hugging Face models: :func:`slim` writes the head counts and MLP width into ``model.config``
where the config can describe them (:func:`sync_hf_config`; prune with ``uniform=True``), so a
Llama-style model round-trips through ``save_pretrained`` / ``from_pretrained``.
"""

from fairprune.structured._check import SLIM_TOLERANCE, check_channel_groups, check_channel_plan, check_slim
from fairprune.structured._groups import (
    BUDGETS,
    ChannelGroup,
    ChannelSlice,
    channel_groups,
    group_param_counts,
    n_prunable,
    weight_costs,
)
from fairprune.structured._hf import sync_hf_config
from fairprune.structured._masks import apply_channel_masks, expand_channel_masks, slim, structured_topk
from fairprune.structured._mha import SlimMultiheadAttention
from fairprune.structured._scores import (
    channel_sums,
    fpgm_channel_scores,
    l1_channel_scores,
    normalize_per_group,
)
from fairprune.structured._trace import GRAPH_TIME_LIMIT
from fairprune.structured._uniform import removal_unit

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
    "SlimMultiheadAttention",
    "sync_hf_config",
    "GRAPH_TIME_LIMIT",
    "removal_unit",
    "check_channel_groups",
    "check_channel_plan",
    "check_slim",
    "SLIM_TOLERANCE",
    "l1_channel_scores",
    "fpgm_channel_scores",
    "channel_sums",
    "normalize_per_group",
]
