"""Data as users have it (issue 11): spreadsheet-damaged label files, an image folder that is not
where the loader looks, stratified ``limit`` subsets, and ``--quick`` on a large set."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_image_data import (
    R,
    make_celeba,
    make_fairface,
    make_lfw,
    make_utkface,
    parts,
    read_back,
)

from fairprune.config import QUICK_LIMIT, config_from_dict, quick, quick_changes
from fairprune.data import load_dataset
from fairprune.data.base import stratified_sample
from fairprune.data.celeba import load_celeba
from fairprune.data.fairface import _undamaged, load_fairface
from fairprune.data.image_csv import load_image_csv
from fairprune.data.lfw import load_lfw
from fairprune.data.utkface import load_utkface
from fairprune.sweep.validation import load_splits


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))


def labels_of(splits) -> list[tuple[list[int], list[int]]]:
    return [(s.y.tolist(), s.groups.tolist()) for s in parts(splits)]


# --- FairFace age bins that went through a spreadsheet ---------------------------------------


@pytest.mark.parametrize(
    ("damaged", "bin_"),
    [
        ("03-Sep", "3-9"),  # day-month (the common shared CSV)
        ("3-Sep", "3-9"),
        ("9-Mar", "3-9"),  # month-first locales read 3-9 as 9 March
        ("Oct-19", "10-19"),  # month-year
        ("19-Oct", "10-19"),
        ("Feb-00", "0-2"),
        (" 03-sep ", "3-9"),
        ("2-Jan", None),  # 1-2 and 2-1 are no bins
        ("Foo-19", None),
        ("adult", None),
    ],
)
def test_date_renderings_map_back_to_their_bin(damaged: str, bin_: str | None) -> None:
    assert _undamaged(damaged) == bin_


def test_fairface_repairs_spreadsheet_dates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "ff"
    frame = make_fairface(root)  # ages "3-9" and "30-39", 8 rows each per part
    clean = load_fairface(root, target="age>=20", sensitive_attribute="race", resolution=R)
    for part, rows in (("train", frame[:16]), ("val", frame[16:])):
        damaged = rows.assign(age=rows.age.replace({"3-9": "03-Sep"}))
        damaged.loc[damaged.index[damaged.age == "30-39"][:2], "age"] = "Oct-19"  # two teenagers
        damaged.to_csv(root / f"fairface_label_{part}.csv", index=False)
    with caplog.at_level(logging.WARNING):
        repaired = load_fairface(root, target="age>=20", sensitive_attribute="race", resolution=R)
    assert "'03-Sep' -> '3-9' (16 rows), 'Oct-19' -> '10-19' (4 rows)" in caplog.text
    assert repaired.class_names == ("age<20", "age>=20")
    written = pd.read_csv(root / "fairface_label_train.csv").age.tolist()
    assert written.count("03-Sep") == 8 and written.count("Oct-19") == 2
    expected = [int(age == "30-39") for age in written]  # 3-9 and 10-19 are below 20
    assert repaired.train.y.tolist() == expected != clean.train.y.tolist()
    by_age = load_fairface(root, target="gender", sensitive_attribute="age", resolution=R)
    assert by_age.group_names == ("3-9", "10-19", "30-39")  # FairFace's order, no date names
    old = load_fairface(root, target="age>=40", sensitive_attribute="race", resolution=R)
    assert old.train.y.sum().item() == 0  # every bin is below 40 once repaired


def test_fairface_unknown_age_bin_lists_the_valid_ones(tmp_path: Path) -> None:
    root = tmp_path / "ff"
    frame = make_fairface(root)
    frame[:16].assign(age=["adult"] + list(frame.age[1:16])).to_csv(
        root / "fairface_label_train.csv", index=False
    )
    for target in ("age", "age>=40"):
        with pytest.raises(
            ValueError, match=r"unknown FairFace age bins \['adult'\].*expected one of \['0-2', '3-9'"
        ):
            load_fairface(root, target=target, sensitive_attribute="race", resolution=R)
    assert load_fairface(root, resolution=R).n_classes == 2  # gender by race: the age column is unused


# --- CelebA and LFW attribute files that went through an editor --------------------------------


def test_celeba_attribute_file_with_crlf_stray_whitespace_and_no_count_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_celeba(tmp_path / "celeba")
    clean = labels_of(load_celeba(root, resolution=R))
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    messy = ["  " + "\t".join(lines[1].split()) + "  "]  # no count line; names TAB-separated, padded
    messy += [f" {row}  \t" for row in lines[2:]] + ["", "   "]  # padded rows, blank lines
    (root / "list_attr_celeba.txt").write_bytes("\r\n".join(messy).encode() + b"\r\n")
    partition = (root / "list_eval_partition.txt").read_text().replace("\n", " \r\n")
    (root / "list_eval_partition.txt").write_bytes(partition.encode())
    with caplog.at_level(logging.WARNING):
        assert labels_of(load_celeba(root, resolution=R)) == clean
    assert "has no image-count line" in caplog.text


def test_celeba_attribute_file_without_names_is_an_error(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"expected line 2 of .* to hold the attribute names.*'000001.jpg'"):
        load_celeba(root, resolution=R)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines[:2] + [lines[2] + " 1", *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match=r"a file name and 3 values .* first row has 5 fields"):
        load_celeba(root, resolution=R)


def test_celeba_csv_with_stray_whitespace_and_no_header(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba", csv=True)
    clean = labels_of(load_celeba(root, resolution=R))
    text = (root / "list_attr_celeba.csv").read_text()
    spaced = "\r\n".join(", ".join(line.split(",")) + " " for line in text.splitlines())
    (root / "list_attr_celeba.csv").write_text(spaced)
    assert labels_of(load_celeba(root, resolution=R)) == clean
    (root / "list_attr_celeba.csv").write_text("\n".join(text.splitlines()[1:]))
    with pytest.raises(ValueError, match=r"list_attr_celeba.csv.*expected a header line.*'image_id'"):
        load_celeba(root, resolution=R)


def test_lfw_attribute_file_as_an_editor_leaves_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, _ = make_lfw(tmp_path / "lfw")
    clean = labels_of(load_lfw(root, resolution=R))
    lines = (root / "lfw_attributes.txt").read_text().splitlines()
    rows = [f"{row} \t" for row in lines[2:12]]  # stray trailing whitespace and an empty field
    rows += [" ".join(row.split("\t")) for row in lines[12:20]]  # TABs became spaces
    rows += ["\t".join(f" {f} " for f in row.split("\t")) for row in lines[20:]]  # padded fields
    messy = [lines[1], "", *rows]  # no '# 30 images' comment line, a blank line
    (root / "lfw_attributes.txt").write_bytes("\r\n".join(messy).encode())
    with caplog.at_level(logging.WARNING):
        assert labels_of(load_lfw(root, resolution=R)) == clean
    assert "the header is line 1" in caplog.text
    (root / "lfw_attributes.txt").write_text("\n".join([*lines[:5], "Person Q Doe\t1\t0.5", *lines[5:]]))
    with pytest.raises(ValueError, match=r"1 rows of LFW's .* do not have the 5 fields.*lines \[6\]"):
        load_lfw(root, resolution=R)
    (root / "lfw_attributes.txt").write_text("\n".join(lines[2:]))
    with pytest.raises(ValueError, match=r"expected line 2 .*'#<TAB>person<TAB>imagenum"):
        load_lfw(root, resolution=R)


# --- a root with no images -------------------------------------------------------------------


def test_no_image_under_the_root_names_the_setting(tmp_path: Path) -> None:
    ff = tmp_path / "ff"
    make_fairface(ff)
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(
        ValueError,
        match=r"none of the 32 images listed in FairFace's .* exists under '.*elsewhere'.*"
        r"image_root= \(in a config: data.params.image_root\)",
    ):
        load_fairface(ff, image_root=elsewhere, missing="skip")
    with pytest.raises(ValueError, match=r"none of the 16 .*image_root= \(in a config: data.root\)"):
        load_image_csv(ff / "fairface_label_train.csv", elsewhere, path_column="file", target="gender",
                       sensitive_attribute="race")  # fmt: skip
    celeba = make_celeba(tmp_path / "celeba")
    for image in (celeba / "img_align_celeba").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=r"none of the 24 .*root= \(in a config: data.root\)"):
        load_celeba(celeba)
    lfw, _ = make_lfw(tmp_path / "lfw", image_dir="lfw-deepfunneled")
    (lfw / "lfw").mkdir()  # the first folder name the loader tries, empty
    with pytest.raises(ValueError, match=r"none of the 30 .* under '.*lfw/lfw'.*data.params.image_dir"):
        load_lfw(lfw)
    assert len(load_lfw(lfw, image_dir="lfw-deepfunneled", resolution=R).train) > 0
    (tmp_path / "utk").mkdir()
    with pytest.raises(ValueError, match=r"found none \(set the folder with root= \(in a config: data.root"):
        load_utkface(tmp_path / "utk")


# --- limit: a seeded subset stratified by (target, group) --------------------------------------


def test_stratified_sample_quotas_by_hand() -> None:
    strata = np.array([0] * 6 + [1] * 3 + [2])
    rng = np.random.default_rng(0)
    for n, quotas in [(5, [3, 1, 1]), (4, [2, 1, 1]), (2, [1, 1, 0]), (7, [4, 2, 1]), (9, [5, 3, 1])]:
        picked = stratified_sample(strata, n, rng)
        assert len(set(picked.tolist())) == n and np.bincount(strata[picked], minlength=3).tolist() == quotas
    assert stratified_sample(np.array([0] * 8 + [1, 2]), 3, rng).tolist()[-2:] == [8, 9]  # every cell
    assert stratified_sample(strata, 99, rng).tolist() == list(range(10))
    with pytest.raises(ValueError, match="positive integer subset size; received 0"):
        stratified_sample(strata, 0, rng)


def tiny_png(index: int) -> bytes:
    """A 2x2 PNG whose colour is ``index`` (red = index % 256, green = index // 256)."""
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (index % 256, index // 256, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_utkface_by_age(root: Path) -> np.ndarray:
    """200 files, two per age 1..100, (gender, race) cycling so every cell has 20; in file-name
    order the first ones are ages 1, 10-19, 100 ("1_", "10_", ...). Returns the ages by index."""
    root.mkdir(parents=True)
    ages = 1 + np.arange(200) // 2
    for k, age in enumerate(ages):
        (root / f"{age}_{k % 2}_{k // 2 % 5}_{k:06d}.jpg.chip.png").write_bytes(tiny_png(k))
    return ages


def indices_of(split) -> list[int]:
    """The file index of each image, read back from its colour."""
    return (split.x[:, 0, 0, 0].long() + 256 * split.x[:, 1, 0, 0].long()).tolist()


def test_limit_is_a_stratified_seeded_subset_spanning_every_age(tmp_path: Path) -> None:
    ages = make_utkface_by_age(tmp_path / "utk")
    full = load_utkface(tmp_path / "utk", resolution=2)
    assert [len(s) for s in parts(full)] == [140, 30, 30]  # 14 / 3 / 3 of each cell of 20
    limited = load_utkface(tmp_path / "utk", resolution=2, limit=40)
    assert [len(s) for s in parts(limited)] == [40, 30, 30]
    train = limited.train
    cells = (train.y * limited.n_groups + train.groups).numpy()
    assert np.bincount(cells, minlength=10).tolist() == [4] * 10  # 40 of 140, each cell's share
    assert set(indices_of(train)) <= set(indices_of(full.train))
    subset_ages = ages[indices_of(train)]
    first_40 = np.sort(ages[indices_of(full.train)].astype(str))[:40].astype(int)  # the old limit
    decades = set((subset_ages - 1) // 10)  # 0: ages 1-10, ..., 9: 91-100
    assert len(decades) >= 9 and subset_ages.min() <= 15 and subset_ages.max() >= 90  # the full range
    assert 35 <= np.median(subset_ages) <= 65 and not 35 <= np.median(first_40) <= 65  # median 50.5
    again = load_utkface(tmp_path / "utk", resolution=2, limit=40)
    other_seed = load_utkface(tmp_path / "utk", resolution=2, limit=40, seed=1)
    assert indices_of(again.train) == indices_of(train) != indices_of(other_seed.train)


def test_limit_per_split_and_bad_limits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_utkface(tmp_path / "utk")
    with caplog.at_level(logging.INFO, logger="fairprune.data.labelled_images"):
        kept = load_dataset("utkface", root=tmp_path / "utk", resolution=R, limit={"train": 10})
    assert "limit {'train': 10}: stratified subsets of [10, 10, 10] of [20, 10, 10] images" in caplog.text
    whole = load_utkface(tmp_path / "utk", resolution=R)
    assert [len(s) for s in parts(kept)] == [10, len(whole.val), len(whole.test)]
    assert read_back(kept.val.x) == read_back(whole.val.x)
    for bad in (0, -3, {"train": 0}, {"trian": 5}, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_utkface(tmp_path / "utk", resolution=R, limit=bad)


# --- --quick on a large data set -------------------------------------------------------------

N_LARGE = 40_000


def test_quick_caps_a_40000_image_set_with_stratified_subsets(tmp_path: Path) -> None:
    """Writing 40,000 files of the same 67-byte PNG takes a few seconds; only the capped subsets
    are decoded."""
    start = time.perf_counter()
    root = tmp_path / "large"
    root.mkdir()
    png = tiny_png(7)
    for k in range(N_LARGE):
        (root / f"{1 + k % 90}_{k % 2}_{k // 2 % 5}_{k:06d}.jpg.chip.png").write_bytes(png)
    raw = {"data": {"name": "utkface", "root": str(root), "target": "gender", "sensitive_attribute": "race"}}
    cfg = config_from_dict(
        {**raw, "methods": ["dense"], "data": {**raw["data"], "params": {"resolution": 64}}}
    )
    quick_cfg = quick(cfg)
    assert quick_cfg.data.params == {"resolution": 32, "limit": QUICK_LIMIT}
    assert f"data.params.limit: (not set) -> {QUICK_LIMIT!r}" in quick_changes(cfg, quick_cfg)
    assert "data.params.resolution: 64 -> 32" in quick_changes(cfg, quick_cfg)
    splits = load_splits(quick_cfg.data, seed=0)
    assert [len(s) for s in parts(splits)] == [10_000, 2_500, 2_500]  # of 28,000 / 6,000 / 6,000
    cells = (splits.train.y * splits.n_groups + splits.train.groups).numpy()
    assert np.bincount(cells, minlength=10).tolist() == [1000] * 10  # each cell 2,800 of 28,000
    assert splits.train.x.shape == (10_000, 3, 32, 32)
    assert time.perf_counter() - start < 120  # measured: about 10 s on the shared 2-core machine
    smaller = quick(config_from_dict({**raw, "data": {**raw["data"], "params": {"limit": {"val": 100}}}}))
    assert smaller.data.params["limit"] == {"train": 10_000, "val": 100, "test": 2_500}


def test_quick_leaves_tabular_data_whole() -> None:
    cfg = quick(config_from_dict({"methods": ["dense"]}))
    assert "limit" not in cfg.data.params and cfg.data.name == "adult"
