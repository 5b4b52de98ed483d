"""Stage ``validate``: check a COCO json and its images, write a canonical annotations json.

Anything that makes the file unusable (malformed json, missing top-level keys, duplicate ids,
a ``file_name`` that escapes the image folder or cannot be a file name, two images whose
outputs would collide, an image too large) stops the stage with one
:class:`~pipeline.errors.DatasetError` naming the file, the id and the field. Anything that
spoils a single annotation or image is dropped or repaired and listed with its reason in the
validation issues, and counted per kind in ``reports/validation.json``: nothing is lost
silently. When more than ``dataset.max_dropped_fraction`` of the images or of the
annotations would be dropped, the stage stops instead, naming the fraction and the top reasons.

The canonical json keeps every original field, id and coordinate; it only removes dropped
items, sets non-finite numbers outside segmentations to null, replaces lone surrogates in
strings, normalises ``file_name`` and sorts images and categories by id (annotations keep their
json order, which the ``order`` overlap policy uses). Polygon points outside the image are kept
as they are: pycocotools clips while it rasterises, so masks match ``annToMask`` on the user's
own json. Points further outside than the image's own size (``x < -width``, ``x > 2 * width``,
likewise for y) would cost pycocotools' rasteriser memory and time without bound (it traces
edges at 5x scale before clipping), so such an annotation is dropped and listed.

Cost: one pass over images and annotations, linear in their count and size.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pipeline import rle
from pipeline.cli import stage_main
from pipeline.contracts import (
    CANONICAL_PATH,
    ISSUE_COLUMNS,
    VALIDATION_ISSUES_PATH,
    VALIDATION_KINDS,
    VALIDATION_REPORT_PATH,
    mask_relpath,
    parse_json,
    read_bytes,
)
from pipeline.errors import DatasetError
from pipeline.executor import make_executor
from pipeline.fsio import atomic_write_csv, atomic_write_json, check_relative
from pipeline.images import decode_image
from pipeline.params import DatasetParams, Params

KINDS = VALIDATION_KINDS
IMAGE_DROP_KINDS = ("image_missing", "image_unreadable", "image_size_mismatch")
# How far outside the image a polygon point may lie, in multiples of the image's own size.
FAR_OUTSIDE = 1.0
MAX_ID = 2**63 - 1  # ids end up in int64 arrays


@dataclass
class Issue:
    kind: str
    message: str
    image_id: Any = ""
    annotation_id: Any = ""
    category_id: Any = ""
    field: str = ""

    @property
    def action(self) -> str:
        return KINDS[self.kind]


@dataclass
class ValidationResult:
    coco: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        seen = Counter(issue.kind for issue in self.issues)
        return {kind: int(seen.get(kind, 0)) for kind in KINDS}


# ---------------------------------------------------------------- loading


# A lone surrogate can only come from a \uD800-\uDFFF escape; NaN/Infinity only as bare tokens.
_SUSPECT = re.compile(rb"NaN|Infinity|\\u[dD][89a-fA-F]")


def needs_value_scan(text: bytes) -> bool:
    """Whether the raw json may hold values the json writer refuses (cheap byte scan)."""
    return _SUSPECT.search(text) is not None


# ---------------------------------------------------------------- structure checks (errors)


def _require_list(coco: dict[str, Any], key: str, file: str) -> list[Any]:
    if key not in coco:
        raise DatasetError(f"missing top-level key {key!r}", file=file, field=key)
    value = coco[key]
    if not isinstance(value, list):
        raise DatasetError(f"must be a list, got {type(value).__name__}", file=file, field=key)
    return value


def _int_id(value: Any, *, file: str, item: str, field: str) -> int:
    if not _is_int(value):
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


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value == int(value)


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
    """Clean ``file_name`` per image id; duplicate ids and names that share a mask are errors."""
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
    check_output_clashes(names, file)
    return names


# Outputs named after an image: the mask ``<stem>.png`` and augmented ``<stem>__c<k>.<png|jpg>``.
_VARIANT_NAME = re.compile(r"(.+)__c\d+\.(?:png|jpg)")


def check_output_clashes(names: dict[int, str], file: str) -> None:
    """No output file of one image may be a folder that another image's outputs need.

    ``x.jpg`` writes ``x.png`` (mask) and ``x__c0.png`` (variants); an image ``x.png/y.jpg``
    needs a folder ``x.png`` in the same output trees. Folders keep their names in every output
    tree, so comparing image folders with output file names catches every such clash.
    """
    owner = {str(PurePosixPath(n).with_suffix("")): iid for iid, n in names.items()}
    folders: dict[str, int] = {}
    for iid, name in names.items():
        for parent in PurePosixPath(name).parents:
            if str(parent) != ".":
                folders.setdefault(str(parent), iid)
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

    Returns the clean ``file_name`` of every image id.
    """
    if not isinstance(coco, dict):
        raise DatasetError(f"top level must be a json object, got {type(coco).__name__}", file=file)
    images = _require_list(coco, "images", file)
    annotations = _require_list(coco, "annotations", file)
    check_categories(_require_list(coco, "categories", file), file)
    names = check_images(images, file, max_pixels)
    for index, ann in enumerate(annotations):
        _check_object(ann, file, f"annotations[{index}]", ("id",))
        _int_id(ann["id"], file=file, item=f"annotations[{index}]", field="id")
    return names


