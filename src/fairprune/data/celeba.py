"""CelebA (Liu et al., ICCV 2015) from its files on disk, in torchvision's layout or the CSV variant.

torchvision's layout (the official text files)::

    root/img_align_celeba/000001.jpg ...
    root/list_attr_celeba.txt        image count; the 40 attribute names; "000001.jpg -1  1 ..." rows
    root/list_eval_partition.txt     "000001.jpg 0" rows (0 train, 1 val, 2 test)
    root/identity_CelebA.txt         "000001.jpg 2880" rows (only for split_mode="identity")

The CSV variant (as on Kaggle) has ``list_attr_celeba.csv`` (an ``image_id`` column and the 40
attributes as +-1), ``list_eval_partition.csv`` (``image_id,partition``), and may nest the images in
``img_align_celeba/img_align_celeba/``; the text files win when both are present.

Files that went through an editor or a spreadsheet are read as intended when that is unambiguous:
stray whitespace (runs of spaces or tabs, at line ends too, around CSV fields), CRLF line ends, and
a missing image-count line (logged); a missing names line or header is an error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fairprune.data._once import warn_once
from fairprune.data.base import Splits
from fairprune.data.groups import SensitiveAttribute, binary_attribute, distinct_names
from fairprune.data.labelled_images import (
    ImageOptions,
    Indices,
    LabelledImages,
    Limit,
    grouped_split_indices,
    setting_hint,
)

__all__ = ["load_celeba"]

logger = logging.getLogger(__name__)

_FRACTIONS = (0.7, 0.15, 0.15)


def _find(root: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` that exists under ``root``."""
    for name in names:
        if (root / name).is_file():
            return root / name
    raise ValueError(f"expected CelebA's {what} at {root} as one of {list(names)}; none exists")


def _image_dir(root: Path) -> Path:
    for directory in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba"):
        if directory.is_dir():
            return directory
    raise ValueError(
        f"expected CelebA's images in the folder {str(root / 'img_align_celeba')!r}; it is absent "
        f"(the folder that holds img_align_celeba/ is set by {setting_hint('root', 'data.root')})"
    )


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _attribute_layout(path: Path) -> tuple[int, list[str]]:
    """Where ``list_attr_celeba.txt``'s rows start, and the attribute names.

    The file is an image count, a line of names, then rows of a file name and one value per
    name; whitespace of any kind and length separates fields, lines may end in CRLF. A missing
    count line is repaired (logged); a missing or malformed names line is an error.
    """
    with path.open() as file:  # universal newlines: CRLF reads as LF
        lines = [file.readline().split() for _ in range(3)]
    skip = 2
    if len(lines[0]) != 1 or not lines[0][0].isdigit():
        warn_once(logger, "%s has no image-count line; reading its first line as the attribute names", path)
        lines, skip = lines[:2], 1
    names, first_row = lines[-2], lines[-1]
    if not names or any(_is_number(t) or "." in t for t in names):
        raise ValueError(
            f"expected line {skip} of CelebA's attribute file {str(path)!r} to hold the attribute names "
            f"(Blond_Hair Male ...); received {names[:5]}"
        )
    if len(first_row) == len(names) and not _is_number(first_row[0]):
        names = names[1:]  # the names line also names the file column ("image_id")
    if len(first_row) != len(names) + 1:
        raise ValueError(
            f"expected the rows of {str(path)!r} to hold a file name and {len(names)} values (one per "
            f"attribute name); its first row has {len(first_row)} fields"
        )
    return skip, names


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """An annotation file as a frame indexed by image file name (text or CSV, by suffix)."""
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path, skipinitialspace=True, dtype={"image_id": str})
            frame.columns = [str(c).strip() for c in frame.columns]
            if "image_id" not in frame.columns:
                raise ValueError(
                    f"expected a header line naming the columns, the first 'image_id'; received "
                    f"{list(frame.columns)[:5]}"
                )
            return frame.assign(image_id=frame["image_id"].str.strip()).set_index("image_id")
        if what == "attributes":
            skip, names = _attribute_layout(path)
            frame = pd.read_csv(
                path,
                sep=r"\s+",
                skiprows=skip,
                header=None,
                names=["image_id", *names],
                dtype={"image_id": str},
            ).set_index("image_id")
            if frame.isna().any().any():
                short = frame.index[frame.isna().any(axis=1)]
                raise ValueError(f"rows with fewer than {len(names)} values, e.g. {list(short[:3])}")
            if skip == 2:
                with path.open() as file:
                    count = file.readline().strip()
                if len(frame) != int(count):
                    warn_once(logger, "%s announces %s images but lists %d", path, count, len(frame))
            return frame
        return pd.read_csv(path, sep=r"\s+", header=None, index_col=0, dtype={0: str})
    except (ValueError, KeyError, pd.errors.ParserError) as error:
        raise ValueError(f"could not parse CelebA's {what} file {str(path)!r}: {error}") from error


def _read_attributes(root: Path) -> tuple[Path, pd.DataFrame]:
    """The attribute file under CelebA's folder ``root``, and its table (see :func:`_read_table`)."""
    if not root.is_dir():
        raise ValueError(f"expected CelebA's folder at {str(root)!r}; it is not a directory")
    path = _find(root, ("list_attr_celeba.txt", "list_attr_celeba.csv"), "attribute file")
    return path, _read_table(path, "attributes")


def _column(table: pd.DataFrame, files: pd.Index, path: Path, what: str) -> np.ndarray:
    """The single column of ``table`` for ``files``; every file must be present."""
    absent = files.difference(table.index)
    if len(absent):
        raise ValueError(
            f"{len(absent)} of {len(files)} images of the attribute file lack a {what} in {str(path)!r}, "
            f"e.g. {list(absent[:5])}"
        )
    return table.reindex(files).iloc[:, 0].to_numpy(np.int64)


