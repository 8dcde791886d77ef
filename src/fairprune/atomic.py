"""Atomic file writes: a temp file in the same folder, then ``os.replace`` — never a partial file.

Temp files are named ``.<name>.<random>.tmp``, so a reader (or a resumed sweep) can tell them apart
from finished files and clean up after a killed writer. The finished file gets the permissions an
ordinary ``open(path, "w")`` would give it (``0o666`` minus the process's umask), not the
``0o600`` of a temp file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["file_mode", "replace_atomically", "write_atomic"]


def file_mode() -> int:
    """``0o666`` without the bits of the current umask (the mode of a newly created file)."""
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(temp_path)``, then move the temp file onto ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, flushed to disk."""

    def write(temporary: Path) -> None:
        with temporary.open("wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())

    return replace_atomically(path, write)
