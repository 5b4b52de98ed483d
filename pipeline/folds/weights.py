"""Each fold's class distribution (``data/exports/class_distribution.csv``) and the class
weights a loss takes from it, counted on that fold's training part.

- ``inverse``: inverse frequency, scaled as scikit-learn's ``balanced``: ``w_c = N / (C *
  n_c)`` with ``n_c`` the class's pixels, ``N`` all labelled pixels and ``C`` the classes
  present: a class of average frequency weighs 1.
- ``median``: median-frequency balancing (Eigen & Fergus, 2015): ``f_c = n_c / P_c`` with
  ``P_c`` the labelled pixels of the images holding the class, ``w_c = median(f) / f_c``: the
  median class weighs 1.

One float per class index (background 0 included; ignore, 255, is no class), ready for
``torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=255)``. A class with no pixel
in the training part gets 0.0 (it cannot be learnt from that fold). Counts are the original
images' (augmented variants are not counted), from the masks stage's per-image stats, which
are counted from the masks.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from pipeline.files.contracts import (
    EXPORTS_DISTRIBUTION_NAME,
    DistributionRow,
    read_class_distribution,
)
from pipeline.files.errors import DatasetError
from pipeline.folds.exported import class_table, exports_dir
from pipeline.folds.revision import check

__all__ = ["KINDS", "class_distribution", "class_weights", "missing_in_val"]

KINDS = ("inverse", "median")


def class_distribution(root: str | os.PathLike = ".") -> list[DistributionRow]:
    """Every row of ``class_distribution.csv``: per fold and part (``train``, ``val``, and
    ``test``), per class: ``pixels``, ``images`` holding it, ``image_pixels`` (their labelled
    pixels). Checked as every read is (one revision, the pinned files)."""
    check(root)
    path = exports_dir(root) / EXPORTS_DISTRIBUTION_NAME
    if not path.exists():
        raise DatasetError(
            f"the exports hold no {EXPORTS_DISTRIBUTION_NAME} (made before the class "
            "distribution was exported): move to a newer tag, or re-run `dvc repro export` in "
            "the pipeline repo",
            file=str(path.parent),
        )
    return read_class_distribution(path)


def _part(rows: list[DistributionRow], fold: int, part: str, n: int) -> list[DistributionRow]:
    found = sorted((r for r in rows if r.fold == str(fold) and r.part == part), key=_index)
    if [r.class_index for r in found] != list(range(n)):
        raise DatasetError(
            f"fold {fold!r} {part}: expected one row per class 0..{n - 1}",
            file=EXPORTS_DISTRIBUTION_NAME,
        )
    return found


def _index(row: DistributionRow) -> int:
    return row.class_index


def class_weights(
    fold: int = 0, kind: str = "inverse", root: str | os.PathLike = "."
) -> list[float]:
    """One weight per class index (background included) from fold ``fold``'s training part:
    ``kind`` ``"inverse"`` (inverse frequency) or ``"median"`` (median-frequency balancing);
    0.0 for a class without pixels there (see the module doc)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rows = class_distribution(root)
    n = class_table(root).num_classes
    folds = sorted({int(r.fold) for r in rows if r.part == "train"})
    if isinstance(fold, bool) or fold not in folds:
        raise DatasetError(
            f"fold {fold!r} does not exist: the exports have folds 0..{len(folds) - 1}",
            file=str(Path(root) / EXPORTS_DISTRIBUTION_NAME),
            field="fold",
        )
    train = _part(rows, int(fold), "train", n)
    if kind == "inverse":
        total = sum(r.pixels for r in train)
        present = sum(1 for r in train if r.pixels)
        return [total / (present * r.pixels) if r.pixels else 0.0 for r in train]
    freq = {r.class_index: r.pixels / r.image_pixels for r in train if r.pixels}
    middle = statistics.median(freq.values()) if freq else 0.0
    return [middle / freq[r.class_index] if r.class_index in freq else 0.0 for r in train]


def missing_in_val(root: str | os.PathLike = ".") -> dict[str, list[int]]:
    """The classes some fold's validation part has no pixel of, with those folds, in class
    order (``{}`` when every fold validates every class): a fold's score on such a class is
    undefined, and its mean over classes counts one class fewer."""
    rows = class_distribution(root)
    names = class_table(root).names
    out: dict[str, list[int]] = {}
    for r in sorted((r for r in rows if r.part == "val"), key=lambda r: (r.class_index, r.fold)):
        if r.pixels == 0 and r.class_index < len(names):
            out.setdefault(names[r.class_index], []).append(int(r.fold))
    return {name: sorted(folds) for name, folds in out.items()}
