"""What each pruning method takes: its hyperparameters (type, default, range), its iteration
budgets, the fairness metrics it supports and whether it trains against the tolerance.

Torch-free, so that a configuration is checked in full before torch or a pruner is imported.
Each entry mirrors the method's pruner dataclass in :mod:`fairprune.pruners` (field names and
defaults; a contract test holds the two together); the pruner's own ``__post_init__`` still checks
the rules that tie several fields together (e.g. BiFP's joint schedule), in the validation phase
before anything is trained or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["METHODS", "BUDGET_FIELDS", "MethodSpec", "params_model"]

BUDGET_FIELDS = ("steps", "finetune_steps", "round_steps", "fair_steps")
"""Hyperparameters that are iteration budgets (scaled by ``--quick``)."""

Steps = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Param = tuple[Any, Any]  # (annotation, default)

_SPACE: dict[str, Param] = {
    "scope": (Literal["global", "layer"], "global"),
    "structure": (Literal["unstructured", "channel"], "unstructured"),
    "round_to": (Positive, 1),
    "at_least": (bool, False),
    "budget": (Literal["params", "flops"], "params"),
}


@dataclass(frozen=True)
class MethodSpec:
    """One method's declaration.

    Attributes:
        params: Hyperparameter name -> (type annotation with its range, default).
        fair: Trains against the fairness tolerance (its runs are checked against tau and
            re-run at each extra ``tolerances`` value).
        metrics: Fairness keys the method supports (``None``: all).
    """

    params: dict[str, Param]
    fair: bool = False
    metrics: tuple[str, ...] | None = None
    budgets: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", tuple(k for k in BUDGET_FIELDS if k in self.params))


def _spec(fair: bool = False, metrics: tuple[str, ...] | None = None, **own: Param) -> MethodSpec:
    return MethodSpec({**_SPACE, **own}, fair, metrics)


def _bifp(mask_fairness: float, weight_fairness: float, fair: bool) -> MethodSpec:
    return _spec(
        fair,
        mask_fairness=(NonNegative, mask_fairness),
        weight_fairness=(NonNegative, weight_fairness),
        steps=(Steps, 300),
        schedule=(Literal["alternating", "joint"], "alternating"),
        mask_lr=(PositiveFloat, 0.05),
        gamma=(PositiveFloat, 1.0),
        mask_init=(Literal["magnitude", "random", "uniform", "snip"], "magnitude"),
        finetune_steps=(Steps, 500),
        dual_step=(NonNegative | None, None),
    )


METHODS: dict[str, MethodSpec] = {
    "dense": _spec(),
    "random": _spec(finetune_steps=(Steps, 500)),
    "magnitude": _spec(finetune_steps=(Steps, 500)),
    "imp": _spec(rate=(Annotated[float, Field(gt=0, lt=1)], 0.2), round_steps=(Steps, 100)),
    "snip": _spec(finetune_steps=(Steps, 500), n_batches=(Positive, 4)),
    "fpgm": MethodSpec(
        {
            **_SPACE,
            "structure": (Literal["unstructured", "channel"], "channel"),
            "finetune_steps": (Steps, 500),
        }
    ),
    "bip": _bifp(0.0, 0.0, fair=False),
    "bifp": _bifp(1.0, 1.0, fair=True),
    "bifp_no_mask_fairness": _bifp(0.0, 1.0, fair=True),
    "bifp_no_weight_fairness": _bifp(1.0, 0.0, fair=True),
    "prune_then_fair": _spec(True, finetune_steps=(Steps, 1000)),
    "fair_then_prune": _spec(True, fair_steps=(Steps, 500), finetune_steps=(Steps, 500)),
    "fairgrape": _spec(
        rounds=(Positive, 10),
        n_batches=(Positive, 4),
        recompute=(bool, False),
        greedy_picks=(Positive, 1024),
        finetune_steps=(Steps, 500),
    ),
    "ceag": _spec(
        epsilon=(NonNegative, 0.02),
        dual_step=(NonNegative | None, None),
        finetune_steps=(Steps, 500),
        pruning=(Literal["magnitude", "imp"], "magnitude"),
        round_steps=(Steps, 100),
    ),
    "postprocess": _spec(
        metrics=("equalized_odds", "demographic_parity"),
        finetune_steps=(Steps, 500),
        grid_size=(Positive, 1000),
    ),
}
"""Every method by its registry key (the config's and the command line's name)."""


@cache
def params_model(method: str) -> type[BaseModel]:
    """A pydantic model of ``method``'s hyperparameters: unknown names and wrong types fail
    (strict: ``"3"`` is not an int; an int is accepted where a float is expected)."""
    spec = METHODS[method]
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{method}_params",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{name: (annotation, default) for name, (annotation, default) in spec.params.items()},
    )
