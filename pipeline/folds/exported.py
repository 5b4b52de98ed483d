"""What the exports say: ``data/exports/exports.json`` (fold count, variants, the inputs'
content hashes), ``folds.csv`` and the class table (``data/exports/classes.json``), read as
they are on disk. The trainer's calls that check them first are in :mod:`pipeline.folds.read`
(``fold``, ``classes``, ...)."""

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

__all__ = ["class_table", "exports_dir", "load_folds", "metadata", "n_folds", "variants"]


def exports_dir(root: str | os.PathLike = ".") -> Path:
    path = Path(root) / EXPORTS_DIR
    if not (path / EXPORTS_META_NAME).exists():
        raise FileNotFoundError(
            f"{path} holds no exports (no exports.json). In a trainer repo: `python -m "
            f"pipeline.folds get <dataset repo url> --rev <tag>` (a clone of one: `dvc pull`), "
            f"or pass the folder that holds {EXPORTS_DIR} as root=; in the pipeline repo: "
            f"`dvc pull` or `dvc repro export`"
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


def class_table(root: str | os.PathLike = ".") -> Classes:
    """``data/exports/classes.json`` as it is on disk, unchecked: :func:`pipeline.folds.read.
    classes` is the trainer's call (it checks the table is the one the exports were made
    from); this one serves tools that compare two revisions (``update``)."""
    path = exports_dir(root) / EXPORTS_CLASSES_NAME
    if not path.exists():
        raise DatasetError(
            f"the exports hold no {EXPORTS_CLASSES_NAME} (made before the class table was "
            f"exported); re-run `dvc repro export` in the pipeline repo, or use {CLASSES_PATH}",
            file=str(path.parent),
        )
    return read_classes(path)
