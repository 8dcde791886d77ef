"""The text of a report: terminal and markdown tables, sections, and how to read each plot.

Pure formatting of what :mod:`fairprune.reporting.report` has computed; nothing here reads or writes files
except the resolved configuration shown in ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairprune.reporting.stats import MIN_SEEDS, verdict
from fairprune.reporting.summaries import COMPARISON_COLUMNS
from fairprune.schema import FOOTPRINT_HEADERS, GROUP_ACCURACY, GROUP_SIZE, group_names_in, is_yes
from fairprune.sweep import ACCURACY_SLACK, TWO_STAGE_METHODS, iterations_ratio

__all__ = ["HOW_TO_READ", "FOOTPRINT", "certificate_line", "format_summary_table", "markdown", "truthy"]


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "–" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def _summary_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    metrics = [column[: -len("_mean")] for column in summary.columns if column.endswith("_mean")]
    stats = {f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci_low", "ci_high")}
    keys = [column for column in summary.columns if column not in stats | {"n_seeds"}]
    rows = []
    for _, row in summary.iterrows():
        cells = [_fmt(row[key]) for key in keys] + [str(row.get("n_seeds", ""))]
        for m in metrics:
            mean, std = _fmt(row[f"{m}_mean"]), _fmt(row[f"{m}_std"])
            cells.append(f"{mean} ± {std} [{_fmt(row[f'{m}_ci_low'])}, {_fmt(row[f'{m}_ci_high'])}]")
        rows.append(cells)
    return [*keys, "n_seeds", *metrics], rows


def format_summary_table(summary: pd.DataFrame) -> str:
    """Plain-text table of a summary: ``mean ± std [CI low, CI high]`` per metric."""
    headers, rows = _summary_cells(summary)
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines)


_CONSTRAINED = "the constrained fairness metric (the config's `fairness` key)"
HOW_TO_READ: dict[str, str] = {
    "vs_sparsity": "x is sparsity, y is `{metric}`: one line per label (mean over seeds) with a "
    "shaded {confidence:.0%} t-interval (a vertical bar for a single point); the dashed line is "
    "the dense model. Labels differ only where their bands do not overlap; the paired table is "
    "the sharper test.",
    "tradeoff": "One line per method across tolerances τ (points annotated): x is "
    f"{_CONSTRAINED}, y is accuracy. Up and to the left is better; a tighter τ moves points left.",
    "iterations": "Training iterations until a run's first checkpoint within τ on validation "
    "and within 1 point of the best pruned run's validation accuracy at that sparsity (the paper's "
    "Fig. 6 count), mean over the runs that reached one (annotated: how many of how many), with t-interval "
    "error bars. Lower is cheaper; a missing bar means no run of that label got there.",
    "ablation": "BiFP vs BiFP without the fair mask, without the fair weights, and without both "
    f"(BiP): accuracy (left) and {_CONSTRAINED} (right) against sparsity. The gap between lines "
    "is what each fairness term contributes, where it exceeds the bands.",
    "convergence": "Loss, violation, Lagrange multiplier (NaN in penalty mode) and mask change "
    "(fraction of mask entries flipped since the previous logged step) per step of one BiFP run "
    "per sparsity. Converged: flat loss, violation at or below the tolerance, mask change near 0.",
    "mask_init": f"Accuracy (left) and {_CONSTRAINED} (right) per mask initialisation, bars "
    "grouped by sparsity with CI error bars; overlapping bars mean the initialisation does not "
    "matter beyond seed noise.",
}
"""One 'how to read' paragraph per plot; ``<metric>_vs_sparsity`` plots use ``vs_sparsity``."""

_COMPARISON_VALUES = tuple(c for c in COMPARISON_COLUMNS if c not in ("label", "metric"))


def _title(results: pd.DataFrame) -> str:
    parts = []
    for column in ("dataset", "target", "sensitive_attribute", "model"):
        if column in results.columns:
            values = ", ".join(sorted(str(v) for v in results[column].dropna().unique()))
            parts.append(f"{column.replace('_', ' ')} `{values}`")
    return "# fairprune report" + (f": {'; '.join(parts)}" if parts else "")


def _config_block(out: Path) -> str:
    path = out / "config.json"
    if not path.is_file():
        return f"No `config.json` in `{out}`."
    try:
        text = json.dumps(json.loads(path.read_text()), indent=2, sort_keys=True)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    summary = "<summary>Resolved configuration (config.json)</summary>"
    return f"<details>{summary}\n\n```json\n{text}\n```\n\n</details>"


def _comparison_section(comparison: pd.DataFrame | None, reference: str, confidence: float) -> str:
    heading = f"## `{reference}` vs each baseline, paired by seed"
    if comparison is None or comparison.empty:
        return f"{heading}\n\nNo label shares a sparsity and a seed with `{reference}`."
    keys = [c for c in comparison.columns if c not in _COMPARISON_VALUES]
    rows = []
    for _, row in comparison.iterrows():
        ci = f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        p_values = f"{_fmt(row.get('p_value', np.nan))} / {_fmt(row.get('p_sign_flip', np.nan))}"
        rows.append([*(_fmt(row[c]) for c in keys), f"{_fmt(row['mean_difference'])} {ci}", p_values])
        rows[-1] += [str(row["n_pairs"]), verdict(row["within_noise"], int(row["n_pairs"]))]
    headers = [
        *keys,
        f"{reference} − label [{confidence:.0%} t-interval]",
        "p (t / sign-flip)",
        "seeds",
        "verdict",
    ]
    explanation = (
        f"Difference = `{reference}` − label, averaged over the seeds both ran, with the Student-t "
        "interval of that mean. *Beyond seed noise* means the interval excludes 0 (the paired "
        f"t-test's p below {1 - confidence:.2g}); *within seed noise* means it contains 0: such a "
        f"difference is not a result. With fewer than {MIN_SEEDS} seeds there is *no verdict*. The "
        "exact sign-flip permutation p-value, which assumes no normality, is shown beside the "
        "t-test's; it cannot fall below 2/2^n (0.25 with 3 seeds, 0.0625 with 5)."
    )
    return f"{heading}\n\n{explanation}\n\n{_markdown_table(headers, rows)}"


FOOTPRINT = FOOTPRINT_HEADERS  # results column: header in report.md


def truthy(values: pd.Series) -> pd.Series:
    """A yes/no column as read back from ``results.csv`` (bools, strings or 0/1) as booleans."""
    return values.map(is_yes)


def certificate_line(frame: pd.DataFrame) -> str | None:
    """What ``certified`` and ``violation_bound`` mean in these results: the claim, its
    confidence, the certification split's size, how many runs certified and the smallest
    threshold the certification split's group sizes could certify (``None``: no certificates)."""
    if "certified" not in frame or frame["certified"].isna().all():
        return None
    runs = frame.dropna(subset=["certified"])
    first = runs.iloc[0]
    factor = float(first.get("certify_dense_factor", 1.0))
    factor = 1.0 if factor != factor else factor  # NaN: records from before the column
    claim = "V(pruned)"
    if first["certify_kind"] == "paired":
        claim = "V(pruned) - V(dense)" if factor == 1 else f"V(pruned) - {factor:g} V(dense)"
    needed = runs["certify_samples_needed"] if "certify_samples_needed" in runs else pd.Series(dtype=float)
    needed = needed[needed > 0]
    more = ""
    ideal = "the smallest threshold these group sizes can certify"
    if claim.endswith(" V(dense)") and factor != 1:
        ideal = "a model equal to the dense one would be bounded at"
    if len(needed) and runs["certify_smallest"].min() > first["certify_threshold"]:
        more = (
            f"; {first['certify_threshold']:g} would need about {int(needed.min()):,} certification "
            "samples in these proportions"
        )
    return (
        f"certified: {claim} <= {first['certify_threshold']:g} with {100 * first['certify_confidence']:g}% "
        f"confidence on {int(first['certify_samples']):,} held-out validation samples (violation_bound "
        f"is the upper bound of {claim}); {int(truthy(runs['certified']).sum())} of {len(runs)} runs; "
        f"{ideal}: {runs['certify_smallest'].min():.3f}{more}"
    )


