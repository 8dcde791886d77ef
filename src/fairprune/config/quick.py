"""``--quick``: every iteration budget scaled down, image data capped, so that a config runs in
minutes; and the list of what it changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fairprune.config.checks import method_params, validate_sections
from fairprune.config.sections import (
    IMAGE_DATASETS,
    ExperimentConfig,
)
from fairprune.methods_spec import BUDGET_FIELDS, METHODS, defaults

QUICK_FACTOR = 0.1  # --quick scales every iteration budget by this
QUICK_RESOLUTION = 32  # px, at most, for image data under --quick
QUICK_BATCH = 64
# models whose CPU training step at 32 px costs about twice ResNet10's (measured, one thread:
# MobileNetV2 200 ms against 105 ms at batch 64) get half the batch, so that a quick run of a
# paper config stays under 10 minutes on a 2-core machine
QUICK_BATCH_BY_MODEL = {"mobilenet_v2": 32}
QUICK_EVAL_SAMPLES = 300
# image data: at most this many samples per split (a seeded subset stratified by (target, group),
# the loaders' ``limit``), so that a quick run's time does not grow with the data set: the final
# evaluations of every run and the decoding scale with the splits, the training does not
QUICK_LIMIT = {"train": 10_000, "val": 2_500, "test": 2_500}
QUICK_LATENCY_REPEATS = 4
QUICK_MIN_EVAL_EVERY = 20  # validating a CNN more often costs more than the quick run trains
_FAST_STEM_MODELS = ("resnet10", "resnet18", "resnet50", "mobilenet_v2")


def quick(cfg: ExperimentConfig) -> ExperimentConfig:
    """The smoke-run version of ``cfg`` (``fairprune run --quick``), to check a long job first.

    One seed, the first data cell, no tau sweep; at most two sparsities (the middle one of the
    list and the largest); every iteration budget (``train.dense_steps`` and each method's
    ``steps`` / ``finetune_steps`` / ``round_steps`` / ``fair_steps``, given or default) times
    ``QUICK_FACTOR``, validation every ``eval_every * QUICK_FACTOR`` iterations (at least 20) so
    that dual steps and checkpoint selection still happen; batches of at most ``QUICK_BATCH``
    (``QUICK_BATCH_BY_MODEL`` for models slow on a CPU);
    in-training validation on at most ``QUICK_EVAL_SAMPLES`` samples; at most
    ``QUICK_LATENCY_REPEATS`` timed passes per model. Image data: at most
    ``QUICK_RESOLUTION`` px, at most ``QUICK_LIMIT`` samples per split (the loaders' ``limit``:
    seeded subsets stratified by (target, group); a smaller ``limit`` given stays), and the CNNs
    keep torchvision's downsampling stem (``small_input = false``), 10x cheaper at 32 px.
    :func:`quick_changes` lists what changed.
    """

    def scaled(n: int) -> int:
        return max(1, round(n * QUICK_FACTOR)) if n > 0 else 0

    def budgets(method: str, params: dict[str, Any]) -> dict[str, Any]:
        given = {**defaults(method), **params}
        return {k: scaled(given[k]) for k in METHODS[method].budgets}

    sparsities = sorted(cfg.sparsities)
    if len(sparsities) > 2:
        sparsities = [sparsities[len(sparsities) // 2 - (len(sparsities) % 2 == 0)], sparsities[-1]]
    methods = sorted({*cfg.methods, *(v["method"] for v in cfg.variants)})
    params = {m: {**cfg.method_params.get(m, {}), **budgets(m, method_params(cfg, m))} for m in methods}
    variants = [{**v, **{k: scaled(int(v[k])) for k in BUDGET_FIELDS if k in v}} for v in cfg.variants]
    data, model = cfg.data, cfg.model
    if data.name in IMAGE_DATASETS:
        resolution = min(int(data.params.get("resolution", QUICK_RESOLUTION)), QUICK_RESOLUTION)
        limit = {
            name: _capped(_split_cap(data.params.get("limit"), name), cap)
            for name, cap in QUICK_LIMIT.items()
        }
        data = dataclasses.replace(data, params={**data.params, "resolution": resolution, "limit": limit})
        if model.name in _FAST_STEM_MODELS:
            model = dataclasses.replace(model, params={**model.params, "small_input": False})
    t = cfg.train
    train = dataclasses.replace(
        t,
        dense_steps=scaled(t.dense_steps),
        eval_every=max(QUICK_MIN_EVAL_EVERY, scaled(t.eval_every)),
        batch_size=min(t.batch_size, QUICK_BATCH_BY_MODEL.get(model.name, QUICK_BATCH)),
        eval_samples=min(t.eval_samples or QUICK_EVAL_SAMPLES, QUICK_EVAL_SAMPLES),
    )
    export = dataclasses.replace(
        cfg.export, latency_repeats=min(cfg.export.latency_repeats, QUICK_LATENCY_REPEATS)
    )
    out = dataclasses.replace(
        cfg,
        data=data,
        model=model,
        train=train,
        export=export,
        seeds=cfg.seeds[:1],
        sparsities=sparsities,
        tolerances=[],
        targets=cfg.targets[:1],
        sensitive_attributes=cfg.sensitive_attributes[:1],
        method_params=params,
        variants=variants,
    )
    validate_sections(out)
    return out


def _split_cap(limit: Any, split: str) -> Any:
    """The cap that a data ``limit`` (None, a number, or a mapping of split names) puts on
    ``split``; the loader checks its values (``labelled_images.limit_per_split``)."""
    return limit.get(split) if isinstance(limit, dict) else limit


def _capped(given: Any, cap: int) -> Any:
    """``cap``, or a smaller integer ``given`` (anything else is left for the loader to refuse)."""
    if given is None:
        return cap
    return min(given, cap) if isinstance(given, int) and not isinstance(given, bool) else given


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``{"train.dense_steps": 4000, ...}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "limit":
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{value[0]!r}, {value[1]!r}, ... {value[-1]!r}] ({len(value)} values)"
    return repr(value)


def quick_changes(cfg: ExperimentConfig, quick_cfg: ExperimentConfig) -> list[str]:
    """What :func:`quick` changed, one ``"key: before -> after"`` line per config key."""
    before, after = _flat(cfg.to_dict()), _flat(quick_cfg.to_dict())
    return [
        f"{key}: {_short(before[key]) if key in before else '(not set)'} -> {_short(after[key])}"
        for key in after
        if before.get(key, dataclasses.MISSING) != after[key] and after[key] != {}
    ]
