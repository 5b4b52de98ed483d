"""Atomic file writes and paths that cannot escape their root.

Every stage writes through these helpers so an interrupted run never leaves a half-written
file: data goes to a temporary file in the same folder, is flushed, then renamed over the
target (rename is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import itertools
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.files.errors import DatasetError

__all__ = [
    "OutputFolder",
    "STALE_TEMP_SECONDS",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "check_relative",
    "csv_body",
    "csv_text",
    "dumps_json",
    "format_cell",
    "is_plain_name",
    "inside",
]


def _file_mode() -> int:
    """0o666 minus the umask: what ``open()`` would give, where mkstemp gives 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic_file(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Stable JSON text: sorted keys are NOT used so COCO field order is preserved."""
    return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, dumps_json(obj, indent=indent))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The CSV every stage writes: ``\n`` line ends, byte-stable floats."""
    return csv_body(itertools.chain([header], rows))


def csv_body(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as :func:`csv_text` writes them, without a header (a part of a table)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([format_cell(v) for v in row])
    return buf.getvalue()


def atomic_write_csv(
    path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    atomic_write_text(path, csv_text(header, rows))


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, binary: bool = False) -> Iterator[Any]:
    """A text file (UTF-8, ``\n``; bytes with ``binary``) written in a temp file, renamed into
    place on success only.

    For files written piece by piece (a table with one row per image, a canonical json):
    a stage streams them instead of holding them.
    """
    if binary:
        with _atomic_file(path, "wb") as fh:
            yield fh
    else:
        with _atomic_file(path, "w", encoding="utf-8", newline="") as fh:
            yield fh


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike, mode: str, **kwargs: Any) -> Iterator[Any]:
    """A temp file beside ``path``, renamed onto it only when the block ends without error, so
    an interrupted run never leaves a half-written file under the real name.

    The temp file is ``.<name>.<pid>-<host>.<random>.tmp``: a run killed before its rename
    (``kill -9``, a power cut) leaves it, and the next run that writes in that folder removes
    it (:func:`_sweep`). A failed write names ``path`` (a full disk or ``ulimit -f`` says only
    "File too large").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _named(exc, path) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (
            exc.filename == tmp or (exc.filename is None and exc.errno in _WRITING)
        ):
            raise _named(exc, path) from exc
        raise


# Errors a write or a flush raises without a file name: over `ulimit -f`, a full disk or quota,
# a failing device. Other errors of the caller's block are its own (a worker, a socket).
_WRITING = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EIO}


def _named(exc: OSError, path: Path) -> OSError:
    """The same error naming the file being written (not its temp file, or nothing)."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


# ---------------------------------------------------------------- temp files of killed runs


def _host_token() -> str:
    """Where a PID means a process: the host name, its boot and (Linux) its PID namespace,
    as 8 hex digits. Two containers on one host have different PID namespaces."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=4).hexdigest()


_HOST = _host_token()
# A temp file this module names (see _atomic_file), and one of its earlier versions.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})\.[a-z0-9_]+\.tmp")
_OLD_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
# A temp file no live process on this host can own is left this long: long past any write
# (a 460 MB json streams in about a minute) yet short enough that litter does not pile up.
STALE_TEMP_SECONDS = 24 * 3600
_SWEPT: set[str] = set()  # folders swept by this process


def _temp_prefix(name: str) -> str:
    """``.<name>.<pid>-<host>.``, the name cut so the temp name fits in 255 bytes."""
    tail = f".{os.getpid()}-{_HOST}."
    room = 255 - len(tail) - len(".") - len("12345678.tmp")  # mkstemp adds 8 characters
    raw = os.fsencode(name)
    if len(raw) > room:
        name = raw[:room].decode("utf-8", "ignore")  # whole characters only
    return f".{name}{tail}"


def _sweep(folder: Path) -> None:
    """Remove the temp files in ``folder`` that no running write owns, once per process.

    Ours for sure: a temp file of this host (same boot, same PID namespace) whose writer
    process is gone. Two concurrent runs never remove each other's: a live PID is kept,
    whoever it is. A temp file of another host (a shared folder) or without a PID (written
    before the PID was in the name, and then only when its target exists) can not be asked,
    so it is removed once it is older than STALE_TEMP_SECONDS.
    """
    key = os.path.abspath(folder)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if entry.name.endswith(".tmp") and _stale(folder, entry, now):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _stale(folder: Path, entry: os.DirEntry, now: float) -> bool:
    found = _TEMP_NAME.fullmatch(entry.name)
    if found is None:
        found = _OLD_TEMP_NAME.fullmatch(entry.name)
        if found is None or not (folder / found["name"]).exists():
            return False
    try:
        if not entry.is_file(follow_symlinks=False):
            return False
        if found.re is _TEMP_NAME and found["host"] == _HOST:
            return not _alive(int(found["pid"]))
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a process of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def format_cell(value: Any) -> Any:
    """Floats printed with repr precision but no numpy noise, so CSVs are byte-stable."""
    kind = type(value)
    if kind is int or kind is str:  # most cells: passed through without further checks
        return value
    if isinstance(value, float):
        return repr(float(value))
    if hasattr(value, "item"):  # numpy scalar
        return format_cell(value.item())
    return value


def check_relative(file_name: Any, *, file: str, item: str, field: str = "file_name") -> str:
    """Return ``file_name`` as a clean relative POSIX path, or raise.

    Absolute paths, drive letters, backslash tricks and any ``..`` component are rejected:
    outputs are derived from this name and must stay inside their output folder. Empty and
    ``.`` components are dropped, as pathlib does (string operations: 100k names a second).
    """
    if type(file_name) is str and is_plain_name(file_name):
        return file_name
    if not isinstance(file_name, str) or not file_name.strip():
        raise DatasetError("must be a non-empty string", file=file, item=item, field=field)
    name = file_name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(
            f"absolute path {file_name!r} is not allowed", file=file, item=item, field=field
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(
            f"{file_name!r} climbs out of the image folder", file=file, item=item, field=field
        )
    if not parts:
        raise DatasetError(f"{file_name!r} names no file", file=file, item=item, field=field)
    problem = _name_problem(name, parts)
    if problem:
        raise DatasetError(problem, file=file, item=item, field=field)
    return "/".join(parts)


def is_plain_name(name: str) -> bool:
    """A short printable ASCII name that is already clean and relative, so
    :func:`check_relative` would return it unchanged (most names: checked 5x faster)."""
    return (
        0 < len(name) <= _PLAIN_MAX
        and name.isascii()
        and name.isprintable()
        and not name.isspace()
        and "\\" not in name
        and name[0] != "/"
        and name[-1] != "/"
        and name[1:2] != ":"
        and "//" not in name
        and "/./" not in f"/{name}/"
        and "/../" not in f"/{name}/"
    )


# Room left in a path component for what outputs append to a name (``__c<copy>.png``).
_DERIVED_SUFFIX_BYTES = 16
_NAME_MAX = 255  # bytes per path component on common filesystems
_PATH_MAX = 4096
_PLAIN_MAX = (_NAME_MAX - _DERIVED_SUFFIX_BYTES) // 4  # short enough in any encoding


_UNWRITABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _name_problem(name: str, parts: list[str]) -> str | None:
    """Why a name cannot be a file name on disk (or in a one-name-per-line list), or None."""
    bad = _UNWRITABLE.search(name)
    if bad and 0xD800 <= ord(bad.group()) <= 0xDFFF:
        return f"{name!r} contains a lone surrogate (not valid Unicode)"
    if bad:
        return f"{name!r} contains the control character {bad.group()!r}"
    if len(name) <= _PLAIN_MAX:
        return None
    encoded = name.encode("utf-8")
    if len(encoded) > _PATH_MAX:
        return f"path is {len(encoded)} bytes long, over {_PATH_MAX}"
    limit = _NAME_MAX - _DERIVED_SUFFIX_BYTES
    for part in parts:
        if len(part.encode("utf-8")) > limit:
            return (
                f"path component {part[:40]!r}... is {len(part.encode('utf-8'))} bytes; at most "
                f"{limit} fit (outputs append up to {_DERIVED_SUFFIX_BYTES} bytes)"
            )
    return None


def inside(root: str | os.PathLike, relative: str) -> Path:
    """``relative`` joined under ``root``, refused if it could leave ``root``.

    A lexical check (no ``..``, not absolute, see :func:`check_relative`): it costs no system
    call, so a stage can call it for each of 100k files it writes.
    """
    clean = check_relative(relative, file=str(root), item=str(relative))
    return Path(root) / clean


class OutputFolder:
    """A persistent output folder written like a fresh one.

    DVC keeps a ``persist: true`` output between runs, so a stage that rebuilt only part of it
    must leave exactly what a clean build would: files are rewritten only when their bytes
    change (so DVC need not hash them again) and :meth:`remove_others` deletes what this run
    did not write (images no longer in the json).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()

    def write(self, relative: str, data: bytes) -> bool:
        """Write one file unless it already holds ``data``; whether it was written."""
        path = inside(self.root, relative)
        self.written.add(path.relative_to(self.root).as_posix())
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return False
        except OSError:
            pass
        atomic_write_bytes(path, data)
        return True

    def keep(self, relative: str) -> None:
        """Count a file the caller verified as already holding its bytes (not re-read)."""
        self.written.add(check_relative(relative, file=str(self.root), item=relative))

    def signature(self, relative: str) -> tuple[int, int, int] | None:
        """(size, mtime_ns, inode) of a file: unchanged means untouched since it was seen (the
        test DVC's state database makes); None when it is missing."""
        try:
            stat = os.stat(os.path.join(self.root, relative))
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns, stat.st_ino

    def remove_others(self) -> int:
        """Delete files (and emptied folders) this run did not write; how many files."""
        return self._sweep(str(self.root), "")

    def _sweep(self, folder: str, prefix: str) -> int:
        removed = 0
        with os.scandir(folder) as entries:
            children = list(entries)
        for entry in children:
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                removed += self._sweep(entry.path, relative + "/")
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)  # only when empty
            elif relative not in self.written:
                os.unlink(entry.path)
                removed += 1
        return removed
