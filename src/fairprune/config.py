"""Experiment configuration: dataclasses, TOML loading, ``--set key=value`` overrides.

Unknown keys fail loudly. The resolved configuration is saved next to the results.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairprune.data.labelled_images import SPLIT_NAMES, limit_per_split
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
    "ExportConfig",
    "quick",
    "quick_changes",
    "method_params",
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
    sensitive_attribute: str | list[str] | None = "sex"  # a list: intersectional groups
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
    validation value times ``dense_factor``: with 1, "no less fair than before pruning"; with
    0.5, "half the dense model's bias")."""

    metric: str = "equalized_odds"
    tolerance: float | str = "dense"
    dense_factor: float = 1.0
    mode: str = "lagrangian"
    strength: float = 5.0
    temperature: float = 1.0
    confidence: float = 0.0


@dataclass
class ExportConfig:
    """What is measured and kept of each pruned model.

    Attributes:
        latency: Time the dense and the shipped model side by side (forward passes of one batch
            on ``train.device``; the shipped model is the slimmed one for channel pruning).
        latency_batch: Batch size of the timed forward passes.
        latency_repeats: Timed passes per model (the median is reported).
        save_models: Save every pruned model (slimmed when structured) with its masks and model
            card under ``OUT/models/<run_id>/`` (see :func:`fairprune.export.save_model`).
    """

    latency: bool = True
    latency_batch: int = 64
    latency_repeats: int = 10
    save_models: bool = False


@dataclass
class ExperimentConfig:
    """A grid: methods x sparsities x seeds (x variants), on one dataset and model.

    ``method_params`` maps a method key to its hyperparameters; ``variants`` adds extra labelled
    runs, each a dict with ``method`` and hyperparameters (e.g. ``{method="bifp",
    mask_init="random"}``); ``tolerances`` re-runs the fairness-aware methods at each extra tau;
    ``targets`` and ``sensitive_attributes`` (when given) replace ``data.target`` and
    ``data.sensitive_attribute`` by a grid over every pair. ``structure = "channel"`` makes every
    method prune channels (a method's or variant's own ``structure`` wins).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    structure: str = "unstructured"
    methods: list[str] = field(default_factory=lambda: ["dense", "magnitude", "imp", "snip", "bifp"])
    sparsities: list[float] = field(default_factory=lambda: [0.9, 0.97, 0.99])
    seeds: list[int] = field(default_factory=lambda: [0])
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: list[dict[str, Any]] = field(default_factory=list)
    tolerances: list[float] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    sensitive_attributes: list[str | list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "fairness": FairnessConfig,
    "train": TrainConfig,
    "export": ExportConfig,
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


def method_params(
    cfg: ExperimentConfig, method: str, variant: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The hyperparameters a method runs with: the experiment's ``structure`` (when "channel"),
    then ``method_params[method]``, then the variant's own keys."""
    own = {k: v for k, v in (variant or {}).items() if k not in ("method", "label")}
    base = {"structure": "channel"} if cfg.structure == "channel" and method != "dense" else {}
    return {**base, **cfg.method_params.get(method, {}), **own}


