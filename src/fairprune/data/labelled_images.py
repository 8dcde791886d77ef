"""Image files with labels, before decoding: presence checks, identity-disjoint splits, and
:class:`LabelledImages`, which every image loader builds and turns into checked :class:`Splits`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fairprune.data.base import GroupData, Splits
from fairprune.data.images import cached_images, first_names, mapped_rows

__all__ = ["LabelledImages", "grouped_split_indices", "present_mask"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Indices = tuple[np.ndarray, np.ndarray, np.ndarray]


def present_mask(paths: Sequence[PathLike], *, missing: str, listed_in: str) -> np.ndarray:
    """Which listed images exist; the others raise (``missing="error"``) or are logged (``"skip"``).

    Args:
        paths: Image files named by an annotation file.
        missing: ``"error"`` or ``"skip"``.
        listed_in: Where the images are listed, for the messages.

    Returns:
        ``(N,)`` bool, True where the file exists.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip'; received {missing!r}")
    present = np.array([Path(p).is_file() for p in paths], dtype=bool)
    absent = [p for p, ok in zip(paths, present, strict=True) if not ok]
    if absent and (missing == "error" or len(absent) == len(present)):
        hint = "; pass missing='skip' to drop them" if len(absent) < len(present) else ""
        raise ValueError(
            f"{len(absent)} of {len(present)} images listed in {listed_in} are absent: "
            f"{first_names(absent)}{hint}"
        )
    if absent:
        logger.warning(
            "skipping %d of %d images listed in %s that are absent", len(absent), len(present), listed_in
        )
    return present


def grouped_split_indices(
    clusters: np.ndarray, strata: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> Indices:
    """Train/val/test indices that keep each cluster (identity, person) within one split.

    Each cluster takes the most common stratum of its samples; within each stratum the clusters are
    shuffled with ``seed`` and laid end to end, and a cluster goes to the split whose share of the
    stratum's samples (cut by ``fractions``) holds the cluster's midpoint. So the splits are close
    to the fractions and to stratified, and exactly disjoint in clusters.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    n_clusters = int(cluster_ids.max()) + 1
    _, stratum_ids = np.unique(strata, return_inverse=True)
    counts = np.zeros((n_clusters, int(stratum_ids.max()) + 1), dtype=np.int64)
    np.add.at(counts, (cluster_ids, stratum_ids), 1)
    cluster_stratum, sizes = counts.argmax(axis=1), counts.sum(axis=1)
    rng = np.random.default_rng(seed)
    split_of_cluster = np.empty(n_clusters, dtype=np.int64)
    cuts = np.cumsum(fractions)[:2]
    for stratum in np.unique(cluster_stratum):
        members = rng.permutation(np.flatnonzero(cluster_stratum == stratum))
        ends = np.cumsum(sizes[members])
        midpoints = (ends - sizes[members] / 2) / ends[-1]
        split_of_cluster[members] = np.searchsorted(cuts, midpoints, side="right")
    split = split_of_cluster[cluster_ids]
    return np.flatnonzero(split == 0), np.flatnonzero(split == 1), np.flatnonzero(split == 2)


@dataclass(frozen=True)
class LabelledImages:
    """Image files with a target and a group each, before decoding.

    Attributes:
        name: Dataset name, also the cache file's prefix.
        target: Target name.
        sensitive_attribute: Sensitive attribute name.
        paths: ``N`` image files.
        y: ``(N,)`` int64 class ids.
        groups: ``(N,)`` int64 group ids.
        class_names: Name of each class id.
        group_names: Name of each group id.
        root: Directory the cache key hashes paths relative to.
    """

    name: str
    target: str
    sensitive_attribute: str
    paths: list[Path]
    y: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    root: Path

    @property
    def strata(self) -> np.ndarray:
        """The (target, group) cell of each sample, ``y * n_groups + groups``."""
        return self.y * len(self.group_names) + self.groups

    def to_splits(
        self,
        indices: Indices,
        *,
        resolution: int,
        cache_dir: PathLike | None,
        limit: int | None = None,
        progress: bool = False,
        min_group_size: int = 1,
    ) -> Splits:
        """Decode (through the cache) the images of ``indices`` and return the checked splits.

        Args:
            indices: Train, val and test indices into ``paths``.
            resolution: Side ``R`` of the square images.
            cache_dir: Cache directory (default :func:`default_cache_dir`).
            limit: Keep only the first ``limit`` samples of each split (for quick runs).
            progress: Show a progress bar while decoding.
            min_group_size: Fewest samples of every group in every split (see
                ``Splits.check_groups``).

        Returns:
            Splits whose ``x`` are uint8 ``(N, 3, R, R)``, mapped from the cache file.
        """
        if limit is not None:
            if limit < 1:
                raise ValueError(f"expected limit None or a positive integer; received {limit}")
            indices = (indices[0][:limit], indices[1][:limit], indices[2][:limit])
        used = np.unique(np.concatenate(indices))
        paths = [self.paths[i] for i in used]
        images = cached_images(cache_dir, (self.name,), paths, resolution, root=self.root, progress=progress)
        parts = []
        for idx in indices:
            rows = np.searchsorted(used, idx)
            x = mapped_rows(images, rows)  # (n, 3, R, R) uint8, read from the cache file on demand
            parts.append(GroupData(x, torch.from_numpy(self.y[idx]), torch.from_numpy(self.groups[idx])))
        splits = Splits(
            name=self.name,
            target=self.target,
            sensitive_attribute=self.sensitive_attribute,
            train=parts[0],
            val=parts[1],
            test=parts[2],
            class_names=self.class_names,
            group_names=self.group_names,
        )
        splits.check_groups(min_group_size)
        return splits
