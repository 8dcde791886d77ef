"""A sweep killed with SIGKILL in the middle of a run resumes with every run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_cli import _config


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_mid_sweep_then_resume_records_every_run_once(tmp_path, planted_csv):
    cfg = _config(tmp_path, planted_csv)
    out = tmp_path / "out"
    # slow enough runs that the kill lands inside one
    args = [
        sys.executable,
        "-m",
        "fairprune",
        "run",
        str(cfg),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "method_params.bifp.steps=300",
        "--set",
        "method_params.magnitude.finetune_steps=300",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
    runs = out / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(runs.glob("*.json"))) < 2:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    time.sleep(0.3)  # inside the next run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in runs.glob("*.json"))
    assert 2 <= len(done_before) < 5, "the kill should land mid-sweep"
    for p in runs.glob("*.json"):
        json.loads(p.read_text())  # every record on disk is complete
    stamps = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}

    resumed = subprocess.run(args, env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()
    records = sorted(runs.glob("*.json"))
    assert len(records) == 5  # dense + 2 methods x 2 sparsities
    assert not list(out.glob("**/.*.tmp"))
    for p in records:  # runs finished before the kill were not redone
        if p.name in stamps:
            assert p.stat().st_mtime_ns == stamps[p.name]
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 5 and frame["run_id"].is_unique
    assert sorted(frame["run_id"]) == sorted(Path(p).stem for p in records)


def test_a_sweep_recorded_before_a_setting_existed_resumes(tmp_path):
    """A config.json written before a setting was added (here: fairness.confidence) resumes:
    the missing setting counts at its default; a recorded value that differs still refuses."""
    from fairprune.config import ExperimentConfig
    from fairprune.sweep.experiment import prepare_out_dir

    cfg = ExperimentConfig()
    out = tmp_path / "out"
    out.mkdir()
    recorded = cfg.to_dict()
    del recorded["fairness"]["confidence"]
    (out / "config.json").write_text(json.dumps(recorded))
    prepare_out_dir(out, cfg, restart=False)  # no error
    assert json.loads((out / "config.json").read_text())["fairness"]["confidence"] == 0.0
    older = {**recorded, "fairness": {k: v for k, v in recorded["fairness"].items() if k != "dual_step"}}
    older["fairness"]["strength"] = older["fairness"].pop("penalty_weight")  # before the two settings
    (out / "config.json").write_text(json.dumps(older))
    prepare_out_dir(out, cfg, restart=False)  # the same config: strength 5 read as dual_step 5
    recorded["fairness"]["dual_step"] = 1.0
    (out / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="holds results of a different config"):
        prepare_out_dir(out, cfg, restart=False)
