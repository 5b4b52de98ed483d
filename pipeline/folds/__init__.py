"""Python API for trainers: the image and mask paths of a fold and the class table, as the
export stage wrote them, and the commands that pin them in a trainer repo.

Reads only ``data/exports`` (plus the images, masks and augmented files it points at), so it
works the same in the pipeline repo and in a trainer repo that pinned the folders with
``python -m pipeline.folds get URL --rev TAG`` (``dvc import`` underneath): pass that repo's
folder as ``root``.

>>> from pipeline import folds
>>> f = folds.fold(0, root=".", variants="all")      # doctest: +SKIP
>>> for image_path, mask_path in f.train: ...        # doctest: +SKIP
>>> mask = folds.read_mask(f.val[0].mask)            # doctest: +SKIP
>>> folds.num_classes(), folds.classes().names       # doctest: +SKIP

A trainer repo can hold parts of different revisions (``dvc update`` of one ``.dvc`` file);
``fold``, ``test`` and ``mmseg_layout`` compare the content hashes the exports recorded
(``exports.json`` ``sources``) with those of the repo's ``dvc import`` files and refuse a mix,
naming the stale part and the command that fixes it.

CLI (``python -m pipeline.folds -h``):

- ``get URL --rev TAG [--variants NAME ...] [--images]``: in a trainer's git+DVC repo, import
  the exports, masks, chosen variants and (``--images``) photos of one revision;
- ``update --rev TAG``: move every imported part to another revision at once;
- ``mmseg-layout --out DIR``: the mmsegmentation ``img_dir``/``ann_dir`` layout as relative
  symlinks plus the split lists, ``metainfo.py`` (an mmengine base config) and
  ``metainfo.json`` (DVC cannot keep symlinks inside an output, so the layout is made on
  demand, in seconds, where it is used);
- ``show K``: a fold's pairs as CSV;
- ``pin [--to splits/pinned.csv]`` and ``diff OLD NEW``: in the pipeline repo, keep the current
  split as a committed file, and see which images moved between two splits.

Imports numpy, Pillow and the standard library only; ``get``/``update``/``diff`` call the
``dvc`` and ``git`` CLIs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from pipeline.files.contracts import (
    AUGMENTED_DIR,
    CLASSES_PATH,
    EXPORTS_CLASSES_NAME,
    EXPORTS_DIR,
    EXPORTS_META_NAME,
    FOLDS_PATH,
    MASKS_DIR,
    MMSEG_AUGMENTED,
    TEST_FOLD,
    Classes,
    FoldRow,
    FoldTable,
    augmented_stem,
    folds_from_bytes,
    mask_relpath,
    mmseg_stem,
    read_classes,
    read_exports_meta,
    read_folds,
    read_mask,
    read_rows,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, csv_text

__all__ = [
    "Change",
    "Classes",
    "Fold",
    "FoldRow",
    "MixedRevisionsError",
    "Pair",
    "Pin",
    "check_revisions",
    "classes",
    "diff",
    "fold",
    "folds",
    "get",
    "load_folds",
    "mmseg_layout",
    "mmseg_metainfo",
    "n_folds",
    "num_classes",
    "pin",
    "read_mask",
    "read_pin",
    "test",
    "update",
    "variants",
]

LAYOUT_MARKER = ".mmseg-layout"
LAYOUT_METAINFO = "metainfo.json"  # in an mmseg layout: classes, palette, num_classes, suffixes
LAYOUT_CONFIG = "metainfo.py"  # the same as an mmengine config fragment, for ``_base_``
PINNED_PATH = "splits/pinned.csv"  # what split.stable_from names: the committed split


class Pair(NamedTuple):
    """An image and its mask; unpacks as ``image, mask``."""

    image: Path
    mask: Path


@dataclass(frozen=True)
class Fold:
    """Fold ``k``: train on ``train`` (originals, then augmented variants if asked), validate
    on ``val``. ``train_ids``/``val_ids`` are the original image ids."""

    k: int
    train: list[Pair]
    val: list[Pair]
    train_ids: list[int] = field(repr=False)
    val_ids: list[int] = field(repr=False)
    variants: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Fold(k={self.k}, train={len(self.train)} pairs, val={len(self.val)} pairs, "
            f"variants={list(self.variants)})"
        )


def exports_dir(root: str | os.PathLike = ".") -> Path:
    path = Path(root) / EXPORTS_DIR
    if not (path / EXPORTS_META_NAME).exists():
        raise FileNotFoundError(
            f"{path} holds no exports (no exports.json). In the pipeline repo run `dvc repro "
            f"export` or `dvc pull`; in a trainer repo `dvc import <pipeline repo> "
            f"{EXPORTS_DIR} --rev <tag>`, then pass that repo's folder as root="
        )
    return path


def metadata(root: str | os.PathLike = ".") -> dict[str, Any]:
    """``exports.json``: fold sizes, variants, image/mask roots, mmseg suffixes."""
    return read_exports_meta(exports_dir(root))


def load_folds(root: str | os.PathLike = ".") -> list[FoldRow]:
    """Every image with its fold label, in ``folds.csv`` order."""
    return list(read_folds(exports_dir(root) / "folds.csv").rows)


def n_folds(root: str | os.PathLike = ".") -> int:
    return int(metadata(root)["n_folds"])


def variants(root: str | os.PathLike = ".") -> list[str]:
    """Augmented variants the exports list (train parts only ever hold train-image variants)."""
    return list(metadata(root)["variants"])


# ---------------------------------------------------------------- the class table


def classes(root: str | os.PathLike = ".") -> Classes:
    """The class table the split was made with (``data/exports/classes.json``): ``names``
    (index 0 is background), ``colors``, ``category_ids``, ``palette``, ``ignore_index``."""
    path = exports_dir(root) / EXPORTS_CLASSES_NAME
    if not path.exists():
        raise DatasetError(
            f"the exports hold no {EXPORTS_CLASSES_NAME} (made before the class table was "
            f"exported); re-run `dvc repro export` in the pipeline repo, or use {CLASSES_PATH}",
            file=str(path.parent),
        )
    return read_classes(path)


def num_classes(root: str | os.PathLike = ".") -> int:
    """Outputs a segmentation model needs: background plus every class (255 is ignore)."""
    return classes(root).num_classes


def mmseg_metainfo(root: str | os.PathLike = ".") -> dict[str, Any]:
    """mmsegmentation's dataset ``metainfo``: class names (background first, as the masks use
    it with ``reduce_zero_label=False``) and their palette colours."""
    table = classes(root)
    return {"classes": list(table.names), "palette": [list(c) for c in table.colors]}


# ---------------------------------------------------------------- one revision, not a mix


class MixedRevisionsError(DatasetError):
    """Parts of a trainer repo pinned at revisions whose content does not belong together."""


class Pin(NamedTuple):
    """What a ``.dvc`` file of ``dvc import`` says: the hash of the output and its source."""

    path: str  # the output, relative to the repo root
    md5: str | None
    url: str | None
    rev: str | None
    rev_lock: str | None

    @property
    def label(self) -> str:
        return self.rev or (self.rev_lock or "")[:10] or "an unknown revision"


# A key of DVC's block YAML: ``key:`` alone or ``key: value``, maybe as a list item (``- key:``).
_YAML_KEY = re.compile(r"^( *)(- +)?([A-Za-z_][A-Za-z0-9_]*):(?: +(.*))?$")
# YAML double-quoted escapes that json does not know; json.loads handles the rest.
_YAML_ESCAPES = {" ": " ", "0": "\0", "a": "\a", "v": "\v", "e": "\x1b", "N": "\x85"}
_YAML_ESCAPES |= {"_": "\xa0", "L": "\u2028", "P": "\u2029", "\t": "\t"}


def _double_quoted(body: str) -> str:
    """The text of a YAML double-quoted scalar (without its quotes), one line."""
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 == len(body):
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[nxt])
            i += 2
        else:
            width = {"x": 4, "u": 6, "U": 10}.get(nxt, 2)
            code = body[i : i + width]
            out.append(chr(int(code[2:], 16)) if nxt in "xU" else json.loads(f'"{code}"'))
            i += width
    return "".join(out)


_BLANK = " \t\r"  # YAML's white space (str.strip would also take a no-break space)
_QUOTED = {"'": re.compile(r"'(?:[^']|'')*'"), '"': re.compile(r'"(?:[^"\\]|\\.)*"')}


def _open_quote(text: str) -> bool:
    """Whether ``text`` starts a quoted scalar that has not ended yet (so a next line that
    looks like ``key: value`` is still part of it)."""
    closed = _QUOTED.get(text[:1])
    return closed is not None and closed.match(text) is None


def _scalar(lines: list[str]) -> str:
    """A YAML scalar written over ``lines`` (stripped; the first is the one after ``key:``):
    plain and single-quoted ones fold a line break into a space; a double-quoted one too,
    unless the line ends with an escaping backslash."""
    text = lines[0]
    for line in lines[1:]:
        escaped = text.startswith('"') and (len(text) - len(text.rstrip("\\"))) % 2 == 1
        text = text[:-1] + line if escaped else f"{text} {line}"
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return _double_quoted(text[1:-1])
    return text


def _dvc_fields(text: str) -> dict[str, str]:
    """``section.key`` (``deps.url``, ``outs.md5``; top-level keys as they are) -> value, the
    first of each, from a ``.dvc`` file. A long value that DVC's YAML writer wrapped goes on,
    more indented than its key, on the lines after it (even right after ``url:``)."""
    lines: dict[str, list[str]] = {}
    section, current, column = "", None, 0
    # U+2028/U+2029 are line breaks that a scalar keeps; the writer indents after them.
    text = re.sub("([\u2028\u2029])[ \t]*", r"\1", text)
    for line in text.split("\n"):  # not splitlines: U+2028 and the like are text
        body = line.rstrip(_BLANK)
        indent = len(body) - len(body.lstrip(" "))
        match = _YAML_KEY.match(body)
        going_on = current is not None and indent > column and body.strip(_BLANK)
        if going_on and _open_quote(" ".join(lines[current])):
            lines[current].append(body.strip(_BLANK))  # inside quotes: even `# x` or `a: b`
            continue
        if going_on and match is None and not body.lstrip(_BLANK).startswith("#"):
            lines[current].append(body.strip(_BLANK))
            continue
        if match is None:
            continue
        lead, dash, key, value = match.groups()
        column = len(lead) + len(dash or "")
        section = key if column == 0 else section
        name = key if column == 0 else f"{section}.{key}"
        current = None if name in lines else name
        if current is not None:
            lines[current] = [value.strip(_BLANK)] if value and value.strip(_BLANK) else []
    return {name: _scalar(parts) for name, parts in lines.items() if parts}


def read_pin(root: str | os.PathLike, rel: str) -> Pin | None:
    """The ``<rel>.dvc`` file under ``root``, or None when there is none.

    DVC writes these files in one fixed shape (``deps: - path, repo: {url, rev, rev_lock}``,
    ``outs: - md5``), so a small block-YAML reader is enough and the trainer install needs no
    YAML library (tests compare it with a YAML parser on what DVC's writer makes).
    """
    path = Path(root) / f"{rel}.dvc"
    if not path.is_file():
        return None
    found = _dvc_fields(path.read_text(encoding="utf-8"))
    return Pin(
        rel,
        found.get("outs.md5"),
        found.get("deps.url"),
        found.get("deps.rev"),
        found.get("deps.rev_lock"),
    )


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


def _overridden(meta: dict[str, Any], images: Any, masks: Any) -> list[str]:
    """Parts replaced by the caller's own folders: their pins do not matter."""
    return [p for p, given in ((str(meta.get("images")), images), (MASKS_DIR, masks)) if given]


def _pairs(
    path: Path, root: Path, images: Path | None, masks: Path | None
) -> tuple[list[Pair], list[int]]:
    pairs, ids = [], []
    for r in read_rows(path):
        image = images / r["file_name"] if images is not None else root / r["image"]
        mask = masks / mask_relpath(r["file_name"]) if masks is not None else root / r["mask"]
        pairs.append(Pair(image, mask))
        ids.append(int(r["image_id"]))
    return pairs, ids


def _pick_variants(wanted: None | str | Iterable[str], available: Sequence[str]) -> tuple[str, ...]:
    if wanted is None:
        return ()
    if wanted == "all":
        return tuple(available)
    names = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    unknown = [v for v in names if v not in available]
    if unknown:
        raise DatasetError(
            f"unknown augment variants {unknown}; the exports have {list(available)}",
            file=f"{EXPORTS_DIR}/exports.json",
            field="variants",
        )
    return names


def fold(
    k: int,
    root: str | os.PathLike = ".",
    variants: None | str | Iterable[str] = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> Fold:
    """Train and val pairs of fold ``k``.

    ``variants``: None (originals only), ``"all"`` or names of augment variants to append to
    ``train``; only variants of fold k's training images exist there, never of val or test.
    ``images`` / ``masks`` override where originals are found (e.g. a trainer's own copy of
    the photos); by default paths are ``root`` joined with the exported relative paths.
    :class:`MixedRevisionsError` when the repo's pinned parts are of another revision than
    the exports (see :func:`check_revisions`).
    """
    root = Path(root)
    meta = metadata(root)
    check_revisions(root, skip=_overridden(meta, images, masks))
    total = int(meta["n_folds"])
    try:
        index = None if isinstance(k, bool) else operator.index(k)  # numpy ints welcome
    except TypeError:
        index = None
    if index is None or not 0 <= index < total:
        raise DatasetError(
            f"fold {k!r} does not exist: the exports have folds 0..{total - 1}",
            file=str(exports_dir(root)),
            field="fold",
        )
    k = index
    chosen = _pick_variants(variants, meta["variants"])
    base = exports_dir(root) / f"fold_{k}"
    img_root = Path(images) if images is not None else None
    mask_root = Path(masks) if masks is not None else None
    train, train_ids = _pairs(base / "train.csv", root, img_root, mask_root)
    val, val_ids = _pairs(base / "val.csv", root, img_root, mask_root)
    if chosen:
        keep = set(chosen)
        train.extend(
            Pair(root / r["image"], root / r["mask"])
            for r in read_rows(base / "train_augmented.csv")
            if r["variant"] in keep
        )
    return Fold(k, train, val, train_ids, val_ids, chosen)


def folds(
    root: str | os.PathLike = ".",
    variants: None | str | Iterable[str] = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Fold]:
    """All folds, for a cross-validation loop."""
    return [fold(k, root, variants, images, masks) for k in range(n_folds(root))]


def test(
    root: str | os.PathLike = ".",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Pair]:
    """The held-out test pairs; an error when the split has no holdout."""
    check_revisions(root, skip=_overridden(metadata(root), images, masks))
    path = exports_dir(root) / "test.csv"
    if not path.exists():
        raise DatasetError(
            "the split has no held-out test part (split.test_fraction is 0)",
            file=str(path.parent),
            field="test",
        )
    return _pairs(
        path,
        Path(root),
        Path(images) if images is not None else None,
        Path(masks) if masks is not None else None,
    )[0]


# ---------------------------------------------------------------- mmseg layout


def _link(target: Path, link: Path, final_parent: Path) -> None:
    """Relative symlink ``link`` -> ``target``, computed from where the link will finally
    live (``final_parent``), so building in a sibling temp folder gives the same text."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(os.path.abspath(target), os.path.abspath(final_parent)))


def mmseg_layout(
    out: str | os.PathLike,
    root: str | os.PathLike = ".",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    img_suffix: str | None = None,
) -> Path:
    """Build ``out/img_dir``, ``out/ann_dir`` (relative symlinks) and ``out/splits/*.txt``.

    mmseg config: ``data_root=out, data_prefix=dict(img_path='img_dir', seg_map_path=
    'ann_dir'), ann_file='splits/fold_0_train.txt', img_suffix=<exports.json>,
    seg_map_suffix='.png'``. Every image link is named ``<stem><img_suffix>`` (decoders read
    the content, not the name). ``out`` is replaced as a whole, and only if it is a layout
    made here (or empty), so a rerun never leaves stale links.
    """
    root = Path(root)
    meta = metadata(root)
    check_revisions(root, skip=_overridden(meta, images, masks))
    suffix = img_suffix or meta["mmseg"]["img_suffix"]
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()) and not (out / LAYOUT_MARKER).exists():
        raise DatasetError(
            "folder exists and is not an mmseg layout made by pipeline.folds; choose another --out",
            file=str(out),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        layout = _Layout(tmp, out, suffix)
        _link_originals(layout, root, meta, images, masks)
        _link_augmented(layout, root, meta)
        shutil.copytree(exports_dir(root) / "mmseg" / "splits", tmp / "splits")
        marker = {
            "img_suffix": suffix,
            "seg_map_suffix": ".png",
            "augmented_prefix": MMSEG_AUGMENTED,
        }
        (tmp / LAYOUT_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        info = _layout_metainfo(root, marker)
        (tmp / LAYOUT_METAINFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        (tmp / LAYOUT_CONFIG).write_text(_layout_config(info), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # removes links, never their targets
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _layout_metainfo(root: Path, marker: dict[str, str]) -> dict[str, Any]:
    """What an mmseg config needs from the split: metainfo, class count, suffixes."""
    table = classes(root)
    return {
        "metainfo": mmseg_metainfo(root),
        "num_classes": table.num_classes,
        "ignore_index": table.ignore_index,
        "img_suffix": marker["img_suffix"],
        "seg_map_suffix": marker["seg_map_suffix"],
    }


def _layout_config(info: dict[str, Any]) -> str:
    """``info`` as an mmengine config fragment (Python literals, no import): a config takes it
    with ``_base_ = ["data/mmseg/metainfo.py"]`` and ``{{_base_.num_classes}}``. A config with
    an ``import`` statement (even ``import json``) runs in mmengine's lazy-import mode, where
    ``json.load`` cannot be called, so the values come as a base config instead."""
    lines = [
        "# Made by `python -m pipeline.folds mmseg-layout`: the class table of this split.",
        '# In an mmengine config: _base_ = ["data/mmseg/metainfo.py"], then {{_base_.metainfo}}.',
        *(f"{key} = {value!r}" for key, value in info.items()),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Layout:
    """Where links are built (``tmp``) and where they will finally live (``out``)."""

    tmp: Path
    out: Path
    suffix: str

    def add(self, stem: str, image: Path, mask: Path) -> None:
        """Link ``img_dir/<stem><suffix>`` and ``ann_dir/<stem>.png``."""
        _link(
            image,
            self.tmp / "img_dir" / f"{stem}{self.suffix}",
            (self.out / "img_dir" / stem).parent,
        )
        _link(mask, self.tmp / "ann_dir" / f"{stem}.png", (self.out / "ann_dir" / stem).parent)


def _link_originals(
    layout: _Layout,
    root: Path,
    meta: dict[str, Any],
    images: str | os.PathLike | None,
    masks: str | os.PathLike | None,
) -> None:
    image_root = Path(images) if images is not None else root / PurePosixPath(meta["images"])
    mask_root = Path(masks) if masks is not None else root / MASKS_DIR
    for row in load_folds(root):
        stem = mmseg_stem(row.file_name)
        layout.add(stem, image_root / row.file_name, mask_root / f"{stem}.png")


def _link_augmented(layout: _Layout, root: Path, meta: dict[str, Any]) -> None:
    """Every variant a fold trains on, once, under the ``_augmented/<variant>/`` prefix."""
    seen: set[str] = set()
    for k in range(int(meta["n_folds"])):
        for r in read_rows(exports_dir(root) / f"fold_{k}" / "train_augmented.csv"):
            variant = r["variant"]
            rel = PurePosixPath(r["image"]).relative_to(f"{meta['augmented']}/{variant}")
            stem = augmented_stem(variant, str(rel))
            if stem not in seen:
                seen.add(stem)
                layout.add(stem, root / r["image"], root / r["mask"])


# ---------------------------------------------------------------- a trainer repo pins one revision


def _dvc_cli() -> str:
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


def _call(args: Sequence[str], cwd: Path) -> str:
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
    dvc = _dvc_cli()
    pins = {p: read_pin(root, p) for p in parts}
    known = [p for p in parts if pins[p] is not None and pins[p].url == url]
    if known:
        _call([dvc, "update", "--rev", rev, *(f"{p}.dvc" for p in known)], root)
    for part in (p for p in parts if p not in known):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        force = ["--force"] if (root / part).exists() or pins[part] is not None else []
        _call([dvc, "import", url, part, "--rev", rev, "-o", part, *force], root)
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
    check_revisions(root)
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


# ---------------------------------------------------------------- pin and diff a split


def pin(root: str | os.PathLike = ".", to: str | os.PathLike = PINNED_PATH) -> FoldTable:
    """Copy the current ``data/splits/folds.csv`` to ``to`` (a committed file: what
    ``split.stable_from`` names), after checking it parses."""
    root = Path(root)
    data = (root / FOLDS_PATH).read_bytes() if (root / FOLDS_PATH).exists() else None
    if data is None:
        raise DatasetError("no split to pin; run `dvc repro split` first", file=FOLDS_PATH)
    table = folds_from_bytes(data, FOLDS_PATH)
    target = Path(to) if Path(to).is_absolute() else root / to
    atomic_write_bytes(target, data)
    return table


class Change(NamedTuple):
    image_id: int
    file_name: str
    old_fold: str  # "" when the image is new
    new_fold: str  # "" when the image was removed
    change: str  # moved, added, removed


DIFF_COLUMNS = ("image_id", "file_name", "old_fold", "new_fold", "change")


def diff_tables(old: FoldTable, new: FoldTable) -> list[Change]:
    """Images whose fold differs between two splits, matched by ``file_name`` as
    ``split.stable`` matches them (a re-exported json may renumber its image ids): new-table
    order, then the removed ones in old-table order. ``image_id`` is the new table's (the old
    one's for a removed image)."""
    before = {r.file_name: r for r in old.rows}
    after = {r.file_name: r for r in new.rows}
    out = []
    for r in new.rows:
        was = before.get(r.file_name)
        if was is None:
            out.append(Change(r.image_id, r.file_name, "", r.fold, "added"))
        elif was.fold != r.fold:
            out.append(Change(r.image_id, r.file_name, was.fold, r.fold, "moved"))
    out += [
        Change(r.image_id, r.file_name, r.fold, "", "removed")
        for r in old.rows
        if r.file_name not in after
    ]
    return out


def diff_summary(old: FoldTable, new: FoldTable, changes: list[Change]) -> list[list[Any]]:
    """Per fold label: images before and after, kept, moved in/out, added, removed."""
    labels = sorted({r.fold for r in (*old.rows, *new.rows)}, key=_label_order)
    rows = []
    for label in labels:
        n_old = sum(r.fold == label for r in old.rows)
        n_new = sum(r.fold == label for r in new.rows)
        moved_in = sum(c.change == "moved" and c.new_fold == label for c in changes)
        moved_out = sum(c.change == "moved" and c.old_fold == label for c in changes)
        added = sum(c.change == "added" and c.new_fold == label for c in changes)
        removed = sum(c.change == "removed" and c.old_fold == label for c in changes)
        kept = n_old - moved_out - removed
        rows.append([label, n_old, n_new, kept, moved_in, moved_out, added, removed])
    totals = [sum(r[i] for r in rows) for i in range(1, 8)]
    return [*rows, ["total", *totals]]


def _label_order(label: str) -> tuple[int, int]:
    return (1, 0) if label == TEST_FOLD else (0, int(label))


def read_split(spec: str, root: str | os.PathLike = ".") -> FoldTable:
    """A folds table from a file, or from a revision of the repo at ``root``: ``REV`` (its
    ``data/splits/folds.csv``) or ``REV:path``. Committed files come from ``git show``;
    DVC-tracked ones (``data/splits/folds.csv`` is a stage output) from ``dvc get --rev``."""
    path = Path(spec)
    if path.is_file():
        return read_folds(path)
    rev, _, rel = spec.partition(":")
    rel = rel or FOLDS_PATH
    shown = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=root, capture_output=True)
    if shown.returncode == 0:
        return folds_from_bytes(shown.stdout, f"{rev}:{rel}")
    said = shown.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    if (Path(root) / ".dvc").is_dir():
        with tempfile.TemporaryDirectory(prefix="folds-diff.") as tmp:
            out = Path(tmp) / "folds.csv"
            try:
                _call([_dvc_cli(), "get", ".", rel, "--rev", rev, "-o", str(out)], Path(root))
                return folds_from_bytes(out.read_bytes(), f"{rev}:{rel}")
            except DatasetError as exc:
                said.append(f"({exc})")
    raise DatasetError(
        f"neither a file nor a git revision holding {rel}: {' '.join(said)}", file=spec
    )


def diff(old: str, new: str, root: str | os.PathLike = ".") -> tuple[list[Change], list[list[Any]]]:
    """(changed images, per-fold table) between two splits (files or git revisions)."""
    before, after = read_split(old, root), read_split(new, root)
    changes = diff_tables(before, after)
    return changes, diff_summary(before, after, changes)


# ---------------------------------------------------------------- the command line


def _print_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [all(r[i].isdigit() for r in cells) for i in range(len(header))]
    for row in (list(header), *cells):
        line = (
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(row, widths, numeric, strict=True)
        )
        print("  ".join(line).rstrip())


def _cmd_diff(args: argparse.Namespace) -> None:
    changes, summary = diff(args.old, args.new, args.root)
    header = ("fold", "old", "new", "kept", "moved_in", "moved_out", "added", "removed")
    _print_table(header, summary)
    shown = changes[: args.show]
    if shown:
        print()
        _print_table(DIFF_COLUMNS, shown)
    if len(changes) > len(shown):
        print(f"... {len(changes) - len(shown)} more (--csv FILE lists every change)")
    if args.csv:
        atomic_write_bytes(args.csv, csv_text(DIFF_COLUMNS, changes).encode("utf-8"))
        print(f"{len(changes)} changes written to {args.csv}")


def _cmd_show(args: argparse.Namespace) -> None:
    wanted = "all" if args.variants == ["all"] else args.variants
    f = fold(args.k, args.root, variants=wanted)
    print("part,image,mask")
    for part, pairs in (("train", f.train), ("val", f.val)):
        for image, mask in pairs:
            print(f"{part},{image},{mask}")


def _cmd_layout(args: argparse.Namespace) -> None:
    out = mmseg_layout(args.out, args.root, args.images, args.masks, args.img_suffix)
    print(f"mmseg layout in {out} (img_dir, ann_dir, splits, {LAYOUT_METAINFO}, {LAYOUT_CONFIG})")


def _cmd_get(args: argparse.Namespace) -> None:
    parts = get(args.url, args.rev, args.root, args.variants, args.images)
    _report_pinned(parts, args.rev)


def _cmd_update(args: argparse.Namespace) -> None:
    parts = update(args.rev, args.root, args.variants, args.images)
    _report_pinned(parts, args.rev)


def _report_pinned(parts: list[str], rev: str) -> None:
    print(f"pinned at {rev}: {', '.join(parts)}")
    print(f'staged the .dvc files in git; commit them: git commit -m "train on {rev}"')


def _cmd_pin(args: argparse.Namespace) -> None:
    table = pin(args.root, args.to)
    print(
        f"pinned {len(table.rows)} images ({table.n_folds} folds) to {args.to}; "
        f"commit it: git add {args.to}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.folds", description="Pin, read and compare exported folds."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    get_ = sub.add_parser("get", help="in a trainer repo: import one revision's folds")
    get_.add_argument("url", help="the dataset (pipeline) repo: git URL or local path")
    upd = sub.add_parser("update", help="in a trainer repo: move every pinned part to --rev")
    for cmd in (get_, upd):
        cmd.add_argument("--rev", required=True, help="tag, branch or commit, e.g. folds-v1")
        cmd.add_argument("--variants", nargs="*", default=[], help="augment variants, or all")
        cmd.add_argument("--images", action="store_true", help="import the photos too")
        cmd.add_argument("--root", default=".", help="the trainer repo (default .)")
    lay = sub.add_parser("mmseg-layout", help="img_dir/ann_dir symlink layout + split lists")
    lay.add_argument("--out", required=True, help="folder to (re)build, e.g. data/mmseg")
    lay.add_argument("--root", default=".", help="repo holding data/exports (default .)")
    lay.add_argument("--images", help="image folder overriding exports.json's")
    lay.add_argument("--masks", help="mask folder overriding data/masks")
    lay.add_argument("--img-suffix", help="suffix of the image links (default: most common)")
    show = sub.add_parser("show", help="print a fold's train/val pairs as CSV")
    show.add_argument("k", type=int)
    show.add_argument("--root", default=".")
    show.add_argument("--variants", nargs="*", help="augment variants to add ('all' for all)")
    pin_ = sub.add_parser("pin", help=f"copy {FOLDS_PATH} to a committed file")
    pin_.add_argument("--to", default=PINNED_PATH, help=f"default {PINNED_PATH}")
    pin_.add_argument("--root", default=".")
    dif = sub.add_parser("diff", help="images that moved between two splits")
    dif.add_argument("old", help="folds.csv file, git revision (its folds.csv) or REV:path")
    dif.add_argument("new", help="same forms as OLD")
    dif.add_argument("--csv", help="write every change: " + ",".join(DIFF_COLUMNS))
    dif.add_argument("--show", type=int, default=20, help="changes to print (default 20)")
    dif.add_argument("--root", default=".", help="git repo for revisions (default .)")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "get": _cmd_get,
    "update": _cmd_update,
    "mmseg-layout": _cmd_layout,
    "show": _cmd_show,
    "pin": _cmd_pin,
    "diff": _cmd_diff,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `show 0 | head`: the reader had enough, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
