"""The mmsegmentation layout: ``img_dir``/``ann_dir`` as relative symlinks, the split lists,
``metainfo.json`` and ``metainfo.py`` (an mmengine base config). DVC cannot keep symlinks inside
an output, so the layout is made on demand, in seconds, where it is used."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files.contracts import (
    MASKS_DIR,
    MMSEG_AUGMENTED,
    augmented_stem,
    mmseg_stem,
    read_rows,
)
from pipeline.files.errors import DatasetError
from pipeline.folds.exported import classes, exports_dir, load_folds, metadata, mmseg_metainfo
from pipeline.folds.revision import check_revisions, overridden

__all__ = ["LAYOUT_CONFIG", "LAYOUT_MARKER", "LAYOUT_METAINFO", "mmseg_layout"]

LAYOUT_MARKER = ".mmseg-layout"
LAYOUT_METAINFO = "metainfo.json"  # in an mmseg layout: classes, palette, num_classes, suffixes
LAYOUT_CONFIG = "metainfo.py"  # the same as an mmengine config fragment, for ``_base_``


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
    check_revisions(root, skip=overridden(meta, images, masks))
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
        info = _layout_metainfo(root, marker)
        (tmp / LAYOUT_METAINFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        (tmp / LAYOUT_CONFIG).write_text(_layout_config(info), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # removes links, never their targets
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _layout_metainfo(root: Path, marker: dict[str, str]) -> dict[str, Any]:
    """What an mmseg config needs from the split: metainfo, class count, suffixes."""
    table = classes(root)
    return {
        "metainfo": mmseg_metainfo(root),
        "num_classes": table.num_classes,
        "ignore_index": table.ignore_index,
        "img_suffix": marker["img_suffix"],
        "seg_map_suffix": marker["seg_map_suffix"],
    }


def _layout_config(info: dict[str, Any]) -> str:
    """``info`` as an mmengine config fragment (Python literals, no import): a config takes it
    with ``_base_ = ["data/mmseg/metainfo.py"]`` and ``{{_base_.num_classes}}``. A config with
    an ``import`` statement (even ``import json``) runs in mmengine's lazy-import mode, where
    ``json.load`` cannot be called, so the values come as a base config instead."""
    lines = [
        "# Made by `python -m pipeline.folds mmseg-layout`: the class table of this split.",
        '# In an mmengine config: _base_ = ["data/mmseg/metainfo.py"], then {{_base_.metainfo}}.',
        *(f"{key} = {value!r}" for key, value in info.items()),
    ]
    return "\n".join(lines) + "\n"


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
