"""``kill -9`` at 20 moments of a small sweep, including during record writes and during
``--restart``: after resuming, every run is recorded exactly once, the records of finished runs
are unchanged, ``results.csv`` equals the records, and nothing a restart moved is lost.

The sweep runs in a forked child (the parent has imported torch already, so a run takes a
fraction of a second instead of the ~10 s of a fresh interpreter); the child is killed with
SIGKILL, which no Python code can intercept.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sweep_helpers import snapshot, tiny_config, tiny_frame

import fairprune.atomic as atomic
import fairprune.sweep.store as run_store
from fairprune.cli import main
from fairprune.config import load_config
from fairprune.sweep.grid import grid
from fairprune.sweep.store import read_record, read_records, results_frame

pytestmark = pytest.mark.skipif(
    os.name != "posix" or not hasattr(os, "fork"), reason="needs fork and SIGKILL"
)

FORK = multiprocessing.get_context("fork")


def _child(args: list[str], pause: tuple[str, int] | None, flag: str) -> None:
    """Run ``fairprune`` with ``args``; with ``pause=(where, k)``, stop for good at the k-th
    record write (temp file written, not yet renamed) or the k-th move of a restart, after
    touching ``flag`` so that the parent knows to kill."""
    if pause is not None:
        where, k = pause
        count = {"n": 0}

        def hold() -> None:
            count["n"] += 1
            if count["n"] == k:
                Path(flag).touch()
                time.sleep(60)

        if where == "record":
            original_replace = atomic.replace_atomically

            def replace(path: Path, write: Callable[[Path], object]) -> Path:
                def write_then_hold(temporary: Path) -> None:
                    write(temporary)
                    if Path(path).parent.name == "runs":
                        hold()

                return original_replace(path, write_then_hold)

            atomic.replace_atomically = replace
        else:
            original_move = run_store._move

            def move(source: Path, destination: Path) -> None:
                original_move(source, destination)
                hold()

            run_store._move = move
    os._exit(main(args))


def _records(out: Path) -> int:
    return len(list((out / "runs").glob("*.json")))


def _kill_after(
    args: list[str],
    *,
    delay: float = 120.0,
    after_record: Path | None = None,
    pause: tuple[str, int] | None = None,
    flag: Path,
) -> bool:
    """Start the sweep and SIGKILL it ``delay`` seconds after it starts (or, with
    ``after_record=OUT``, after it writes its first record), or once it reaches ``pause``;
    returns whether it was still running when killed."""
    flag.unlink(missing_ok=True)
    before = _records(after_record) if after_record else 0
    child = FORK.Process(target=_child, args=(args, pause, str(flag)))
    child.start()
    while after_record and child.is_alive() and _records(after_record) == before:
        time.sleep(0.002)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and child.is_alive() and not (pause and flag.exists()):
        time.sleep(0.002)
    alive = child.is_alive()
    child.kill()  # SIGKILL
    child.join()
    return alive and child.exitcode == -signal.SIGKILL


def _run(args: list[str]) -> int:
    child = FORK.Process(target=_child, args=(args, None, ""))
    child.start()
    child.join()
    return child.exitcode


def _check_records(out: Path, seen: dict[str, bytes]) -> None:
    """Every record on disk is whole; those seen before are byte for byte what they were."""
    for path in (out / "runs").glob("*.json"):
        read_record(path)
        data = path.read_bytes()
        assert seen.setdefault(path.name, data) == data, path


def _check_finished(out: Path, expected_runs: set[str]) -> None:
    records = read_records(out)
    assert sorted(r["run_id"] for r in records) == sorted(expected_runs)  # each exactly once
    assert (out / "results.csv").read_text() == results_frame(records).to_csv(index=False)
    assert not [p for p in out.rglob(".*.tmp")]


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[list[str], set[str]]:
    csv = tmp_path / "tiny.csv"
    tiny_frame().to_csv(csv, index=False)
    cfg = tiny_config(tmp_path, csv, seeds="[0, 1, 2, 3, 4]", extra="sparsities = [0.5, 0.8]").read_text()
    cfg = cfg.replace("sparsities = [0.5]\n", "")
    (tmp_path / "exp.toml").write_text(cfg)
    runs = {job.run_id for job in grid(load_config(tmp_path / "exp.toml"))}
    assert len(runs) == 25
    return ["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"), "--quiet"], runs


def _timing(args: list[str], out: Path) -> tuple[float, float]:
    """Seconds to the first record and per run after it, of one uninterrupted sweep here."""
    child = FORK.Process(target=_child, args=([*args[:3], str(out), "--quiet"], None, ""))
    start = time.monotonic()
    child.start()
    while child.is_alive() and _records(out) == 0:
        time.sleep(0.002)
    first = time.monotonic() - start
    child.join()
    assert child.exitcode == 0
    return first, (time.monotonic() - start - first) / (_records(out) - 1)


def test_kill_at_17_moments_of_a_sweep_then_resume(sweep, tmp_path):
    """12 random moments (6 from the start: validation, claiming, dense training; 6 after the
    first record of a resume, within about a run), 5 in the middle of a record write."""
    args, runs = sweep
    out, flag = tmp_path / "out", tmp_path / "flag"
    startup, per_run = _timing(args, tmp_path / "timing")
    rng = random.Random(9)
    seen: dict[str, bytes] = {}
    moments = [("start", rng.uniform(0.0, startup)) for _ in range(6)]
    moments += [("after", rng.uniform(0.0, per_run)) for _ in range(6)]
    moments += [("record", 0.0)] * 5
    rng.shuffle(moments)
    killed_running = 0
    for kind, delay in moments:
        assert _records(out) < len(runs) - 1  # runs are left: each kill lands mid-sweep
        if kind == "record":  # the first record of this resume: written, not yet renamed
            assert _kill_after(args, pause=("record", 1), flag=flag)
            assert len(list((out / "runs").glob(".*.tmp"))) == 1  # killed mid-write
        else:
            killed_running += _kill_after(
                args, delay=delay, after_record=out if kind == "after" else None, flag=flag
            )
        _check_records(out, seen)
    assert killed_running >= 10  # the random kills landed while the sweep was running
    assert _run(args) == 0
    _check_records(out, seen)
    _check_finished(out, runs)


def test_kill_during_restart_loses_nothing(sweep, tmp_path):
    args, runs = sweep
    out, flag = tmp_path / "out", tmp_path / "flag"
    assert _run(args) == 0
    original = snapshot(out)
    for _ in range(3):  # each restart killed right after its first move (4 entries: 3, 2, 1 left)
        assert _kill_after([*args, "--restart"], pause=("restart", 1), flag=flag)
        digests = {
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*")
            if p.is_file() and ".tmp" not in p.name
        }
        assert set(original.values()) <= digests  # every old file is still somewhere under OUT
        assert (out / "config.json").exists()  # moved last: the old config still owns what is left
    assert _run([*args, "--restart"]) == 0
    _check_finished(out, runs)
    moved = [snapshot(folder) for folder in (out / "replaced").iterdir()]
    for name, digest in original.items():  # each old file, under the name it had, in some batch
        assert any(batch.get(name) == digest for batch in moved), name
