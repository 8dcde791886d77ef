"""LFW (Huang et al., 2007) with the attribute file of Kumar et al. (ICCV 2009).

Layout::

    root/lfw_attributes.txt                      "# N images, K attributes" comment,
                                                 "#<TAB>person<TAB>imagenum<TAB><name>..." header,
                                                 then TAB-separated rows "AJ Cook<TAB>1<TAB>-1.0 ..."
    root/lfw/AJ_Cook/AJ_Cook_0001.jpg            (or lfw-deepfunneled/, lfw_funneled/)

The attributes are real-valued scores (classifier outputs); a score above 0 is the attribute
present. Attribute names may be given in the file's spelling (``"Wavy Hair"``) or with
underscores (``"Wavy_Hair"``): names are matched ignoring case, spaces, underscores and punctuation.
A file that went through an editor is read as intended when that is unambiguous (CRLF, stray
whitespace, blank lines, TABs turned into spaces in the rows, a missing first comment line).
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
from fairprune.data.groups import Attribute, SensitiveAttribute, attribute_names, binary_attribute
from fairprune.data.labelled_images import (
    ImageOptions,
    Indices,
    LabelledImages,
    Limit,
    grouped_split_indices,
    setting_hint,
)

__all__ = ["load_lfw"]

logger = logging.getLogger(__name__)

_IMAGE_DIRS = ("lfw", "lfw-deepfunneled", "lfw_funneled")
_FRACTIONS = (0.7, 0.15, 0.15)
_SETTING = setting_hint("root", "data.root") + " and " + setting_hint("image_dir", "data.params.image_dir")
"""How a user points the loader at the images, for the messages."""


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _header(lines: list[str], path: Path) -> tuple[int, list[str]]:
    """The position of the header line among the first two lines, and its fields.

    The header is ``#<TAB>person<TAB>imagenum<TAB><names>``, after a ``# N images, K attributes``
    comment; a missing comment line or a header without its ``#`` is repaired (logged).
    """
    for position, line in enumerate(lines[:2]):
        fields = [f.strip() for f in line.lstrip("#").strip().split("\t")]
        if fields[:2] == ["person", "imagenum"] and len(fields) > 2:
            if position == 0 or not line.startswith("#"):
                warn_once(
                    logger,
                    "%s: the header is line %d%s; read it as the header",
                    path,
                    position + 1,
                    "" if line.startswith("#") else " without its '#'",
                )
            return position, fields
    raise ValueError(
        f"expected line 2 of {str(path)!r} (after a '# N images, K attributes' comment) to be "
        f"'#<TAB>person<TAB>imagenum<TAB><attribute names>'; received {[line[:60] for line in lines[:2]]}"
    )


def _row(line: str, width: int) -> list[str] | None:
    """The ``width`` fields of a data row, or ``None`` when it cannot be read.

    Fields are TAB-separated (trailing empty fields dropped); a row without TABs (they became spaces) is
    read from the right: the last ``width - 2`` fields are the scores, the one before them the
    image number, the rest the person's name.
    """
    fields = [f.strip() for f in line.split("\t")]
    while len(fields) > width and fields[-1] == "":
        fields.pop()
    if len(fields) == width:
        return fields
    tokens = line.split()
    if "\t" in line.strip() or len(tokens) < width:
        return None
    return [" ".join(tokens[: len(tokens) - width + 1]), *tokens[len(tokens) - width + 1 :]]


def _read_attributes(path: Path) -> pd.DataFrame:
    """The attribute file as a frame with columns ``person``, ``imagenum`` and the attributes.

    CRLF line ends, stray whitespace around fields and at line ends, blank lines, rows whose TABs
    became spaces and a missing first (comment) line are read as intended; other damage raises.
    """
    if not path.is_file():
        raise ValueError(f"expected LFW's attribute file at {str(path)!r} (lfw_attributes.txt); it is absent")
    lines = [line for line in path.read_text().splitlines() if line.strip()]  # CRLF, blank lines
    position, header = _header(lines, path)
    rows, bad = [], []
    for number, line in enumerate(lines[position + 1 :], start=position + 2):
        row = _row(line, len(header))
        if row is None:
            bad.append(number)
        else:
            rows.append(row)
    if bad:
        raise ValueError(
            f"{len(bad)} rows of LFW's attribute file {str(path)!r} do not have the {len(header)} "
            f"fields of its header, e.g. (non-blank) lines {bad[:5]}"
        )
    frame = pd.DataFrame(rows, columns=header)
    try:
        scores = frame[header[2:]].astype(np.float64)
        imagenum = frame["imagenum"].astype(np.float64)
    except ValueError as error:
        raise ValueError(f"could not parse LFW's attribute file {str(path)!r}: {error}") from error
    if not (imagenum == imagenum.round()).all():
        raise ValueError(
            f"expected whole image numbers in {str(path)!r}; received {imagenum.head(3).tolist()}"
        )
    return pd.concat([frame["person"], imagenum.astype(np.int64), scores], axis=1)


def _attribute(frame: pd.DataFrame, name: str, role: str) -> tuple[str, np.ndarray]:
    """The file's column for ``name``, binarised: 1 where the score is above 0."""
    columns = {_key(c): c for c in frame.columns[2:]}
    if _key(name) not in columns:
        raise ValueError(f"unknown LFW {role} {name!r}; expected one of {list(frame.columns[2:])}")
    return columns[_key(name)], (frame[columns[_key(name)]].to_numpy() > 0).astype(np.int64)


