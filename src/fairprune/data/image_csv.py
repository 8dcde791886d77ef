"""A generic image dataset: a CSV with an image path, a target and a sensitive column per row."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairprune.data.base import Splits, stratified_split_indices
from fairprune.data.groups import Attribute, SensitiveAttribute, attribute_names
from fairprune.data.labelled_images import ImageOptions, Indices, LabelledImages, Limit, setting_hint

__all__ = ["categorical_codes", "check_columns", "load_image_csv", "read_label_csv"]

_SPLIT_NAMES = ("train", "val", "test")


def read_label_csv(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    """Parse a label CSV, with a ``ValueError`` naming the path when it is absent or malformed."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"expected {what} at {str(file)!r}; it is not a file")
    try:
        return pd.read_csv(file)
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"could not parse {what} {str(file)!r}: {error}") from error


def check_columns(frame: pd.DataFrame, columns: dict[str, str], source: str) -> None:
    """Raise if a role's column (``{role: column}``) is not in ``frame``."""
    for role, column in columns.items():
        if column not in frame.columns:
            raise ValueError(
                f"unknown {role} column {column!r} in {source}; expected one of {list(frame.columns)}"
            )


def categorical_codes(
    values: pd.Series, *, order: Sequence[str] = (), positive: object | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class or group ids of ``values`` and their names.

    Args:
        values: One label per sample, no missing values.
        order: Known names in id order (FairFace's races); values outside it follow, sorted.
        positive: If given, binary ids instead: 1 where the value's string form is
            ``str(positive)``, names ``("not <positive>", "<positive>")``.

    Returns:
        ``(N,)`` int64 ids, and the name of each id.
    """
    if pd.api.types.is_float_dtype(values) and bool((values == values.round()).all()):
        values = values.astype(np.int64)  # 0.0/1.0 read as float because of missing values -> "0"/"1"
    strings = values.astype(str)
    if positive is not None:
        ids = (strings == str(positive)).to_numpy(np.int64)
        if not 0 < ids.sum() < len(ids):
            raise ValueError(
                f"positive={positive!r} must be one of several values of {values.name!r} to make 2 classes; "
                f"its values are {sorted(set(strings))}"
            )
        return ids, (f"not {positive}", str(positive))
    present = set(strings)
    names = tuple(n for n in order if n in present) + tuple(sorted(present - set(order)))
    if len(names) < 2:
        raise ValueError(
            f"{values.name!r} has {len(names)} distinct value(s) {list(names)}; expected at least 2"
        )
    ids = pd.Categorical(strings, categories=names).codes.astype(np.int64)
    return ids, names


def _read_rows(
    csv_path: str | os.PathLike[str],
    path_column: str,
    target: str,
    sensitive_attribute: SensitiveAttribute,
    split_column: str | None,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The CSV's rows that have a value in every used column, and the sensitive columns, checked."""
    single = isinstance(sensitive_attribute, str)
    names = attribute_names(sensitive_attribute, target=None if single else target)
    frame = read_label_csv(csv_path, "an image CSV")
    roles = [("path", path_column), ("target", target), *(("sensitive", name) for name in names)]
    if split_column is not None:
        roles.append(("split", split_column))
    for role, column in roles:
        check_columns(frame, {role: column}, repr(str(csv_path)))
    used = [column for _, column in roles]
    if len(set(used)) < len(used):
        received: dict[str, object] = {"path": path_column, "target": target}
        received["sensitive"] = sensitive_attribute if single else list(names)
        received |= {} if split_column is None else {"split": split_column}
        raise ValueError(f"expected distinct path, target, sensitive and split columns; received {received}")
    return frame.dropna(subset=used).reset_index(drop=True), names


def _split_indices(frame: pd.DataFrame, split_column: str | None, strata: np.ndarray, seed: int) -> Indices:
    """Train, val and test rows: by ``split_column``, or seeded and stratified by ``strata``."""
    if split_column is None:
        return stratified_split_indices(strata, (0.7, 0.15, 0.15), seed)
    split = frame[split_column].astype(str).to_numpy()
    unknown = sorted(set(split) - set(_SPLIT_NAMES))
    if unknown:
        raise ValueError(f"split column {split_column!r} has values {unknown}; expected {list(_SPLIT_NAMES)}")
    return (
        np.flatnonzero(split == "train"),
        np.flatnonzero(split == "val"),
        np.flatnonzero(split == "test"),
    )


def load_image_csv(
    csv_path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    path_column: str,
    target: str,
    sensitive_attribute: SensitiveAttribute,
    positive: object | None = None,
    split_column: str | None = None,
    resolution: int = 64,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: Limit = None,
    missing: str = "error",
    min_group_size: int = 1,
) -> Splits:
    """Load images named in a CSV, with a target and a sensitive attribute from its columns.

    Rows missing the path, target or a sensitive value are dropped. Class and group ids follow the
    sorted string forms of the distinct values, which are also their names (or ``positive``
    makes the target binary). A list of sensitive columns makes the intersectional groups that
    occur, named ``"<column>=<value>"`` joined by ``","`` (``"sex=f,age=old"``; ids in
    lexicographic order of the columns' sorted values, see ``fairprune.data.groups``). Without
    ``split_column`` the split is seeded and stratified by (target, group) cell, 0.7/0.15/0.15.

    Args:
        csv_path: The CSV file.
        image_root: Folder the paths in ``path_column`` are relative to (absolute paths stay).
        path_column: Column of image paths.
        target: Target column.
        sensitive_attribute: Sensitive column, or a list of columns.
        positive: If given, class 1 where the target equals it (as a string), class 0 elsewhere.
        split_column: Optional column of ``"train"``/``"val"``/``"test"`` giving the split.
        resolution: Side ``R`` of the square images.
        seed: Seed of the split and of the ``limit`` subsets.
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name
            (``{"train": 10000}``): a seeded random subset stratified by (target, group) cell.
        missing: Images named in the CSV but absent: ``"error"`` or ``"skip"`` (logged).
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).

    Returns:
        Splits named after the CSV file, whose ``x`` are uint8 ``(N, 3, R, R)``, decoded once
        (cached) and kept uint8 in memory; convert batches with ``fairprune.data.images.to_float``.
    """
    frame, names = _read_rows(csv_path, path_column, target, sensitive_attribute, split_column)
    options = ImageOptions(
        resolution=resolution,
        seed=seed,
        cache_dir=cache_dir,
        limit=limit,
        missing=missing,
        min_group_size=min_group_size,
    )
    root = Path(image_root)
    paths, keep = options.present(
        [root / str(p) for p in frame[path_column]],
        listed_in=repr(str(csv_path)),
        root=root,
        setting=setting_hint("image_root", "data.root"),
    )
    frame = frame[keep].reset_index(drop=True)
    y, class_names = categorical_codes(frame[target], positive=positive)
    images = LabelledImages.from_attributes(
        Path(csv_path).name.split(".")[0],
        target=target,
        y=y,
        class_names=class_names,
        sensitive=[Attribute(name, *categorical_codes(frame[name])) for name in names],
        paths=paths,
        root=root,
    )
    return images.to_splits(_split_indices(frame, split_column, images.strata, seed), options)
