"""Image files with labels, before decoding: presence checks, identity-disjoint splits, the
:class:`ImageOptions` every image loader takes, and :class:`LabelledImages`, which every image
loader builds and turns into checked :class:`Splits`.

A loader knows where its dataset's files and labels are and how to read them; the rest is shared::

    options = ImageOptions(resolution=..., seed=..., cache_dir=..., limit=..., missing=..., ...)
    paths, keep = options.present(listed_paths, listed_in=..., root=..., setting=...)
    images = LabelledImages.from_attributes("name", target=..., y=..., class_names=...,
                                            sensitive=[...], paths=paths, root=...)
    return images.to_splits(indices, options)   # indices: the dataset's train/val/test
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fairprune.data._once import warn_once
from fairprune.data.base import GroupData, Splits, stratified_sample
from fairprune.data.groups import Attribute, joined_name, product_groups
from fairprune.data.images import cached_images, first_names, mapped_rows

__all__ = [
    "SPLIT_NAMES",
    "ImageOptions",
    "Indices",
    "LabelledImages",
    "Limit",
    "grouped_split_indices",
    "limit_per_split",
    "present_mask",
    "setting_hint",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Indices = tuple[np.ndarray, np.ndarray, np.ndarray]
Limit = int | Mapping[str, int] | None
"""A loader's ``limit``: at most this many samples of each split, or per split by name
(``{"train": 10000, "val": 2500}``; a split not named is kept whole), or ``None`` (all)."""
SPLIT_NAMES = ("train", "val", "test")


def present_mask(
    paths: Sequence[PathLike], *, missing: str, listed_in: str, root: PathLike, setting: str
) -> np.ndarray:
    """Which listed images exist; the others raise (``missing="error"``) or are logged (``"skip"``).

    When no listed image exists the error says where the loader looked and which setting changes
    it, whatever ``missing`` says: a wrong image folder is more likely than a dataset of none.

    Args:
        paths: Image files named by an annotation file.
        missing: ``"error"`` or ``"skip"``.
        listed_in: Where the images are listed, for the messages.
        root: The folder the paths were resolved under, for the messages.
        setting: How the user changes ``root`` (see :func:`setting_hint`), for the messages.

    Returns:
        ``(N,)`` bool, True where the file exists.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip'; received {missing!r}")
    present = np.array([Path(p).is_file() for p in paths], dtype=bool)
    absent = [p for p, ok in zip(paths, present, strict=True) if not ok]
    if absent and not present.any():
        raise ValueError(
            f"none of the {len(present)} images listed in {listed_in} exists under {str(root)!r}, "
            f"e.g. {first_names(absent, 3)}; point the loader at the folder that holds them with "
            f"{setting}"
        )
    if absent and missing == "error":
        raise ValueError(
            f"{len(absent)} of {len(present)} images listed in {listed_in} are absent: "
            f"{first_names(absent)}; pass missing='skip' to drop them"
        )
    if absent:
        warn_once(
            logger,
            "skipping %d of %d images listed in %s that are absent",
            len(absent),
            len(present),
            listed_in,
        )
    return present


def setting_hint(argument: str, config_key: str) -> str:
    """How a user changes a folder: ``"image_root= (in a config: data.params.image_root)"``."""
    return f"{argument}= (in a config: {config_key})"


def limit_per_split(limit: Limit) -> tuple[int | None, int | None, int | None]:
    """The cap of each split (train, val, test) that a ``limit`` sets (``None``: no cap)."""
    if limit is None:
        return None, None, None
    if isinstance(limit, Mapping):
        unknown = sorted(set(limit) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"limit names unknown splits {unknown}; expected some of {list(SPLIT_NAMES)}")
        caps = tuple(limit.get(name) for name in SPLIT_NAMES)
    else:
        caps = (limit, limit, limit)
    for cap in caps:
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(
                f"expected limit None, a positive integer or a mapping of split names to positive "
                f"integers; received {limit!r}"
            )
    return caps[0], caps[1], caps[2]


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
class ImageOptions:
    """The options every image loader takes and applies alike: decoding, caching, subsets, checks.

    Attributes:
        resolution: Side ``R`` of the square images.
        seed: Seed of the ``limit`` subsets (and of the loader's seeded split).
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name (see
            :data:`Limit`): a seeded random subset stratified by (target, group) cell.
        missing: Images listed but absent: ``"error"`` or ``"skip"`` (see :func:`present_mask`).
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).
    """

    resolution: int = 64
    seed: int = 0
    cache_dir: PathLike | None = None
    limit: Limit = None
    missing: str = "error"
    min_group_size: int = 1

    def present(
        self, paths: Sequence[Path], *, listed_in: str, root: PathLike, setting: str
    ) -> tuple[list[Path], np.ndarray]:
        """The listed images that exist, and the ``(N,)`` bool mask of them among ``paths``.

        Absent images raise or are skipped as ``missing`` says; the other arguments are
        :func:`present_mask`'s, for the messages.
        """
        keep = present_mask(paths, missing=self.missing, listed_in=listed_in, root=root, setting=setting)
        return [p for p, ok in zip(paths, keep, strict=True) if ok], keep


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

    @classmethod
    def from_attributes(
        cls,
        name: str,
        *,
        target: str,
        y: np.ndarray,
        class_names: tuple[str, ...],
        sensitive: Sequence[Attribute],
        paths: list[Path],
        root: Path,
    ) -> LabelledImages:
        """Images whose groups are those of one sensitive attribute, or the product groups of several.

        Args:
            name: Dataset name, also the cache file's prefix.
            target: Target name.
            y: ``(N,)`` int64 class ids.
            class_names: Name of each class id.
            sensitive: The decoded sensitive attributes over the same ``N`` images (see
                ``fairprune.data.groups.product_groups``); their names, joined, name the groups.
            paths: ``N`` image files.
            root: Directory the cache key hashes paths relative to.
        """
        groups, group_names = product_groups(sensitive)
        return cls(
            name=name,
            target=target,
            sensitive_attribute=joined_name([a.name for a in sensitive]),
            paths=paths,
            y=y,
            groups=groups,
            class_names=class_names,
            group_names=group_names,
            root=root,
        )

    def to_splits(self, indices: Indices, options: ImageOptions, *, progress: bool = False) -> Splits:
        """Decode (through the cache) the images of ``indices`` and return the checked splits.

        Args:
            indices: Train, val and test indices into ``paths``.
            options: The resolution, the cache directory, the ``limit`` subsets (seeded by
                ``options.seed``) and the fewest samples of each group in each split.
            progress: Show a progress bar while decoding.

        Returns:
            Splits whose ``x`` are uint8 ``(N, 3, R, R)``, mapped from the cache file.
        """
        rng = np.random.default_rng(options.seed)
        strata = self.strata
        kept = [
            idx if cap is None else idx[stratified_sample(strata[idx], cap, rng)]
            for idx, cap in zip(indices, limit_per_split(options.limit), strict=True)
        ]
        if options.limit is not None:
            logger.info(
                "limit %r: stratified subsets of %s of %s images (train, val, test)",
                options.limit,
                [len(k) for k in kept],
                [len(i) for i in indices],
            )
        indices = (kept[0], kept[1], kept[2])
        used = np.unique(np.concatenate(indices))
        paths = [self.paths[i] for i in used]
        images = cached_images(
            options.cache_dir, (self.name,), paths, options.resolution, root=self.root, progress=progress
        )
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
        splits.check_groups(options.min_group_size)
        return splits
