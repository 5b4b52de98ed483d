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

The walk is one ``os.scandir`` per folder and one stat per file (no ``pathlib`` object per
file: 20k masks cost about 0.05 s), and its result (:func:`file_sizes`) can be handed to
:func:`source_hashes`, so a stage that walked a folder anyway (the export checks every mask is
there) does not walk it twice.
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
    "file_sizes",
    "lock_entries",
    "source_hashes",
    "tree_size",
]

LOCK_PATH = "dvc.lock"
_CHUNK = 1 << 20
# libyaml's safe loader when PyYAML has it: the same values as yaml.safe_load, 4x faster on
# a dvc.lock of a few hundred lines.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(folder: str) -> list[tuple[str, str]]:
    """(POSIX path relative to ``folder``, path) of every file below it, as DVC lists them.

    DVC walks a folder with ``os.walk`` without following links: a link to a file counts as
    that file (its bytes are hashed), a link to a folder is not entered. So are they here: the
    hash and file count stay DVC's, and a link loop (``images/b/loop -> ..``) or a link out of
    the tree costs nothing. Like ``os.walk``, an entry that is not a folder (following links)
    is a file, and a folder that cannot be listed is skipped.
    """
    out: list[tuple[str, str]] = []
    pending = [("", folder)]
    while pending:
        prefix, path = pending.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                out.append((prefix + entry.name, entry.path))
            elif not entry.is_symlink():
                pending.append((f"{prefix}{entry.name}/", entry.path))
    return out


def dir_md5(folder: str | os.PathLike) -> str:
    """DVC 3's hash of a folder: ``md5(json.dumps(sorted entries, sort_keys=True)) + .dir``."""
    entries = [{"md5": file_md5(p), "relpath": rel} for rel, p in _walk(os.fspath(folder))]
    entries.sort(key=lambda e: e["relpath"])
    text = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(text, usedforsecurity=False).hexdigest() + ".dir"


def file_sizes(folder: str | os.PathLike) -> dict[str, int]:
    """``{POSIX path relative to folder: bytes}`` of every file DVC counts below ``folder``
    (a link to a file: its target's size; a broken link raises, as ``os.stat`` does)."""
    return {rel: os.stat(path).st_size for rel, path in _walk(os.fspath(folder))}


def tree_size(folder: str | os.PathLike, sizes: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(number of files, total bytes) of a folder, from one stat per file (or from its
    :func:`file_sizes`, when the caller has them)."""
    sizes = file_sizes(folder) if sizes is None else sizes
    return len(sizes), sum(sizes.values())


def lock_entries(lock: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Every hash ``dvc.lock`` holds, by path: stage outputs first, then dependencies."""
    path = Path(lock)
    if not path.is_file():
        return {}
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
    stages = doc.get("stages") or {}
    found: dict[str, list[dict[str, Any]]] = {}
    for kind in ("outs", "deps"):
        for stage in stages.values():
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict) and entry.get("md5") and entry.get("path"):
                    found.setdefault(str(entry["path"]), []).append(entry)
    return found


def current_lock_hash(
    path: Path, entries: Iterable[Mapping[str, Any]], sizes: Mapping[str, int] | None = None
) -> str | None:
    """The first lock hash of folder ``path`` whose file count and size match the disk
    (``sizes``: the folder's :func:`file_sizes`, when the caller walked it already).

    Within ``dvc repro`` it is the hash DVC just computed: DVC writes each stage's lock as the
    stage finishes, before the next one runs.
    """
    entries = [e for e in entries if str(e["md5"]).endswith(".dir")]
    if not entries or not path.is_dir():
        return None
    nfiles, size = tree_size(path, sizes)
    for entry in entries:
        if entry.get("nfiles") == nfiles and entry.get("size") == size:
            return str(entry["md5"])
    return None


def content_hash(
    root: Path,
    rel: str,
    known: Mapping[str, list[dict[str, Any]]],
    sizes: Mapping[str, int] | None = None,
) -> str:
    """The DVC hash of ``root/rel``: a current ``dvc.lock`` entry, else computed here (a file
    always: the class table is a few KB)."""
    path = root / rel
    if not path.is_dir():
        return file_md5(path)
    return current_lock_hash(path, known.get(rel, ()), sizes) or dir_md5(path)


def source_hashes(
    root: Path,
    paths: Iterable[str],
    optional: Iterable[str] = (),
    walked: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, str]:
    """``{path: hash}`` of ``paths`` (each must exist) and of the ``optional`` folders that
    have a current lock entry (the photos: hashing a COCO-sized image folder costs minutes).
    ``walked`` maps a folder to its :func:`file_sizes` the caller already has."""
    known, walked = lock_entries(root / LOCK_PATH), walked or {}
    out = {rel: content_hash(root, rel, known, walked.get(rel)) for rel in paths}
    for rel in optional:
        found = current_lock_hash(root / rel, known.get(rel, ()), walked.get(rel))
        if found is not None:
            out[rel] = found
    return dict(sorted(out.items()))
