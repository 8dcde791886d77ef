"""One call to prune a classifier fairly: :func:`prune`.

Built on the harness's pieces (the engine's :class:`~fairprune.engine.Task`, the pruners'
registry, masks, channel slimming, the exact metrics), for a user's own model and data: any
``nn.Module`` with ``(N, C)`` logits or one binary logit ``(N,)``/``(N, 1)``, and data as a
``Dataset``, ``DataLoader`` or tuple of tensors yielding ``(x, y, group)``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fairprune.batches import model_inputs
from fairprune.budgets import (
    REFERENCE_BATCH,
    REFERENCE_TRAIN_SIZE,
    default_batch,
    default_budgets,
    train_config_for,
)
from fairprune.certification import (
    AUTO,
    certify_models,
    confidence_of,
    hold_out,
    resolve_tau,
    with_certification,
)
from fairprune.config import FairnessConfig
from fairprune.data.adapters import DataInput, check_labels, read_splits
from fairprune.data.base import GroupData, Splits
from fairprune.distributed import is_main_process, process_group
from fairprune.engine import TrainConfig
from fairprune.fairness.certificate import CERTIFIABLE_METRICS, Certificate
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import dense_and_pruned, predict
from fairprune.masks import bake_masks, prunable_parameters
from fairprune.masks import sparsity as mask_sparsity
from fairprune.model_io import rows
from fairprune.models.binary import TwoLogits, output_classes, unwrap
from fairprune.prunable import Prunable, coverage, select_prunable
from fairprune.pruners import Pruner, PruneResult, build_pruner, run_pruner
from fairprune.result import PruningResult
from fairprune.schema import name_groups
from fairprune.structured import check_slim
from fairprune.task import Task, resolved

__all__ = [
    "PruningResult",
    "prune",
    "default_batch",
    "default_budgets",
    "REFERENCE_BATCH",
    "REFERENCE_TRAIN_SIZE",
]

logger = logging.getLogger(__name__)

FAIRNESS_DEFAULTS = FairnessConfig()
"""A sweep's ``[fairness]`` defaults, which :func:`prune` shares."""


def _device(device: str) -> str:
    """``device``, with ``"auto"`` resolved to CUDA when available, else the CPU."""
    try:
        return resolved(TrainConfig(device=device)).device
    except ValueError as error:
        raise ValueError(f"device must be 'auto' or a torch device name; received {device!r}") from error


_INTERNAL = ("metric", "tolerance", "certify", "dense_factor", "certify_scale")
_SETTINGS = tuple(f.name for f in dataclasses.fields(FairnessObjective) if f.name not in _INTERNAL)
"""What ``fairness_settings`` may set: the fields of :class:`FairnessObjective` but the arguments
of their own (``fairness``, ``tolerance``, ``certify``) and what the run derives (the dense
factor and the certification split's scale)."""
_GUARD = {"slack": FAIRNESS_DEFAULTS.slack, "floor": FAIRNESS_DEFAULTS.floor}
"""``fairness_settings`` defaults of :func:`prune` that differ from :class:`FairnessObjective`'s
(whose defaults keep a bare objective unguarded): those of a sweep's ``[fairness]`` table."""


def _objective(
    fairness: str | None,
    tolerance: float | str,
    settings: Mapping[str, Any] | None = None,
    certify: float | str = 0.0,
) -> FairnessObjective | None:
    """The objective to constrain (its tolerance resolved later), with ``tolerance``, ``certify``
    and the ``fairness_settings`` checked."""
    unknown = sorted(set(settings or {}) - set(_SETTINGS))
    if unknown:
        raise ValueError(f"fairness_settings: expected keys among {list(_SETTINGS)}; received {unknown}")
    if fairness is None:
        return None
    dense = isinstance(tolerance, str) and tolerance == "dense"
    if not dense and not (isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool)):
        raise ValueError(f"tolerance must be a number >= 0 or 'dense'; received {tolerance!r}")
    level = 0.0 if certify == AUTO and fairness not in CERTIFIABLE_METRICS else confidence_of(certify)
    objective = FairnessObjective(
        fairness, 0.0 if dense else float(tolerance), certify=level, **{**_GUARD, **(settings or {})}
    )
    if objective.per_group and dense:
        raise ValueError(
            f"tolerance='dense' means 0 for {fairness!r} (the dense model does not degrade relative "
            "to itself); expected a number, e.g. 0.02"
        )
    return objective


