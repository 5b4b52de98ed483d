"""The checks of one annotation: pure, so validate runs them on the executor's workers.

An annotation is decoded from its raw json slice, its ids, crowd flag and segmentation are
checked, values the json writer refuses are repaired, and the result comes back as canonical
json text with every problem listed (:class:`Issue`). Nothing here reads a file.

Polygon points outside the image are kept as they are: pycocotools clips while it rasterises,
so masks match ``annToMask`` on the user's own json. Points further outside than the image's
own size (``x < -width``, ``x > 2 * width``, likewise for y) would cost pycocotools' rasteriser
memory and time without bound (it traces edges at 5x scale before clipping), so such an
annotation is dropped and listed.

Cost: linear in the annotation's size; the zero-area check rasterises each polygon once.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.checking.coverage import flatten, part_covers
from pipeline.files import rle
from pipeline.files.cocojson import decode, decode_checked, dumps_items
from pipeline.files.contracts import VALIDATION_KINDS

__all__ = [
    "AnnotationContext",
    "Batch",
    "Checked",
    "FAR_OUTSIDE",
    "Issue",
    "Item",
    "KINDS",
    "check_annotation",
    "check_batch",
    "check_segmentation",
    "is_int",
    "plain_polygons",
    "repair_item",
    "repair_values",
]

KINDS = VALIDATION_KINDS
# How far outside the image a polygon point may lie, in multiples of the image's own size.
FAR_OUTSIDE = 1.0


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


def is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value == int(value)


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
    seg: Any,
    width: int,
    height: int,
    ids: dict[str, Any],
    issues: list[Issue],
    painted: bool = False,
) -> Any | None:
    """Return the segmentation to keep (bad polygon parts removed), or None to drop it."""
    problems = _Problems(ids, issues)
    if isinstance(seg, list):
        return _check_polygons(seg, width, height, problems, painted)
    if isinstance(seg, dict):
        return _check_rle(seg, width, height, problems)
    problems.add(
        "segmentation_bad_type",
        f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}",
    )
    return None


_NUMBERS = {int, float}  # exact types: a json bool is not a coordinate


def _polygon_part(poly: Any, where: str, problems: _Problems) -> bool:
    """Whether one polygon part can be used; when not, the reason is listed."""
    if not isinstance(poly, list) or not set(map(type, poly)) <= _NUMBERS:
        problems.add(
            "polygon_not_numeric", "polygon must be a flat list of numbers; part dropped", where
        )
        return False
    if len(poly) % 2:
        problems.add(
            "polygon_odd_coordinates", f"{len(poly)} coordinates (odd); part dropped", where
        )
        return False
    if len(poly) < 6:
        problems.add(
            "polygon_too_few_points", f"{len(poly) // 2} points (< 3); part dropped", where
        )
        return False
    try:
        finite = all(map(math.isfinite, poly))
    except OverflowError:  # an integer beyond the float range
        finite = False
    if not finite:
        problems.add("polygon_not_finite", "NaN or infinite coordinate; part dropped", where)
    return finite


def _outside_counts(poly: list[float], width: int, height: int) -> tuple[int, int]:
    """(points outside the image, points further outside than FAR_OUTSIDE image sizes)."""
    xs, ys = poly[0::2], poly[1::2]
    if min(xs) >= 0 and min(ys) >= 0 and max(xs) <= width and max(ys) <= height:
        return 0, 0  # the common case, without a pass per point
    x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    outside = (x < 0) | (x > width) | (y < 0) | (y > height)
    lo_x, hi_x = -FAR_OUTSIDE * width, (1 + FAR_OUTSIDE) * width
    lo_y, hi_y = -FAR_OUTSIDE * height, (1 + FAR_OUTSIDE) * height
    far = (x < lo_x) | (x > hi_x) | (y < lo_y) | (y > hi_y)
    return int(outside.sum()), int(far.sum())


def _check_polygons(
    seg: list[Any], width: int, height: int, problems: _Problems, painted: bool = False
) -> list[list[float]] | None:
    """The usable parts, or None (listed). ``painted``: :mod:`pipeline.checking.coverage` already
    knows that these parts paint a pixel, so they need not be rasterised."""
    if not seg:
        problems.add("segmentation_empty", "empty polygon list")
        return None
    kept = [p for i, p in enumerate(seg) if _polygon_part(p, f"segmentation[{i}]", problems)]
    counts = [_outside_counts(p, width, height) for p in kept]
    outside, far = sum(c[0] for c in counts), sum(c[1] for c in counts)
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
    if not (painted and len(kept) == len(seg)) and _covers_nothing(kept, width, height):
        problems.add("segmentation_zero_area", "polygon covers no pixel; dropped")
        return None
    return kept


def _covers_nothing(parts: list[list[float]], width: int, height: int) -> bool:
    rles = mask_utils.frPyObjects(parts, height, width)
    return float(mask_utils.area(mask_utils.merge(rles))) <= 0


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


# ---------------------------------------------------------------- one annotation


@dataclass(frozen=True)
class AnnotationContext:
    """What checking any annotation needs: sent to each worker once."""

    sizes: dict[int, tuple[int, int]]  # kept image id -> (width, height)
    categories: frozenset[int]
    scan: bool  # repair NaN/inf and lone surrogates (see validate.needs_value_scan)


# One annotation to check: its json (a dict, raw bytes, or None when its image was dropped),
# the id it gets, and its original id when that was a duplicate.
Item = tuple[Any, int, int | None, Any]


@dataclass
class Checked:
    annotation: dict[str, Any] | None
    issues: list[Issue] = field(default_factory=list)


def check_annotation(
    ctx: AnnotationContext, item: Item, painted: bool = False, exotic: bool = False
) -> Checked:
    """One annotation, checked and repaired, or None (every problem listed).

    ``painted``: the polygon is known to paint a pixel (see :func:`check_batch`); ``exotic``:
    it holds numbers msgspec could not read, so its values are repaired whatever ``ctx.scan``.
    """
    source, aid, original, image_id = item
    issues: list[Issue] = []
    if original is not None:
        issues.append(
            Issue(
                "annotation_duplicate_id",
                f"id {original} used twice; this one is now id {aid} (original_id kept)",
                annotation_id=original,
                image_id=_safe_id(image_id),
                field="id",
            )
        )
    if source is None:  # its image was dropped; that drop is listed with the image
        return Checked(None, issues)
    ann = source if isinstance(source, dict) else decode(source)
    clean = _clean_annotation(ann, aid, ctx, issues, painted)
    if clean is not None:
        if original is not None:
            clean["original_id"] = original
        if ctx.scan or exotic:
            clean = _repair_annotation(clean, issues)
    return Checked(clean, issues)


@dataclass
class Batch:
    """Checked annotations of one batch: the canonical json of the kept ones, in order."""

    text: str  # their json texts joined by ", " (as a json list's items)
    kept: int
    issues: list[Issue]
    image_ids: set[int]
    category_ids: set[int]


def check_batch(ctx: AnnotationContext, items: list[Item]) -> Batch:
    """A batch of annotations, checked and encoded where they are (the executor's workers).

    Plain polygon annotations (known ids, a 0/1 crowd flag, every part usable and surely
    painting a pixel, see :func:`plain_polygons`) are checked for the whole batch at once with
    numpy; the others one by one.
    """
    values = [_decoded(item[0]) for item in items]
    outside = plain_polygons([v for v, _ in values], ctx)
    kept: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for (ann, exotic), item, plain in zip(values, items, outside, strict=True):
        if plain >= 0 and item[2] is None and not (ctx.scan or exotic):
            kept.append(_plain(ann, item[1], plain, ctx, issues))
            continue
        checked = check_annotation(ctx, (ann, *item[1:]), False, exotic)
        issues.extend(checked.issues)
        if checked.annotation is not None:
            kept.append(checked.annotation)
    images = {a["image_id"] for a in kept}
    return Batch(dumps_items(kept), len(kept), issues, images, {a["category_id"] for a in kept})


def _plain(
    ann: dict[str, Any], aid: int, outside: int, ctx: AnnotationContext, issues: list[Issue]
) -> dict[str, Any]:
    """A plain annotation as the canonical json holds it (what check_annotation would give)."""
    ann["id"] = aid
    if "iscrowd" not in ann:
        ann["iscrowd"] = 0
    if outside:
        ids = {"annotation_id": aid, "image_id": ann["image_id"], "category_id": ann["category_id"]}
        w, h = ctx.sizes[ann["image_id"]]
        _Problems(ids, issues).add(
            "coordinates_outside_image",
            f"{outside} polygon points outside the {w}x{h} image, kept as they are "
            "(pycocotools clips when it rasterises)",
        )
    return ann


def _decoded(source: Any) -> tuple[Any, bool]:
    """(annotation, exotic) from a raw slice; dicts and None pass through."""
    if source is None or isinstance(source, dict):
        return source, False
    return decode_checked(source)


def _plain_candidate(ann: Any, ctx: AnnotationContext) -> list[list[Any]] | None:
    """The polygon parts of an annotation whose other fields need no repair, else None."""
    if type(ann) is not dict:
        return None
    image_id, cat_id, seg = ann.get("image_id"), ann.get("category_id"), ann.get("segmentation")
    crowd = ann.get("iscrowd", 0)
    if type(image_id) is not int or type(cat_id) is not int or type(crowd) is not int:
        return None
    if image_id not in ctx.sizes or cat_id not in ctx.categories or crowd not in (0, 1):
        return None
    if type(seg) is not list or not seg or not all(type(p) is list for p in seg):
        return None
    return seg if all(len(p) >= 6 and len(p) % 2 == 0 for p in seg) else None


def plain_polygons(anns: list[Any], ctx: AnnotationContext) -> np.ndarray:
    """Per annotation: its number of points outside the image when it is plain, else -1.

    Plain: a candidate (:func:`_plain_candidate`) whose coordinates are all finite numbers, none
    further outside than FAR_OUTSIDE image sizes, and which surely paints a pixel.
    """
    out = np.full(len(anns), -1, dtype=np.int64)
    parts, owner, sizes = [], [], []
    for index, ann in enumerate(anns):
        seg = _plain_candidate(ann, ctx)
        if seg is not None:
            parts += seg
            owner += [index] * len(seg)
            sizes += [ctx.sizes[ann["image_id"]]] * len(seg)
    types = set(map(type, itertools.chain.from_iterable(parts)))
    flat = flatten(parts) if parts and types <= _NUMBERS else None
    if flat is None:
        return out
    size = np.asarray(sizes, np.float64).reshape(-1, 2)
    outside, far = _part_outside(flat[0], flat[1], size)
    good = (far == 0) & part_covers(flat[0], flat[1], size)
    owner_arr = np.asarray(owner, np.int64)
    plain = np.ones(len(anns), dtype=bool)
    np.logical_and.at(plain, owner_arr, good)
    counts = np.bincount(owner_arr, weights=outside, minlength=len(anns)).astype(np.int64)
    has_parts = np.bincount(owner_arr, minlength=len(anns)) > 0
    return np.where(plain & has_parts, counts, -1)


def _part_outside(
    flat: np.ndarray, lengths: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per part: points outside its image, and points more than FAR_OUTSIDE sizes outside."""
    w = np.repeat(sizes[:, 0], lengths)
    h = np.repeat(sizes[:, 1], lengths)
    x, y = flat[0::2], flat[1::2]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    outside = (x < 0) | (x > w) | (y < 0) | (y > h)
    lo, hi = -FAR_OUTSIDE, 1 + FAR_OUTSIDE
    far = (x < lo * w) | (x > hi * w) | (y < lo * h) | (y > hi * h)
    return np.add.reduceat(outside, starts), np.add.reduceat(far, starts)


def _clean_annotation(
    ann: dict[str, Any],
    aid: int,
    ctx: AnnotationContext,
    issues: list[Issue],
    painted: bool,
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
    if not is_int(image_id) or int(image_id) not in ctx.sizes:
        problems.add("annotation_unknown_image", f"no image with id {_short(image_id)}", "image_id")
        return None
    if not is_int(cat_id) or int(cat_id) not in ctx.categories:
        problems.add(
            "annotation_unknown_category", f"no category with id {_short(cat_id)}", "category_id"
        )
        return None
    width, height = ctx.sizes[int(image_id)]
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, float | str):
        problems.add(
            "annotation_bad_iscrowd",
            f"iscrowd must be 0 or 1, got {_short(crowd)}; read as {int(_truthy(crowd))}",
            "iscrowd",
        )
    seg = check_segmentation(ann["segmentation"], width, height, ids, issues, painted)
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
    if isinstance(value, float):
        return value if math.isfinite(value) else ""
    if isinstance(value, int):  # beyond 64 bits: shortened, as isfinite would overflow
        return value if -(2**63) <= value < 2**64 else _short(value)
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
