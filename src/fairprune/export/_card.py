"""The model card of a shipped model: its metrics in card form, checks, and ``MODEL_CARD.md``.

``card.json`` sections (all written by :func:`fairprune.export.export_model`):

- ``format``, ``created``, ``versions``: card format, UTC time, fairprune / torch / safetensors /
  Python versions;
- ``model``: architecture (``name``, ``input_shape``, ``n_classes``, ``params`` of a built-in
  model, when known), ``shapes`` of every tensor (slimmed shapes for a channel-pruned model),
  ``input`` (dtype and preprocessing of what the network takes);
- ``files``: each weight file (``model.safetensors`` or ``model.sparse.safetensors``, and
  ``model.onnx``) with its ``sha256``, ``bytes`` and ``layout``;
- ``data``: data set, target and class names, sensitive attribute, group names and sizes per split;
- ``metrics``: ``{split: {"dense": ..., "pruned": ...}}`` for ``val`` and ``test``, each the exact
  metrics of :func:`fairprune.fairness.metrics.fairness_report` with per-group accuracies and sizes
  keyed by group name;
- ``footprint``: parameters, non-zero parameters, sparsity of the prunable weights, FLOPs, latency;
- ``pruning`` (:func:`pruning_section`, the same keys from a sweep's run record and from a
  :class:`~fairprune.PruningResult`): method, label, structure, target and achieved sparsity,
  fairness notion, tau and how it was set, the outcome (``fair``: within tau on validation;
  ``certified`` where the sweep records it), training iterations and seconds, run id and seed;
- any provenance the caller adds (``seeds``: the interval over seeds; ``data_source``; ``sweep``;
  ``config``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fairprune.errors import ShippedModelError
from fairprune.fairness.metrics import METRIC_COLUMNS
from fairprune.schema import GROUP_SIZE, GROUPED, flat_groups, name_groups, nest_groups

__all__ = [
    "CARD_FORMAT",
    "PRUNING_KEYS",
    "pruning_section",
    "plain",
    "card_metrics",
    "named_card_metrics",
    "summarize_card",
    "flat_metrics",
    "check_names",
    "render_markdown",
]

CARD_FORMAT = "fairprune.card/1"
PRUNING_KEYS = (
    "method",
    "label",
    "structure",
    "sparsity",
    "achieved_sparsity",
    "channel_fraction",
    "fairness",
    "tolerance",
    "tolerance_setting",
    "fair",
    "certified",
    "violation_bound",
    "degradation_bound",
    "certificate",
    "train_iterations",
    "dense_train_iterations",
    "wall_seconds",
    "run_id",
    "seed",
)
"""The keys of a card's ``pruning`` section (``None`` where the route does not know one)."""


def plain(value: Any) -> Any:
    """A record's value for JSON: numpy scalars as Python numbers, NaN as ``None``."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def pruning_section(record: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``pruning`` section: each of :data:`PRUNING_KEYS` from a run record (a row of a
    sweep's ``results.csv``, or the fields of a :class:`~fairprune.PruningResult`), ``None``
    where the record has none."""
    return {key: plain(record.get(key)) for key in PRUNING_KEYS}


def card_metrics(report: Mapping[str, float], group_names: Sequence[str]) -> dict[str, Any]:
    """A :func:`~fairprune.fairness.metrics.fairness_report` with its per-group entries keyed by
    group name: ``{"accuracy": ..., "group_accuracy": {"Female": ...}, "group_size": {...}}``."""
    return nest_groups(name_groups(report, group_names))


named_card_metrics = nest_groups
"""A report whose per-group keys already carry the group's name (``group_accuracy_Female``, as in
:attr:`fairprune.PruningResult.metrics`) as card metrics: :func:`fairprune.schema.nest_groups`."""

flat_metrics = flat_groups
"""Card metrics as one flat mapping (``group_accuracy[Female]``): :func:`fairprune.schema.flat_groups`."""


def _difference(card: Sequence[str], data: Sequence[str]) -> str:
    missing = [n for n in card if n not in data]
    extra = [n for n in data if n not in card]
    parts = [f"missing {missing}"] if missing else []
    parts += [f"not in the card {extra}"] if extra else []
    return "; ".join(parts) or "same names in another order"


