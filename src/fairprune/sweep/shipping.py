"""Ship a model out of a finished sweep, and re-check a shipped model on data.

:func:`export_run` picks one run of ``fairprune run``'s output (``results.csv``, ``config.json``,
``dense/``, and ``models/<run_id>/`` when the sweep ran with ``export.save_models = true``),
rebuilds its data, dense and shipped models, and writes them with
:func:`fairprune.export.export_model`. :func:`evaluate_directory` reloads a shipped directory and
recomputes its card on the card's data or on other data.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from fairprune.config import DataConfig, ExperimentConfig, config_from_dict
from fairprune.data.adapters import as_splits
from fairprune.data.base import Splits
from fairprune.datasets_spec import dataset_spec
from fairprune.errors import ShippedModelError
from fairprune.export import (
    CARD_FILE,
    DEFAULT_TOLERANCE,
    Evaluation,
    evaluate_exported,
    export_model,
    load_exported,
    load_model,
    plain,
    pruning_section,
)
from fairprune.fairness.metrics import METRIC_COLUMNS
from fairprune.inference import evaluate
from fairprune.model_io import input_shape
from fairprune.models import build_model
from fairprune.reporting import mean_std, t_interval
from fairprune.sweep.choice import best_run, find_run
from fairprune.sweep.experiment import Job, grid
from fairprune.sweep.runs import architecture
from fairprune.sweep.validation import load_splits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["find_run", "best_in", "export_run", "evaluate_directory", "seed_intervals"]

logger = logging.getLogger(__name__)

SEED_METRICS = ["accuracy", "worst_group_accuracy", "degradation_gap", *METRIC_COLUMNS.values()]


def _sweep(out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    missing = [name for name in ("results.csv", "config.json") if not (out / name).is_file()]
    if missing:
        raise ShippedModelError(
            f"{out} holds no finished sweep (no {' or '.join(missing)}); expected the --out directory "
            "of 'fairprune run'"
        )
    frame = pd.read_csv(out / "results.csv")
    if frame.empty:
        raise ShippedModelError(f"{out}/results.csv records no run yet; expected a finished sweep")
    return frame, json.loads((out / "config.json").read_text())


def seed_intervals(frame: pd.DataFrame, row: pd.Series) -> dict[str, Any] | None:
    """Mean, std and 95% Student-t interval of the mean over the seeds of ``row``'s (label,
    structure, sparsity, data cell) for each test metric (:func:`fairprune.reporting.stats.t_interval`,
    valid at any n >= 2, as the reports use); ``None`` with a single seed."""
    same = frame
    for key in ("label", "structure", "target", "sensitive_attribute"):
        if key in frame.columns:
            same = same[same[key] == row[key]]
    same = same[(same["sparsity"] - row["sparsity"]).abs() < 1e-9]
    if same["seed"].nunique() < 2:
        return None
    metrics = {}
    for name in SEED_METRICS:
        values = same[name].dropna().to_numpy(float) if name in same.columns else []
        if len(values) >= 2:
            mean, std = mean_std(values)
            low, high = t_interval(values)
            metrics[name] = {"mean": mean, "std": std, "low": low, "high": high}
    return {
        "seeds": sorted(int(s) for s in same["seed"]),
        "split": "test",
        "interval": "95% Student-t interval of the mean",
        "metrics": metrics,
    }


def _job(cfg: ExperimentConfig, run_id: str) -> Job:
    jobs = [job for job in grid(cfg) if job.run_id == run_id]
    if not jobs:
        raise ShippedModelError(
            f"run {run_id!r} of results.csv is not in the sweep's config.json; the records are inconsistent"
        )
    return jobs[0]


def _models(
    out: Path, cfg: ExperimentConfig, splits: Splits, job: Job, row: pd.Series
) -> tuple[nn.Module, nn.Module, int]:
    """The dense model, the shipped model and the dense training iterations of a run."""
    dense = build_model(
        cfg.model.name,
        input_shape(splits.train.x),
        splits.n_classes,
        **cfg.model.params,
    )
    dense_path = out / "dense" / f"{job.dense_key}.pt"
    if not dense_path.is_file():
        raise ShippedModelError(
            f"{dense_path} is missing: the sweep's dense model of seed {job.seed} is gone"
        )
    saved = torch.load(dense_path, map_location="cpu", weights_only=True)
    dense.load_state_dict(saved["state"])
    if job.variant.method == "dense":
        return dense, dense, int(saved["iterations"])
    model_dir = out / "models" / job.run_id
    if (model_dir / "model.pt").is_file():  # saved by fairprune before the runs were shipped directories
        return dense, load_model(model_dir).model, int(saved["iterations"])
    if not (model_dir / CARD_FILE).is_file():
        raise ShippedModelError(
            f"the sweep did not save the model of run {job.run_id!r} ({model_dir} is missing): it ran with "
            "export.save_models = false, which keeps the metrics, not the weights. Run the sweep with "
            "--set export.save_models=true (the default; into a new --out, or with --restart), then export"
        )
    return dense, load_exported(model_dir).model, int(saved["iterations"])


def best_in(
    out: str | Path,
    *,
    sparsity: float | None = None,
    method: str | None = None,
    seed: int | None = None,
    structure: str | None = None,
) -> tuple[str, str]:
    """The run id of the most accurate pruned run within tau of the sweep in ``out`` (see
    :func:`fairprune.sweep.choice.best_run`), and one line saying which it picked and why."""
    frame, _ = _sweep(Path(out))
    row, line = best_run(frame, sparsity=sparsity, method=method, seed=seed, structure=structure)
    return str(row["run_id"]), line


def export_run(
    out: str | Path,
    to: str | Path,
    *,
    method: str | None = None,
    sparsity: float | None = None,
    seed: int | None = None,
    structure: str | None = None,
    run_id: str | None = None,
    weights: str = "auto",
    onnx: bool = False,
) -> Path:
    """Export one run of the finished sweep in ``out`` to the directory ``to`` (see
    :func:`fairprune.export.export_model`); the choice as in :func:`find_run`."""
    out = Path(out)
    frame, resolved = _sweep(out)
    row = find_run(frame, method=method, sparsity=sparsity, seed=seed, structure=structure, run_id=run_id)
    if bool(row.get("needs_sensitive_attribute", False)):
        raise ShippedModelError(
            f"run {row['run_id']!r} predicts through group-specific thresholds (it needs the sensitive "
            "attribute at prediction time), which a weight file cannot carry; export another method"
        )
    cfg = config_from_dict(resolved)
    job = _job(cfg, str(row["run_id"]))
    splits = load_splits(job.data, job.seed)
    dense, shipped, dense_iterations = _models(out, cfg, splits, job, row)
    _check_record(shipped, splits, row)
    record = {key: plain(value) for key, value in row.to_dict().items()}
    about = {
        "pruning": pruning_section({**record, "dense_train_iterations": dense_iterations}),
        "seeds": seed_intervals(frame, row),
        "data_source": {"config": dataclasses.asdict(job.data), "seed": job.seed},
        "sweep": {"directory": str(out.resolve()), "record": record},
        "config": resolved,
    }
    return export_model(
        shipped,
        to,
        data=splits,
        dense=dense,
        architecture=architecture(cfg, splits),
        about=about,
        weights=weights,
        onnx=onnx,
    )


def _check_record(shipped: nn.Module, splits: Splits, row: pd.Series) -> None:
    test = evaluate(shipped, splits.test, splits.n_groups)
    if abs(test["accuracy"] - float(row["accuracy"])) > 1e-6:
        logger.warning(
            "the shipped model's test accuracy %.6f differs from the run record's %.6f (a slimmed model's "
            "borderline predictions, or data changed since the sweep); the card holds the shipped model's",
            test["accuracy"],
            row["accuracy"],
        )


def _data_config(card: dict[str, Any], data: str | None) -> tuple[DataConfig, int, bool]:
    """The data to evaluate on: the card's (``data`` None), a TOML file's ``[data]`` table, or the
    card's data config with its file / folder replaced by ``data``."""
    source = card.get("data_source")
    if data is None:
        if not source:
            raise ShippedModelError(
                "the card names no data to re-check on (exported without a data source); pass --data"
            )
        return config_from_dict({"data": source["config"]}).data, int(source["seed"]), True
    seed = int(source["seed"]) if source else 0
    path = Path(data)
    if not path.exists():
        raise ShippedModelError(f"--data {data}: no such file or directory")
    if path.suffix == ".toml":
        table = tomllib.loads(path.read_text()).get("data")
        if not isinstance(table, dict):
            raise ShippedModelError(
                f"{path} has no [data] table; expected the keys of a config's [data] section"
            )
        return config_from_dict({"data": table}).data, seed, False
    base = dict(source["config"]) if source else {"name": "csv"}
    names = card.get("data", {})
    location = dataset_spec(base["name"]).location
    if location == "root":
        base["root"] = str(path)  # the same loader on another folder
    elif location == "path":
        base["path"] = str(path)
    else:  # a packaged table or image_csv: the user's file through the generic CSV loader
        base = {"name": "csv", "path": str(path), "fractions": base.get("fractions", (0.7, 0.15, 0.15))}
    if base.get("target") is None:
        base["target"] = names.get("target")
    if base.get("sensitive_attribute") is None:  # intersectional groups: "Male,Young"
        attribute = str(names.get("sensitive_attribute"))
        base["sensitive_attribute"] = attribute.split(",") if "," in attribute else attribute
    return config_from_dict({"data": base}).data, seed, False


