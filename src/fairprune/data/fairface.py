"""FairFace (Kärkkäinen and Joo, WACV 2021) from its label CSVs and image folders.

Layout::

    root/fairface_label_train.csv   file,age,gender,race,service_test   ("train/1.jpg",...)
    root/fairface_label_val.csv     same columns                        ("val/1.jpg",...)
    root/train/1.jpg, root/val/1.jpg ...   (the ``file`` paths, relative to ``image_root``)

FairFace ships a train and a validation set only. This loader keeps the official train set as
train and cuts the official validation set into val and test (``test_fraction`` of it, seeded and
stratified by (target, group) cell), so that both evaluation splits are race-balanced held-out
data as FairFace intends, and no training image is ever evaluated on.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fairprune.data._once import warn_once
from fairprune.data.base import Splits, stratified_split_indices
from fairprune.data.groups import Attribute, SensitiveAttribute, distinct_names
from fairprune.data.image_csv import categorical_codes, check_columns, read_label_csv
from fairprune.data.labelled_images import ImageOptions, Indices, LabelledImages, Limit, setting_hint

__all__ = ["load_fairface", "repair_age_bins"]

logger = logging.getLogger(__name__)

ORDERS: dict[str, tuple[str, ...]] = {
    "gender": ("Male", "Female"),
    "race": (
        "White",
        "Black",
        "Latino_Hispanic",
        "East Asian",
        "Southeast Asian",
        "Indian",
        "Middle Eastern",
    ),
    "age": ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"),
}
"""Id order of FairFace's labels; values outside these follow, sorted."""
_AGE_EDGES = {"0-2": 0, "3-9": 3, "10-19": 10, "20-29": 20, "30-39": 30, "40-49": 40, "50-59": 50}
_AGE_EDGES |= {"60-69": 60, "more than 70": 70}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_MONTH = re.compile(r"(\d{1,2})-([a-z]{3})[a-z]*")  # "03-Sep": the range 3-9 as day-month
_MONTH_YEAR = re.compile(r"([a-z]{3})[a-z]*-(\d{2})")  # "Oct-19": the range 10-19 as month-year


def _undamaged(value: str) -> str | None:
    """The age bin a spreadsheet's date rendering of it stands for (``"03-Sep"`` -> ``"3-9"``),
    or ``None`` when ``value`` is no such rendering or reads as no bin, or as two."""
    text = value.strip().lower()
    if (match := _DAY_MONTH.fullmatch(text)) is not None:
        number, month = int(match.group(1)), match.group(2)
    elif (match := _MONTH_YEAR.fullmatch(text)) is not None:
        month, number = match.group(1), int(match.group(2))
    else:
        return None
    if month not in _MONTHS:
        return None
    m = _MONTHS.index(month) + 1
    readings = {f"{number}-{m}", f"{m}-{number}"} & set(_AGE_EDGES)  # either order of the range
    return readings.pop() if len(readings) == 1 else None


def repair_age_bins(ages: pd.Series, source: str) -> pd.Series:
    """FairFace age bins with spreadsheet damage repaired (logged); other unknown bins raise.

    A label CSV opened and saved in a spreadsheet commonly has the ranges that read as dates
    turned into them: ``3-9`` into ``03-Sep`` (day-month) and ``10-19`` into ``Oct-19``
    (month-year). Such a rendering is mapped back to the one bin whose two numbers it holds (in
    either order), with a warning naming each repair and its row count; stray whitespace is
    dropped. Any other value outside FairFace's bins raises, listing the valid ones.

    Args:
        ages: The ``age`` column.
        source: Where the column was read, for the messages.

    Returns:
        The column as strings, every value one of ``ORDERS["age"]``.
    """
    strings = ages.astype(str).str.strip()
    unknown = sorted(set(strings) - set(_AGE_EDGES))
    repairs = {value: _undamaged(value) for value in unknown}
    left = [value for value, bin_ in repairs.items() if bin_ is None]
    if left:
        raise ValueError(
            f"unknown FairFace age bins {left} in {source}; expected one of {list(_AGE_EDGES)} "
            "(or a spreadsheet's date rendering of one, such as '03-Sep' for '3-9')"
        )
    if repairs:
        counts = strings.value_counts()
        warn_once(
            logger,
            "repaired spreadsheet-damaged FairFace age bins in %s (date renderings of ranges): %s",
            source,
            ", ".join(f"{v!r} -> {b!r} ({counts[v]} rows)" for v, b in repairs.items()),
        )
    return strings.replace({v: b for v, b in repairs.items() if b is not None})


