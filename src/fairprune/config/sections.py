"""The config's typed sections (pydantic dataclasses) and the names they accept; a section built
in Python reports a bad value in the config file's one line.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from fairprune.datasets_spec import DATASETS as CATALOG
from fairprune.datasets_spec import names_of_kind
from fairprune.errors import ConfigError, validation_message
from fairprune.methods_spec import METHODS
from fairprune.schema import CONSTRAINED_COLUMNS

TABULAR_DATASETS = names_of_kind("tabular")
IMAGE_DATASETS = names_of_kind("image")
DATASETS = tuple(CATALOG)  # the data catalog's names (fairprune.datasets_spec)
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
                raise config_error(err, prefix) from None

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
        distill: Weight of a distillation term toward the dense model in every training loss
            after pruning (:func:`fairprune.engine.distillation`; 0: off). It lowers the share
            of samples on which the pruned and the dense model disagree, which is what bounds
            the paired certificate of ``fairness.tolerance = "dense"``. Costs one forward pass
            of the dense model per batch.
        distill_temperature: Softmax temperature of that term.
        average: Decay of an exponential moving average of the weights (0: off; ``1 - 1/h``
            averages over about ``h`` iterations): every validation check (the dual step,
            checkpoint selection) reads the averaged weights, and a state chosen there is
            what the loop returns (:class:`fairprune.averaging.WeightAverage`).
        lr_schedule: ``"constant"``: every loop trains at ``lr`` (and BiFP's scores at their
            ``mask_lr``) throughout; ``"cosine"``: each loop (dense training, fine-tuning, BiFP's
            bi-level phase and its fine-tuning) anneals its learning rates from their set values
            to 0 along a half cosine over its steps (Loshchilov & Hutter 2017), so that the model
            settles and the last validation checks compare nearly the same state.
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
    distill: NonNegative = 0.0
    distill_temperature: PositiveFloat = 1.0
    average: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"


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


def config_error(error: ValidationError, prefix: str = "") -> ConfigError:
    """One line naming each wrong key (the first three), what was expected and the value
    received (:func:`~fairprune.errors.validation_message`)."""
    return ConfigError("bad config: " + validation_message(error, prefix))
