"""Stage ``validate``: check a COCO json and its images, write a canonical annotations json.

Anything that makes the file unusable (malformed json, missing top-level keys, duplicate ids,
a ``file_name`` that escapes the image folder or cannot be a file name, two images whose
outputs would collide, an image too large) stops the stage with one
:class:`~pipeline.files.errors.DatasetError` naming the file, the id and the field. Anything that
spoils a single annotation or image is dropped or repaired and listed with its reason in the
validation issues, and counted per kind in ``reports/validation.json``: nothing is lost
silently. When more than ``dataset.max_dropped_fraction`` of the images or of the
annotations would be dropped, the stage stops instead, naming the fraction and the top reasons.

The canonical json keeps every original field, id and coordinate; it only removes dropped
items, sets non-finite numbers outside segmentations to null, replaces lone surrogates in
strings, normalises ``file_name`` (each one listed: ``b\\1.jpg`` is ``b/1.jpg``) and sorts
images and categories by id (annotations keep their json order, which the ``order`` overlap
policy uses). What one annotation is checked for is in
:mod:`pipeline.checking.checks`.

Scale: the json is held once, as its bytes, with annotations as raw slices
(:mod:`pipeline.files.cocojson`) and their ids as one int64 array. Workers get batches of
annotations as one buffer each (:class:`~pipeline.checking.checks.RawBatch`) and send back the
canonical json of the batch as UTF-8 bytes, written as the batches come back. Lists that pass
every check at a glance (all image entries plain, all annotation ids ints that fit) are checked
whole; any other is walked item by item, so the first problem is the one named. Cost: linear in
the file size, at COCO size about half of ``json.load`` of the same file
(benchmarks/bench_validate.py); memory about the file size plus a window of batches.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np

from pipeline.checking.checks import (
    KINDS,
    AnnotationContext,
    Issue,
    Item,
    RawBatch,
    check_annotation,
    check_batch,
    check_raw_batch,
    is_int,
    repair_item,
)
from pipeline.execution.cli import command, stage_main
from pipeline.execution.executor import make_executor
from pipeline.execution.itemcache import Memo, code_version, file_stamp, item_key, open_cache
from pipeline.files import images, orientation
from pipeline.files.cocojson import (
    MISSING,
    Pieces,
    load_lazy,
    loads_python,
    utf8_problem,
    write_document,
)
from pipeline.files.contracts import (
    CANONICAL_PATH,
    ISSUE_COLUMNS,
    VALIDATION_ISSUES_PATH,
    VALIDATION_REPORT_PATH,
    mask_relpath,
    parse_json,
    read_bytes,
    strip_suffix,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import (
    atomic_write_csv,
    atomic_write_json,
    atomic_writer,
    check_relative,
    is_plain_name,
)
from pipeline.files.images import decode_image
from pipeline.files.params import DatasetParams, Params

__all__ = [
    "BATCH",
    "IMAGE_DROP_KINDS",
    "ImageFolder",
    "MAX_ID",
    "Plan",
    "Prepared",
    "Probe",
    "ProbeItem",
    "Settings",
    "Source",
    "ValidationResult",
    "build_report",
    "check_categories",
    "check_dropped_fraction",
    "check_image_entry",
    "check_image_folder",
    "check_images",
    "check_output_clashes",
    "check_structure",
    "issue_rows",
    "main",
    "needs_value_scan",
    "prepare",
    "probe_image",
    "probe_images",
    "read_annotations",
    "read_source",
    "run",
    "source_of",
    "stream_canonical",
    "totals",
    "unused_issues",
    "validate_coco",
]

IMAGE_DROP_KINDS = ("image_missing", "image_unreadable", "image_size_mismatch")
MAX_ID = 2**63 - 1  # ids end up in int64 arrays


@dataclass
class ValidationResult:
    coco: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        seen = Counter(issue.kind for issue in self.issues)
        return {kind: int(seen.get(kind, 0)) for kind in KINDS}


# ---------------------------------------------------------------- loading


# A lone surrogate can only come from a \uD800-\uDFFF escape; NaN/Infinity only as bare tokens;
# inf also from a number beyond the float range (an exponent of 308 or more, or 309+ digits).
# (Each pattern starts with one literal byte, so it is searched at memchr speed; 309 digits are
# 309 zeros once every digit is read as 0.)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_HUGE_EXPONENTS = tuple(
    re.compile(letter + rb"\+?(?:30[89]|3[1-9][0-9]|[4-9][0-9][0-9]|[0-9]{4})")
    for letter in (b"e", b"E")
)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def needs_value_scan(text: bytes) -> bool:
    """Whether the raw json may hold values the json writer refuses (cheap byte scans)."""
    if b"NaN" in text or b"Infinity" in text or _SURROGATE_ESCAPE.search(text):
        return True
    if any(pattern.search(text) for pattern in _HUGE_EXPONENTS):
        return True
    return b"0" * 309 in text.translate(_DIGITS_AS_ZERO)


# ---------------------------------------------------------------- structure checks (errors)


def _require_list(coco: dict[str, Any], key: str, file: str) -> list[Any]:
    if key not in coco:
        raise DatasetError(f"missing top-level key {key!r}", file=file, field=key)
    value = coco[key]
    if not isinstance(value, list):
        raise DatasetError(f"must be a list, got {type(value).__name__}", file=file, field=key)
    return value


def _int_id(value: Any, *, file: str, item: str, field: str) -> int:
    if not is_int(value):
        raise DatasetError(f"must be an integer, got {value!r}", file=file, item=item, field=field)
    number = int(value)
    if abs(number) > MAX_ID:
        raise DatasetError(
            f"{number} is out of the 64-bit integer range", file=file, item=item, field=field
        )
    return number


def _positive_int(value: Any, *, file: str, item: str, field: str) -> int:
    number = _int_id(value, file=file, item=item, field=field)
    if number <= 0:
        raise DatasetError(f"must be positive, got {value!r}", file=file, item=item, field=field)
    return number


def _check_object(value: Any, file: str, item: str, keys: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise DatasetError("must be an object", file=file, item=item)
    for key in keys:
        if key not in value:
            raise DatasetError(f"missing key {key!r}", file=file, item=item, field=key)


def _first_use(seen: dict[int, int], key: int, index: int, where: str, at: tuple) -> None:
    """Remember ``key`` at ``index`` of list ``where``; a second use is an error."""
    if key in seen:
        what = "category" if where == "categories" else "image"
        raise DatasetError(
            f"duplicate {what} id (also {where}[{seen[key]}])", file=at[0], item=at[1], field="id"
        )
    seen[key] = index


def check_categories(categories: list[Any], file: str) -> None:
    seen: dict[int, int] = {}
    for index, cat in enumerate(categories):
        _check_object(cat, file, f"categories[{index}]", ("id", "name"))
        cid = _int_id(cat["id"], file=file, item=f"categories[{index}]", field="id")
        item = f"category id {cid}"
        if not isinstance(cat["name"], str) or not cat["name"].strip():
            raise DatasetError("must be a non-empty string", file=file, item=item, field="name")
        _first_use(seen, cid, index, "categories", (file, item))


def check_image_entry(img: Any, index: int, file: str, max_pixels: int) -> tuple[int, str]:
    """(id, clean file_name) of one image entry, or raise."""
    _check_object(img, file, f"images[{index}]", ("id", "file_name", "width", "height"))
    iid = _int_id(img["id"], file=file, item=f"images[{index}]", field="id")
    item = f"image id {iid}"
    width = _positive_int(img["width"], file=file, item=item, field="width")
    height = _positive_int(img["height"], file=file, item=item, field="height")
    if width * height > max_pixels:
        raise DatasetError(
            f"{width}x{height} = {width * height} pixels exceeds dataset.max_pixels ({max_pixels})",
            file=file,
            item=item,
            field="width*height",
        )
    return iid, check_relative(img["file_name"], file=file, item=item)


def check_images(images: list[Any], file: str, max_pixels: int) -> dict[int, str]:
    """Clean ``file_name`` per image id; duplicate ids and names that share a mask are errors.

    A list that passes every check at a glance (:func:`_plain_images`) is not walked image by
    image; any other is, so that the first problem is the one named.
    """
    names = _plain_images(images, max_pixels)
    if names is None:
        names = _checked_images(images, file, max_pixels)
    check_output_clashes(names, file)
    return names


def _plain_images(images: list[Any], max_pixels: int) -> dict[int, str] | None:
    """``file_name`` per image id when every image is plainly fine (objects with int ids that
    fit and do not repeat, int sizes in bounds, plain names whose masks do not collide), else
    None: then :func:`_checked_images` names the first problem. Whole lists at a time."""
    if not all(type(img) is dict and img.keys() >= _IMAGE_KEYS for img in images):
        return None
    ids = [img["id"] for img in images]
    sizes = [v for img in images for v in (img["width"], img["height"])]
    names = [img["file_name"] for img in images]
    if (
        set(map(type, ids)) - {int}
        or set(map(type, sizes)) - {int}
        or set(map(type, names)) - {str}
    ):
        return None
    if not all(map(is_plain_name, names)):  # what check_relative keeps as it is
        return None
    id_array = _int64(ids)
    if id_array is None or not _plain_sizes(sizes, max_pixels):
        return None
    if len(np.unique(id_array)) < len(ids) or len(set(map(mask_relpath, names))) < len(names):
        return None
    return dict(zip(ids, names, strict=True))


_IMAGE_KEYS = frozenset(("id", "file_name", "width", "height"))


def _plain_sizes(sizes: list[int], max_pixels: int) -> bool:
    """Widths and heights (interleaved ints) all positive, their products within max_pixels."""
    array = _int64(sizes)
    if array is None or not array.size or array.min() <= 0 or array.max() >= 2**31:
        return False
    return bool((array[0::2] * array[1::2]).max() <= max_pixels)


def _checked_images(images: list[Any], file: str, max_pixels: int) -> dict[int, str]:
    """check_images image by image: the first problem raises, named."""
    names: dict[int, str] = {}
    position: dict[int, int] = {}
    # Keyed by mask path: x.jpg and x.png (or x.jpg twice) would write one data/masks/x.png,
    # and every later output (augmented variants, mmseg lists) is named after it too.
    by_mask: dict[str, int] = {}
    for index, img in enumerate(images):
        iid, name = check_image_entry(img, index, file, max_pixels)
        item = f"image id {iid}"
        _first_use(position, iid, index, "images", (file, item))
        mask_name = mask_relpath(name)
        if mask_name in by_mask:
            other = by_mask[mask_name]
            clash = (
                f"file_name {name!r} also used by image id {other}"
                if names[other] == name
                else f"file_name {name!r} and image id {other}'s file_name differ only by "
                f"extension: both would write the mask {mask_name!r}; rename one"
            )
            raise DatasetError(clash, file=file, item=item, field="file_name")
        by_mask[mask_name] = iid
        names[iid] = name
    return names


# Outputs named after an image: the mask ``<stem>.png`` and augmented ``<stem>__c<k>.<png|jpg>``.
_VARIANT_NAME = re.compile(r"(.+)__c\d+\.(?:png|jpg)")


def check_output_clashes(names: dict[int, str], file: str) -> None:
    """No output file of one image may be a folder that another image's outputs need.

    ``x.jpg`` writes ``x.png`` (mask) and ``x__c0.png`` (variants); an image ``x.png/y.jpg``
    needs a folder ``x.png`` in the same output trees. Folders keep their names in every output
    tree, so comparing image folders with output file names catches every such clash.
    """
    owner = {strip_suffix(n): iid for iid, n in names.items()}
    folders: dict[str, int] = {}
    for iid, name in names.items():
        folder = name.rpartition("/")[0]
        while folder and folder not in folders:
            folders[folder] = iid
            folder = folder.rpartition("/")[0]
    for folder, iid in sorted(folders.items()):
        stem = folder[:-4] if folder.endswith(".png") else None
        variant = _VARIANT_NAME.fullmatch(folder)
        other = owner.get(stem) if stem else None
        if other is None and variant:
            other = owner.get(variant.group(1))
        if other is not None:
            raise DatasetError(
                f"folder {folder!r} of file_name {names[iid]!r} has the name of an output "
                f"file of image id {other} ({names[other]!r}); rename one",
                file=file,
                item=f"image id {iid}",
                field="file_name",
            )


def check_structure(coco: Any, file: str, max_pixels: int) -> dict[int, str]:
    """Raise on what makes the file unusable as a whole; the rest is per item.

    ``coco`` is a parsed dict or a :class:`Source`. Returns the clean ``file_name`` of every
    image id.
    """
    source = coco if isinstance(coco, Source) else source_of(coco)
    top = source.top
    if not isinstance(top, dict):
        raise DatasetError(f"top level must be a json object, got {type(top).__name__}", file=file)
    images = _require_list(top, "images", file)
    annotations = _require_list(top, "annotations", file)
    check_categories(_require_list(top, "categories", file), file)
    names = check_images(images, file, max_pixels)
    for index, ann in enumerate(annotations):  # only when source_of found a malformed list
        _check_object(ann, file, f"annotations[{index}]", ("id",))
    if source.id_array is None:  # else every id is an int that fits: nothing to name
        for index, aid in enumerate(source.ids):
            item = f"annotations[{index}]"
            if aid is MISSING:
                raise DatasetError("missing key 'id'", file=file, item=item, field="id")
            _int_id(aid, file=file, item=item, field="id")
    return names


# ---------------------------------------------------------------- images on disk


@dataclass(frozen=True)
class Probe:
    """What an image file holds against its json size (see :func:`probe_image`)."""

    status: str  # ok | exif | mismatch | missing | unreadable
    size: tuple[int, int] | None = None  # (height, width) found
    hint: str = ""  # for a missing file: a same-named file one folder down
    orientation: int = 1  # the file's EXIF orientation, whichever pixels are used


def probe_image(path: Path, shape: tuple[int, int], root: Path | None = None) -> Probe:
    """Read one image file: header first, so a file that disagrees is never decoded.

    ``exif``: the raw pixels do not have the json ``shape`` but the EXIF-oriented ones do.
    ``root`` is the image folder, searched for a same-named file when ``path`` is missing.
    """
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return Probe("missing", hint=_missing_hint(root, path.name) if root else "")
    except OSError:
        return Probe("unreadable")
    decoded = decode_image(data, shape)
    return Probe(decoded.status, decoded.size, orientation=decoded.orientation)


@dataclass(frozen=True)
class ImageFolder:
    """The folder ``file_name`` is relative to, as the executor's workers see it."""

    path: str

    def with_paths(self, convert: Callable[[str], str]) -> ImageFolder:
        return ImageFolder(convert(self.path))


