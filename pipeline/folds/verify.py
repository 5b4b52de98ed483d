"""Every pinned file, verified: the content on disk hashed as DVC hashes it, and compared with
the hash the trainer's ``.dvc`` file pins or the exports recorded (``exports.json``
``sources``).

DVC 3's hash of a file is the md5 of its bytes; of a folder, the md5 of the json list of
``{"md5", "relpath"}`` entries sorted by path, plus ``.dir`` (:mod:`pipeline.files.sources`
computes the same on the pipeline side). Hashing 118k masks takes seconds, so each file's md5
is kept in a memo keyed by its size, modification time and inode: a file that did not change
costs one ``stat``, a changed one is hashed again (``benchmarks/bench_verify.py`` measures
both). The memo lives in ``.dvc/tmp/coco-folds-verified/`` (DVC git-ignores ``.dvc/tmp``); a
folder without ``.dvc`` keeps it in memory for the process only.

When the folder's listing is in the repo's DVC cache (``dvc import`` and ``dvc pull`` put it
there), a mismatch names the files that differ; otherwise it names the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from pipeline.files.fsio import atomic_write_bytes

__all__ = [
    "MEMO_DIR",
    "Mismatch",
    "cache_listing",
    "dir_hash",
    "file_md5",
    "folder_hash",
    "hash_entries",
    "part_hash",
    "verify_path",
]

MEMO_DIR = ".dvc/tmp/coco-folds-verified"  # per repo; DVC git-ignores .dvc/tmp
_CHUNK = 1 << 20
_MEMO_VERSION = 1
# In-process memo: folder -> {relpath: [size, mtime_ns, ino, md5]}, for repos without .dvc
# and to skip re-reading the memo file within one process.
_MEMORY: dict[str, tuple[dict[str, list], str | None]] = {}


class Mismatch(NamedTuple):
    """What differs between a path on disk and the hash it must have."""

    path: str  # relative to the repo root
    expected: str
    found: str
    details: str  # "changed: a.png, b.png; missing: ...", or "" when no listing names them


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(folder: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(POSIX path relative to ``folder``, path, stat) of every file below, links followed
    (as :func:`pipeline.files.sources.dir_md5`)."""
    stack = [(str(folder), "")]
    while stack:
        base, prefix = stack.pop()
        with os.scandir(base) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
                else:
                    yield f"{prefix}{entry.name}", entry.path, entry.stat()


def _memo_path(root: Path, rel: str) -> Path | None:
    if not (root / ".dvc").is_dir():
        return None
    name = rel.strip("/").replace("/", "__") or "_"
    return root / MEMO_DIR / f"{name}.json"


def _load_memo(key: str, path: Path | None) -> tuple[dict[str, list], str | None]:
    """(``{relpath: [size, mtime_ns, ino, md5]}``, the folder hash they gave) or empty."""
    if key in _MEMORY:
        return _MEMORY[key]
    if path is not None and path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") == _MEMO_VERSION and isinstance(doc.get("files"), dict):
                return doc["files"], doc.get("hash")
        except (OSError, ValueError, AttributeError):
            pass  # a broken memo costs a rehash, never a wrong answer
    return {}, None


def folder_hash(root: Path, rel: str) -> tuple[str, dict[str, str]]:
    """DVC's hash of the folder ``root/rel`` and its ``{relpath: md5}``. Unchanged files (same
    size, mtime and inode as when last hashed) come from the memo, the others are hashed now;
    when none changed, the folder hash is the memo's too (no listing to serialise)."""
    folder = root / rel
    key = str(folder.absolute())
    memo_file = _memo_path(root, rel)
    memo, known = _load_memo(key, memo_file)
    fresh: dict[str, list] = {}
    out: dict[str, str] = {}
    changed = False
    for relpath, path, st in _walk(folder):
        seen = memo.get(relpath)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        if seen is not None and seen[:3] == stamp:
            md5 = seen[3]
        else:
            md5, changed = file_md5(path), True
        fresh[relpath] = [*stamp, md5]
        out[relpath] = md5
    changed = changed or len(fresh) != len(memo) or known is None
    found = dir_hash(out) if changed else str(known)
    _MEMORY[key] = (fresh, found)
    if changed and memo_file is not None:
        doc = {"version": _MEMO_VERSION, "folder": rel, "hash": found, "files": fresh}
        with contextlib.suppress(OSError):  # a read-only repo: the memo stays in memory
            atomic_write_bytes(memo_file, json.dumps(doc).encode("utf-8"))
    return found, out


def hash_entries(root: Path, rel: str) -> dict[str, str]:
    """``{relpath: md5}`` of every file below ``root/rel`` (see :func:`folder_hash`)."""
    return folder_hash(root, rel)[1]


def dir_hash(entries: dict[str, str]) -> str:
    """DVC 3's folder hash of ``{relpath: md5}``."""
    listing = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(entries.items())]
    text = json.dumps(listing, sort_keys=True).encode("utf-8")
    return hashlib.md5(text, usedforsecurity=False).hexdigest() + ".dir"


def cache_listing(root: Path, md5: str) -> list[dict[str, str]] | None:
    """The entries (``md5``, ``relpath``) of a folder DVC stored as ``<md5>.dir`` in the repo's
    default cache (DVC 3 layout), or None when it is not there."""
    digest = md5.removesuffix(".dir")
    path = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    if not md5.endswith(".dir") or len(digest) < 3 or not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entries if isinstance(entries, list) else None


def part_hash(entries: list[dict[str, str]], inner: str) -> str | None:
    """DVC's hash of ``inner`` inside a listed folder: a file's md5, or a folder's
    ``md5(json.dumps(sorted entries, sort_keys=True)) + .dir``."""
    below = {
        e["relpath"][len(inner) + 1 :]: e["md5"]
        for e in entries
        if e["relpath"].startswith(inner + "/")
    }
    if not below:
        return next((e["md5"] for e in entries if e["relpath"] == inner), None)
    return dir_hash(below)


def _name_differences(found: dict[str, str], listing: list[dict[str, str]]) -> str:
    """``changed: a, b; missing: c; extra: d`` (at most 3 names each) against a listing."""
    expected = {e["relpath"]: e["md5"] for e in listing}
    kinds = {
        "changed": sorted(p for p in found if p in expected and found[p] != expected[p]),
        "missing": sorted(p for p in expected if p not in found),
        "extra": sorted(p for p in found if p not in expected),
    }
    said = []
    for kind, names in kinds.items():
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            said.append(f"{kind}: {', '.join(names[:3])}{more}")
    return "; ".join(said)


def verify_path(
    root: str | os.PathLike, rel: str, expected: str, on_disk: str | None = None
) -> Mismatch | None:
    """None when ``root/on_disk`` (default ``rel``) holds the content of hash ``expected``
    (a file's md5, or a folder's ``...dir`` hash), else what differs. A path that does not
    exist is a mismatch too."""
    root = Path(root)
    where = on_disk or rel
    path = root / where
    if not path.exists():
        return Mismatch(where, expected, "", "missing")
    if not expected.endswith(".dir"):
        found = file_md5(path) if path.is_file() else "a folder"
        return None if found == expected else Mismatch(where, expected, found, "")
    if not path.is_dir():
        return Mismatch(where, expected, "a file", "")
    found, entries = folder_hash(root, where)
    if found == expected:
        return None
    listing = cache_listing(root, expected)
    return Mismatch(where, expected, found, _name_differences(entries, listing) if listing else "")