def _spread(values: pd.Series) -> str:
    """``median (min–max)`` of a bound column."""
    return f"{values.median():.3f} ({values.min():.3f}–{values.max():.3f})"


def _certificate_section(results: pd.DataFrame) -> str:
    """Per label: runs certified, runs whose claim held on the test split, and the bounds."""
    line = certificate_line(results)
    if line is None:
        return ""
    runs = results.dropna(subset=["certified"])
    per_group = "degradation_bound" in runs and runs["degradation_bound"].notna().any()
    rows = []
    for label, part in runs.groupby("label", sort=True):
        certified, holds = truthy(part["certified"]), truthy(part["claim_holds_test"])
        row = [
            str(label),
            f"{int(certified.sum())}/{len(part)}",
            f"{int((certified & holds).sum())}/{int(certified.sum())}",
            f"{int(holds.sum())}/{len(part)}",
            _spread(part["violation_bound"]),
        ]
        rows.append(row + ([_spread(part["degradation_bound"])] if per_group else []))
    headers = [
        "label",
        "certified",
        "claim held on test (certified)",
        "claim held on test (all)",
        "bound: median (min–max)",
        *(["per-group bound: median (min–max)"] if per_group else []),
    ]
    explain = (
        "Each run is certified once, at its end, on validation samples held out of training "
        "(`fairness.certify`); `claim_test` is what the certificate bounds, measured on the test split."
    )
    if per_group:
        explain += (
            " The per-group bound (`degradation_bound`) is a second statement at the same level on the "
            "same samples: no group lost more accuracy to pruning than the average loss plus this "
            "(both statements together hold at twice the error level)."
        )
    return "\n\n".join(
        ["## Certificates", line[0].upper() + line[1:] + ".", explain, _markdown_table(headers, rows)]
    )


