"""The method registry: one declaration per pruning method, torch-free.

Each entry of :data:`METHODS` says where the method's pruner lives, its hyperparameters (type with
range, default), its iteration budgets, its role (the dense reference, a baseline, a two-stage or
post-processing method, BiFP and its ablations), whether it trains against the tolerance and the
fairness metrics it supports. Everything else reads it: the config's validation (before torch or
a pruner is imported), :func:`fairprune.pruners.build_pruner` and the pruners' field defaults and
range checks (:func:`check_params`), ``--quick``, ``fairprune.prune``'s default budgets, the
iteration-ratio table and the plots. The pruner's own ``__post_init__`` adds only the rules that
tie several fields together (e.g. BiFP's joint schedule).

Adding a method: its pruner module under :mod:`fairprune.pruners` (a dataclass whose fields take
their defaults from :func:`defaults`) and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from fairprune.errors import validation_message

__all__ = [
    "METHODS",
    "BUDGET_FIELDS",
    "DENSE",
    "ROLES",
    "SPACE_DEFAULTS",
    "MethodSpec",
    "check_params",
    "defaults",
    "methods_with",
    "params_model",
]

BUDGET_FIELDS = ("steps", "finetune_steps", "round_steps", "fair_steps")
"""Hyperparameters that are iteration budgets (scaled by ``--quick``)."""

DENSE = "dense"
"""The reference method: the unpruned model every pruned run is compared with."""

ROLES = ("reference", "baseline", "two_stage", "bifp")
"""``reference``: the dense model; ``baseline``: prune (and fine-tune) without a fairness term in
the pruning; ``two_stage``: pruning and fairness as separate stages (fine-tuning under the
constraint, post-processing), compared with BiFP in the iteration-ratio table; ``bifp``: BiFP and
its ablations (the ablation plot)."""

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

SPACE_DEFAULTS: dict[str, Any] = {name: default for name, (_, default) in _SPACE.items()}
"""Defaults of the hyperparameters every pruner shares (where its scores live)."""


@dataclass(frozen=True)
class MethodSpec:
    """One method's declaration.

    Attributes:
        pruner: ``"module:Class"`` of its pruner under :mod:`fairprune.pruners` (imported on use).
        role: One of :data:`ROLES`.
        params: Hyperparameter name -> (type annotation with its range, default).
        fair: Trains against the fairness tolerance (its runs are checked against tau and
            re-run at each extra ``tolerances`` value).
        metrics: Fairness keys the method supports (``None``: all).
        binary_only: Needs a binary target (thresholds fitted on one score).
        budgets: Its iteration budgets, the hyperparameters in :data:`BUDGET_FIELDS`.
    """

    pruner: str
    role: str
    params: dict[str, Param]
    fair: bool = False
    metrics: tuple[str, ...] | None = None
    binary_only: bool = False
    budgets: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")
        object.__setattr__(self, "budgets", tuple(k for k in BUDGET_FIELDS if k in self.params))


def _spec(
    pruner: str, role: str = "baseline", fair: bool = False, space: dict[str, Param] = _SPACE, **own: Any
) -> MethodSpec:
    flags = {k: own.pop(k) for k in ("metrics", "binary_only") if k in own}
    return MethodSpec(pruner, role, {**space, **own}, fair, **flags)


def _bifp(mask_fairness: float, weight_fairness: float, fair: bool) -> MethodSpec:
    return _spec(
        "bifp:BiFP",
        "bifp",
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
    DENSE: _spec("oneshot:Dense", "reference"),
    "random": _spec("oneshot:RandomPruner", finetune_steps=(Steps, 500)),
    "magnitude": _spec("oneshot:Magnitude", finetune_steps=(Steps, 500)),
    "imp": _spec("imp:IMP", rate=(Annotated[float, Field(gt=0, lt=1)], 0.2), round_steps=(Steps, 100)),
    "snip": _spec("oneshot:Snip", finetune_steps=(Steps, 500), n_batches=(Positive, 4)),
    "fpgm": _spec(
        "oneshot:Fpgm",
        space={**_SPACE, "structure": (Literal["unstructured", "channel"], "channel")},
        finetune_steps=(Steps, 500),
    ),
    "bip": _bifp(0.0, 0.0, fair=False),
    "bifp": _bifp(1.0, 1.0, fair=True),
    "bifp_no_mask_fairness": _bifp(0.0, 1.0, fair=True),
    "bifp_no_weight_fairness": _bifp(1.0, 0.0, fair=True),
    "prune_then_fair": _spec("two_stage:PruneThenFair", "two_stage", True, finetune_steps=(Steps, 1000)),
    "fair_then_prune": _spec(
        "two_stage:FairThenPrune", "two_stage", True, fair_steps=(Steps, 500), finetune_steps=(Steps, 500)
    ),
    "fairgrape": _spec(
        "fairgrape:FairGrape",
        rounds=(Positive, 10),
        n_batches=(Positive, 4),
        recompute=(bool, False),
        greedy_picks=(Positive, 1024),
        finetune_steps=(Steps, 500),
    ),
    "ceag": _spec(
        "ceag:Ceag",
        "two_stage",
        epsilon=(NonNegative, 0.02),
        dual_step=(NonNegative | None, None),
        finetune_steps=(Steps, 500),
        pruning=(Literal["magnitude", "imp"], "magnitude"),
        round_steps=(Steps, 100),
    ),
    "postprocess": _spec(
        "postprocess:PostProcess",
        "two_stage",
        metrics=("equalized_odds", "demographic_parity"),
        binary_only=True,
        finetune_steps=(Steps, 500),
        grid_size=(Positive, 1000),
    ),
}
"""Every method by its registry key (the config's and the command line's name)."""


def methods_with(role: str) -> tuple[str, ...]:
    """The keys of the methods of ``role`` (one of :data:`ROLES`), in registry order."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    return tuple(key for key, spec in METHODS.items() if spec.role == role)


def defaults(method: str) -> dict[str, Any]:
    """``method``'s hyperparameters with their declared defaults (the pruner's field defaults)."""
    return {name: default for name, (_, default) in METHODS[method].params.items()}


@cache
def params_model(method: str | None) -> type[BaseModel]:
    """A pydantic model of ``method``'s hyperparameters (``None``: those every pruner shares):
    unknown names and wrong types fail (strict: ``"3"`` is not an int; an int is accepted where a
    float is expected)."""
    params = _SPACE if method is None else METHODS[method].params
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{method or 'pruner'}_params",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{name: (annotation, default) for name, (annotation, default) in params.items()},
    )


def check_params(method: str | None, params: dict[str, Any]) -> None:
    """Check ``params`` (some or all of ``method``'s hyperparameters; ``None``: of the fields
    every pruner shares, for a pruner outside the registry) against the declaration.

    Raises:
        ValueError: One line naming each wrong hyperparameter, what it expects and the value.
    """
    try:
        params_model(method)(**params)
    except ValidationError as err:
        where = "pruner" if method is None else f"method {method!r}"
        raise ValueError(f"{where}: " + validation_message(err)) from None
