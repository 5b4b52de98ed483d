"""Content hashes of the exports' inputs: DVC 3's own, reused from dvc.lock when current."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.files.sources import (
    LOCK_PATH,
    content_hash,
    dir_md5,
    file_md5,
    file_sizes,
    lock_entries,
    source_hashes,
    tree_size,
)

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")


def tree(root: Path) -> Path:
    for rel, data in {
        "a.png": b"\x89PNG one",
        "sub/b.png": b"two",
        "sub/deeper/c.png": b"",
        "z b.txt": "é\r\n".encode(),  # DVC 3 hashes bytes as they are, CRLF too
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(DVC) is None and not Path(DVC).exists(), reason="no dvc CLI")
def test_hashes_are_the_ones_dvc_writes(tmp_path: Path) -> None:
    """The same strings `dvc add` (and so dvc.lock and `dvc import`) write."""
    repo = tmp_path / "repo"
    tree(repo / "folder")
    (repo / "one.json").write_text('{"a": 1}\n')
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    for args in (["init", "-q", "--no-scm"], ["add", "-q", "folder"], ["add", "-q", "one.json"]):
        subprocess.run([DVC, *args], cwd=repo, env=env, check=True, capture_output=True)
    for name, ours in (("folder", dir_md5(repo / "folder")), ("one.json", None)):
        doc = yaml.safe_load((repo / f"{name}.dvc").read_text())
        expected = doc["outs"][0]["md5"]
        assert (ours or file_md5(repo / name)) == expected


def test_lock_entry_is_reused_only_when_it_fits_the_disk(tmp_path: Path) -> None:
    root = tmp_path
    tree(root / "data" / "masks")
    (root / "data" / "classes.json").write_text("{}\n")
    nfiles, size = 4, len(b"\x89PNG one") + 3 + 0 + len("é\r\n".encode())
    lock = {
        "schema": "2.0",
        "stages": {
            "masks": {
                "cmd": "x",
                "outs": [
                    {"path": "data/masks", "md5": "fromlock.dir", "size": size, "nfiles": nfiles},
                    {"path": "data/classes.json", "md5": "stale", "size": 3},
                ],
            },
            "validate": {
                "deps": [{"path": "photos", "md5": "photos.dir", "size": 1, "nfiles": 1}],
            },
        },
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    known = lock_entries(root / "dvc.lock")
    assert content_hash(root, "data/masks", known) == "fromlock.dir"  # not re-hashed
    assert content_hash(root, "data/classes.json", known) == file_md5(root / "data/classes.json")
    (root / "data" / "masks" / "new.png").write_bytes(b"x")  # the lock no longer fits
    assert content_hash(root, "data/masks", known) == dir_md5(root / "data" / "masks")
    # Photos come only from a lock entry that fits; never hashed here.
    (root / "photos").mkdir()
    (root / "photos" / "p.jpg").write_bytes(b"j")
    got = source_hashes(root, ["data/classes.json"], optional=["photos", "absent"])
    assert got == {
        "data/classes.json": file_md5(root / "data/classes.json"),
        "photos": "photos.dir",
    }
    (root / "photos" / "q.jpg").write_bytes(b"k")
    assert "photos" not in source_hashes(root, [], optional=["photos"])
    assert lock_entries(root / "missing.lock") == {}


def tree_with_links(folder: Path, outside: Path) -> Path:
    """Files, a link to a file, a folder link back up (a loop) and one out of the tree."""
    tree(folder)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "far.png").write_bytes(b"far away")
    os.symlink("a.png", folder / "a-link.png")
    os.symlink("..", folder / "sub" / "loop")
    os.symlink(outside, folder / "out")
    return folder


def test_folder_links_are_not_entered_file_links_are_hashed(tmp_path: Path) -> None:
    """A link loop (or a link out of the tree) is not walked: the walk ends, and counts what
    DVC counts (the test below compares with `dvc add`)."""
    folder = tree_with_links(tmp_path / "folder", tmp_path / "outside")
    plain = tree(tmp_path / "plain")
    (plain / "a-link.png").write_bytes((plain / "a.png").read_bytes())
    assert dir_md5(folder) == dir_md5(plain)
    assert tree_size(folder) == (5, tree_size(plain)[1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(DVC) is None and not Path(DVC).exists(), reason="no dvc CLI")
def test_linked_folders_are_hashed_as_dvc_does(tmp_path: Path) -> None:
    """`dvc add` of a folder holding a link loop, a link out and a file link: same hash,
    file count and size (so a dvc.lock entry of the image folder is matched)."""
    repo = tmp_path / "repo"
    tree_with_links(repo / "folder", tmp_path / "outside")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    for args in (["init", "-q", "--no-scm"], ["add", "-q", "folder"]):
        subprocess.run([DVC, *args], cwd=repo, env=env, check=True, capture_output=True)
    out = yaml.safe_load((repo / "folder.dvc").read_text())["outs"][0]
    assert dir_md5(repo / "folder") == out["md5"]
    assert tree_size(repo / "folder") == (out["nfiles"], out["size"])


def walked_by_os_walk(folder: Path) -> dict[str, int]:
    """What the earlier walk (``os.walk`` and ``pathlib``) found: the reference."""
    out = {}
    for base, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            path = Path(base) / name
            out[path.relative_to(folder).as_posix()] = path.stat().st_size
    return out


def test_one_scandir_walk_finds_what_os_walk_finds(tmp_path: Path) -> None:
    folder = tree_with_links(tmp_path / "folder", tmp_path / "outside")
    (folder / "sub" / "deeper" / "é ,q.png").write_bytes(b"12345")
    assert file_sizes(folder) == walked_by_os_walk(folder)
    assert tree_size(folder) == (6, sum(walked_by_os_walk(folder).values()))
    assert file_sizes(tmp_path / "absent") == {}
    os.symlink("nowhere.png", folder / "broken.png")  # counted by DVC's walk, not readable
    with pytest.raises(FileNotFoundError):
        file_sizes(folder)


def test_a_walk_the_caller_made_is_used_not_repeated(tmp_path: Path) -> None:
    """The export walks the masks anyway: handing that walk over gives the same hashes, and
    it is what decides (a walk that does not fit the lock entry means hashing here)."""
    root = tmp_path
    folder = tree(root / "data" / "masks")
    sizes = file_sizes(folder)
    nfiles, size = tree_size(folder)
    lock = {"stages": {"masks": {"outs": [
        {"path": "data/masks", "md5": "fromlock.dir", "size": size, "nfiles": nfiles}
    ]}}}  # fmt: skip
    (root / LOCK_PATH).write_text(yaml.safe_dump(lock))
    assert lock_entries(root / LOCK_PATH) == {"data/masks": lock["stages"]["masks"]["outs"]}
    plain = source_hashes(root, ["data/masks"])
    assert plain == {"data/masks": "fromlock.dir"}
    assert source_hashes(root, ["data/masks"], walked={"data/masks": sizes}) == plain
    other = {**sizes, "extra.png": 1}
    got = source_hashes(root, ["data/masks"], walked={"data/masks": other})
    assert got == {"data/masks": dir_md5(folder)}
