"""Figures of an experiment's results (the paper's Figs. 3–7); builds figures, writes nothing.

Every function takes the results table (one row per run, the columns of ``results.csv``) and
returns a ``matplotlib.figure.Figure`` built without pyplot's global state, or ``None`` when the
results hold no data for that figure. Curves are means over seeds; shaded bands (or vertical bars
for a single point, error bars on bar charts) are Student-t intervals of the mean
(``fairprune.reporting.stats``; none from a single seed). The dense model is drawn as a dashed horizontal
line whose ``gid`` is ``DENSE_GID``; every other line is one label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fairprune.methods_spec import methods_with
from fairprune.reporting.summaries import summarise
from fairprune.schema import CONSTRAINED_COLUMNS, FAIRNESS_COLUMNS

__all__ = [
    "ABLATION_METHODS",
    "build_figures",
    "CONSTRAINED_COLUMNS",
    "DENSE_GID",
    "HISTORY_COLUMNS",
    "constrained_column",
    "plot_ablation",
    "plot_convergence",
    "plot_iterations",
    "plot_mask_init",
    "plot_metric_vs_sparsity",
    "plot_tradeoff",
]

DENSE_GID = "dense_reference"
"""``gid`` of the dashed line that marks the dense model."""


ABLATION_METHODS = methods_with("bifp")
"""BiFP and its ablations (the paper's Fig. 7): w/o fair mask, w/o fair weights, w/o both."""

HISTORY_COLUMNS = ("loss", "violation", "multiplier", "mask_hamming")
"""Per-step quantities of a run's history, one subplot each in ``plot_convergence``."""

_LABEL = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<params>.*)\])?$")


def constrained_column(results: pd.DataFrame) -> str:
    """Column of the fairness metric the runs constrained, from their ``fairness`` key.

    Raises:
        ValueError: If the column is absent, holds several keys, or an unknown key.
    """
    if "fairness" not in results.columns:
        raise ValueError(f"results need a 'fairness' column; got {list(results.columns)}")
    keys = sorted(results["fairness"].dropna().unique())
    if len(keys) != 1 or keys[0] not in CONSTRAINED_COLUMNS:
        raise ValueError(f"expected one fairness key among {sorted(CONSTRAINED_COLUMNS)}; got {keys}")
    return CONSTRAINED_COLUMNS[keys[0]]


def _strip_tolerance(label: str) -> str:
    match = _LABEL.match(label)
    if match is None or match["params"] is None:
        return label
    params = [p for p in match["params"].split(",") if not p.strip().startswith("tolerance=")]
    return f"{match['name']}[{','.join(params)}]" if params else match["name"]


def _dense(results: pd.DataFrame) -> pd.Series:
    return results["method"] == "dense"


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.0) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * ncols, 4.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


def _legend(ax: Axes, *, outside: bool = False) -> None:
    if not ax.get_legend_handles_labels()[0]:
        return
    if outside:  # many labels: keep the data visible
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize="small")


def _draw_dense(ax: Axes, results: pd.DataFrame, metric: str) -> None:
    values = results.loc[_dense(results), metric].to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    if values.size:
        mean = float(values.mean())
        ax.axhline(mean, color="black", linestyle="--", label="dense", gid=DENSE_GID)


def _draw_curves(ax: Axes, results: pd.DataFrame, x: str, y: str, key: str, confidence: float) -> None:
    """One line per value of ``key``: mean of ``y`` against ``x`` with its CI."""
    summary = summarise(results, by=(key, x), metrics=(y,), confidence=confidence)
    for name, curve in summary.groupby(key, sort=True):
        line = ax.plot(curve[x], curve[f"{y}_mean"], marker="o", label=str(name))[0]
        line.set_gid(f"{key}:{name}")
        low, high = curve[f"{y}_ci_low"], curve[f"{y}_ci_high"]
        if len(curve) > 1:
            ax.fill_between(curve[x], low, high, color=line.get_color(), alpha=0.2)
        else:
            ax.vlines(curve[x], low, high, color=line.get_color())


