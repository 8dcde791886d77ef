"""The few collective operations fairprune needs under ``torchrun``: plain ``torch.distributed``.

Every function is the identity (or its one-process equivalent) when no process group is
initialised, so the same code runs in one process and in many. Under DistributedDataParallel
each rank holds a shard of the global batch; what must be the *global* batch's is reduced here:

- the per-group sums and counts behind every fairness surrogate, all-reduced **with gradients**
  (:func:`all_reduce_sum`, ``torch.distributed.nn.functional.all_reduce``), so the fairness term
  is the global batch's on every rank;
- the recorded mask gradients ``g``, averaged like DDP averages the weights' gradients
  (:func:`all_reduce_mean_`), so mask scores and masks stay identical on every rank;
- validation predictions, gathered (:func:`all_gather_cat`), so the exact metric and the
  multiplier's dual step are the whole split's on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "is_distributed",
    "world_size",
    "rank",
    "is_main_process",
    "all_reduce_sum",
    "all_reduce_mean_",
    "all_gather_cat",
    "unwrap",
]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this process is rank 0 (the one that writes files)."""
    return rank() == 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over ranks, differentiable: the gradient of the sum with respect to
    each rank's ``tensor`` is the sum of the ranks' upstream gradients (so that, after DDP
    averages the weights' gradients over the ranks, they are the global batch's)."""
    if not is_distributed():
        return tensor
    return dist_nn.all_reduce(tensor, op=dist.ReduceOp.SUM)


@torch.no_grad()
def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Average each tensor over ranks, in place (one flat all-reduce; no gradient)."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])  # (sum of numels,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    start = 0
    for t in tensors:
        t.copy_(flat[start : start + t.numel()].reshape(t.shape))
        start += t.numel()


@torch.no_grad()
def all_gather_cat(tensor: Tensor) -> Tensor:
    """The rank-ordered concatenation (along dim 0) of every rank's ``tensor``, on every rank.

    Ranks may hold different lengths; the other dims and the dtype must agree.
    """
    if not is_distributed():
        return tensor
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(n)] for part, n in zip(parts, lengths, strict=True)])


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
