"""The sweep: train the dense model once per seed, run every (variant, sparsity), record each run.

Each run writes ``OUT/runs/<run_id>.json`` atomically as soon as it finishes; ``results.csv`` is
rebuilt (atomically) after each. A killed sweep, restarted on the same directory with the same
resolved config, skips the runs already recorded and loses nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import pickle
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.distributed import destroy_process_group
from tqdm.auto import tqdm

from fairprune.atomic import replace_atomically, write_atomic
from fairprune.config import ExperimentConfig, FairnessConfig
from fairprune.data import Splits
from fairprune.distributed import init_from_env, is_main_process, on_main
from fairprune.engine import Task, TrainConfig, evaluate, is_trivial, predict, train_weights
from fairprune.export import save_model
from fairprune.fairness.constraints import FairnessObjective
from fairprune.fairness.metrics import METRIC_COLUMNS, METRICS, fairness_report
from fairprune.footprint import footprint
from fairprune.grid import Job, Variant, data_cells, extends, grid, variants_of
from fairprune.masks import sparsity as mask_sparsity
from fairprune.models import build_model
from fairprune.pruners import PruneResult, build_pruner, run_pruner
from fairprune.run_store import claim_out_dir, collect_results, read_records, set_aside
from fairprune.schema import RESULT_COLUMNS, name_groups
from fairprune.validation import check_experiment, load_splits

__all__ = [
    "Variant",
    "Job",
    "variants_of",
    "data_cells",
    "grid",
    "run_experiment",
    "prepare_out_dir",
    "collect_results",
    "extends",
    "RESULT_COLUMNS",
]

logger = logging.getLogger(__name__)


def prepare_out_dir(out: Path, cfg: ExperimentConfig, *, restart: bool) -> Path | None:
    """Check everything (see :func:`~fairprune.validation.check_experiment`), then claim ``out``:
    with ``restart``, move what it holds to ``OUT/replaced/<time>/`` (returned), and write
    ``config.json``. Nothing is written when a check fails."""
    check_experiment(cfg, out, restart=restart)
    return claim_out_dir(out, json.loads(json.dumps(cfg.to_dict())), restart=restart)


def _load_dense(path: Path, model: nn.Module, out: Path) -> tuple[int, float] | None:
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


def _dense_model(
    cfg: ExperimentConfig, train: TrainConfig, splits: Splits, job: Job, out: Path, progress: bool
) -> tuple[nn.Module, int, float]:
    """Train (or reload) the dense model of a job's seed and data cell, with its training
    iterations and seconds (NaN for a model saved before the seconds were recorded)."""
    seed = job.seed
    torch.manual_seed(seed)
    model = build_model(cfg.model.name, tuple(splits.train.x.shape[1:]), splits.n_classes, **cfg.model.params)
    path = out / "dense" / f"{job.dense_key}.pt"
    loaded = _load_dense(path, model, out)
    if loaded is not None:
        return model, *loaded
    torch.manual_seed(seed)
    model = build_model(cfg.model.name, tuple(splits.train.x.shape[1:]), splits.n_classes, **cfg.model.params)
    task = Task(splits, None, train, seed, progress)
    start = time.perf_counter()
    loop = train_weights(model, task, cfg.train.dense_steps, desc=f"dense seed {seed}")
    seconds = time.perf_counter() - start
    saved = {"state": model.state_dict(), "iterations": loop.iterations, "seconds": seconds}
    on_main(lambda: replace_atomically(path, lambda temporary: torch.save(saved, temporary)))
    return model, loop.iterations, seconds


def run_experiment(
    cfg: ExperimentConfig, out: str | Path, *, restart: bool = False, progress: bool = False
) -> pd.DataFrame:
    """Run (or resume) the grid of ``cfg`` into ``out``; returns the results table.

    Everything is checked first (config, data, output directory: see
    :func:`~fairprune.validation.check_experiment`); only then is ``out`` claimed (with
    ``restart``, its old contents moved to ``OUT/replaced/<time>/``). Records that cannot be
    read are moved to ``OUT/corrupt/`` and their runs recomputed. The dense model is trained
    once per (data cell, seed) and reused by every method.
    """
    out = Path(out)
    train = check_experiment(cfg, out, restart=restart)  # every rank checks; only rank 0 writes
    joined, device = init_from_env(train.device)  # under torchrun: one rank (and device) each
    train = replace(train, device=device)
    on_main(lambda: claim_out_dir(out, json.loads(json.dumps(cfg.to_dict())), restart=restart))
    progress = progress and is_main_process()
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    records = on_main(lambda: read_records(out, set_corrupt_aside=True))  # rank 0 moves corrupt ones aside
    if records is None:  # another rank under torchrun: read what rank 0 left
        records = read_records(out)
    recorded = {r["run_id"] for r in records}
    on_main(lambda: collect_results(out))  # results.csv matches the records before any run starts
    jobs = grid(cfg)
    todo = [job for job in jobs if job.run_id not in recorded]
    logger.info("%d runs in the grid, %d already recorded", len(jobs), len(jobs) - len(todo))
    cache: dict[str, _Cell] = {}
    for job in tqdm(todo, desc="runs", disable=not progress):
        if job.dense_key not in cache:
            cache.clear()
            splits = load_splits(job.data, job.seed)
            dense, iters, seconds = _dense_model(cfg, train, splits, job, out, progress)
            test_pred = predict(dense, splits.test, device=train.device)
            val_pred = predict(dense, splits.val, device=train.device)
            tau = _tolerance(cfg, val_pred, splits)
            cache[job.dense_key] = _Cell(splits, dense, iters, seconds, tau, test_pred, val_pred, train)
        record = _one_run(cfg, cache[job.dense_key], job, progress, out)
        on_main(partial(_record, out, job, record))
    frame = on_main(lambda: collect_results(out))
    if joined:
        destroy_process_group()
    return frame if frame is not None else pd.read_csv(out / "results.csv")


def _record(out: Path, job: Job, record: dict[str, Any]) -> None:
    """Write one run's record and rebuild ``results.csv``."""
    write_atomic(out / "runs" / f"{job.run_id}.json", json.dumps(record, indent=1, default=_jsonable))
    collect_results(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _tolerance(cfg: ExperimentConfig, dense_val_pred: torch.Tensor, splits: Splits) -> float:
    if cfg.fairness.tolerance != "dense":
        return float(cfg.fairness.tolerance)
    metric = METRICS[cfg.fairness.metric]
    value = float(metric(splits.val.y, dense_val_pred, groups=splits.val.groups, n_groups=splits.n_groups))
    return cfg.fairness.dense_factor * value


def _setting(fc: FairnessConfig) -> str:
    """How tau was set: a number, ``dense`` or ``<factor>*dense``."""
    if fc.tolerance == "dense" and fc.dense_factor != 1.0:
        return f"{fc.dense_factor:g}*dense"
    return str(fc.tolerance)


@dataclass(frozen=True)
class _Cell:
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


def _one_run(cfg: ExperimentConfig, cell: _Cell, job: Job, progress: bool, out: Path) -> dict[str, Any]:
    splits, dense, dense_iters, tau = cell.splits, cell.dense, cell.dense_iters, cell.tau
    variant, s, seed = job.variant, job.sparsity, job.seed
    fc = cfg.fairness
    tau = variant.tolerance if variant.tolerance is not None else tau
    objective = FairnessObjective(
        fc.metric, tau, fc.mode, fc.strength, fc.temperature, confidence=fc.confidence
    )
    task = Task(splits, objective, cell.train, seed, progress, dense=dense)
    model = copy.deepcopy(dense)
    pruner = build_pruner(variant.method, **variant.params)
    result = run_pruner(pruner, model, s, task)
    shipped_row, shipped = footprint(dense, model, result, splits.val, cfg.export, cell.train.device)
    post = result.postprocessor  # group thresholds: predictions need the sensitive attribute
    device = cell.train.device
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
    trivial = is_trivial(splits.val.y, val_pred)
    val_violation = val[METRIC_COLUMNS[fc.metric]]
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
        "tolerance_setting": str(variant.tolerance) if variant.tolerance is not None else _setting(fc),
        **test,
        "val_accuracy": val["accuracy"],
        "val_violation": val_violation,
        # a (near-)constant predictor has every group metric ~0: not what "fair" should certify
        "fair": bool(val_violation <= tau + 1e-12) and not trivial,
        "trivial": trivial,
        "needs_sensitive_attribute": post is not None,
        "achieved_sparsity": mask_sparsity(result.masks),
        **shipped_row,
        "train_iterations": iterations,
        "wall_seconds": wall_seconds,
    }
    row = name_groups(row, splits.group_names)  # group_accuracy_<name>, group_size_<name>
    params = dict(variant.params)
    if cfg.export.save_models and is_main_process():
        _save_shipped(cfg, splits, shipped, result, row, out / "models" / job.run_id)
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
    }


def _save_shipped(
    cfg: ExperimentConfig,
    splits: Splits,
    shipped: nn.Module,
    result: PruneResult,
    row: dict[str, Any],
    path: Path,
) -> None:
    """Save the model a run would ship (slimmed when structured) with a model card."""
    card = {
        "model": {
            "name": cfg.model.name,
            "input_shape": list(splits.train.x.shape[1:]),
            "n_classes": splits.n_classes,
            "params": cfg.model.params,
        },
        "slimmed": result.channels is not None,
        "class_names": list(splits.class_names),
        "group_names": list(splits.group_names),
        "result": {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))},
    }
    masks = {} if result.channels is not None else result.masks
    save_model(path, shipped, masks, card)
