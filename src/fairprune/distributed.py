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

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")

__all__ = [
    "on_main",
    "barrier",
    "is_distributed",
    "world_size",
    "rank",
    "is_main_process",
    "all_reduce_sum",
    "all_reduce_mean_",
    "all_gather_cat",
    "unwrap",
    "wrap_ddp",
    "init_from_env",
    "process_group",
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
    """Whether this process is rank 0 (the one that writes files); before or after the process
    group exists, the ``RANK`` that ``torchrun`` set."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def on_main(fn: Callable[[], T]) -> T | None:
    """``fn()`` on rank 0 only (all ranks wait for it); if it raises, every rank raises: rank 0
    the error itself, the others a ``RuntimeError`` with its message. Returns ``None`` elsewhere."""
    if not is_distributed():
        return fn()
    result: T | None = None
    error: Exception | None = None
    message: list[str | None] = [None]
    if rank() == 0:
        try:
            result = fn()
        except Exception as err:  # re-raised below, on every rank
            error, message = err, [f"{type(err).__name__}: {err}"]
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0] is not None:
        raise RuntimeError(f"rank 0 failed: {message[0]}")
    return result


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over ranks, differentiable: the gradient of the sum with respect to
    each rank's ``tensor`` is the sum of the ranks' upstream gradients (so that, after DDP
    averages the weights' gradients over the ranks, they are the global batch's)."""
    if not is_distributed():
        return tensor
    return dist_nn.all_reduce(tensor, op=dist.ReduceOp.SUM)


def _comm_device() -> torch.device:
    """Where the backend's tensors must live: this rank's GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Average each tensor over ranks, in place (one flat all-reduce; no gradient)."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float().to(_comm_device()) for t in tensors])  # (sum of numels,)
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
    home, tensor = tensor.device, tensor.to(_comm_device())
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(n)] for part, n in zip(parts, lengths, strict=True)]).to(home)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel under ``torchrun`` (its gradients averaged over the
    ranks in backward; its buffers, e.g. masks, broadcast from rank 0), else ``model`` itself."""
    if not is_distributed():
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def init_from_env(device: str) -> tuple[bool, str]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment):
    NCCL for a CUDA ``device``, else gloo. Returns whether this call initialised it, and the
    device this rank trains on (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, device
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if dist.is_initialized():
        return False, device
    dist.init_process_group("nccl" if cuda else "gloo")
    return True, device


@contextlib.contextmanager
def process_group(device: str) -> Iterator[str]:
    """:func:`init_from_env` for the duration of a block: yields this rank's device, and leaves
    the process group it joined (one it found joined stays)."""
    joined, device = init_from_env(device)
    try:
        yield device
    finally:
        if joined:
            dist.destroy_process_group()
