"""Experiment configuration: dataclasses, TOML loading, ``--set key=value`` overrides.

Unknown keys fail loudly. The resolved configuration is saved next to the results.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairprune.engine import TrainConfig
from fairprune.fairness.constraints import FairnessObjective

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DataConfig",
    "ModelConfig",
    "FairnessConfig",
    "ExperimentConfig",
    "load_config",
    "apply_overrides",
    "config_from_dict",
]


@dataclass
class DataConfig:
    """Which data: a tabular dataset (``adult``, ``compas``, ``german``, ``law``), ``csv`` with
    ``path``, or an image dataset (``celeba``, ``lfw``, ``utkface``, ``fairface``, ``image_csv``)
    with ``root``. ``params`` go to the loader as keywords (e.g. ``resolution``, ``limit``,
    ``split_mode``); ``target`` / ``sensitive_attribute`` left empty take the loader's defaults.
    """

    name: str = "adult"
    target: str | None = None
    sensitive_attribute: str | None = "sex"
    path: str | None = None
    root: str | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """A built-in model by name, with its keyword parameters."""

    name: str = "mlp"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class FairnessConfig:
    """The constrained metric and its tolerance tau: a number, or ``"dense"`` (the dense model's
    validation value: "no less fair than before pruning")."""

    metric: str = "equalized_odds"
    tolerance: float | str = "dense"
    mode: str = "lagrangian"
    strength: float = 5.0
    temperature: float = 1.0


@dataclass
class ExperimentConfig:
    """A grid: methods x sparsities x seeds (x variants), on one dataset and model.

    ``method_params`` maps a method key to its hyperparameters; ``variants`` adds extra labelled
    runs, each a dict with ``method`` and hyperparameters (e.g. ``{method="bifp",
    mask_init="random"}``); ``tolerances`` re-runs the fairness-aware methods at each extra tau;
    ``targets`` and ``sensitive_attributes`` (when given) replace ``data.target`` and
    ``data.sensitive_attribute`` by a grid over every pair.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: list[str] = field(default_factory=lambda: ["dense", "magnitude", "imp", "snip", "bifp"])
    sparsities: list[float] = field(default_factory=lambda: [0.9, 0.97, 0.99])
    seeds: list[int] = field(default_factory=lambda: [0])
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: list[dict[str, Any]] = field(default_factory=list)
    tolerances: list[float] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    sensitive_attributes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "fairness": FairnessConfig,
    "train": TrainConfig,
}


def _build(cls: Any, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {[f'{where}.{k}' for k in unknown]}; "
            f"expected some of {sorted(f'{where}.{n}' for n in names)}"
        )
    if cls is DataConfig and "fractions" in values:
        values = {**values, "fractions": tuple(values["fractions"])}
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from nested plain values."""
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; expected some of {sorted(top)}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a table, got {value!r}")
            kwargs[key] = _build(_SECTIONS[key], value, key)
        else:
            kwargs[key] = value
    cfg = ExperimentConfig(**kwargs)
    _validate(cfg)
    return cfg


def _validate(cfg: ExperimentConfig) -> None:
    from fairprune.pruners import PRUNERS, build_pruner

    for s in cfg.sparsities:
        if not (isinstance(s, (int, float)) and 0.0 <= s < 1.0):
            raise ValueError(f"every sparsity must be a number in [0, 1), got {s!r}")
    if not cfg.methods or not cfg.sparsities or not cfg.seeds:
        raise ValueError("an experiment needs at least one method, one sparsity and one seed")
    for method in [*cfg.methods, *cfg.method_params]:
        if method not in PRUNERS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(PRUNERS)}")
    for method, params in cfg.method_params.items():
        build_pruner(method, **params)
    for variant in cfg.variants:
        params = {k: v for k, v in variant.items() if k not in ("method", "label")}
        if "method" not in variant:
            raise ValueError(f"a variant needs a 'method' key, got {variant!r}")
        build_pruner(variant["method"], **{**cfg.method_params.get(variant["method"], {}), **params})
    tol = cfg.fairness.tolerance
    if isinstance(tol, str) and tol != "dense":
        raise ValueError(f"fairness.tolerance must be a number >= 0 or 'dense', got {tol!r}")
    f = cfg.fairness
    FairnessObjective(f.metric, 0.0 if tol == "dense" else float(tol), f.mode, f.strength, f.temperature)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys; values parsed as TOML, else strings)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value (e.g. data.name=compas), got {item!r}")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {part!r} is not a config section")
        node[parts[-1]] = _parse_value(text.strip())
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``overrides``."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {str(p)!r} does not exist; expected a TOML file")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from err
    return config_from_dict(apply_overrides(raw, overrides or []))
