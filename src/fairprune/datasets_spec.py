"""The data catalog: one declaration per dataset name, torch-free.

Each entry of :data:`DATASETS` says what kind of data the name loads (``tabular`` rows or
``image`` faces), where a config points the loader (``location``) and whether the config's
``data.fractions`` split it (``own_split``: the loader keeps the dataset's official split).
The config's checks, the sweep's loading and shipping, and ``--quick`` read it instead of naming
datasets; :mod:`fairprune.data.registry` maps each name to its loader (a test keeps the two equal).

Adding a dataset: its loader under :mod:`fairprune.data`, one entry here and one in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DATASETS", "DatasetSpec", "dataset_spec", "names_of_kind"]

Location = Literal["packaged", "path", "root", "path_and_root"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset name.

    Attributes:
        kind: ``"tabular"`` (rows; ``data.categorical`` applies) or ``"image"`` (uint8 images).
        location: What the config must name: ``"packaged"`` (shipped in a package: nothing),
            ``"path"`` (a CSV file, ``data.path``), ``"root"`` (a folder, ``data.root``) or
            ``"path_and_root"`` (a CSV naming images under a folder).
        own_split: The loader keeps the dataset's official train/val/test split
            (``data.fractions`` unused).
        needs_target: The config must name the target column (no default target).
    """

    kind: Literal["tabular", "image"]
    location: Location
    own_split: bool = False
    needs_target: bool = False

    @property
    def needs_path(self) -> bool:
        return self.location in ("path", "path_and_root")

    @property
    def needs_root(self) -> bool:
        return self.location in ("root", "path_and_root")


DATASETS: dict[str, DatasetSpec] = {
    "adult": DatasetSpec("tabular", "packaged"),
    "compas": DatasetSpec("tabular", "packaged"),
    "german": DatasetSpec("tabular", "packaged"),
    "law": DatasetSpec("tabular", "packaged"),
    "csv": DatasetSpec("tabular", "path", needs_target=True),
    "celeba": DatasetSpec("image", "root", own_split=True),
    "lfw": DatasetSpec("image", "root", own_split=True),
    "utkface": DatasetSpec("image", "root"),
    "fairface": DatasetSpec("image", "root", own_split=True),
    "image_csv": DatasetSpec("image", "path_and_root", own_split=True),
}
"""Every dataset name a config may give, in the order they are listed to users."""


def names_of_kind(kind: str) -> tuple[str, ...]:
    """The dataset names of one kind, in catalog order."""
    return tuple(name for name, spec in DATASETS.items() if spec.kind == kind)


def dataset_spec(name: str) -> DatasetSpec:
    """The declaration of ``name``.

    Raises:
        ValueError: For a name not in the catalog (listing the names).
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}") from None
