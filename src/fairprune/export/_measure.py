"""Size, FLOPs and latency of a model, and the check that a slimmed model computes what the masked
one did."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from fairprune.masks import bake_masks
from fairprune.model_io import Features, call_model, in_eval, rows, tensors_of

__all__ = ["count_parameters", "count_flops", "measure_latency", "paired_latency", "model_footprint"]


def count_parameters(model: nn.Module, *, nonzero: bool = False) -> int:
    """All parameters of ``model`` (BatchNorm and biases included; masks are buffers, not counted).

    Args:
        model: Any module, masked or not.
        nonzero: Count only the entries that are non-zero after the masks are applied.
    """
    if not nonzero:
        return sum(p.numel() for p in model.parameters())
    masked = any(parametrize.is_parametrized(m) for m in model.modules())
    baked = bake_masks(copy.deepcopy(model)) if masked else model
    return sum(int(torch.count_nonzero(p)) for p in baked.parameters())


def count_flops(model: nn.Module, example_input: Features) -> int:
    """Floating-point operations of one forward pass on ``example_input`` (eval mode).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`: matrix multiplications and
    convolutions, 2 per multiply-add (a ``Linear(i, o)`` on a batch of ``n`` is ``2 * i * o * n``);
    element-wise ops, normalisation and pooling count zero. Masked weights still count: slim a
    structured model first to see its savings. The pass runs with autograd on (nothing is
    backpropagated) and the math attention kernel: otherwise ``nn.MultiheadAttention``'s fused
    fast path and the fused ``scaled_dot_product_attention`` kernels hide attention from the
    counter (a torchvision ViT's attention counted zero, then its ``QK^T``/``AV`` products).
    """
    counter = FlopCounterMode(display=False)

    def forward() -> None:
        # the math attention kernel: the fused ones (flash, memory-efficient) are invisible to the
        # counter, which then misses every QK^T and AV product
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            call_model(model, example_input)

    in_eval(model, forward)
    return int(counter.get_total_flops())


def median_seconds(
    run: Callable[[], Any], *, repeats: int, warmup: int, sync: Callable[[], Any] | None = None
) -> float:
    """Median wall-clock seconds of ``run()`` over ``repeats`` timed calls after ``warmup``
    untimed ones (``sync()`` before and after each timed call, e.g. CUDA's synchronize)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        run()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return float(statistics.median(times))


def measure_latency(
    model: nn.Module, example_input: Features, *, repeats: int = 20, warmup: int = 3
) -> float:
    """Median wall-clock seconds of one forward pass on ``example_input``.

    Eval mode, ``torch.no_grad()``, on the device of ``example_input`` (CUDA is synchronised
    around each pass); the thread settings of torch are left as they are.

    Args:
        model: The model, on the device of ``example_input``.
        example_input: One batch.
        repeats: Timed passes (at least 1).
        warmup: Untimed passes first.
    """
    sync = torch.cuda.synchronize if tensors_of(example_input)[0].is_cuda else None
    return in_eval(
        model,
        lambda: median_seconds(
            lambda: call_model(model, example_input), repeats=repeats, warmup=warmup, sync=sync
        ),
    )


def paired_latency(
    dense: nn.Module, shipped: nn.Module, example_input: Features, *, repeats: int = 10
) -> dict[str, float]:
    """The shipped and the dense model's latency on ``example_input``, timed in turns (each
    twice, ``repeats // 2`` passes a turn), so that load on a shared machine hits both; the
    medians of each model's turns are averaged. The one timing protocol of a sweep's footprint
    columns and of a model card.

    Returns:
        ``latency_ms``, ``latency_dense_ms`` and ``latency_ratio`` (shipped / dense).
    """
    half = max(1, repeats // 2)
    dense_s, shipped_s = [], []
    for _ in range(2):
        dense_s.append(measure_latency(dense, example_input, repeats=half))
        shipped_s.append(measure_latency(shipped, example_input, repeats=half))
    d, s = sum(dense_s) / 2, sum(shipped_s) / 2
    return {"latency_ms": 1000 * s, "latency_dense_ms": 1000 * d, "latency_ratio": s / d}


def model_footprint(
    shipped: nn.Module,
    dense: nn.Module | None = None,
    example_input: Features | None = None,
    *,
    latency: bool = True,
    repeats: int = 10,
) -> dict[str, Any]:
    """What a shipped model costs beside its dense model: the one footprint of a sweep's
    columns (:func:`fairprune.sweep.footprint.footprint`) and of a model card.

    Args:
        shipped: The model as shipped (masks baked in, or slimmed).
        dense: The dense model it was pruned from (``None``: the shipped model's figures only).
        example_input: A batch: FLOPs are counted on its first sample, latency timed on all of it
            (``None``: parameters only).
        latency: Time the model(s) on ``example_input`` (with ``dense``: in turns,
            :func:`paired_latency`).
        repeats: Timed passes per model.

    Returns:
        ``params``, ``nonzero_params`` (and ``dense_params``); with an example ``flops`` (and
        ``dense_flops``); with ``latency`` also ``latency_ms`` (and ``latency_dense_ms``,
        ``latency_ratio``).
    """
    foot: dict[str, Any] = {
        "params": count_parameters(shipped),
        "nonzero_params": count_parameters(shipped, nonzero=True),
    }
    if dense is not None:
        foot["dense_params"] = count_parameters(dense)
    if example_input is None:
        return foot
    one = rows(example_input, 0, 1)
    foot["flops"] = count_flops(shipped, one)
    if dense is not None:
        foot["dense_flops"] = count_flops(dense, one)
    if latency and dense is not None:
        foot.update(paired_latency(dense, shipped, example_input, repeats=repeats))
    elif latency:
        foot["latency_ms"] = 1000 * measure_latency(shipped, example_input, repeats=repeats)
    return foot