class ProbeItem(NamedTuple):
    file_name: str
    height: int
    width: int
    image_id: int

    def describe(self) -> str:
        """Names the image in an error the executor raises (a worker crash)."""
        return f"image id {self.image_id} ({self.file_name})"


def _probe_task(root: ImageFolder, item: ProbeItem) -> Probe:
    folder = Path(root.path)
    return probe_image(folder / item.file_name, (item.height, item.width), folder)


def probe_images(
    images: list[dict[str, Any]],
    names: dict[int, str],
    root: str,
    run_on: Params | int,
    memo: Memo | None = None,
) -> dict[int, Probe]:
    """Every image file checked, on the executor; keyed by image id.

    ``file_name`` is a clean relative path here (no ``..``, not absolute). Symlinks inside the
    image folder are followed: they are the user's own (e.g. a DVC symlink cache), and this
    stage only reads them; outputs are always written under our own folders. With a ``memo``,
    a file unchanged in path, size and modification time is not opened again.
    """
    ids = [int(im["id"]) for im in images]
    items = [
        ProbeItem(names[i], int(im["height"]), int(im["width"]), i)
        for i, im in zip(ids, images, strict=True)
    ]
    keys = [_probe_key(root, item) for item in items]
    known = [memo.get(k) if memo is not None and k else None for k in keys]
    todo = [item for item, probe in zip(items, known, strict=True) if probe is None]
    fresh = make_executor(run_on).map(_probe_task, todo, ImageFolder(root), "validate images")
    out: dict[int, Probe] = {}
    for image_id, key, probe in zip(ids, keys, known, strict=True):
        probe = _stored(probe) if probe is not None else next(fresh)
        if memo is not None and key and probe.status != "missing":
            memo.put(key, [probe.status, probe.size, probe.hint, probe.orientation])
        out[image_id] = probe
    return out


