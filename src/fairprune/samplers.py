"""Stratified (target, group) batches, in one process or sharded across ``torchrun`` ranks.

A fairness surrogate needs every group in every batch. Each epoch shuffles every (target, group)
cell and spreads its samples evenly over the epoch's order, so each batch holds every cell in
proportion (±1) and misses a group only when the group has fewer samples than there are batches.
Under DDP, each global batch is ordered by cell and dealt out to the ranks in turn (rank ``r``
takes positions ``r, r + W, r + 2W, ...``), so a cell with ``n`` samples in the batch gives every
rank ``floor(n / W)`` or ``ceil(n / W)`` of them, and the ranks together hold exactly the global
batch that one process would train on with the same seed.

The harness's loop (:func:`fairprune.engine.stratified_batches`) and a user's ``DataLoader``
(:class:`StratifiedBatchSampler` as its ``batch_sampler``) draw the same batches from the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from fairprune.data.base import GroupData
from fairprune.model_io import Features, row

__all__ = ["StratifiedBatchSampler", "GroupDataset", "loader_batches", "stratified_epoch", "cells_of"]


def cells_of(y: Tensor, groups: Tensor, n_groups: int | None = None) -> Tensor:
    """The (target, group) cell id of every sample: ``y * G + g``, ``(N,)`` int64."""
    if y.shape != groups.shape or y.ndim != 1:
        raise ValueError(
            f"expected y and groups of one shape (N,); received {tuple(y.shape)} and {tuple(groups.shape)}"
        )
    if y.is_floating_point() or groups.is_floating_point():
        raise TypeError(f"expected integer y and groups; received {y.dtype} and {groups.dtype}")
    n_groups = int(groups.max()) + 1 if n_groups is None else n_groups
    return y.long() * n_groups + groups.long()


def stratified_epoch(
    cells: Tensor, batch_size: int, generator: torch.Generator, *, rank: int = 0, world_size: int = 1
) -> list[Tensor]:
    """One epoch of stratified batches: this rank's index tensor of each global batch.

    Draws the epoch's order from ``generator`` (every rank must pass a generator in the same
    state). Global batches are ``batch_size`` long (the last partial one is dropped; a split
    smaller than one batch is a single batch); with ``W > 1`` ranks, rank ``r`` takes every
    ``W``-th sample of each batch ordered by cell, from position ``r``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; received {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size; received rank {rank} of {world_size}")
    if batch_size % world_size:
        raise ValueError(
            f"the global batch_size ({batch_size}) must be a multiple of the number of processes "
            f"({world_size}) so that every rank's shard has the same size"
        )
    position = torch.empty(len(cells))
    for c in torch.unique(cells):
        idx = torch.nonzero(cells == c).flatten()
        ranks = torch.randperm(len(idx), generator=generator).float()
        offset = torch.rand(1, generator=generator)
        position[idx] = (ranks + offset) / len(idx)
    order = torch.argsort(position)  # (N,)
    batches = [
        order[start : start + batch_size] for start in range(0, len(order) - batch_size + 1, batch_size)
    ]
    if len(order) < batch_size:
        batches = [order]
    if world_size == 1:
        return batches
    # deal each cell out in turn: a cell with n samples in the batch gives every rank n // W or more
    return [batch[torch.sort(cells[batch], stable=True).indices][rank::world_size] for batch in batches]


class StratifiedBatchSampler(Sampler[list[int]]):
    """A ``DataLoader`` ``batch_sampler`` of stratified (target, group) batches, optionally sharded.

    Each pass over the sampler is one epoch; the epochs continue one random stream seeded with
    ``seed``, so a loader over it yields the batches of the harness's loop with that seed. Under
    ``torchrun`` give each rank its ``rank`` and ``world_size`` (and the same ``seed``):
    ``batch_size`` is the *global* batch, of which each rank yields ``batch_size / world_size``.

    Args:
        y: ``(N,)`` target class ids of the dataset.
        groups: ``(N,)`` group ids of the dataset.
        batch_size: Samples per global batch (a multiple of ``world_size``).
        n_groups: Number of groups ``G`` (default: ``max(groups) + 1``).
        seed: Seed of the batches' random stream.
        rank: This process's rank.
        world_size: Number of ranks.
    """

    def __init__(
        self,
        y: Tensor,
        groups: Tensor,
        batch_size: int,
        *,
        n_groups: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"the global batch_size ({batch_size}) must be a multiple of world_size ({world_size}) "
                "so that every rank's shard has the same size"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"expected 0 <= rank < world_size; received rank {rank} of {world_size}")
        self.cells = cells_of(y, groups, n_groups)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = stratified_epoch(
            self.cells, self.batch_size, self.generator, rank=self.rank, world_size=self.world_size
        )
        for batch in epoch:
            yield batch.tolist()

    def __len__(self) -> int:
        return max(1, len(self.cells) // self.batch_size)


class GroupDataset(Dataset[tuple[Features, Tensor, Tensor]]):
    """A :class:`GroupData` split as a map-style dataset of ``(x, y, group)``; a batch of indices
    is fetched with one indexing operation (``__getitems__``), e.g. from an image split mapped
    from the cache file (only the batch's rows are read)."""

    def __init__(self, data: GroupData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Features, Tensor, Tensor]:
        return row(self.data.x, index), self.data.y[index], self.data.groups[index]

    def __getitems__(self, indices: list[int]) -> tuple[Features, Tensor, Tensor]:
        batch = self.data.subset(torch.as_tensor(indices, dtype=torch.long))
        return batch.x, batch.y, batch.groups


def _as_batch(batch: Any) -> Any:
    return batch  # already batched by GroupDataset.__getitems__: (x, y, groups)


def loader_batches(
    data: GroupData, sampler: StratifiedBatchSampler, *, workers: int, pin_memory: bool
) -> Iterator[GroupData]:
    """Endless batches of ``data`` through a ``DataLoader`` over ``sampler`` (epoch after epoch):
    ``workers`` processes read and collate them, into pinned memory if ``pin_memory``."""
    loader = DataLoader(
        GroupDataset(data),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=_as_batch,
        persistent_workers=workers > 0,
    )
    while True:
        for x, y, groups in loader:
            yield GroupData(x, y, groups)
