"""Per-image results kept by content, so a grown dataset recomputes only what changed.

DVC re-runs a stage whose inputs changed; adding 1% new images would repaint every mask. So
stages key each image's result by a hash of everything that decides its bytes (the item's own
inputs, the settings, and the code version: the source of the modules that produce it plus the
versions of the libraries whose encoders and rasterisers decide bytes) and keep results in a
local content-addressed store (``cache.dir``, default ``.cache/coco-folds``, git- and
dvc-ignored; an absolute path shares it across clones and ``dvc exp run --temp`` copies). A run
reuses the entries whose key did not change and computes the rest; outputs stay byte-identical
to a clean build because an entry holds exactly what the computation returned.

Entries are written to a temp file and renamed into place, so two concurrent runs at worst
write the same entry twice. Each entry carries a BLAKE2b checksum of its payload, checked on
every read (memos too): a flipped, truncated or altered entry is removed, counted in the stage's
summary and recomputed, never passed on. The store owns only what it wrote: it marks its
folder (``COCO-FOLDS-STORE``) when it makes it, adopts an earlier version's store that holds
nothing but entry names, and refuses any other non-empty folder, or one overlapping an output,
the image folder or the annotations (:func:`check_location`). The size limit
(``cache.max_size_gb``): after a stage, the least recently used entries beyond it are removed,
only names of the entry pattern inside a marked store; ``python -m pipeline cache prune`` does
the same on demand. The store never changes outputs, so it is not a DVC dependency.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from pipeline.files.environment import installed_versions
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, atomic_write_text
from pipeline.files.params import PARAMS_FILE

__all__ = [
    "MARKER",
    "ItemCache",
    "check_location",
    "claim",
    "damaged_entries",
    "seal",
    "unseal",
    "Memo",
    "cached_map",
    "code_version",
    "content_hash",
    "file_stamp",
    "item_key",
    "open_cache",
    "pack",
    "unpack",
]


def code_version(modules: Iterable[ModuleType]) -> str:
    """Hash of the modules' source and the byte-deciding libraries' versions."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode() + b"\0" + Path(module.__file__).read_bytes())
    for name, version in sorted(installed_versions().items()):
        digest.update(f"{name}={version}".encode())
    return digest.hexdigest()


def item_key(*parts: bytes | str) -> str:
    """The key of one item: sha256 of its parts, each length-prefixed (no ambiguity)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


MARKER = "COCO-FOLDS-STORE"  # written at creation: only a marked folder is ours to prune
_MARKER_TEXT = "coco-folds item store: entries named by content key; safe to delete whole\n"
_MAGIC = b"CFS1"  # entry format: magic, BLAKE2b-128 of the payload, payload
_DIGEST = 16
_SUBDIR = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{62}")
_MEMO = re.compile(r"[A-Za-z0-9_-]+\.msgpack")
# Temp files of an interrupted write (fsio's ``.<name>.*.tmp``) and of earlier versions.
_TEMP = re.compile(
    r"\.([0-9a-f]{62}|[A-Za-z0-9_-]+\.msgpack|COCO-FOLDS-STORE)\..*\.tmp|\.(entry|memo)\..*"
)  # the marker's too: a concurrent run may be writing it
_STALE_TEMP_SECONDS = 3600  # a temp file older than this belongs to no running write
_USAGE = "store-usage"  # the size the last prune walk found, and when
_USAGE_MAX_AGE = 86400.0
_DAMAGED: list[str] = []  # entries found damaged in this process (removed and recomputed)


def seal(payload: bytes) -> bytes:
    """An entry's bytes: the payload behind its checksum, so a flipped, truncated or altered
    entry is never passed on."""
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload


def unseal(data: bytes) -> bytes | None:
    """The payload of a whole, unaltered entry; None for anything else."""
    head = len(_MAGIC) + _DIGEST
    if len(data) < head or not data.startswith(_MAGIC):
        return None
    payload = data[head:]
    digest = hashlib.blake2b(payload, digest_size=_DIGEST).digest()
    return payload if digest == data[len(_MAGIC) : head] else None


def damaged_entries() -> list[str]:
    """The store entries this process found damaged (removed, recomputed), for the summary."""
    return list(_DAMAGED)


def _store_fail(path: Path, message: str) -> DatasetError:
    return DatasetError(f"{path}: {message}", file=PARAMS_FILE, field="cache.dir")


def _ours(child: Path) -> bool:
    """A name the store writes: a key's sub-folder of entries, a memo, a temp file, the marker."""
    name = child.name
    if child.is_dir() and not child.is_symlink():
        return bool(_SUBDIR.fullmatch(name)) and all(
            f.is_file() and (_ENTRY.fullmatch(f.name) or _TEMP.fullmatch(f.name))
            for f in child.iterdir()
        )
    return child.is_file() and bool(
        name == MARKER or _MEMO.fullmatch(name) or _TEMP.fullmatch(name)
    )


