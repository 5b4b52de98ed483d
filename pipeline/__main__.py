"""``python -m pipeline <stage>``: run one stage with the parameters in ./params.yaml."""

from __future__ import annotations

import errno
import importlib
import os
import sys

STAGES = {
    "validate": "pipeline.stages.validate",
    "masks": "pipeline.stages.masks",
    "vectors": "pipeline.stages.vectors",
    "split": "pipeline.stages.split",
    "export": "pipeline.stages.export",
    "augment": "pipeline.stages.augment",
    "report": "pipeline.stages.report",
}
# Commands that are not stages: the sample generator, the item cache's prune, the environment.
TOOLS = {
    "sample": "pipeline.tools.sample",
    "cache": "pipeline.tools.cache",
    "env": "pipeline.tools.env",
    "init": "pipeline.tools.init",
}
COMMANDS = STAGES | TOOLS


def main(argv: list[str] | None = None) -> int:
    from pipeline.files.errors import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: python -m pipeline {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("pipeline"):
            raise
        return fail(
            f"{exc}: the pipeline stages need the full install, pip install -e '.[pipeline]' "
            "(the minimal install is the trainer's: pipeline.folds, pipeline.folds.torch_dataset)"
        )
    try:
        module.main(argv[1:])
    except DatasetError as exc:
        return fail(str(exc))
    except OSError as exc:  # a missing input, an unwritable output, a full disk, ...
        return fail(os_error_line(exc, argv[0]))
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
        from pipeline.files.params import load_params

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


if __name__ == "__main__":
    sys.exit(main())
