"""One run of the sweep's grid: the dense model of a (data cell, seed), what its runs share
(:class:`Cell`), and a pruned run with its record (:func:`one_run`).

:mod:`fairprune.sweep.experiment` drives these over the grid, in one process or in several.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fairprune.atomic import replace_atomically
from fairprune.certification import (
    certify_with_groups,
    claim_holds,
    claim_value,
    confidence_of,
    hold_out,
    resolve_tau,
    with_certification,
)  # fmt: skip
from fairprune.config import ExperimentConfig, FairnessConfig
from fairprune.data import Splits
from fairprune.distributed import is_main_process, on_main
from fairprune.engine import Task, TrainConfig, is_trivial, train_weights
from fairprune.export import export_model, plain, pruning_section
from fairprune.fairness.metrics import METRIC_COLUMNS, fairness_report
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import evaluate, predict
from fairprune.masks import sparsity as mask_sparsity
from fairprune.model_io import input_shape
from fairprune.models import build_model
from fairprune.pruners import build_pruner, run_pruner
from fairprune.schema import name_groups
from fairprune.sweep.footprint import footprint
from fairprune.sweep.grid import Job
from fairprune.sweep.store import set_aside
from fairprune.sweep.validation import load_splits

__all__ = [
    "Cell", "architecture", "cell_of", "cell_splits", "dense_model", "load_dense", "objective_of", "one_run",
    "tolerance_of",
]  # fmt: skip


def load_dense(path: Path, model: nn.Module, out: Path) -> tuple[int, float] | None:
    """Load a saved dense model into ``model``: its iterations and seconds, or ``None`` when
    there is none, or it cannot be read (then it is moved to ``OUT/corrupt/``)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"])
        return int(saved["iterations"]), float(saved.get("seconds", math.nan))
    except (RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
        if not is_main_process():  # rank 0 moves it aside
            return None
        set_aside(path, out, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        return None


def dense_model(
    cfg: ExperimentConfig, train: TrainConfig, splits: Splits, job: Job, out: Path, progress: bool
) -> tuple[nn.Module, int, float]:
    """Train (or reload) the dense model of a job's seed and data cell, with its training
    iterations and seconds (NaN for a model saved before the seconds were recorded)."""
    seed = job.seed
    torch.manual_seed(seed)
    model = build_model(
        cfg.model.name,
        input_shape(splits.train.x),
        splits.n_classes,
        **cfg.model.params,
    )
    path = out / "dense" / f"{job.dense_key}.pt"
    loaded = load_dense(path, model, out)
    if loaded is not None:
        return model, *loaded
    torch.manual_seed(seed)
    model = build_model(
        cfg.model.name,
        input_shape(splits.train.x),
        splits.n_classes,
        **cfg.model.params,
    )
    task = Task(splits, None, train, seed, progress)
    start = time.perf_counter()
    loop = train_weights(model, task, cfg.train.dense_steps, desc=f"dense seed {seed}")
    seconds = time.perf_counter() - start
    saved = {"state": model.state_dict(), "iterations": loop.iterations, "seconds": seconds}
    on_main(lambda: replace_atomically(path, lambda temporary: torch.save(saved, temporary)))
    return model, loop.iterations, seconds


def tolerance_of(cfg: ExperimentConfig, dense_val_pred: torch.Tensor, splits: Splits) -> float:
    fc = cfg.fairness
    return resolve_tau(fc.metric, fc.tolerance, dense_val_pred, splits, fc.dense_factor)


def tolerance_setting(fc: FairnessConfig) -> str:
    """How tau was set: a number, ``dense`` or ``<factor>*dense``."""
    if fc.tolerance == "dense" and fc.dense_factor != 1.0:
        return f"{fc.dense_factor:g}*dense"
    return str(fc.tolerance)


@dataclass(frozen=True)
class Cell:
    """What every run of one (data cell, seed) shares: data, trained dense model, its training
    iterations and seconds, the resolved tolerance, the dense model's test and validation
    predictions."""

    splits: Splits
    dense: nn.Module
    dense_iters: int
    dense_seconds: float
    tau: float
    dense_test_pred: torch.Tensor
    dense_val_pred: torch.Tensor
    train: TrainConfig
    dense_cert_pred: torch.Tensor | None = None


def one_run(cfg: ExperimentConfig, cell: Cell, job: Job, progress: bool, out: Path) -> dict[str, Any]:
    splits, dense, dense_iters, tau = cell.splits, cell.dense, cell.dense_iters, cell.tau
    variant, s, seed = job.variant, job.sparsity, job.seed
    fc = cfg.fairness
    tau = variant.tolerance if variant.tolerance is not None else tau
    objective = objective_of(fc, tau, splits, numeric=variant.tolerance is not None)
    task = Task(splits, objective, cell.train, seed, progress, dense=dense)
    model = copy.deepcopy(dense)
    pruner = build_pruner(variant.method, **variant.params)
    result = run_pruner(pruner, model, s, task)
    shipped_row, shipped = footprint(dense, model, result, splits.val, cfg.export, cell.train.device)
    post = result.postprocessor  # group thresholds: predictions need the sensitive attribute
    test, val, trivial = _split_metrics(model, cell, post)
    val_violation = val[METRIC_COLUMNS[fc.metric]]
    certificate = _certificate(objective, cell, model, post)
    # the dense row carries the dense training (once per cell and seed; every method starts from it)
    is_dense = variant.method == "dense"
    iterations = result.train_iterations + (dense_iters if is_dense else 0)
    wall_seconds = result.wall_seconds + (cell.dense_seconds if is_dense else 0.0)
    row = {
        "run_id": job.run_id,
        "dataset": splits.name,
        "target": splits.target,
        "sensitive_attribute": splits.sensitive_attribute,
        "model": cfg.model.name,
        "method": variant.method,
        "label": variant.label,
        "structure": pruner.structure,
        "sparsity": s,
        "seed": seed,
        "fairness": fc.metric,
        "tolerance": tau,
        "tolerance_setting": str(variant.tolerance)
        if variant.tolerance is not None
        else tolerance_setting(fc),
        **test,
        "val_accuracy": val["accuracy"],
        "val_violation": val_violation,
        # a (near-)constant predictor has every group metric ~0: not what "fair" should certify
        "fair": bool(val_violation <= tau + 1e-12) and not trivial,
        "trivial": trivial,
        "needs_sensitive_attribute": post is not None,
        **certificate,
        "achieved_sparsity": mask_sparsity(result.masks),
        **shipped_row,
        "train_iterations": iterations,
        "wall_seconds": wall_seconds,
    }
    row = name_groups(row, splits.group_names)  # group_accuracy_<name>, group_size_<name>
    params = dict(variant.params)
    # what `fairprune export` ships; not the dense run (OUT/dense/ keeps it) nor group thresholds
    if cfg.export.save_models and not is_dense and post is None and is_main_process():
        save_shipped(cfg, cell, job, shipped, row, out / "models" / job.run_id)
    return {
        "run_id": row["run_id"],
        "config": {
            "method": variant.method,
            "params": params,
            "sparsity": s,
            "seed": seed,
            "tolerance": tau,
        },
        "result": row,
        "history": result.history,
        "selection": result.selection,
    }


def _split_metrics(
    model: nn.Module, cell: Cell, post: Any
) -> tuple[dict[str, float], dict[str, float], bool]:
    """The pruned model's exact metrics on test and on validation (against the dense model's
    predictions), and whether it is a (near-)constant predictor on validation."""
    splits, device = cell.splits, cell.train.device
    test = evaluate(
        model,
        splits.test,
        splits.n_groups,
        dense_pred=cell.dense_test_pred,
        device=device,
        postprocessor=post,
    )
    val_pred = predict(model, splits.val, device=device, postprocessor=post)
    val = fairness_report(
        splits.val.y,
        val_pred,
        groups=splits.val.groups,
        n_groups=splits.n_groups,
        y_pred_dense=cell.dense_val_pred,
    )
    return test, val, is_trivial(splits.val.y, val_pred)


def objective_of(fc: FairnessConfig, tau: float, splits: Splits, *, numeric: bool) -> FairnessObjective:
    """The fairness objective of a run: the config's metric and constraint at ``tau``, with
    its certification settings (paired when tau was set from the dense model, unless the run's
    own tolerance is ``numeric``) and its levelling-down floor."""
    objective = FairnessObjective(
        fc.metric, tau, fc.mode, penalty_weight=fc.penalty_weight, dual_step=fc.dual_step,
        temperature=fc.temperature, confidence=fc.confidence,
        controller=fc.controller, kp=fc.kp, ema_nu=fc.ema_nu, windup_window=fc.windup_window,
        certify=confidence_of(fc.certify) if splits.certify is not None else 0.0, slack=fc.slack,
        floor=fc.floor if fc.floor >= 0 else None, direction=fc.direction, surrogate=fc.surrogate,
    )  # fmt: skip
    paired = fc.tolerance == "dense" and not numeric
    return with_certification(objective, splits, dense_factor=fc.dense_factor if paired else None)


def _certificate(objective: FairnessObjective, cell: Cell, model: nn.Module, post: Any) -> dict[str, Any]:
    """The run's certificate columns (empty without a certification split), and whether its
    claim held on the test split (``claim_holds_test``, with the value it bounds there)."""
    splits = cell.splits
    if objective.certify == 0.0 or splits.certify is None or cell.dense_cert_pred is None:
        return {}
    device = cell.train.device
    pred = predict(model, splits.certify, device=device, postprocessor=post)
    cert, degradation = certify_with_groups(
        objective, splits.certify, pred, cell.dense_cert_pred, splits.n_groups
    )
    test_pred = predict(model, splits.test, device=device, postprocessor=post)
    value = claim_value(objective, splits.test, test_pred, cell.dense_test_pred, splits.n_groups)
    return {
        **cert.to_row(),
        "claim_test": value,
        "claim_holds_test": claim_holds(objective, value),
        "degradation_bound": degradation,  # its test value: the row's excess_degradation
        "certificate": cert.describe(splits.group_names),
    }


def architecture(cfg: ExperimentConfig, splits: Splits) -> dict[str, Any]:
    """The built-in model of a sweep as a card names it (``name``, ``input_shape``, ``n_classes``,
    ``params``), so that :func:`fairprune.export.load_exported` can rebuild it."""
    return {
        "name": cfg.model.name,
        "input_shape": list(input_shape(splits.train.x)),
        "n_classes": splits.n_classes,
        "params": cfg.model.params,
    }


def save_shipped(
    cfg: ExperimentConfig, cell: Cell, job: Job, shipped: nn.Module, row: dict[str, Any], path: Path
) -> None:
    """Ship a run's model into ``path`` (``OUT/models/<run_id>/``) as ``fairprune export`` reads
    it: a directory of :func:`fairprune.export.export_model` (masks baked in and stored sparse, or
    the slimmed model) whose card is measured on the run's data against its dense model."""
    about = {
        "pruning": pruning_section({**row, "dense_train_iterations": cell.dense_iters}),
        "data_source": {"config": dataclasses.asdict(job.data), "seed": job.seed},
        "sweep": {"record": {key: plain(value) for key, value in row.items()}},
    }
    arch = architecture(cfg, cell.splits)
    export_model(shipped, path, data=cell.splits, dense=cell.dense, architecture=arch, about=about)


def cell_splits(cfg: ExperimentConfig, job: Job) -> Splits:
    """The splits of ``job``'s data cell and seed; with ``fairness.certify`` the certification
    split is held out of validation here, before anything (the dense model included) reads it."""
    splits = load_splits(job.data, job.seed)
    fc = cfg.fairness
    return hold_out(splits, fc.metric, fc.certify, fc.certify_fraction, job.seed)


def cell_of(cfg: ExperimentConfig, train: TrainConfig, job: Job, out: Path, progress: bool) -> Cell:
    """What every run of ``job``'s (data cell, seed) shares: its splits, the dense model
    (trained, or reloaded from ``OUT/dense/``), tau and the dense model's predictions."""
    splits = cell_splits(cfg, job)
    dense, iters, seconds = dense_model(cfg, train, splits, job, out, progress)
    test_pred = predict(dense, splits.test, device=train.device)
    val_pred = predict(dense, splits.val, device=train.device)
    cert_pred = None if splits.certify is None else predict(dense, splits.certify, device=train.device)
    tau = tolerance_of(cfg, val_pred, splits)
    return Cell(splits, dense, iters, seconds, tau, test_pred, val_pred, train, cert_pred)
