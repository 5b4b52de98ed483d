"""Stage ``export``: the folds in the shapes trainers read as they are.

Everything lands under ``data/exports/`` (one DVC output, so one ``dvc import`` fetches it):

- ``folds.csv``: a byte copy of ``data/splits/folds.csv`` (``image_id,file_name,group,fold``);
- ``fold_<k>/val.json`` (and ``test.json`` with a holdout; ``fold_<k>/train.json`` with
  ``export.coco_json``): COCO files with the original top-level fields, ids and extra fields,
  holding only that part's images (in the canonical json's order) and their annotations. With
  ``export.coco_classes: mapped`` (the default) their categories are the class table's: one
  category per class (``id`` = class index, 1..N, ``name``, ``supercategory`` when the merged
  categories share one, ``original_category_ids``), each annotation's ``category_id`` is its
  class index (merged categories share one), and annotations of dropped or ignored categories
  are removed (an instance model has no ignore class; the masks keep ignore as 255).
  ``original`` keeps the json's categories and every annotation as they are;
- ``fold_<k>/train.csv``, ``fold_<k>/val.csv`` (and ``test.csv``): ``image_id,file_name,image,
  mask``; ``image`` and ``mask`` are relative to the repository root (``image`` is absolute
  when ``dataset.images`` is);
- ``fold_<k>/train_augmented.csv``: ``source_image_id,variant,seed,copy,image,mask``, the
  augmented variants of fold k's *training* images only. Variants of validation and test
  images are never listed, so augmentation cannot leak across the split;
- ``mmseg/splits/fold_<k>_{train,val,train_augmented}.txt`` and ``mmseg/splits/test.txt``:
  mmsegmentation ``ann_file`` lists, one name per line relative to ``img_dir`` without suffix;
- ``classes.json``: a byte copy of ``data/classes.json`` (names, indices, colours, ignore
  index, category ids), so the class table travels with the split it belongs to;
- ``class_distribution.csv``: each fold's class distribution, train and val part (and the
  test part): pixels, images and the labelled pixels of those images per class, background
  included, from the masks stage's per-image stats (which are counted from the masks); what
  ``pipeline.folds.class_weights`` computes weights from;
- ``exports.json``: fold sizes, variants, image and mask roots, the mmseg image suffix, and
  ``sources``: the DVC content hash of the masks, class table, variants (and image folder,
  when ``dvc.lock`` has it) the exports were made from (:mod:`pipeline.files.sources`). The revision
  is only known after the commit, so content is recorded; a trainer repo compares it with the
  hashes in its ``dvc import`` files to refuse a mix of revisions.

The mmseg ``img_dir``/``ann_dir`` symlink layout is *not* an output: DVC stores the targets of
symlinks in an output and checks them out as regular files, so links would become copies. It is
made on demand by ``python -m pipeline.folds mmseg-layout --out DIR`` from these lists.

Cost: linear in the canonical json's size: it is held once as bytes and each image and
annotation is copied as its raw text into the part that holds it (one pass, no parsed copy).
Each image's CSV row and mmseg line are made once (string joins, not ``pathlib``: the same
text, see :func:`fast_image_path`) and each per-fold file is a join of those lines. The masks
folder is walked once (one ``os.scandir`` per folder): that walk both proves every mask is
there and checks the ``dvc.lock`` hash recorded in ``sources``.

Rewrites in proportion to the change: ``data/exports`` is a persistent output written like a
fresh one (:class:`~pipeline.files.fsio.OutputFolder`): a file whose bytes did not change is
not rewritten (it keeps its inode and mtime, so DVC does not hash it again), a changed one is
replaced atomically, and a file this run did not produce (a fold no longer there) is removed.
The COCO files are streamed and compared with the file already there as they are made
(:class:`_KeptIfSame`), so no output is held whole in memory. They are not skipped by a
reuse key: after +1% growth with a stable split every fold gains images, so every COCO file
changes, and a key needs the same pass over the json that building them takes.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from pipeline.execution.cli import command, stage_main
from pipeline.files.cocojson import DUMPS, LazyCoco, decode, load_lazy
from pipeline.files.contracts import (
    AUGMENTED_COLUMNS,
    AUGMENTED_DIR,
    CANONICAL_PATH,
    CLASSES_PATH,
    DISTRIBUTION_COLUMNS,
    EXPORTS_CLASSES_NAME,
    EXPORTS_DIR,
    EXPORTS_DISTRIBUTION_NAME,
    EXPORTS_META_NAME,
    FOLD_COLUMNS,
    FOLDS_PATH,
    IGNORE,
    MANIFEST_NAME,
    MASKS_DIR,
    MMSEG_AUGMENTED,
    PAIR_COLUMNS,
    TEST_FOLD,
    VARIANTS_INDEX_PATH,
    FoldTable,
    ImageStats,
    ManifestRow,
    augmented_path,
    augmented_stem,
    folds_from_bytes,
    image_path,
    mask_path,
    mask_relpath,
    mmseg_stem,
    read_bytes,
    read_image_stats,
    read_json_object,
    read_manifest,
    read_variants_index,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import OutputFolder, atomic_writer, csv_text, dumps_json, inside
from pipeline.files.params import Params
from pipeline.files.sources import file_sizes, source_hashes

__all__ = [
    "build_exports",
    "check_agreement",
    "check_ids",
    "class_distribution",
    "coco_files",
    "coco_parts",
    "csv_bytes",
    "fast_augmented_path",
    "fast_image_path",
    "fast_mask_path",
    "fold_files",
    "img_suffix",
    "input_hashes",
    "json_bytes",
    "load_manifests",
    "main",
    "map_coco",
    "mapped_categories",
    "missing_masks",
    "run",
    "subset_coco",
    "write_coco_files",
    "write_tree",
]

# The mapped COCO json's annotations: their category id is rewritten in their raw text.
_CATEGORY_ID = re.compile(r'"category_id": (-?[0-9]+)(?=[,}])')


def subset_coco(coco: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """The COCO dict restricted to ``image_ids``: other top-level fields and every object's
    fields kept as they are, images and annotations in their original order."""
    keep = set(image_ids)
    out = dict(coco)
    out["images"] = [im for im in coco["images"] if int(im["id"]) in keep]
    out["annotations"] = [a for a in coco.get("annotations", []) if int(a["image_id"]) in keep]
    return out


def img_suffix(file_names: Iterable[str]) -> str:
    """The most common image suffix (ties: alphabetical), mmseg's single ``img_suffix``."""
    counts = collections.Counter(_suffix(n) for n in file_names)
    if not counts:
        return ".jpg"
    return min(counts, key=lambda s: (-counts[s], s))


