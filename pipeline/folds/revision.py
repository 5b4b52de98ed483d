"""One revision, not a mix, and every file as pinned.

Two checks, cheapest first:

1. the pins: the parts a trainer repo pinned (``.dvc`` files of ``dvc import``) must name the
   content the exports were made from (``exports.json`` ``sources``): a few strings compared;
2. the files: what is on disk must hash to those pins and records (:mod:`pipeline.folds.verify`,
   memoised by size, mtime and inode): the exports folder to its ``.dvc`` pin, the class table
   to the hash the exports recorded, and every part a call reads (masks, the variants it asks
   for, the photos) to theirs. A file copied over a pinned one is refused like a part moved
   alone.

Each refusal is one line naming the part and the command that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files.contracts import CLASSES_PATH, EXPORTS_CLASSES_NAME, EXPORTS_DIR, MASKS_DIR
from pipeline.files.errors import DatasetError
from pipeline.folds.dvcfile import Pin, read_pin
from pipeline.folds.exported import metadata
from pipeline.folds.verify import Mismatch, cache_listing, part_hash, verify_path

__all__ = [
    "ContentMismatchError",
    "MixedRevisionsError",
    "check",
    "check_content",
    "check_revisions",
    "fix_command",
    "overridden",
    "used_parts",
]


class MixedRevisionsError(DatasetError):
    """Parts of a trainer repo pinned at revisions whose content does not belong together."""


class ContentMismatchError(MixedRevisionsError):
    """A file on disk is not the one its pin or the exports' record names (copied over,
    edited, or left from another revision)."""


def check(
    root: str | os.PathLike = ".", parts: Iterable[str] = (), skip: Iterable[str] = ()
) -> dict[str, Any]:
    """Both checks for a call that reads ``parts`` (source paths, e.g. from
    :func:`used_parts`) besides the exports and their class table; exports.json back."""
    check_revisions(root, skip)
    return check_content(root, parts, skip)


def check_revisions(root: str | os.PathLike = ".", skip: Iterable[str] = ()) -> None:
    """Refuse parts pinned at another revision than the exports were made from.

    The exports record the content hash of each input (``sources``); a part the trainer
    imported (``<part>.dvc``, or a folder above it such as ``data/augmented.dvc``) must hold
    the same content. Parts without a ``.dvc`` file are left to :func:`check_content`;
    ``skip`` names parts the caller does not use (a ``masks=`` or ``images=`` override).
    """
    sources: dict[str, str] = metadata(root).get("sources") or {}
    skipped = set(skip)
    stale: dict[str, Pin] = {}
    for rel, md5 in sorted(sources.items()):
        pin, held = _pinned_hash(Path(root), rel) if rel not in skipped else (None, None)
        if pin is not None and held is not None and held != md5:
            stale[pin.path] = pin
    if stale:
        raise MixedRevisionsError(_mix_message(list(stale.values()), read_pin(root, EXPORTS_DIR)))


def check_content(
    root: str | os.PathLike = ".", parts: Iterable[str] = (), skip: Iterable[str] = ()
) -> dict[str, Any]:
    """Refuse files on disk that are not what is pinned: the exports folder (against its
    ``.dvc`` pin, when there is one), the class table (against ``sources``, always) and each
    of ``parts`` that exists and has a recorded hash. Returns exports.json."""
    root = Path(root)
    meta = metadata(root)
    sources: dict[str, str] = meta.get("sources") or {}
    pin = read_pin(root, EXPORTS_DIR)
    table = sources.get(CLASSES_PATH)
    if table is not None:
        for on_disk in (f"{EXPORTS_DIR}/{EXPORTS_CLASSES_NAME}", CLASSES_PATH):
            if on_disk == CLASSES_PATH and not (root / on_disk).exists():
                continue  # a trainer repo has the exports' copy only
            found = verify_path(root, CLASSES_PATH, table, on_disk)
            if found is not None:
                raise ContentMismatchError(_table_message(root, found, pin))
    if pin is not None and pin.md5:
        found = verify_path(root, EXPORTS_DIR, pin.md5)
        if found is not None:
            raise ContentMismatchError(_pinned_message(root, found, pin))
    skipped = set(skip)
    for rel in dict.fromkeys(parts):
        if rel in skipped or rel not in sources:
            continue
        if not (root / rel).exists():
            if read_pin(root, rel) is not None:  # pinned, not fetched: a fresh clone
                raise ContentMismatchError(
                    f"{rel} is pinned by {rel}.dvc but not on disk: fetch it with `dvc pull`"
                )
            continue  # not part of this repo (photos not imported): nothing to read
        found = verify_path(root, rel, sources[rel])
        if found is not None:
            raise ContentMismatchError(_part_message(root, found, pin))
    return meta


def used_parts(
    meta: dict[str, Any], variants: Sequence[str] = (), masks: bool = True, images: bool = True
) -> list[str]:
    """The source paths a read uses: the masks, the photos, the chosen variants."""
    out = [MASKS_DIR] if masks else []
    out += [str(meta.get("images"))] if images else []
    return out + [f"{meta.get('augmented', 'data/augmented')}/{v}" for v in variants]


def overridden(meta: dict[str, Any], images: Any, masks: Any) -> list[str]:
    """Parts replaced by the caller's own folders: their pins do not matter."""
    return [p for p, given in ((str(meta.get("images")), images), (MASKS_DIR, masks)) if given]


