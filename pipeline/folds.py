"""Python API for trainers: the image and mask paths of a fold, as the export stage wrote them.

Reads only ``data/exports`` (plus the images, masks and augmented files it points at), so it
works the same in the pipeline repo and in a trainer repo that fetched the folders with
``dvc import`` / ``dvc get``: pass that repo's folder as ``root``.

>>> from pipeline import folds
>>> f = folds.fold(0, root=".", variants="all")      # doctest: +SKIP
>>> for image_path, mask_path in f.train: ...        # doctest: +SKIP
>>> mask = folds.read_mask(f.val[0].mask)            # doctest: +SKIP

CLI: ``python -m pipeline.folds mmseg-layout --out DIR`` builds the mmsegmentation
``img_dir``/``ann_dir`` layout as relative symlinks plus the split lists (DVC cannot keep
symlinks inside an output, so the layout is made on demand, in seconds, where it is used).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from pipeline.contracts import (
    EXPORTS_DIR,
    EXPORTS_META_NAME,
    MASKS_DIR,
    MMSEG_AUGMENTED,
    FoldRow,
    augmented_stem,
    mask_relpath,
    mmseg_stem,
    read_exports_meta,
    read_folds,
    read_mask,
    read_rows,
)
from pipeline.errors import DatasetError

__all__ = [
    "Fold",
    "FoldRow",
    "Pair",
    "fold",
    "folds",
    "load_folds",
    "mmseg_layout",
    "n_folds",
    "read_mask",
    "test",
    "variants",
]

LAYOUT_MARKER = ".mmseg-layout"


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


def exports_dir(root: str | os.PathLike = ".") -> Path:
    path = Path(root) / EXPORTS_DIR
    if not (path / EXPORTS_META_NAME).exists():
        raise FileNotFoundError(
            f"{path} holds no exports (no exports.json). In the pipeline repo run `dvc repro "
            f"export` or `dvc pull`; in a trainer repo `dvc import <pipeline repo> "
            f"{EXPORTS_DIR} --rev <tag>`, then pass that repo's folder as root="
        )
    return path


def metadata(root: str | os.PathLike = ".") -> dict[str, Any]:
    """``exports.json``: fold sizes, variants, image/mask roots, mmseg suffixes."""
    return read_exports_meta(exports_dir(root))


def load_folds(root: str | os.PathLike = ".") -> list[FoldRow]:
    """Every image with its fold label, in ``folds.csv`` order."""
    return list(read_folds(exports_dir(root) / "folds.csv").rows)


def n_folds(root: str | os.PathLike = ".") -> int:
    return int(metadata(root)["n_folds"])


def variants(root: str | os.PathLike = ".") -> list[str]:
    """Augmented variants the exports list (train parts only ever hold train-image variants)."""
    return list(metadata(root)["variants"])


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
    """
    root = Path(root)
    meta = metadata(root)
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


# ---------------------------------------------------------------- mmseg layout


