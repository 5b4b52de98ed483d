"""The trainer's read API: the image and mask paths of a fold (and of the held-out test part),
as the export stage wrote them, the class table; masks read as class indices.

Every call here checks first that the repo holds one revision and that every file it reads is
the pinned one (:func:`pipeline.folds.revision.check`): the exports and their class table, and
for a fold the masks, the photos and the variants asked for."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.files.contracts import EXPORTS_DIR, Classes, mask_relpath, read_mask, read_rows
from pipeline.files.errors import DatasetError
from pipeline.folds.exported import class_table, exports_dir, metadata
from pipeline.folds.revision import check, overridden, used_parts

__all__ = [
    "Fold",
    "Pair",
    "classes",
    "fold",
    "folds",
    "mmseg_metainfo",
    "num_classes",
    "read_mask",
    "test",
]


class Pair(NamedTuple):
    """An image and its mask; unpacks as ``image, mask``."""

    image: Path
    mask: Path


@dataclass(frozen=True)
class Fold:
    """Fold ``k``: train on ``train`` (originals, then augmented variants if asked), validate
    on ``val``. ``train_ids``/``val_ids`` are the original image ids."""

    k: int
    train: list[Pair]
    val: list[Pair]
    train_ids: list[int] = field(repr=False)
    val_ids: list[int] = field(repr=False)
    variants: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Fold(k={self.k}, train={len(self.train)} pairs, val={len(self.val)} pairs, "
            f"variants={list(self.variants)})"
        )


def _pairs(
    path: Path, root: Path, images: Path | None, masks: Path | None
) -> tuple[list[Pair], list[int]]:
    pairs, ids = [], []
    for r in read_rows(path):
        image = images / r["file_name"] if images is not None else root / r["image"]
        mask = masks / mask_relpath(r["file_name"]) if masks is not None else root / r["mask"]
        pairs.append(Pair(image, mask))
        ids.append(int(r["image_id"]))
    return pairs, ids


def _pick_variants(wanted: None | str | Iterable[str], available: Sequence[str]) -> tuple[str, ...]:
    if wanted is None:
        return ()
    if wanted == "all":
        return tuple(available)
    names = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    unknown = [v for v in names if v not in available]
    if unknown:
        raise DatasetError(
            f"unknown augment variants {unknown}; the exports have {list(available)}",
            file=f"{EXPORTS_DIR}/exports.json",
            field="variants",
        )
    return names


def fold(
    k: int,
    root: str | os.PathLike = ".",
    variants: None | str | Iterable[str] = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> Fold:
    """Train and val pairs of fold ``k``.

    ``variants``: None (originals only), ``"all"`` or names of augment variants to append to
    ``train``; only variants of fold k's training images exist there, never of val or test.
    ``images`` / ``masks`` override where originals are found (e.g. a trainer's own copy of
    the photos); by default paths are ``root`` joined with the exported relative paths.
    :class:`MixedRevisionsError` when the repo's pinned parts are of another revision than
    the exports, :class:`ContentMismatchError` when a file it reads is not the pinned one
    (see :func:`pipeline.folds.revision.check`).
    """
    return _folds(root, [k], variants, images, masks)[0]


def folds(
    root: str | os.PathLike = ".",
    variants: None | str | Iterable[str] = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Fold]:
    """All folds, for a cross-validation loop (the files are checked once)."""
    return _folds(root, None, variants, images, masks)


def _folds(
    root: str | os.PathLike,
    wanted: list[Any] | None,
    variants: None | str | Iterable[str],
    images: str | os.PathLike | None,
    masks: str | os.PathLike | None,
) -> list[Fold]:
    """Folds ``wanted`` (None: all) after one check of every file they read."""
    root = Path(root)
    meta = metadata(root)
    chosen = _pick_variants(variants, meta["variants"])
    meta = check(root, used_parts(meta, chosen), skip=overridden(meta, images, masks))
    total = int(meta["n_folds"])
    indices = [_fold_index(k, total, root) for k in (range(total) if wanted is None else wanted)]
    return [_fold(k, root, chosen, images, masks) for k in indices]


def _fold_index(k: Any, total: int, root: Path) -> int:
    try:
        index = None if isinstance(k, bool) else operator.index(k)  # numpy ints welcome
    except TypeError:
        index = None
    if index is None or not 0 <= index < total:
        raise DatasetError(
            f"fold {k!r} does not exist: the exports have folds 0..{total - 1}",
            file=str(exports_dir(root)),
            field="fold",
        )
    return index


def _fold(
    k: int,
    root: Path,
    chosen: tuple[str, ...],
    images: str | os.PathLike | None,
    masks: str | os.PathLike | None,
) -> Fold:
    base = exports_dir(root) / f"fold_{k}"
    img_root = Path(images) if images is not None else None
    mask_root = Path(masks) if masks is not None else None
    train, train_ids = _pairs(base / "train.csv", root, img_root, mask_root)
    val, val_ids = _pairs(base / "val.csv", root, img_root, mask_root)
    if chosen:
        keep = set(chosen)
        train.extend(
            Pair(root / r["image"], root / r["mask"])
            for r in read_rows(base / "train_augmented.csv")
            if r["variant"] in keep
        )
    return Fold(k, train, val, train_ids, val_ids, chosen)


def test(
    root: str | os.PathLike = ".",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Pair]:
    """The held-out test pairs; an error when the split has no holdout."""
    meta = metadata(root)
    check(root, used_parts(meta), skip=overridden(meta, images, masks))
    path = exports_dir(root) / "test.csv"
    if not path.exists():
        raise DatasetError(
            "the split has no held-out test part (split.test_fraction is 0)",
            file=str(path.parent),
            field="test",
        )
    return _pairs(
        path,
        Path(root),
        Path(images) if images is not None else None,
        Path(masks) if masks is not None else None,
    )[0]


# ---------------------------------------------------------------- the class table


def classes(root: str | os.PathLike = ".") -> Classes:
    """The class table the split was made with (``data/exports/classes.json``), after checking
    it is the one the exports recorded and the repo holds one revision: ``names`` (index 0 is
    background), ``colors``, ``category_ids``, ``palette``, ``ignore_index``."""
    check(root)
    return class_table(root)


def num_classes(root: str | os.PathLike = ".") -> int:
    """Outputs a segmentation model needs: background plus every class (255 is ignore)."""
    return classes(root).num_classes


def mmseg_metainfo(root: str | os.PathLike = ".") -> dict[str, Any]:
    """mmsegmentation's dataset ``metainfo``: class names (background first, as the masks use
    it with ``reduce_zero_label=False``) and their palette colours."""
    table = classes(root)
    return {"classes": list(table.names), "palette": [list(c) for c in table.colors]}