def _footprint_section(results: pd.DataFrame, by: list[str]) -> str:
    """Mean over seeds of what each pruned model costs to ship, relative to the dense one."""
    columns = [c for c in FOOTPRINT if c in results.columns and results[c].notna().any()]
    if "params_ratio" not in columns:
        return ""
    keys = [*by, "label", "sparsity"]
    table = results[results["method"] != "dense"].groupby(keys, sort=True)[columns].mean().reset_index()
    rows = [[*(_fmt(r[k]) for k in keys), *(_fmt(r[c]) for c in columns)] for _, r in table.iterrows()]
    explanation = (
        "The model each run ships: slimmed (channels physically removed) for structured pruning, "
        "masks baked in for unstructured pruning, whose FLOPs and latency on dense kernels do not "
        "shrink (FLOPs ratio 1; latency not timed). Latency: median forward pass of one batch, "
        "dense and slim timed in turns on the same machine. Means over seeds."
    )
    headers = [*keys, *(FOOTPRINT[c] for c in columns)]
    return f"## Shipped model footprint\n\n{explanation}\n\n{_markdown_table(headers, rows)}"


def _groups_section(results: pd.DataFrame, by: list[str]) -> str:
    """Test accuracy of every group, by name (ids for sweeps recorded before groups were
    named), mean over seeds."""
    names = group_names_in(results.columns)
    if not names:
        return ""
    accuracy = [GROUP_ACCURACY + name for name in names]
    keys = [*by, "label", "sparsity"]
    table = results.groupby(keys, sort=True)[accuracy].mean().reset_index()
    rows = [[*(_fmt(r[k]) for k in keys), *(_fmt(r[c]) for c in accuracy)] for _, r in table.iterrows()]
    sizes = [
        f"`{name}` {results[GROUP_SIZE + name].mean():.0f}"
        for name in names
        if GROUP_SIZE + name in results and results[GROUP_SIZE + name].notna().any()
    ]
    explanation = "Test accuracy of each group of the sensitive attribute, mean over seeds."
    if sizes:
        explanation += " Test samples per group (mean over seeds): " + ", ".join(sizes) + "."
    return f"## Accuracy per group\n\n{explanation}\n\n{_markdown_table([*keys, *names], rows)}"