def _validate(cfg: ExperimentConfig) -> None:
    from fairprune.pruners import PRUNERS, STRUCTURES, build_pruner

    for s in cfg.sparsities:
        if not (isinstance(s, (int, float)) and 0.0 <= s < 1.0):
            raise ValueError(f"every sparsity must be a number in [0, 1), got {s!r}")
    if not cfg.methods or not cfg.sparsities or not cfg.seeds:
        raise ValueError("an experiment needs at least one method, one sparsity and one seed")
    for method in [*cfg.methods, *cfg.method_params]:
        if method not in PRUNERS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(PRUNERS)}")
    if cfg.structure not in STRUCTURES:
        raise ValueError(f"unknown structure {cfg.structure!r}; expected one of {STRUCTURES}")
    built = [(m, build_pruner(m, **method_params(cfg, m))) for m in [*cfg.methods, *cfg.method_params]]
    for variant in cfg.variants:
        if "method" not in variant:
            raise ValueError(f"a variant needs a 'method' key, got {variant!r}")
        built.append(
            (
                variant["method"],
                build_pruner(variant["method"], **method_params(cfg, variant["method"], variant)),
            )
        )
    run = {*cfg.methods, *(v["method"] for v in cfg.variants)}  # method_params may name others
    for method, pruner in built:
        if method not in run:
            continue
        supported = getattr(pruner, "supported_metrics", None)
        if supported is not None and cfg.fairness.metric not in supported:
            raise ValueError(
                f"method {method!r} supports the fairness metrics {sorted(supported)}; the "
                f"experiment's fairness.metric is {cfg.fairness.metric!r}"
            )
    tol = cfg.fairness.tolerance
    if isinstance(tol, str) and tol != "dense":
        raise ValueError(f"fairness.tolerance must be a number >= 0 or 'dense', got {tol!r}")
    factor = cfg.fairness.dense_factor
    if not (isinstance(factor, (int, float)) and factor > 0):
        raise ValueError(f"fairness.dense_factor must be a number > 0, got {factor!r}")
    if factor != 1.0 and tol != "dense":
        raise ValueError(f"fairness.dense_factor scales tolerance = 'dense'; got tolerance = {tol!r}")
    f = cfg.fairness
    objective = FairnessObjective(
        f.metric,
        0.0 if tol == "dense" else float(tol),
        f.mode,
        f.strength,
        f.temperature,
        confidence=f.confidence,
    )
    if objective.per_group and tol == "dense":
        raise ValueError(
            f"fairness.tolerance 'dense' means 0 for {f.metric!r} (the dense model does not degrade "
            "relative to itself); expected a number, e.g. 0.02"
        )


QUICK_FACTOR = 0.1  # --quick scales every iteration budget by this
QUICK_RESOLUTION = 32  # px, at most, for image data under --quick
QUICK_BATCH = 64
# models whose CPU training step at 32 px costs about twice ResNet10's (measured, one thread:
# MobileNetV2 200 ms against 105 ms at batch 64) get half the batch, so that a quick run of a
# paper config stays under 10 minutes on a 2-core machine
QUICK_BATCH_BY_MODEL = {"mobilenet_v2": 32}
QUICK_EVAL_SAMPLES = 300
# image data: at most this many samples per split (a seeded subset stratified by (target, group),
# the loaders' ``limit``), so that a quick run's time does not grow with the data set: the final
# evaluations of every run and the decoding scale with the splits, the training does not
QUICK_LIMIT = {"train": 10_000, "val": 2_500, "test": 2_500}
QUICK_LATENCY_REPEATS = 4
QUICK_MIN_EVAL_EVERY = 20  # validating a CNN more often costs more than the quick run trains
STEP_FIELDS = ("steps", "finetune_steps", "round_steps", "fair_steps")  # iteration budgets of methods
_FAST_STEM_MODELS = ("resnet10", "resnet18", "resnet50", "mobilenet_v2")


