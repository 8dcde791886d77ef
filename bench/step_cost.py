"""Step cost: one BiFP iteration over one plain SGD step, on the same model and batches.

Every variant trains a fresh copy of the same model through the library (``BiFP.prune`` with
``finetune_steps=0``, ``train_weights`` for the dense steps) for a chunk of steps; only the steps
are timed (:func:`bench.common.step_times`: no validation, no setup). Chunks run in turns over
several rounds and the ratio is of medians, so that a load spike hits every variant alike.

Variants: ``sgd`` (cross-entropy, SGD: the denominator), ``fair_sgd`` (the dense step with the
fairness term: what the term alone costs), BiFP ``alternating`` / ``joint`` on weights
(unstructured) and on channels. Models: the Adult MLP (102 -> 256 -> 256 -> 2, batch 256) and
ResNet10 on random 64x64 images (batch 32).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.common import Settings, adult, interleaved, median, random_images, step_times, task
from fairprune.data.base import Splits
from fairprune.engine import Task, train_weights
from fairprune.models import build_model
from fairprune.pruners import BiFP

SPARSITY = 0.7
VARIANTS = ("sgd", "fair_sgd", "alternating", "joint", "alternating_channel", "joint_channel")
WARMUP = 2  # first steps of every chunk, not counted (allocator, caches)


def _chunk(model: nn.Module, work: Task, variant: str, steps: int, device: str) -> Callable[[], list[float]]:
    def run() -> list[float]:
        times: list[float] = []
        fresh = copy.deepcopy(model)
        with step_times(times, device):
            if variant in ("sgd", "fair_sgd"):
                constraint = work.constraint() if variant == "fair_sgd" else None
                train_weights(fresh, work, steps, constraint=constraint)
            else:
                schedule, _, structure = variant.partition("_")
                pruner = BiFP(
                    steps=steps, finetune_steps=0, schedule=schedule, structure=structure or "unstructured"
                )
                pruner.prune(fresh, SPARSITY, work)
        return times[WARMUP:]

    return run


def measure(
    name: str, model: nn.Module, splits: Splits, settings: Settings, *, batch: int, steps: int, rounds: int
) -> dict[str, Any]:
    """Median step seconds of every variant and their ratios to ``sgd``."""
    work = task(splits, settings, batch_size=batch, steps=steps)
    torch.manual_seed(settings.seed)
    model = model.to(settings.device)
    jobs = {v: _chunk(model, work, v, steps, settings.device) for v in VARIANTS}
    times = interleaved(jobs, rounds)
    medians = {v: median(t) for v, t in times.items()}
    return {
        "model": name,
        "batch": batch,
        "steps_per_chunk": steps,
        "rounds": rounds,
        "median_step_s": medians,
        "ratio": {v: medians[v] / medians["sgd"] for v in VARIANTS},
    }


def run(settings: Settings) -> dict[str, Any]:
    """Both models; the headline ratios are the Adult MLP's (the issue's measurement)."""
    splits = adult(settings)
    mlp = build_model("mlp", tuple(splits.train.x.shape[1:]), 2, hidden=[256, 256])
    steps, rounds = (8, 1) if settings.fast else (80, 5)
    out = {"mlp_adult": measure("mlp", mlp, splits, settings, batch=256, steps=steps, rounds=rounds)}
    size, n, batch = (32, 32, 4) if settings.fast else (64, 512, 32)
    images = random_images(n, size, settings.seed)
    resnet = build_model("resnet10", (3, size, size), 2)
    steps, rounds = (3, 1) if settings.fast else (6, 2)
    out["resnet10_random"] = measure(
        "resnet10", resnet, images, settings, batch=batch, steps=steps, rounds=rounds
    )
    return out
