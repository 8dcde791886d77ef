"""Pruning methods, all peers behind one interface.

Each method is declared once, in :data:`fairprune.methods_spec.METHODS` (its pruner class, its
hyperparameters with defaults and ranges, its role); :func:`build_pruner` builds it from there and
``PRUNERS`` maps each key (the CLI's and the config's name) to that factory.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib import import_module
from typing import Any

from fairprune.methods_spec import METHODS, defaults
from fairprune.pruners.base import Outcome, Pruner, PrunerBase, PruneResult, run_pruner
from fairprune.pruners.bifp import BiFP
from fairprune.pruners.bifp_update import BiFPSparsifier
from fairprune.pruners.ceag import Ceag
from fairprune.pruners.fairgrape import FairGrape
from fairprune.pruners.imp import IMP, imp_schedule
from fairprune.pruners.oneshot import Dense, Fpgm, Magnitude, RandomPruner, Snip
from fairprune.pruners.postprocess import PostProcess
from fairprune.pruners.space import ChannelSelection
from fairprune.pruners.sparsifier import FairSparsifier, ScoreSparsifier
from fairprune.pruners.two_stage import FairThenPrune, PruneThenFair

__all__ = [
    "PRUNERS",
    "build_pruner",
    "pruner_class",
    "Pruner",
    "Outcome",
    "PruneResult",
    "run_pruner",
    "BiFP",
    "BiFPSparsifier",
    "FairSparsifier",
    "ScoreSparsifier",
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
    "PruneThenFair",
    "FairThenPrune",
]


def pruner_class(method: str) -> type[Pruner]:
    """The pruner class of ``method``, as its registry entry names it."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    module, name = METHODS[method].pruner.split(":")
    return getattr(import_module(f"fairprune.pruners.{module}"), name)  # type: ignore[no-any-return]


def build_pruner(method: str, **params: Any) -> Pruner:
    """The pruner registered as ``method``: its declared defaults, then ``params``.

    Raises:
        ValueError: For an unknown method or hyperparameter (listing the valid ones), or a value
            out of its declared range.
    """
    cls = pruner_class(method)
    unknown = sorted(set(params) - set(METHODS[method].params))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for method {method!r}; expected some of "
            f"{sorted(METHODS[method].params)}"
        )
    return cls(**{**defaults(method), **params})


PRUNERS: dict[str, Callable[..., Pruner]] = {key: partial(build_pruner, key) for key in METHODS}
"""Each registered method's factory: hyperparameters as keywords (see :func:`build_pruner`)."""
