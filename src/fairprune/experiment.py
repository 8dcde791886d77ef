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
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fairprune.config import ExperimentConfig
from fairprune.data import Splits, load_tabular
from fairprune.engine import Task, evaluate, predict, train_weights
from fairprune.fairness.constraints import FairnessObjective
from fairprune.fairness.metrics import METRIC_COLUMNS, METRICS
from fairprune.masks import sparsity as mask_sparsity
from fairprune.models import build_model
from fairprune.pruners import FAIR_METHODS, build_pruner, run_pruner

__all__ = ["Variant", "variants_of", "run_experiment", "write_atomic", "RESULT_COLUMNS"]

logger = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "run_id",
    "dataset",
    "target",
    "sensitive_attribute",
    "model",
    "method",
    "label",
    "sparsity",
    "seed",
    "fairness",
    "tolerance",
    "tolerance_setting",
    "accuracy",
    "accuracy_gap",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "val_accuracy",
    "val_violation",
    "fair",
    "achieved_sparsity",
    "train_iterations",
    "wall_seconds",
]


@dataclass(frozen=True)
class Variant:
    """One method with fixed hyperparameters, under a display ``label``."""

    method: str
    label: str
    params: dict[str, Any]
    tolerance: float | None = None  # overrides the experiment's tau


def variants_of(cfg: ExperimentConfig) -> list[Variant]:
    """The labelled method variants of an experiment (methods, extra variants, tau sweep)."""
    out = [Variant(m, m, dict(cfg.method_params.get(m, {}))) for m in cfg.methods]
    for v in cfg.variants:
        params = {k: val for k, val in v.items() if k not in ("method", "label")}
        label = (
            v.get("label") or v["method"] + "[" + ",".join(f"{k}={val}" for k, val in params.items()) + "]"
        )
        out.append(Variant(v["method"], label, {**cfg.method_params.get(v["method"], {}), **params}))
    for tol in cfg.tolerances:
        for m in cfg.methods:
            if m in FAIR_METHODS:
                out.append(
                    Variant(m, f"{m}[tolerance={tol}]", dict(cfg.method_params.get(m, {})), float(tol))
                )
    return out


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``path`` via a temp file in the same folder and ``os.replace`` (never partial)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_id(label: str, sparsity: float, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
    return f"{safe}__s{sparsity:g}__seed{seed}"


def prepare_out_dir(out: Path, cfg: ExperimentConfig, *, restart: bool) -> None:
    """Create ``out`` or check that it holds the same resolved config (refuse otherwise)."""
    resolved = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    cfg_path = out / "config.json"
    if cfg_path.exists() and not restart and json.loads(cfg_path.read_text()) != json.loads(resolved):
        raise ValueError(
            f"output directory {str(out)!r} holds results of a different config; expected the "
            "same config to resume. Use another --out, or --restart to start over there"
        )
    for leftover in out.glob("**/.*.tmp"):  # temp files of a killed write: never a record
        leftover.unlink()
    if restart and out.exists():
        for stale in [*out.glob("runs/*.json"), *out.glob("dense/*.pt"), out / "results.csv"]:
            stale.unlink(missing_ok=True)
    write_atomic(cfg_path, resolved)


def load_splits(cfg: ExperimentConfig, seed: int) -> Splits:
    d = cfg.data
    return load_tabular(
        d.name,
        target=d.target,
        sensitive_attribute=d.sensitive_attribute,
        seed=seed,
        fractions=d.fractions,
        path=d.path,
    )


def _dense_model(
    cfg: ExperimentConfig, splits: Splits, seed: int, out: Path, progress: bool
) -> tuple[nn.Module, int]:
    """Train (or reload) the dense model of ``seed``; returns it and its training iterations."""
    torch.manual_seed(seed)
    model = build_model(cfg.model.name, tuple(splits.train.x.shape[1:]), splits.n_classes, **cfg.model.params)
    path = out / "dense" / f"seed{seed}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"])
        return model, int(saved["iterations"])
    task = Task(splits, None, cfg.train, seed, progress)
    loop = train_weights(model, task, cfg.train.dense_steps, desc=f"dense seed {seed}")
    buffer = _to_bytes({"state": model.state_dict(), "iterations": loop.iterations})
    write_atomic(path, buffer)
    return model, loop.iterations