def _attribute(attributes: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """Attribute ``name`` as 0 (-1 in the file) / 1 (+1)."""
    if name not in attributes.columns:
        raise ValueError(f"unknown CelebA {role} {name!r}; expected one of {list(attributes.columns)}")
    values = attributes[name].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise ValueError(
            f"expected CelebA attribute {name!r} to be +-1; it has values {sorted(set(values))[:5]}"
        )
    return (values == 1).astype(np.int64)


def _split_indices(root: Path, split_mode: str, files: pd.Index, strata: np.ndarray, seed: int) -> Indices:
    """Train, val and test indices into ``files``: the official partition, or the identity re-split.

    Args:
        root: CelebA's folder.
        split_mode: ``"official"`` or ``"identity"`` (see :func:`load_celeba`).
        files: The images' file names, ``N`` of them.
        strata: ``(N,)`` (target, group) cell of each image, which the identity re-split balances.
        seed: Seed of the identity re-split.
    """
    if split_mode == "official":
        part_path = _find(root, ("list_eval_partition.txt", "list_eval_partition.csv"), "partition file")
        partition = _column(_read_table(part_path, "partition"), files, part_path, "partition")
        if not np.isin(partition, (0, 1, 2)).all():
            raise ValueError(
                f"expected partition ids 0, 1, 2 in {str(part_path)!r}; found {np.unique(partition)}"
            )
        return (
            np.flatnonzero(partition == 0),
            np.flatnonzero(partition == 1),
            np.flatnonzero(partition == 2),
        )
    id_path = _find(root, ("identity_CelebA.txt",), "identity file")
    identity = _column(_read_table(id_path, "identity"), files, id_path, "identity")
    return grouped_split_indices(identity, strata, _FRACTIONS, seed)


def load_celeba(
    root: str | os.PathLike[str],
    *,
    target: str = "Blond_Hair",
    sensitive_attribute: SensitiveAttribute = "Male",
    resolution: int = 64,
    split_mode: str = "official",
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: Limit = None,
    missing: str = "error",
    min_group_size: int = 1,
) -> Splits:
    """Load CelebA with a binary target attribute and a binary sensitive attribute (or several).

    Class 1 is the target attribute present (+1), class 0 absent (-1): class names
    ``("not <target>", "<target>")``. Group 1 is the sensitive attribute present, group 0 absent:
    group names ``("not <attribute>", "<attribute>")``, e.g. ``("not Male", "Male")`` (CelebA's
    annotation is binary; "not Male" is what it records, so that is the name). A list of
    attributes makes the intersectional groups that occur, named with 0 (absent) / 1 (present),
    e.g. ``["Male", "Young"]``: ``"Male=0,Young=0"``, ``"Male=0,Young=1"``, ``"Male=1,Young=0"``,
    ``"Male=1,Young=1"`` (ids in that order; see ``fairprune.data.groups``).

    Args:
        root: Folder holding the images and annotation files (see the module docstring).
        target: Attribute to predict, e.g. ``"Blond_Hair"``, ``"Bags_Under_Eyes"``.
        sensitive_attribute: Attribute whose values are the groups, e.g. ``"Male"``, or a list of
            attributes (``["Male", "Young"]``) whose combinations are (at most 16).
        resolution: Side ``R`` of the square images.
        split_mode: ``"official"`` (``list_eval_partition``), or ``"identity"``: a seeded re-split
            0.7/0.15/0.15 in which each identity (``identity_CelebA.txt``) lies in one split,
            near-stratified by (target, group) cell (see ``grouped_split_indices``).
        seed: Seed of the identity re-split and of the ``limit`` subsets.
        cache_dir: Cache of decoded images (default ``$FAIRPRUNE_CACHE`` or ``~/.cache/fairprune``).
        limit: At most this many images of each split, or a cap per split by name
            (``{"train": 10000}``): a seeded random subset stratified by (target, group) cell.
        missing: What to do with images that the attribute file lists but the image folder lacks
            (e.g. a subset of CelebA's images with the full attribute file): ``"error"``, or
            ``"skip"`` them (logged). The default is ``"error"`` because a silently smaller dataset
            is a worse surprise than a message; the shared development subset's annotation files
            list exactly its 15,723 images, so it loads either way.
        min_group_size: Fewest samples of every group in every split (see ``Splits.check_groups``).

    Returns:
        Splits whose ``x`` are uint8 ``(N, 3, R, R)``, decoded once (cached) and kept uint8 in
        memory; convert batches with ``fairprune.data.images.to_float``.
    """
    if split_mode not in ("official", "identity"):
        raise ValueError(f"split_mode must be 'official' or 'identity'; received {split_mode!r}")
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
    attr_path, attributes = _read_attributes(root)
    y = _attribute(attributes, target, "target")
    sensitive = [binary_attribute(n, _attribute(attributes, n, "sensitive attribute")) for n in names]
    image_dir = _image_dir(root)
    paths, keep = options.present(
        [image_dir / str(name) for name in attributes.index],
        listed_in=str(attr_path),
        root=image_dir,
        setting=setting_hint("root", "data.root") + " (the folder that holds img_align_celeba/)",
    )
    images = LabelledImages.from_attributes(
        "celeba",
        target=target,
        y=y[keep],
        class_names=(f"not {target}", target),
        sensitive=[a.restrict(keep) for a in sensitive],
        paths=paths,
        root=root,
    )
    indices = _split_indices(root, split_mode, attributes.index[keep], images.strata, seed)
    return images.to_splits(indices, options)