# ---------------------------------------------------------------- values the writer refuses

_SURROGATE = re.compile("[\ud800-\udfff]")


def repair_values(value: Any, path: str, found: list[tuple[str, str]]) -> Any:
    """``value`` with NaN/inf numbers set to None and lone surrogates replaced by U+FFFD.

    ``found`` collects (kind, path) of every repair, so each is listed.
    """
    if isinstance(value, float) and not math.isfinite(value):
        found.append(("value_not_finite", path))
        return None
    if isinstance(value, str):
        if _SURROGATE.search(value):
            found.append(("string_not_unicode", path))
            return _SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, list):
        return [repair_values(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            repair_values(k, f"{path}.<key>", found): repair_values(v, _join(path, k), found)
            for k, v in value.items()
        }
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def repair_item(item: dict[str, Any], ids: dict[str, Any], issues: list[Issue]) -> dict[str, Any]:
    """Repair one image, annotation or category in place of listing each bad value."""
    found: list[tuple[str, str]] = []
    fixed = repair_values(item, "", found)
    for kind, where in found:
        what = (
            "NaN or infinite number set to null"
            if kind == "value_not_finite"
            else ("lone surrogate replaced by U+FFFD")
        )
        issues.append(Issue(kind, what, field=_safe_text(where), **ids))
    return fixed


def _safe_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


# ---------------------------------------------------------------- segmentation checks


class _Problems:
    """Issues of one annotation, with its ids filled in."""

    def __init__(self, ids: dict[str, Any], issues: list[Issue]) -> None:
        self.ids, self.issues = ids, issues

    def add(self, kind: str, message: str, field: str = "segmentation") -> None:
        self.issues.append(Issue(kind, message, field=field, **self.ids))


def check_segmentation(
    seg: Any, width: int, height: int, ids: dict[str, Any], issues: list[Issue]
) -> Any | None:
    """Return the segmentation to keep (bad polygon parts removed), or None to drop it."""
    problems = _Problems(ids, issues)
    if isinstance(seg, list):
        return _check_polygons(seg, width, height, problems)
    if isinstance(seg, dict):
        return _check_rle(seg, width, height, problems)
    problems.add(
        "segmentation_bad_type",
        f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}",
    )
    return None


def _polygon_part(poly: Any, where: str, problems: _Problems) -> np.ndarray | None:
    """One polygon part as float coordinates, or None (listed) when it cannot be used."""
    if not isinstance(poly, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in poly
    ):
        problems.add(
            "polygon_not_numeric", "polygon must be a flat list of numbers; part dropped", where
        )
        return None
    if len(poly) % 2:
        problems.add(
            "polygon_odd_coordinates", f"{len(poly)} coordinates (odd); part dropped", where
        )
        return None
    if len(poly) < 6:
        problems.add(
            "polygon_too_few_points", f"{len(poly) // 2} points (< 3); part dropped", where
        )
        return None
    try:
        arr = np.asarray(poly, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        arr = np.array([np.inf])
    if not np.isfinite(arr).all():
        problems.add("polygon_not_finite", "NaN or infinite coordinate; part dropped", where)
        return None
    return arr


def _check_polygons(
    seg: list[Any], width: int, height: int, problems: _Problems
) -> list[list[float]] | None:
    if not seg:
        problems.add("segmentation_empty", "empty polygon list")
        return None
    kept: list[list[float]] = []
    outside = far = 0
    for index, poly in enumerate(seg):
        arr = _polygon_part(poly, f"segmentation[{index}]", problems)
        if arr is None:
            continue
        xs, ys = arr[0::2], arr[1::2]
        outside += int(((xs < 0) | (xs > width) | (ys < 0) | (ys > height)).sum())
        far += int(
            (
                (xs < -FAR_OUTSIDE * width)
                | (xs > (1 + FAR_OUTSIDE) * width)
                | (ys < -FAR_OUTSIDE * height)
                | (ys > (1 + FAR_OUTSIDE) * height)
            ).sum()
        )
        kept.append(poly)
    if far:
        problems.add(
            "polygon_far_outside",
            f"{far} polygon points lie more than the image's own size outside the "
            f"{width}x{height} image; annotation dropped, never rasterised",
        )
        return None
    if outside:
        problems.add(
            "coordinates_outside_image",
            f"{outside} polygon points outside the {width}x{height} image, kept as they are "
            "(pycocotools clips when it rasterises)",
        )
    if not kept:
        problems.add("segmentation_empty", "no valid polygon part left; dropped")
        return None
    area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(kept, height, width))))
    if area <= 0:
        problems.add("segmentation_zero_area", "polygon covers no pixel; dropped")
        return None
    return kept


