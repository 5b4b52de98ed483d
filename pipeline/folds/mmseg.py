"""The mmsegmentation layout: ``img_dir``/``ann_dir`` as relative symlinks, the split lists,
``metainfo.json`` and ``metainfo.py`` (an mmengine base config). DVC cannot keep symlinks inside
an output, so the layout is made on demand, in seconds, where it is used.

The layout checks itself: it records what it was built from (the exports' ``exports.json``,
the inputs' hashes, its own lists), and ``metainfo.py`` calls :func:`check_layout` when
mmengine loads it, so an mmsegmentation run refuses a layout whose repo moved to another
revision (``update``), holds a part moved alone (``dvc update`` of one ``.dvc`` file) or files
changed on disk since. mmsegmentation never calls ``pipeline.folds`` otherwise. The layout
git-ignores itself (a ``.gitignore`` of ``*`` inside)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files.contracts import (
    EXPORTS_DIR,
    EXPORTS_META_NAME,
    MASKS_DIR,
    MMSEG_AUGMENTED,
    augmented_stem,
    mmseg_stem,
    read_json_object,
    read_rows,
)
from pipeline.files.errors import DatasetError
from pipeline.folds.dvcfile import read_pin
from pipeline.folds.exported import class_table, exports_dir, load_folds, metadata
from pipeline.folds.read import mmseg_metainfo
from pipeline.folds.revision import MixedRevisionsError, check, overridden, used_parts
from pipeline.folds.verify import file_md5

__all__ = [
    "LAYOUT_CONFIG",
    "LAYOUT_MARKER",
    "LAYOUT_METAINFO",
    "StaleLayoutError",
    "check_layout",
    "mmseg_layout",
]

LAYOUT_MARKER = ".mmseg-layout"
LAYOUT_METAINFO = "metainfo.json"  # in an mmseg layout: classes, palette, num_classes, suffixes
LAYOUT_CONFIG = "metainfo.py"  # the same as an mmengine config fragment, for ``_base_``


class StaleLayoutError(MixedRevisionsError):
    """An mmseg layout that is not what the repo now pins: rebuild it."""


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
    check(root, used_parts(meta, meta["variants"]), skip=overridden(meta, images, masks))
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
        info = _layout_metainfo(root, marker)
        (tmp / LAYOUT_METAINFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        (tmp / LAYOUT_CONFIG).write_text(_layout_config(info), encoding="utf-8")
        (tmp / ".gitignore").write_text("# made by pipeline.folds mmseg-layout\n*\n")
        record = _built_from(root, out, meta, images, masks, tmp)
        (tmp / LAYOUT_MARKER).write_text(json.dumps({**marker, **record}, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)  # removes links, never their targets
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rel(path: str | os.PathLike, start: Path) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(start))


def _built_from(
    root: Path,
    out: Path,
    meta: dict[str, Any],
    images: str | os.PathLike | None,
    masks: str | os.PathLike | None,
    tmp: Path,
) -> dict[str, Any]:
    """What :func:`check_layout` compares later: where the repo is (relative to the layout),
    the exports' exports.json, the caller's own folders, and the layout's own lists."""
    pin = read_pin(root, EXPORTS_DIR)
    own = [p for p in sorted(tmp.rglob("*")) if p.is_file() and "splits" in p.parts]
    return {
        "root": _rel(root, out),
        "exports": file_md5(exports_dir(root) / EXPORTS_META_NAME),
        "exports_pin": pin.label if pin is not None else None,
        "n_images": int(meta.get("n_images", 0)),
        "images": _rel(images, out) if images is not None else None,
        "masks": _rel(masks, out) if masks is not None else None,
        "files": {
            p.relative_to(tmp).as_posix(): file_md5(p) for p in [*own, tmp / LAYOUT_METAINFO]
        },
    }


def check_layout(layout: str | os.PathLike) -> str:
    """Refuse a layout that is not what its repo pins now; one line saying what was checked.

    :func:`pipeline.folds.revision.check` on the repo the layout links into (one revision,
    every file as pinned: masks, photos, variants, class table), then the layout against it:
    built from the same ``exports.json``, its lists and ``metainfo.json`` unchanged. The
    layout's ``metainfo.py`` calls this when mmengine loads it.
    """
    layout = Path(layout)
    if "{{" in str(layout):
        raise DatasetError(
            f"{LAYOUT_CONFIG} is an mmengine config: load it with mmengine's Config.fromfile "
            "(which fills in {{ fileDirname }}), or call check_layout(<layout folder>)"
        )
    marker = layout / LAYOUT_MARKER
    record = read_json_object(marker) if marker.is_file() else {}
    if "exports" not in record:
        raise StaleLayoutError(
            f"{layout} records nothing to check it against (not made by pipeline.folds "
            "mmseg-layout, or by an older one): rebuild it: `python -m pipeline.folds "
            "mmseg-layout --out <this folder>`"
        )
    root = (layout / record["root"]).resolve()
    own = {k: layout / record[k] if record.get(k) else None for k in ("images", "masks")}
    meta = metadata(root)
    check(root, used_parts(meta, meta["variants"]), skip=overridden(meta, **own))
    rebuild = f"`python -m pipeline.folds mmseg-layout --out {_rel(layout, root)}`"
    if file_md5(exports_dir(root) / EXPORTS_META_NAME) != record["exports"]:
        pin = read_pin(root, EXPORTS_DIR)
        now = f"now pinned at {pin.label}" if pin is not None else "since rebuilt"
        raise StaleLayoutError(
            f"{layout} was built from data/exports at {record.get('exports_pin') or 'another'} "
            f"revision, and data/exports is {now}: the layout's lists, masks and class table "
            f"are not this split's. Rebuild it (in {root}): {rebuild}"
        )
    for rel, md5 in record["files"].items():
        if not (layout / rel).is_file() or file_md5(layout / rel) != md5:
            raise StaleLayoutError(
                f"{layout / rel} changed since the layout was built. Rebuild it (in {root}): "
                f"{rebuild}"
            )
    return f"mmseg layout {layout}: {record['n_images']} images, as {root} pins them"


def _layout_metainfo(root: Path, marker: dict[str, str]) -> dict[str, Any]:
    """What an mmseg config needs from the split: metainfo, class count, suffixes."""
    table = class_table(root)  # checked with every part by mmseg_layout
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
        _CHECK,
    ]
    return "\n".join(lines) + "\n"


# Loading the base config runs the layout's check. No `import` statement (it would switch
# mmengine to its lazy-import mode), names with `__` (mmengine keeps none of them in the
# config), and mmengine's `{{ fileDirname }}` (the folder of this file, wherever it is).
_CHECK = """
# mmengine runs this when it loads the config: the layout must still be what the repo pins
# (pipeline.folds.mmseg.check_layout); rebuild it with `python -m pipeline.folds mmseg-layout`.
try:
    __check = __import__("pipeline.folds.mmseg", fromlist=["check_layout"]).check_layout
except ImportError as __missing:
    raise ImportError(
        "this mmseg layout checks itself with coco-folds (pipeline.folds), which this Python "
        "cannot import: install it where mmsegmentation runs (docs/trainers.md)"
    ) from __missing
__check(r"{{ fileDirname }}")"""


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
