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
write the same entry twice. The store has a size limit (``cache.max_size_gb``): after a stage,
the least recently used entries beyond it are removed; ``python -m pipeline cache prune``
does the same on demand. The store never changes outputs, so it is not a DVC dependency.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from pipeline.files.environment import installed_versions

__all__ = [
    "ItemCache",
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


class ItemCache:
    """A directory of entries named by key; ``None`` directory = no caching."""

    def __init__(self, directory: str | os.PathLike | None, max_bytes: int) -> None:
        self.dir = Path(directory) if directory else None
        self.max_bytes = max_bytes
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / key[2:]

    def has(self, key: str) -> bool:
        return self.dir is not None and self._path(key).is_file()

    def get(self, key: str) -> bytes | None:
        if self.dir is None:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        self.hits += 1
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return data

    def put(self, key: str, data: bytes) -> None:
        if self.dir is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def prune(self) -> tuple[int, int]:
        """Remove least recently used entries until the store fits; (removed, bytes kept)."""
        if self.dir is None or not self.dir.is_dir():
            return 0, 0
        entries = []
        for sub in self.dir.iterdir():
            for path in sub.iterdir() if sub.is_dir() else ():
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    entries.append((stat.st_mtime, stat.st_size, path))
        entries.sort()
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
    by what decides them; loaded once per run and saved (atomically) at its end."""

    def __init__(self, cache: ItemCache, name: str) -> None:
        self.path = cache.dir / f"{name}.msgpack" if cache.dir is not None else None
        self.entries: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            with contextlib.suppress(msgspec.DecodeError, OSError):
                self.entries = dict(msgspec.msgpack.decode(self.path.read_bytes()))
        self.used: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        value = self.entries.get(key)
        if value is not None:
            self.used[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        self.used[key] = value

    def save(self) -> None:
        """Keep the entries this run used (a stale entry is never needed again)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".memo.", dir=self.path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.msgpack.encode(self.used))
        os.replace(tmp, self.path)


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
