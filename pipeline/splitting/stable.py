"""Folds that stay put as a dataset grows: a pinned split is kept, new images fill in.

With ``split.stable: true`` the split stage reads the pinned split (``split.stable_from``, a
folds.csv committed in the repository, written by ``python -m pipeline.folds pin``): an image
in it keeps its fold (or the test part), matched by ``file_name`` (exports renumber ids, file
names stay); an image that is new joins its group's pinned fold when its group has pinned
images, and is otherwise placed by the splitter so the folds stay balanced; an image that is
gone is gone. Folds cannot be kept across a different ``n_splits``, group rule or test part:
each is one clear error, and ``split.stable: false`` re-splits.

Whatever ``stable`` says, when a pinned split exists its differences to the new split are
counted (moved, added, removed) in the split metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.files.contracts import TEST_FOLD, FoldTable
from pipeline.files.params import SplitParams, fail

__all__ = [
    "Changes",
    "FREE",
    "TEST",
    "changes",
    "check_compatible",
    "group_labels",
    "pinned_labels",
]

FREE = -2  # an image the splitter places
TEST = -1  # the held-out test part


@dataclass(frozen=True)
class Changes:
    moved: int  # images in both splits whose fold differs
    added: int  # images only in the new split
    removed: int  # images only in the pinned split

    def as_metrics(self) -> dict[str, int]:
        return {"moved": self.moved, "added": self.added, "removed": self.removed}


def check_compatible(pinned: FoldTable, config: SplitParams) -> None:
    """Folds can only be kept under the split settings they were made with."""
    hint = "folds cannot be kept across it: set split.stable: false to re-split"
    if pinned.n_folds != config.n_splits:
        raise fail(
            "split.n_splits",
            f"is {config.n_splits} but the pinned split has {pinned.n_folds} folds; {hint}",
        )
    has_test = bool(pinned.ids(TEST_FOLD))
    if has_test != (config.test_fraction > 0):
        what = "has a test part" if has_test else "has no test part"
        raise fail(
            "split.test_fraction",
            f"is {config.test_fraction} but the pinned split {what}; {hint}",
        )


def pinned_labels(pinned: FoldTable, names: Sequence[str], groups: Sequence[str]) -> np.ndarray:
    """Per image: its pinned fold, TEST, or FREE; checks the group rule did not change."""
    by_name = {r.file_name: r for r in pinned.rows}
    labels = np.full(len(names), FREE, dtype=np.int64)
    for index, (name, group) in enumerate(zip(names, groups, strict=True)):
        row = by_name.get(name)
        if row is None:
            continue
        if row.group != group:
            raise fail(
                "split",
                f"image {name!r} was in group {row.group!r} when pinned, now {group!r}: the "
                "group rule (group_regex / group_field) changed; folds cannot be kept across "
                "it: set split.stable: false to re-split",
            )
        labels[index] = TEST if row.fold == TEST_FOLD else int(row.fold)
    return labels


def group_labels(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Every image of a group with pinned images takes their label: a group that gains
    images stays where it was."""
    n_groups = int(groups.max()) + 1 if groups.size else 0
    pinned = labels != FREE
    label_of = np.full(n_groups, FREE, dtype=np.int64)
    label_of[groups[pinned]] = labels[pinned]
    return np.where(label_of[groups] != FREE, label_of[groups], labels)


def changes(pinned: FoldTable, names: Sequence[str], folds: Sequence[str]) -> Changes:
    """What the new split (fold label per image name) changed against the pinned one."""
    old = {r.file_name: r.fold for r in pinned.rows}
    new = dict(zip(names, folds, strict=True))
    both = old.keys() & new.keys()
    return Changes(
        moved=sum(old[n] != new[n] for n in both),
        added=len(new.keys() - both),
        removed=len(old.keys() - both),
    )
