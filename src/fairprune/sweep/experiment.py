"""The sweep: train the dense model once per seed, run every (variant, sparsity), record each run
(in one process, or ``jobs`` runs at a time in worker processes; one run: :mod:`fairprune.sweep.runs`).

Each run writes ``OUT/runs/<run_id>.json`` atomically as soon as it finishes; ``results.csv`` is
rebuilt (atomically) after each. A killed sweep, restarted on the same directory with the same
resolved config, skips the runs already recorded and loses nothing.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from fairprune.atomic import write_atomic
from fairprune.config import ExperimentConfig
from fairprune.distributed import is_distributed, is_main_process, on_main, process_group
from fairprune.engine import TrainConfig
from fairprune.errors import ConfigError
from fairprune.schema import RESULT_COLUMNS
from fairprune.sweep.grid import Job, Variant, data_cells, extends, grid, variants_of
from fairprune.sweep.runs import Cell, cell_of, cell_splits, dense_model, one_run
from fairprune.sweep.store import claim_out_dir, collect_results, read_records
from fairprune.sweep.validation import check_experiment

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
    """Check everything (see :func:`~fairprune.sweep.validation.check_experiment`), then claim ``out``:
    with ``restart``, move what it holds to ``OUT/replaced/<time>/`` (returned), and write
    ``config.json``. Nothing is written when a check fails."""
    check_experiment(cfg, out, restart=restart)
    return claim_out_dir(out, json.loads(json.dumps(cfg.to_dict())), restart=restart)


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = False,
    jobs: int = 1,
) -> pd.DataFrame:
    """Run (or resume) the grid of ``cfg`` into ``out``; returns the results table.

    Everything is checked first (config, data, output directory: see
    :func:`~fairprune.sweep.validation.check_experiment`); only then is ``out`` claimed (with
    ``restart``, its old contents moved to ``OUT/replaced/<time>/``). Records that cannot be
    read are moved to ``OUT/corrupt/`` and their runs recomputed. The dense model is trained
    once per (data cell, seed) and reused by every method.

    ``jobs > 1`` runs that many runs at a time, each in its own process (``train.threads``
    torch threads each): the dense models are trained first, here, and the workers reload them;
    this process writes every record as its run finishes. The results are those of one process
    (every run is seeded by itself). Not under ``torchrun``, where each run spans the ranks.
    """
    if not (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1):
        raise ConfigError(f"jobs must be a positive number of processes; received {jobs!r}")
    out = Path(out)
    train = check_experiment(cfg, out, restart=restart)  # every rank checks; only rank 0 writes
    with process_group(train.device) as device:  # under torchrun: one rank (and device) each
        if is_distributed() and jobs > 1:
            raise ConfigError(
                f"jobs={jobs} runs the grid in several processes, and torchrun already runs each run "
                "over its ranks; use one or the other (jobs=1 under torchrun)"
            )
        return _run_grid(cfg, replace(train, device=device), out, restart, progress, jobs)


def _run_grid(
    cfg: ExperimentConfig, train: TrainConfig, out: Path, restart: bool, progress: bool, jobs: int
) -> pd.DataFrame:
    """:func:`run_experiment` once checked, on this rank's device: claim ``out``, then run what
    is not recorded yet and collect the results table."""
    on_main(lambda: claim_out_dir(out, json.loads(json.dumps(cfg.to_dict())), restart=restart))
    progress = progress and is_main_process()
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    records = on_main(lambda: read_records(out, set_corrupt_aside=True))  # rank 0 moves corrupt ones aside
    if records is None:  # another rank under torchrun: read what rank 0 left
        records = read_records(out)
    recorded = {r["run_id"] for r in records}
    on_main(lambda: collect_results(out))  # results.csv matches the records before any run starts
    every = grid(cfg)
    todo = [job for job in every if job.run_id not in recorded]
    logger.info("%d runs in the grid, %d already recorded", len(every), len(every) - len(todo))
    if jobs > 1 and len(todo) > 1:
        _run_in_processes(cfg, train, todo, out, progress, jobs)
    else:
        cache: dict[str, Cell] = {}
        for job in tqdm(todo, desc="runs", disable=not progress):
            if job.dense_key not in cache:
                cache.clear()
                cache[job.dense_key] = cell_of(cfg, train, job, out, progress)
            record = one_run(cfg, cache[job.dense_key], job, progress, out)
            on_main(partial(_record, out, job, record))
    frame = on_main(lambda: collect_results(out))
    return frame if frame is not None else pd.read_csv(out / "results.csv")


def _run_in_processes(
    cfg: ExperimentConfig, train: TrainConfig, todo: list[Job], out: Path, progress: bool, jobs: int
) -> None:
    """Run ``todo`` in ``jobs`` worker processes, recording each run here as it finishes.

    A failed run stops the pending ones; the runs already under way are still recorded (nothing
    finished is lost), then the first error is raised.
    """
    first_of_cell: dict[str, Job] = {}
    for job in todo:
        first_of_cell.setdefault(job.dense_key, job)
    for job in first_of_cell.values():  # the dense models, in grid order, before any worker needs one
        dense_model(cfg, train, cell_splits(cfg, job), job, out, progress)
    # fork shares what this process loaded; CUDA needs fresh processes
    method = "fork" if train.device == "cpu" and "fork" in mp.get_all_start_methods() else "spawn"
    error: BaseException | None = None
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)),
        mp_context=mp.get_context(method),
        initializer=_start_worker,
        initargs=(cfg, train, out),
    ) as pool:
        futures = {pool.submit(_worker_run, job): job for job in todo}
        bar = tqdm(
            as_completed(futures), total=len(futures), desc=f"runs ({jobs} processes)", disable=not progress
        )
        for future in bar:
            if future.cancelled():
                continue
            try:
                _record(out, futures[future], future.result())
            except BaseException as err:  # noqa: BLE001 - re-raised below, after the others finish
                if error is None:
                    error = err
                    for pending in futures:
                        pending.cancel()
    if error is not None:
        raise error


_WORKER: dict[str, Any] = {}  # a worker process's config and its current cell


def _start_worker(cfg: ExperimentConfig, train: TrainConfig, out: Path) -> None:
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    _WORKER.update(cfg=cfg, train=train, out=out, key=None, cell=None)


def _worker_run(job: Job) -> dict[str, Any]:
    """One run in a worker: its cell built once per (data cell, seed), the dense model reloaded."""
    if _WORKER["key"] != job.dense_key:
        _WORKER["cell"] = None  # free the previous cell first
        _WORKER["cell"] = cell_of(_WORKER["cfg"], _WORKER["train"], job, _WORKER["out"], False)
        _WORKER["key"] = job.dense_key
    return one_run(_WORKER["cfg"], _WORKER["cell"], job, False, _WORKER["out"])


def _record(out: Path, job: Job, record: dict[str, Any]) -> None:
    """Write one run's record and rebuild ``results.csv``."""
    write_atomic(out / "runs" / f"{job.run_id}.json", json.dumps(record, indent=1, default=_jsonable))
    collect_results(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