def _probe_key(root: str, item: ProbeItem) -> str | None:
    """What decides a file check: the file (path, size, mtime), the json size, the code."""
    stamp = file_stamp(Path(root) / item.file_name)
    return item_key(_probe_version(), stamp, f"{item.height}x{item.width}") if stamp else None


def _stored(value: list[Any]) -> Probe:
    status, size, hint, *rest = value
    return Probe(status, tuple(size) if size else None, hint, int(rest[0]) if rest else 1)


@functools.cache
def _probe_version() -> str:
    return code_version([sys.modules[__name__], images, orientation])


def _missing_hint(folder: Path, name: str) -> str:
    """Point at a same-named file one folder down (Roboflow exports put some in images/)."""
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            candidate = os.path.join(entry.path, name)
            if entry.is_dir() and os.path.isfile(candidate):
                rel = os.path.relpath(candidate, folder)
                return f" (a file {rel!r} exists: fix file_name or the image folder)"
    except OSError:
        pass
    return ""


# ---------------------------------------------------------------- the whole check


@dataclass
class Source:
    """The input, parsed: every top-level value but the annotations decoded, the annotations
    as raw json slices (strict JSON, via msgspec) or dicts (Python's json), and each
    annotation's id and image id. ``scan_top``/``scan_annotations``: whether those parts may
    hold values the json writer refuses (NaN, inf, lone surrogates), so must be repaired."""

    top: dict[str, Any]  # key -> value in file order; "annotations" maps to []
    annotations: Sequence[Any]
    ids: list[Any]  # per annotation: its "id" (MISSING when it has none)
    image_ids: list[Any]  # per annotation: its "image_id" as an issue names it
    scan_top: bool = True
    scan_annotations: bool = True
    id_array: np.ndarray | None = None  # the ids as int64, when all are ints that fit

    @property
    def raw(self) -> bool:
        """The annotations are raw json slices (sent to workers as :class:`RawBatch`)."""
        return bool(self.annotations) and not isinstance(self.annotations[0], dict)