def _plot_section(folder: str, written: dict[str, str], skipped: dict[str, str], confidence: float) -> str:
    lines = [f"## Plots — `{folder}`" if folder else "## Plots", ""]
    for name, path in written.items():
        metric = name.removesuffix("_vs_sparsity")
        how = HOW_TO_READ.get(name) or HOW_TO_READ["vs_sparsity"].format(metric=metric, confidence=confidence)
        lines += [f"### {name}", "", f"![{name}]({path})", "", f"How to read: {how}", ""]
    if skipped:
        lines += ["### Skipped plots", ""]
        lines += [f"- `{name}.png` skipped: {reason}." for name, reason in skipped.items()]
    return "\n".join(lines)


def _iterations_section(results: pd.DataFrame, reference: str) -> str:
    """Iterations to a fair model per label, and the reference method's ratio to the best
    two-stage method, per (structure, sparsity)."""
    if "iterations_to_fair" not in results or reference not in set(results["method"]):
        return ""
    table = iterations_ratio(results, reference, TWO_STAGE_METHODS)
    if table.empty:
        return ""
    headers = ["structure", "sparsity", "label", "reached fair / runs", "mean iterations", "ratio", "vs"]
    rows = [
        [
            str(r["structure"]),
            f"{r['sparsity']:g}",
            str(r["label"]),
            f"{int(r['reached'])}/{int(r['runs'])}",
            _fmt(r["mean_iterations"]),
            _fmt(r["ratio"]),
            str(r["versus_best"]),
        ]
        for _, r in table.iterrows()
    ]
    return "\n\n".join(
        [
            "## Iterations to a fair model",
            f"Training iterations until a run's first checkpoint within τ (validation) and within "
            f"{ACCURACY_SLACK:.0%} accuracy of the best pruned run at that sparsity and seed (the BiFP "
            "paper's Fig. 6 count), mean over the runs that reached one. `ratio` = the "
            f"`{reference}` label's mean over the smallest mean of the two-stage methods "
            f"({', '.join(TWO_STAGE_METHODS)}); the paper reports about 0.06.",
            _markdown_table(headers, rows),
        ]
    )


def markdown(
    out: Path,
    results: pd.DataFrame,
    summary: pd.DataFrame,
    comparison: pd.DataFrame | None,
    sections: list[tuple[str, dict[str, str], dict[str, str]]],
    *,
    confidence: float,
    reference: str,
    by: list[str],
) -> str:
    headers, rows = _summary_cells(summary)
    parts = [
        _title(results),
        f"Built from {len(results)} runs in `{out}` by `fairprune report` (no training).",
        "## Configuration",
        _config_block(out),
        "## Summary over seeds",
        f"Each cell: mean ± sample std [{confidence:.0%} Student-t interval of the mean; – with one "
        "seed] over the `n_seeds` seeds of that label and sparsity.",
        _markdown_table(headers, rows),
        _comparison_section(comparison, reference, confidence),
    ]
    parts += [
        section
        for section in (
            _groups_section(results, by),
            _iterations_section(results, reference),
            _footprint_section(results, by),
            _certificate_section(results),
        )
        if section
    ]
    parts += [_plot_section(folder, written, skipped, confidence) for folder, written, skipped in sections]
    return "\n\n".join(parts) + "\n"