def fix_command(root: str | os.PathLike, exports: Pin | None) -> str:
    """The one line that brings every part back to what is pinned."""
    rev = exports.rev or exports.rev_lock if exports is not None else None
    if rev:
        return f"`python -m pipeline.folds update --rev {rev}`"
    if (Path(root) / "dvc.yaml").is_file():
        return "`dvc repro export` (the pipeline repo: rebuilds what changed)"
    return "`python -m pipeline.folds get <dataset repo> --rev <tag>`"


def _where(pin: Pin | None) -> str:
    return f"pinned at {pin.label}" if pin is not None else "not pinned by a .dvc file"


def _said(found: Mismatch) -> str:
    if found.details:
        return found.details
    return f"hash {found.found[:12] or 'none'}, expected {found.expected[:12]}"


def _table_message(root: Path, found: Mismatch, pin: Pin | None) -> str:
    return (
        f"{found.path} is not the class table {EXPORTS_DIR} ({_where(pin)}) was made from "
        f"({_said(found)}): the class count, names and palette would be another revision's. "
        f"Restore it: {fix_command(root, pin)}"
    )


def _pinned_message(root: Path, found: Mismatch, pin: Pin) -> str:
    return (
        f"{EXPORTS_DIR} is not what {EXPORTS_DIR}.dvc pins ({pin.label}): files changed on disk "
        f"({_said(found)}). Restore it: {fix_command(root, pin)}"
    )


def _part_message(root: Path, found: Mismatch, pin: Pin | None) -> str:
    return (
        f"{found.path} is not what {EXPORTS_DIR} ({_where(pin)}) was made from: files changed "
        f"on disk ({_said(found)}). Bring it back: {fix_command(root, pin)}"
    )


def _pinned_hash(root: Path, rel: str) -> tuple[Pin | None, str | None]:
    """The pin holding ``rel`` and the content hash it gives ``rel``: its own ``.dvc`` file, or
    a folder's above it (one ``dvc import`` of ``data/augmented``), whose listing in the DVC
    cache gives the hash of the part below (None when the listing is not fetched)."""
    pin = read_pin(root, rel)
    if pin is not None:
        return pin, pin.md5
    for above in list(PurePosixPath(rel).parents)[:-1]:
        pin = read_pin(root, above.as_posix())
        if pin is not None:
            entries = cache_listing(root, pin.md5 or "")
            inner = PurePosixPath(rel).relative_to(above).as_posix()
            return pin, None if entries is None else part_hash(entries, inner)
    return None, None


def _mix_message(stale: list[Pin], exports: Pin | None) -> str:
    parts = ", ".join(f"{p.path} (pinned at {p.label} by {p.path}.dvc)" for p in stale)
    verb = "is" if len(stale) == 1 else "are"
    rev = exports.rev if exports and exports.rev else "<tag>"
    others = sorted({p.rev for p in stale if p.rev and p.rev != rev})
    alt = "".join(f" (or --rev {r})" for r in others)
    return (
        f"{parts} {verb} not what {EXPORTS_DIR} ({_where(exports)}) was made from: a mix of "
        f"revisions. Bring every part to one revision: "
        f"`python -m pipeline.folds update --rev {rev}`{alt}"
    )