def _int64(ids: list[Any]) -> np.ndarray | None:
    """``ids`` as int64 when every one is an int within :data:`MAX_ID` (what check_structure
    accepts without a message), else None (then each is checked, and named, on its own)."""
    if set(map(type, ids)) - {int}:
        return None
    try:
        array = np.fromiter(ids, np.int64, len(ids))
    except OverflowError:
        return None
    return array if not array.size or array.min() >= -MAX_ID else None


def source_of(coco: Any, scan: bool = True) -> Source:
    """A parsed dict as a :class:`Source` (tests, small files, files msgspec cannot read)."""
    anns = coco.get("annotations") if isinstance(coco, dict) else None
    if not isinstance(anns, list) or not all(isinstance(a, dict) and "id" in a for a in anns):
        return Source(coco, [], [], [])  # check_structure names what is wrong
    top = {k: ([] if k == "annotations" else v) for k, v in coco.items()}
    ids = [a["id"] for a in anns]
    image_ids = [a.get("image_id", "") for a in anns]
    return Source(top, anns, ids, image_ids, scan, scan, _int64(ids))


def read_source(raw: bytes, file: str) -> Source:
    """The json as a :class:`Source`, lazily where msgspec can (one copy of the bytes).

    msgspec accepted the whole text, so it holds no NaN, Infinity or lone surrogate: only the
    small top-level parts are scanned for huge numbers; an annotation with one is found when
    it is decoded (:func:`pipeline.files.cocojson.decode_checked`). msgspec does not check the
    strings of the values it skips, so the text is checked to be UTF-8 here; a top-level key
    written twice (every json reader keeps the last) is refused.
    """
    lazy = load_lazy(raw)
    if lazy is not None:
        problem = utf8_problem(raw)
        if problem:
            raise DatasetError(problem, file=file)
        _refuse_duplicates(lazy.duplicate_keys(), file)
    if lazy is None or "annotations" not in lazy.top:
        return source_of(_parse(raw, file), needs_value_scan(raw))
    try:
        annotations = lazy.items("annotations")
        refs = lazy.refs()
    except ValueError:  # not a list of objects: the full parse names the problem
        return source_of(_parse(raw, file))
    ids = [r.id for r in refs]
    image_ids = ["" if r.image_id is None else r.image_id for r in refs]
    del refs
    top = {k: ([] if k == "annotations" else lazy.value(k)) for k in lazy.top}
    small = b"".join(bytes(v) for k, v in lazy.top.items() if k != "annotations")
    scan = needs_value_scan(small)
    return Source(top, annotations, ids, image_ids, scan, False, _int64(ids))


