"""The trainer's read API: the image and mask paths of a fold (and of the held-out test part),
as the export stage wrote them; masks read as class indices."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pipeline.files.contracts import EXPORTS_DIR, mask_relpath, read_mask, read_rows
from pipeline.files.errors import DatasetError
from pipeline.folds.exported import exports_dir, metadata, n_folds
from pipeline.folds.revision import check_revisions, overridden

__all__ = ["Fold", "Pair", "fold", "folds", "read_mask", "test"]


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
    the exports (see :func:`check_revisions`).
    """
    root = Path(root)
    meta = metadata(root)
    check_revisions(root, skip=overridden(meta, images, masks))
    total = int(meta["n_folds"])
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
    k = index
    chosen = _pick_variants(variants, meta["variants"])
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


def folds(
    root: str | os.PathLike = ".",
    variants: None | str | Iterable[str] = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Fold]:
    """All folds, for a cross-validation loop."""
    return [fold(k, root, variants, images, masks) for k in range(n_folds(root))]


def test(
    root: str | os.PathLike = ".",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Pair]:
    """The held-out test pairs; an error when the split has no holdout."""
    check_revisions(root, skip=overridden(metadata(root), images, masks))
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