def _rle_runs(seg: dict[str, Any], width: int, height: int, problems: _Problems) -> list | None:
    size, counts = seg.get("size"), seg.get("counts")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        problems.add(
            "rle_bad_counts", f"RLE size must be [height, width], got {size!r}", "segmentation.size"
        )
        return None
    if list(size) != [height, width]:
        problems.add(
            "rle_size_mismatch",
            f"RLE size {size} differs from image [height, width] [{height}, {width}]",
            "segmentation.size",
        )
        return None
    if isinstance(counts, str):
        try:
            return rle.string_counts(counts).tolist()
        except ValueError as exc:
            problems.add(
                "rle_bad_counts", f"corrupt compressed counts: {exc}", "segmentation.counts"
            )
            return None
    if isinstance(counts, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in counts
    ):
        return counts
    problems.add(
        "rle_bad_counts", "counts must be a string or a list of integers", "segmentation.counts"
    )
    return None


def _check_rle(
    seg: dict[str, Any], width: int, height: int, problems: _Problems
) -> dict[str, Any] | None:
    runs = _rle_runs(seg, width, height, problems)
    if runs is None:
        return None
    if any(v < 0 for v in runs) or sum(runs) != height * width:
        negative = " (negative run)" if any(v < 0 for v in runs) else ""
        problems.add(
            "rle_bad_counts",
            f"counts sum to {sum(runs)}, not height*width = {height * width}{negative}",
            "segmentation.counts",
        )
        return None
    if not any(runs[1::2]):
        problems.add(
            "segmentation_zero_area", "RLE has no foreground pixel; dropped", "segmentation.counts"
        )
        return None
    return seg


# ---------------------------------------------------------------- images on disk


@dataclass(frozen=True)
class Probe:
    """What an image file holds against its json size (see :func:`probe_image`)."""

    status: str  # ok | exif | mismatch | missing | unreadable
    size: tuple[int, int] | None = None  # (height, width) found
    hint: str = ""  # for a missing file: a same-named file one folder down


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
    return Probe(decoded.status, decoded.size)


def _probe_task(root: str, item: tuple[str, int, int]) -> Probe:
    file_name, height, width = item
    return probe_image(Path(root) / file_name, (height, width), Path(root))