def _parse(raw: bytes, file: str) -> Any:
    """Python's json (what msgspec refuses: NaN, Infinity, huge integers), every failure one
    line naming the file."""
    try:
        value, duplicates = loads_python(raw)
    except RecursionError:
        raise DatasetError(_TOO_DEEP, file=file) from None
    except UnicodeDecodeError:
        problem = utf8_problem(raw) if json.detect_encoding(raw) == "utf-8" else None
        if problem:
            raise DatasetError(problem, file=file) from None
        parse_json(raw, file)  # names the problem (UTF-16/32 text)
        raise
    except ValueError:
        parse_json(raw, file)  # names the line and column
        raise
    _refuse_duplicates(duplicates, file)
    return value


_TOO_DEEP = "json nested too deeply (hundreds of levels of [ and {; a COCO file needs five)"


def _refuse_duplicates(keys: list[str], file: str) -> None:
    """Two top-level members with one key: every json reader silently keeps the last."""
    if keys:
        raise DatasetError(
            f"top-level key {keys[0]!r} is written more than once; json readers keep only the "
            "last one and silently ignore the others: remove or merge them",
            file=file,
            field=keys[0],
        )


@dataclass
class Prepared:
    """Everything before the annotations: their context and the items to check, in order."""

    categories: list[dict[str, Any]]
    images: dict[int, dict[str, Any]]  # kept images, by id
    rest: dict[str, Any]  # other top-level fields, repaired
    issues: list[Issue]  # from categories and images
    rest_issues: list[Issue]  # from the other top-level fields, listed last
    context: AnnotationContext
    plan: Plan


def prepare(
    source: Source, names: dict[int, str], probes: dict[int, Probe] | None, settings: Settings
) -> Prepared:
    issues: list[Issue] = []
    scan = settings.scan_values and source.scan_top
    categories = sorted(source.top["categories"], key=lambda c: int(c["id"]))
    if scan:
        categories = [repair_item(c, {"category_id": int(c["id"])}, issues) for c in categories]
    images = _clean_images(source.top["images"], names, scan, issues)
    if probes is not None:
        _apply_probes(images, probes, settings, issues)
    rest_issues: list[Issue] = []
    rest = _canonical_rest(source.top, scan, rest_issues)
    sizes = {iid: (im["width"], im["height"]) for iid, im in images.items()}
    categories_ids = frozenset(int(c["id"]) for c in categories)
    context = AnnotationContext(sizes, categories_ids, scan and source.scan_annotations)
    plan = Plan(source, set(images), set(names))
    return Prepared(categories, images, rest, issues, rest_issues, context, plan)


@dataclass(frozen=True)
class Settings:
    file: str = "annotations.json"
    missing_images: str = "drop"
    scan_values: bool = True  # False: the caller knows no value needs repairing
    images_label: str = ""  # the image folder as the user wrote it, for messages


