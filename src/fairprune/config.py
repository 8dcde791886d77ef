"""Experiment configuration: typed sections, TOML loading, ``--set key=value`` overrides.

Every key is checked on load, before torch or a pruner is imported: its type, its range, unknown
names (a typo fails loudly), and the hyperparameters of each method against what the method
declares (:mod:`fairprune.methods_spec`). A wrong value is a :class:`~fairprune.errors.ConfigError`
whose one-line message names the key, what was expected and what was received. The resolved
configuration is saved next to the results.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from fairprune.errors import ConfigError, validation_message
from fairprune.methods_spec import BUDGET_FIELDS, DENSE, METHODS, defaults, params_model
from fairprune.schema import CONSTRAINED_COLUMNS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "MODELS",
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
]

TABULAR_DATASETS = ("adult", "compas", "german", "law", "csv")
IMAGE_DATASETS = ("celeba", "lfw", "utkface", "fairface", "image_csv")
DATASETS = (*TABULAR_DATASETS, *IMAGE_DATASETS)
"""Every ``data.name`` (``fairprune.data.registry.dataset_names()``; a test holds them equal)."""
MODELS = ("mlp", "resnet10", "resnet18", "resnet50", "mobilenet_v2", "vit_small")
"""Every ``model.name`` (the keys of ``fairprune.models.MODELS``)."""
PER_GROUP_METRICS = ("excess_degradation",)  # one multiplier per group (fairness.metrics)
BOUNDED_METRICS = ("accuracy_gap", "demographic_parity", "equalized_odds")  # fairness.bounds
CONTROLLERS = ("nupi", "ascent")  # the multipliers' controllers (fairness.controller)
CERTIFIABLE_METRICS = ("accuracy_gap", "demographic_parity", "equalized_odds", "excess_degradation")
"""``fairness.certificate.CERTIFIABLE_METRICS`` (a test holds them equal; this layer imports no torch)."""
MARGIN_METRICS = ("accuracy_gap", "excess_degradation")
"""``fairness.objective.MARGIN_METRICS``: the metrics ``fairness.surrogate = "hinge"`` applies to."""

logger = logging.getLogger(__name__)

_STRICT = ConfigDict(extra="forbid", strict=True)
Steps = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]
Attribute = Name | Annotated[list[Name], Field(min_length=1)]  # a list: intersectional groups
Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]  # a method key
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
T = TypeVar("T")
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def _device(name: str) -> str:
    if not _DEVICE.fullmatch(name):
        raise ValueError("a torch device: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', 'xpu' or 'xpu:N'")
    return name


def _one_line_errors(prefix: str) -> Callable[[type[T]], type[T]]:
    """A section built in Python (``TrainConfig(workers=-1)``) reports a bad value as the
    TOML file would: one :class:`ConfigError` line naming ``prefix`` + the key."""

    def wrap(cls: type[T]) -> type[T]:
        init = cls.__init__

        @functools.wraps(init)
        def checked(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as err:
                raise _config_error(err, prefix) from None

        cls.__init__ = checked  # type: ignore[method-assign]
        return cls

    return wrap


@_one_line_errors("data.")
@dataclass(config=_STRICT)
class DataConfig:
    """Which data: a tabular dataset (``adult``, ``compas``, ``german``, ``law``), ``csv`` with
    ``path``, or an image dataset (``celeba``, ``lfw``, ``utkface``, ``fairface``, ``image_csv``)
    with ``root``. ``params`` go to the loader as keywords (e.g. ``resolution``, ``limit``,
    ``split_mode``); ``target`` / ``sensitive_attribute`` left empty take the loader's defaults.
    ``categorical`` names tabular columns to one-hot encode even though their values look
    numeric (a numeric-looking column with a few non-numeric values is otherwise an error).
    """

    name: Literal[DATASETS] = "adult"  # type: ignore[valid-type]
    target: Name | None = None
    sensitive_attribute: Attribute | None = "sex"
    path: Name | None = None
    root: Name | None = None
    fractions: Annotated[tuple[Fraction, Fraction, Fraction], Field(strict=False)] = (0.7, 0.15, 0.15)
    params: dict[str, Any] = field(default_factory=dict)
    categorical: list[Name] = field(default_factory=list)


@_one_line_errors("model.")
@dataclass(config=_STRICT)
class ModelConfig:
    """A built-in model by name, with its keyword parameters."""

    name: Literal[MODELS] = "mlp"  # type: ignore[valid-type]
    params: dict[str, Any] = field(default_factory=dict)


@_one_line_errors("fairness.")
@dataclass(config=_STRICT)
class FairnessConfig:
    """The constrained metric and its tolerance tau: a number, or ``"dense"`` (the dense model's
    validation value times ``dense_factor``: with 1, "no less fair than before pruning"; with
    0.5, "half the dense model's bias"); how the Lagrange multiplier follows the violation
    (``controller``, ``kp``, ``ema_nu``, ``windup_window``: the fields of
    :class:`fairprune.fairness.FairnessObjective`, documented there).

    Certification (:mod:`fairprune.fairness.certificate`): with ``certify`` a level in (0.5, 1)
    (``"auto"``, the default: 0.95 where every group of the certification split holds enough
    samples and the metric is certifiable, else none, with a warning), ``certify_fraction`` of
    the validation split is held out, stratified by (target, group),
    and read once at the end of each run: the run is ``certified`` when the exact
    (Clopper-Pearson, union-bound) upper confidence bound of the metric on it is within tau —
    for ``tolerance = "dense"`` the paired bound of ``V(pruned) - dense_factor * V(dense)`` on the
    same samples within ``slack``. 0 turns it off (the whole validation split is then read by
    training). ``floor`` guards against levelling down (see
    :class:`~fairprune.selection.CheckpointSelector`; a negative value turns it off) and
    ``direction = "lift"`` gives the surrogate's gradient to the worst-off group only;
    ``surrogate = "hinge"`` uses the convex hinge bound of a sample's correctness in the accuracy
    gap's and the excess degradation's surrogates instead of the sigmoid.
    """

    metric: Literal[tuple(CONSTRAINED_COLUMNS)] = "equalized_odds"  # type: ignore[valid-type]
    tolerance: NonNegative | Literal["dense"] = "dense"
    dense_factor: PositiveFloat = 1.0
    mode: Literal["penalty", "lagrangian"] = "lagrangian"
    penalty_weight: NonNegative = 5.0
    dual_step: NonNegative = 5.0
    temperature: PositiveFloat = 1.0
    confidence: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # 0: off; else in [0.5, 1)
    controller: Literal[CONTROLLERS] = "ascent"  # type: ignore[valid-type]
    kp: NonNegative = 0.5
    ema_nu: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    windup_window: Steps = 4
    certify: Literal["auto"] | Annotated[float, Field(ge=0.0, lt=1.0)] = "auto"  # 0: off; else in (0.5, 1)
    certify_fraction: Fraction = 0.5
    slack: NonNegative = 0.02
    floor: Annotated[float, Field(allow_inf_nan=False)] = 0.02  # < 0: off
    direction: Literal["both", "lift"] = "both"
    surrogate: Literal["sigmoid", "hinge"] = "sigmoid"


@_one_line_errors("train.")
@dataclass(config=_STRICT)
class TrainConfig:
    """Optimisation settings shared by every method: the config's ``[train]`` table, and what
    the training loops (:mod:`fairprune.engine`) and ``fairprune.prune(config=...)`` read.

    Attributes:
        batch_size: Samples per batch (stratified by target and group).
        lr: Learning rate of SGD (momentum 0.9) on the weights.
        weight_decay: L2 weight decay on the weights.
        dense_steps: Iterations to train the dense model.
        eval_every: Iterations between validation checks (dual updates, checkpoint selection).
        selection_band: Validation accuracy band within which a constrained run prefers the
            fairer checkpoint (see :class:`CheckpointSelector`).
        grad_clip: Clip the weights' gradient norm to this (0: off). A large multiplier on a
            heavily pruned model otherwise takes steps that kill every ReLU for good.
        augment: Random flips and 4-pixel crops of training images (uint8 image data only).
        eval_samples: Validation samples checked during training (dual steps, checkpoint
            selection): 0 for the whole validation split, else a fixed subset of this size,
            stratified by (target, group). Validating a CNN on thousands of images every
            ``eval_every`` steps can cost more than the training on a CPU; the reported metrics
            are always computed on the whole splits.
        threads: CPU threads for torch (0: leave torch's default). One thread is the fastest for
            the small tabular models, and on a busy machine two threads per process can be 40x
            slower than one (measured: 207 vs 4.9 ms per MLP step); raise it for CNNs on an idle
            machine.
        device: Torch device name, or ``"auto"``: CUDA when available, else the CPU. Under
            ``torchrun``, ``"cuda"`` means each rank's own GPU (``cuda:LOCAL_RANK``).
        autocast: ``"bf16"``: training forward passes under ``torch.autocast`` in bfloat16 (the
            fairness term and the loss stay float32; validation and reported metrics run in
            float32); ``"none"``: float32 throughout.
        channels_last: Image batches and the model in ``torch.channels_last`` memory format
            (faster convolutions on CUDA tensor cores).
        workers: Training batches through a ``DataLoader`` with this many worker processes
            (pinned memory on CUDA): for image splits mapped from disk. 0: batches are indexed
            out of the in-memory split in this process (the fast path for tabular data). Both
            give the same batches.
    """

    batch_size: Positive = 256
    lr: PositiveFloat = 0.05
    weight_decay: NonNegative = 5e-4
    dense_steps: Steps = 1500
    eval_every: Positive = 25
    selection_band: NonNegative = 0.005
    grad_clip: NonNegative = 1.0
    augment: bool = False
    eval_samples: Steps = 0
    threads: Steps = 1
    device: Annotated[str, AfterValidator(_device)] = "cpu"
    autocast: Literal["none", "bf16"] = "none"
    channels_last: bool = False
    workers: Steps = 0


@_one_line_errors("export.")
@dataclass(config=_STRICT)
class ExportConfig:
    """What is measured and kept of each pruned model.

    Attributes:
        latency: Time the dense and the shipped model side by side (forward passes of one batch
            on ``train.device``; the shipped model is the slimmed one for channel pruning).
        latency_batch: Batch size of the timed forward passes.
        latency_repeats: Timed passes per model (the median is reported).
        save_models: Ship every pruned run's model under ``OUT/models/<run_id>/``, as
            ``fairprune export`` reads it: a directory of :func:`fairprune.export.export_model`
            (sparse safetensors with the masks baked in, or the slimmed model, and the model
            card). Not the ``dense`` run (``OUT/dense/`` keeps it) nor a method whose
            predictions need the sensitive attribute. ``false`` keeps the records only.
    """

    latency: bool = True
    latency_batch: Positive = 64
    latency_repeats: Positive = 10
    save_models: bool = True


@dataclass(config=_STRICT)
class ExperimentConfig:
    """A grid: methods x sparsities x seeds (x variants), on one dataset and model.

    ``method_params`` maps a method key to its hyperparameters; ``variants`` adds extra labelled
    runs, each a dict with ``method`` and hyperparameters (e.g. ``{method="bifp",
    mask_init="random"}``); ``tolerances`` re-runs the fairness-aware methods at each extra tau;
    ``targets`` and ``sensitive_attributes`` (when given) replace ``data.target`` and
    ``data.sensitive_attribute`` by a grid over every pair. ``structure = "channel"`` makes every
    method prune channels (a method's or variant's own ``structure`` wins). Seeds, sparsities,
    methods and tolerances must not repeat.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    structure: Literal["unstructured", "channel"] = "unstructured"
    methods: Annotated[list[Method], Field(min_length=1)] = field(  # type: ignore[valid-type]
        default_factory=lambda: ["dense", "magnitude", "imp", "snip", "bifp"]
    )
    sparsities: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=1)] = field(
        default_factory=lambda: [0.9, 0.97, 0.99]
    )
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = field(
        default_factory=lambda: [0]
    )
    method_params: dict[Method, dict[str, Any]] = field(default_factory=dict)  # type: ignore[valid-type]
    variants: list[dict[str, Any]] = field(default_factory=list)
    tolerances: list[NonNegative] = field(default_factory=list)
    targets: list[Name] = field(default_factory=list)
    sensitive_attributes: list[Attribute] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _config_error(error: ValidationError, prefix: str = "") -> ConfigError:
    """One line naming each wrong key (the first three), what was expected and the value
    received (:func:`~fairprune.errors.validation_message`)."""
    return ConfigError("bad config: " + validation_message(error, prefix))


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
        if key in raw:
            try:
                kwargs[key] = cls(**kwargs[key])
            except ValidationError as err:
                raise _config_error(err, prefix=f"{key}.") from None
    try:
        cfg = ExperimentConfig(**kwargs)
    except ValidationError as err:
        raise _config_error(err) from None
    _validate(cfg)
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
        raise _config_error(err, prefix=f"{where}.") from None


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