def _labels(
    frame: pd.DataFrame, target: str, sensitive_attribute: SensitiveAttribute
) -> tuple[np.ndarray, list[Attribute]]:
    """The ``(N,)`` class ids of ``target`` and the sensitive attributes, names checked as LFW's."""
    names = attribute_names(sensitive_attribute, key=_key)
    target_column, y = _attribute(frame, target, "target")
    decoded = [_attribute(frame, n, "sensitive attribute") for n in names]
    if isinstance(sensitive_attribute, str) and target_column == decoded[0][0]:
        raise ValueError(f"expected different target and sensitive attribute; both are {target_column!r}")
    attribute_names(names, target=target, key=_key)
    return y, [binary_attribute(n, ids) for n, (_, ids) in zip(names, decoded, strict=True)]


def _image_dir(root: Path, image_dir: str | None) -> Path:
    names = _IMAGE_DIRS if image_dir is None else (image_dir,)
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise ValueError(
        f"expected LFW's images in a folder {list(names)} under {str(root)!r}; none exists (set the "
        f"folder with {setting_hint('root', 'data.root')} and its name with "
        f"{setting_hint('image_dir', 'data.params.image_dir')})"
    )


def _image_paths(images_root: Path, people: np.ndarray, numbers: pd.Series) -> list[Path]:
    """Each row's image file, ``<person>/<person>_<number as 4 digits>.jpg`` under ``images_root``."""
    return [
        images_root / person / f"{person}_{number:04d}.jpg"
        for person, number in zip(people, numbers, strict=True)
    ]


def _split_indices(people: np.ndarray, strata: np.ndarray, split_by_person: bool, seed: int) -> Indices:
    """Seeded train, val and test indices, 0.7/0.15/0.15, each person in one split or not.

    With ``split_by_person`` each person's images lie in one split, near-stratified by ``strata``
    (see ``grouped_split_indices``); otherwise the split is stratified by ``strata`` exactly.

    Args:
        people: ``(N,)`` each image's person.
        strata: ``(N,)`` each image's (target, group) cell.
        split_by_person: Keep each person within one split.
        seed: Seed of the split.
    """
    if split_by_person:
        return grouped_split_indices(people, strata, _FRACTIONS, seed)
    return stratified_split_indices(strata, _FRACTIONS, seed)


def load_lfw(
    root: str | os.PathLike[str],
    *,
    target: str = "Wavy_Hair",
    sensitive_attribute: SensitiveAttribute = "Male",
    resolution: int = 64,
    seed: int = 0,
    split_by_person: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: Limit = None,
    missing: str = "error",
    image_dir: str | None = None,
    min_group_size: int = 1,
) -> Splits:
    """Load LFW with a binary target attribute and a binary sensitive attribute (or several).

    Class 1 is a target score above 0: class names ``("not <target>", "<target>")``; group 1 a
    sensitive score above 0: group names ``("not <attribute>", "<attribute>")``, e.g.
    ``("not Male", "Male")``. Names are kept as passed (``"Wavy_Hair"``). A list of attributes
    makes the intersectional groups that occur, named with 0 (score <= 0) / 1 (above 0), e.g.
    ``["Male", "Big_Nose"]``: ``"Male=0,Big_Nose=0"``, ..., ``"Male=1,Big_Nose=1"`` (ids in that
    order; see ``fairprune.data.groups``).

    The splits are seeded, 0.7/0.15/0.15. With ``split_by_person`` (the default) every person's
    images lie in one split, so that a test face is never of someone seen in training (LFW has
    530 images of one person); the split is then near-stratified by (target, group) cell (see
    ``grouped_split_indices``). Otherwise the images are split stratified by cell exactly.

    Args:
        root: Folder holding ``lfw_attributes.txt`` and the image folder.
        target: Attribute to predict, e.g. ``"Wavy_Hair"``, ``"Big_Nose"``.
        sensitive_attribute: Attribute whose values are the groups, e.g. ``"Male"``, or a list of
            attributes (``["Male", "Big_Nose"]``) whose combinations are (at most 16).
        resolution: Side ``R`` of the square images.
        seed: Seed of the split and of the ``limit`` subsets.
        split_by_person: Keep each person within one split.
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name
            (``{"train": 10000}``): a seeded random subset stratified by (target, group) cell.
        missing: Images listed in the attribute file but absent: ``"error"`` or ``"skip"`` (logged).
        image_dir: Name of the image folder under ``root`` (default: the first of ``lfw``,
            ``lfw-deepfunneled``, ``lfw_funneled`` that exists).
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).

    Returns:
        Splits whose ``x`` are uint8 ``(N, 3, R, R)``, decoded once (cached) and kept uint8 in
        memory; convert batches with ``fairprune.data.images.to_float``.
    """
    options = ImageOptions(
        resolution=resolution,
        seed=seed,
        cache_dir=cache_dir,
        limit=limit,
        missing=missing,
        min_group_size=min_group_size,
    )
    root = Path(root)
    attr_path = root / "lfw_attributes.txt"
    frame = _read_attributes(attr_path)
    y, sensitive = _labels(frame, target, sensitive_attribute)
    images_root = _image_dir(root, image_dir)
    people = frame["person"].str.replace(" ", "_").to_numpy()
    paths, keep = options.present(
        _image_paths(images_root, people, frame["imagenum"]),
        listed_in=str(attr_path),
        root=images_root,
        setting=_SETTING,
    )
    images = LabelledImages.from_attributes(
        "lfw",
        target=target,
        y=y[keep],
        class_names=(f"not {target}", target),
        sensitive=[a.restrict(keep) for a in sensitive],
        paths=paths,
        root=root,
    )
    return images.to_splits(_split_indices(people[keep], images.strata, split_by_person, seed), options)