class Plan:
    """The annotations in order, each with the id it keeps or gets.

    Duplicate annotation ids (TACO has two) are real, distinct objects: later ones get a fresh
    id after the largest one and keep the original (listed). An annotation whose image was
    dropped is counted, not checked: that drop is listed with the image.
    """

    def __init__(self, source: Source, kept: set[int], known: set[int]) -> None:
        self.source, self.dropped = source, known - kept
        self.with_image = 0

    def numbered(self) -> tuple[np.ndarray, dict[int, int]]:
        """The id each annotation keeps or gets, and {position: original id} of the
        duplicates: found by one stable sort, numbered in file order from the largest id + 1."""
        ids = self.source.id_array
        if ids is None:  # integral floats (checked): their int values
            ids = np.array([int(i) for i in self.source.ids], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        repeated = np.zeros(len(ids), dtype=bool)
        repeated[order[1:]] = ids[order[1:]] == ids[order[:-1]]
        positions = np.flatnonzero(repeated).tolist()
        if not positions:
            return ids, {}
        first = int(ids.max()) + 1
        originals = {p: int(ids[p]) for p in positions}
        # past int64 (ids near 2**63): Python ints, as json writes them
        ids = ids.astype(object if first + len(positions) - 1 > MAX_ID else np.int64)
        ids[positions] = list(range(first, first + len(positions)))
        return ids, originals

    def dropped_positions(self) -> np.ndarray:
        """Positions of the annotations whose image was dropped (sorted)."""
        if not self.dropped:
            return np.zeros(0, dtype=np.int64)
        dropped = self.dropped
        gone = [is_int(i) and int(i) in dropped for i in self.source.image_ids]
        return np.flatnonzero(np.asarray(gone, dtype=bool))

    def __iter__(self) -> Iterator[Item]:
        ids, originals = self.numbered()
        dropped = set(self.dropped_positions().tolist())
        self.with_image = len(dropped)
        rows = zip(ids.tolist(), self.source.image_ids, self.source.annotations, strict=True)
        for index, (aid, image_id, ann) in enumerate(rows):
            yield (None if index in dropped else ann), aid, originals.get(index), image_id

    def batches(self, size: int) -> Iterator[RawBatch]:
        """The raw annotations in batches of ``size``, each one buffer (see :class:`RawBatch`)."""
        ids, originals = self.numbered()
        dropped = self.dropped_positions()
        self.with_image = len(dropped)
        repeats = np.fromiter(originals, np.int64, len(originals))
        anns, image_ids = self.source.annotations, self.source.image_ids
        for start in range(0, len(anns), size):
            stop = min(start + size, len(anns))
            own = _between(repeats, start, stop).tolist()
            yield RawBatch(
                b",".join(anns[start:stop]),
                ids[start:stop],
                {p - start: (originals[p], image_ids[p]) for p in own},
                frozenset((_between(dropped, start, stop) - start).tolist()),
            )


def _between(positions: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The sorted ``positions`` in [start, stop)."""
    return positions[np.searchsorted(positions, start) : np.searchsorted(positions, stop)]


def validate_coco(
    coco: Any,
    *,
    file: str = "annotations.json",
    probes: dict[int, Probe] | None = None,
    missing_images: str = "drop",
    max_pixels: int = 200_000_000,
    scan_values: bool = True,
    names: dict[int, str] | None = None,
    images_label: str = "",
) -> ValidationResult:
    """Check ``coco`` (a parsed COCO dict) and return the canonical dict plus issues.

    Pure and in memory (the stage streams the same checks, see :func:`run`): ``probes`` (from
    :func:`probe_images`) say what each image file holds; without them files are not checked.
    ``scan_values=False`` skips the search for NaN/inf and lone surrogates outside
    segmentations, for callers that know the raw text holds none (:func:`needs_value_scan`).
    """
    source = source_of(coco, scan_values)
    names = names if names is not None else check_structure(source, file, max_pixels)
    settings = Settings(file, missing_images, scan_values, images_label)
    prepared = prepare(source, names, probes, settings)
    issues, kept = list(prepared.issues), []
    for item in prepared.plan:
        checked = check_annotation(prepared.context, item)
        issues.extend(checked.issues)
        if checked.annotation is not None:
            kept.append(checked.annotation)
    used = ({a["image_id"] for a in kept}, {a["category_id"] for a in kept})
    issues += unused_issues(prepared, *used) + prepared.rest_issues
    canonical = dict(prepared.rest)
    canonical.update(
        images=list(prepared.images.values()), annotations=kept, categories=prepared.categories
    )
    return ValidationResult(canonical, issues, totals(source, prepared, len(kept)))


def totals(source: Source, prepared: Prepared, kept: int) -> dict[str, int]:
    return {
        "images_in": len(source.top["images"]),
        "images_kept": len(prepared.images),
        "annotations_in": len(source.annotations),
        "annotations_kept": kept,
        "annotations_dropped_with_their_image": prepared.plan.with_image,
        "categories": len(prepared.categories),
    }


def _clean_images(
    images: list[dict[str, Any]], names: dict[int, str], scan: bool, issues: list[Issue]
) -> dict[int, dict[str, Any]]:
    kept: dict[int, dict[str, Any]] = {}
    for img in sorted(images, key=lambda im: int(im["id"])):
        clean = dict(img)
        clean["id"] = int(img["id"])
        clean["width"], clean["height"] = int(img["width"]), int(img["height"])
        clean["file_name"] = names[clean["id"]]
        if clean["file_name"] != img["file_name"]:
            issues.append(_normalised(img["file_name"], clean["file_name"], clean["id"]))
        kept[clean["id"]] = repair_item(clean, {"image_id": clean["id"]}, issues) if scan else clean
    return kept


def _normalised(written: str, clean: str, image_id: int) -> Issue:
    """A ``file_name`` the canonical json writes otherwise (``b\\1.jpg`` as ``b/1.jpg``)."""
    how = []
    if "\\" in written:
        how.append("backslashes read as folder separators")
    if written.replace("\\", "/") != clean:
        how.append("empty and '.' path parts dropped")
    return Issue(
        "file_name_normalised",
        f"{written!r} is read and written as {clean!r} ({'; '.join(how)})",
        image_id,
        field="file_name",
    )


def _canonical_rest(top: dict[str, Any], scan: bool, issues: list[Issue]) -> dict[str, Any]:
    """Top-level fields other than the three lists, repaired like the items."""
    rest = {k: v for k, v in top.items() if k not in ("images", "annotations", "categories")}
    return repair_item(rest, {}, issues) if scan else rest


def unused_issues(prepared: Prepared, used_images: set[int], used_cats: set[int]) -> list[Issue]:
    """Images without a kept annotation (all background) and categories nothing uses."""
    out = [
        Issue("image_without_annotations", "no annotation: the mask is all background", iid)
        for iid in sorted(set(prepared.images) - used_images)
    ]
    out += [
        Issue("category_without_annotations", "no annotation uses this category", category_id=cid)
        for cid in sorted(prepared.context.categories - used_cats)
    ]
    return out


def _apply_probes(
    images: dict[int, dict[str, Any]],
    probes: dict[int, Probe],
    settings: Settings,
    issues: list[Issue],
) -> None:
    """List every image file that is not as the json says; drop, keep or stop per policy."""
    policy, file = settings.missing_images, settings.file
    for iid in list(images):
        problem = _image_problem(images[iid], probes[iid], settings.images_label)
        if problem is None:
            continue
        kind, message, fld = problem
        if kind in _KEPT_IMAGE_KINDS:
            issues.append(Issue(kind, message, image_id=iid, field=fld))
            continue
        if policy == "error":
            raise DatasetError(message, file=file, item=f"image id {iid}", field=fld)
        if policy == "keep" and kind != "image_size_mismatch":
            continue
        issues.append(
            Issue(kind, message + "; image and its annotations dropped", image_id=iid, field=fld)
        )
        del images[iid]


# Image files listed but kept whatever dataset.missing_images says: their pixels are used.
_KEPT_IMAGE_KINDS = ("image_exif_orientation", "image_exif_orientation_ambiguous")


def _image_problem(img: dict[str, Any], probe: Probe, folder: str) -> tuple[str, str, str] | None:
    """(kind, message, field) for an image file that is not as the json says, or None."""
    path = os.path.join(folder, img["file_name"])
    json_size = f"{img['width']}x{img['height']}"
    if probe.status == "ok" and probe.orientation in orientation.TURNS:
        return (
            "image_exif_orientation_ambiguous",
            f"{path}: EXIF orientation {probe.orientation}: viewers show it "
            f"{orientation.TURNS[probe.orientation]}, but its raw pixels have the json size "
            f"{json_size} and are used as stored; if the annotator saw it turned, its mask is "
            "misaligned: compare its mask in data/masks with the photo as stored",
            "file_name",
        )
    if probe.status == "ok":
        return None
    if probe.status == "exif":
        return (
            "image_exif_orientation",
            f"{path}: raw pixels are {json_size} only after EXIF orientation; stages read it "
            "oriented to match the json",
            "width/height",
        )
    if probe.status == "mismatch" and probe.size is not None:
        swapped = probe.size == (img["width"], img["height"])
        hint = " (width and height swapped: EXIF rotation?)" if swapped else ""
        message = f"{path} is {probe.size[1]}x{probe.size[0]}, json says {json_size}{hint}"
        return "image_size_mismatch", message, "width/height"
    kind = "image_missing" if probe.status == "missing" else "image_unreadable"
    return kind, f"{path} is {kind[6:]}{probe.hint}", "file_name"


# ---------------------------------------------------------------- stage


def build_report(result: ValidationResult) -> dict[str, Any]:
    counts = result.counts()
    dropped_anns = result.totals["annotations_in"] - result.totals["annotations_kept"]
    return {
        **result.totals,
        "annotations_dropped": dropped_anns,
        "images_dropped": result.totals["images_in"] - result.totals["images_kept"],
        "problems": counts,
        "problems_total": int(sum(counts.values())),
    }


def check_dropped_fraction(result: ValidationResult, limit: float, file: str) -> None:
    """Stop when validation would silently shrink the dataset by more than ``limit``."""
    report = build_report(result)
    by_kind = Counter(i.kind for i in result.issues if i.action == "dropped")
    for what, dropped, total, kinds in (
        ("images", report["images_dropped"], report["images_in"], IMAGE_DROP_KINDS),
        ("annotations", report["annotations_dropped"], report["annotations_in"], None),
    ):
        if not total or dropped / total <= limit:
            continue
        reasons = Counter(
            {k: n for k, n in by_kind.items() if kinds is None or k in kinds}
        ).most_common(3)
        if what == "annotations" and report["annotations_dropped_with_their_image"]:
            reasons.append(("with their image", report["annotations_dropped_with_their_image"]))
        top = ", ".join(f"{k} {n}" for k, n in reasons)
        raise DatasetError(
            f"{dropped} of {total} {what} ({dropped / total:.1%}) would be dropped, over "
            f"dataset.max_dropped_fraction = {limit:g} (top reasons: {top}; every item is "
            f"listed in {VALIDATION_ISSUES_PATH}); fix the data, or raise the limit",
            file=file,
            field=what,
        )


def issue_rows(issues: list[Issue]) -> list[list[Any]]:
    return [
        [i.kind, i.action, i.image_id, i.annotation_id, i.category_id, i.field, i.message]
        for i in issues
    ]


def read_annotations(path: Path, file: str) -> bytes:
    """The user's json as bytes; a missing file is named as the annotations file."""
    if not path.is_file():
        raise DatasetError("annotations file not found (dataset.annotations)", file=file)
    return read_bytes(path)


def check_image_folder(ds: DatasetParams, root: Path) -> str | None:
    """The image folder to check files in, or None when files are not checked."""
    if not ds.check_images or ds.images is None:
        return None
    folder = root / ds.images
    if folder.is_dir():
        return str(folder)
    if ds.missing_images == "keep":
        return None
    raise DatasetError(
        "image folder not found (set dataset.missing_images: keep to build masks from the "
        "json sizes alone)",
        file="params.yaml",
        field="dataset.images",
    )


BATCH = 1000  # annotations per unit of work: large enough that sending it costs little


def _batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    source = iter(items)
    return iter(lambda: list(itertools.islice(source, size)), [])


def stream_canonical(
    out: TextIO, source: Source, prepared: Prepared, run_on: Params | int
) -> ValidationResult:
    """Check every annotation on the executor and write the canonical json as results come.

    Only a window of batches is in memory at once; the document is byte-identical to
    ``json.dumps`` of the canonical dict that :func:`validate_coco` returns.
    """
    issues, used_images, used_cats = list(prepared.issues), set(), set()
    kept = 0
    n_batches = -(-len(source.annotations) // BATCH)
    desc = f"validate ({BATCH} annotations each)"
    executor = make_executor(run_on)
    if source.raw:
        work = prepared.plan.batches(BATCH)
        batches = executor.map(check_raw_batch, work, prepared.context, desc, n_batches, 1)
    else:
        items = _batched(prepared.plan, BATCH)
        batches = executor.map(check_batch, items, prepared.context, desc, n_batches, 1)

    def texts() -> Iterator[str | bytes]:
        nonlocal kept
        for batch in batches:
            issues.extend(batch.issues)
            used_images.update(batch.image_ids)
            used_cats.update(batch.category_ids)
            kept += batch.kept
            if batch.kept:
                yield batch.text

    fields = [
        *prepared.rest.items(),
        ("images", list(prepared.images.values())),
        ("annotations", Pieces(texts())),
        ("categories", prepared.categories),
    ]
    write_document(out, fields)
    issues += unused_issues(prepared, used_images, used_cats) + prepared.rest_issues
    return ValidationResult({}, issues, totals(source, prepared, kept))


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the json (and image headers), validate, write the report and the canonical json.

    The canonical json is renamed into place only when the dropped fraction is acceptable.
    A value nested close to the recursion limit passes the readers but not the checks that
    walk it (repairs, the writer): one line naming the json too.
    """
    try:
        return _run(params, root)
    except RecursionError:
        raise DatasetError(_TOO_DEEP, file=params.dataset.annotations) from None


def _run(params: Params, root: Path) -> str:
    ds = params.dataset
    raw = read_annotations(root / ds.annotations, ds.annotations)
    source = read_source(raw, ds.annotations)
    names = check_structure(source, ds.annotations, ds.max_pixels)
    folder = check_image_folder(ds, root)
    probes = None
    if folder is not None:
        cache = open_cache(params.cache.dir, params.cache.max_size_gb, root)
        memo = Memo(cache, "validate-probes")
        probes = probe_images(source.top["images"], names, folder, params, memo)
        memo.save()
    settings = Settings(ds.annotations, ds.missing_images, True, ds.images or "")
    prepared = prepare(source, names, probes, settings)
    with atomic_writer(root / CANONICAL_PATH) as out:
        result = stream_canonical(out, source, prepared, params)
        report = build_report(result)
        atomic_write_json(root / VALIDATION_REPORT_PATH, report)
        atomic_write_csv(root / VALIDATION_ISSUES_PATH, ISSUE_COLUMNS, issue_rows(result.issues))
        check_dropped_fraction(result, ds.max_dropped_fraction, ds.annotations)
    return (
        f"{report['images_kept']}/{report['images_in']} images, "
        f"{report['annotations_kept']}/{report['annotations_in']} annotations kept; "
        f"{report['problems_total']} problems listed in {VALIDATION_ISSUES_PATH}"
    )


def main(argv: list[str] | None = None) -> None:
    stage_main("validate", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import validate

    command(validate.main)