def evaluate_directory(
    directory: str | Path,
    *,
    data: str | None = None,
    split: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    model: str | None = None,
) -> Evaluation:
    """Reload the shipped ``directory`` (checking files, hashes and shapes) and recompute its card's
    metrics on ``split`` (default ``test``) of the card's data, or on ``data`` (default split
    ``all``) beside the card's test metrics.

    ``model`` (``"package.module:factory"``) builds the architecture of a model exported from the
    Python API (any ``nn.Module``; its weights are then loaded); ``data`` may also be
    ``"package.module:function"``, returning the card's data as :func:`fairprune.prune` takes it
    (``(train, val, test)``, a dict of them, or ``Splits``), compared against the card.
    """
    module = None if model is None else _call_spec(model, "--model")
    if module is not None and not isinstance(module, nn.Module):
        raise ShippedModelError(f"--model {model}: returned {type(module).__name__}; expected an nn.Module")
    exported = load_exported(directory, module)
    if data is not None and _is_spec(data):
        names = exported.card.get("data", {}).get("group_names")
        try:
            splits = as_splits(_call_spec(data, "--data"), group_names=names)
        except (TypeError, ValueError) as err:
            raise ShippedModelError(f"--data {data}: {err}") from err
        return evaluate_exported(
            exported, splits, split=split or "test", tolerance=tolerance, directory=directory
        )
    config, seed, same = _data_config(exported.card, data)
    splits = load_splits(config, seed)
    chosen = split or ("test" if same else "all")
    return evaluate_exported(
        exported, splits, split=chosen, same_data=same, tolerance=tolerance, directory=directory
    )


def _is_spec(text: str) -> bool:
    """``"package.module:name"`` (and not an existing file or folder)."""
    head, sep, tail = text.partition(":")
    return bool(sep) and head.replace(".", "").replace("_", "").isalnum() and tail.isidentifier()


def _call_spec(spec: str, option: str) -> Any:
    """Import ``package.module`` and call its ``name()`` (``spec`` = ``"package.module:name"``)."""
    if not _is_spec(spec):
        raise ShippedModelError(
            f"{option} {spec!r}: expected package.module:callable, e.g. mypkg.models:build"
        )
    module_name, _, name = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ShippedModelError(
            f"{option} {spec}: cannot import it ({err}); expected package.module:callable"
        ) from err
    if not callable(target):
        raise ShippedModelError(f"{option} {spec}: {name} is not callable; expected a function or class")
    return target()