def _suffix(file_name: str) -> str:
    """``PurePosixPath(file_name).suffix`` with string operations for a plain name."""
    if not _plain(file_name):
        return PurePosixPath(file_name).suffix
    tail = file_name.rpartition("/")[2]
    dot = tail.rfind(".")
    return tail[dot:] if 0 < dot < len(tail) - 1 else ""


def _top(file_name: str) -> str:
    """``PurePosixPath(file_name).parts[0]`` with string operations for a plain name."""
    return file_name.partition("/")[0] if _plain(file_name) else PurePosixPath(file_name).parts[0]


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    return csv_text(header, rows).encode("utf-8")


def json_bytes(obj: Any, indent: int | None = 2) -> bytes:
    return dumps_json(obj, indent=indent).encode("utf-8")


# An empty or ``.`` component (a leading ``/`` is an empty first one): what pathlib drops.
_NOT_PLAIN = re.compile(r"(?:^|/)\.?(?:/|$)")


def _plain(relative: str) -> bool:
    """Whether ``PurePosixPath(folder) / relative`` is ``folder + "/" + relative`` as text: no
    empty or ``.`` component, not absolute (names from the folds table always are: they went
    through ``check_relative``)."""
    return _NOT_PLAIN.search(relative) is None


def _prefix(folder: str) -> str:
    """What a plain relative path is appended to, so the text is pathlib's join."""
    text = str(PurePosixPath(folder))
    return "" if text == "." else text if text.endswith("/") else text + "/"


_MASK_PREFIX = _prefix(MASKS_DIR)
_AUGMENTED_PREFIX = _prefix(AUGMENTED_DIR)


def fast_mask_path(file_name: str) -> str:
    """:func:`~pipeline.files.contracts.mask_path` with string operations (pathlib parses each
    of 100k paths: seconds), the same text; other names go to the pathlib version."""
    relative = mask_relpath(file_name)
    return _MASK_PREFIX + relative if _plain(relative) else mask_path(file_name)


def fast_image_path(images_root: str, file_name: str, prefix: str | None = None) -> str:
    """:func:`~pipeline.files.contracts.image_path` with string operations, the same text;
    ``prefix`` is ``_image_prefix(images_root)``, made once per run."""
    if not _plain(file_name):
        return image_path(images_root, file_name)
    return (_image_prefix(images_root) if prefix is None else prefix) + file_name


def _image_prefix(images_root: str) -> str:
    return _prefix(str(images_root).replace("\\", "/").rstrip("/") or ".")


def fast_augmented_path(variant: str, relative: str) -> str:
    """:func:`~pipeline.files.contracts.augmented_path` with string operations, the same text."""
    if _plain(variant) and _plain(relative):
        return f"{_AUGMENTED_PREFIX}{variant}/{relative}"
    return augmented_path(variant, relative)