def plot_metric_vs_sparsity(results: pd.DataFrame, metric: str, *, confidence: float = 0.95) -> Figure:
    """A metric against sparsity, one line per label, dense as a dashed reference (Figs. 3–4)."""
    fig, (ax,) = _figure()
    pruned = results[~_dense(results)]
    if not pruned.empty:
        _draw_curves(ax, pruned, "sparsity", metric, "label", confidence)
    _draw_dense(ax, results, metric)
    ax.set_xlabel("sparsity")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs sparsity (mean over seeds, {confidence:.0%} CI)")
    _legend(ax, outside=True)
    return fig


def plot_tradeoff(results: pd.DataFrame, *, confidence: float = 0.95) -> Figure | None:
    """Accuracy against the constrained fairness metric across tolerances (Fig. 5).

    A series is a label with its ``tolerance=`` setting removed, at one sparsity; it is drawn
    when its runs used at least two tolerance values. Returns ``None`` when no series does.
    """
    column = constrained_column(results)
    runs = results[~_dense(results)].assign(series=lambda f: f["label"].map(_strip_tolerance))
    # the setting ("dense" or a number), not the resolved tau, which differs between seeds
    setting = "tolerance_setting" if "tolerance_setting" in runs.columns else "tolerance"
    runs = runs.assign(tolerance=runs[setting].astype(str))
    counts = runs.groupby(["series", "sparsity"])["tolerance"].nunique()
    swept = counts[counts >= 2].index
    if swept.empty:
        return None
    sparsities = sorted({sparsity for _, sparsity in swept})
    fig, axes = _figure(ncols=len(sparsities))
    for ax, sparsity in zip(axes, sparsities, strict=True):
        names = [series for series, s in swept if s == sparsity]
        cell = runs[(runs["sparsity"] == sparsity) & runs["series"].isin(names)]
        summary = summarise(
            cell, by=("series", "tolerance"), metrics=("accuracy", column), confidence=confidence
        )
        for name, curve in summary.groupby("series", sort=True):
            x, y = curve[f"{column}_mean"], curve["accuracy_mean"]
            line = ax.plot(x, y, marker="o", label=str(name), gid=f"series:{name}")[0]
            color = line.get_color()
            ax.vlines(x, curve["accuracy_ci_low"], curve["accuracy_ci_high"], color=color)
            ax.hlines(y, curve[f"{column}_ci_low"], curve[f"{column}_ci_high"], color=color)
            for tolerance, xi, yi in zip(curve["tolerance"], x, y, strict=True):
                ax.annotate(f"τ={tolerance}", (xi, yi), fontsize="x-small")
        ax.set_xlabel(column)
        ax.set_ylabel("accuracy")
        ax.set_title(f"accuracy–fairness trade-off, sparsity {sparsity:g}")
        _legend(ax)
    return fig


