"""What changed between two revisions of the exports, in the words a trainer needs: classes
added, removed, merged, split, renamed or renumbered and the class count; images moved between
folds, added and removed; variants added, removed or changed. ``update`` prints it before it
finishes.

Classes are matched by the COCO category ids they paint (``classes.json`` ``category_ids``),
never by name or index: a merge is a new class painting the categories of two old ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.files.contracts import (
    EXPORTS_CLASSES_NAME,
    EXPORTS_META_NAME,
    Classes,
    FoldTable,
    read_classes,
    read_exports_meta,
    read_folds,
)
from pipeline.files.errors import DatasetError
from pipeline.folds.exported import exports_dir
from pipeline.folds.pinned import diff_summary, diff_tables

__all__ = ["Snapshot", "class_changes", "describe_changes", "snapshot", "variant_changes"]


class Snapshot(NamedTuple):
    """The exports of one revision, read as they are (None: the repo had none)."""

    meta: dict[str, Any] | None
    classes: Classes | None
    folds: FoldTable | None


def snapshot(root: str | os.PathLike = ".") -> Snapshot:
    """The exports now in ``root``, unchecked (``update`` reads them before moving away)."""
    path = Path(root) / "data" / "exports"
    if not (path / EXPORTS_META_NAME).is_file():
        return Snapshot(None, None, None)
    path = exports_dir(root)
    try:
        meta = read_exports_meta(path)
        table = path / EXPORTS_CLASSES_NAME
        classes = read_classes(table) if table.is_file() else None
        return Snapshot(meta, classes, read_folds(path / "folds.csv"))
    except (DatasetError, OSError):
        return Snapshot(None, None, None)  # unreadable before: nothing to compare with


def _label(names: Sequence[str], index: int) -> str:
    return f"{names[index]} ({index})"


def class_changes(old: Classes, new: Classes) -> list[str]:
    """One line per kind of change (merged, split, added, removed, renamed, renumbered,
    categories changed), then the class count; empty lines are left out."""
    before = {i: set(ids) for i, ids in enumerate(old.category_ids) if i}
    after = {j: set(ids) for j, ids in enumerate(new.category_ids) if j}
    into = {j: sorted(i for i in before if before[i] & after[j]) for j in after}
    out_of = {i: sorted(j for j in after if before[i] & after[j]) for i in before}
    said: dict[str, list[str]] = {k: [] for k in ("merged", "split", "added", "removed")}
    said |= {"renamed": [], "renumbered": [], "categories changed": []}
    for j, sources in into.items():
        if len(sources) > 1:
            parts = " + ".join(_label(old.names, i) for i in sources)
            said["merged"].append(f"{parts} -> {_label(new.names, j)}")
        elif not sources:
            said["added"].append(_label(new.names, j))
    for i, targets in out_of.items():
        if len(targets) > 1:
            parts = " + ".join(_label(new.names, j) for j in targets)
            said["split"].append(f"{_label(old.names, i)} -> {parts}")
        elif not targets:
            said["removed"].append(f"{_label(old.names, i)} (its categories dropped or ignored)")
        elif len(into[targets[0]]) == 1:
            _one_to_one(old, new, i, targets[0], before[i], after[targets[0]], said)
    lines = [f"{kind}: {', '.join(items)}" for kind, items in said.items() if items]
    count = f"num_classes: {old.num_classes} -> {new.num_classes} (background included)"
    if old.num_classes == new.num_classes:
        count = f"num_classes: {new.num_classes}, unchanged"
    return [*lines, count]


def _one_to_one(
    old: Classes,
    new: Classes,
    i: int,
    j: int,
    ids_before: set[int],
    ids_after: set[int],
    said: dict[str, list[str]],
) -> None:
    if old.names[i] != new.names[j]:
        said["renamed"].append(f"{old.names[i]} -> {new.names[j]} ({j})")
    if i != j:
        said["renumbered"].append(f"{new.names[j]} {i} -> {j}")
    if ids_before != ids_after:
        said["categories changed"].append(
            f"{new.names[j]} ({j}) ids {sorted(ids_before)} -> {sorted(ids_after)}"
        )


def variant_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Variants added, removed, or made again with other content (their hash moved)."""
    was, now = set(old.get("variants") or ()), set(new.get("variants") or ())
    old_src, new_src = old.get("sources") or {}, new.get("sources") or {}
    prefix = new.get("augmented", "data/augmented")
    changed = sorted(
        v for v in was & now if old_src.get(f"{prefix}/{v}") != new_src.get(f"{prefix}/{v}")
    )
    lines = [f"added: {', '.join(sorted(now - was))}"] if now - was else []
    lines += [f"removed: {', '.join(sorted(was - now))}"] if was - now else []
    lines += [f"made again (other content): {', '.join(changed)}"] if changed else []
    return lines or [f"unchanged ({', '.join(sorted(now)) or 'none'})"]


def _fold_lines(old: FoldTable, new: FoldTable) -> list[str]:
    changes = diff_tables(old, new)
    counts = {kind: sum(c.change == kind for c in changes) for kind in ("moved", "added")}
    removed = sum(c.change == "removed" for c in changes)
    lines = [
        f"{counts['moved']} moved between folds, {counts['added']} added, {removed} removed "
        f"({len(new.rows)} images, {new.n_folds} folds"
        + (f", were {old.n_folds})" if old.n_folds != new.n_folds else ")")
    ]
    if changes:
        header = ("fold", "old", "new", "kept", "moved_in", "moved_out", "added", "removed")
        table = [header, *([str(v) for v in row] for row in diff_summary(old, new, changes))]
        widths = [max(len(r[c]) for r in table) for c in range(len(header))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in table]
    return lines


def _coco_lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    was, now = set(old.get("coco") or ()), set(new.get("coco") or ())
    if was != now:
        gained = sorted(now - was)
        lost = sorted(was - now)
        lines.append(
            "files: " + ", ".join([*(f"+{p}" for p in gained[:3]), *(f"-{p}" for p in lost[:3])])
            + (" ..." if len(gained) > 3 or len(lost) > 3 else "")
        )  # fmt: skip
    if old.get("coco_classes") != new.get("coco_classes"):
        lines.append(
            f"categories: {old.get('coco_classes') or 'original'} -> "
            f"{new.get('coco_classes') or 'original'}"
        )
    return lines


def describe_changes(old: Snapshot, new: Snapshot) -> list[str]:
    """The lines ``update`` prints: classes, images, variants, COCO files."""
    if new.meta is None:
        return []
    if old.meta is None:
        return ["no exports before: nothing to compare"]
    sections: list[tuple[str, list[str]]] = []
    if old.classes is not None and new.classes is not None:
        sections.append(("classes", class_changes(old.classes, new.classes)))
    if old.folds is not None and new.folds is not None:
        sections.append(("images", _fold_lines(old.folds, new.folds)))
    sections.append(("variants", variant_changes(old.meta, new.meta)))
    coco = _coco_lines(old.meta, new.meta)
    if coco:
        sections.append(("COCO json", coco))
    photos = str(new.meta.get("images"))
    old_src, new_src = old.meta.get("sources") or {}, new.meta.get("sources") or {}
    if old_src.get(photos) != new_src.get(photos):
        sections.append(("photos", [f"{photos}: other content"]))
    out = []
    for title, lines in sections:
        out.append(f"{title}: {lines[0]}")
        out += [f"  {line}" for line in lines[1:]]
    return out