def claim(directory: Path) -> Path:
    """The store's folder, created and marked, or an earlier version's store (only entry names)
    adopted and marked; a folder holding anything else is refused, never written to."""
    if directory.exists() and not directory.is_dir():
        raise _store_fail(directory, "exists and is not a folder")
    if (directory / MARKER).is_file():
        return directory
    if directory.is_dir():
        strangers = [c.name for c in directory.iterdir() if not _ours(c)]
        if strangers:
            raise _store_fail(
                directory,
                f"holds files the item store did not write ({strangers[0]!r}, ...): point "
                "cache.dir at a new or empty folder (the store touches only what it wrote)",
            )
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / MARKER, _MARKER_TEXT)
    return directory


def check_location(directory: Path, protected: Iterable[Path]) -> None:
    """Refuse a store inside (or around) an output, the image folder or the annotations: a
    prune there would remove what the pipeline or the user needs."""
    here = directory.resolve()
    for path in protected:
        other = path.resolve()
        if here == other or other in here.parents or here in other.parents:
            raise _store_fail(
                directory,
                f"overlaps {path}, which the pipeline reads or writes; choose a separate folder",
            )


class ItemCache:
    """A directory of entries named by key; ``None`` directory = no caching."""

    def __init__(self, directory: str | os.PathLike | None, max_bytes: int) -> None:
        self.dir = claim(Path(directory)) if directory else None
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self.added = 0  # bytes this process wrote to the store

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / key[2:]

    def has(self, key: str) -> bool:
        return self.dir is not None and self._path(key).is_file()

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``; a damaged entry is removed and counted (a miss)."""
        if self.dir is None:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        payload = unseal(data)
        if payload is None:
            self._discard(path, data)
            self.misses += 1
            return None
        self.hits += 1
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return payload

    def _discard(self, path: Path, data: bytes) -> None:
        """A damaged entry goes (an earlier version's entry, without a checksum, goes quietly)."""
        if data.startswith(_MAGIC):
            _DAMAGED.append(str(path))
        with contextlib.suppress(OSError):
            path.unlink()

    def put(self, key: str, data: bytes) -> None:
        if self.dir is not None:
            sealed = seal(data)
            atomic_write_bytes(self._path(key), sealed)
            self.added += len(sealed)

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        """(mtime, size, path) of every entry; stale temp files of killed writes go on the way."""
        assert self.dir is not None
        now = time.time()
        for sub in self.dir.iterdir():
            if not (_SUBDIR.fullmatch(sub.name) and sub.is_dir() and not sub.is_symlink()):
                continue
            for path in sub.iterdir():
                with contextlib.suppress(OSError):
                    stat = path.lstat()
                    if _ENTRY.fullmatch(path.name) and path.is_file():
                        yield stat.st_mtime, stat.st_size, path
                    elif _TEMP.fullmatch(path.name) and now - stat.st_mtime > _STALE_TEMP_SECONDS:
                        path.unlink()

    def settle(self) -> None:
        """After a stage: prune only when the store may have outgrown its limit. The size the
        last walk found plus what runs wrote since is an upper bound that needs no walk (a
        store of 100k entries takes seconds to walk); a day-old bound is walked anew."""
        if self.dir is None or not (self.dir / MARKER).is_file():
            return
        usage = Memo(self, _USAGE)
        size, walked = usage.entries.get("size", 0), usage.entries.get("walked", 0)
        bound = size + self.added
        if walked and bound <= self.max_bytes and time.time() - walked < _USAGE_MAX_AGE:
            usage.put("size", bound)
            usage.put("walked", walked)
            usage.save()
            return
        self.prune()

    def prune(self) -> tuple[int, int]:
        """Remove least recently used entries until the store fits; (removed, bytes kept).
        Only names of the entry pattern inside the marked store are ever removed."""
        if self.dir is None or not (self.dir / MARKER).is_file():
            return 0, 0
        kept = self._prune()
        usage = Memo(self, _USAGE)
        usage.put("size", kept[1])
        usage.put("walked", time.time())
        usage.save()
        return kept

    def _prune(self) -> tuple[int, int]:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                removed += 1
        return removed, total


def pack(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


def unpack(data: bytes) -> object:
    return msgspec.msgpack.decode(data)


def open_cache(directory: str | None, max_size_gb: float, root: Path) -> ItemCache:
    """The store of a stage run; a relative ``cache.dir`` is under the repository ``root``."""
    if not directory:
        return ItemCache(None, 0)
    path = Path(directory)
    return ItemCache(path if path.is_absolute() else root / path, int(max_size_gb * 2**30))


def cached_map(
    cache: ItemCache,
    keys: list[str],
    compute: Callable[[list[int]], Iterator[Any]],
    codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]],
) -> Iterator[Any]:
    """Results for items ``0..len(keys)-1`` in order: stored ones read, the rest computed.

    ``compute(indices)`` yields the results of those items in order (it runs the executor on
    them); every computed result is stored. An entry that vanished between the check and the
    read (a concurrent prune) is computed on its own.
    """
    encode, decode = codec
    stored = [cache.has(key) for key in keys]
    computed = compute([i for i, hit in enumerate(stored) if not hit])
    for index, (key, hit) in enumerate(zip(keys, stored, strict=True)):
        data = cache.get(key) if hit else None
        if data is not None:
            yield decode(data)
            continue
        result = next(iter(compute([index]))) if hit else next(computed)
        cache.put(key, encode(result))
        yield result


