"""The default settings of a :func:`fairprune.prune` call, scaled to the data: iteration budgets
as passes over the training set, the batch size and the validation checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fairprune.data.base import GroupData
from fairprune.engine import TrainConfig
from fairprune.methods_spec import METHODS, defaults

__all__ = [
    "REFERENCE_TRAIN_SIZE",
    "REFERENCE_BATCH",
    "MIN_BUDGET_SCALE",
    "default_batch",
    "default_budgets",
    "train_config_for",
]

REFERENCE_TRAIN_SIZE = 30_000
"""Training samples at which the methods' default iteration budgets were set (about Adult's
training split), in batches of :data:`REFERENCE_BATCH`: a budget of ``s`` steps there is
``s * REFERENCE_BATCH / REFERENCE_TRAIN_SIZE`` passes over the data."""
REFERENCE_BATCH = 256
MIN_BUDGET_SCALE = 0.1  # at least this fraction of a default budget (tiny data still trains)
_VAL_CHECK_SAMPLES = 4096  # validation samples checked during training (all if fewer)


def default_batch(n_train: int) -> int:
    """The default batch size for ``n_train`` samples: 256, at most an eighth of the data, at
    least 32."""
    return max(32, min(REFERENCE_BATCH, n_train // 8))


def default_budgets(method: str, n_train: int) -> dict[str, int]:
    """The iteration budgets (``steps``, ``*_steps`` fields) of ``method`` for ``n_train``
    training samples, as passes over the data: each default budget ``s`` is
    ``s * REFERENCE_BATCH / REFERENCE_TRAIN_SIZE`` passes (BiFP's 300 search steps: 2.56), i.e.
    ``passes * n_train / default_batch(n_train)`` steps, and at least ``MIN_BUDGET_SCALE * s``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    declared = defaults(method)
    steps_per_pass = n_train / default_batch(n_train)
    return {
        k: max(
            1, round(v * MIN_BUDGET_SCALE), round(v * REFERENCE_BATCH / REFERENCE_TRAIN_SIZE * steps_per_pass)
        )
        for k in METHODS[method].budgets
        if (v := declared[k]) > 0
    }


def train_config_for(
    config: TrainConfig | Mapping[str, Any] | None, data: dict[str, GroupData], device: str
) -> TrainConfig:
    """``config`` on ``device``; by default batches of 256 (at most an eighth of the data, at
    least 32) and validation checks every 25 iterations scaled like the budgets (at least 5), on
    at most 4096 validation samples — with a mapping's settings (e.g. ``{"distill": 1.0}``) in
    place of those defaults.

    Raises:
        ValueError: For a mapping key that is not a training setting (or is ``device``, which
            :func:`fairprune.prune` takes as its own argument), or an out-of-range value.
    """
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, device=device)
    n_train, n_val = len(data["train"]), len(data["val"])
    scale = min(1.0, max(MIN_BUDGET_SCALE, n_train / REFERENCE_TRAIN_SIZE))
    scaled = TrainConfig(
        batch_size=default_batch(n_train),
        eval_every=max(5, round(25 * scale)),
        eval_samples=0 if n_val <= _VAL_CHECK_SAMPLES else _VAL_CHECK_SAMPLES,
        threads=0,
        device=device,
    )
    settings = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "device"]
    unknown = sorted(set(config or {}) - set(settings))
    if unknown:
        raise ValueError(f"config: expected training settings among {settings}; received {unknown}")
    return dataclasses.replace(scaled, **dict(config or {}))
