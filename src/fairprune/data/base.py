"""The data contract: every sample is ``(x, y, group)``; a dataset knows its class and group names."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from fairprune.model_io import Features, as_features, describe, n_samples, take

__all__ = ["GroupData", "Splits", "stratified_sample", "stratified_split_indices"]

_SHOWN = 6
"""Groups whose per-split sizes a ``check_groups`` message shows."""
_SHOWN_IN_REPR = 8
"""Classes or groups a ``repr`` lists (then ``... (k more)``)."""


def _listed(items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOWN_IN_REPR} more)" if len(items) > _SHOWN_IN_REPR else ""
    return ", ".join(items[:_SHOWN_IN_REPR]) + more


def _counts(ids: Tensor, n: int = 0) -> list[int]:
    return torch.bincount(ids.reshape(-1).long(), minlength=n).tolist() if ids.numel() else [0] * n


@dataclass(frozen=True)
class GroupData:
    """One split held in memory.

    Attributes:
        x: Inputs, batch-first: a tensor ``(N, ...)``, a tuple or a dict of tensors (see
            :mod:`fairprune.model_io`: how the model is called on them).
        y: Target class ids, ``(N,)`` int64.
        groups: Group id of the sensitive attribute per sample, ``(N,)`` int64.
    """

    x: Features
    y: Tensor
    groups: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor):
            object.__setattr__(self, "x", as_features(self.x))
        n = n_samples(self.x)
        if self.y.shape != (n,) or self.groups.shape != (n,):
            raise ValueError(
                f"GroupData expects x (N, ...), y (N,), groups (N,) with one N; received "
                f"x {describe(self.x)}, y {tuple(self.y.shape)}, groups {tuple(self.groups.shape)}"
            )

    def __len__(self) -> int:
        return n_samples(self.x)

    def __repr__(self) -> str:
        """Size, input shape and dtype, and the samples per class and per group id."""
        classes = _listed([str(c) for c in _counts(self.y)])
        groups = _listed([str(c) for c in _counts(self.groups)])
        if isinstance(self.x, Tensor):
            inputs = f"{tuple(self.x.shape[1:])} {str(self.x.dtype).removeprefix('torch.')}"
        else:
            inputs = describe(self.x)
        return f"GroupData(n={len(self)}, x {inputs}, per class [{classes}], per group [{groups}])"

    def subset(self, index: Tensor | np.ndarray) -> GroupData:
        """The samples at ``index`` (a 1-D index array)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if idx.ndim != 1:
            raise ValueError(f"subset expects a 1-D index array; received shape {tuple(idx.shape)}")
        return GroupData(take(self.x, idx), _rows(self.y, idx), _rows(self.groups, idx))


def _rows(t: Tensor, idx: Tensor) -> Tensor:
    return t.index_select(0, idx) if t.is_contiguous() else t[idx]


