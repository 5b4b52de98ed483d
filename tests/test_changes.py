"""pipeline.folds.changes: what ``update`` says moved between two revisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.files.contracts import Classes, parse_folds
from pipeline.folds.changes import (
    Snapshot,
    class_changes,
    describe_changes,
    snapshot,
    variant_changes,
)

SAMPLE = [  # the sample's categories: (name, id)
    ("general trash", 1), ("paper", 2), ("paper pack", 3), ("metal", 5), ("glass", 8),
    ("plastic", 13), ("styrofoam", 21), ("plastic bag", 34), ("battery", 55), ("clothing", 89),
]  # fmt: skip


def table(classes: list[tuple[str, list[int]]]) -> Classes:
    names = ["background", *(n for n, _ in classes)]
    ids = [[], *(i for _, i in classes)]
    return Classes(names, [(0, 0, 0)] * len(names), ids, np.zeros((256, 3), np.uint8))


V1 = table([(n, [i]) for n, i in SAMPLE])
V2 = table(  # the folds-v2: two pairs merged, 11 classes -> 9
    [
        ("general trash", [1]), ("paper", [2, 3]), ("metal", [5]), ("glass", [8]),
        ("plastic", [13, 34]), ("styrofoam", [21]), ("battery", [55]), ("clothing", [89]),
    ]
)  # fmt: skip


def test_merges_and_renumbering_are_named() -> None:
    assert class_changes(V1, V2) == [
        "merged: paper (2) + paper pack (3) -> paper (2), "
        "plastic (6) + plastic bag (8) -> plastic (5)",
        "renumbered: metal 4 -> 3, glass 5 -> 4, styrofoam 7 -> 6, battery 9 -> 7, "
        "clothing 10 -> 8",
        "num_classes: 11 -> 9 (background included)",
    ]
    back = class_changes(V2, V1)
    assert back[0].startswith("split: paper (2) -> paper (2) + paper pack (3), plastic (5)")
    assert class_changes(V1, V1) == ["num_classes: 11, unchanged"]


def test_added_removed_renamed_and_recategorised() -> None:
    old = table([("can", [1]), ("bottle", [2]), ("bag", [3])])
    new = table([("tin", [1]), ("bottle", [2, 4]), ("box", [7])])
    assert class_changes(old, new) == [
        "added: box (3)",
        "removed: bag (3) (its categories dropped or ignored)",
        "renamed: can -> tin (1)",
        "categories changed: bottle (2) ids [2] -> [2, 4]",
        "num_classes: 4, unchanged",
    ]


def folds_of(labels: dict[str, str]) -> object:
    rows = [
        {"image_id": str(i), "file_name": name, "group": name[0], "fold": fold}
        for i, (name, fold) in enumerate(labels.items())
    ]
    return parse_folds(rows)


def test_describe_changes_in_sections() -> None:
    old_folds = folds_of({"a.jpg": "0", "b.jpg": "1", "c.jpg": "0", "d.jpg": "1"})
    new_folds = folds_of({"a.jpg": "1", "b.jpg": "1", "c.jpg": "0", "e.jpg": "0"})
    old_meta = {
        "variants": ["flip"],
        "sources": {"data/augmented/flip": "a.dir", "photos": "p.dir"},
        "coco": ["fold_0/val.json"],
        "images": "photos",
    }
    new_meta = {
        "variants": ["flip", "geo"],
        "sources": {"data/augmented/flip": "b.dir", "photos": "p.dir"},
        "coco": ["fold_0/train.json", "fold_0/val.json"],
        "coco_classes": "mapped",
        "images": "photos",
    }
    lines = describe_changes(Snapshot(old_meta, V1, old_folds), Snapshot(new_meta, V2, new_folds))
    assert lines[0] == "classes: merged: paper (2) + paper pack (3) -> paper (2), " + (
        "plastic (6) + plastic bag (8) -> plastic (5)"
    )
    assert "  num_classes: 11 -> 9 (background included)" in lines
    assert "images: 1 moved between folds, 1 added, 1 removed (4 images, 2 folds)" in lines
    assert any(line.split() == ["fold", "old", "new", "kept", "moved_in", "moved_out", "added",
                                "removed"] for line in lines)  # fmt: skip
    assert "variants: added: geo" in lines and "  made again (other content): flip" in lines
    assert "COCO json: files: +fold_0/train.json" in lines
    assert "  categories: original -> mapped" in lines
    assert not [line for line in lines if line.startswith("photos")]
    assert describe_changes(Snapshot(None, None, None), Snapshot(new_meta, V2, new_folds)) == [
        "no exports before: nothing to compare"
    ]
    assert variant_changes(new_meta, new_meta) == ["unchanged (flip, geo)"]


def test_snapshot_reads_the_exports_as_they_are(tmp_path: Path) -> None:
    assert snapshot(tmp_path) == Snapshot(None, None, None)
    (tmp_path / "data" / "exports").mkdir(parents=True)
    (tmp_path / "data" / "exports" / "exports.json").write_text("{broken")
    assert snapshot(tmp_path) == Snapshot(None, None, None)
