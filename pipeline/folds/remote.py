"""A trainer repo pins one revision: ``get`` and ``update`` run ``dvc import`` / ``dvc update``
for the exports, masks, chosen variants and photos at once, stage the ``.dvc`` files in git,
and end with the check every read makes (one revision, every file as pinned: the first check
hashes what DVC wrote, the reads after it find it unchanged). The ``dvc`` and ``git`` CLIs are
called as subprocesses; nothing here imports DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files.contracts import (
    AUGMENTED_DIR,
    CLASSES_PATH,
    EXPORTS_DIR,
    EXPORTS_META_NAME,
    MASKS_DIR,
)
from pipeline.files.errors import DatasetError
from pipeline.folds.dvcfile import read_pin
from pipeline.folds.exported import metadata
from pipeline.folds.revision import check, used_parts

__all__ = ["call", "dvc_cli", "get", "update"]


def dvc_cli() -> str:
    """The ``dvc`` executable: on PATH, or beside this Python (a venv not activated)."""
    beside = Path(sys.executable).parent / "dvc"
    found = shutil.which("dvc") or (str(beside) if beside.exists() else None)
    if found is None:
        raise DatasetError(
            "the DVC CLI is needed to pin folds in a trainer repo: pip install 'dvc>=3.30' "
            "(pipeline.folds itself reads the pinned files without it)"
        )
    return found


_REMOTE_HINT = (
    " (if the dataset repo's DVC remote is a relative path such as the shipped "
    "../../dvc-storage, DVC resolves it inside a temporary clone: make it absolute or a URL, "
    "`dvc remote modify local url /abs/dvc-storage`, commit, tag again)"
)


def call(args: Sequence[str], cwd: Path) -> str:
    """Run a CLI; a failure becomes one DatasetError with the tool's own last lines."""
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        hint = _REMOTE_HINT if "No such file or directory" in tail and "dvc" in args[0] else ""
        shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(args))
        raise DatasetError(f"`{shown}` failed: {tail}{hint}", file=str(cwd))
    return done.stdout


def _wanted_variants(asked: Iterable[str], have: Sequence[str], rev: str) -> list[str]:
    names = list(dict.fromkeys(asked))
    if "all" in names:
        names = [n for n in names if n != "all"] + list(have)
    unknown = [n for n in names if n not in have]
    if unknown:
        raise DatasetError(
            f"augment variants {unknown} are not in the exports at {rev} (they have "
            f"{list(have)}); drop them (an imported one: `dvc remove "
            f"{AUGMENTED_DIR}/{unknown[0]}.dvc`) and run again",
            field="variants",
        )
    return sorted(set(names))


def _image_part(meta: dict[str, Any]) -> str:
    images = PurePosixPath(str(meta["images"]).replace("\\", "/"))
    if images.is_absolute() or ".." in images.parts or not images.parts:
        raise DatasetError(
            f"the photos ({meta['images']}) are outside the dataset repo, so they cannot be "
            "imported; pass images=<your copy> to pipeline.folds instead",
            field="images",
        )
    return images.as_posix()


def _imported_variants(root: Path) -> list[str]:
    return sorted(p.name[: -len(".dvc")] for p in (root / AUGMENTED_DIR).glob("*.dvc"))


def _parts(root: Path, meta: dict[str, Any], variants: list[str], images: bool) -> list[str]:
    """Every path to pin: exports, masks, variants, photos, and a class table pinned alone.
    A repo that imported ``data/augmented`` as a whole (one ``dvc import``) keeps it whole."""
    whole = read_pin(root, AUGMENTED_DIR) is not None
    parts = [EXPORTS_DIR, MASKS_DIR]
    parts += [AUGMENTED_DIR] if whole else [f"{AUGMENTED_DIR}/{v}" for v in variants]
    if images:
        parts.append(_image_part(meta))
    if read_pin(root, CLASSES_PATH) is not None:
        parts.append(CLASSES_PATH)  # an older, separate import: kept at the same revision
    return parts