class Memo:
    """Small results (an image check, a file's content hash) in one file of the store, keyed
    by what decides them; loaded once per run (verified like an entry: a damaged memo is
    dropped and its results recomputed) and saved atomically at its end."""

    def __init__(self, cache: ItemCache, name: str) -> None:
        self.path = cache.dir / f"{name}.msgpack" if cache.dir is not None else None
        self.entries: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            with contextlib.suppress(OSError):
                self.entries = self._load(self.path.read_bytes())
        self.used: dict[str, Any] = {}

    def _load(self, data: bytes) -> dict[str, Any]:
        payload = unseal(data)
        if payload is not None:
            with contextlib.suppress(msgspec.DecodeError, TypeError, ValueError):
                return dict(msgspec.msgpack.decode(payload))
        if data.startswith(_MAGIC):
            _DAMAGED.append(str(self.path))
        return {}

    def get(self, key: str) -> Any:
        value = self.entries.get(key)
        if value is not None:
            self.used[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        self.used[key] = value

    def save(self) -> None:
        """Keep the entries this run used (a stale entry is never needed again)."""
        if self.path is not None:
            atomic_write_bytes(self.path, seal(msgspec.msgpack.encode(self.used)))


def file_stamp(path: str | os.PathLike) -> str | None:
    """Path, size and modification time of a file: unchanged means not re-read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"


def content_hash(path: str | os.PathLike, memo: Memo) -> str:
    """sha256 of a file's bytes, remembered by its stamp (a file is hashed once)."""
    stamp = file_stamp(path)
    known = memo.get(stamp) if stamp else None
    if known is not None:
        return known
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if stamp:
        memo.put(stamp, digest)
    return digest
