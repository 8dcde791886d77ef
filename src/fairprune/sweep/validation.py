"""Everything an experiment needs, checked before anything is trained or written.

:func:`check_experiment` loads the data of every cell (every seed for tabular data, whose split
depends on the seed and costs little; the first seed of an image data set), checks its columns,
its groups in every split and its number of classes against the fairness metric and the
methods, builds the model and every pruner once, and checks the output directory. Only then does
the sweep write ``config.json`` or move old contents aside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from fairprune.config import DataConfig, ExperimentConfig, upgraded
from fairprune.data import Splits
from fairprune.data.registry import load_dataset
from fairprune.datasets_spec import dataset_spec
from fairprune.engine import TrainConfig
from fairprune.errors import ConfigError, DataError
from fairprune.methods_spec import METHODS
from fairprune.model_io import input_shape
from fairprune.models import build_model
from fairprune.pruners import build_pruner
from fairprune.schema import BINARY_METRICS
from fairprune.sweep.grid import data_cells, extends, variants_of
from fairprune.sweep.store import check_out_dir, check_same_config
from fairprune.task import resolved

__all__ = ["check_experiment", "load_splits", "train_config"]


def train_config(cfg: ExperimentConfig) -> TrainConfig:
    """The engine's training settings of ``cfg`` (``device="auto"`` resolved here).

    Raises:
        ConfigError: If ``train.device`` is not a device torch knows.
    """
    try:
        return resolved(cfg.train)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_splits(d: DataConfig, seed: int) -> Splits:
    """The splits of a data config (tabular or image) for ``seed``.

    Raises:
        DataError: Naming the data set (and file), for anything the loader rejects.
    """
    kwargs: dict[str, Any] = {"seed": seed, **d.params}
    if d.target is not None:
        kwargs["target"] = d.target
    if d.sensitive_attribute is not None:
        kwargs["sensitive_attribute"] = d.sensitive_attribute
    spec = dataset_spec(d.name)
    if spec.location == "path_and_root":  # a CSV (data.path) naming images under data.root
        kwargs.update(csv_path=d.path, image_root=d.root)
    elif spec.location == "root":
        kwargs["root"] = d.root
    else:  # a packaged table (path None) or a CSV file
        kwargs["path"] = d.path
    if not spec.own_split:  # data.fractions, unless data.params names the image loader's own
        if spec.kind == "tabular":
            kwargs["fractions"] = d.fractions
        else:
            kwargs.setdefault("fractions", d.fractions)
    if d.categorical:
        kwargs["categorical"] = list(d.categorical)
    where = d.name + (f" ({d.path})" if d.path else f" ({d.root})" if d.root else "")
    try:
        return load_dataset(d.name, **kwargs)
    except (ValueError, TypeError, KeyError, OSError, pd.errors.ParserError) as err:
        hint = ""
        default = DataConfig().sensitive_attribute
        if spec.kind == "image" and d.sensitive_attribute == default and str(default) in str(err):
            hint = f" (data.sensitive_attribute is {default!r} when not set, Adult's; name one of {d.name}'s)"
        raise DataError(f"data {where}, seed {seed}: {err}{hint}") from None


def _check_task(cfg: ExperimentConfig, splits: Splits, where: str) -> None:
    """Metric and methods against the number of classes; the model builds for this data."""
    metric = cfg.fairness.metric
    if metric in BINARY_METRICS and splits.n_classes != 2:
        raise ConfigError(
            f"fairness.metric: {metric!r} needs a binary target; the target {splits.target!r} of "
            f"{where} has {splits.n_classes} classes {list(splits.class_names)[:10]}. Expected "
            "'accuracy_gap', 'worst_group_accuracy' or 'excess_degradation', or a binary target"
        )
    binary_only = sorted(v.label for v in variants_of(cfg) if METHODS[v.method].binary_only)
    if binary_only and splits.n_classes != 2:
        raise ConfigError(
            f"methods: {binary_only} fit thresholds on a binary classifier; the target "
            f"{splits.target!r} of {where} has {splits.n_classes} classes"
        )
    try:
        build_model(
            cfg.model.name,
            input_shape(splits.train.x),
            splits.n_classes,
            **cfg.model.params,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"model: {cfg.model.name!r} with params {cfg.model.params} on {where}: {err}"
        ) from None


def _check_pruners(cfg: ExperimentConfig) -> None:
    """Every variant has its own label, and its pruner builds (the pruner's own checks of how
    hyperparameters combine)."""
    labels = [variant.label for variant in variants_of(cfg)]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"variants: expected distinct runs; the labels {repeated} name more than one")
    for variant in variants_of(cfg):
        try:
            build_pruner(variant.method, **variant.params)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"method {variant.label!r} with {variant.params}: {err}") from None


def check_experiment(cfg: ExperimentConfig, out: Path, *, restart: bool) -> TrainConfig:
    """Check all of ``cfg`` and the output directory; write nothing. Returns the training
    settings to run with.

    Raises:
        ConfigError, DataError, OutputDirError: The first problem found, in one line.
    """
    resolved = json.loads(json.dumps(cfg.to_dict()))  # as config.json reads back: lists, not tuples
    defaults = json.loads(json.dumps(ExperimentConfig().to_dict()))
    check_out_dir(out)
    train = train_config(cfg)
    _check_pruners(cfg)
    for data, _ in data_cells(cfg):
        seeds = cfg.seeds[:1] if dataset_spec(data.name).kind == "image" else cfg.seeds
        for seed in seeds:
            splits = load_splits(data, seed)
            if seed == seeds[0]:
                _check_task(cfg, splits, repr(splits.name))
    check_same_config(out, resolved, defaults, extends, restart=restart, upgrade=upgraded)
    return train
