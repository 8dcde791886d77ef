"""Reports of an experiment: tables and plots from its run records; never trains.

An experiment's output directory ``OUT`` holds ``config.json`` (the resolved configuration),
``runs/<run_id>.json`` (one record per run: ``run_id``, ``config``, ``result``, ``history``) and
``results.csv`` (the ``result`` rows). ``write_report(OUT)`` reads them and writes
``OUT/report.md`` and ``OUT/plots/*.png``; every file is written atomically (a temporary file in
the same directory, then ``os.replace``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fairprune import plots
from fairprune.atomic import replace_atomically
from fairprune.stats import DEFAULT_METRICS, compare_to_baselines, summarise

__all__ = [
    "HISTORY_FIELDS",
    "HOW_TO_READ",
    "Report",
    "format_summary_table",
    "load_histories",
    "load_results",
    "save_figure",
    "write_report",
]

logger = logging.getLogger(__name__)

HISTORY_FIELDS = ("step", *plots.HISTORY_COLUMNS)
"""Fields of one entry of a run's ``history``."""

CONTEXT_COLUMNS = ("dataset", "target", "sensitive_attribute", "model", "fairness")
"""Columns that, when they vary, split a report into separately plotted cells."""


@dataclass
class Report:
    """What ``write_report`` wrote.

    Attributes:
        path: ``OUT/report.md``.
        plots: The PNG files written, in report order.
        summary: Mean, std and CI per label × sparsity (``stats.summarise``).
        comparison: Paired comparisons against the reference label, or ``None`` without it.
        figures: The figures behind ``plots``, keyed by file name without ``.png`` (prefixed by
            the cell's folder when the report has several cells).
        skipped: Plots not drawn, with the reason.
    """

    path: Path
    plots: list[Path]
    summary: pd.DataFrame
    comparison: pd.DataFrame | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"run record {path} is not valid JSON: {error}") from error
    if not isinstance(record, dict) or "run_id" not in record or "result" not in record:
        raise ValueError(f"run record {path} must be an object with 'run_id' and 'result'")
    return record