def _grouped_bars(ax: Axes, summary: pd.DataFrame, metric: str, categories: Sequence[str]) -> None:
    """Bars of ``<metric>_mean`` per category (x) and sparsity (bar group) with CI error bars."""
    sparsities = sorted(summary["sparsity"].unique())
    width = 0.8 / len(sparsities)
    for j, sparsity in enumerate(sparsities):
        rows = summary[summary["sparsity"] == sparsity].set_index("label")
        rows = rows.reindex([c for c in categories if c in rows.index])
        positions = [categories.index(c) + (j - (len(sparsities) - 1) / 2) * width for c in rows.index]
        mean = rows[f"{metric}_mean"].to_numpy(dtype=float)
        errors = np.stack([mean - rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"] - mean])
        errors = np.clip(np.nan_to_num(errors), 0.0, None)  # (2, n_bars)
        ax.bar(positions, mean, width, yerr=errors, capsize=3, label=f"sparsity={sparsity:g}")
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    _legend(ax)


def plot_iterations(results: pd.DataFrame, *, confidence: float = 0.95) -> Figure | None:
    """Training iterations to a fair model, per label and sparsity (the paper's Fig. 6): the
    ``iterations_to_fair`` of each run (first checkpoint within tau and within one point of the
    best pruned run's accuracy, see ``fairprune.sweep.cost``), mean over the runs that reached one;
    each bar is annotated with how many runs did.

    Returns ``None`` when no pruned run reached a fair model.
    """
    pruned = results[~_dense(results).to_numpy()]
    iterations = pruned["iterations_to_fair"].to_numpy(dtype=float, na_value=np.nan)
    runs = pruned[np.isfinite(iterations)]
    if runs.empty:
        return None
    summary = summarise(
        runs, by=("label", "sparsity"), metrics=("iterations_to_fair",), confidence=confidence
    )
    counts = pruned.groupby(["label", "sparsity"]).size()
    fig, (ax,) = _figure(width=9.0)
    categories = sorted(summary["label"].unique())
    _grouped_bars(ax, summary, "iterations_to_fair", categories)
    width = 0.8 / summary["sparsity"].nunique()
    for j, sparsity in enumerate(sorted(summary["sparsity"].unique())):
        rows = summary[summary["sparsity"] == sparsity]
        for _, row in rows.iterrows():
            x = categories.index(row["label"]) + (j - (summary["sparsity"].nunique() - 1) / 2) * width
            reached = f"{int(row['n_seeds'])}/{int(counts[(row['label'], sparsity)])}"
            ax.annotate(reached, (x, row["iterations_to_fair_mean"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("method")
    ax.set_ylabel("iterations_to_fair")
    ax.set_title(
        "iterations to a fair model (within tau and 1 point of the best accuracy; runs that reached one)"
    )
    return fig


def plot_ablation(results: pd.DataFrame, *, confidence: float = 0.95) -> Figure | None:
    """Accuracy and the constrained fairness metric vs sparsity for BiFP's ablations (Fig. 7).

    Uses the runs of ``ABLATION_METHODS`` with default hyperparameters (label == method);
    returns ``None`` when fewer than two of them are present.
    """
    runs = results[results["method"].isin(ABLATION_METHODS) & (results["label"] == results["method"])]
    if runs["method"].nunique() < 2:
        return None
    column = constrained_column(results)
    fig, axes = _figure(ncols=2)
    for ax, metric in zip(axes, ("accuracy", column), strict=True):
        _draw_curves(ax, runs, "sparsity", metric, "label", confidence)
        _draw_dense(ax, results, metric)
        ax.set_xlabel("sparsity")
        ax.set_ylabel(metric)
        _legend(ax)
    fig.suptitle("ablation: fair mask and fair weights")
    return fig


def plot_convergence(results: pd.DataFrame, histories: Mapping[str, pd.DataFrame]) -> Figure | None:
    """Loss, violation, multiplier and mask change per step of BiFP runs, one line per sparsity;
    the violation panel also draws each tolerance tau of those runs as a dashed horizontal line.

    Takes, at each sparsity, the run of ``bifp`` with default hyperparameters (any ``bifp`` run
    when none has them) and the lowest seed that has a history. Returns ``None`` when no BiFP
    run has one.
    """
    runs = results[results["method"] == "bifp"]
    if (runs["label"] == "bifp").any():
        runs = runs[runs["label"] == "bifp"]
    runs = runs[runs["run_id"].map(lambda run_id: len(histories.get(run_id, ())) > 0)]
    if runs.empty:
        return None
    chosen = runs.sort_values(["sparsity", "seed"]).groupby("sparsity", sort=True).head(1)
    fig, axes = _figure(ncols=2, nrows=2)
    for ax, column in zip(axes, HISTORY_COLUMNS, strict=True):
        for run_id, sparsity in zip(chosen["run_id"], chosen["sparsity"], strict=True):
            history = histories[run_id]
            ax.plot(history["step"], history[column], label=f"sparsity={sparsity:g}")
        if column == "violation":
            for tau in sorted(set(pd.to_numeric(chosen["tolerance"], errors="coerce").dropna())):
                ax.axhline(tau, color="black", linestyle="--", linewidth=1, label=f"tau={tau:.3g}")
        ax.set_xlabel("step")
        ax.set_ylabel(column)
        if all(histories[run_id][column].isna().all() for run_id in chosen["run_id"]):
            ax.set_title(f"no {column} logged (NaN; the multiplier is NaN in penalty mode)")
        _legend(ax)
    fig.suptitle("BiFP convergence (lowest seed at each sparsity)")
    return fig


def plot_mask_init(results: pd.DataFrame, *, confidence: float = 0.95) -> Figure | None:
    """Accuracy and the constrained fairness metric per mask initialisation (bars with CIs).

    Compares the labels with a ``mask_init=`` setting against their method's default label at
    the same sparsities; returns ``None`` when no label sets ``mask_init``.
    """
    variants = results[results["label"].str.contains("mask_init=", regex=False)]
    if variants.empty:
        return None
    defaults = results[
        results["method"].isin(variants["method"].unique())
        & (results["label"] == results["method"])
        & results["sparsity"].isin(variants["sparsity"].unique())
    ]
    runs = pd.concat([defaults, variants]) if not defaults.empty else variants
    categories = [*sorted(defaults["label"].unique()), *sorted(variants["label"].unique())]
    column = constrained_column(results)
    summary = summarise(runs, by=("label", "sparsity"), metrics=("accuracy", column), confidence=confidence)
    fig, axes = _figure(ncols=2)
    for ax, metric in zip(axes, ("accuracy", column), strict=True):
        _grouped_bars(ax, summary, metric, categories)
        ax.set_xlabel("label")
        ax.set_ylabel(metric)
    fig.suptitle("mask initialisation (default label = the method's default init)")
    return fig


_OPTIONAL: dict[str, tuple[tuple[str, ...], str]] = {
    "tradeoff": (
        ("tolerance", "fairness"),
        "no label was run at several tolerances at one sparsity",
    ),
    "iterations": (
        ("iterations_to_fair",),
        "no pruned run reached a fair model (within tau and 1 point of the best accuracy)",
    ),
    "ablation": (("fairness",), f"fewer than two of {', '.join(ABLATION_METHODS)} were run"),
    "convergence": ((), "no bifp run has a history"),
    "mask_init": (("fairness",), "no label sets mask_init"),
}
"""Figures drawn only when their data is there: the columns each needs, and why it may be absent."""


def _finite(results: pd.DataFrame, column: str) -> bool:
    if column not in results.columns:
        return False
    return bool(np.isfinite(results[column].to_numpy(dtype=float, na_value=np.nan)).any())


def build_figures(
    results: pd.DataFrame, histories: Mapping[str, pd.DataFrame], *, confidence: float = 0.95
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure of a report on ``results``, and why each missing one was skipped.

    Returns:
        ``(figures, skipped)``, both keyed by file name without ``.png``: one
        ``<metric>_vs_sparsity`` per metric with finite values, then ``tradeoff``,
        ``iterations``, ``ablation``, ``convergence`` and ``mask_init`` where the data allows.
    """
    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    for metric in ("accuracy", *FAIRNESS_COLUMNS):
        name = f"{metric}_vs_sparsity"
        if _finite(results, metric):
            figures[name] = plot_metric_vs_sparsity(results, metric, confidence=confidence)
        else:
            skipped[name] = f"the results hold no finite `{metric}` values"
    builders: dict[str, Callable[[], Figure | None]] = {
        "tradeoff": lambda: plot_tradeoff(results, confidence=confidence),
        "iterations": lambda: plot_iterations(results, confidence=confidence),
        "ablation": lambda: plot_ablation(results, confidence=confidence),
        "convergence": lambda: plot_convergence(results, histories),
        "mask_init": lambda: plot_mask_init(results, confidence=confidence),
    }
    for name, (needed, reason) in _OPTIONAL.items():
        missing = [column for column in needed if column not in results.columns]
        figure = None if missing else builders[name]()
        if figure is None:
            skipped[name] = f"the results lack columns {missing}" if missing else reason
        else:
            figures[name] = figure
    return figures, skipped
