"""UTKFace (Zhang et al., CVPR 2017): labels in the file names ``age_gender_race_date.jpg``.

The images may lie anywhere under ``root`` (``UTKFace/``, ``part1/`` ..., the aligned and cropped
``*.jpg.chip.jpg`` files). Each name starts ``<age>_<gender>_<race>_``: age an integer in years;
gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. A few files of the
public release lack a field; such files are skipped, and their count is logged as a warning.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from fairprune.data._once import warn_once
from fairprune.data.base import Splits, stratified_split_indices
from fairprune.data.groups import Attribute, SensitiveAttribute, attribute_names
from fairprune.data.labelled_images import ImageOptions, LabelledImages, Limit, setting_hint

__all__ = ["load_utkface"]

logger = logging.getLogger(__name__)

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_")
_SUFFIXES = (".jpg", ".jpeg", ".png")


def _labels(
    name: str, ages: np.ndarray, genders: np.ndarray, races: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ids and names of ``"gender"``, ``"race"`` or ``"age>=N"`` (class 1: age at least N)."""
    if name == "gender":
        return genders, GENDERS
    if name == "race":
        return races, RACES
    match = re.fullmatch(r"age>=(\d+)", name.replace(" ", ""))
    if match:
        threshold = int(match.group(1))
        return (ages >= threshold).astype(np.int64), (f"age<{threshold}", f"age>={threshold}")
    raise ValueError(
        f"unknown UTKFace label {name!r}; expected 'gender', 'race' or 'age>=N' (e.g. 'age>=40')"
    )


def _sensitive(name: str, ages: np.ndarray, genders: np.ndarray, races: np.ndarray) -> Attribute:
    """A sensitive attribute; ``"age>=N"`` takes the values 0 / 1 in intersectional group names."""
    ids, names = _labels(name, ages, genders, races)
    return Attribute(name, ids, names, None if name in ("gender", "race") else ("0", "1"))


def _base(name: str) -> str:
    """The label a name reads: ``"age>=40"`` and ``"age >= 30"`` both read ``"age"``."""
    return name.replace(" ", "").split(">=")[0]


def _parse(files: list[Path], root: Path) -> tuple[list[Path], np.ndarray]:
    """The files whose names parse, and their ``(n, 3)`` (age, gender, race) labels; the others
    are named in a warning, once per root and process."""
    kept, labels, malformed = [], [], []
    for file in files:
        match = _NAME.match(file.name)
        if match is None:
            malformed.append(file.name)
        else:
            kept.append(file)
            labels.append([int(v) for v in match.groups()])
    if not kept:
        raise ValueError(
            f"none of the {len(files)} image file names parse as '<age>_<gender 0/1>_<race 0-4>_<date>.jpg'"
            f"; e.g. {malformed[:5]}"
        )
    if malformed:
        warn_once(
            logger,
            "skipping %d of %d UTKFace files under %s whose names do not parse as age_gender_race_date, "
            "e.g. %s",
            len(malformed),
            len(files),
            root,
            malformed[:5],
        )
    return kept, np.array(labels, dtype=np.int64).reshape(-1, 3)


def _image_files(root: Path) -> list[Path]:
    """The image files anywhere under ``root``, sorted; none, or no folder, raises."""
    if not root.is_dir():
        raise ValueError(
            f"expected UTKFace's image folder at {str(root)!r}; it is not a directory (set it with "
            f"{setting_hint('root', 'data.root')})"
        )
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in _SUFFIXES and f.is_file())
    if not files:
        raise ValueError(
            f"expected UTKFace images (*.jpg, *.jpeg, *.png, in any subfolder) under {str(root)!r}; "
            f"found none (set the folder with {setting_hint('root', 'data.root')})"
        )
    return files


def load_utkface(
    root: str | os.PathLike[str],
    *,
    target: str = "gender",
    sensitive_attribute: SensitiveAttribute = "race",
    resolution: int = 64,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: Limit = None,
    min_group_size: int = 1,
    fractions: tuple[float, float, float] | list[float] = (0.7, 0.15, 0.15),
) -> Splits:
    """Load UTKFace with a target and a sensitive attribute read from the file names.

    Names and ids: ``"gender"`` 0 ``male``, 1 ``female``; ``"race"`` 0 ``White``, 1 ``Black``,
    2 ``Asian``, 3 ``Indian``, 4 ``Others``; ``"age>=N"`` 0 ``age<N``, 1 ``age>=N``. The split is
    seeded and stratified by (target, group) cell, by ``fractions`` (default 0.7/0.15/0.15;
    UTKFace has no identities).
    A list of sensitive attributes makes the intersectional groups that occur, named by those
    values, ``age>=N`` by 0/1: ``["gender", "race"]`` gives ``"gender=male,race=White"``, ...,
    ``"gender=female,race=Others"`` (ids in that order; see ``fairprune.data.groups``).

    Args:
        root: Folder searched recursively for ``.jpg``/``.jpeg``/``.png`` images.
        target: ``"gender"``, ``"race"`` or ``"age>=N"``.
        sensitive_attribute: ``"race"``, ``"gender"`` or ``"age>=N"``, or a list of them.
        resolution: Side ``R`` of the square images.
        seed: Seed of the split and of the ``limit`` subsets.
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name
            (``{"train": 10000}``): a seeded random subset stratified by (target, group) cell.
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).
        fractions: Train, validation and test shares (a larger validation split leaves room
            for a certification split: ``fairness.certify``).

    Returns:
        Splits whose ``x`` are uint8 ``(N, 3, R, R)``, decoded once (cached) and kept uint8 in
        memory; convert batches with ``fairprune.data.images.to_float``.
    """
    options = ImageOptions(
        resolution=resolution, seed=seed, cache_dir=cache_dir, limit=limit, min_group_size=min_group_size
    )
    root = Path(root)
    kept, labels = _parse(_image_files(root), root)
    ages, genders, races = labels[:, 0], labels[:, 1], labels[:, 2]
    y, class_names = _labels(target, ages, genders, races)
    names = attribute_names(sensitive_attribute, key=_base)
    sensitive = [_sensitive(name, ages, genders, races) for name in names]
    if isinstance(sensitive_attribute, str) and _base(target) == _base(sensitive_attribute):
        raise ValueError(
            f"expected different target and sensitive attribute; received {target!r} and "
            f"{sensitive_attribute!r}"
        )
    attribute_names(names, target=target, key=_base)
    images = LabelledImages.from_attributes(
        "utkface", target=target, y=y, class_names=class_names, sensitive=sensitive, paths=kept, root=root
    )
    indices = stratified_split_indices(images.strata, tuple(fractions), seed)  # type: ignore[arg-type]
    return images.to_splits(indices, options)
