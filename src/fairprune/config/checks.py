"""A config from plain values (a parsed TOML, an older ``config.json``) and the checks that tie
its sections together, before torch or a pruner is imported.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from fairprune.config.sections import (
    BOUNDED_METRICS,
    CERTIFIABLE_METRICS,
    MARGIN_METRICS,
    PER_GROUP_METRICS,
    TABULAR_DATASETS,
    DataConfig,
    ExperimentConfig,
    ExportConfig,
    FairnessConfig,
    ModelConfig,
    TrainConfig,
    config_error,
)
from fairprune.datasets_spec import dataset_spec
from fairprune.errors import ConfigError
from fairprune.methods_spec import DENSE, METHODS, params_model

logger = logging.getLogger("fairprune.config")

_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "fairness": FairnessConfig,
    "train": TrainConfig,
    "export": ExportConfig,
}


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from nested plain values (a parsed TOML).

    Raises:
        ConfigError: Naming the first wrong keys, what each expects and what it received.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a config is a table of keys; got {raw!r}")
    kwargs = upgraded(raw)
    for key, cls in _SECTIONS.items():
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"{key}: expected a table of keys ([{key}] in TOML); got {raw[key]!r}")
        if key in raw:  # a section reports its own bad values in one line (_one_line_errors)
            kwargs[key] = cls(**kwargs[key])
    try:
        cfg = ExperimentConfig(**kwargs)
    except ValidationError as err:
        raise config_error(err) from None
    validate_sections(cfg)
    return cfg


def upgraded(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict (a TOML file, an older run directory's ``config.json``) with the keys that
    were renamed under their current names."""
    out = dict(raw)
    if isinstance(raw.get("fairness"), dict) and "strength" in raw["fairness"]:
        out["fairness"] = _renamed_strength(raw["fairness"])
    return out


def _renamed_strength(fairness: dict[str, Any]) -> dict[str, Any]:
    """``fairness.strength`` (before 2026-12-05: lambda or eta by mode) as the setting of its
    mode, ``penalty_weight`` or ``dual_step``, so that older configs and run directories load."""
    table = dict(fairness)
    strength = table.pop("strength")
    key = "penalty_weight" if table.get("mode") == "penalty" else "dual_step"
    if key in table:
        raise ConfigError(
            f"fairness.strength: an older name of fairness.{key}; expected one of them, got both"
        )
    logger.warning(
        "fairness.strength is now fairness.%s (mode %r); read it as that",
        key,
        table.get("mode", "lagrangian"),
    )
    return {**table, key: strength}