def _csv_lines(rows: Iterable[Sequence[Any]]) -> list[str]:
    """Each row's CSV line as :func:`~pipeline.files.fsio.csv_text` writes it (the csv
    module's writer hands each row to ``write`` whole), so a file is a join of lines."""
    lines: list[str] = []
    writer = csv.writer(_Lines(lines), lineterminator="\n")
    for row in rows:
        writer.writerow(row)
    return lines


class _Lines:
    """A ``write`` target that keeps each written line."""

    def __init__(self, lines: list[str]) -> None:
        self.write = lines.append


class _Parts:
    """Rows of one part (train, val, test) in the canonical json's image order.

    Each image's CSV row and mmseg line are made once, when first asked, and a part's file is
    the join of its images' lines: five folds cost one pass over the images, not ten.
    """

    def __init__(self, folds: FoldTable, json_ids: list[int], images_root: str) -> None:
        self.folds, self.json_ids, self.images_root = folds, json_ids, images_root
        self.names = {r.image_id: r.file_name for r in folds.rows}
        self._pairs: dict[int, str] | None = None
        self._stems: dict[int, str] | None = None
        self._augmented: tuple[tuple[ManifestRow, ...], list[str]] | None = None

    def ordered(self, ids: Iterable[int]) -> list[int]:
        keep = set(ids)
        return [i for i in self.json_ids if i in keep]

    def pair_lines(self) -> dict[int, str]:
        if self._pairs is None:
            prefix = _image_prefix(self.images_root)
            ids, names = self.json_ids, [self.names[i] for i in self.json_ids]
            rows = (
                (i, n, fast_image_path(self.images_root, n, prefix), fast_mask_path(n))
                for i, n in zip(ids, names, strict=True)
            )
            self._pairs = dict(zip(ids, _csv_lines(rows), strict=True))
        return self._pairs

    def pairs(self, ids: list[int]) -> bytes:
        lines = self.pair_lines()
        body = "".join([lines[i] for i in self.ordered(ids)])
        return (_csv_lines([PAIR_COLUMNS])[0] + body).encode("utf-8")

    def stem_lines(self) -> dict[int, str]:
        if self._stems is None:
            self._stems = {i: mmseg_stem(self.names[i]) + "\n" for i in self.json_ids}
        return self._stems

    def augmented_lines(self, rows: list[ManifestRow]) -> list[str]:
        """The ``train_augmented.csv`` line of every manifest row, made for the first fold
        and reused by the others (the same rows: compared, element by element)."""
        key = tuple(rows)
        if self._augmented is None or self._augmented[0] != key:
            self._augmented = (key, _augmented_lines(rows))
        return self._augmented[1]

    def stems_bytes(self, ids: list[int], extra: Iterable[str] = ()) -> bytes:
        """The mmseg list of ``ids`` (then the ``extra`` names), one per line."""
        lines = self.stem_lines()
        body = "".join([lines[i] for i in self.ordered(ids)])
        return (body + "".join(f"{line}\n" for line in extra)).encode("utf-8")


def check_ids(json_ids: list[int], folds: FoldTable) -> list[int]:
    """The canonical json's image ids, after checking they are exactly the folds' ids."""
    fold_ids = {r.image_id for r in folds.rows}
    if set(json_ids) != fold_ids:
        extra = sorted(fold_ids - set(json_ids))[:5]
        absent = sorted(set(json_ids) - fold_ids)[:5]
        raise DatasetError(
            f"folds table and annotations disagree (ids only in folds: {extra}, only in the "
            f"json: {absent}); re-run `dvc repro`",
            file=FOLDS_PATH,
        )
    if any(_top(r.file_name) == MMSEG_AUGMENTED for r in folds.rows):
        raise DatasetError(
            f"a top-level image folder named {MMSEG_AUGMENTED!r} clashes with the mmseg layout",
            file=FOLDS_PATH,
            field="file_name",
        )
    return json_ids


def check_agreement(coco: Mapping[str, Any], folds: FoldTable) -> list[int]:
    return check_ids([int(im["id"]) for im in coco["images"]], folds)


def _augmented_lines(rows: Sequence[ManifestRow]) -> list[str]:
    """Each manifest row's line of ``train_augmented.csv``, made once for every fold."""
    return _csv_lines(
        [
            r.source_image_id,
            r.variant,
            r.seed,
            r.copy,
            fast_augmented_path(r.variant, r.image),
            fast_augmented_path(r.variant, r.mask),
        ]
        for r in rows
    )