@dataclass(frozen=True)
class Splits:
    """Train / validation / test splits of one dataset, with its names.

    Attributes:
        name: Dataset name (``"adult"``).
        target: Target column or attribute name.
        sensitive_attribute: Sensitive column or attribute name; for intersectional groups the
            names joined by ``","`` (``"Male,Young"``).
        class_names: Name of each class id.
        group_names: Name of each group id (``"Male=1,Young=0"`` for intersectional groups,
            see ``fairprune.data.groups``).
        certify: The certification split (see :meth:`with_certification`): held out of the
            validation data, read once at the end of a run to certify the chosen model's
            fairness; ``None`` when nothing is held out.
    """

    name: str
    target: str
    sensitive_attribute: str
    train: GroupData
    val: GroupData
    test: GroupData
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    certify: GroupData | None = None

    def with_certification(self, fraction: float, seed: int) -> Splits:
        """These splits with ``fraction`` of the validation split held out as :attr:`certify`.

        The cut is stratified by (target, group) cell and seeded: each cell of ``val`` with ``n``
        samples gives ``round(fraction * n)`` of them (at least one and at most ``n - 1`` when
        ``n >= 2``) to the certification split; the rest stay in ``val``, which training reads
        (dual steps, checkpoint selection). The certification split is never read by training:
        that is what makes its bound a guarantee (Thomas et al., Science 2019).

        Raises:
            ValueError: For ``fraction`` outside (0, 1), or splits that already hold one.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"certification fraction must be in (0, 1); received {fraction!r}")
        if self.certify is not None:
            raise ValueError("these splits already hold a certification split")
        val = self.val
        cells = (val.y * self.n_groups + val.groups).numpy()
        rng = np.random.default_rng([seed, 0xCE27])
        held = []
        for cell in np.unique(cells):
            idx = np.flatnonzero(cells == cell)
            take = int(round(fraction * len(idx)))
            if len(idx) >= 2:
                take = min(max(take, 1), len(idx) - 1)
            held.append(rng.choice(idx, size=take, replace=False))
        certify = np.sort(np.concatenate(held))
        keep = np.setdiff1d(np.arange(len(val)), certify)
        return replace(self, val=val.subset(keep), certify=val.subset(certify))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def __repr__(self) -> str:
        """Names, input shape and dtype, split sizes, and each group's size in every split."""
        parts = (self.train, self.val, self.test)
        sizes = [_counts(part.groups, self.n_groups) for part in parts]
        groups = [f"{name} {'/'.join(str(s[g]) for s in sizes)}" for g, name in enumerate(self.group_names)]
        x = self.train.x
        inputs = (
            f"{tuple(x.shape[1:])} {str(x.dtype).removeprefix('torch.')}"
            if isinstance(x, Tensor)
            else describe(x)
        )
        return (
            f"Splits({self.name!r}: target {self.target!r} (classes {_listed(list(self.class_names))}), "
            f"sensitive attribute {self.sensitive_attribute!r}; x {inputs}\n"
            f"  train {len(self.train)}, val {len(self.val)}, test {len(self.test)}\n"
            f"  groups (train/val/test): {_listed(groups)})"
        )

    def check_groups(self, min_group_size: int = 1) -> None:
        """Raise ``ValueError`` if a split has fewer than ``min_group_size`` samples of a group, or
        the attribute has fewer than two groups.

        The message names the groups that are short and gives each one's size in every split, so
        that an intersectional group too rare to be split (``"Male=1,Young=0"``) is easy to spot.
        """
        if isinstance(min_group_size, bool) or not isinstance(min_group_size, int) or min_group_size < 1:
            raise ValueError(f"min_group_size must be a positive integer; received {min_group_size!r}")
        if self.n_groups < 2:
            raise ValueError(
                f"sensitive attribute {self.sensitive_attribute!r} of {self.name!r} has "
                f"{self.n_groups} group ({list(self.group_names)}); expected at least 2"
            )
        names = ("train", "val", "test")
        sizes = {
            name: torch.bincount(getattr(self, name).groups, minlength=self.n_groups).tolist()
            for name in names
        }
        for split_name in names:
            short = [g for g in range(self.n_groups) if sizes[split_name][g] < min_group_size]
            if not short:
                continue
            listed = [self.group_names[g] for g in short]
            per_split = "; ".join(
                f"{self.group_names[g]!r}: " + ", ".join(f"{n} {sizes[n][g]}" for n in names)
                for g in short[:_SHOWN]
            ) + (f"; ... ({len(short) - _SHOWN} more)" if len(short) > _SHOWN else "")
            if min_group_size == 1:
                problem, expected = "no samples", "every split needs every group"
            else:
                problem = f"fewer than {min_group_size} samples"
                expected = f"every split needs min_group_size={min_group_size} samples of every group"
            raise ValueError(
                f"the {split_name} split of {self.name!r} has {problem} of group(s) {listed} of "
                f"{self.sensitive_attribute!r}; {expected} (sizes per split: {per_split})"
            )


def stratified_split_indices(
    strata: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(len(strata))`` into train/val/test, stratified by ``strata``.

    Each stratum (e.g. a (target, group) cell) is shuffled with ``seed`` and cut by
    ``fractions`` (train, val, test; summing to 1), so every split keeps the cell proportions.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(strata):
        idx = np.flatnonzero(strata == value)
        rng.shuffle(idx)
        n_val = int(round(fractions[1] * len(idx)))
        n_test = int(round(fractions[2] * len(idx)))
        n_train = len(idx) - n_val - n_test
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    out = tuple(np.sort(np.concatenate(p)) for p in parts)
    return out[0], out[1], out[2]


def _cell_quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """How many of each cell's ``counts`` samples a subset of ``n`` takes: the cell's share of
    ``n`` rounded by largest remainder, at least one per cell when ``n`` allows, summing to ``n``."""
    share = n * counts / counts.sum()
    take = np.floor(share).astype(np.int64)
    if n >= len(counts):
        take = np.maximum(take, 1)
    while take.sum() > n:  # the minimum of one overshot: shrink the cell furthest above its share
        surplus = np.where(take > 1, take - share, -np.inf)
        take[int(np.argmax(surplus))] -= 1
    shortfall = n - int(take.sum())
    if shortfall > 0:  # largest remainders first, among cells with samples left
        remainder = np.where(take < counts, share - take, -np.inf)
        take[np.argsort(-remainder, kind="stable")[:shortfall]] += 1
    return take


def stratified_sample(strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of a random subset of ``n`` of ``range(len(strata))``, stratified by ``strata``.

    Each stratum (a (target, group) cell) keeps its share of the subset, rounded by largest
    remainder, and at least one sample when ``n`` is at least the number of strata; the samples
    of a stratum are drawn without replacement with ``rng``. All positions when ``n`` is at least
    ``len(strata)``.

    Args:
        strata: ``(N,)`` stratum of each sample.
        n: Size of the subset.
        rng: Source of randomness.

    Returns:
        ``(min(n, N),)`` sorted positions.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"expected a positive integer subset size; received {n!r}")
    if n >= len(strata):
        return np.arange(len(strata))
    values, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    take = _cell_quotas(counts, int(n))
    picked = [
        rng.choice(np.flatnonzero(inverse == cell), size=int(k), replace=False)
        for cell, k in enumerate(take)
        if k > 0
    ]
    return np.sort(np.concatenate(picked))
