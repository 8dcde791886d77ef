"""The runs of an experiment: method variants, data cells, jobs, and when a config extends another.

Torch-free: the grid is known (and checked) before anything is loaded or trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from fairprune.config import DataConfig, ExperimentConfig, method_params
from fairprune.methods_spec import METHODS

__all__ = ["Variant", "Job", "variants_of", "data_cells", "grid", "extends"]


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
            if METHODS[m].fair:
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
        return f"{self.tag}{file_safe(self.variant.label)}__s{self.sparsity:g}__seed{self.seed}"

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
        names = "+".join(file_safe(n) for n in a) if isinstance(a, (list, tuple)) else file_safe(f"{a}")
        out.append((replace(cfg.data, target=t, sensitive_attribute=a), f"{file_safe(f'{t}-')}{names}__"))
    return out


def file_safe(name: str) -> str:
    """``name`` with every run of characters unsafe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


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