def _validate(cfg: ExperimentConfig) -> None:
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
    if d.name in IMAGE_DATASETS and d.root is None:
        raise ConfigError(f"data.root: image dataset {d.name!r} needs the folder that holds it; got None")
    if d.name in ("csv", "image_csv") and d.path is None:
        raise ConfigError(f"data.path: dataset {d.name!r} needs the CSV file; got None")
    if d.name == "csv" and d.target is None and not cfg.targets:
        raise ConfigError("data.target: dataset 'csv' needs the target column; got None")
    if d.categorical and d.name not in TABULAR_DATASETS:
        raise ConfigError(
            f"data.categorical: applies to tabular data ({list(TABULAR_DATASETS)}); got it for {d.name!r}"
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

    def scaled(n: int) -> int:
        return max(1, round(n * QUICK_FACTOR)) if n > 0 else 0

    def budgets(method: str, params: dict[str, Any]) -> dict[str, Any]:
        given = {**defaults(method), **params}
        return {k: scaled(given[k]) for k in METHODS[method].budgets}

    sparsities = sorted(cfg.sparsities)
    if len(sparsities) > 2:
        sparsities = [sparsities[len(sparsities) // 2 - (len(sparsities) % 2 == 0)], sparsities[-1]]
    methods = sorted({*cfg.methods, *(v["method"] for v in cfg.variants)})
    params = {m: {**cfg.method_params.get(m, {}), **budgets(m, method_params(cfg, m))} for m in methods}
    variants = [{**v, **{k: scaled(int(v[k])) for k in BUDGET_FIELDS if k in v}} for v in cfg.variants]
    data, model = cfg.data, cfg.model
    if data.name in _image_datasets():
        resolution = min(int(data.params.get("resolution", QUICK_RESOLUTION)), QUICK_RESOLUTION)
        limit = {
            name: _capped(_split_cap(data.params.get("limit"), name), cap)
            for name, cap in QUICK_LIMIT.items()
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


def _split_cap(limit: Any, split: str) -> Any:
    """The cap that a data ``limit`` (None, a number, or a mapping of split names) puts on
    ``split``; the loader checks its values (``labelled_images.limit_per_split``)."""
    return limit.get(split) if isinstance(limit, dict) else limit


def _capped(given: Any, cap: int) -> Any:
    """``cap``, or a smaller integer ``given`` (anything else is left for the loader to refuse)."""
    if given is None:
        return cap
    return min(given, cap) if isinstance(given, int) and not isinstance(given, bool) else given


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
    return frozenset(IMAGE_DATASETS)


_STRUCTURED = re.compile(r"""\s*[\[{"']""")  # a value meant as a TOML list, table or string


def _parse_value(key: str, text: str) -> Any:
    """``text`` as a TOML value; a bare word that is not TOML is the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as err:
        if _STRUCTURED.match(text):
            raise ConfigError(f"--set {key}: {text!r} is not a TOML value ({err})") from None
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys; values parsed as TOML, else strings)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(key.split(".")):
            raise ConfigError(f"--set expects key=value (e.g. data.name=compas); got {item!r}")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a config section; got {item!r}")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = _parse_value(key, text.strip())
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, quick_run: bool = False
) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``overrides``
    (then :func:`quick` when ``quick_run``).

    Raises:
        ConfigError: For a missing or unreadable file, invalid TOML, or any wrong key.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist or is not a file; expected a TOML file")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as err:
            raise ConfigError(f"config file {str(p)!r} is not readable TOML: {err}") from None
    cfg = config_from_dict(apply_overrides(raw, overrides or []))
    return quick(cfg) if quick_run else cfg
