"""In the pipeline repo: keep the current split as a committed file (``pin``, what
``split.stable_from`` names) and see which images moved between two splits (``diff``)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.files.contracts import (
    FOLDS_PATH,
    PINNED_PATH,
    TEST_FOLD,
    FoldTable,
    folds_from_bytes,
    read_folds,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes
from pipeline.folds.remote import call, dvc_cli

__all__ = [
    "DIFF_COLUMNS",
    "PINNED_PATH",
    "Change",
    "diff",
    "diff_summary",
    "diff_tables",
    "pin",
    "read_split",
]


def pin(root: str | os.PathLike = ".", to: str | os.PathLike = PINNED_PATH) -> FoldTable:
    """Copy the current ``data/splits/folds.csv`` to ``to`` (a committed file: what
    ``split.stable_from`` names), after checking it parses."""
    root = Path(root)
    data = (root / FOLDS_PATH).read_bytes() if (root / FOLDS_PATH).exists() else None
    if data is None:
        raise DatasetError("no split to pin; run `dvc repro split` first", file=FOLDS_PATH)
    table = folds_from_bytes(data, FOLDS_PATH)
    target = Path(to) if Path(to).is_absolute() else root / to
    atomic_write_bytes(target, data)
    return table


class Change(NamedTuple):
    image_id: int
    file_name: str
    old_fold: str  # "" when the image is new
    new_fold: str  # "" when the image was removed
    change: str  # moved, added, removed


DIFF_COLUMNS = ("image_id", "file_name", "old_fold", "new_fold", "change")


def diff_tables(old: FoldTable, new: FoldTable) -> list[Change]:
    """Images whose fold differs between two splits, matched by ``file_name`` as
    ``split.stable`` matches them (a re-exported json may renumber its image ids): new-table
    order, then the removed ones in old-table order. ``image_id`` is the new table's (the old
    one's for a removed image)."""
    before = {r.file_name: r for r in old.rows}
    after = {r.file_name: r for r in new.rows}
    out = []
    for r in new.rows:
        was = before.get(r.file_name)
        if was is None:
            out.append(Change(r.image_id, r.file_name, "", r.fold, "added"))
        elif was.fold != r.fold:
            out.append(Change(r.image_id, r.file_name, was.fold, r.fold, "moved"))
    out += [
        Change(r.image_id, r.file_name, r.fold, "", "removed")
        for r in old.rows
        if r.file_name not in after
    ]
    return out


def diff_summary(old: FoldTable, new: FoldTable, changes: list[Change]) -> list[list[Any]]:
    """Per fold label: images before and after, kept, moved in/out, added, removed."""
    labels = sorted({r.fold for r in (*old.rows, *new.rows)}, key=_label_order)
    rows = []
    for label in labels:
        n_old = sum(r.fold == label for r in old.rows)
        n_new = sum(r.fold == label for r in new.rows)
        moved_in = sum(c.change == "moved" and c.new_fold == label for c in changes)
        moved_out = sum(c.change == "moved" and c.old_fold == label for c in changes)
        added = sum(c.change == "added" and c.new_fold == label for c in changes)
        removed = sum(c.change == "removed" and c.old_fold == label for c in changes)
        kept = n_old - moved_out - removed
        rows.append([label, n_old, n_new, kept, moved_in, moved_out, added, removed])
    totals = [sum(r[i] for r in rows) for i in range(1, 8)]
    return [*rows, ["total", *totals]]


def _label_order(label: str) -> tuple[int, int]:
    return (1, 0) if label == TEST_FOLD else (0, int(label))


def read_split(spec: str, root: str | os.PathLike = ".") -> FoldTable:
    """A folds table from a file, or from a revision of the repo at ``root``: ``REV`` (its
    ``data/splits/folds.csv``) or ``REV:path``. Committed files come from ``git show``;
    DVC-tracked ones (``data/splits/folds.csv`` is a stage output) from ``dvc get --rev``."""
    path = Path(spec)
    if path.is_file():
        return read_folds(path)
    rev, _, rel = spec.partition(":")
    rel = rel or FOLDS_PATH
    shown = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=root, capture_output=True)
    if shown.returncode == 0:
        return folds_from_bytes(shown.stdout, f"{rev}:{rel}")
    said = shown.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    if (Path(root) / ".dvc").is_dir():
        with tempfile.TemporaryDirectory(prefix="folds-diff.") as tmp:
            out = Path(tmp) / "folds.csv"
            try:
                call([dvc_cli(), "get", ".", rel, "--rev", rev, "-o", str(out)], Path(root))
                return folds_from_bytes(out.read_bytes(), f"{rev}:{rel}")
            except DatasetError as exc:
                said.append(f"({exc})")
    raise DatasetError(
        f"neither a file nor a git revision holding {rel}: {' '.join(said)}", file=spec
    )


def diff(old: str, new: str, root: str | os.PathLike = ".") -> tuple[list[Change], list[list[Any]]]:
    """(changed images, per-fold table) between two splits (files or git revisions)."""
    before, after = read_split(old, root), read_split(new, root)
    changes = diff_tables(before, after)
    return changes, diff_summary(before, after, changes)