def _augmented_bytes(lines: Iterable[str]) -> bytes:
    return (_csv_lines([AUGMENTED_COLUMNS])[0] + "".join(lines)).encode("utf-8")


def coco_parts(folds: FoldTable, coco_json: bool) -> dict[str, set[int]]:
    """The COCO files of the exports and the image ids each holds.

    ``fold_<k>/val.json`` always (together they hold every image once) and ``test.json`` with a
    holdout; ``fold_<k>/train.json`` (the complement of the fold's val) only with
    ``export.coco_json: true``: instance-segmentation trainers read it, the others use
    ``train.csv``, and k copies of 80% of the dataset would make the exports 5x its size.
    """
    parts = {f"fold_{k}/val.json": set(folds.ids(str(k))) for k in range(folds.n_folds)}
    if coco_json:
        parts |= {f"fold_{k}/train.json": set(folds.train_ids(k)) for k in range(folds.n_folds)}
    if folds.ids(TEST_FOLD):
        parts["test.json"] = set(folds.ids(TEST_FOLD))
    return dict(sorted(parts.items()))


def coco_files(
    coco: Mapping[str, Any],
    folds: FoldTable,
    coco_json: bool = False,
    classes_doc: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """The COCO files in memory (what :func:`write_coco_files` streams), for small sets;
    ``classes_doc`` (``classes.json``) maps the categories, None keeps the original ones."""
    check_agreement(coco, folds)
    if classes_doc is not None:
        coco = map_coco(coco, classes_doc)
    return {
        path: json_bytes(subset_coco(coco, ids), indent=None)
        for path, ids in coco_parts(folds, coco_json).items()
    }


def _class_of_category(classes_doc: Mapping[str, Any]) -> dict[int, int]:
    """COCO category id -> class index; IGNORE for ignored and dropped ids (removed)."""
    index = {int(c): int(k["index"]) for k in classes_doc["classes"] for c in k["category_ids"]}
    for key in ("ignored_category_ids", "dropped_category_ids"):
        index |= {int(c): IGNORE for c in classes_doc.get(key, ())}
    return index


def mapped_categories(
    categories: Sequence[Mapping[str, Any]], classes_doc: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One COCO category per class of the table (background left out): ``id`` = class index,
    its name, the ``supercategory`` its categories share (left out when they differ) and the
    ``original_category_ids`` merged into it."""
    supers = {int(c["id"]): c.get("supercategory") for c in categories}
    out = []
    for k in sorted(classes_doc["classes"], key=lambda c: int(c["index"])):
        if int(k["index"]) == 0:
            continue
        ids = sorted(int(c) for c in k["category_ids"])
        entry: dict[str, Any] = {"id": int(k["index"]), "name": k["name"]}
        shared = {supers.get(c) for c in ids}
        if len(shared) == 1 and None not in shared:
            entry["supercategory"] = shared.pop()
        entry["original_category_ids"] = ids
        out.append(entry)
    return out


def _mapped_annotation(text: str, index: Mapping[int, int]) -> str | None:
    """An annotation's canonical text with its class index as ``category_id``; None when its
    category is ignored or dropped. The id is replaced in the text when it appears once (the
    usual case: no copy); an annotation with another ``"category_id"`` key nested inside is
    decoded and written again, with the same bytes as json.dumps."""
    found = _CATEGORY_ID.findall(text)
    cid = int(found[0]) if len(found) == 1 else int(decode(text.encode("utf-8"))["category_id"])
    if cid not in index:
        raise DatasetError(f"category {cid} is not in the class table; run `dvc repro`")
    if index[cid] == IGNORE:
        return None
    if len(found) == 1:
        return _CATEGORY_ID.sub(f'"category_id": {index[cid]}', text, count=1)
    annotation = decode(text.encode("utf-8"))
    annotation["category_id"] = index[cid]
    return DUMPS(annotation)


def map_coco(coco: Mapping[str, Any], classes_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The COCO dict with the class table's categories (see the module doc), in memory."""
    index = _class_of_category(classes_doc)
    out = dict(coco)
    out["categories"] = mapped_categories(coco.get("categories", []), classes_doc)
    kept = []
    for ann in coco.get("annotations", []):
        target = index.get(int(ann["category_id"]))
        if target is None:
            raise DatasetError(f"category {ann['category_id']} is not in the class table")
        if target != IGNORE:
            kept.append({**ann, "category_id": target})
    out["annotations"] = kept
    return out


def write_coco_files(
    data: bytes | LazyCoco,
    parts: dict[str, set[int]],
    out_dir: Path,
    classes_doc: Mapping[str, Any] | None = None,
) -> list[str]:
    """Each part's COCO subset of the canonical json (``data``, its bytes or their
    :class:`LazyCoco`), streamed in one pass; the parts whose file changed (written).

    Every image and annotation is copied as its raw text into the parts that hold its image:
    the canonical json is already in json.dumps' format, so each file is byte-identical to
    ``json.dumps(subset_coco(...))`` (of :func:`map_coco`'s dict when ``classes_doc`` is
    given: the categories replaced, each annotation's category id rewritten in its text).
    A file whose bytes did not change is left as it is (:class:`_KeptIfSame`).
    """
    coco = data if isinstance(data, LazyCoco) else load_lazy(data)
    if coco is None:
        raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
    class_of = _class_of_category(classes_doc) if classes_doc is not None else None
    paths = list(parts)
    with contextlib.ExitStack() as stack:
        outs = [_KeptIfSame(inside(out_dir, p), stack) for p in paths]
        for index, (key, raw) in enumerate(coco.top.items()):
            for out in outs:
                out.write((("{" if index == 0 else ", ") + DUMPS(key) + ": ").encode("utf-8"))
            if key in ("images", "annotations"):
                owners = [int(r.id if key == "images" else r.image_id) for r in coco.refs(key)]
                remap = class_of if key == "annotations" else None
                members = [parts[p] for p in paths]
                _write_subsets(outs, coco.items(key), owners, members, remap)
            elif key == "categories" and classes_doc is not None:
                text = DUMPS(mapped_categories(coco.value(key), classes_doc)).encode("utf-8")
                for out in outs:
                    out.write(text)
            else:
                for out in outs:
                    out.write(bytes(raw))
        for out in outs:
            out.write(b"}\n" if coco.top else b"{}\n")
        return [p for p, out in zip(paths, outs, strict=True) if out.close()]


_CHUNK = 1 << 20  # bytes compared with the file already there at a time


class _KeptIfSame:
    """A file written piece by piece that replaces ``path`` only if its bytes differ.

    The pieces are gathered into chunks of about a MB and compared with the file already
    there; while they agree nothing is written, so an unchanged file keeps its inode and mtime
    (DVC does not hash it again) and no output is held whole in memory. At the first
    difference (or another length) the file is written through :func:`atomic_writer`: the
    agreeing prefix copied from the old file, the rest streamed. The temp file is renamed into
    place when ``stack`` closes without an error, so an interrupted run leaves the old file
    or the new one, never half of one.
    """

    def __init__(self, path: Path, stack: contextlib.ExitStack) -> None:
        self.path, self.stack = path, stack
        self.old: IO[bytes] | None = None
        with contextlib.suppress(OSError):
            self.old = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (the stack closes it)
        self.same = 0  # bytes of the old file the new ones agree with so far
        self.pending: list[bytes] = []
        self.size = 0
        self.out: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self.out is not None:
            self.out.write(data)
            return
        self.pending.append(data)
        self.size += len(data)
        if self.size >= _CHUNK:
            self._compare()

    def _compare(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.size = [], 0
        if self.old is not None and self.old.read(len(data)) == data:
            self.same += len(data)
        else:
            self._diverge(data)

    def _diverge(self, data: bytes) -> None:
        """From here on the file is new: the agreeing prefix copied from the old file, then
        ``data``."""
        self.out = self.stack.enter_context(atomic_writer(self.path, binary=True))
        if self.old is not None:
            self.old.seek(0)
            left = self.same
            while left:
                block = self.old.read(min(left, _CHUNK))
                if not block:
                    raise OSError(f"{self.path} changed while it was compared")
                left -= len(block)
                self.out.write(block)
        self.out.write(data)

    def close(self) -> bool:
        """Whether the file is written anew (renamed into place when the stack closes)."""
        if self.out is None:
            self._compare()
        if self.out is None and self.old is not None and self.old.read(1):
            self._diverge(b"")  # the old file is longer
        return self.out is not None


_BLOCK = 8192  # items routed, joined and written together


def _write_subsets(
    outs: Sequence[_KeptIfSame],
    items: list[Any],
    owners: list[int],
    members: Sequence[set[int]],
    remap: Mapping[int, int] | None = None,
) -> None:
    """``[item, ...]`` in every part, each item into the parts holding its image (``owners``:
    each item's image id, ``members``: each part's image ids), in file order; ``remap``
    (category id -> class index) rewrites annotations (:func:`_mapped_block`).

    Items go by blocks: a part's items of a block are picked and joined by C loops
    (``itertools.compress``, ``bytes.join``), not one Python step per item and part.
    """
    started = [False] * len(outs)
    for out in outs:
        out.write(b"[")
    for start in range(0, len(items), _BLOCK):
        block, block_owners = items[start : start + _BLOCK], owners[start : start + _BLOCK]
        for index, (out, member) in enumerate(zip(outs, members, strict=True)):
            chosen = list(itertools.compress(block, map(member.__contains__, block_owners)))
            text = _mapped_block(chosen, remap) if remap is not None else b", ".join(chosen)
            if text:
                out.write(b", " + text if started[index] else text)
                started[index] = True
    for out in outs:
        out.write(b"]")


# An annotation's category id in its canonical text, as :data:`_CATEGORY_ID` finds it.
_CATEGORY_ID_BYTES = re.compile(rb'"category_id": (-?[0-9]+)(?=[,}])')
_KEY = b'"category_id": '


def _mapped_block(items: list[Any], index: Mapping[int, int]) -> bytes:
    """The annotations ``items`` with their class index as ``category_id``, those of ignored
    and dropped classes left out, joined by ``, ``: the bytes :func:`_mapped_annotation`
    gives item by item, made by C loops (a regex split, joins) instead of Python steps.

    The item-by-item rewrite replaces an item's match when it holds exactly one, which the
    block proves at once: as many matches as items and match k inside item k, with the
    character after it (the regex looks at it). Any other block, and one naming a category
    the class table lacks, goes item by item (:func:`_mapped_items`, which raises its error).
    """
    if not items:
        return b""
    pieces = _CATEGORY_ID_BYTES.split(b", ".join(items))
    ids = pieces[1::2]
    if len(ids) != len(items):
        return _mapped_items(items, index)
    sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    matched = sizes[1::2] + len(_KEY)
    at = np.cumsum(sizes[0:-1:2]) + np.cumsum(matched) - matched  # where match k starts
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    starts = np.cumsum(lengths + 2) - lengths - 2
    targets = {d: index.get(int(d)) for d in set(ids)}
    if None in targets.values() or not ((at >= starts) & (at + matched < starts + lengths)).all():
        return _mapped_items(items, index)
    if IGNORE in targets.values():  # match k is item k's: leave out those of ignored classes
        kept = [item for item, d in zip(items, ids, strict=True) if targets[d] != IGNORE]
        return _mapped_block(kept, index)
    new = {d: _KEY + b"%d" % t for d, t in targets.items()}
    pieces[1::2] = [new[d] for d in ids]
    return b"".join(pieces)


def _mapped_items(items: list[Any], index: Mapping[int, int]) -> bytes:
    """:func:`_mapped_annotation` on each item: its error for an unknown category."""
    texts = (_mapped_annotation(str(item, "utf-8"), index) for item in items)
    return ", ".join(t for t in texts if t is not None).encode("utf-8")


def fold_files(
    k: int, parts: _Parts, manifests: Mapping[str, list[ManifestRow]]
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every non-COCO file of fold ``k`` and its summary line for exports.json."""
    train, val = parts.folds.train_ids(k), parts.folds.ids(str(k))
    train_set = set(train)
    rows = [r for v in sorted(manifests) for r in manifests[v]]
    lines = parts.augmented_lines(rows)
    chosen = [i for i, r in enumerate(rows) if r.source_image_id in train_set]
    aug_stems = [augmented_stem(rows[i].variant, rows[i].image) for i in chosen]
    files = {
        f"fold_{k}/train.csv": parts.pairs(train),
        f"fold_{k}/val.csv": parts.pairs(val),
        f"fold_{k}/train_augmented.csv": _augmented_bytes(lines[i] for i in chosen),
        f"mmseg/splits/fold_{k}_train.txt": parts.stems_bytes(train),
        f"mmseg/splits/fold_{k}_val.txt": parts.stems_bytes(val),
        f"mmseg/splits/fold_{k}_train_augmented.txt": parts.stems_bytes(train, aug_stems),
    }
    summary = {"fold": k, "train": len(train), "val": len(val), "train_augmented": len(chosen)}
    return files, summary


def class_distribution(stats: ImageStats, folds: FoldTable, names: Sequence[str]) -> bytes:
    """``class_distribution.csv``: per fold, its train and val part (and the test part), per
    class (background 0 included, ignore not a class): pixels, images holding the class, and
    the labelled pixels of those images. ``stats`` are the masks stage's per-image counts."""
    position = {image_id: i for i, image_id in enumerate(stats.image_ids)}
    missing = [i for i in (r.image_id for r in folds.rows) if i not in position]
    if missing:
        raise DatasetError(
            f"images {missing[:5]} of the folds have no stats; run `dvc repro`", file=FOLDS_PATH
        )
    pixels = np.concatenate([stats.background[:, None], stats.measure("pixels")], axis=1)
    # Each folds row's stats row and part (fold k, or n_folds for the test part).
    where = np.array([position[r.image_id] for r in folds.rows], dtype=np.int64)
    k = folds.n_folds
    part_of = np.array([k if r.fold == TEST_FOLD else int(r.fold) for r in folds.rows])
    counts = pixels[where]
    present = counts > 0
    per_part = [  # (k + 1) x classes each: integer sums, the same in any order
        _part_sums(x, part_of, k + 1)
        for x in (counts, present, present * stats.labelled[where][:, None])
    ]
    parts = [(str(f), p, f) for f in range(k) for p in ("train", "val")]
    if (part_of == k).any():
        parts.append((TEST_FOLD, TEST_FOLD, k))
    rows = []
    for fold, part, f in parts:
        sums, images, images_pixels = (
            t[:k].sum(axis=0) - t[f] if part == "train" else t[f] for t in per_part
        )
        for c, name in enumerate(names):
            rows.append([fold, part, c, name, int(sums[c]), int(images[c]), int(images_pixels[c])])
    return csv_bytes(DISTRIBUTION_COLUMNS, rows)


def _part_sums(x: np.ndarray, part: np.ndarray, n_parts: int) -> np.ndarray:
    """Column sums of ``x``'s rows per part (int64, n_parts x columns; exact integers)."""
    return np.stack([x[part == p].sum(axis=0, dtype=np.int64) for p in range(n_parts)])


def build_exports(
    image_ids: list[int],
    folds: FoldTable,
    images_root: str,
    manifests: Mapping[str, list[ManifestRow]] | None = None,
    folds_csv: bytes | None = None,
    coco_json: bool = False,
    classes_json: bytes | None = None,
    sources: Mapping[str, str] | None = None,
    *,
    coco_classes: str = "original",
    distribution: bytes | None = None,
) -> dict[str, bytes]:
    """Every export file but the COCO jsons, as ``{path relative to data/exports: bytes}``.

    ``image_ids``: the canonical json's images, in its order (checked against the folds);
    ``manifests`` maps variant name to its checked manifest rows; ``classes_json`` is copied
    as ``classes.json``; ``sources`` (path -> content hash) goes into exports.json, with
    ``coco_classes`` (how the COCO files name categories); ``distribution`` is written as
    ``class_distribution.csv``. Pure: the stage writes the result; tests inspect it directly.
    The COCO files are :func:`coco_files`.
    """
    manifests = manifests or {}
    parts = _Parts(folds, check_ids(image_ids, folds), images_root)
    files: dict[str, bytes] = {}
    summary = []
    for k in range(folds.n_folds):
        fold, line = fold_files(k, parts, manifests)
        files.update(fold)
        summary.append(line)
    test = folds.ids(TEST_FOLD)
    if test:
        files["test.csv"] = parts.pairs(test)
        files["mmseg/splits/test.txt"] = parts.stems_bytes(test)
    files["folds.csv"] = folds_csv if folds_csv is not None else csv_bytes(FOLD_COLUMNS, folds.rows)
    if classes_json is not None:
        files[EXPORTS_CLASSES_NAME] = classes_json
    if distribution is not None:
        files[EXPORTS_DISTRIBUTION_NAME] = distribution
    names = [parts.names[i] for i in parts.json_ids]
    files[EXPORTS_META_NAME] = json_bytes(
        {
            "paths": "relative to the repository root (absolute when dataset.images is)",
            "images": str(images_root),
            "masks": MASKS_DIR,
            "augmented": AUGMENTED_DIR,
            "n_folds": folds.n_folds,
            "n_images": len(parts.json_ids),
            "test": len(test),
            "variants": sorted(manifests),
            "folds": summary,
            "coco": sorted(coco_parts(folds, coco_json)),
            "coco_classes": coco_classes,
            "mmseg": {
                "img_suffix": img_suffix(names),
                "seg_map_suffix": ".png",
                "augmented_prefix": MMSEG_AUGMENTED,
            },
            "sources": dict(sorted((sources or {}).items())),
        }
    )
    return dict(sorted(files.items()))


def load_manifests(
    variants: Iterable[str], known: set[int], augmented_dir: Path
) -> dict[str, list[ManifestRow]]:
    """Each variant's manifest, checked against the folds' image ids."""
    out: dict[str, list[ManifestRow]] = {}
    for variant in variants:
        path = augmented_dir / variant / MANIFEST_NAME
        if not path.exists():
            raise DatasetError(
                "manifest of an augment variant not found; run `dvc repro`", file=str(path)
            )
        rows = read_manifest(path, variant)
        for line, row in enumerate(rows, start=2):
            if row.source_image_id not in known:
                raise DatasetError(
                    f"image {row.source_image_id} is not in the folds table (stale augmented "
                    "output? re-run `dvc repro`)",
                    file=str(path),
                    item=f"line {line}",
                    field="source_image_id",
                )
        out[variant] = rows
    return out


def write_tree(
    out_dir: Path, files: Mapping[str, bytes], keep: set[str] | None = None
) -> OutputFolder:
    """Write ``files`` under ``out_dir`` like a fresh build: an unchanged file is not
    rewritten, a changed one is replaced atomically; then remove what a previous run left
    there that this run does not produce (fewer folds, a dropped holdout); ``keep`` names
    files written separately. The folder, for more writes before :meth:`remove_others`."""
    folder = OutputFolder(out_dir)
    for rel, data in files.items():
        folder.write(rel, data)
    folder.written |= {inside(out_dir, rel).relative_to(out_dir).as_posix() for rel in keep or ()}
    folder.remove_others()
    return folder


def missing_masks(
    folds: FoldTable, root: Path, masks: Mapping[str, int] | None = None
) -> list[str]:
    """The folds' masks not in the masks folder; ``masks``: its
    :func:`~pipeline.files.sources.file_sizes` (one walk, not a stat per image)."""
    present = file_sizes(root / MASKS_DIR) if masks is None else masks
    cut = len(_MASK_PREFIX)
    paths = (fast_mask_path(r.file_name) for r in folds.rows)
    return [m for m in paths if not (m.startswith(_MASK_PREFIX) and m[cut:] in present)]


def input_hashes(
    root: Path,
    variants: Sequence[str],
    images_root: str,
    masks: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """DVC hashes of the masks, class table and variants; the photos' only from dvc.lock.
    ``masks``: the masks folder's :func:`~pipeline.files.sources.file_sizes`, when walked."""
    paths = [MASKS_DIR, CLASSES_PATH, *(f"{AUGMENTED_DIR}/{v}" for v in variants)]
    images = PurePosixPath(images_root.replace("\\", "/"))
    inside_repo = images_root and not images.is_absolute() and ".." not in images.parts
    walked = {MASKS_DIR: masks} if masks is not None else None
    optional = [images.as_posix()] if inside_repo else []
    return source_hashes(root, paths, optional=optional, walked=walked)


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the folds (copied verbatim), the json and the manifests; write every export,
    rewriting only the files whose bytes changed."""
    folds_csv = read_bytes(root / FOLDS_PATH)
    folds = folds_from_bytes(folds_csv, FOLDS_PATH)
    try:
        masks = file_sizes(root / MASKS_DIR)
    except FileNotFoundError as exc:  # a link to nothing: no mask, and no DVC hash either
        raise DatasetError(
            f"{exc.filename} is a broken link; run `dvc repro masks`", file=MASKS_DIR
        ) from None
    missing = missing_masks(folds, root, masks)
    if missing:
        raise DatasetError(
            f"{len(missing)} masks missing (first: {missing[0]}); run `dvc repro masks`",
            file=MASKS_DIR,
        )
    lazy = load_lazy(read_bytes(root / CANONICAL_PATH))
    if lazy is None:
        raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
    image_ids = [int(ref.id) for ref in lazy.refs("images")]
    known = {r.image_id for r in folds.rows}
    variants = read_variants_index(root / VARIANTS_INDEX_PATH)
    manifests = load_manifests(variants, known, root / AUGMENTED_DIR)
    coco_json, images_root = params.export.coco_json, params.dataset.images or ""
    mapped = params.export.coco_classes == "mapped"
    classes_json = read_bytes(root / CLASSES_PATH)
    classes_doc = read_json_object(root / CLASSES_PATH)
    names = [c["name"] for c in sorted(classes_doc["classes"], key=lambda c: int(c["index"]))]
    distribution = class_distribution(read_image_stats(root, names), folds, names)
    sources = input_hashes(root, sorted(manifests), images_root, masks)
    files = build_exports(
        image_ids, folds, images_root, manifests, folds_csv, coco_json, classes_json, sources,
        coco_classes=params.export.coco_classes, distribution=distribution,
    )  # fmt: skip
    parts = coco_parts(folds, coco_json)
    folder = OutputFolder(root / EXPORTS_DIR)
    unchanged = sum(not folder.write(rel, data) for rel, data in files.items())
    written = write_coco_files(lazy, parts, folder.root, classes_doc if mapped else None)
    folder.written |= set(parts)
    unchanged += len(parts) - len(written)
    removed = folder.remove_others()
    return (
        f"{len(files) + len(parts)} files under {EXPORTS_DIR}/ ({folds.n_folds} folds; "
        f"{unchanged} unchanged, {removed} removed)"
    )


def main(argv: list[str] | None = None) -> None:
    stage_main("export", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import export

    command(export.main)
