"""A config file and ``--set key=value`` overrides, loaded and checked."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from fairprune.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fairprune.config.checks import (
    config_from_dict,
)
from fairprune.config.quick import quick
from fairprune.config.sections import (
    ExperimentConfig,
)

_STRUCTURED = re.compile(r"""\s*[\[{"']""")  # a value meant as a TOML list, table or string


def _parse_value(key: str, text: str) -> Any:
    """``text`` as a TOML value; a bare word that is not TOML is the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as err:
        if _STRUCTURED.match(text):
            raise ConfigError(f"--set {key}: {text!r} is not a TOML value ({err})") from None
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys; values parsed as TOML, else strings)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(key.split(".")):
            raise ConfigError(f"--set expects key=value (e.g. data.name=compas); got {item!r}")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a config section; got {item!r}")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = _parse_value(key, text.strip())
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, quick_run: bool = False
) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``overrides``
    (then :func:`quick` when ``quick_run``).

    Raises:
        ConfigError: For a missing or unreadable file, invalid TOML, or any wrong key.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist or is not a file; expected a TOML file")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as err:
            raise ConfigError(f"config file {str(p)!r} is not readable TOML: {err}") from None
    cfg = config_from_dict(apply_overrides(raw, overrides or []))
    return quick(cfg) if quick_run else cfg
