"""fairprune: prune a PyTorch classifier to a target sparsity while keeping it fair across groups.

The core method is BiFP (bi-level fair pruning): mask and weights optimised together as a
bi-level problem, each under a group-fairness term.

The public surface::

    result = fairprune.prune(model, train, val, sparsity=0.9, fairness="equalized_odds")

:func:`prune` returns a :class:`PruningResult`; :func:`load_dataset` loads a dataset by name
(its splits yield ``(x, y, group)``). :class:`BiFPSparsifier` runs BiFP inside your own training
loop (``prepare`` -> ``step`` -> ``squash_mask``); :class:`StratifiedBatchSampler` draws batches
that hold every (target, group) cell, sharded across ranks under torchrun.

These names are resolved on first use (PEP 562), so that ``import fairprune.config`` — the
typed configuration, checked before anything heavy is imported — and ``fairprune --help`` do
not import torch; ``from fairprune import prune`` imports it as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fairprune._lazy import lazy_attributes

if TYPE_CHECKING:  # what the names below are, for type checkers and IDEs
    from fairprune.api import prune
    from fairprune.data.registry import load_dataset
    from fairprune.pruners.bifp_update import BiFPSparsifier
    from fairprune.result import PruningResult
    from fairprune.samplers import StratifiedBatchSampler

__all__ = [
    "BiFPSparsifier",
    "PruningResult",
    "StratifiedBatchSampler",
    "__version__",
    "load_dataset",
    "prune",
]

__version__ = "0.1.0"

_HOMES = {
    "BiFPSparsifier": "fairprune.pruners.bifp_update",
    "PruningResult": "fairprune.result",
    "StratifiedBatchSampler": "fairprune.samplers",
    "load_dataset": "fairprune.data.registry",
    "prune": "fairprune.api",
}


__getattr__, __dir__ = lazy_attributes(__name__, _HOMES, globals(), __all__)
