"""Every dataset by name: the image loaders, the registered tabular datasets and ``"csv"``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fairprune.data.base import Splits
from fairprune.data.celeba import load_celeba
from fairprune.data.fairface import load_fairface
from fairprune.data.image_csv import load_image_csv
from fairprune.data.lfw import load_lfw
from fairprune.data.tabular import load_tabular
from fairprune.data.utkface import load_utkface
from fairprune.datasets_spec import DATASETS as CATALOG
from fairprune.datasets_spec import dataset_spec

__all__ = ["IMAGE_DATASETS", "dataset_names", "load_dataset"]

IMAGE_DATASETS: dict[str, Callable[..., Splits]] = {
    "celeba": load_celeba,
    "lfw": load_lfw,
    "utkface": load_utkface,
    "fairface": load_fairface,
    "image_csv": load_image_csv,
}
"""Image loaders by name; each returns splits whose ``x`` are uint8 ``(N, 3, R, R)``."""


def dataset_names() -> list[str]:
    """Every name :func:`load_dataset` accepts: the data catalog's
    (:data:`fairprune.datasets_spec.DATASETS`)."""
    return list(CATALOG)


def load_dataset(name: str, **kwargs: Any) -> Splits:
    """Load a dataset by name.

    Args:
        name: A name of the data catalog (:data:`fairprune.datasets_spec.DATASETS`): a table
            (loaded by ``load_tabular``) or a key of ``IMAGE_DATASETS``.
        **kwargs: The loader's arguments, e.g. ``root=...`` for an image dataset, ``path=...``
            for ``"csv"``.

    Returns:
        The loader's splits.

    Raises:
        ValueError: ``name`` is unknown (lists the valid names).
        TypeError: The loader does not take one of ``kwargs`` (lists the ones it takes).
    """
    if dataset_spec(name).kind == "tabular":  # unknown names: ValueError listing the catalog's
        loader: Callable[..., Splits] = load_tabular
        kwargs = {"name": name, **kwargs}
    else:
        loader = IMAGE_DATASETS[name]
    try:
        inspect.signature(loader).bind(**kwargs)
    except TypeError as error:
        accepted = [
            p for p in inspect.signature(loader).parameters if not (loader is load_tabular and p == "name")
        ]
        raise TypeError(f"dataset {name!r}: {error}; its loader takes {accepted}") from error
    return loader(**kwargs)
