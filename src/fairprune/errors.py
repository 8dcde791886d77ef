"""One error family: what a user can get wrong, each a one-line message.

Every error here is a :class:`FairpruneError`, itself a ``ValueError`` (so code that catches
``ValueError`` keeps working). The command line turns each into ``fairprune: error: <message>``
with exit code 2 and no traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "FairpruneError",
    "ConfigError",
    "DataError",
    "OutputDirError",
    "TrainingDivergedError",
    "SlimMismatchError",
    "CorruptRecordError",
    "ShippedModelError",
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