def probe_images(
    images: list[dict[str, Any]], names: dict[int, str], root: str, workers: int
) -> dict[int, Probe]:
    """Every image file checked, on the executor; keyed by image id.

    ``file_name`` is a clean relative path here (no ``..``, not absolute). Symlinks inside the
    image folder are followed: they are the user's own (e.g. a DVC symlink cache), and this
    stage only reads them; outputs are always written under our own folders.
    """
    ids = [int(im["id"]) for im in images]
    items = [(names[int(im["id"])], int(im["height"]), int(im["width"])) for im in images]
    results = make_executor(workers).map(_probe_task, items, root, "validate images")
    return dict(zip(ids, results, strict=True))


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

    Pure: ``probes`` (from :func:`probe_images`) say what each image file holds; without them
    files are not checked. ``scan_values=False`` skips the search for NaN/inf and lone
    surrogates outside segmentations, for callers that know the raw text holds none
    (:func:`needs_value_scan`). ``names`` is :func:`check_structure`'s result when the caller
    already has it. ``images_label`` is the image folder as the user wrote it, for messages.
    """
    file_names = names if names is not None else check_structure(coco, file, max_pixels)
    issues: list[Issue] = []
    categories = sorted(coco["categories"], key=lambda c: int(c["id"]))
    if scan_values:
        categories = [repair_item(c, {"category_id": int(c["id"])}, issues) for c in categories]
    kept_images = _clean_images(coco["images"], file_names, scan_values, issues)
    if probes is not None:
        _apply_probes(kept_images, probes, missing_images, (file, images_label), issues)
    cat_ids = {int(c["id"]) for c in categories}
    kept_anns, with_image = _clean_annotations(
        coco["annotations"], kept_images, set(file_names), cat_ids, scan_values, issues
    )
    _list_unused(kept_images, cat_ids, kept_anns, issues)
    canonical = _canonical_rest(coco, scan_values, issues)
    canonical["images"] = list(kept_images.values())
    canonical["annotations"] = kept_anns
    canonical["categories"] = categories
    totals = {
        "images_in": len(coco["images"]),
        "images_kept": len(kept_images),
        "annotations_in": len(coco["annotations"]),
        "annotations_kept": len(kept_anns),
        "annotations_dropped_with_their_image": with_image,
        "categories": len(categories),
    }
    return ValidationResult(canonical, issues, totals)


def _clean_images(
    images: list[dict[str, Any]], names: dict[int, str], scan: bool, issues: list[Issue]
) -> dict[int, dict[str, Any]]:
    kept: dict[int, dict[str, Any]] = {}
    for img in sorted(images, key=lambda im: int(im["id"])):
        clean = dict(img)
        clean["id"] = int(img["id"])
        clean["width"], clean["height"] = int(img["width"]), int(img["height"])
        clean["file_name"] = names[clean["id"]]
        kept[clean["id"]] = repair_item(clean, {"image_id": clean["id"]}, issues) if scan else clean
    return kept


def _canonical_rest(coco: dict[str, Any], scan: bool, issues: list[Issue]) -> dict[str, Any]:
    """Top-level fields other than the three lists, repaired like the items."""
    rest = {k: v for k, v in coco.items() if k not in ("images", "annotations", "categories")}
    return repair_item(rest, {}, issues) if scan else rest


def _clean_annotations(
    annotations: list[dict[str, Any]],
    images: dict[int, dict[str, Any]],
    known_images: set[int],
    cat_ids: set[int],
    scan: bool,
    issues: list[Issue],
) -> tuple[list[dict[str, Any]], int]:
    """(kept annotations in json order, annotations dropped because their image was)."""
    kept: list[dict[str, Any]] = []
    with_image = 0
    ids = _AnnotationIds(annotations)
    for ann in annotations:
        aid, original = ids.assign(ann, issues)
        image_id = ann.get("image_id", "")
        if _is_int(image_id) and int(image_id) in known_images and int(image_id) not in images:
            with_image += 1  # its image was dropped; that drop is listed with the image
            continue
        clean = _clean_annotation(ann, aid, images, cat_ids, issues)
        if clean is None:
            continue
        if original is not None:
            clean["original_id"] = original
        if scan:
            clean = _repair_annotation(clean, issues)
        kept.append(clean)
    return kept, with_image


class _AnnotationIds:
    """Duplicate annotation ids (TACO has two) are real, distinct objects: later ones get a
    fresh id after the largest one, keep the original, and are listed."""

    def __init__(self, annotations: list[dict[str, Any]]) -> None:
        self.seen: set[int] = set()
        self.next_id = max((int(a["id"]) for a in annotations), default=0) + 1

    def assign(self, ann: dict[str, Any], issues: list[Issue]) -> tuple[int, int | None]:
        aid = int(ann["id"])
        if aid not in self.seen:
            self.seen.add(aid)
            return aid, None
        new, self.next_id = self.next_id, self.next_id + 1
        self.seen.add(new)
        issues.append(
            Issue(
                "annotation_duplicate_id",
                f"id {aid} used twice; this one is now id {new} (original_id kept)",
                annotation_id=aid,
                image_id=ann.get("image_id", ""),
                field="id",
            )
        )
        return new, aid


def _clean_annotation(
    ann: dict[str, Any],
    aid: int,
    images: dict[int, dict[str, Any]],
    cat_ids: set[int],
    issues: list[Issue],
) -> dict[str, Any] | None:
    """The annotation with checked ids, crowd flag and segmentation, or None (listed)."""
    ids = {
        "annotation_id": aid,
        "image_id": _safe_id(ann.get("image_id", "")),
        "category_id": _safe_id(ann.get("category_id", "")),
    }
    problems = _Problems(ids, issues)
    missing = [k for k in ("image_id", "category_id", "segmentation") if k not in ann]
    if missing:
        problems.add("annotation_missing_field", f"missing {', '.join(missing)}", missing[0])
        return None
    image_id, cat_id = ann["image_id"], ann["category_id"]
    if not _is_int(image_id) or int(image_id) not in images:
        problems.add("annotation_unknown_image", f"no image with id {_short(image_id)}", "image_id")
        return None
    if not _is_int(cat_id) or int(cat_id) not in cat_ids:
        problems.add(
            "annotation_unknown_category", f"no category with id {_short(cat_id)}", "category_id"
        )
        return None
    img = images[int(image_id)]
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, float | str):
        problems.add(
            "annotation_bad_iscrowd",
            f"iscrowd must be 0 or 1, got {_short(crowd)}; read as {int(_truthy(crowd))}",
            "iscrowd",
        )
    seg = check_segmentation(ann["segmentation"], img["width"], img["height"], ids, issues)
    if seg is None:
        return None
    clean = dict(ann)
    clean["id"], clean["image_id"], clean["category_id"] = aid, int(image_id), int(cat_id)
    clean["iscrowd"] = int(_truthy(crowd)) if not isinstance(crowd, str) else 0
    clean["segmentation"] = seg
    return clean


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:  # noqa: BLE001 - any odd json value reads as "not crowd"
        return False


def _safe_id(value: Any) -> Any:
    """An id as it may appear in the issues table: scalars only, text made writable."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return value if math.isfinite(value) else ""
    return _short(value)