def _resolve_tolerance(
    objective: FairnessObjective | None, tolerance: float | str, dense: nn.Module, splits: Splits, device: str
) -> FairnessObjective | None:
    """``objective`` with tau set: ``tolerance``, or for ``"dense"`` the dense model's value on
    the validation data training reads; with its certification settings (paired for
    ``"dense"``)."""
    if objective is None:
        return None
    paired = tolerance == "dense"
    if paired:
        pred = predict(dense, splits.val, device=device)
        tau = resolve_tau(objective.metric, tolerance, pred, splits)
        objective = dataclasses.replace(objective, tolerance=tau)
    return with_certification(objective, splits, dense_factor=1.0 if paired else None)


def _check_task(data: dict[str, GroupData], n_classes: int, objective: FairnessObjective | None) -> None:
    """Labels that fit the model's outputs, and a fairness metric that fits the task."""
    check_labels(data, max(2, n_classes), one_logit=n_classes == 1)
    binary_only = ("equalized_odds", "demographic_parity")
    if objective is not None and objective.metric in binary_only and n_classes > 2:
        raise ValueError(
            f"fairness={objective.metric!r} is defined for binary tasks; the model has {n_classes} "
            "classes, so expected fairness='accuracy_gap' or 'excess_degradation'"
        )


def _pruner(method: str, structure: str, n_train: int, params: dict[str, Any]) -> Pruner:
    """The method with its budgets scaled to the data (unless given) and ``structure``."""
    extra = {} if structure == "unstructured" else {"structure": structure}
    pruner = build_pruner(method, **{**default_budgets(method, n_train), **extra, **params})
    if getattr(pruner, "needs_sensitive_attribute", False):
        raise ValueError(
            f"method {method!r} gives group-specific thresholds (its predictions need the group); "
            "fairprune.prune returns a plain model, so expected a method without them"
        )
    return pruner


def _metrics(
    dense: nn.Module, pruned: nn.Module, data: GroupData, names: Sequence[str], device: str
) -> dict[str, dict[str, float]]:
    """Exact metrics of the dense and the pruned model on one split, groups by name."""
    reports = dense_and_pruned(dense, pruned, data, len(names), device=device)
    return {which: name_groups(report, names) for which, report in reports.items()}


def _ship(engine_model: nn.Module, result: PruneResult, val: GroupData, device: str) -> nn.Module:
    """The plain model to hand back: masks baked in, or channels slimmed (checked against the
    masked model's outputs on a validation batch). ``engine_model`` is left baked (plain)."""
    if result.channels is None:
        return unwrap(bake_masks(engine_model))
    slim = result.channels.slim(engine_model).to(device)
    check_slim(engine_model, slim, model_inputs(rows(val.x, 0, 64), device))
    bake_masks(engine_model)
    return unwrap(slim)


def _splits(
    data: dict[str, GroupData],
    names: tuple[str, ...],
    n_classes: int,
    objective: FairnessObjective | None,
    certify: float | str,
    fraction: float,
    seed: int,
) -> Splits:
    """The engine's splits of the data given (val stands in for a test split not given), with
    ``fraction`` of val held out for certification when ``objective.certify`` is set."""
    splits = Splits(
        "data", "target", "group", data["train"], data["val"], data.get("test", data["val"]),
        tuple(str(c) for c in range(max(2, n_classes))), names,
    )  # fmt: skip
    if objective is None or objective.certify == 0.0:
        return splits
    return hold_out(splits, objective.metric, certify, fraction, seed)


