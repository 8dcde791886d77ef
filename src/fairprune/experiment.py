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
import re
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
from fairprune.config import DataConfig, ExperimentConfig, FairnessConfig, method_params
from fairprune.cost import COST_COLUMNS, iterations_to_fair
from fairprune.data import Splits
from fairprune.data.registry import IMAGE_DATASETS, load_dataset
from fairprune.distributed import init_from_env, is_main_process, on_main
from fairprune.engine import Task, evaluate, is_trivial, predict, train_weights
from fairprune.export import save_model
from fairprune.fairness.constraints import FairnessObjective
from fairprune.fairness.metrics import METRIC_COLUMNS, METRICS, fairness_report
from fairprune.footprint import FOOTPRINT_COLUMNS, footprint
from fairprune.masks import sparsity as mask_sparsity
from fairprune.models import build_model
from fairprune.pruners import FAIR_METHODS, PruneResult, build_pruner, run_pruner

__all__ = [
    "Variant",
    "Job",
    "variants_of",
    "data_cells",
    "grid",
    "run_experiment",
    "extends",
    "RESULT_COLUMNS",
]

logger = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "run_id",
    "dataset",
    "target",
    "sensitive_attribute",
    "model",
    "method",
    "label",
    "structure",
    "sparsity",
    "seed",
    "fairness",
    "tolerance",
    "tolerance_setting",
    "accuracy",
    "accuracy_gap",
    "degradation_gap",
    "excess_degradation",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "val_accuracy",
    "val_violation",
    "fair",
    "fair_test",
    "trivial",
    "needs_sensitive_attribute",
    "achieved_sparsity",
    *FOOTPRINT_COLUMNS,
    "train_iterations",
    "wall_seconds",
    *COST_COLUMNS,
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
    out = [Variant(m, m, method_params(cfg, m)) for m in cfg.methods]
    for v in cfg.variants:
        own = {k: val for k, val in v.items() if k not in ("method", "label")}
        label = v.get("label") or v["method"] + "[" + ",".join(f"{k}={val}" for k, val in own.items()) + "]"
        out.append(Variant(v["method"], label, method_params(cfg, v["method"], v)))
    for tol in cfg.tolerances:
        for m in cfg.methods:
            if m in FAIR_METHODS:
                out.append(Variant(m, f"{m}[tolerance={tol}]", method_params(cfg, m), float(tol)))
    return out


@dataclass(frozen=True)
class Job:
    """One run of the grid: a data cell (target, sensitive attribute), a seed, a variant, a sparsity."""

    data: DataConfig
    seed: int
    variant: Variant
    sparsity: float
    tag: str = ""  # names the data cell when the grid has several

    @property
    def run_id(self) -> str:
        return f"{self.tag}{_file_safe(self.variant.label)}__s{self.sparsity:g}__seed{self.seed}"

    @property
    def dense_key(self) -> str:
        return f"{self.tag}seed{self.seed}"


def data_cells(cfg: ExperimentConfig) -> list[tuple[DataConfig, str]]:
    """The (target, sensitive attribute) cells of the grid, each with its run-id tag.

    A sensitive attribute may be a list of names (intersectional groups); its tag joins the
    file-safe names with ``+`` (``label-Male+Young__``).
    """
    targets: list[str | None] = list(cfg.targets) or [cfg.data.target]
    attributes: list[str | list[str] | None] = [*cfg.sensitive_attributes] or [cfg.data.sensitive_attribute]
    cells = [(t, a) for t in targets for a in attributes]
    if len(cells) == 1:
        return [(replace(cfg.data, target=cells[0][0], sensitive_attribute=cells[0][1]), "")]
    out = []
    for t, a in cells:
        names = "+".join(_file_safe(n) for n in a) if isinstance(a, (list, tuple)) else _file_safe(f"{a}")
        out.append((replace(cfg.data, target=t, sensitive_attribute=a), f"{_file_safe(f'{t}-')}{names}__"))
    return out


