"""No input a user types loses a result or shows a traceback (issue 9).

Every bad input exits with code 2 and one line ``fairprune: error: ...`` naming the key or file,
before anything is trained or written: a previous sweep in the output directory stays byte for
byte, even with ``--restart``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_helpers import snapshot, tiny_config, tiny_frame
from test_image_data import make_utkface

import fairprune.sweep
from fairprune.cli import main
from fairprune.data.tabular import load_csv


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny CSV, its config, and a finished sweep of it (run once)."""
    folder = tmp_path_factory.mktemp("tiny")
    csv = folder / "tiny.csv"
    tiny_frame().to_csv(csv, index=False)
    cfg = tiny_config(folder, csv)
    done = folder / "done"
    assert main(["run", str(cfg), "--out", str(done), "--quiet"]) == 0
    return {"csv": csv, "cfg": cfg, "done": done}


@pytest.fixture
def previous(tiny: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the finished sweep to run bad commands against."""
    out = tmp_path / "out"
    shutil.copytree(tiny["done"], out)
    return out


def _fails(capsys: pytest.CaptureFixture[str], args: list[str], *named: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairprune: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for name in named:
        assert name in err, (name, err)
    return err


BAD_SETTINGS = [
    ("data.name=adultt", "data.name"),
    ("data.sensitive_attribute='height'", "'height'"),
    ("data.target='salary'", "'salary'"),
    ("train.lr=abc", "train.lr"),
    ("sparsities=0.5", "sparsities"),
    ("sparsities=[0.5,", "sparsities"),
    ("seeds=abc", "seeds"),
    ("train.batch_size=0", "train.batch_size"),
    ("seeds=[0, 0]", "seeds"),
    ("sparsities=[0.5, 0.5]", "sparsities"),
    ("data.target='three'", "fairness.metric"),  # 3 classes, equalized odds
    ("train.device='gpu'", "train.device"),
    ("method_params.bifp.steps=-1", "method_params.bifp.steps"),
    ("variants=[{method='bifp', schedule='joint', weight_fairness=0.0}]", "mask_fairness == weight_fairness"),
    ("model.params={hidden='x'}", "model"),
    ("variants=[{method='bifp', steps=3}, {method='bifp', steps=3}]", "bifp[steps=3]"),
]


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize(("setting", "named"), BAD_SETTINGS)
def test_a_bad_setting_changes_nothing_even_with_restart(capsys, tiny, previous, setting, named, restart):
    before = snapshot(previous)
    args = ["run", str(tiny["cfg"]), "--out", str(previous), "--quiet", "--set", setting]
    _fails(capsys, args + (["--restart"] if restart else []), named)
    assert snapshot(previous) == before  # every record, results.csv, config.json, dense models


def test_a_failed_run_does_not_claim_a_new_directory(capsys, tiny, tmp_path):
    out = tmp_path / "new"
    base = ["run", str(tiny["cfg"]), "--out", str(out), "--quiet"]
    _fails(capsys, [*base, "--set", "data.sensitive_attribute='height'"], "'height'")
    assert not out.exists()  # no config.json to be refused by later: the corrected command runs
    assert main(base) == 0
    assert len(list((out / "runs").glob("*.json"))) == 6


def test_restart_moves_the_old_contents_aside_and_says_where(caplog, tiny, previous):
    before = snapshot(previous)
    assert main(["run", str(tiny["cfg"]), "--out", str(previous), "--quiet", "--restart"]) == 0
    (moved,) = (previous / "replaced").iterdir()
    assert str(moved) in caplog.text
    assert snapshot(moved) == before  # the old sweep, byte for byte, under replaced/<time>/
    assert len(list((previous / "runs").glob("*.json"))) == 6


def test_an_unknown_data_set_with_restart_keeps_the_sweep(capsys, tiny, previous):
    """The issue's first case, verbatim: this used to delete every record, then fail."""
    before = snapshot(previous)
    args = ["run", str(tiny["cfg"]), "--restart", "--set", "data.name=adultt", "--out", str(previous)]
    _fails(capsys, args, "data.name", "'adultt'")
    assert snapshot(previous) == before and not (previous / "replaced").exists()


def test_out_that_is_a_file(capsys, tiny, tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    _fails(capsys, ["run", str(tiny["cfg"]), "--out", str(file), "--quiet"], str(file), "not a directory")
    _fails(capsys, ["run", str(tiny["cfg"]), "--out", str(file / "sub"), "--quiet"], str(file))


def test_out_that_cannot_be_written(capsys, tiny, tmp_path):
    _fails(capsys, ["run", str(tiny["cfg"]), "--out", "/proc/fairprune-out", "--quiet"], "not writable")
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        _fails(capsys, ["run", str(tiny["cfg"]), "--out", str(folder), "--quiet"], "not writable")


def test_empty_and_missing_csv_name_the_file(capsys, tiny, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    args = ["run", str(tiny["cfg"]), "--out", str(tmp_path / "o"), "--quiet", "--set"]
    _fails(capsys, [*args, f"data.path='{empty}'"], str(empty))
    _fails(capsys, [*args, f"data.path='{tmp_path / 'nope.csv'}'"], "nope.csv")
    _fails(capsys, ["run", str(tmp_path / "nope.toml")], "nope.toml")


def test_a_dirty_numeric_column_is_an_error_unless_declared_categorical(capsys, tiny, tmp_path):
    frame = tiny_frame()
    frame["a"] = frame["a"].astype(object)
    frame.loc[[3, 50, 99], "a"] = ["unknown", "?", "unknown"]
    dirty = tmp_path / "dirty.csv"
    frame.to_csv(dirty, index=False)
    args = ["run", str(tiny["cfg"]), "--out", str(tmp_path / "o"), "--quiet", "--set", f"data.path='{dirty}'"]
    err = _fails(capsys, args, str(dirty), "column 'a'", "['?', 'unknown']", "data.categorical")
    assert "3 of its 240 values" in err
    assert not (tmp_path / "o").exists()
    assert main([*args, "--set", "data.categorical=['a']", "--set", "seeds=[0]"]) == 0


def test_a_corrupt_record_and_dense_model_are_set_aside_and_recomputed(caplog, tiny, previous):
    record = previous / "runs" / "bifp__s0.5__seed0.json"
    dense = previous / "dense" / "seed0.pt"  # loaded again to recompute that run
    record.write_text(record.read_text()[:100])  # truncated by hand
    dense.write_bytes(dense.read_bytes()[:200])
    untouched = {
        k: v for k, v in snapshot(previous).items() if k.startswith("runs/") and "bifp__s0.5__seed0" not in k
    }
    assert main(["run", str(tiny["cfg"]), "--out", str(previous), "--quiet"]) == 0
    corrupt = sorted(p.name for p in (previous / "corrupt").iterdir())
    assert [name.split(".json.")[0].split(".pt.")[0] for name in corrupt] == ["bifp__s0.5__seed0", "seed0"]
    assert str(record) in caplog.text and str(dense) in caplog.text
    assert {k: v for k, v in snapshot(previous).items() if k in untouched} == untouched
    records = [json.loads(p.read_text()) for p in sorted((previous / "runs").glob("*.json"))]
    frame = pd.read_csv(previous / "results.csv")
    assert sorted(frame["run_id"]) == sorted(r["run_id"] for r in records) and len(records) == 6


def test_results_carry_group_names_and_files_follow_the_umask(tiny, tmp_path):
    old = os.umask(0o027)
    try:
        assert (
            main(["run", str(tiny["cfg"]), "--out", str(tmp_path / "o"), "--quiet", "--set", "seeds=[0]"])
            == 0
        )
    finally:
        os.umask(old)
    out = tmp_path / "o"
    for path in [out / "config.json", out / "results.csv", *out.glob("runs/*.json"), *out.glob("dense/*.pt")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    frame = pd.read_csv(out / "results.csv")
    columns = ["group_accuracy_Female", "group_accuracy_Male", "group_size_Female", "group_size_Male"]
    assert set(columns) <= set(frame.columns) and not any(c.endswith("_0") for c in frame.columns)
    record = json.loads((out / "runs" / "dense__s0__seed0.json").read_text())
    splits = load_csv(tiny["csv"], target="label", sensitive_attribute="group", seed=0)
    sizes = torch.bincount(splits.test.groups).tolist()  # groups sorted by name: Female, Male
    assert [record["result"]["group_size_Female"], record["result"]["group_size_Male"]] == sizes
    assert main(["report", str(out)]) == 0
    assert "| label | sparsity | Female | Male |" in (out / "report.md").read_text()


def test_the_committed_face_records_still_report(tmp_path):
    source = Path(__file__).parents[1] / "results" / "faces" / "celeba_eo"
    if not source.is_dir():
        pytest.skip("results/faces/celeba_eo is not in this checkout")
    shutil.copytree(source, tmp_path / "faces")
    assert main(["report", str(tmp_path / "faces")]) == 0
    text = (tmp_path / "faces" / "report.md").read_text()
    assert "| label | sparsity | 0 | 1 |" in text  # recorded before group names: ids


def test_the_real_command_prints_one_line_and_no_traceback(tiny, tmp_path):
    """The same through a subprocess: what a user sees on the terminal."""
    args = [
        sys.executable,
        "-m",
        "fairprune",
        "run",
        str(tiny["cfg"]),
        "--out",
        str(tmp_path),
        "--set",
        "train.lr=abc",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr == "fairprune: error: bad config: train.lr: expected a valid number; got 'abc'\n"


def test_a_diverging_training_is_one_line(capsys, tiny, tmp_path):
    args = ["run", str(tiny["cfg"]), "--out", str(tmp_path / "o"), "--quiet", "--set", "train.lr=1e30"]
    _fails(capsys, args, "dense seed 0: training loss became", "lower the learning rate")
    assert not list((tmp_path / "o").glob("runs/*.json"))


def test_report_names_a_corrupt_record(capsys, previous):
    record = previous / "runs" / "dense__s0__seed1.json"
    record.write_text("{")
    _fails(capsys, ["report", str(previous)], str(record), "not valid JSON")


def test_an_unexpected_exception_keeps_its_traceback(monkeypatch, tiny, tmp_path):
    """A bug is not a user error: it propagates (the interpreter prints its traceback)."""

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(fairprune.sweep, "run_experiment", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["run", str(tiny["cfg"]), "--out", str(tmp_path / "o"), "--quiet"])


def test_image_data_with_the_default_sensitive_attribute(capsys, monkeypatch, tmp_path):
    """UTKFace has no 'sex' (the default, Adult's): exit 2 with a hint, the directory untouched."""
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))
    make_utkface(tmp_path / "UTKFace")
    out = tmp_path / "o"
    args = ["run", "--out", str(out), "--quiet", "--set", "data.name='utkface'"]
    args += ["--set", f"data.root='{tmp_path / 'UTKFace'}'", "--set", "data.params={resolution=8}"]
    _fails(capsys, args, "data utkface", "'sex'", "when not set")
    assert not out.exists()


def test_an_unreadable_config_json_is_named_and_restart_moves_it_aside(capsys, tiny, previous):
    (previous / "config.json").write_text('{"methods": ')
    before = snapshot(previous)
    args = ["run", str(tiny["cfg"]), "--out", str(previous), "--quiet"]
    _fails(capsys, args, str(previous / "config.json"), "--restart")
    assert snapshot(previous) == before
    assert main([*args, "--restart"]) == 0
    (moved,) = (previous / "replaced").iterdir()
    assert snapshot(moved) == before
