"""One revision, not a mix: the parts a trainer repo pinned (``.dvc`` files of ``dvc import``)
must hold the content the exports were made from (``exports.json`` ``sources``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files.contracts import EXPORTS_DIR, MASKS_DIR
from pipeline.files.errors import DatasetError
from pipeline.folds.dvcfile import Pin, read_pin
from pipeline.folds.exported import metadata

__all__ = ["MixedRevisionsError", "check_revisions", "overridden"]


class MixedRevisionsError(DatasetError):
    """Parts of a trainer repo pinned at revisions whose content does not belong together."""


def check_revisions(root: str | os.PathLike = ".", skip: Iterable[str] = ()) -> None:
    """Refuse parts pinned at another revision than the exports were made from.

    The exports record the content hash of each input (``sources``); a part the trainer
    imported (``<part>.dvc``, or a folder above it such as ``data/augmented.dvc``) must hold
    the same content. Parts without a ``.dvc`` file (copied by hand, or the pipeline repo
    itself) cannot be told and are not checked; ``skip`` names parts the caller does not use
    (a ``masks=`` or ``images=`` override).
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


def overridden(meta: dict[str, Any], images: Any, masks: Any) -> list[str]:
    """Parts replaced by the caller's own folders: their pins do not matter."""
    return [p for p, given in ((str(meta.get("images")), images), (MASKS_DIR, masks)) if given]


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
            entries = _dir_listing(root, pin.md5 or "")
            inner = PurePosixPath(rel).relative_to(above).as_posix()
            return pin, None if entries is None else _part_hash(entries, inner)
    return None, None


def _dir_listing(root: Path, md5: str) -> list[dict[str, str]] | None:
    """The entries (``md5``, ``relpath``) of a folder DVC stored as ``<md5>.dir`` in the repo's
    default cache (DVC 3 layout), or None."""
    digest = md5.removesuffix(".dir")
    path = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    if not md5.endswith(".dir") or len(digest) < 3 or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _part_hash(entries: list[dict[str, str]], inner: str) -> str | None:
    """DVC's hash of ``inner`` inside a listed folder: a file's md5, or a folder's
    ``md5(json.dumps(sorted entries, sort_keys=True)) + .dir`` (as
    :mod:`pipeline.files.sources`)."""
    below = [
        {"md5": e["md5"], "relpath": e["relpath"][len(inner) + 1 :]}
        for e in entries
        if e["relpath"].startswith(inner + "/")
    ]
    if not below:
        return next((e["md5"] for e in entries if e["relpath"] == inner), None)
    below.sort(key=lambda e: e["relpath"])
    text = json.dumps(below, sort_keys=True).encode("utf-8")
    return hashlib.md5(text, usedforsecurity=False).hexdigest() + ".dir"


def _mix_message(stale: list[Pin], exports: Pin | None) -> str:
    parts = ", ".join(f"{p.path} (pinned at {p.label} by {p.path}.dvc)" for p in stale)
    verb = "is" if len(stale) == 1 else "are"
    where = f"pinned at {exports.label}" if exports else "not pinned by a .dvc file"
    rev = exports.rev if exports and exports.rev else "<tag>"
    others = sorted({p.rev for p in stale if p.rev and p.rev != rev})
    alt = "".join(f" (or --rev {r})" for r in others)
    return (
        f"{parts} {verb} not what {EXPORTS_DIR} ({where}) was made from: a mix of revisions. "
        f"Bring every part to one revision: `python -m pipeline.folds update --rev {rev}`{alt}"
    )
