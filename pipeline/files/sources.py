"""What the exports were made from: content hashes of their inputs, as DVC 3 writes them.

The export stage records the hash of the masks, the class table, each augment variant and the
image folder it was built with (``exports.json`` ``sources``). A trainer repo that pinned
these folders with ``dvc import`` holds the same hashes in its ``.dvc`` files, so the trainer
API can tell a mix of revisions by comparing a few strings, without reading a pixel.

The hash is DVC 3's own: md5 of a file's bytes; for a folder, md5 of the json list of
``{"md5", "relpath"}`` entries sorted by path, plus ``.dir``. DVC content-addresses its caches
and remotes with it, so the format is stable. Hashing 118k masks costs seconds, so the hash
DVC already wrote into ``dvc.lock`` is reused when its file count and total size match the
folder on disk (a stat per file); a folder without a current lock entry is hashed here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "LOCK_PATH",
    "content_hash",
    "current_lock_hash",
    "dir_md5",
    "file_md5",
    "lock_entries",
    "source_hashes",
    "tree_size",
]

LOCK_PATH = "dvc.lock"
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[tuple[str, Path]]:
    """(POSIX path relative to ``folder``, path) of every file below it, as DVC lists them.

    DVC walks a folder with ``os.walk`` without following links: a link to a file counts as
    that file (its bytes are hashed), a link to a folder is not entered. So are they here: the
    hash and file count stay DVC's, and a link loop (``images/b/loop -> ..``) or a link out of
    the tree costs nothing.
    """
    out = []
    for base, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            path = Path(base) / name
            out.append((path.relative_to(folder).as_posix(), path))
    return out


def dir_md5(folder: str | os.PathLike) -> str:
    """DVC 3's hash of a folder: ``md5(json.dumps(sorted entries, sort_keys=True)) + .dir``."""
    entries = [{"md5": file_md5(p), "relpath": rel} for rel, p in _files(Path(folder))]
    entries.sort(key=lambda e: e["relpath"])
    text = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(text, usedforsecurity=False).hexdigest() + ".dir"


def tree_size(folder: str | os.PathLike) -> tuple[int, int]:
    """(number of files, total bytes) of a folder, from one stat per file."""
    files = _files(Path(folder))
    return len(files), sum(p.stat().st_size for _, p in files)


def lock_entries(lock: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Every hash ``dvc.lock`` holds, by path: stage outputs first, then dependencies."""
    path = Path(lock)
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = doc.get("stages") or {}
    found: dict[str, list[dict[str, Any]]] = {}
    for kind in ("outs", "deps"):
        for stage in stages.values():
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict) and entry.get("md5") and entry.get("path"):
                    found.setdefault(str(entry["path"]), []).append(entry)
    return found


def current_lock_hash(path: Path, entries: Iterable[Mapping[str, Any]]) -> str | None:
    """The first lock hash of folder ``path`` whose file count and size match the disk.

    Within ``dvc repro`` it is the hash DVC just computed: DVC writes each stage's lock as the
    stage finishes, before the next one runs.
    """
    entries = [e for e in entries if str(e["md5"]).endswith(".dir")]
    if not entries or not path.is_dir():
        return None
    nfiles, size = tree_size(path)
    for entry in entries:
        if entry.get("nfiles") == nfiles and entry.get("size") == size:
            return str(entry["md5"])
    return None


def content_hash(root: Path, rel: str, known: Mapping[str, list[dict[str, Any]]]) -> str:
    """The DVC hash of ``root/rel``: a current ``dvc.lock`` entry, else computed here (a file
    always: the class table is a few KB)."""
    path = root / rel
    if not path.is_dir():
        return file_md5(path)
    return current_lock_hash(path, known.get(rel, ())) or dir_md5(path)


def source_hashes(root: Path, paths: Iterable[str], optional: Iterable[str] = ()) -> dict[str, str]:
    """``{path: hash}`` of ``paths`` (each must exist) and of the ``optional`` folders that
    have a current lock entry (the photos: hashing a COCO-sized image folder costs minutes)."""
    known = lock_entries(root / LOCK_PATH)
    out = {rel: content_hash(root, rel, known) for rel in paths}
    for rel in optional:
        found = current_lock_hash(root / rel, known.get(rel, ()))
        if found is not None:
            out[rel] = found
    return dict(sorted(out.items()))