def _pin_parts(root: Path, url: str, rev: str, parts: list[str]) -> None:
    """``dvc update`` the parts already imported from ``url`` (one call), ``dvc import`` the
    others; each ``.dvc`` file records ``rev`` and the exact commit."""
    dvc = dvc_cli()
    pins = {p: read_pin(root, p) for p in parts}
    known = [p for p in parts if pins[p] is not None and pins[p].url == url]
    if known:
        call([dvc, "update", "--rev", rev, *(f"{p}.dvc" for p in known)], root)
    for part in (p for p in parts if p not in known):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        force = ["--force"] if (root / part).exists() or pins[part] is not None else []
        call([dvc, "import", url, part, "--rev", rev, "-o", part, *force], root)
        print(f"imported {part} from {url} at {rev}")


def _stage_in_git(root: Path, parts: list[str]) -> None:
    files = [f"{p}.dvc" for p in parts]
    files += sorted({str(PurePosixPath(p).parent / ".gitignore") for p in parts})
    files = [f for f in files if (root / f).exists()]
    done = subprocess.run(["git", "add", "--", *files], cwd=root, capture_output=True, text=True)
    if done.returncode:
        print(f"note: could not stage {files} in git: {done.stderr.strip()}", file=sys.stderr)


def _sync(root: Path, url: str, rev: str, variants: Iterable[str], images: bool) -> list[str]:
    """Pin the exports first (they say which variants and photos exist at ``rev``), then the
    other parts in one ``dvc update`` and one ``dvc import`` each for new ones. A request the
    new exports cannot serve puts the exports back where they were: no mix is left behind."""
    if not (root / ".dvc").is_dir():
        raise DatasetError(
            "not a DVC repository: run `git init && dvc init` in the trainer repo first",
            file=str(root),
        )
    before = read_pin(root, EXPORTS_DIR)
    _pin_parts(root, url, rev, [EXPORTS_DIR])
    try:
        meta = metadata(root)
        chosen = _wanted_variants([*variants, *_imported_variants(root)], meta["variants"], rev)
        parts = _parts(root, meta, chosen, images)
    except DatasetError:
        if before is not None and before.url == url and (before.rev or before.rev_lock):
            _pin_parts(root, url, str(before.rev or before.rev_lock), [EXPORTS_DIR])
        raise
    _pin_parts(root, url, rev, parts[1:])
    _stage_in_git(root, parts)
    check(root, used_parts(meta, meta["variants"]))  # one revision, every file as pinned
    return parts


def get(
    url: str,
    rev: str,
    root: str | os.PathLike = ".",
    variants: Iterable[str] = (),
    images: bool = False,
) -> list[str]:
    """Pin the exports, masks, ``variants`` (names or ``"all"``) and, with ``images``, the
    photos of the dataset repo ``url`` at ``rev`` in the trainer repo ``root`` (``dvc
    import``; parts already imported from ``url`` are updated). Stages the ``.dvc`` files in
    git and returns the pinned paths; committing is the trainer's step."""
    return _sync(Path(root), url, rev, variants, images)


def update(
    rev: str,
    root: str | os.PathLike = ".",
    variants: Iterable[str] = (),
    images: bool = False,
) -> list[str]:
    """Move every part :func:`get` pinned (and any ``variants`` or ``images`` added now) to
    ``rev`` at once, so the repo never holds a mix."""
    root = Path(root)
    pin = read_pin(root, EXPORTS_DIR)
    if pin is None or not pin.url:
        raise DatasetError(
            f"no {EXPORTS_DIR}.dvc here: pin a split first with "
            "`python -m pipeline.folds get <dataset repo url> --rev <tag>`",
            file=str(root),
        )
    had_images = False
    if (root / EXPORTS_DIR / EXPORTS_META_NAME).exists():
        current = metadata(root)
        had_images = read_pin(root, str(current.get("images"))) is not None
    return _sync(root, pin.url, rev, variants, images or had_images)
