"""The command line every stage shares: ``python -m pipeline.stages.<stage> [args]`` (what
dvc.yaml runs, naming the module it runs) or ``python -m pipeline <stage> [args]``.

Each stage module has ``run(params, root, ...) -> str`` (the work, returning a one-line summary
with its counts) and a ``main(argv)`` that calls :func:`stage_main`: argument parsing, params,
timing and the summary line ``<stage>: <counts> (<seconds> s)`` live here once, and so does
:func:`run_command`, which turns any failure into one line.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pipeline.execution.itemcache import check_location, damaged_entries
from pipeline.files.contracts import output_paths
from pipeline.files.environment import check_environment
from pipeline.files.errors import DatasetError
from pipeline.files.params import Params, load_params

__all__ = [
    "check_store_location",
    "command",
    "fail",
    "os_error_line",
    "run_command",
    "stage_main",
]


def check_store_location(params: Params, root: Path) -> None:
    """``cache.dir`` apart from every output, the image folder and the annotations."""
    if not params.cache.dir:
        return
    store = Path(params.cache.dir)
    store = store if store.is_absolute() else root / store
    dataset = [params.dataset.annotations, params.dataset.images]
    protected = [root / p for p in output_paths()] + [root / p for p in dataset if p]
    check_location(store, protected)


def _damage_note(before: int) -> str:
    """The store entries this stage found damaged (the list is per process: tests run many
    stages in one)."""
    found = damaged_entries()[before:]
    if not found:
        return ""
    return f"; {len(found)} damaged store entries removed and recomputed (first: {found[0]})"


def stage_main(
    stage: str,
    doc: str | None,
    argv: list[str] | None,
    work: Callable[[Params, Path, argparse.Namespace], str],
    add_arguments: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> None:
    """Parse ``argv``, load params.yaml, run ``work`` and print its summary with the time."""
    parser = argparse.ArgumentParser(
        prog=f"python -m pipeline {stage}",
        description=(doc or "").strip().splitlines()[0] if doc else None,
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    check_environment(Path("."))
    params = load_params()
    check_store_location(params, Path("."))
    start, damaged = time.perf_counter(), len(damaged_entries())
    summary = work(params, Path("."), args)
    print(f"{stage}: {summary}{_damage_note(damaged)} ({time.perf_counter() - start:.1f} s)")


def run_command(command: str, main: Callable[[list[str]], None], argv: list[str]) -> int:
    """Run a stage's (or tool's) ``main`` as a command: its exit status, and any failure as
    one line on stderr (a bad input, a missing file, a full disk), never a traceback unless
    ``COCO_FOLDS_DEBUG`` asks for it."""
    try:
        main(argv)
    except DatasetError as exc:
        return fail(str(exc))
    except OSError as exc:  # a missing input, an unwritable output, a full disk, ...
        return fail(os_error_line(exc, command))
    except KeyboardInterrupt:
        return fail("interrupted; outputs are written atomically, nothing is half-written")
    except MemoryError:
        return fail("out of memory; lower `workers` in params.yaml or use a larger machine")
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback on request
        if os.environ.get("COCO_FOLDS_DEBUG"):
            raise
        return fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
            "COCO_FOLDS_DEBUG=1 shows the traceback)"
        )
    return 0


def command(main: Callable[[list[str]], None]) -> NoReturn:
    """Exit with what :func:`run_command` says of a stage module's ``main`` run on this
    process's arguments.

    A stage run as ``python -m pipeline.stages.<stage>`` passes the ``main`` of the module
    imported by its name, not of ``__main__``, so the work it sends to workers names the module
    they import (the forkserver preloads it). ``__main__``'s module spec is then dropped:
    multiprocessing would otherwise import that module again under the same name in every
    worker, which Python warns about on stderr; from the file path it runs it only as
    ``__mp_main__``, as for ``python script.py``.
    """
    current = sys.modules.get("__main__")
    if getattr(getattr(current, "__spec__", None), "name", None) == main.__module__:
        current.__spec__ = None  # type: ignore[union-attr]
    sys.exit(run_command(main.__module__.rsplit(".", 1)[-1], main, sys.argv[1:]))


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


# What a path-less reason or a write failure says. EFBIG: over `ulimit -f` (the writers in
# pipeline.files.fsio name the file); EDQUOT: over a disk quota.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# params.yaml keys that name a path, and whether the stages write there (else they read it).
_PATH_KEYS = {
    "cache.dir": True,
    "dataset.annotations": False,
    "dataset.images": False,
    "split.stable_from": False,
}


def os_error_line(exc: OSError, command: str) -> str:
    """One line for an OSError: the path, and its params.yaml key when one names it; a
    missing input (run the earlier stages) told apart from an output that cannot be made."""
    reason = exc.strerror or str(exc)
    if not isinstance(exc.filename, str | bytes | os.PathLike):
        return reason
    path = os.fsdecode(exc.filename)
    key, writes = _key_of(path)
    where = f"params.yaml: {key}: {path}" if key else path
    if isinstance(exc, FileExistsError | NotADirectoryError):
        blocker = _file_in_the_way(path)
        if blocker and blocker != os.path.normpath(path):
            return f"{where}: cannot create: {blocker} is a file, not a folder"
        return f"{where}: exists and is not a folder"
    if isinstance(exc, IsADirectoryError):
        return f"{where}: is a folder, not a file"
    if exc.errno in _CANNOT_WRITE:
        unreadable = os.path.exists(path) and not os.access(path, os.R_OK)
        return f"{where}: cannot {'read' if unreadable else 'write'} ({reason})"
    if isinstance(exc, FileNotFoundError):
        broken = _broken_link(path)
        if broken:
            return f"{where}: cannot create or read: {broken} is a link to nothing"
        if writes:  # e.g. a cache.dir under /proc: mkdir says ENOENT
            return f"{where}: cannot create ({reason})"
        if key or not _inside(path, os.getcwd()):
            return f"{where}: not found ({reason})"
        # Usually an earlier stage's output: `dvc repro` runs the stages in order.
        return (
            f"{path}: not found ({reason}); run the earlier stages first, e.g. "
            f"`dvc repro {command}`"
        )
    return f"{where}: {reason}"


def _key_of(path: str) -> tuple[str | None, bool]:
    """(the params.yaml key whose path is ``path`` or holds it, whether stages write there)."""
    try:
        params = load_params()
    except Exception:  # noqa: BLE001 - params.yaml itself was the problem: no key to name
        return None, False
    for key, writes in _PATH_KEYS.items():
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        if isinstance(value, str) and value and _inside(path, value):
            return key, writes
    return None, False


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _file_in_the_way(path: str) -> str | None:
    """The first part of ``path`` that exists and is not a folder, if any."""
    return next((p for p in _prefixes(path) if os.path.lexists(p) and not os.path.isdir(p)), None)


def _broken_link(path: str) -> str | None:
    """The first part of ``path`` that is a link to nothing, if any."""
    return next((p for p in _prefixes(path) if os.path.islink(p) and not os.path.exists(p)), None)


def _prefixes(path: str) -> list[str]:
    parts = os.path.normpath(path).split(os.sep)
    return [os.sep.join(parts[:end]) or os.sep for end in range(1, len(parts) + 1)]
