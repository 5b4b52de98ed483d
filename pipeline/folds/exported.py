"""What the exports say: ``data/exports/exports.json`` (fold count, variants, the inputs'
content hashes), ``folds.csv`` and the class table (``data/exports/classes.json``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.files.contracts import (
    CLASSES_PATH,
    EXPORTS_CLASSES_NAME,
    EXPORTS_DIR,
    EXPORTS_META_NAME,
    Classes,
    FoldRow,
    read_classes,
    read_exports_meta,
    read_folds,
)
from pipeline.files.errors import DatasetError

__all__ = [
    "classes",
    "exports_dir",
    "load_folds",
    "metadata",
    "mmseg_metainfo",
    "n_folds",
    "num_classes",
    "variants",
]


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


# ---------------------------------------------------------------- the class table


def classes(root: str | os.PathLike = ".") -> Classes:
    """The class table the split was made with (``data/exports/classes.json``): ``names``
    (index 0 is background), ``colors``, ``category_ids``, ``palette``, ``ignore_index``."""
    path = exports_dir(root) / EXPORTS_CLASSES_NAME
    if not path.exists():
        raise DatasetError(
            f"the exports hold no {EXPORTS_CLASSES_NAME} (made before the class table was "
            f"exported); re-run `dvc repro export` in the pipeline repo, or use {CLASSES_PATH}",
            file=str(path.parent),
        )
    return read_classes(path)


def num_classes(root: str | os.PathLike = ".") -> int:
    """Outputs a segmentation model needs: background plus every class (255 is ignore)."""
    return classes(root).num_classes


def mmseg_metainfo(root: str | os.PathLike = ".") -> dict[str, Any]:
    """mmsegmentation's dataset ``metainfo``: class names (background first, as the masks use
    it with ``reduce_zero_label=False``) and their palette colours."""
    table = classes(root)
    return {"classes": list(table.names), "palette": [list(c) for c in table.colors]}