def quick(cfg: ExperimentConfig) -> ExperimentConfig:
    """The smoke-run version of ``cfg`` (``fairprune run --quick``), to check a long job first.

    One seed, the first data cell, no tau sweep; at most two sparsities (the middle one of the
    list and the largest); every iteration budget (``train.dense_steps`` and each method's
    ``steps`` / ``finetune_steps`` / ``round_steps`` / ``fair_steps``, given or default) times
    ``QUICK_FACTOR``, validation every ``eval_every * QUICK_FACTOR`` iterations (at least 20) so
    that dual steps and checkpoint selection still happen; batches of at most ``QUICK_BATCH``
    (``QUICK_BATCH_BY_MODEL`` for models slow on a CPU);
    in-training validation on at most ``QUICK_EVAL_SAMPLES`` samples; at most
    ``QUICK_LATENCY_REPEATS`` timed passes per model. Image data: at most
    ``QUICK_RESOLUTION`` px, at most ``QUICK_LIMIT`` samples per split (the loaders' ``limit``:
    seeded subsets stratified by (target, group); a smaller ``limit`` given stays), and the CNNs
    keep torchvision's downsampling stem (``small_input = false``), 10x cheaper at 32 px.
    :func:`quick_changes` lists what changed.
    """
    from fairprune.pruners import build_pruner

    def scaled(n: int) -> int:
        return max(1, round(n * QUICK_FACTOR)) if n > 0 else 0

    def budgets(method: str, params: dict[str, Any]) -> dict[str, Any]:
        built = dataclasses.asdict(build_pruner(method, **params))  # type: ignore[call-overload]
        return {k: scaled(v) for k, v in built.items() if k in STEP_FIELDS}

    sparsities = sorted(cfg.sparsities)
    if len(sparsities) > 2:
        sparsities = [sparsities[len(sparsities) // 2 - (len(sparsities) % 2 == 0)], sparsities[-1]]
    methods = sorted({*cfg.methods, *(v["method"] for v in cfg.variants)})
    params = {m: {**cfg.method_params.get(m, {}), **budgets(m, method_params(cfg, m))} for m in methods}
    variants = [{**v, **{k: scaled(int(v[k])) for k in STEP_FIELDS if k in v}} for v in cfg.variants]
    data, model = cfg.data, cfg.model
    if data.name in _image_datasets():
        resolution = min(int(data.params.get("resolution", QUICK_RESOLUTION)), QUICK_RESOLUTION)
        given = limit_per_split(data.params.get("limit"))
        limit = {
            name: QUICK_LIMIT[name] if cap is None else min(cap, QUICK_LIMIT[name])
            for name, cap in zip(SPLIT_NAMES, given, strict=True)
        }
        data = dataclasses.replace(data, params={**data.params, "resolution": resolution, "limit": limit})
        if model.name in _FAST_STEM_MODELS:
            model = dataclasses.replace(model, params={**model.params, "small_input": False})
    t = cfg.train
    train = dataclasses.replace(
        t,
        dense_steps=scaled(t.dense_steps),
        eval_every=max(QUICK_MIN_EVAL_EVERY, scaled(t.eval_every)),
        batch_size=min(t.batch_size, QUICK_BATCH_BY_MODEL.get(model.name, QUICK_BATCH)),
        eval_samples=min(t.eval_samples or QUICK_EVAL_SAMPLES, QUICK_EVAL_SAMPLES),
    )
    export = dataclasses.replace(
        cfg.export, latency_repeats=min(cfg.export.latency_repeats, QUICK_LATENCY_REPEATS)
    )
    out = dataclasses.replace(
        cfg,
        data=data,
        model=model,
        train=train,
        export=export,
        seeds=cfg.seeds[:1],
        sparsities=sparsities,
        tolerances=[],
        targets=cfg.targets[:1],
        sensitive_attributes=cfg.sensitive_attributes[:1],
        method_params=params,
        variants=variants,
    )
    _validate(out)
    return out


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``{"train.dense_steps": 4000, ...}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "limit":
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{value[0]!r}, {value[1]!r}, ... {value[-1]!r}] ({len(value)} values)"
    return repr(value)


def quick_changes(cfg: ExperimentConfig, quick_cfg: ExperimentConfig) -> list[str]:
    """What :func:`quick` changed, one ``"key: before -> after"`` line per config key."""
    before, after = _flat(cfg.to_dict()), _flat(quick_cfg.to_dict())
    return [
        f"{key}: {_short(before[key]) if key in before else '(not set)'} -> {_short(after[key])}"
        for key in after
        if before.get(key, dataclasses.MISSING) != after[key] and after[key] != {}
    ]


def _image_datasets() -> frozenset[str]:
    from fairprune.data.registry import IMAGE_DATASETS

    return frozenset(IMAGE_DATASETS)


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


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, quick_run: bool = False
) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``overrides``
    (then :func:`quick` when ``quick_run``)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {str(p)!r} does not exist; expected a TOML file")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from err
    cfg = config_from_dict(apply_overrides(raw, overrides or []))
    return quick(cfg) if quick_run else cfg