def _to_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _grid(cfg: ExperimentConfig) -> Iterator[tuple[int, Variant, float]]:
    for seed in cfg.seeds:
        yield seed, Variant("dense", "dense", {}), 0.0
        for variant in variants_of(cfg):
            if variant.method == "dense":
                continue
            for s in cfg.sparsities:
                yield seed, variant, float(s)


def run_experiment(
    cfg: ExperimentConfig, out: str | Path, *, restart: bool = False, progress: bool = False
) -> pd.DataFrame:
    """Run (or resume) the grid of ``cfg`` into ``out``; returns the results table."""
    out = Path(out)
    prepare_out_dir(out, cfg, restart=restart)
    grid = list(_grid(cfg))
    todo = [
        job for job in grid if not (out / "runs" / f"{_run_id(job[1].label, job[2], job[0])}.json").exists()
    ]
    logger.info("%d runs in the grid, %d already recorded", len(grid), len(grid) - len(todo))
    cache: dict[int, tuple[Splits, nn.Module, int, float]] = {}
    for seed, variant, s in tqdm(todo, desc="runs", disable=not progress):
        if seed not in cache:
            cache.clear()
            splits = load_splits(cfg, seed)
            dense, iters = _dense_model(cfg, splits, seed, out, progress)
            cache[seed] = (splits, dense, iters, _tolerance(cfg, dense, splits))
        splits, dense, dense_iters, tau = cache[seed]
        record = _one_run(cfg, splits, dense, dense_iters, tau, variant, s, seed, progress)
        write_atomic(
            out / "runs" / f"{record['run_id']}.json",
            json.dumps(record, indent=1, default=_jsonable),
        )
        collect_results(out)
    return collect_results(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _tolerance(cfg: ExperimentConfig, dense: nn.Module, splits: Splits) -> float:
    if cfg.fairness.tolerance != "dense":
        return float(cfg.fairness.tolerance)
    pred = predict(dense, splits.val, device=cfg.train.device)
    metric = METRICS[cfg.fairness.metric]
    return float(metric(splits.val.y, pred, groups=splits.val.groups, n_groups=splits.n_groups))


def _one_run(
    cfg: ExperimentConfig,
    splits: Splits,
    dense: nn.Module,
    dense_iters: int,
    tau: float,
    variant: Variant,
    s: float,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    fc = cfg.fairness
    tau = variant.tolerance if variant.tolerance is not None else tau
    objective = FairnessObjective(fc.metric, tau, fc.mode, fc.strength, fc.temperature)
    task = Task(splits, objective, cfg.train, seed, progress)
    model = copy.deepcopy(dense)
    result = run_pruner(build_pruner(variant.method, **variant.params), model, s, task)
    dense_pred = predict(dense, splits.test, device=cfg.train.device)
    test = evaluate(model, splits.test, splits.n_groups, dense_pred=dense_pred, device=cfg.train.device)
    val = evaluate(model, splits.val, splits.n_groups, device=cfg.train.device)
    val_violation = val[METRIC_COLUMNS[fc.metric]]
    iterations = result.train_iterations + (dense_iters if variant.method == "dense" else 0)
    row = {
        "run_id": _run_id(variant.label, s, seed),
        "dataset": splits.name,
        "target": splits.target,
        "sensitive_attribute": splits.sensitive_attribute,
        "model": cfg.model.name,
        "method": variant.method,
        "label": variant.label,
        "sparsity": s,
        "seed": seed,
        "fairness": fc.metric,
        "tolerance": tau,
        "tolerance_setting": str(variant.tolerance if variant.tolerance is not None else fc.tolerance),
        **test,
        "val_accuracy": val["accuracy"],
        "val_violation": val_violation,
        "fair": bool(val_violation <= tau + 1e-12),
        "achieved_sparsity": mask_sparsity(result.masks),
        "train_iterations": iterations,
        "wall_seconds": result.wall_seconds,
    }
    params = dict(variant.params)
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


def collect_results(out: Path) -> pd.DataFrame:
    """Rebuild ``results.csv`` from the run records (atomically) and return it."""
    rows = [json.loads(p.read_text())["result"] for p in sorted((out / "runs").glob("*.json"))]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        first = [c for c in RESULT_COLUMNS if c in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        frame = frame.sort_values(["seed", "label", "sparsity"], kind="stable").reset_index(drop=True)
    write_atomic(out / "results.csv", frame.to_csv(index=False))
    return frame


def with_train(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A copy of ``cfg`` with some ``train`` settings changed."""
    return replace(cfg, train=replace(cfg.train, **changes))