def _file_safe(name: str) -> str:
    """``name`` with every run of characters unsafe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


_GRID_LISTS = ("methods", "variants", "sparsities", "seeds", "tolerances")


def extends(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the resolved config ``new`` only adds runs to ``old``: the same settings, and
    every method, variant, sparsity, seed and tau of ``old`` still there with the same
    hyperparameters (so every recorded run is still a run of ``new``)."""
    fixed = set(old) | set(new)
    fixed -= {*_GRID_LISTS, "method_params"}
    if any(old.get(k) != new.get(k) for k in fixed):
        return False
    if any(item not in new.get(k, []) for k in _GRID_LISTS for item in old.get(k, [])):
        return False
    used = {*old.get("methods", []), *(v["method"] for v in old.get("variants", []))}
    old_params, new_params = old.get("method_params", {}), new.get("method_params", {})
    return all(old_params.get(m) == new_params.get(m) for m in used)


def with_new_defaults(old: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``old`` (a recorded config) with every setting it lacks — one added to fairprune after
    it was written — at its default, recursively: such a setting changed nothing for the
    recorded runs, so it must not stop them from resuming."""
    out = dict(old)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
        elif isinstance(out[key], dict) and isinstance(default, dict) and default:
            out[key] = with_new_defaults(out[key], default)
    return out


def prepare_out_dir(out: Path, cfg: ExperimentConfig, *, restart: bool) -> None:
    """Create ``out`` or check that it holds the same resolved config, or one that ``cfg`` only
    extends with more runs (see :func:`extends`); refuse otherwise. Settings the recorded config
    lacks count at their defaults (:func:`with_new_defaults`)."""
    resolved = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    cfg_path = out / "config.json"
    if cfg_path.exists() and not restart:
        recorded = json.loads(cfg_path.read_text())
        previous = json.loads(json.dumps(with_new_defaults(recorded, ExperimentConfig().to_dict())))
        if previous != json.loads(resolved) and not extends(previous, json.loads(resolved)):
            raise ValueError(
                f"output directory {str(out)!r} holds results of a different config; expected the "
                "same config to resume, or one that only adds methods, variants, sparsities, seeds "
                "or tolerances. Use another --out, or --restart to start over there"
            )
    for leftover in out.glob("**/.*.tmp"):  # temp files of a killed write: never a record
        leftover.unlink()
    if restart and out.exists():
        records = [*out.glob("runs/*.json"), *out.glob("dense/*.pt"), *out.glob("models/*/*")]
        for stale in [*records, out / "results.csv"]:
            stale.unlink(missing_ok=True)
    write_atomic(cfg_path, resolved)


def load_splits(d: DataConfig, seed: int) -> Splits:
    """The splits of a data config (tabular or image) for ``seed``."""
    kwargs: dict[str, Any] = {"seed": seed, **d.params}
    if d.target is not None:
        kwargs["target"] = d.target
    if d.sensitive_attribute is not None:
        kwargs["sensitive_attribute"] = d.sensitive_attribute
    if d.name in IMAGE_DATASETS:
        if d.root is None:
            raise ValueError(f"image dataset {d.name!r} needs data.root (the folder that holds it)")
        if d.name == "image_csv":  # a CSV (data.path) naming images under data.root
            kwargs.update(csv_path=d.path, image_root=d.root)
        else:
            kwargs["root"] = d.root
    else:
        kwargs.update(fractions=d.fractions, path=d.path)
    try:
        return load_dataset(d.name, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad data settings: {err}") from err


def _dense_model(
    cfg: ExperimentConfig, splits: Splits, job: Job, out: Path, progress: bool
) -> tuple[nn.Module, int, float]:
    """Train (or reload) the dense model of a job's seed and data cell, with its training
    iterations and seconds (NaN for a model saved before the seconds were recorded)."""
    seed = job.seed
    torch.manual_seed(seed)
    model = build_model(cfg.model.name, tuple(splits.train.x.shape[1:]), splits.n_classes, **cfg.model.params)
    path = out / "dense" / f"{job.dense_key}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"])
        return model, int(saved["iterations"]), float(saved.get("seconds", math.nan))
    task = Task(splits, None, cfg.train, seed, progress)
    start = time.perf_counter()
    loop = train_weights(model, task, cfg.train.dense_steps, desc=f"dense seed {seed}")
    seconds = time.perf_counter() - start
    saved = {"state": model.state_dict(), "iterations": loop.iterations, "seconds": seconds}
    on_main(lambda: replace_atomically(path, lambda temporary: torch.save(saved, temporary)))
    return model, loop.iterations, seconds


def grid(cfg: ExperimentConfig) -> list[Job]:
    """Every run of the experiment, dense first within each (data cell, seed)."""
    jobs = []
    for data, tag in data_cells(cfg):
        for seed in cfg.seeds:
            jobs.append(Job(data, seed, Variant("dense", "dense", {}), 0.0, tag))
            for variant in variants_of(cfg):
                if variant.method != "dense":
                    jobs.extend(Job(data, seed, variant, float(s), tag) for s in cfg.sparsities)
    return jobs


def run_experiment(
    cfg: ExperimentConfig, out: str | Path, *, restart: bool = False, progress: bool = False
) -> pd.DataFrame:
    """Run (or resume) the grid of ``cfg`` into ``out``; returns the results table.

    The dense model is trained once per (data cell, seed) and reused by every method.
    """
    out = Path(out)
    joined, device = init_from_env(cfg.train.resolved().device)  # under torchrun: one rank each
    on_main(lambda: prepare_out_dir(out, cfg, restart=restart))  # only rank 0 writes files
    progress = progress and is_main_process()
    # after saving: "auto" resumes on any machine
    cfg = replace(cfg, train=replace(cfg.train.resolved(), device=device))
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    jobs = grid(cfg)
    todo = [job for job in jobs if not (out / "runs" / f"{job.run_id}.json").exists()]
    logger.info("%d runs in the grid, %d already recorded", len(jobs), len(jobs) - len(todo))
    cache: dict[str, _Cell] = {}
    for job in tqdm(todo, desc="runs", disable=not progress):
        if job.dense_key not in cache:
            cache.clear()
            splits = load_splits(job.data, job.seed)
            dense, iters, seconds = _dense_model(cfg, splits, job, out, progress)
            test_pred = predict(dense, splits.test, device=cfg.train.device)
            val_pred = predict(dense, splits.val, device=cfg.train.device)
            tau = _tolerance(cfg, val_pred, splits)
            cache[job.dense_key] = _Cell(splits, dense, iters, seconds, tau, test_pred, val_pred)
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


def _one_run(cfg: ExperimentConfig, cell: _Cell, job: Job, progress: bool, out: Path) -> dict[str, Any]:
    splits, dense, dense_iters, tau = cell.splits, cell.dense, cell.dense_iters, cell.tau
    variant, s, seed = job.variant, job.sparsity, job.seed
    fc = cfg.fairness
    tau = variant.tolerance if variant.tolerance is not None else tau
    objective = FairnessObjective(
        fc.metric, tau, fc.mode, fc.strength, fc.temperature, confidence=fc.confidence
    )
    task = Task(splits, objective, cfg.train, seed, progress, dense=dense)
    model = copy.deepcopy(dense)
    pruner = build_pruner(variant.method, **variant.params)
    result = run_pruner(pruner, model, s, task)
    shipped_row, shipped = footprint(dense, model, result, splits.val, cfg.export, cfg.train.device)
    post = result.postprocessor  # group thresholds: predictions need the sensitive attribute
    device = cfg.train.device
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


def collect_results(out: Path) -> pd.DataFrame:
    """Rebuild ``results.csv`` from the run records (atomically) and return it."""
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    frame = pd.DataFrame([r["result"] for r in records])
    if not frame.empty:
        frame = iterations_to_fair(frame, {r["run_id"]: r.get("history") or [] for r in records})
        first = [c for c in RESULT_COLUMNS if c in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        frame = frame.sort_values(["seed", "label", "sparsity"], kind="stable").reset_index(drop=True)
    write_atomic(out / "results.csv", frame.to_csv(index=False))
    return frame


def with_train(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A copy of ``cfg`` with some ``train`` settings changed."""
    return replace(cfg, train=replace(cfg.train, **changes))