def prune(
    model: nn.Module,
    train: DataInput,
    val: DataInput,
    sparsity: float = 0.9,
    fairness: str | None = "equalized_odds",
    tolerance: float | str = "dense",
    method: str = "bifp",
    structure: str = "unstructured",
    test: DataInput | None = None,
    *,
    group_names: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    inplace: bool = False,
    progress: bool = True,
    config: TrainConfig | Mapping[str, Any] | None = None,
    fairness_settings: Mapping[str, Any] | None = None,
    certify: float | str = FAIRNESS_DEFAULTS.certify,
    certify_fraction: float = FAIRNESS_DEFAULTS.certify_fraction,
    prunable: Prunable = None,
    **method_params: Any,
) -> PruningResult:
    """Prune ``model`` to ``sparsity`` while holding ``fairness`` within ``tolerance`` on ``val``.

    Args:
        model: A trained classifier returning ``(N, C)`` logits or one binary logit, as a tensor,
            a tuple (its first element), a dict (``"logits"``) or an object with ``.logits`` (a
            Hugging Face model; :mod:`fairprune.model_io`).
        train: ``(x, y, group)`` as a ``Dataset``, a ``DataLoader`` or a tuple of tensors; ``x``
            a tensor, a tuple (``model(*x)``) or a dict of tensors (``model(**x)``), batch-first;
            ``y`` class ids; groups ``0 .. G-1``. Every split is read into memory once.
        val: Validation data, in the same forms: where tau is checked and a state chosen.
        sparsity: Fraction of the prunable weights to remove, in [0, 1).
        fairness: ``"equalized_odds"``, ``"demographic_parity"`` (binary tasks),
            ``"accuracy_gap"``, ``"excess_degradation"`` (a numeric ``tolerance``), or ``None``.
        tolerance: tau, on the metric's scale; ``"dense"``: the input model's value on ``val``.
        method: A key of ``fairprune.pruners.PRUNERS`` (``"bifp"``, ``"magnitude"``, ...).
        structure: ``"unstructured"`` or ``"channel"`` (the returned model is physically smaller).
        test: Test data (optional), in the same forms: only measured.
        group_names: Name of each group id (default ``"0"``, ``"1"``, ...).
        seed: Seeds torch, the batches and the method.
        device: ``"auto"`` (CUDA when available, else the CPU) or a torch device name.
        inplace: Prune ``model`` itself (default: a copy; a channel-pruned slim model is new).
        progress: Show progress bars (tqdm).
        config: A :class:`~fairprune.config.TrainConfig`, or a mapping of its fields (e.g.
            ``{"distill": 1.0}``) over defaults scaled to the data.
        fairness_settings: Fields of :class:`~fairprune.fairness.FairnessObjective` (e.g.
            ``{"dual_step": 2.0}``); its defaults but ``slack=0.02`` and ``floor=0.02`` (no state
            returned 2 points below the run's most accurate, overall or for its worst group).
        certify: Confidence of a certificate on ``certify_fraction`` of ``val``, held out
            (stratified by target and group) and read once at the end
            (:mod:`fairprune.fairness.certificate`); 0: none; ``"auto"``: 0.95 when every held-out
            group has ``fairness.MIN_CELL`` samples, else none, with a warning naming the smallest.
        certify_fraction: Share of ``val`` held out for the certificate, in (0, 1).
        prunable: Which weights may be pruned (:func:`fairprune.prunable.select_prunable`); ``None``:
            all supported but embeddings. The rest stays dense, named in the result's ``coverage``.
        **method_params: The method's hyperparameters (e.g. ``steps=600``); its iteration
            budgets default to :func:`default_budgets` of the training set's size.

    Returns:
        A :class:`PruningResult`.

    Raises:
        ValueError, TypeError: For data, labels, groups, outputs or arguments that do not fit.
    """
    _check_arguments(sparsity, certify, certify_fraction)
    objective = _objective(fairness, tolerance, fairness_settings, certify)
    if not select_prunable(model, prunable, record=False):  # a bad choice fails here, before any work
        prunable_parameters(model)  # nothing to prune: raises, naming the layers expected
    torch.manual_seed(seed)  # a shuffling DataLoader is read in the same order every time
    data, names = read_splits({"train": train, "val": val, "test": test}, group_names)
    # under torchrun: each rank trains its shard of every batch (DDP), the results are the same
    with process_group(_device(device)) as resolved:
        return _prune(
            model, data, names, float(sparsity), objective, tolerance,
            method=method, structure=structure, device=resolved, seed=seed, inplace=inplace,
            progress=progress and is_main_process(), config=config, method_params=method_params,
            certify=certify, certify_fraction=certify_fraction, prunable=prunable,
        )  # fmt: skip


