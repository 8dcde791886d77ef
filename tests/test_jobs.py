"""``fairprune run --jobs N``: runs in worker processes give the one-process results, record every
run once, resume, and lose nothing when a run fails."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import tiny_config, tiny_frame

from fairprune.cli import main
from fairprune.config import load_config
from fairprune.errors import ConfigError
from fairprune.sweep import runs
from fairprune.sweep.experiment import run_experiment


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    csv = tmp_path / "tiny.csv"
    tiny_frame().to_csv(csv, index=False)
    return tiny_config(tmp_path, csv)


def _numbers(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv").set_index("run_id").sort_index()
    return frame.drop(columns=[c for c in frame.columns if "seconds" in c or "latency" in c])  # clocks


def test_processes_give_the_one_process_results(sweep, tmp_path):
    cfg = load_config(sweep, [])
    one = run_experiment(cfg, tmp_path / "one")
    two = run_experiment(cfg, tmp_path / "two", jobs=2)
    assert len(one) == len(two) == 6  # 3 methods x 2 seeds
    pd.testing.assert_frame_equal(_numbers(tmp_path / "one"), _numbers(tmp_path / "two"), check_exact=True)
    for record in (tmp_path / "two" / "runs").glob("*.json"):  # histories too, but the clock
        other = json.loads((tmp_path / "one" / "runs" / record.name).read_text())
        mine = json.loads(record.read_text())
        strip = [{k: v for k, v in row.items() if k != "seconds"} for row in mine["history"]]
        assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in other["history"]]
    assert len(list((tmp_path / "two" / "dense").glob("*.pt"))) == 2  # one dense model per seed, here


def test_processes_resume_what_is_missing(sweep, tmp_path):
    cfg = load_config(sweep, [])
    out = tmp_path / "out"
    run_experiment(cfg, out, jobs=2)
    first = sorted((out / "runs").iterdir())
    removed = first[0].name
    first[0].unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in first[1:]}
    run_experiment(cfg, out, jobs=2)
    assert (out / "runs" / removed).exists()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir() if p.name != removed} == kept


def test_a_failed_run_stops_the_rest_and_keeps_the_finished(sweep, tmp_path, monkeypatch):
    """The worker processes are forked from this one, so the patched run fails in them too."""
    real = runs.one_run

    def failing(cfg, cell, job, progress, out):
        if job.variant.method == "bifp" and job.seed == 0:
            raise RuntimeError("planted failure")
        return real(cfg, cell, job, progress, out)

    monkeypatch.setattr("fairprune.sweep.experiment.one_run", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="planted failure"):
        run_experiment(load_config(sweep, []), out, jobs=2)
    recorded = {p.stem for p in (out / "runs").iterdir()}
    assert recorded and not any(r.startswith("bifp") and r.endswith("seed0") for r in recorded)
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["run_id"]) == recorded  # results.csv matches the records written
    monkeypatch.setattr("fairprune.sweep.experiment.one_run", real)
    run_experiment(load_config(sweep, []), out, jobs=2)  # the resume runs what is missing
    assert len(list((out / "runs").iterdir())) == 6


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_count(sweep, tmp_path, jobs):
    with pytest.raises(ConfigError, match="jobs must be a positive number of processes"):
        run_experiment(load_config(sweep, []), tmp_path / "out", jobs=jobs)
    assert not (tmp_path / "out").exists()  # nothing written


def test_cli_jobs_flag(sweep, tmp_path, capsys):
    assert main(["run", str(sweep), "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"]) == 0
    assert "wall time" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 6
    with pytest.raises(SystemExit):
        main(["run", str(sweep), "--out", str(tmp_path / "bad"), "--jobs", "0"])
    assert "expected a positive number of processes, got '0'" in capsys.readouterr().err
