"""Pruning methods, all peers behind one interface.

``PRUNERS`` maps each method's key (the CLI's and the config's name) to a factory taking the
method's hyperparameters as keywords; :func:`build_pruner` checks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from fairprune.pruners.base import Outcome, Pruner, PruneResult, run_pruner
from fairprune.pruners.bifp import BiFP
from fairprune.pruners.bifp_update import BiFPSparsifier
from fairprune.pruners.ceag import Ceag
from fairprune.pruners.fairgrape import FairGrape
from fairprune.pruners.imp import IMP, imp_schedule
from fairprune.pruners.oneshot import Dense, Fpgm, Magnitude, RandomPruner, Snip
from fairprune.pruners.postprocess import PostProcess
from fairprune.pruners.space import STRUCTURES, ChannelSelection, PrunerBase
from fairprune.pruners.two_stage import FairThenPrune, PruneThenFair

__all__ = [
    "PRUNERS",
    "build_pruner",
    "Pruner",
    "Outcome",
    "PruneResult",
    "run_pruner",
    "BiFP",
    "BiFPSparsifier",
    "Ceag",
    "PostProcess",
    "IMP",
    "imp_schedule",
    "Dense",
    "Magnitude",
    "RandomPruner",
    "Snip",
    "Fpgm",
    "FairGrape",
    "PrunerBase",
    "ChannelSelection",
    "STRUCTURES",
    "PruneThenFair",
    "FairThenPrune",
]

PRUNERS: dict[str, Callable[..., Pruner]] = {
    "dense": Dense,
    "random": RandomPruner,
    "magnitude": Magnitude,
    "imp": IMP,
    "snip": Snip,
    "fpgm": Fpgm,
    "bip": partial(BiFP, mask_fairness=0.0, weight_fairness=0.0),
    "bifp": BiFP,
    "bifp_no_mask_fairness": partial(BiFP, mask_fairness=0.0),
    "bifp_no_weight_fairness": partial(BiFP, weight_fairness=0.0),
    "prune_then_fair": PruneThenFair,
    "fair_then_prune": FairThenPrune,
    "fairgrape": FairGrape,
    "ceag": Ceag,
    "postprocess": PostProcess,
}

# methods whose training uses the fairness objective (their runs are checked against tau);
# not fairgrape: its groups enter only through per-group importances, it has no tau to meet
FAIR_METHODS = frozenset(
    {
        "bifp",
        "bifp_no_mask_fairness",
        "bifp_no_weight_fairness",
        "prune_then_fair",
        "fair_then_prune",
    }
)


def build_pruner(method: str, **params: Any) -> Pruner:
    """The pruner registered as ``method`` with hyperparameters ``params``.

    Raises:
        ValueError: For an unknown method or hyperparameter (listing the valid ones).
    """
    if method not in PRUNERS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(PRUNERS)}")
    factory = PRUNERS[method]
    cls = factory.func if isinstance(factory, partial) else factory
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for method {method!r}; expected some of {sorted(fields)}"
        )
    return factory(**params)
