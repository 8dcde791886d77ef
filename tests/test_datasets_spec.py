"""The data catalog (``fairprune.datasets_spec``) against the loaders it declares, and the config
checks that read it."""

from __future__ import annotations

import inspect

import pytest

from fairprune.config import DATASETS, IMAGE_DATASETS, TABULAR_DATASETS, config_from_dict
from fairprune.data.registry import IMAGE_DATASETS as IMAGE_LOADERS
from fairprune.data.registry import dataset_names, load_dataset
from fairprune.data.tabular import load_tabular
from fairprune.datasets_spec import DATASETS as CATALOG
from fairprune.datasets_spec import dataset_spec


def test_the_catalog_is_the_registry_and_the_configs_names():
    assert dataset_names() == list(CATALOG) == list(DATASETS)
    assert set(IMAGE_LOADERS) == set(IMAGE_DATASETS) == {n for n, s in CATALOG.items() if s.kind == "image"}
    assert set(TABULAR_DATASETS) == {n for n, s in CATALOG.items() if s.kind == "tabular"}


@pytest.mark.parametrize("name", [n for n, s in CATALOG.items() if s.kind == "image"])
def test_each_image_loader_takes_what_its_declaration_says(name: str):
    spec, params = CATALOG[name], inspect.signature(IMAGE_LOADERS[name]).parameters
    assert ("root" in params) == (spec.location == "root")
    assert ({"csv_path", "image_root"} <= set(params)) == (spec.location == "path_and_root")
    assert ("fractions" in params) == (not spec.own_split)  # data.fractions reach the loaders that split


def test_tables_are_split_by_the_config_and_named_by_path():
    params = inspect.signature(load_tabular).parameters
    assert {"path", "fractions", "categorical"} <= set(params)
    assert [n for n, s in CATALOG.items() if s.needs_target] == ["csv"]
    assert all(not s.own_split for s in CATALOG.values() if s.kind == "tabular")


def test_unknown_names_and_missing_locations_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of \['adult'"):
        dataset_spec("mnist")
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of"):
        load_dataset("mnist")
    root = r"data.root: image dataset 'utkface' needs the folder that holds it"
    with pytest.raises(ValueError, match=root):
        config_from_dict({"data": {"name": "utkface"}})
    with pytest.raises(ValueError, match=r"data.path: dataset 'image_csv' needs the CSV file"):
        config_from_dict({"data": {"name": "image_csv", "root": "x"}})
    with pytest.raises(ValueError, match=r"data.target: dataset 'csv' needs the target column"):
        config_from_dict({"data": {"name": "csv", "path": "x.csv"}})
    with pytest.raises(ValueError, match=r"data.categorical: applies to tabular data"):
        config_from_dict({"data": {"name": "lfw", "root": "x", "categorical": ["a"]}})