def check_names(card: Mapping[str, Any], class_names: Sequence[str], group_names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless the data's class and group names are the card's, in order."""
    data = card.get("data", {})
    for what, ours, theirs in (
        ("classes", list(class_names), data.get("class_names")),
        ("groups", list(group_names), data.get("group_names")),
    ):
        if theirs is not None and ours != list(theirs):
            raise ShippedModelError(
                f"the data's {what} {ours} differ from the card's {list(theirs)} "
                f"({_difference(list(theirs), ours)}); expected the {what} the model was pruned for"
            )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _metric_table(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["| split | model | " + " | ".join(_metric_names(metrics)) + " |"]
    lines.append("|" + "---|" * (len(_metric_names(metrics)) + 2))
    for split, models in metrics.items():
        for which, values in models.items():
            flat = flat_metrics(values)
            cells = [_fmt(flat.get(name, math.nan)) for name in _metric_names(metrics)]
            lines.append(f"| {split} | {which} | " + " | ".join(cells) + " |")
    return lines


def _metric_names(metrics: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    sizes = GROUPED[GROUP_SIZE]
    for models in metrics.values():
        for values in models.values():
            names += [n for n in flat_groups(values) if n not in names and not n.startswith(sizes)]
    return names


def _title(model: Mapping[str, Any], pruning: Mapping[str, Any]) -> str:
    name = model.get("name") or str(model.get("class", "model")).rpartition(".")[2]
    method = pruning.get("label") or pruning.get("method")
    return f"{name} pruned by {method}" if method else f"{name} (no pruning record)"


def outcome(pruning: Mapping[str, Any]) -> str:
    """The pruning section's outcome in words: whether tau held on validation (and was certified)."""
    if pruning.get("fairness") is None:
        return "unconstrained (no fairness notion)"
    tau = pruning.get("tolerance")
    fair = pruning.get("fair")
    within = "not checked against" if fair is None else "within" if fair else "not within"
    text = f"{pruning['fairness']} {within} tau = {_fmt(tau)} on validation"
    if pruning.get("certificate"):
        text += f"; {pruning['certificate']}"
    elif pruning.get("certified") is not None:
        text += "; certified" if pruning["certified"] else "; not certified"
    return text


def summarize_card(card: Mapping[str, Any]) -> str:
    """A few lines: the model and its pruning, the outcome, the weight file, the test metrics."""
    model, pruning, foot = card.get("model", {}), card.get("pruning") or {}, card.get("footprint", {})
    lines = [_title(model, pruning)]
    if pruning:
        lines[0] += f" ({pruning.get('structure')}, sparsity {_fmt(pruning.get('sparsity'))})"
        lines.append(outcome(pruning))
    weights = [f"{name} {entry.get('bytes')} B" for name, entry in card.get("files", {}).items()]
    lines.append(
        f"{', '.join(weights)}; {foot.get('params')} parameters, {foot.get('nonzero_params')} non-zero"
    )
    metrics = card.get("metrics", {})
    split = next((s for s in ("test", "val") if s in metrics), None)
    if split:
        pruned, dense = metrics[split].get("pruned", {}), metrics[split].get("dense", {})
        shown = [n for n in ("accuracy", _constrained(pruning), "worst_group_accuracy") if n in pruned]
        lines.append(
            f"{split}: "
            + ", ".join(
                f"{n} {_fmt(pruned[n])}" + (f" (dense {_fmt(dense[n])})" if n in dense else "") for n in shown
            )
        )
    return "\n".join(lines)


def _constrained(pruning: Mapping[str, Any]) -> str:
    fairness = pruning.get("fairness") or "accuracy_gap"
    return METRIC_COLUMNS.get(fairness, fairness)


def render_markdown(card: Mapping[str, Any]) -> str:
    """``MODEL_CARD.md``: the card's essentials for a human reader (``card.json`` has everything)."""
    data, model, pruning = card.get("data", {}), card.get("model", {}), card.get("pruning", {})
    foot = card.get("footprint", {})
    lines = [f"# Model card: {_title(model, pruning)}", ""]
    if data.get("dataset") is not None:
        lines.append(
            f"- **Data**: {data.get('dataset')}; target `{data.get('target')}` "
            f"(classes {data.get('class_names')})"
        )
    if data:
        lines += [
            f"- **Sensitive attribute**: `{data.get('sensitive_attribute') or 'n/a'}`, groups "
            + ", ".join(
                f"{name} ({', '.join(f'{s} {n[i]}' for s, n in data.get('group_sizes', {}).items())})"
                for i, name in enumerate(data.get("group_names", []))
            ),
        ]
    for key, label in (
        ("fairness", "Fairness notion"),
        ("tolerance", "Tolerance tau"),
        ("tolerance_setting", "tau set by"),
        ("sparsity", "Target sparsity"),
        ("structure", "Structure"),
        ("train_iterations", "Training iterations"),
    ):
        if pruning.get(key) is not None:
            lines.append(f"- **{label}**: {_fmt(pruning[key])}")
    if pruning:
        lines.append(f"- **Outcome**: {outcome(pruning)}")
    if pruning.get("degradation_bound") is not None:
        lines.append(
            f"- **Per group**: no group lost more than {_fmt(pruning['degradation_bound'])} accuracy beyond "
            "the average loss (upper bound, same certification samples and level)"
        )
    lines += [
        f"- **Sparsity of the prunable weights**: {_fmt(foot.get('sparsity', math.nan))}",
        f"- **Parameters**: {foot.get('params')} stored, {foot.get('nonzero_params')} non-zero "
        f"(dense: {foot.get('dense_params', 'n/a')})",
        f"- **FLOPs per sample**: {foot.get('flops', 'n/a')} (dense: {foot.get('dense_flops', 'n/a')})",
        f"- **Latency** (batch {foot.get('latency_batch', 'n/a')}, {foot.get('device', 'cpu')}): "
        f"{_fmt(foot.get('latency_ms', math.nan))} ms "
        f"(dense: {_fmt(foot.get('latency_dense_ms', foot.get('dense_latency_ms', math.nan)))} ms)",
        "",
    ]
    if card.get("metrics"):
        lines += ["## Metrics", "", *_metric_table(card["metrics"]), ""]
    seeds = card.get("seeds")
    if seeds:
        lines += [f"## Over {len(seeds['seeds'])} seeds ({seeds['seeds']}, test split)", ""]
        lines += ["| metric | mean | std | 95% interval |", "|---|---|---|---|"]
        for name, s in seeds["metrics"].items():
            lines.append(
                f"| {name} | {_fmt(s['mean'])} | {_fmt(s['std'])} | [{_fmt(s['low'])}, {_fmt(s['high'])}] |"
            )
        lines.append("")
    lines += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {name} | {f['bytes']} | `{f['sha256']}` |" for name, f in card.get("files", {}).items()]
    versions = ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items())
    lines += ["", f"Created {card.get('created')} with {versions}. Re-check: `fairprune evaluate <dir>`.", ""]
    return "\n".join(lines)