def load_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Results table of an experiment: ``results.csv``, or rebuilt from ``runs/*.json``.

    Raises:
        ValueError: If the directory has neither, or they hold no runs.
    """
    out = Path(out_dir)
    csv, runs = out / "results.csv", sorted((out / "runs").glob("*.json"))
    if csv.is_file():
        frame = pd.read_csv(csv, dtype={"run_id": str, "method": str, "label": str})
        missing = {path.stem for path in runs} - set(frame["run_id"])
        if missing:
            logger.warning("%s lacks %d runs found in %s/runs", csv, len(missing), out)
    elif runs:
        rows = [{"run_id": r["run_id"], **r["result"]} for r in map(_read_record, runs)]
        frame = pd.DataFrame(rows).sort_values("run_id", ignore_index=True)
    else:
        raise ValueError(
            f"{out} holds neither results.csv nor runs/*.json; expected an experiment's output directory"
        )
    if frame.empty:
        raise ValueError(f"{out} holds no runs")
    return frame


def load_histories(out_dir: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Per-step history of every run in ``out_dir/runs``, keyed by run id.

    Each frame has the columns ``HISTORY_FIELDS`` first (missing ones are NaN; ``multiplier`` is
    NaN in penalty mode), then any other logged field, and no rows for one-shot methods. An absent
    ``runs/`` gives ``{}``.
    """
    histories = {}
    for path in sorted((Path(out_dir) / "runs").glob("*.json")):
        record = _read_record(path)
        frame = pd.DataFrame.from_records(record.get("history") or [])
        extra = [column for column in frame.columns if column not in HISTORY_FIELDS]
        frame = frame.reindex(columns=[*HISTORY_FIELDS, *extra])
        for column in HISTORY_FIELDS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        histories[str(record["run_id"])] = frame
    return histories


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically; returns the path."""
    return replace_atomically(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))


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
    "shaded {confidence:.0%} bootstrap CI (a vertical bar for a single point); the dashed line is "
    "the dense model. Labels differ only where their bands do not overlap; the paired table is "
    "the sharper test.",
    "tradeoff": "One line per method across tolerances τ (points annotated): x is "
    f"{_CONSTRAINED}, y is accuracy. Up and to the left is better; a tighter τ moves points left.",
    "iterations": "Mean training iterations of the runs that met the tolerance on validation "
    "(fair runs only), with CI error bars. Lower is cheaper; a missing bar means no seed of that "
    "label was fair at that sparsity.",
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

_COMPARISON_VALUES = (
    "reference",
    "n_pairs",
    "mean_difference",
    "ci_low",
    "ci_high",
    "within_noise",
)
_VERDICT = {True: "difference within seed noise", False: "difference beyond seed noise"}


def _cells(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split by the context columns that vary; each part gets its own plot folder."""
    varying = [c for c in CONTEXT_COLUMNS if c in results.columns and results[c].nunique() > 1]
    if not varying:
        return [("", results)]
    parts = []
    for key, cell in results.groupby(varying, sort=True):
        names = (f"{column}={value}" for column, value in zip(varying, key, strict=True))
        parts.append(("_".join(re.sub(r"[^\w.=-]+", "-", name) for name in names), cell))
    return parts


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
        noise = row["within_noise"]
        verdict = "n/a" if pd.isna(noise) else _VERDICT[bool(noise)]
        rows.append([*(_fmt(row[c]) for c in keys), f"{_fmt(row['mean_difference'])} {ci}"])
        rows[-1] += [str(row["n_pairs"]), verdict]
    headers = [*keys, f"{reference} − label [{confidence:.0%} CI]", "n_pairs", "verdict"]
    explanation = (
        f"Difference = `{reference}` − label, averaged over the seeds both ran, with a bootstrap "
        "CI of that mean. *Difference within seed noise* means the CI contains 0 (or only one seed "
        "was paired): such a difference is not a result."
    )
    return f"{heading}\n\n{explanation}\n\n{_markdown_table(headers, rows)}"


FOOTPRINT = {  # results column: header in report.md
    "achieved_sparsity": "sparsity achieved",
    "channel_fraction": "channels removed",
    "params_ratio": "params / dense",
    "flops_ratio": "FLOPs / dense",
    "latency_ratio": "latency / dense",
}


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


def _markdown(
    out: Path,
    results: pd.DataFrame,
    report: Report,
    sections: list[tuple[str, dict[str, str], dict[str, str]]],
    *,
    confidence: float,
    reference: str,
    by: list[str],
) -> str:
    headers, rows = _summary_cells(report.summary)
    parts = [
        _title(results),
        f"Built from {len(results)} runs in `{out}` by `fairprune.report` (no training).",
        "## Configuration",
        _config_block(out),
        "## Summary over seeds",
        f"Each cell: mean ± sample std [{confidence:.0%} percentile-bootstrap CI of the mean] over "
        "the `n_seeds` seeds of that label and sparsity.",
        _markdown_table(headers, rows),
        _comparison_section(report.comparison, reference, confidence),
    ]
    footprint = _footprint_section(results, by)
    if footprint:
        parts.append(footprint)
    parts += [_plot_section(folder, written, skipped, confidence) for folder, written, skipped in sections]
    return "\n\n".join(parts) + "\n"


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    reference: str = "bifp",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Report:
    """Write ``OUT/report.md`` and ``OUT/plots/*.png`` from an experiment's run records.

    Tables are split by the context columns (dataset, target, ...) that vary, and by
    ``tolerance`` when a label was run at several; plots get one folder per context cell when
    there are several.

    Args:
        out_dir: The experiment's output directory.
        reference: Label compared, paired by seed, against every other label.
        confidence: Coverage of the bootstrap CIs.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        The report's path, plot paths, summary, comparison, figures and skipped plots.
    """
    out = Path(out_dir)
    results, histories = load_results(out), load_histories(out)
    missing = [c for c in ("run_id", "method", "label", "sparsity", "seed") if c not in results]
    if missing:
        raise ValueError(f"results in {out} lack columns {missing}; got {list(results.columns)}")
    by = [c for c in CONTEXT_COLUMNS if c in results.columns and results[c].nunique() > 1]
    if "tolerance" in results and results.duplicated([*by, "label", "sparsity", "seed"]).any():
        by.append("tolerance")
    metrics = [m for m in DEFAULT_METRICS if m in results.columns]
    bootstrap: dict[str, Any] = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    summary = summarise(results, by=(*by, "label", "sparsity"), metrics=metrics, **bootstrap)
    summary = summary.iloc[np.argsort(summary["label"].ne("dense"), kind="stable")]
    summary = summary.reset_index(drop=True)  # the dense reference first
    comparison = None
    if reference in set(results["label"]):
        comparison = compare_to_baselines(
            results, reference=reference, metrics=metrics, by=(*by, "sparsity"), **bootstrap
        )
    report = Report(path=out / "report.md", plots=[], summary=summary, comparison=comparison)
    sections = []
    for folder, cell in _cells(results):
        figures, skipped = plots.build_figures(cell, histories, confidence=confidence)
        written = {}
        for name, figure in figures.items():
            path = save_figure(figure, out / "plots" / folder / f"{name}.png")
            report.plots.append(path)
            report.figures[f"{folder}/{name}" if folder else name] = figure
            written[name] = path.relative_to(out).as_posix()
        report.skipped.update({f"{folder}/{n}" if folder else n: r for n, r in skipped.items()})
        sections.append((folder, written, skipped))
    text = _markdown(out, results, report, sections, confidence=confidence, reference=reference, by=by)
    replace_atomically(report.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return report
