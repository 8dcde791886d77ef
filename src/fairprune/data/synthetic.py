"""A generated image task with a planted group bias: a small, fast check that a fair-pruning
method does what it claims before real data (the test suite's and the benchmark's design)."""

from __future__ import annotations

import numpy as np
import torch

from fairprune.data.base import GroupData, Splits, stratified_split_indices

__all__ = ["planted_bias_images"]


def planted_bias_images(n: int, seed: int, minority: float = 0.2) -> Splits:
    """``n`` 1x5x5 uint8 images split 0.5 / 0.25 / 0.25, stratified by (label, group).

    The majority group's label is the sign of the brightness of rows 0-1, the minority's that of
    rows 2-3 (5% of labels flipped); row 4 shows the group. A model that fits the majority's
    rule alone is accurate overall and unfair to the minority (a share ``minority`` of samples).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 25))
    g = (rng.random(n) < minority).astype(int)
    y = (np.where(g == 1, x[:, 10:20].sum(1), x[:, 0:10].sum(1)) > 0).astype(int)
    flip = rng.random(n) < 0.05
    y[flip] = 1 - y[flip]
    x[:, 20:25] = (2.0 * g - 1.0)[:, None] * 1.5 + 0.3 * rng.normal(size=(n, 5))
    images = torch.from_numpy(np.clip(128 + 40 * x, 0, 255).astype(np.uint8).reshape(n, 1, 5, 5))
    labels, groups = torch.from_numpy(y).long(), torch.from_numpy(g).long()
    parts = stratified_split_indices(y * 2 + g, (0.5, 0.25, 0.25), seed)
    train, val, test = (GroupData(images[i], labels[i], groups[i]) for i in parts)
    return Splits("planted_images", "y", "group", train, val, test, ("0", "1"), ("majority", "minority"))
