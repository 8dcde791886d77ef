"""The sweep: ``fairprune run``'s experiment grid, run by run, into an output directory.

:mod:`~fairprune.sweep.grid` lays out the runs of a configuration (torch-free),
:mod:`~fairprune.sweep.validation` checks everything they need before anything is trained or
written, :mod:`~fairprune.sweep.experiment` trains each dense model once and drives the runs
(:mod:`~fairprune.sweep.runs`: one run and its record, with :mod:`~fairprune.sweep.footprint`,
what its shipped model costs), :mod:`~fairprune.sweep.store` keeps the records, the results
table and resume (with :mod:`~fairprune.sweep.cost`, the iterations until a run first had a fair
model), and :mod:`~fairprune.sweep.choice` and :mod:`~fairprune.sweep.shipping` pick a run of a
finished sweep and ship its model through :mod:`fairprune.export`. The core (the one call, the
pruners, the loop) never imports this package.

These names are resolved on first use (PEP 562), as in :mod:`fairprune`, so that the torch-free
modules (``grid``, ``store``, ``cost``, ``choice``) and ``fairprune report``, which reads the
store, do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fairprune._lazy import lazy_attributes

if TYPE_CHECKING:  # what the names below are, for type checkers and IDEs
    from fairprune.sweep.choice import best_run, find_run
    from fairprune.sweep.cost import (
        ACCURACY_SLACK,
        TWO_STAGE_METHODS,
        first_fair_checkpoint,
        iterations_ratio,
        iterations_to_fair,
    )
    from fairprune.sweep.experiment import prepare_out_dir, run_experiment
    from fairprune.sweep.grid import Job, data_cells
    from fairprune.sweep.runs import cell_splits, load_dense
    from fairprune.sweep.shipping import best_in, evaluate_directory, export_run
    from fairprune.sweep.store import read_records, results_frame
    from fairprune.sweep.validation import load_splits

__all__ = [
    "ACCURACY_SLACK",
    "Job",
    "TWO_STAGE_METHODS",
    "best_in",
    "best_run",
    "cell_splits",
    "data_cells",
    "evaluate_directory",
    "export_run",
    "find_run",
    "first_fair_checkpoint",
    "iterations_ratio",
    "iterations_to_fair",
    "load_dense",
    "load_splits",
    "prepare_out_dir",
    "read_records",
    "results_frame",
    "run_experiment",
]

_HOMES = {
    "ACCURACY_SLACK": "fairprune.sweep.cost",
    "Job": "fairprune.sweep.grid",
    "TWO_STAGE_METHODS": "fairprune.sweep.cost",
    "best_in": "fairprune.sweep.shipping",
    "best_run": "fairprune.sweep.choice",
    "cell_splits": "fairprune.sweep.runs",
    "data_cells": "fairprune.sweep.grid",
    "evaluate_directory": "fairprune.sweep.shipping",
    "export_run": "fairprune.sweep.shipping",
    "find_run": "fairprune.sweep.choice",
    "first_fair_checkpoint": "fairprune.sweep.cost",
    "iterations_ratio": "fairprune.sweep.cost",
    "iterations_to_fair": "fairprune.sweep.cost",
    "load_dense": "fairprune.sweep.runs",
    "load_splits": "fairprune.sweep.validation",
    "prepare_out_dir": "fairprune.sweep.experiment",
    "read_records": "fairprune.sweep.store",
    "results_frame": "fairprune.sweep.store",
    "run_experiment": "fairprune.sweep.experiment",
}


__getattr__, __dir__ = lazy_attributes(__name__, _HOMES, globals(), __all__)