def _short(value: Any) -> str:
    text = repr(value)
    return _safe_text(text if len(text) <= 80 else text[:77] + "...")


def _repair_annotation(ann: dict[str, Any], issues: list[Issue]) -> dict[str, Any]:
    """Repair every field but polygon coordinates, which the polygon checks made finite."""
    ids = {k: ann[k] for k in ("image_id", "category_id")} | {"annotation_id": ann["id"]}
    seg = ann["segmentation"]
    repaired = repair_item({**ann, "segmentation": None}, ids, issues)  # same keys, same order
    repaired["segmentation"] = repair_item(seg, ids, issues) if isinstance(seg, dict) else seg
    return repaired


def _list_unused(
    images: dict[int, dict[str, Any]],
    cat_ids: set[int],
    annotations: list[dict[str, Any]],
    issues: list[Issue],
) -> None:
    used_images = {a["image_id"] for a in annotations}
    used_cats = {a["category_id"] for a in annotations}
    for iid in sorted(set(images) - used_images):
        issues.append(
            Issue("image_without_annotations", "no annotation: the mask is all background", iid)
        )
    for cid in sorted(cat_ids - used_cats):
        issues.append(
            Issue(
                "category_without_annotations", "no annotation uses this category", category_id=cid
            )
        )


def _apply_probes(
    images: dict[int, dict[str, Any]],
    probes: dict[int, Probe],
    policy: str,
    where: tuple[str, str],
    issues: list[Issue],
) -> None:
    """List every image file that is not as the json says; drop, keep or stop per policy.

    ``where`` is (annotations file, image folder as written in params) for messages.
    """
    file, folder = where
    for iid in list(images):
        problem = _image_problem(images[iid], probes[iid], folder)
        if problem is None:
            continue
        kind, message, fld = problem
        if kind == "image_exif_orientation":
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


def _image_problem(img: dict[str, Any], probe: Probe, folder: str) -> tuple[str, str, str] | None:
    """(kind, message, field) for an image file that is not as the json says, or None."""
    path = os.path.join(folder, img["file_name"])
    json_size = f"{img['width']}x{img['height']}"
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


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the json (and image headers), validate, write the report and the canonical json."""
    ds = params.dataset
    file = ds.annotations
    raw = read_annotations(root / file, file)
    coco = parse_json(raw, file)
    names = check_structure(coco, file, ds.max_pixels)
    folder = check_image_folder(ds, root)
    probes = None
    if folder is not None:
        probes = probe_images(coco["images"], names, folder, params.n_workers)
    result = validate_coco(
        coco,
        file=file,
        probes=probes,
        missing_images=ds.missing_images,
        max_pixels=ds.max_pixels,
        scan_values=needs_value_scan(raw),
        names=names,
        images_label=ds.images or "",
    )
    del raw, coco
    report = build_report(result)
    atomic_write_json(root / VALIDATION_REPORT_PATH, report)
    atomic_write_csv(root / VALIDATION_ISSUES_PATH, ISSUE_COLUMNS, issue_rows(result.issues))
    check_dropped_fraction(result, ds.max_dropped_fraction, file)
    atomic_write_json(root / CANONICAL_PATH, result.coco, indent=None)
    return (
        f"{report['images_kept']}/{report['images_in']} images, "
        f"{report['annotations_kept']}/{report['annotations_in']} annotations kept; "
        f"{report['problems_total']} problems listed in {VALIDATION_ISSUES_PATH}"
    )


def main(argv: list[str] | None = None) -> None:
    stage_main("validate", __doc__, argv, lambda params, root, args: run(params, root))