def _check_arguments(sparsity: Any, certify: Any, certify_fraction: Any) -> None:
    if not (isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool) and 0 <= sparsity < 1):
        raise ValueError(f"sparsity must be a number in [0, 1); received {sparsity!r}")
    if not (certify == AUTO or (isinstance(certify, (int, float)) and not isinstance(certify, bool))):
        raise ValueError(
            f"certify must be 'auto', 0 (off) or a confidence level in (0.5, 1); received {certify!r}"
        )
    if certify != 0 and not (isinstance(certify_fraction, (int, float)) and 0 < certify_fraction < 1):
        raise ValueError(f"certify_fraction must be in (0, 1); received {certify_fraction!r}")


def _prune(
    model: nn.Module,
    data: dict[str, GroupData],
    names: tuple[str, ...],
    sparsity: float,
    objective: FairnessObjective | None,
    tolerance: float | str,
    *,
    method: str,
    structure: str,
    device: str,
    seed: int,
    inplace: bool,
    progress: bool,
    config: TrainConfig | Mapping[str, Any] | None,
    method_params: dict[str, Any],
    certify: float | str,
    certify_fraction: float,
    prunable: Prunable,
) -> PruningResult:
    """:func:`prune` once the inputs are read and checked, on the resolved ``device``."""
    resolved = device
    dense = copy.deepcopy(model).to(resolved)
    n_classes = output_classes(dense, data["train"].x, resolved)
    _check_task(data, n_classes, objective)
    pruner = _pruner(method, structure, len(data["train"]), method_params)
    if n_classes == 1:
        dense = TwoLogits(dense)
    home, training = next(model.parameters()).device, model.training
    work = model if inplace else copy.deepcopy(model)
    select_prunable(work, prunable)
    cover = coverage(work)
    logger.info("fairprune.prune: %s", cover.describe())
    work = TwoLogits(work) if n_classes == 1 else work
    splits = _splits(data, names, n_classes, objective, certify, certify_fraction, seed)
    if objective is not None and splits.certify is None:
        objective = dataclasses.replace(objective, certify=0.0)  # "auto" on data too small to certify
    objective = _resolve_tolerance(objective, tolerance, dense, splits, resolved)
    train_config = train_config_for(config, {"train": splits.train, "val": splits.val}, resolved)
    task = Task(splits, objective, train_config, seed, progress, dense=dense)
    outcome = run_pruner(pruner, work, float(sparsity), task)
    shipped = _ship(work, outcome, splits.val, resolved)
    bar = tqdm(data.items(), desc="final metrics", disable=not progress, leave=False)
    metrics = {name: _metrics(dense, shipped, split, names, resolved) for name, split in bar}
    certificate, degradation = certify_models(objective, splits, dense, shipped, resolved)
    _log_outcome(outcome.selection, certificate, names)
    for plain in (shipped, unwrap(work)):  # the result, and the input model when inplace
        plain.to(home).train(training)
    masks = {k.removeprefix("model.") if n_classes == 1 else k: m.cpu() for k, m in outcome.masks.items()}
    return PruningResult(
        model=shipped,
        metrics=metrics,
        masks=masks,
        method=method,
        structure=structure,
        sparsity=float(sparsity),
        achieved_sparsity=mask_sparsity(masks),
        achieved_sparsity_all=sum(int((m == 0).sum()) for m in masks.values()) / cover.n_parameters,
        coverage=cover,
        fairness=None if objective is None else objective.metric,
        tolerance=None if objective is None else objective.tolerance,
        feasible=outcome.feasible,
        train_iterations=outcome.train_iterations,
        wall_seconds=outcome.wall_seconds,
        history=outcome.history,
        group_names=names,
        channel_fraction=None if outcome.channels is None else outcome.channels.channel_fraction,
        certificate=certificate,
        degradation_bound=degradation,
        selection=outcome.selection,
    )


def _log_outcome(selection: str | None, certificate: Certificate | None, names: Sequence[str]) -> None:
    """Say which state was returned and why, and what its certificate states."""
    if selection is not None:
        logger.info("fairprune.prune returned %s", selection)
    if certificate is None:
        return
    level = logging.INFO if certificate.certified else logging.WARNING
    logger.log(level, "fairprune.prune: %s", certificate.describe(names))
