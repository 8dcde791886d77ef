"""The output directory of a sweep: its configuration, run records, results table and resume.

``OUT/config.json`` is the resolved configuration, ``OUT/runs/<run_id>.json`` one record per
finished run, ``OUT/results.csv`` the ``result`` rows of every record (always rebuilt from the
records). Nothing here deletes a user's file: ``--restart`` moves the old contents to
``OUT/replaced/<time>/``, and a record that cannot be read goes to ``OUT/corrupt/`` (and its run
is recomputed). No torch import: reports read records through this module too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fairprune.atomic import write_atomic
from fairprune.errors import CorruptRecordError, OutputDirError
from fairprune.schema import RECORD_KEYS, RESULT_COLUMNS
from fairprune.sweep.cost import iterations_to_fair

__all__ = [
    "check_out_dir",
    "check_same_config",
    "claim_out_dir",
    "collect_results",
    "read_record",
    "read_records",
    "results_frame",
    "set_aside",
]

logger = logging.getLogger(__name__)

REPLACED = "replaced"  # OUT/replaced/<time>/: what --restart moved aside
CORRUPT = "corrupt"  # OUT/corrupt/: records and checkpoints that could not be read
_KEPT = (REPLACED, CORRUPT)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"


def _move(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination`` (one atomic step on one file system)."""
    os.replace(source, destination)


def _probe_writable(folder: Path, what: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".probe.", suffix=".tmp"):
            pass
    except OSError as err:
        raise OutputDirError(
            f"{what} {str(folder)!r} is not writable ({err.strerror}); choose another --out"
        ) from None