def _labels(frame: pd.DataFrame, name: str, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ids and names of a column (``"gender"``, ``"race"``, ``"age"``, ...) or of ``"age>=N"``."""
    match = re.fullmatch(r"age>=(\d+)", name.replace(" ", ""))
    if match is None:
        check_columns(frame, {"label": name}, source)
        return categorical_codes(frame[name], order=ORDERS.get(name, ()))
    threshold = int(match.group(1))
    if threshold not in _AGE_EDGES.values():
        raise ValueError(
            f"'age>=N' needs N at a FairFace age bin edge {sorted(_AGE_EDGES.values())}; received {name!r}"
        )
    ids = (frame["age"].map(_AGE_EDGES) >= threshold).to_numpy(np.int64)
    return ids, (f"age<{threshold}", f"age>={threshold}")


def _sensitive(frame: pd.DataFrame, name: str, source: str) -> Attribute:
    """A sensitive attribute; ``"age>=N"`` takes the values 0 / 1 in intersectional group names."""
    ids, names = _labels(frame, name, source)
    binary = re.fullmatch(r"age>=(\d+)", name.replace(" ", "")) is not None
    return Attribute(name, ids, names, ("0", "1") if binary else None)


def _read_labels(root: Path) -> pd.DataFrame:
    """The train and val label CSVs as one frame; ``_official`` names each row's official split."""
    tables = []
    for part in ("train", "val"):
        path = root / f"fairface_label_{part}.csv"
        table = read_label_csv(path, f"FairFace's {part} labels (file,age,gender,race,service_test)")
        check_columns(table, {"path": "file"}, repr(str(path)))
        tables.append(table.assign(_official=part))
    return pd.concat(tables, ignore_index=True)


def _repair_ages(frame: pd.DataFrame, labels: tuple[str, ...], source: str) -> pd.DataFrame:
    """``frame`` with its age bins repaired (:func:`repair_age_bins`) when a label reads them."""
    if not any(re.fullmatch(r"age(>=\d+)?", n.replace(" ", "")) for n in labels):
        return frame
    check_columns(frame, {"label": "age"}, "FairFace's label CSVs")
    return frame.assign(age=repair_age_bins(frame["age"], source))


def _split_indices(official: np.ndarray, strata: np.ndarray, test_fraction: float, seed: int) -> Indices:
    """Train: the official train rows; val and test: the official val rows, cut seeded and stratified.

    Args:
        official: ``(N,)`` official split of each row, ``"train"`` or ``"val"``.
        strata: ``(N,)`` (target, group) cell of each row.
        test_fraction: Share of the official val rows that becomes the test split.
        seed: Seed of the cut.
    """
    official_val = np.flatnonzero(official == "val")
    half = (1 - test_fraction) / 2
    first, second, test = stratified_split_indices(strata[official_val], (half, half, test_fraction), seed)
    val = official_val[np.sort(np.concatenate([first, second]))]  # the first two parts make val
    return np.flatnonzero(official == "train"), val, official_val[test]


def load_fairface(
    root: str | os.PathLike[str],
    *,
    target: str = "gender",
    sensitive_attribute: SensitiveAttribute = "race",
    resolution: int = 64,
    seed: int = 0,
    test_fraction: float = 0.5,
    image_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: Limit = None,
    missing: str = "error",
    min_group_size: int = 1,
) -> Splits:
    """Load FairFace with a target and a sensitive attribute (or several) from its label columns.

    Ids follow FairFace's orders (``ORDERS``): gender ``Male``, ``Female``; race ``White``,
    ``Black``, ``Latino_Hispanic``, ``East Asian``, ``Southeast Asian``, ``Indian``,
    ``Middle Eastern``; age bins ``0-2`` ... ``more than 70``; labels absent from the data are
    left out. ``"age>=N"`` (N a bin edge) is binary: ``age<N``, ``age>=N``. Age bins that a
    spreadsheet turned into dates (``03-Sep``, ``Oct-19``) are repaired with a warning, and other
    unknown bins are an error (see :func:`repair_age_bins`). A list of sensitive
    attributes makes the intersectional groups that occur, named by those values, ``age>=N`` by
    0/1: ``["gender", "race"]`` gives ``"gender=Male,race=White"``, ``"gender=Male,race=Black"``,
    ... (ids in that order; see ``fairprune.data.groups``).

    Args:
        root: Folder holding ``fairface_label_train.csv`` and ``fairface_label_val.csv``.
        target: ``"gender"``, ``"race"``, ``"age"``, ``"age>=N"`` or another column.
        sensitive_attribute: As ``target``; default ``"race"`` (7 groups); or a list of them.
        resolution: Side ``R`` of the square images.
        seed: Seed of the cut of the official validation set and of the ``limit`` subsets.
        test_fraction: Share of the official validation set that becomes the test split.
        image_root: Folder the ``file`` paths are relative to (default ``root``).
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name
            (``{"train": 10000}``): a seeded random subset stratified by (target, group) cell.
        missing: Images named in the CSVs but absent: ``"error"`` or ``"skip"`` (logged).
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).

    Returns:
        Splits whose ``x`` are uint8 ``(N, 3, R, R)``, decoded once (cached) and kept uint8 in
        memory; convert batches with ``fairprune.data.images.to_float``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"expected 0 < test_fraction < 1; received {test_fraction}")
    names = distinct_names(target, sensitive_attribute)
    options = ImageOptions(
        resolution=resolution,
        seed=seed,
        cache_dir=cache_dir,
        limit=limit,
        missing=missing,
        min_group_size=min_group_size,
    )
    root = Path(root)
    frame = _read_labels(root)
    images_root = root if image_root is None else Path(image_root)
    paths, keep = options.present(
        [images_root / str(p) for p in frame["file"]],
        listed_in=f"FairFace's label CSVs in {str(root)!r}",
        root=images_root,
        setting=setting_hint("image_root", "data.params.image_root"),
    )
    frame = frame[keep].reset_index(drop=True)
    frame = _repair_ages(frame, (target, *names), f"FairFace's label CSVs in {str(root)!r}")
    y, class_names = _labels(frame, target, "FairFace's label CSVs")
    images = LabelledImages.from_attributes(
        "fairface",
        target=target,
        y=y,
        class_names=class_names,
        sensitive=[_sensitive(frame, name, "FairFace's label CSVs") for name in names],
        paths=paths,
        root=images_root,
    )
    official = frame["_official"].to_numpy()
    return images.to_splits(_split_indices(official, images.strata, test_fraction, seed), options)
