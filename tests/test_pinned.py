"""pipeline.folds.pinned (``python -m pipeline.folds pin`` and ``diff``): keep a split, and see
what moved between two."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.files.errors import DatasetError
from pipeline.folds import pinned
from tests.conftest import python_exe, run_cli

HEADER = "image_id,file_name,group,fold\n"
OLD = HEADER + "1,a/1.jpg,a,0\n2,a/2.jpg,a,0\n3,b/3.jpg,b,1\n4,b/4.jpg,b,1\n5,c/5.jpg,c,test\n"
# 3 moves 1 -> 0, 4 is removed, 6 is added to fold 1, the rest stay.
NEW = HEADER + "1,a/1.jpg,a,0\n2,a/2.jpg,a,0\n3,b/3.jpg,b,0\n6,d/6.jpg,d,1\n5,c/5.jpg,c,test\n"
EXPECTED = [
    {"image_id": "3", "file_name": "b/3.jpg", "old_fold": "1", "new_fold": "0", "change": "moved"},
    {"image_id": "6", "file_name": "d/6.jpg", "old_fold": "", "new_fold": "1", "change": "added"},
    {"image_id": "4", "file_name": "b/4.jpg", "old_fold": "1", "new_fold": "", "change": "removed"},
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pin_copies_the_current_split(tmp_path: Path) -> None:
    write(tmp_path / "data/splits/folds.csv", OLD)
    done = run_cli([python_exe(), "-m", "pipeline.folds", "pin"], cwd=tmp_path)
    assert (tmp_path / "splits/pinned.csv").read_text() == OLD
    assert "pinned 5 images (2 folds) to splits/pinned.csv" in done.stdout
    run_cli([python_exe(), "-m", "pipeline.folds", "pin", "--to", "other/p.csv"], cwd=tmp_path)
    assert (tmp_path / "other/p.csv").read_text() == OLD
    write(tmp_path / "data/splits/folds.csv", HEADER + "1,a.jpg,a,zero\n")
    with pytest.raises(DatasetError, match="integer or 'test'"):
        pinned.pin(tmp_path)
    assert (tmp_path / "splits/pinned.csv").read_text() == OLD  # a bad split is never pinned
    with pytest.raises(DatasetError, match="dvc repro split"):
        pinned.pin(tmp_path / "empty")


def test_diff_of_two_files(tmp_path: Path) -> None:
    old, new = write(tmp_path / "old.csv", OLD), write(tmp_path / "new.csv", NEW)
    changes, summary = pinned.diff(str(old), str(new))
    assert [c._asdict() for c in changes] == [
        {**e, "image_id": int(e["image_id"])} for e in EXPECTED
    ]
    assert summary == [
        ["0", 2, 3, 2, 1, 0, 0, 0],
        ["1", 2, 1, 0, 0, 1, 1, 1],
        ["test", 1, 1, 1, 0, 0, 0, 0],
        ["total", 5, 5, 3, 1, 1, 1, 1],
    ]
    out = tmp_path / "changes.csv"
    done = run_cli(
        [python_exe(), "-m", "pipeline.folds", "diff", str(old), str(new), "--csv", str(out)],
        cwd=tmp_path,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "fold", "old", "new", "kept", "moved_in", "moved_out", "added", "removed"
    ]  # fmt: skip
    assert lines[4].split() == ["total", "5", "5", "3", "1", "1", "1", "1"]
    assert ["3", "b/3.jpg", "1", "0", "moved"] in [line.split() for line in lines]
    with open(out, newline="") as fh:
        assert list(csv.DictReader(fh)) == EXPECTED
    same = run_cli([python_exe(), "-m", "pipeline.folds", "diff", str(old), str(old)], cwd=tmp_path)
    assert same.stdout.splitlines()[-1].split() == ["total", "5", "5", "5", "0", "0", "0", "0"]


def test_diff_matches_images_by_file_name(tmp_path: Path) -> None:
    """A re-exported json may renumber its images: the same file in the same fold is no
    change, as for ``split.stable``; a file under a new name is removed plus added."""
    renumbered = OLD.replace("1,a/1.jpg", "11,a/1.jpg").replace("3,b/3.jpg,b,1", "13,b/3.jpg,b,0")
    renamed = OLD.replace("2,a/2.jpg", "2,a/2b.jpg")
    old = write(tmp_path / "old.csv", OLD)
    changes, summary = pinned.diff(str(old), str(write(tmp_path / "renumbered.csv", renumbered)))
    assert changes == [pinned.Change(13, "b/3.jpg", "1", "0", "moved")]
    assert summary[-1] == ["total", 5, 5, 4, 1, 1, 0, 0]
    changes, _ = pinned.diff(str(old), str(write(tmp_path / "renamed.csv", renamed)))
    assert [(c.file_name, c.change) for c in changes] == [
        ("a/2b.jpg", "added"),
        ("a/2.jpg", "removed"),
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed")
def test_diff_of_two_git_revisions(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    write(tmp_path / "data/splits/folds.csv", OLD)
    write(tmp_path / "splits/pinned.csv", OLD)
    git("add", "-A")
    git("commit", "-qm", "v1")
    write(tmp_path / "data/splits/folds.csv", NEW)
    git("commit", "-qam", "v2")
    expected = [{**e, "image_id": int(e["image_id"])} for e in EXPECTED]
    for old, new in (("HEAD~1", "HEAD"), ("HEAD~1:data/splits/folds.csv", "HEAD")):
        changes, _ = pinned.diff(old, new, root=tmp_path)
        assert [c._asdict() for c in changes] == expected
    # REV:path reads any committed folds table, e.g. the pinned split.
    assert pinned.diff("HEAD:splits/pinned.csv", "HEAD~1", root=tmp_path)[0] == []
    done = run_cli(
        [python_exe(), "-m", "pipeline.folds", "diff", "HEAD~1", "HEAD", "--show", "1"],
        cwd=tmp_path,
    )
    assert "... 2 more (--csv FILE lists every change)" in done.stdout
    bad = run_cli(
        [python_exe(), "-m", "pipeline.folds", "diff", "nope", "HEAD"], cwd=tmp_path, check=False
    )
    assert bad.returncode == 1 and "neither a file nor a git revision" in bad.stderr


def test_diff_tables_and_summary_on_parsed_tables() -> None:
    from pipeline.files.contracts import folds_from_bytes

    old = folds_from_bytes(OLD.encode(), "old")
    new = folds_from_bytes(NEW.encode(), "new")
    changes = pinned.diff_tables(old, new)
    assert [c.change for c in changes] == ["moved", "added", "removed"]
    summary = pinned.diff_summary(old, new, changes)
    assert [row[0] for row in summary] == ["0", "1", "test", "total"]  # test after the folds
    assert pinned.diff_tables(new, new) == []
    assert pinned.Change._fields == pinned.DIFF_COLUMNS


def test_read_split_of_a_missing_file_outside_git(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="neither a file nor a git revision holding"):
        pinned.read_split(str(tmp_path / "absent.csv"), root=tmp_path)
    table = pinned.read_split(str(write(tmp_path / "f.csv", OLD)), root=tmp_path)
    assert [r.image_id for r in table.rows] == [1, 2, 3, 4, 5]


def test_pin_to_an_absolute_path(tmp_path: Path) -> None:
    write(tmp_path / "repo/data/splits/folds.csv", OLD)
    target = tmp_path / "elsewhere" / "kept.csv"
    table = pinned.pin(tmp_path / "repo", to=target)
    assert target.read_text() == OLD and table.n_folds == 2
    assert pinned.PINNED_PATH == "splits/pinned.csv"  # what split.stable_from names
