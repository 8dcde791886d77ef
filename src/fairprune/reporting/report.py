"""Reports of an experiment: tables and plots from its run records; never trains.

An experiment's output directory ``OUT`` holds ``config.json`` (the resolved configuration),
``runs/<run_id>.json`` (one record per run: ``run_id``, ``config``, ``result``, ``history``) and
``results.csv`` (the ``result`` rows). ``write_report(OUT)`` reads them and writes
``OUT/report.md`` and ``OUT/plots/*.png``; every file is written atomically (a temporary file in
the same directory, then ``os.replace``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fairprune.atomic import replace_atomically
from fairprune.errors import CorruptRecordError, OutputDirError
from fairprune.reporting import plots
from fairprune.reporting.summaries import compare_to_baselines, summarise
from fairprune.reporting.text import HOW_TO_READ, format_summary_table, markdown
from fairprune.schema import CONTEXT_COLUMNS, DEFAULT_METRICS, OUTCOME_COLUMNS
from fairprune.sweep import read_records, results_frame

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


@dataclass
class Report:
    """What ``write_report`` wrote.

    Attributes:
        path: ``OUT/report.md``.
        plots: The PNG files written, in report order.
        summary: Mean, std and CI per label × sparsity (``summaries.summarise``).
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


def load_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Results table of an experiment, rebuilt from ``runs/*.json`` (so it always matches the
    records); ``results.csv`` only when the directory has no records.

    Raises:
        CorruptRecordError: Naming a record that cannot be read.
        OutputDirError: If the directory has neither records nor ``results.csv``, or no runs.
    """
    out = Path(out_dir)
    records = read_records(out)
    if records:
        frame = results_frame(records)
    elif (out / "results.csv").is_file():
        frame = pd.read_csv(out / "results.csv", dtype={"run_id": str, "method": str, "label": str})
    else:
        raise OutputDirError(
            f"{str(out)!r} holds neither runs/*.json nor results.csv; expected the --out of 'fairprune run'"
        )
    if frame.empty:
        raise OutputDirError(f"{str(out)!r} holds no runs")
    return frame


def load_histories(out_dir: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Per-step history of every run in ``out_dir/runs``, keyed by run id.

    Each frame has the columns ``HISTORY_FIELDS`` first (missing ones are NaN; ``multiplier`` is
    NaN in penalty mode), then any other logged field, and no rows for one-shot methods. An absent
    ``runs/`` gives ``{}``.
    """
    histories = {}
    for record in read_records(Path(out_dir)):
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
        raise CorruptRecordError(
            f"results in {str(out)!r} lack columns {missing}; got {list(results.columns)}"
        )
    by = [c for c in CONTEXT_COLUMNS if c in results.columns and results[c].nunique() > 1]
    if "tolerance" in results and results.duplicated([*by, "label", "sparsity", "seed"]).any():
        by.append("tolerance")
    metrics = [m for m in DEFAULT_METRICS if m in results.columns]
    outcomes = [m for m in OUTCOME_COLUMNS if m in results.columns]
    bootstrap: dict[str, Any] = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    summary = summarise(results, by=(*by, "label", "sparsity"), metrics=[*metrics, *outcomes], **bootstrap)
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
    text = markdown(
        out, results, summary, comparison, sections, confidence=confidence, reference=reference, by=by
    )
    replace_atomically(report.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return report
