"""pipeline.folds.verify: DVC's hashes computed here, memoised by size, mtime and inode, and
mismatches named from the DVC cache's listing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.files import sources
from pipeline.folds import verify
from pipeline.folds.verify import (
    MEMO_DIR,
    cache_listing,
    dir_hash,
    hash_entries,
    verify_path,
)


@pytest.fixture(autouse=True)
def fresh_memory() -> None:
    verify._MEMORY.clear()


def folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / "part" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "part" / rel).write_bytes(data)
    return root / "part"


def store_listing(root: Path, part: Path) -> str:
    """The folder's listing in the repo's DVC cache, as `dvc import` stores it; its hash."""
    entries = sorted(
        ({"md5": sources.file_md5(p), "relpath": p.relative_to(part).as_posix()}
         for p in part.rglob("*") if p.is_file()),
        key=lambda e: e["relpath"],
    )  # fmt: skip
    digest = dir_hash({e["relpath"]: e["md5"] for e in entries})
    path = root / ".dvc/cache/files/md5" / digest[:2] / f"{digest[2:-4]}.dir"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, sort_keys=True))
    return digest


def test_hashes_are_dvcs(tmp_path: Path) -> None:
    part = folder(tmp_path, {"a.png": b"1", "sub/b.png": b"22", "sub/deeper/c": b""})
    assert dir_hash(hash_entries(tmp_path, "part")) == sources.dir_md5(part)
    assert verify.file_md5(part / "a.png") == sources.file_md5(part / "a.png")
    assert verify_path(tmp_path, "part", sources.dir_md5(part)) is None
    assert verify_path(tmp_path, "part/a.png", sources.file_md5(part / "a.png")) is None


def test_unchanged_files_are_not_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".dvc").mkdir()
    part = folder(tmp_path, {f"{i}.png": bytes([i]) * 10 for i in range(20)})
    hashed: list[str] = []
    real = verify.file_md5
    monkeypatch.setattr(verify, "file_md5", lambda p: hashed.append(str(p)) or real(p))
    first = hash_entries(tmp_path, "part")
    assert len(hashed) == 20
    memo = tmp_path / MEMO_DIR / "part.json"
    assert set(json.loads(memo.read_text())["files"]) == set(first)
    verify._MEMORY.clear()  # a new process: the memo comes from .dvc/tmp
    hashed.clear()
    assert hash_entries(tmp_path, "part") == first and hashed == []
    # Nothing changed: the folder hash is the memo's too, no listing serialised again.
    monkeypatch.setattr(verify, "dir_hash", lambda entries: pytest.fail("hashed again"))
    assert verify.folder_hash(tmp_path, "part")[0] == sources.dir_md5(part)
    monkeypatch.undo()
    monkeypatch.setattr(verify, "file_md5", lambda p: hashed.append(str(p)) or real(p))
    # An edit (new mtime) or a replacement (new inode) is hashed again, even at the same size.
    (part / "3.png").write_bytes(b"\x09" * 10)
    os.replace(part / "4.png", part / "4.tmp")
    (part / "4.tmp").rename(part / "4.png")  # same content, same inode: still unchanged
    (part / "5.png").unlink()
    (part / "5.png").write_bytes(bytes([5]) * 10)  # new file, same bytes
    again = hash_entries(tmp_path, "part")
    assert sorted(Path(p).name for p in hashed) in (["3.png", "5.png"], ["3.png"])
    assert again["3.png"] != first["3.png"] and again["5.png"] == first["5.png"]


def test_a_broken_memo_costs_a_rehash_only(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    folder(tmp_path, {"a": b"x"})
    memo = tmp_path / MEMO_DIR / "part.json"
    memo.parent.mkdir(parents=True)
    memo.write_text("{not json")
    assert hash_entries(tmp_path, "part") == {"a": sources.file_md5(tmp_path / "part" / "a")}
    # A memo that lies about a file whose stamp no longer matches is ignored for it.
    doc = json.loads(memo.read_text())
    doc["files"]["a"][0] += 1
    doc["files"]["a"][3] = "0" * 32
    memo.write_text(json.dumps(doc))
    verify._MEMORY.clear()
    assert hash_entries(tmp_path, "part")["a"] != "0" * 32


def test_mismatches_name_the_files_when_the_listing_is_cached(tmp_path: Path) -> None:
    part = folder(tmp_path, {f"m{i}.png": bytes([i]) for i in range(6)})
    pinned = store_listing(tmp_path, part)
    assert cache_listing(tmp_path, pinned) is not None
    for i in range(4):
        (part / f"m{i}.png").write_bytes(b"other")
    (part / "m5.png").unlink()
    (part / "new.png").write_bytes(b"n")
    found = verify_path(tmp_path, "part", pinned)
    assert found is not None and found.expected == pinned and found.found.endswith(".dir")
    assert found.details == (
        "changed: m0.png, m1.png, m2.png and 1 more; missing: m5.png; extra: new.png"
    )
    # Without the listing the folder alone is named.
    assert verify_path(tmp_path, "part", "f" * 32 + ".dir").details == ""


def test_a_missing_or_mistyped_path_is_a_mismatch(tmp_path: Path) -> None:
    part = folder(tmp_path, {"a": b"x"})
    assert verify_path(tmp_path, "absent", "0" * 32).details == "missing"
    assert verify_path(tmp_path, "part", "0" * 32).found == "a folder"
    assert verify_path(tmp_path, "part/a", "0" * 32 + ".dir").found == "a file"
    on_disk = verify_path(tmp_path, "data/classes.json", "0" * 32, on_disk="part/a")
    assert on_disk.path == "part/a" and on_disk.found == sources.file_md5(part / "a")
