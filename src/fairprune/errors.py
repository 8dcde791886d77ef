"""One error family: what a user can get wrong, each a one-line message.

Every error here is a :class:`FairpruneError`, itself a ``ValueError`` (so code that catches
``ValueError`` keeps working). The command line turns each into ``fairprune: error: <message>``
with exit code 2 and no traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

__all__ = [
    "FairpruneError",
    "ConfigError",
    "DataError",
    "OutputDirError",
    "TrainingDivergedError",
    "SlimMismatchError",
    "CorruptRecordError",
    "ShippedModelError",
    "validation_message",
]


class FairpruneError(ValueError):
    """Base class: an input or a state the user can fix, described in one line."""


class ConfigError(FairpruneError):
    """A configuration key has a wrong type, a value out of range, or an unknown name; the
    message names the key, what was expected and what was received."""


class DataError(FairpruneError):
    """A data set cannot be used as configured (missing file or column, a dirty column, a group
    absent from a split, a target with more classes than the metric handles); names the file or
    column."""


class OutputDirError(FairpruneError):
    """The output directory cannot be used: not a directory, not writable, or holding the
    results of a different configuration."""


class TrainingDivergedError(FairpruneError):
    """The training loss became NaN or infinite (lower the learning rate or the multiplier's
    step)."""


class SlimMismatchError(FairpruneError):
    """A slimmed (channel-removed) model's outputs differ from the masked model's."""


class CorruptRecordError(FairpruneError):
    """A run record or a saved model on disk cannot be read (a truncated or hand-edited file);
    names the file."""


class ShippedModelError(FairpruneError):
    """A shipped model (``fairprune export`` / ``evaluate``) cannot be written, found or trusted:
    no matching run, a missing or tampered file, a card that does not fit its weights, other data
    whose groups or classes differ from the card's; names the file, run or group."""


_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none"})


def _key(loc: tuple[int | str, ...]) -> str:
    """A dotted config key from a pydantic error location (``sparsities[1]``), without the tags
    pydantic adds for the branch of a union (``"float"``, ``"literal['dense']"``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGS and not any(c in part for c in "[-'("):
            out += f".{part}" if out else part
    return out


def _expected(item: Any) -> str:
    """What pydantic says a key should be, as the words after "expected"."""
    if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return ""  # an unknown key
    message = item["msg"].removeprefix("Value error, ")
    message = re.sub(r"^Input should be (greater|less)", r"a number \1", message)
    return message.removeprefix("Input should be ")[:1].lower() + message.removeprefix("Input should be ")[1:]


def validation_message(error: ValidationError, prefix: str = "") -> str:
    """A pydantic error as one line: each wrong key (the first three, ``prefix`` + its dotted
    name), what it expects and the value received; the branches of a union joined with "or"."""
    expected: dict[str, list[str]] = {}
    received: dict[str, Any] = {}
    for item in error.errors(include_url=False):
        key = prefix + _key(item["loc"])
        expected.setdefault(key, []).append(_expected(item))
        received.setdefault(key, item.get("input"))
    parts = [
        f"{key}: unknown key (a typo?); got {received[key]!r}"
        if "" in words
        else f"{key}: expected {' or '.join(dict.fromkeys(words))}; got {received[key]!r}"
        for key, words in list(expected.items())[:3]
    ]
    return "; ".join(parts)