def _with_defaults(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the keys added to the config since it was written filled in with their
    defaults (a sweep recorded before ``data.categorical`` existed still resumes)."""
    out = dict(old)
    for key, value in defaults.items():
        if key not in out and key in new:
            out[key] = value
        elif (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("params", "method_params")
        ):
            out[key] = _with_defaults(out[key], new.get(key, {}), value)
    return out


def _results_config(resolved: Any) -> Any:
    """A resolved config without the keys that change what is kept, not the results
    (``export.save_models``): a sweep resumes whichever way it saves its models."""
    if not isinstance(resolved, dict) or not isinstance(resolved.get("export"), dict):
        return resolved
    return {**resolved, "export": {k: v for k, v in resolved["export"].items() if k != "save_models"}}


def check_out_dir(out: Path) -> None:
    """Check, writing nothing, that ``out`` is (or can be created as) a writable directory.

    Raises:
        OutputDirError: ``out`` or an ancestor is a file, or it is not writable.
    """
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {str(out)!r} exists and is not a directory; expected a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirError(f"--out {str(out)!r}: {str(existing)!r} is a file, not a directory")
    _probe_writable(existing, "output directory" if existing == out else f"parent of --out {str(out)!r},")
    for sub in ("runs", "dense"):
        if (out / sub).is_dir():
            _probe_writable(out / sub, "folder")


def check_same_config(
    out: Path,
    resolved: dict[str, Any],
    defaults: dict[str, Any],
    extends: Callable[..., bool],
    *,
    restart: bool,
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Check that ``out`` holds no sweep, the sweep of ``resolved``, or one that ``resolved``
    extends (``restart`` skips this: the old contents will be moved aside).

    Raises:
        OutputDirError: ``out`` holds the results of a different config, or an unreadable one.

    ``upgrade`` renames the keys of an older ``config.json`` before the comparison.
    """
    cfg_path = out / "config.json"
    if restart or not cfg_path.exists():
        return
    try:
        previous = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise OutputDirError(
            f"{str(cfg_path)!r} cannot be read ({err}); use --restart to move the directory's contents aside"
        ) from None
    if isinstance(previous, dict):
        previous = _with_defaults(upgrade(previous) if upgrade else previous, resolved, defaults)
    previous, resolved = _results_config(previous), _results_config(resolved)
    if previous != resolved and not extends(previous, resolved):
        raise OutputDirError(
            f"output directory {str(out)!r} holds results of a different config; expected the "
            "same config to resume, or one that only adds methods, variants, sparsities, seeds "
            "or tolerances. Use another --out, or --restart to move its contents aside and start over"
        )


def claim_out_dir(out: Path, resolved: dict[str, Any], *, restart: bool) -> Path | None:
    """Create ``out`` (or, with ``restart``, move what it holds to ``OUT/replaced/<time>/``),
    remove the temp files of a killed write, and write ``config.json``; call after every check
    passed. Returns where old contents went (``None`` when nothing was moved).

    ``config.json`` moves last, so that a restart killed half-way leaves the old config in
    charge of whatever records are still in place (a resume never mixes two configs).
    """
    out.mkdir(parents=True, exist_ok=True)
    moved_to = None
    entries = sorted((p for p in out.iterdir() if p.name not in _KEPT), key=lambda p: p.name == "config.json")
    if restart and entries:
        moved_to = out / REPLACED / _stamp()
        moved_to.mkdir(parents=True)
        for entry in entries:
            _move(entry, moved_to / entry.name)
        logger.warning("--restart: moved the previous contents of %s to %s", out, moved_to)
    for leftover in out.glob("**/.*.tmp"):  # temp files of a killed write: never a record
        if leftover.relative_to(out).parts[0] not in _KEPT:
            leftover.unlink(missing_ok=True)
    write_atomic(out / "config.json", json.dumps(resolved, indent=2, sort_keys=True))
    return moved_to


def set_aside(path: Path, out: Path, reason: str) -> Path:
    """Move an unreadable file to ``OUT/corrupt/`` (never delete it) and say so; returns where."""
    destination = out / CORRUPT / f"{path.name}.{_stamp()}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, destination)
    logger.warning(
        "%s cannot be read (%s); moved it to %s, its run will be recomputed", path, reason, destination
    )
    return destination


def read_record(path: Path) -> dict[str, Any]:
    """One run record, checked: a JSON object with ``run_id`` (the file's name) and ``result``.

    Raises:
        CorruptRecordError: Naming the file and what is wrong with it.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptRecordError(f"run record {str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("result"), dict):
        raise CorruptRecordError(f"run record {str(path)!r} must be an object with keys {list(RECORD_KEYS)}")
    if record.get("run_id") != path.stem or record["result"].get("run_id") != path.stem:
        raise CorruptRecordError(
            f"run record {str(path)!r} has run_id {record.get('run_id')!r}; expected {path.stem!r}"
        )
    return record


def read_records(out: Path, *, set_corrupt_aside: bool = False) -> list[dict[str, Any]]:
    """Every record in ``OUT/runs`` (sorted by file name); an unreadable one is an error, or,
    with ``set_corrupt_aside``, moved to ``OUT/corrupt/`` and left out."""
    records = []
    for path in sorted((out / "runs").glob("*.json")):
        try:
            records.append(read_record(path))
        except CorruptRecordError as err:
            if not set_corrupt_aside:
                raise
            set_aside(path, out, str(err))
    return records


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The results table of some records: one ``result`` row each, the cost columns read off
    the histories, the schema's columns first, sorted by seed, label and sparsity."""
    frame = pd.DataFrame([r["result"] for r in records])
    if frame.empty:
        return frame
    frame = iterations_to_fair(frame, {r["run_id"]: r.get("history") or [] for r in records})
    first = [c for c in RESULT_COLUMNS if c in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.sort_values(["seed", "label", "sparsity"], kind="stable").reset_index(drop=True)


def collect_results(out: Path) -> pd.DataFrame:
    """Rebuild ``results.csv`` from the run records (atomically) and return it; unreadable
    records are set aside first."""
    frame = results_frame(read_records(out, set_corrupt_aside=True))
    write_atomic(out / "results.csv", frame.to_csv(index=False))
    return frame
