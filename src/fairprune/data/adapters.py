"""The user's data as fairprune's: a torch ``Dataset``, a ``DataLoader`` or a tuple of tensors,
each holding ``(x, y, group)`` samples, turned into one in-memory :class:`GroupData` split.

:func:`as_group_data` is the one entry point (``fairprune.prune`` calls it for every split);
labels and group ids are checked here for what can be checked without the model (integer ids,
float labels that are 0/1), against the model's classes and the group names in ``fairprune.api``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from fairprune.data.base import GroupData, Splits
from fairprune.model_io import Features, as_features, concat, describe, n_samples, sample_shapes

__all__ = [
    "DataInput",
    "DataSplits",
    "as_group_data",
    "as_splits",
    "check_labels",
    "read_splits",
    "resolve_group_names",
]

DataInput = Dataset | DataLoader | tuple[Features, Tensor, Tensor] | GroupData
"""What ``fairprune.prune`` accepts as a split."""

DataSplits = Splits | Sequence[DataInput] | Mapping[str, DataInput]
"""What ``export_model`` accepts as data: ``Splits``, ``(train, val[, test])`` or a dict of them."""
_SPLIT_NAMES = ("train", "val", "test")

_BATCH = 256  # samples per batch when a Dataset is read through a DataLoader


def as_group_data(data: DataInput, *, name: str) -> GroupData:
    """One split held in memory as ``GroupData(x, y, groups)``.

    Args:
        data: A ``GroupData``; a tuple or list of three tensors (or arrays) ``(x, y, group)``
            with one first dim ``N``, where ``x`` may also be a tuple or dict of tensors (see
            :mod:`fairprune.model_io`); a map-style or iterable ``Dataset`` whose items are ``(x, y, group)``
            (read in batches of 256 with torch's default collation); or a ``DataLoader`` whose
            batches are ``(x, y, group)``.
        name: The split's name, for error messages (``"train"``).

    Returns:
        ``x`` as given (a batch ``(N, ...)``; uint8 inputs are treated as images by the engine:
        scaled to ``[-1, 1]``), ``y`` and ``groups`` as int64 ``(N,)``.

    Raises:
        TypeError: ``data`` is none of the above, or an item or batch is not a triple of tensors
            or numbers.
        ValueError: Labels or group ids that are not integers (floats must be whole numbers, e.g.
            0./1. labels), shapes that do not agree, items that cannot be batched, or an empty
            split.
    """
    if isinstance(data, GroupData):
        x, y, groups = data.x, data.y, data.groups
    elif isinstance(data, (tuple, list)):
        x, y, groups = _triple(data, f"the {name} tuple")
    elif isinstance(data, DataLoader):
        x, y, groups = _concat(data, name, "batch")
    elif isinstance(data, Dataset):
        _check_first_item(data, name)
        loader = DataLoader(data, batch_size=_BATCH, shuffle=False, collate_fn=partial(_collate, name=name))
        x, y, groups = _concat(loader, name, "item")
    else:
        raise TypeError(
            f"{name} must be a torch Dataset or DataLoader yielding (x, y, group), or a tuple of "
            f"tensors (x, y, group); received {type(data).__name__}"
        )
    y = _ids(y, f"{name} labels")
    groups = _ids(groups, f"{name} group ids")
    n = n_samples(x)
    if n == 0:
        raise ValueError(f"the {name} split is empty; expected at least one (x, y, group) sample")
    if y.shape != (n,) or groups.shape != (n,):
        raise ValueError(
            f"{name}: expected x (N, ...), y (N,) and group (N,) with one N; received x "
            f"{describe(x)}, y {tuple(y.shape)}, group {tuple(groups.shape)}"
        )
    return GroupData(x, y, groups)


def _describe(item: Any) -> str:
    if isinstance(item, Tensor):
        return f"Tensor{tuple(item.shape)}"
    if isinstance(item, (tuple, list)):
        return f"{type(item).__name__} of {len(item)}: (" + ", ".join(_describe(v) for v in item) + ")"
    if isinstance(item, dict):
        return f"dict with keys {sorted(map(str, item))}"
    return type(item).__name__


def _triple(value: Any, what: str) -> tuple[Features, Tensor, Tensor]:
    """``value`` as features and two tensors, or a TypeError naming what it was."""
    if not (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3):
        raise TypeError(f"{what} must be (x, y, group); received {_describe(value)}")
    y, groups = (torch.as_tensor(v) if not isinstance(v, Tensor) else v for v in value[1:])
    return as_features(value[0], f"x of {what}"), y, groups


def _check_first_item(dataset: Dataset, name: str) -> None:
    """Fail early, on one item, when a map-style dataset does not yield ``(x, y, group)``."""
    if not hasattr(dataset, "__len__"):
        return  # an iterable dataset: its batches are checked as they come
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"the {name} dataset is empty; expected (x, y, group) samples")
    item = dataset[0]
    if not (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3):
        raise TypeError(f"the items of the {name} dataset must be (x, y, group); item 0 is {_describe(item)}")


def _collate(items: list[Any], *, name: str) -> Any:
    """torch's default collation, with an error that says which split and what was expected."""
    try:
        return default_collate(items)
    except (TypeError, RuntimeError) as error:
        raise ValueError(
            f"the items of the {name} dataset cannot be batched ({error}); expected x as tensors or "
            "arrays of one shape (for images, a transform such as ToTensor() and a fixed size), y "
            "and group as numbers"
        ) from error


def _concat(batches: Iterable[Any], name: str, unit: str) -> tuple[Features, Tensor, Tensor]:
    xs: list[Features] = []
    ys, gs = [], []
    for i, batch in enumerate(batches):
        x, y, g = _triple(batch, f"each {unit} of the {name} data (batch {i})")
        xs.append(x)
        ys.append(y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y)
        gs.append(g.reshape(-1) if g.ndim == 2 and g.shape[1] == 1 else g)
    if not xs:
        raise ValueError(f"the {name} data yielded no batch; expected (x, y, group) samples")
    shapes = sorted({_shape_key(sample_shapes(x)) for x in xs}, key=str)
    if len(shapes) > 1:
        raise ValueError(f"the {name} batches hold x of sample shapes {shapes[:4]}; expected one shape")
    return concat(xs), torch.cat(ys), torch.cat(gs)


def _shape_key(shape: Any) -> Any:
    """A sample shape as a hashable, readable key: ``(3,)``, a tuple of them, or a tuple of
    ``(key, shape)`` pairs."""
    if isinstance(shape, dict):
        return tuple((k, tuple(v)) for k, v in shape.items())
    if shape and isinstance(shape[0], list):
        return tuple(tuple(v) for v in shape)
    return tuple(shape)


def _ids(values: Tensor, what: str) -> Tensor:
    """Integer ids ``(N,)`` int64 from integer, bool or whole-number float values."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values.reshape(-1)
    if values.is_complex():
        raise ValueError(f"{what} must be integers; received dtype {values.dtype}")
    if values.is_floating_point():
        bad = values[values != values.round()]
        if bad.numel():
            raise ValueError(
                f"{what} must be whole numbers (class ids, or floats 0./1.); received "
                f"{bad.unique()[:5].tolist()}"
            )
    return values.long()


def check_labels(splits: dict[str, GroupData], n_classes: int, *, one_logit: bool) -> None:
    """Raise ``ValueError`` unless every split's labels are class ids ``0 .. n_classes - 1``.

    ``one_logit``: the model outputs one score per sample (a binary classifier), so the labels
    must be 0/1; other labels mean the model's output does not fit the task.
    """
    for name, data in splits.items():
        received = data.y.unique()
        if bool(((received >= 0) & (received < n_classes)).all()):
            continue
        shown = received[:10].tolist()
        if one_logit:
            raise ValueError(
                f"the model outputs one logit per sample (a binary classifier: labels 0/1), but the "
                f"{name} labels hold {shown}; expected labels 0/1, or a model with one output per "
                f"class, shape (N, {int(received.max()) + 1})"
            )
        raise ValueError(
            f"the {name} labels hold {shown}, outside 0..{n_classes - 1}; the model outputs "
            f"{n_classes} logits per sample, so expected class ids 0..{n_classes - 1}"
        )


def resolve_group_names(splits: dict[str, GroupData], group_names: Sequence[str] | None) -> tuple[str, ...]:
    """The group names (``"0"``, ``"1"``, ... when not given), checked against every split.

    Raises:
        ValueError: A group id outside ``0 .. len(group_names) - 1`` (or negative), names that
            repeat, fewer than two groups, or a split without samples of some group (naming the
            split and the groups it lacks, with its group sizes).
    """
    if group_names is not None:
        names = tuple(str(n) for n in group_names)
        if len(set(names)) != len(names):
            raise ValueError(f"group_names must be distinct; received {list(names)}")
    else:
        highest = max(int(d.groups.max()) for d in splits.values())
        names = tuple(str(g) for g in range(highest + 1))
    for name, data in splits.items():
        ids = data.groups.unique()
        outside = ids[(ids < 0) | (ids >= len(names))]
        if outside.numel():
            raise ValueError(
                f"the {name} group ids hold {outside[:10].tolist()}, outside 0..{len(names) - 1}; "
                f"expected one id per name in group_names={list(names)}"
            )
    if len(names) < 2:
        raise ValueError(f"fairness needs at least two groups; received group_names={list(names)}")
    for name, data in splits.items():
        sizes = torch.bincount(data.groups, minlength=len(names)).tolist()
        missing = [names[g] for g, n in enumerate(sizes) if n == 0]
        if missing:
            raise ValueError(
                f"the {name} set has no samples of group(s) {missing}; every group needs samples in "
                f"every split (group sizes in {name}: {dict(zip(names, sizes, strict=True))})"
            )
    return names


def as_splits(data: DataSplits, *, group_names: Sequence[str] | None = None) -> Splits:
    """The data as :func:`fairprune.prune` takes it, as one :class:`Splits`: a ``Splits``
    (returned as it is), a sequence ``(train, val)`` or ``(train, val, test)``, or a dict with
    those keys, each split a :data:`DataInput` (``val`` stands in for a test split not given).
    Classes are ``"0" .. "C-1"`` with ``C`` the largest label + 1 (at least 2).

    Raises:
        TypeError, ValueError: For another container, other keys, or splits that do not read
            (see :func:`as_group_data` and :func:`resolve_group_names`).
    """
    if isinstance(data, Splits):
        return data
    if isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - set(_SPLIT_NAMES))
        if unknown or not {"train", "val"} <= set(data):
            raise ValueError(
                "data as a dict needs the keys 'train' and 'val' (and optionally 'test'); "
                f"received {sorted(data)}"
            )
        given = dict(data)
    elif isinstance(data, Sequence) and not isinstance(data, str) and len(data) in (2, 3):
        given = dict(zip(_SPLIT_NAMES, data, strict=False))
    else:
        raise TypeError(
            "data must be a Splits, (train, val) or (train, val, test) (each a Dataset, DataLoader or "
            f"tuple (x, y, group)), or a dict with those keys; received {_describe(data)}"
        )
    parts = {name: as_group_data(split, name=name) for name, split in given.items()}
    names = resolve_group_names(parts, group_names)
    n_classes = max(2, max(int(p.y.max()) + 1 for p in parts.values()))
    classes = tuple(str(c) for c in range(n_classes))
    test = parts.get("test", parts["val"])
    return Splits("data", "target", "group", parts["train"], parts["val"], test, classes, names)


def read_splits(
    given: dict[str, DataInput | None], group_names: Sequence[str] | None
) -> tuple[dict[str, GroupData], tuple[str, ...]]:
    """The splits given (``None`` ones left out), in memory, and the group names, checked
    against every split (:func:`as_group_data`, :func:`resolve_group_names`)."""
    data = {name: as_group_data(split, name=name) for name, split in given.items() if split is not None}
    return data, resolve_group_names(data, group_names)
