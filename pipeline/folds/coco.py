"""A fold's training COCO json, written in the trainer repo from the exports.

The exports always hold each fold's ``val.json`` (together every image once, with the class
table's categories under ``export.coco_classes: mapped``); ``fold_<k>/train.json`` only when
the data team set ``export.coco_json`` (k copies of most of the dataset). Fold k's training
part is every other fold's validation part, so its json is their union: the same top-level
fields, images and annotations, and the same categories. Images come fold by fold (each fold's
in the canonical json's order), every image's annotations with it as in the source files;
the content equals the ``train.json`` the export stage writes, as a COCO dataset.

Memory: one fold's ``val.json`` parsed at a time (Python's json: the light install has no
msgspec), its items written to temporary files and joined.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_writer
from pipeline.folds.exported import exports_dir
from pipeline.folds.revision import check

__all__ = ["COCO_OUT", "coco_json"]

COCO_OUT = "data/coco"  # the default folder; it git-ignores itself

_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def coco_json(
    fold: int,
    part: str = "train",
    root: str | os.PathLike = ".",
    out: str | os.PathLike | None = None,
) -> Path:
    """The COCO json of fold ``fold``'s ``part`` (``train`` or ``val``; the held-out part:
    ``part="test"``): the exports' own file when they hold it, else fold ``fold``'s training
    json written to ``out`` (default ``data/coco/fold_<k>_train.json``) from the other folds'
    ``val.json``. Checked first, as every read is."""
    meta = check(root)
    n = int(meta["n_folds"])
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n:
        raise DatasetError(f"fold {fold!r} does not exist: the exports have folds 0..{n - 1}")
    exports = exports_dir(root)
    own = {"train": f"fold_{fold}/train.json", "val": f"fold_{fold}/val.json", "test": "test.json"}
    if part not in own:
        raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
    if (exports / own[part]).is_file():
        return exports / own[part]
    if part != "train":
        raise DatasetError(f"the exports hold no {own[part]}", file=str(exports))
    target = Path(out) if out is not None else Path(root) / COCO_OUT / f"fold_{fold}_train.json"
    sources = [exports / f"fold_{j}" / "val.json" for j in range(n) if j != fold]
    _write_union(sources, target)
    if out is None:
        (target.parent / ".gitignore").write_text("# made by pipeline.folds coco-json\n*\n")
    return target


def _write_union(sources: list[Path], target: Path) -> None:
    """One COCO json holding every source's images and annotations, the first one's other
    top-level fields, in the canonical format (``json.dumps``, ``ensure_ascii=False``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".coco.", dir=target.parent) as tmp:
        lists = {key: Path(tmp) / key for key in ("images", "annotations")}
        first: dict[str, Any] | None = None
        counts = dict.fromkeys(lists, 0)
        with contextlib.ExitStack() as stack:
            handles = {
                key: stack.enter_context(open(path, "w", encoding="utf-8"))
                for key, path in lists.items()
            }
            for source in sources:
                if not source.is_file():
                    raise DatasetError("a fold's val.json is missing", file=str(source))
                doc = json.loads(source.read_bytes())
                first = first if first is not None else doc
                for key, fh in handles.items():
                    for item in doc.get(key, []):
                        fh.write((", " if counts[key] else "") + _DUMPS(item))
                        counts[key] += 1
                del doc
        _join(first or {}, lists, target)


def _join(first: dict[str, Any], lists: dict[str, Path], target: Path) -> None:
    with atomic_writer(target) as out:
        keys = list(first) or ["images", "annotations"]
        for index, key in enumerate(keys):
            out.write(("{" if index == 0 else ", ") + _DUMPS(key) + ": ")
            if key in lists:
                out.write("[")
                with open(lists[key], encoding="utf-8") as fh:
                    shutil.copyfileobj(fh, out)
                out.write("]")
            else:
                out.write(_DUMPS(first[key]))
        out.write("}\n")
