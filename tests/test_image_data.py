"""Image loaders: tiny datasets in each real on-disk format, the decode cache, augmentation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fairprune.data import images as images_module
from fairprune.data.base import Splits, stratified_split_indices
from fairprune.data.celeba import load_celeba
from fairprune.data.fairface import load_fairface
from fairprune.data.image_csv import load_image_csv
from fairprune.data.images import augment, cached_images, decode_images, to_float
from fairprune.data.labelled_images import grouped_split_indices
from fairprune.data.lfw import load_lfw
from fairprune.data.registry import IMAGE_DATASETS, load_dataset
from fairprune.data.utkface import load_utkface

SHARED_CELEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba"
R = 8


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per image index, far from its neighbours."""
    return (20 + 37 * i % 200, 230 - 11 * i % 200, 60 + 53 * i % 180)


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, quality=95)


def mean_colours(x: torch.Tensor) -> np.ndarray:
    """``(N, 3, R, R)`` uint8 -> ``(N, 3)`` mean colour."""
    return x.float().mean(dim=(2, 3)).numpy()


def assert_images_are(x: torch.Tensor, indices: np.ndarray) -> None:
    """Each image is the solid colour of its file index (JPEG: within 6 levels)."""
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, R, R)
    np.testing.assert_allclose(mean_colours(x), [colour(int(i)) for i in indices], atol=6)


def read_back(x: torch.Tensor, n: int = 41) -> list[int]:
    """The index ``i < n`` of each image, read back from its colour ``colour(i)``."""
    table = np.array([colour(i) for i in range(n)], dtype=float)
    return [int(np.abs(table - m).sum(axis=1).argmin()) for m in mean_colours(x)]


def parts(splits: Splits) -> list:
    return [splits.train, splits.val, splits.test]


# --- decoding, cache, augmentation -----------------------------------------------------------


def test_decode_images_takes_the_centre_square(tmp_path: Path) -> None:
    tall = Image.new("RGB", (20, 40), (255, 0, 0))
    tall.paste((0, 255, 0), (0, 10, 20, 30))  # rows 10..29: the centre 20 x 20 square
    tall.save(tmp_path / "tall.png")
    write_image(tmp_path / "wide.png", (0, 0, 255), size=(50, 10))
    out = decode_images([tmp_path / "tall.png", tmp_path / "wide.png"], 6)
    assert out.shape == (2, 6, 6, 3) and out.dtype == np.uint8
    assert (out[0] == [0, 255, 0]).all() and (out[1] == [0, 0, 255]).all()


def test_decode_images_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.jpg", (1, 2, 3))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"2 of 3 images are absent: .*'[^']*gone1.jpg'"):
        decode_images([tmp_path / "ok.jpg", tmp_path / "gone1.jpg", tmp_path / "gone2.jpg"], R)
    with pytest.raises(ValueError, match=r"1 of 2 images are unreadable: .*bad.jpg"):
        decode_images([tmp_path / "ok.jpg", tmp_path / "bad.jpg"], R)


def test_cache_hits_reorders_and_invalidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [tmp_path / "img" / f"{i}.jpg" for i in range(5)]
    for i, path in enumerate(paths):
        write_image(path, colour(i))
    cache = tmp_path / "c"
    first = cached_images(cache, ("toy", "train"), paths, R)
    assert len(list(cache.glob("toy-train-8px-*.npy"))) == 1 and not list(cache.glob("*.tmp"))

    calls: list[Path] = []
    real = images_module._decode_one

    def counting(path: Path, resolution: int) -> np.ndarray:
        calls.append(path)
        return real(path, resolution)

    monkeypatch.setattr(images_module, "_decode_one", counting)
    np.testing.assert_array_equal(cached_images(cache, ("toy", "train"), paths, R), first)
    np.testing.assert_array_equal(cached_images(cache, ("toy", "train"), paths[::-1], R), first[::-1])
    assert calls == []  # both from the cache: same files, any order

    write_image(paths[2], (0, 0, 0))
    os.utime(paths[2], ns=(1, 1))  # a new modification time, whatever the clock's resolution
    changed = cached_images(cache, ("toy", "train"), paths, R)
    assert len(calls) == 5 and len(list(cache.glob("*.npy"))) == 2
    assert (changed[2] < 3).all()
    np.testing.assert_array_equal(changed[[0, 1, 3, 4]], first[[0, 1, 3, 4]])


