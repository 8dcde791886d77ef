"""Reports from a synthetic experiment directory: files, tables and the figures' contents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairprune.reporting.plots import (
    CONSTRAINED_COLUMNS,
    DENSE_GID,
    plot_ablation,
    plot_convergence,
    plot_iterations,
    plot_mask_init,
    plot_metric_vs_sparsity,
    plot_tradeoff,
)
from fairprune.reporting.report import (
    HISTORY_FIELDS,
    format_summary_table,
    load_histories,
    load_results,
    write_report,
)
from fairprune.reporting.stats import FAIRNESS_COLUMNS
from fairprune.reporting.summaries import summarise

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ("magnitude", "imp", "bifp", "bip", "bifp_no_mask_fairness", "bifp_no_weight_fairness")
TRAINED = {"bifp", "bip", "bifp_no_mask_fairness", "bifp_no_weight_fairness"}
SPARSITIES = (0.5, 0.9)
SEEDS = (0, 1, 2)
TOLERANCE = 0.05
BIAS = {"dense": 0.04, "magnitude": 0.08, "imp": 0.07, "bip": 0.09, "bifp": 0.03}
BIAS |= {"bifp_no_mask_fairness": 0.06, "bifp_no_weight_fairness": 0.055}
ALL_PLOTS = {f"{metric}_vs_sparsity" for metric in ("accuracy", *FAIRNESS_COLUMNS)}
ALL_PLOTS |= {"tradeoff", "iterations", "ablation", "convergence", "mask_init"}


def _record(method: str, label: str, sparsity: float, seed: int, tolerance: float) -> dict:
    rng = np.random.default_rng([seed, int(sparsity * 100), len(label)])
    factor = 0.4 if "tolerance=0.02" in label else 1.3 if "tolerance=0.1" in label else 1.0
    bias = BIAS[method] * factor + 0.001 * seed
    accuracy = 0.85 - 0.1 * sparsity * (method != "bifp") - 0.5 * (BIAS["bip"] - bias) ** 2
    run_id = f"{label.replace('[', '_').replace(']', '_')}__s{sparsity:g}__seed{seed}"
    result = {
        "run_id": run_id,
        "dataset": "adult",
        "target": "income",
        "sensitive_attribute": "sex",
        "model": "mlp",
        "method": method,
        "label": label,
        "sparsity": sparsity,
        "seed": seed,
        "fairness": "equalized_odds",
        "tolerance": tolerance,
        "accuracy": accuracy + rng.normal(0, 0.005),
        "accuracy_gap": bias / 2 + rng.uniform(0, 0.01),
        "degradation_gap": 0.0 if method == "dense" else bias / 3,
        "excess_degradation": 0.0 if method == "dense" else bias / 4,
        "demographic_parity_difference": bias * 1.5,
        "equalized_odds_difference": bias,
        "worst_group_accuracy": accuracy - bias,
        "val_accuracy": accuracy,
        "val_violation": bias + 0.005,
        "fair": bool(bias + 0.005 <= tolerance),
        "trivial": False,
        "train_iterations": {"dense": 2000, "magnitude": 100, "imp": 5000}.get(method, 300) + seed,
        "wall_seconds": 1.0 + seed,
    }
    history = []
    if method in TRAINED:
        multiplier = math.nan if method == "bip" else 0.1
        history = [
            {
                "step": step,
                "loss": 1.0 / (step + 1) + seed,
                "violation": bias - 0.01 * step,
                "multiplier": multiplier * step,
                "mask_hamming": 0.5**step,
                "iterations": 10.0 * (step + 1),
                "val_accuracy": accuracy,
                "trivial": 0.0,
            }
            for step in range(5)
        ]
    return {"run_id": run_id, "config": {"method": method}, "result": result, "history": history}


def _records(*, sweep: bool = True, methods: tuple[str, ...] = METHODS) -> list[dict]:
    cells = [("dense", "dense", 0.0)]
    cells += [(method, method, s) for method in methods for s in SPARSITIES]
    if sweep:
        cells += [("bifp", "bifp[tolerance=0.02]", 0.9), ("bifp", "bifp[tolerance=0.1]", 0.9)]
        cells += [("bifp", "bifp[mask_init=random]", 0.9), ("bifp", "bifp[mask_init=uniform]", 0.9)]
    records = []
    for method, label, sparsity in cells:
        tolerance = 0.02 if "0.02" in label else 0.1 if "0.1]" in label else TOLERANCE
        records += [_record(method, label, sparsity, seed, tolerance) for seed in SEEDS]
    return records


def _write_out(out: Path, records: list[dict]) -> Path:
    (out / "runs").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"seeds": list(SEEDS), "tolerance": TOLERANCE}))
    for record in records:
        (out / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    pd.DataFrame([r["result"] for r in records]).to_csv(out / "results.csv", index=False)
    return out


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return _write_out(tmp_path / "out", _records())


@pytest.fixture
def results(out_dir: Path) -> pd.DataFrame:
    return load_results(out_dir)


def _label_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() != DENSE_GID]


def test_constrained_columns_match_the_fairness_metrics() -> None:
    from fairprune.fairness.metrics import METRIC_COLUMNS

    assert CONSTRAINED_COLUMNS == METRIC_COLUMNS


def test_load_results_reads_the_csv(results: pd.DataFrame) -> None:
    assert len(results) == 3 * (1 + len(METHODS) * len(SPARSITIES) + 4)
    assert results["fair"].dtype == bool
    assert list(results.columns[:4]) == ["run_id", "dataset", "target", "sensitive_attribute"]
    # fair (val_violation = bias + 0.005 <= tolerance): dense, bifp at both sparsities, its two
    # tolerance labels and its two mask-init labels, 3 seeds each
    fair = results.loc[results["fair"], "label"].value_counts().sort_index()
    assert fair.to_dict() == {
        "bifp": 6,
        "bifp[mask_init=random]": 3,
        "bifp[mask_init=uniform]": 3,
        "bifp[tolerance=0.02]": 3,
        "bifp[tolerance=0.1]": 3,
        "dense": 3,
    }


def test_load_results_rebuilds_from_run_records(out_dir: Path, results: pd.DataFrame) -> None:
    (out_dir / "results.csv").unlink()
    rebuilt = load_results(out_dir)
    assert rebuilt[["seed", "label", "sparsity"]].equals(
        rebuilt[["seed", "label", "sparsity"]].sort_values(["seed", "label", "sparsity"], ignore_index=True)
    )  # the order of results.csv
    expected = results.sort_values("run_id", ignore_index=True)
    rebuilt = rebuilt.sort_values("run_id", ignore_index=True)
    pd.testing.assert_frame_equal(rebuilt[expected.columns], expected)


def test_load_results_without_records_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path}.*neither runs/\\*.json nor results.csv"):
        load_results(tmp_path)


def test_load_histories(out_dir: Path, results: pd.DataFrame) -> None:
    histories = load_histories(out_dir)
    assert set(histories) == set(results["run_id"])
    bifp = histories["bifp__s0.5__seed1"]
    assert list(bifp.columns) == [*HISTORY_FIELDS, "iterations", "val_accuracy", "trivial"]
    assert bifp["step"].tolist() == [0, 1, 2, 3, 4]
    assert bifp["loss"].tolist() == pytest.approx([1 / (s + 1) + 1 for s in range(5)])
    assert histories["bip__s0.9__seed0"]["multiplier"].isna().all()
    assert histories["magnitude__s0.5__seed0"].shape == (0, len(HISTORY_FIELDS))


def test_write_report_writes_every_plot_and_the_tables(out_dir: Path) -> None:
    report = write_report(out_dir, n_resamples=200)
    assert {path.stem for path in report.plots} == ALL_PLOTS
    assert set(report.figures) == ALL_PLOTS and report.skipped == {}
    for path in report.plots:
        assert path.parent == out_dir / "plots"
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (out_dir / "plots").iterdir()) == sorted(
        f"{name}.png" for name in ALL_PLOTS
    )  # no temporary file left behind
    text = report.path.read_text()
    assert report.path == out_dir / "report.md"
    assert text.startswith("# fairprune report: dataset `adult`; target `income`")
    assert '```json\n{\n  "seeds": [\n    0,' in text
    assert "| label | sparsity | n_seeds | accuracy | accuracy_gap |" in text
    for name in ALL_PLOTS:
        assert f"![{name}](plots/{name}.png)" in text
    assert text.count("How to read:") == len(ALL_PLOTS)
    assert "difference within seed noise" in text and "difference beyond seed noise" in text
    assert len(report.summary) == 1 + len(METHODS) * len(SPARSITIES) + 4
    assert report.summary["n_seeds"].unique().tolist() == [3]
    n_baselines = (len(METHODS) - 1) * len(SPARSITIES) + 4  # the sweep labels are at 0.9 only
    assert report.comparison is not None
    assert len(report.comparison) == n_baselines * (1 + len(FAIRNESS_COLUMNS))


@pytest.mark.parametrize("metric", ["accuracy", *FAIRNESS_COLUMNS])
def test_metric_vs_sparsity_figure(results: pd.DataFrame, metric: str) -> None:
    ax = plot_metric_vs_sparsity(results, metric, confidence=0.9).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sparsity", metric)
    lines = _label_lines(ax)
    pruned_labels = sorted(set(results["label"]) - {"dense"})
    assert [line.get_label() for line in lines] == pruned_labels
    bifp = next(line for line in lines if line.get_label() == "bifp")
    expected = results[results["label"] == "bifp"].groupby("sparsity")[metric].mean()
    assert list(bifp.get_xdata()) == [0.5, 0.9]
    assert list(bifp.get_ydata()) == pytest.approx(expected.tolist())
    (dense,) = [line for line in ax.get_lines() if line.get_gid() == DENSE_GID]
    assert dense.get_linestyle() == "--"
    dense_mean = results.loc[results["method"] == "dense", metric].mean()
    assert list(dense.get_ydata()) == pytest.approx([dense_mean, dense_mean])


def test_tradeoff_figure(results: pd.DataFrame) -> None:
    fig = plot_tradeoff(results)
    assert fig is not None and len(fig.axes) == 1
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("equalized_odds_difference", "accuracy")
    (line,) = ax.get_lines()
    assert line.get_gid() == "series:bifp"
    cell = results[(results["method"] == "bifp") & (results["sparsity"] == 0.9)]
    cell = cell[~cell["label"].str.contains("mask_init")]
    means = cell.groupby("tolerance")[["equalized_odds_difference", "accuracy"]].mean()
    assert means.index.tolist() == [0.02, 0.05, 0.1]
    assert list(line.get_xdata()) == pytest.approx(means["equalized_odds_difference"].tolist())
    assert list(line.get_ydata()) == pytest.approx(means["accuracy"].tolist())


def test_iterations_figure_shows_iterations_to_a_fair_model(results: pd.DataFrame) -> None:
    fig = plot_iterations(results)
    assert fig is not None
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("method", "iterations_to_fair")
    reached = results[(results["method"] != "dense") & results["iterations_to_fair"].notna()]
    assert len(reached) > 0
    # hand check of one run: its first checkpoint within tau and within 1 point of the best
    row = reached.iloc[0]
    cell = results[(results["sparsity"] == row["sparsity"]) & (results["method"] != "dense")]
    cell = cell[(cell["tolerance"] == row["tolerance"]) & (cell["seed"] == row["seed"])]
    assert row["reference_accuracy"] == pytest.approx(cell["val_accuracy"].max())
    expected = reached.groupby(["label", "sparsity"])["iterations_to_fair"].mean()
    heights = sorted(patch.get_height() for patch in ax.patches)
    assert heights == pytest.approx(sorted(expected.tolist()))
    assert [t.get_text() for t in ax.get_xticklabels()] == sorted(set(reached["label"]))


def test_ablation_figure(results: pd.DataFrame) -> None:
    fig = plot_ablation(results)
    assert fig is not None and len(fig.axes) == 2
    ablations = {"bifp", "bifp_no_mask_fairness", "bifp_no_weight_fairness", "bip"}
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy", "equalized_odds_difference"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "sparsity"
        assert {line.get_label() for line in _label_lines(ax)} == ablations
        assert len(_label_lines(ax)) == 4


def test_convergence_figure(results: pd.DataFrame, out_dir: Path) -> None:
    histories = load_histories(out_dir)
    fig = plot_convergence(results, histories)
    assert fig is not None and len(fig.axes) == 4
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "loss",
        "violation",
        "multiplier",
        "mask_hamming",
    ]
    runs = ["sparsity=0.5", "sparsity=0.9"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "step"
        tau = [f"tau={TOLERANCE:.3g}"] if ax.get_ylabel() == "violation" else []
        assert [line.get_label() for line in ax.get_lines()] == runs + tau
    first = fig.axes[0].get_lines()[0]
    assert list(first.get_ydata()) == histories["bifp__s0.5__seed0"]["loss"].tolist()
    tau_line = fig.axes[1].get_lines()[-1]  # the tolerance: horizontal, dashed, at tau
    assert list(tau_line.get_ydata()) == [TOLERANCE, TOLERANCE] and tau_line.get_linestyle() == "--"


def test_mask_init_figure(results: pd.DataFrame) -> None:
    fig = plot_mask_init(results)
    assert fig is not None and len(fig.axes) == 2
    labels = ["bifp", "bifp[mask_init=random]", "bifp[mask_init=uniform]"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy", "equalized_odds_difference"]
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        assert len(ax.patches) == 3
    at_09 = results[results["sparsity"] == 0.9]
    expected = [at_09.loc[at_09["label"] == label, "accuracy"].mean() for label in labels]
    assert [patch.get_height() for patch in fig.axes[0].patches] == pytest.approx(expected)


def test_optional_plots_are_skipped_without_their_data(tmp_path: Path) -> None:
    records = [r for r in _records(sweep=False, methods=("magnitude", "bifp"))]
    records = [r for r in records if r["result"]["method"] != "bifp"]  # no fair run, no ablation
    out = _write_out(tmp_path / "out", records)
    results = load_results(out)
    assert plot_tradeoff(results) is None
    assert plot_ablation(results) is None
    assert plot_mask_init(results) is None
    assert plot_iterations(results) is None
    assert plot_convergence(results, load_histories(out)) is None
    report = write_report(out, n_resamples=100)
    skipped = {"tradeoff", "iterations", "ablation", "convergence", "mask_init"}
    assert set(report.skipped) == skipped
    assert {path.stem for path in report.plots} == ALL_PLOTS - skipped
    assert not any((out / "plots" / f"{name}.png").exists() for name in skipped)
    text = report.path.read_text()
    for name in skipped:
        assert f"- `{name}.png` skipped: {report.skipped[name]}." in text
    assert report.comparison is None
    assert "## `bifp` vs each baseline, paired by seed\n\nNo label" in text


def test_report_with_two_targets_gets_one_plot_folder_per_target(tmp_path: Path) -> None:
    records = _records(sweep=False)
    other = json.loads(json.dumps(records))
    for record in other:
        record["run_id"] += "__other"
        record["result"].update(run_id=record["run_id"], target="age")
    out = _write_out(tmp_path / "out", records + other)
    report = write_report(out, n_resamples=100)
    folders = sorted({path.parent.name for path in report.plots})
    assert folders == ["target=age", "target=income"]
    assert report.summary.columns[:3].tolist() == ["target", "label", "sparsity"]
    assert report.summary["n_seeds"].unique().tolist() == [3]
    assert "![accuracy_vs_sparsity](plots/target=age/accuracy_vs_sparsity.png)" in (report.path.read_text())


def test_format_summary_table(results: pd.DataFrame) -> None:
    summary = summarise(results, metrics=("accuracy",), n_resamples=100)
    lines = format_summary_table(summary).splitlines()
    assert len(lines) == len(summary) + 2
    assert lines[0].split() == ["label", "sparsity", "n_seeds", "accuracy"]
    assert set(lines[1]) == {"-", " "}
    row = summary.iloc[0]
    cell = f"{row['accuracy_mean']:.4g} ± {row['accuracy_std']:.4g}"
    assert lines[2].startswith("bifp") and cell in lines[2]
