"""Experiment configuration: typed sections, TOML loading, ``--set key=value`` overrides.

Every key is checked on load, before torch or a pruner is imported: its type, its range, unknown
names (a typo fails loudly), and the hyperparameters of each method against what the method
declares (:mod:`fairprune.methods_spec`). A wrong value is a :class:`~fairprune.errors.ConfigError`
whose one-line message names the key, what was expected and what was received. The resolved
configuration is saved next to the results.
"""

from fairprune.config.checks import config_from_dict, method_params, upgraded
from fairprune.config.load import apply_overrides, load_config
from fairprune.config.quick import QUICK_LIMIT, quick, quick_changes
from fairprune.config.sections import (
    BOUNDED_METRICS,
    CERTIFIABLE_METRICS,
    CONTROLLERS,
    DATASETS,
    IMAGE_DATASETS,
    MARGIN_METRICS,
    MODELS,
    PER_GROUP_METRICS,
    TABULAR_DATASETS,
    DataConfig,
    ExperimentConfig,
    ExportConfig,
    FairnessConfig,
    ModelConfig,
    TrainConfig,
)
from fairprune.errors import ConfigError

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "TABULAR_DATASETS",
    "MODELS",
    "PER_GROUP_METRICS",
    "BOUNDED_METRICS",
    "CONTROLLERS",
    "CERTIFIABLE_METRICS",
    "MARGIN_METRICS",
    "QUICK_LIMIT",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "FairnessConfig",
    "TrainConfig",
    "ExperimentConfig",
    "ExportConfig",
    "quick",
    "quick_changes",
    "method_params",
    "load_config",
    "apply_overrides",
    "config_from_dict",
    "upgraded",
]