def test_augment_flips_and_crops_within_padding() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.uint8).reshape(2, 3, 5, 6)
    flipped = augment(x, torch.Generator().manual_seed(0), padding=0)
    for out, image in zip(flipped, x, strict=True):
        assert torch.equal(out, image) or torch.equal(out, image.flip(2))
    gen = torch.Generator().manual_seed(1)
    out = augment(x.repeat(8, 1, 1, 1), gen, flip=False, padding=2)
    assert out.shape == (16, 3, 5, 6) and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x.repeat(8, 1, 1, 1), (2, 2, 2, 2))
    windows = {(dy, dx) for dy in range(5) for dx in range(5)}
    for k in range(16):
        assert any(torch.equal(out[k], padded[k, :, dy : dy + 5, dx : dx + 6]) for dy, dx in windows)
    again = augment(x.repeat(8, 1, 1, 1), torch.Generator().manual_seed(1), flip=False, padding=2)
    assert torch.equal(out, again)


def test_to_float() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([-1.0, -0.6, 1.0]))
    assert to_float(x).dtype == torch.float32


def test_grouped_split_keeps_clusters_apart() -> None:
    clusters = np.repeat(np.arange(40), 3)
    strata = np.repeat(np.arange(40) % 4, 3)
    train, val, test = grouped_split_indices(clusters, strata, (0.7, 0.15, 0.15), seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(120))
    sets = [set(clusters[i]) for i in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert (len(train), len(val), len(test)) == (84, 12, 24)  # per stratum of 10 clusters: 7, 1, 2
    again = grouped_split_indices(clusters, strata, (0.7, 0.15, 0.15), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


# --- CelebA ----------------------------------------------------------------------------------

N_CELEBA = 24
CELEBA_ATTRS = ("Blond_Hair", "Male", "Smiling")


def celeba_labels(i: int) -> tuple[int, int, int]:
    """+-1 of (Blond_Hair, Male, Smiling) of image ``i`` (1-based)."""
    return (1 if i // 2 % 2 else -1, 1 if i % 2 else -1, 1 if i % 3 == 0 else -1)


def celeba_partition(i: int) -> int:
    return 0 if i <= 12 else 1 if i <= 18 else 2


def make_celeba(root: Path, *, csv: bool = False, extra: int = 0) -> Path:
    """CelebA's files for ``N_CELEBA`` images (+ ``extra`` listed but absent images)."""
    files = [f"{i:06d}.jpg" for i in range(1, N_CELEBA + extra + 1)]
    image_dir = root / "img_align_celeba" / ("img_align_celeba" if csv else "")
    for i, name in enumerate(files[:N_CELEBA], start=1):
        write_image(image_dir / name, colour(i))
    labels = [celeba_labels(i) for i in range(1, len(files) + 1)]
    if csv:
        frame = pd.DataFrame(labels, columns=CELEBA_ATTRS).assign(image_id=files)
        frame[["image_id", *CELEBA_ATTRS]].to_csv(root / "list_attr_celeba.csv", index=False)
        pd.DataFrame(
            {"image_id": files, "partition": [celeba_partition(i) for i in range(1, len(files) + 1)]}
        ).to_csv(root / "list_eval_partition.csv", index=False)
        return root
    rows = [f"{f} " + " ".join(f"{v:2d}" for v in lab) for f, lab in zip(files, labels, strict=True)]
    (root / "list_attr_celeba.txt").write_text(
        f"{len(files)}\n{' '.join(CELEBA_ATTRS)}\n" + "\n".join(rows) + "\n"
    )
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{f} {celeba_partition(int(f[:6]))}\n" for f in files)
    )
    (root / "identity_CelebA.txt").write_text("".join(f"{f} {100 + int(f[:6]) // 2}\n" for f in files))
    return root


@pytest.mark.parametrize("csv", [False, True])
def test_celeba_official_split_labels_and_images(tmp_path: Path, csv: bool) -> None:
    splits = load_celeba(make_celeba(tmp_path / "celeba", csv=csv), resolution=R)
    assert splits.class_names == ("not Blond_Hair", "Blond_Hair")
    assert splits.group_names == ("not Male", "Male")
    assert (splits.name, splits.target, splits.sensitive_attribute) == ("celeba", "Blond_Hair", "Male")
    for split, ids in zip(parts(splits), np.split(np.arange(1, 25), [12, 18]), strict=True):
        assert split.y.tolist() == [int(celeba_labels(i)[0] == 1) for i in ids]
        assert split.groups.tolist() == [int(celeba_labels(i)[1] == 1) for i in ids]
        assert_images_are(split.x, ids)


def test_celeba_identity_split_limit_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_celeba(tmp_path / "celeba")
    splits = load_celeba(root, target="Smiling", resolution=R, split_mode="identity", seed=1)
    identities = [{100 + i // 2 for i in read_back(s.x)} for s in parts(splits)]  # see make_celeba
    assert sum(len(s) for s in parts(splits)) == N_CELEBA
    assert sum(len(i) for i in identities) == len(set.union(*identities)) == 13  # each in one split
    assert splits.class_names == ("not Smiling", "Smiling")
    for split in parts(splits):
        assert split.y.tolist() == [int(celeba_labels(i)[2] == 1) for i in read_back(split.x)]

    monkeypatch.setattr(images_module, "_decode_one", lambda p, r: 1 / 0)  # the cache must serve
    official = load_celeba(root, resolution=R)  # the same 24 files: the cache of the identity split
    assert [len(s) for s in parts(official)] == [12, 6, 6]
    with pytest.raises(ZeroDivisionError):
        load_celeba(root, resolution=R, limit=2)  # another file list is another cache file
    with pytest.raises(ZeroDivisionError):
        load_celeba(root, resolution=16)  # so is another resolution


def test_celeba_absent_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_celeba(tmp_path / "celeba", extra=3)
    with pytest.raises(
        ValueError, match=r"3 of 27 images listed in .* are absent: '.*000025.jpg'.*missing='skip'"
    ):
        load_celeba(root, resolution=R)
    with caplog.at_level(logging.WARNING):
        splits = load_celeba(root, resolution=R, missing="skip")
    assert sum(len(s) for s in parts(splits)) == N_CELEBA and "skipping 3 of 27 images" in caplog.text


def test_celeba_errors(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    with pytest.raises(
        ValueError, match=r"unknown CelebA target 'Bald'; expected one of \['Blond_Hair', 'Male'"
    ):
        load_celeba(root, target="Bald")
    with pytest.raises(ValueError, match="unknown CelebA sensitive attribute 'male'"):
        load_celeba(root, sensitive_attribute="male")
    with pytest.raises(ValueError, match="split_mode must be"):
        load_celeba(root, split_mode="random")
    (root / "img_align_celeba" / "000005.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"1 of 24 images are unreadable: .*000005.jpg"):
        load_celeba(root, resolution=R)
    write_image(root / "img_align_celeba" / "000005.jpg", colour(5))
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {0 if i % 2 else 1}\n" for i in range(1, 25))
    )
    with pytest.raises(
        ValueError, match=r"the train split of 'celeba' has no samples of group\(s\) \['not Male'\]"
    ):
        load_celeba(root, resolution=R)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(
        ValueError, match=r"partition file .* \['list_eval_partition.txt', 'list_eval_partition.csv'\]"
    ):
        load_celeba(root)
    with pytest.raises(ValueError, match="attribute file"):
        load_celeba(tmp_path)


# --- LFW -------------------------------------------------------------------------------------

LFW_PEOPLE = [f"Person {chr(65 + p)} Doe" for p in range(20)]


def make_lfw(root: Path, *, image_dir: str = "lfw") -> tuple[Path, list[tuple[int, int, int, int]]]:
    """20 people with 1-2 images; rows (file index, Male, Wavy Hair, Big Nose) as 0/1."""
    lines = ["# 30 images, 3 attributes", "#\tperson\timagenum\tMale\tWavy Hair\tBig Nose"]
    truth: list[tuple[int, int, int, int]] = []
    for p, person in enumerate(LFW_PEOPLE):
        for n in range(1, 2 + p % 2):
            k = len(truth)
            male, wavy, nose = (
                (1.0 if p % 2 else -1.0),
                (0.5 + k if p // 2 % 2 else -2.0 - k),
                [0.0, 0.25][k % 2],
            )
            lines.append(f"{person}\t{n}\t{male:.5f}\t{wavy:.5f}\t{nose:.5f}")
            folder = person.replace(" ", "_")
            write_image(root / image_dir / folder / f"{folder}_{n:04d}.jpg", colour(k))
            truth.append((k, int(male > 0), int(wavy > 0), int(nose > 0)))
    (root / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
    return root, truth


@pytest.mark.parametrize("target", ["Wavy_Hair", "Wavy Hair", "wavy hair"])
def test_lfw_by_person(tmp_path: Path, target: str) -> None:
    root, truth = make_lfw(tmp_path / "lfw")
    splits = load_lfw(root, target=target, resolution=R)
    assert splits.class_names == (f"not {target}", target) and splits.group_names == ("not Male", "Male")
    seen = []
    for split in parts(splits):
        index = read_back(split.x)
        assert split.y.tolist() == [truth[k][2] for k in index]
        assert split.groups.tolist() == [truth[k][1] for k in index]
        seen.append({person_of(k) for k in index})
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(s) for s in parts(splits)) == len(truth) == 30


def person_of(k: int) -> int:
    """The person of image ``k`` in make_lfw's order (people alternate 1 and 2 images)."""
    return [p for p in range(20) for _ in range(1 + p % 2)][k]


def test_lfw_stratified_binarises_at_zero(tmp_path: Path) -> None:
    root, truth = make_lfw(tmp_path / "lfw", image_dir="lfw-deepfunneled")
    splits = load_lfw(root, target="Big_Nose", resolution=R, split_by_person=False, seed=2)
    y, g = np.array([t[3] for t in truth]), np.array([t[1] for t in truth])
    expected = stratified_split_indices(y * 2 + g, (0.7, 0.15, 0.15), 2)
    for split, idx in zip(parts(splits), expected, strict=True):
        assert_images_are(split.x, idx)
        assert split.y.tolist() == y[idx].tolist() and split.groups.tolist() == g[idx].tolist()
    assert y.sum() == 15  # the scores of exactly 0.0 are negative


def test_lfw_errors(tmp_path: Path) -> None:
    root, _ = make_lfw(tmp_path / "lfw")
    with pytest.raises(
        ValueError, match=r"unknown LFW target 'Curly'; expected one of \['Male', 'Wavy Hair', 'Big Nose'\]"
    ):
        load_lfw(root, target="Curly")
    with pytest.raises(ValueError, match="expected LFW's images in a folder"):
        load_lfw(root, image_dir="lfw-funneled-typo")
    (root / "lfw" / "Person_C_Doe" / "Person_C_Doe_0001.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 of 30 images listed in .* absent: .*Person_C_Doe_0001.jpg"):
        load_lfw(root)
    text = (root / "lfw_attributes.txt").read_text()
    (root / "lfw_attributes.txt").write_text(text.replace("person\timagenum", "name\tnumber"))
    with pytest.raises(ValueError, match="expected line 2 of"):
        load_lfw(root)
    with pytest.raises(ValueError, match=r"lfw_attributes.txt.*absent"):
        load_lfw(tmp_path)


# --- UTKFace, FairFace, generic CSV ----------------------------------------------------------


def make_utkface(root: Path) -> list[tuple[int, int, int]]:
    """4 images per (gender, race) cell, nested folders, plus one malformed name."""
    truth = []
    for k in range(40):
        age, gender, race = 10 + 7 * k % 60, k % 2, k // 2 % 5
        write_image(
            root / f"part{k % 3}" / f"{age}_{gender}_{race}_2017011617452{k:04d}.jpg.chip.jpg", colour(k)
        )
        truth.append((age, gender, race))
    write_image(root / "part0" / "39_1_20170116174525125.jpg.chip.jpg", (0, 0, 0))
    return truth


def test_utkface(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    truth = make_utkface(tmp_path / "UTKFace")
    with caplog.at_level(logging.WARNING):
        splits = load_utkface(
            tmp_path / "UTKFace", target="age>=40", sensitive_attribute="race", resolution=R
        )
    assert "skipping 1 of 41 UTKFace files" in caplog.text
    assert splits.class_names == ("age<40", "age>=40")
    assert splits.group_names == ("White", "Black", "Asian", "Indian", "Others")
    for split in parts(splits):
        index = read_back(split.x)
        assert split.y.tolist() == [int(truth[k][0] >= 40) for k in index]
        assert split.groups.tolist() == [truth[k][2] for k in index]
    gender = load_utkface(tmp_path / "UTKFace", target="race", sensitive_attribute="gender", resolution=R)
    assert gender.group_names == ("male", "female") and gender.n_classes == 5


def test_utkface_skipped_files_are_said_once_per_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_utkface(tmp_path / "a")
    make_utkface(tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        for root in ("a", "a", "b", "a", "b"):  # a sweep loads its data once per seed, export again
            load_utkface(tmp_path / root, resolution=R)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"skipping 1 of 41 UTKFace files under {tmp_path / root} whose names do not parse as "
        "age_gender_race_date, e.g. ['39_1_20170116174525125.jpg.chip.jpg']"
        for root in ("a", "b")
    ]


def test_utkface_skipped_files_are_said_again_only_when_the_data_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reloads of the same folder (served from the decoded-image cache) repeat nothing; a folder
    that changed (a new cache entry: file sizes and times are its key) is said again."""
    root = tmp_path / "c"
    make_utkface(root)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            load_utkface(root, resolution=R)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        write_image(root / "part1" / "unlabelled.jpg", (9, 9, 9))  # a second unparsable name
        for _ in range(2):
            load_utkface(root, resolution=R)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 2 and said[1].startswith(f"skipping 2 of 42 UTKFace files under {root} ")


def test_utkface_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "u" / "nolabels.jpg", (1, 1, 1))
    with pytest.raises(ValueError, match="none of the 1 image file names parse"):
        load_utkface(tmp_path / "u")
    with pytest.raises(ValueError, match="not a directory"):
        load_utkface(tmp_path / "absent")
    make_utkface(tmp_path / "v")
    with pytest.raises(ValueError, match="unknown UTKFace label 'ethnicity'"):
        load_utkface(tmp_path / "v", target="ethnicity")


def make_fairface(root: Path) -> pd.DataFrame:
    """16 train and 16 val rows: gender x race (White, Black) x 4, files ``train/1.jpg``..."""
    rows: list[dict[str, Any]] = []
    for part in ("train", "val"):
        for k in range(16):
            index = len(rows)
            file = f"{part}/{k + 1}.jpg"
            write_image(root / file, colour(index))
            race, gender = ("Black", "White")[k % 2], ("Female", "Male")[k // 2 % 2]
            age = ("3-9", "30-39")[k // 4 % 2]
            rows.append(
                {"file": file, "age": age, "gender": gender, "race": race, "service_test": k % 3 == 0}
            )
    frame = pd.DataFrame(rows)
    frame[:16].to_csv(root / "fairface_label_train.csv", index=False)
    frame[16:].to_csv(root / "fairface_label_val.csv", index=False)
    return frame


def test_fairface(tmp_path: Path) -> None:
    frame = make_fairface(tmp_path / "ff")
    splits = load_fairface(tmp_path / "ff", resolution=R, seed=4)
    assert splits.class_names == ("Male", "Female") and splits.group_names == ("White", "Black")
    assert_images_are(splits.train.x, np.arange(16))
    evaluated = read_back(splits.val.x) + read_back(splits.test.x)
    assert sorted(evaluated) == list(range(16, 32)) and (len(splits.val), len(splits.test)) == (8, 8)
    for split, index in ((splits.val, evaluated[:8]), (splits.test, evaluated[8:])):
        assert split.y.tolist() == [int(frame.gender[i] == "Female") for i in index]
        assert split.groups.tolist() == [int(frame.race[i] == "Black") for i in index]
    age = load_fairface(tmp_path / "ff", target="age>=30", sensitive_attribute="gender", resolution=R)
    assert age.class_names == ("age<30", "age>=30") and age.train.y.tolist() == [
        k // 4 % 2 for k in range(16)
    ]
    with pytest.raises(ValueError, match=r"unknown label column 'skin' .*'race'"):
        load_fairface(tmp_path / "ff", target="skin")
    with pytest.raises(ValueError, match=r"fairface_label_train.csv"):
        load_fairface(tmp_path)


def test_image_csv(tmp_path: Path) -> None:
    for k in range(12):
        write_image(tmp_path / "img" / f"{k}.jpg", colour(k))
    frame = pd.DataFrame(
        {
            "path": [f"{k}.jpg" for k in range(12)],
            "label": [("cat", "dog", "owl")[k % 3] for k in range(12)],
            "sex": [("f", "m")[k % 2] for k in range(12)],
            "fold": ["train"] * 6 + ["val", "val", "val", "test", "test", "test"],
        }
    )
    frame.loc[12] = ["gone.jpg", "cat", "f", "train"]
    frame.to_csv(tmp_path / "pets.csv", index=False)
    kwargs: dict[str, Any] = {
        "path_column": "path",
        "target": "label",
        "sensitive_attribute": "sex",
        "resolution": R,
    }
    with pytest.raises(ValueError, match=r"1 of 13 images listed in .*pets.csv.* absent: .*gone.jpg"):
        load_image_csv(tmp_path / "pets.csv", tmp_path / "img", **kwargs, split_column="fold")
    splits = load_image_csv(
        tmp_path / "pets.csv", tmp_path / "img", **kwargs, split_column="fold", missing="skip"
    )
    assert (
        splits.name == "pets"
        and splits.class_names == ("cat", "dog", "owl")
        and splits.group_names == ("f", "m")
    )
    assert_images_are(splits.train.x, np.arange(6))
    assert splits.train.y.tolist() == [0, 1, 2, 0, 1, 2] and splits.test.groups.tolist() == [1, 0, 1]
    binary = load_image_csv(
        tmp_path / "pets.csv",
        tmp_path / "img",
        **kwargs,
        positive="owl",
        missing="skip",
        limit=2,
        split_column="fold",
    )
    assert binary.class_names == ("not owl", "owl") and [len(s) for s in parts(binary)] == [2, 2, 2]
    assert binary.train.y.tolist() == [0, 0] and binary.test.y.tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"unknown target column 'kind'.*'label'"):
        load_image_csv(tmp_path / "pets.csv", tmp_path / "img", **{**kwargs, "target": "kind"})


# --- registry, real data ---------------------------------------------------------------------


def test_registry_dispatches(tmp_path: Path) -> None:
    assert set(IMAGE_DATASETS) == {"celeba", "lfw", "utkface", "fairface", "image_csv"}
    splits = load_dataset("celeba", root=make_celeba(tmp_path / "celeba"), resolution=R)
    assert splits.name == "celeba" and len(splits.train) == 12
    with pytest.raises(
        ValueError, match=r"unknown dataset 'mnist'; expected one of \[.*'csv', 'celeba', 'lfw'"
    ):
        load_dataset("mnist")
    with pytest.raises(TypeError, match=r"dataset 'celeba'.*resolutoin.*takes \['root', 'target'"):
        load_dataset("celeba", root=tmp_path, resolutoin=32)


@pytest.mark.skipif(not SHARED_CELEBA.is_dir(), reason="the shared CelebA subset is absent")
def test_real_celeba_subset(tmp_path: Path) -> None:
    splits = load_celeba(SHARED_CELEBA, resolution=32, limit=200, cache_dir=tmp_path)
    assert [len(s) for s in parts(splits)] == [200, 200, 200]
    assert splits.train.x.shape == (200, 3, 32, 32) and splits.train.x.dtype == torch.uint8
    male_rate = torch.cat([s.groups for s in parts(splits)]).float().mean().item()
    assert 0.2 < male_rate < 0.6  # the subset's rate is 0.373
    assert splits.train.x.float().std() > 20  # real pictures, not a constant