def _link(target: Path, link: Path, final_parent: Path) -> None:
    """Relative symlink ``link`` -> ``target``, computed from where the link will finally
    live (``final_parent``), so building in a sibling temp folder gives the same text."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(os.path.abspath(target), os.path.abspath(final_parent)))


def mmseg_layout(
    out: str | os.PathLike,
    root: str | os.PathLike = ".",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    img_suffix: str | None = None,
) -> Path:
    """Build ``out/img_dir``, ``out/ann_dir`` (relative symlinks) and ``out/splits/*.txt``.

    mmseg config: ``data_root=out, data_prefix=dict(img_path='img_dir', seg_map_path=
    'ann_dir'), ann_file='splits/fold_0_train.txt', img_suffix=<exports.json>,
    seg_map_suffix='.png'``. Every image link is named ``<stem><img_suffix>`` (decoders read
    the content, not the name). ``out`` is replaced as a whole, and only if it is a layout
    made here (or empty), so a rerun never leaves stale links.
    """
    root = Path(root)
    meta = metadata(root)
    suffix = img_suffix or meta["mmseg"]["img_suffix"]
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()) and not (out / LAYOUT_MARKER).exists():
        raise DatasetError(
            "folder exists and is not an mmseg layout made by pipeline.folds; choose another --out",
            file=str(out),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        layout = _Layout(tmp, out, suffix)
        _link_originals(layout, root, meta, images, masks)
        _link_augmented(layout, root, meta)
        shutil.copytree(exports_dir(root) / "mmseg" / "splits", tmp / "splits")
        marker = {
            "img_suffix": suffix,
            "seg_map_suffix": ".png",
            "augmented_prefix": MMSEG_AUGMENTED,
        }
        (tmp / LAYOUT_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # removes links, never their targets
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass(frozen=True)
class _Layout:
    """Where links are built (``tmp``) and where they will finally live (``out``)."""

    tmp: Path
    out: Path
    suffix: str

    def add(self, stem: str, image: Path, mask: Path) -> None:
        """Link ``img_dir/<stem><suffix>`` and ``ann_dir/<stem>.png``."""
        _link(
            image,
            self.tmp / "img_dir" / f"{stem}{self.suffix}",
            (self.out / "img_dir" / stem).parent,
        )
        _link(mask, self.tmp / "ann_dir" / f"{stem}.png", (self.out / "ann_dir" / stem).parent)


def _link_originals(
    layout: _Layout,
    root: Path,
    meta: dict[str, Any],
    images: str | os.PathLike | None,
    masks: str | os.PathLike | None,
) -> None:
    image_root = Path(images) if images is not None else root / PurePosixPath(meta["images"])
    mask_root = Path(masks) if masks is not None else root / MASKS_DIR
    for row in load_folds(root):
        stem = mmseg_stem(row.file_name)
        layout.add(stem, image_root / row.file_name, mask_root / f"{stem}.png")


def _link_augmented(layout: _Layout, root: Path, meta: dict[str, Any]) -> None:
    """Every variant a fold trains on, once, under the ``_augmented/<variant>/`` prefix."""
    seen: set[str] = set()
    for k in range(int(meta["n_folds"])):
        for r in read_rows(exports_dir(root) / f"fold_{k}" / "train_augmented.csv"):
            variant = r["variant"]
            rel = PurePosixPath(r["image"]).relative_to(f"{meta['augmented']}/{variant}")
            stem = augmented_stem(variant, str(rel))
            if stem not in seen:
                seen.add(stem)
                layout.add(stem, root / r["image"], root / r["mask"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.folds", description="Read the exported folds."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lay = sub.add_parser("mmseg-layout", help="img_dir/ann_dir symlink layout + split lists")
    lay.add_argument("--out", required=True, help="folder to (re)build, e.g. data/mmseg")
    lay.add_argument("--root", default=".", help="repo holding data/exports (default .)")
    lay.add_argument("--images", help="image folder overriding exports.json's")
    lay.add_argument("--masks", help="mask folder overriding data/masks")
    lay.add_argument("--img-suffix", help="suffix of the image links (default: most common)")
    show = sub.add_parser("show", help="print a fold's train/val pairs as CSV")
    show.add_argument("k", type=int)
    show.add_argument("--root", default=".")
    show.add_argument("--variants", nargs="*", help="augment variants to add ('all' for all)")
    args = parser.parse_args(argv)
    try:
        if args.command == "mmseg-layout":
            out = mmseg_layout(args.out, args.root, args.images, args.masks, args.img_suffix)
            print(f"mmseg layout in {out} (img_dir, ann_dir, splits)")
        else:
            wanted = args.variants
            if wanted == ["all"]:
                wanted = "all"
            f = fold(args.k, args.root, variants=wanted)
            print("part,image,mask")
            for part, pairs in (("train", f.train), ("val", f.val)):
                for image, mask in pairs:
                    print(f"{part},{image},{mask}")
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