def method_params(
    cfg: ExperimentConfig, method: str, variant: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The hyperparameters a method runs with: the experiment's ``structure`` (when "channel"),
    then ``method_params[method]``, then the variant's own keys."""
    own = {k: v for k, v in (variant or {}).items() if k not in ("method", "label")}
    base = {"structure": "channel"} if cfg.structure == "channel" and method != DENSE else {}
    return {**base, **cfg.method_params.get(method, {}), **own}


def _check_params(method: str, params: dict[str, Any], where: str) -> None:
    try:
        params_model(method)(**params)
    except ValidationError as err:
        raise config_error(err, prefix=f"{where}.") from None


def _distinct(cfg: ExperimentConfig) -> None:
    for key in ("methods", "sparsities", "seeds", "tolerances", "targets", "sensitive_attributes"):
        values = [repr(v) for v in getattr(cfg, key)]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(
                f"{key}: expected distinct values (a repeat would run the same jobs twice); got "
                f"{', '.join(repeated)} more than once in {getattr(cfg, key)!r}"
            )


def _check_methods(cfg: ExperimentConfig) -> None:
    for method in cfg.method_params:
        _check_params(method, method_params(cfg, method), f"method_params.{method}")
    labels = set(cfg.methods)
    for i, variant in enumerate(cfg.variants):
        method = variant.get("method")
        if method not in METHODS:
            raise ConfigError(f"variants[{i}].method: expected one of {sorted(METHODS)}; got {method!r}")
        label = variant.get("label")
        if label is not None and not (isinstance(label, str) and label):
            raise ConfigError(f"variants[{i}].label: expected a non-empty string; got {label!r}")
        _check_params(method, method_params(cfg, method, variant), f"variants[{i}]")
        if label is not None and label in labels:
            raise ConfigError(f"variants[{i}].label: expected a label not used yet; got {label!r}")
        labels.add(label or "")
    run = {*cfg.methods, *(v["method"] for v in cfg.variants)}  # method_params may name others
    for method in sorted(run):
        supported = METHODS[method].metrics
        if supported is not None and cfg.fairness.metric not in supported:
            raise ConfigError(
                f"fairness.metric: method {method!r} supports the fairness metrics {list(supported)}; "
                f"got {cfg.fairness.metric!r}"
            )


def validate_sections(cfg: ExperimentConfig) -> None:
    """The checks that tie several keys together (types and ranges are checked on construction)."""
    _distinct(cfg)
    _check_methods(cfg)
    f, d = cfg.fairness, cfg.data
    if f.dense_factor != 1.0 and f.tolerance != "dense":
        raise ConfigError(
            f"fairness.dense_factor: scales tolerance = 'dense' only; got dense_factor = {f.dense_factor} "
            f"with tolerance = {f.tolerance!r}"
        )
    if f.metric in PER_GROUP_METRICS and f.tolerance == "dense":
        raise ConfigError(
            f"fairness.tolerance: 'dense' means 0 for {f.metric!r} (the dense model does not degrade "
            "relative to itself); expected a number, e.g. 0.02; got 'dense'"
        )
    if f.confidence != 0.0 and not 0.5 <= f.confidence < 1.0:
        raise ConfigError(f"fairness.confidence: expected 0 (off) or a level in [0.5, 1); got {f.confidence}")
    if f.certify != "auto" and f.certify != 0.0 and not 0.5 < f.certify < 1.0:
        raise ConfigError(
            f"fairness.certify: expected 'auto', 0 (off) or a confidence level in (0.5, 1); got {f.certify}"
        )
    if f.certify not in ("auto", 0.0) and f.metric not in CERTIFIABLE_METRICS:
        raise ConfigError(
            f"fairness.certify: certifies the metrics {list(CERTIFIABLE_METRICS)}; got {f.metric!r} "
            "(set fairness.certify = 0 to run without a certificate)"
        )
    if f.surrogate != "sigmoid" and f.metric not in MARGIN_METRICS:
        raise ConfigError(
            f"fairness.surrogate: {f.surrogate!r} applies to the metrics {list(MARGIN_METRICS)}; got it "
            f"for {f.metric!r} (use 'sigmoid')"
        )
    if f.confidence != 0.0 and f.metric not in BOUNDED_METRICS:
        raise ConfigError(
            f"fairness.confidence: bounds the metrics {list(BOUNDED_METRICS)}; got it for {f.metric!r}"
        )
    if f.metric in PER_GROUP_METRICS and f.mode != "lagrangian":
        raise ConfigError(
            f"fairness.mode: {f.metric!r} has one multiplier per group; expected 'lagrangian'; got {f.mode!r}"
        )
    if abs(sum(d.fractions) - 1.0) > 1e-6:
        raise ConfigError(f"data.fractions: expected three fractions summing to 1; got {list(d.fractions)}")
    spec = dataset_spec(d.name)
    if spec.needs_root and d.root is None:
        raise ConfigError(
            f"data.root: {spec.kind} dataset {d.name!r} needs the folder that holds it; got None"
        )
    if spec.needs_path and d.path is None:
        raise ConfigError(f"data.path: dataset {d.name!r} needs the CSV file; got None")
    if spec.needs_target and d.target is None and not cfg.targets:
        raise ConfigError(f"data.target: dataset {d.name!r} needs the target column; got None")
    if d.categorical and spec.kind != "tabular":
        raise ConfigError(
            f"data.categorical: applies to tabular data ({list(TABULAR_DATASETS)}); got it for {d.name!r}"
        )
