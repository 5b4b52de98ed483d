"""The checks of one annotation: pure, so validate runs them on the executor's workers.

An annotation is decoded from its raw json slice, its ids, crowd flag and segmentation are
checked, values the json writer refuses are repaired, and the result comes back as canonical
json text with every problem listed (:class:`Issue`). Nothing here reads a file.

Polygon points outside the image are kept as they are: pycocotools clips while it rasterises,
so masks match ``annToMask`` on the user's own json. Points further outside than the image's
own size (``x < -width``, ``x > 2 * width``, likewise for y) would cost pycocotools' rasteriser
memory and time without bound (it traces edges at 5x scale before clipping), so such an
annotation is dropped and listed.

Cost: linear in the annotation's size. A batch is decoded with one msgspec call and its plain
polygons are checked together with numpy; the zero-area check rasterises (pycocotools) only the
polygons :mod:`pipeline.checking.coverage` cannot vouch for, all of one image size in one call.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.checking.coverage import part_covers
from pipeline.files import rle
from pipeline.files.cocojson import (
    decode,
    decode_checked,
    decode_items,
    dumps_items,
    encode_items,
    no_gc,
)
from pipeline.files.contracts import VALIDATION_KINDS

__all__ = [
    "AnnotationContext",
    "Batch",
    "Checked",
    "FAR_OUTSIDE",
    "Issue",
    "Item",
    "RawBatch",
    "KINDS",
    "check_annotation",
    "check_batch",
    "check_raw_batch",
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
    if isinstance(counts, list) and all(map(_is_integer_type, set(map(type, counts)))):
        return counts
    problems.add(
        "rle_bad_counts", "counts must be a string or a list of integers", "segmentation.counts"
    )
    return None


def _is_integer_type(kind: type) -> bool:
    """An int type that is not bool (the types of a counts list, each looked at once)."""
    return issubclass(kind, int) and not issubclass(kind, bool)


def _check_rle(
    seg: dict[str, Any], width: int, height: int, problems: _Problems
) -> dict[str, Any] | None:
    runs = _rle_runs(seg, width, height, problems)
    if runs is None:
        return None
    negative = min(runs, default=0) < 0
    if negative or sum(runs) != height * width:
        problems.add(
            "rle_bad_counts",
            f"counts sum to {sum(runs)}, not height*width = {height * width}"
            + (" (negative run)" if negative else ""),
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

    text: str | bytes  # their json texts joined by ", " (as a json list's items); bytes: UTF-8
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
    kept, issues = _check_values(ctx, values, items)
    images = {a["image_id"] for a in kept}
    return Batch(dumps_items(kept), len(kept), issues, images, {a["category_id"] for a in kept})


@dataclass(frozen=True)
class RawBatch:
    """Annotations as the stage sends them to a worker: one buffer, not an object each.

    ``data`` is their raw json joined by ``,``; ``ids`` the id each keeps or gets (int64, or
    object for ids beyond it); ``originals`` maps a position whose id was a duplicate to
    (its original id, its image id as the issue names it); ``dropped`` holds the positions whose
    image was dropped (counted with the image, not checked).
    """

    data: bytes
    ids: np.ndarray
    originals: dict[int, tuple[int, Any]] = field(default_factory=dict)
    dropped: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.ids)

    def items(self) -> list[Item]:
        """The batch as :data:`Item` tuples without their sources (see :func:`_check_values`)."""
        originals = self.originals
        return [
            (None, aid, *originals.get(index, (None, None)))
            for index, aid in enumerate(self.ids.tolist())
        ]


def check_raw_batch(ctx: AnnotationContext, batch: RawBatch) -> Batch:
    """:func:`check_batch` of a :class:`RawBatch`: decoded with one msgspec call, the kept
    annotations' json as UTF-8 bytes (never a str: the writer writes bytes as they are).

    The cycle collector is off meanwhile, and the batch's values are freed before it is back
    on: a worker that runs in the stage's own process (one worker) holds every parsed image,
    which each collection would walk, and the batch builds only acyclic values.
    """
    with no_gc():
        return _check_raw(ctx, batch)


def _check_raw(ctx: AnnotationContext, batch: RawBatch) -> Batch:
    values = decode_items(batch.data)
    for index in batch.dropped:
        values[index] = (None, False)
    kept, issues = _check_values(ctx, values, batch.items())
    images = {a["image_id"] for a in kept}
    cats = {a["category_id"] for a in kept}
    return Batch(encode_items(kept), len(kept), issues, images, cats)


def _check_values(
    ctx: AnnotationContext, values: list[tuple[Any, bool]], items: list[Item]
) -> tuple[list[dict[str, Any]], list[Issue]]:
    """The kept annotations and every issue of a batch: ``values`` are its decoded sources
    (None for an annotation whose image was dropped), ``items`` give the ids."""
    outside = plain_polygons([v for v, _ in values], ctx).tolist()
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
    return kept, issues


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


def _candidates(
    anns: list[Any], ctx: AnnotationContext
) -> tuple[list[int], list[list[Any]], list[tuple[int, int]]]:
    """Positions, segmentations and image sizes of the annotations whose ids and crowd flag
    need no repair and whose segmentation is a non-empty list (its parts are checked after)."""
    sizes_of, categories = ctx.sizes, ctx.categories
    owners: list[int] = []
    segs: list[list[Any]] = []
    sizes: list[tuple[int, int]] = []
    for index, ann in enumerate(anns):
        if type(ann) is not dict:
            continue
        get = ann.get
        image_id, cat_id, crowd, seg = (
            get("image_id"),
            get("category_id"),
            get("iscrowd", 0),
            get("segmentation"),
        )
        if type(image_id) is not int or type(cat_id) is not int or type(crowd) is not int:
            continue
        if type(seg) is list and seg and cat_id in categories and crowd in (0, 1):
            size = sizes_of.get(image_id)
            if size is not None:
                owners.append(index)
                segs.append(seg)
                sizes.append(size)
    return owners, segs, sizes


# Polygon parts whose every coordinate is a number: an int or a float, never a bool or text.
_COORDINATES = list[list[int | float]]


def _numeric(seg: list[Any]) -> bool:
    """Every part a list of >= 3 points (an even count of >= 6 numbers)."""
    try:
        parts = msgspec.convert(seg, _COORDINATES)
    except msgspec.ValidationError:
        return False
    return all(len(p) >= 6 and len(p) % 2 == 0 for p in parts)


def plain_polygons(anns: list[Any], ctx: AnnotationContext) -> np.ndarray:
    """Per annotation: its number of points outside the image when it is plain, else -1.

    Plain: a candidate (:func:`_candidates`) whose parts are lists of >= 3 points, whose
    coordinates are all finite numbers (ints or floats), none further outside than FAR_OUTSIDE
    image sizes, and which paints a pixel: :mod:`pipeline.checking.coverage` vouches for most,
    the rest are rasterised by pycocotools, all of a size at once.
    """
    out = np.full(len(anns), -1, dtype=np.int64)
    owners, segs, sizes = _numeric_candidates(*_candidates(anns, ctx))
    parts = list(itertools.chain.from_iterable(segs))
    if not parts:
        return out
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    try:
        coords = np.fromiter(itertools.chain.from_iterable(parts), np.float64, int(lengths.sum()))
    except OverflowError:  # an integer beyond the float range
        return out
    if np.isfinite(coords).all():
        out[owners] = _outside_if_painted(coords, lengths // 2, segs, sizes)
    return out


def _numeric_candidates(
    owners: list[int], segs: list[list[Any]], sizes: list[tuple[int, int]]
) -> tuple[list[int], list[list[Any]], list[tuple[int, int]]]:
    """The candidates whose parts are all lists of >= 6 numbers, an even count: checked for all
    at once (msgspec the types, numpy the lengths), one by one only when one of them fails."""
    parts = list(itertools.chain.from_iterable(segs))
    try:
        msgspec.convert(parts, _COORDINATES)
    except msgspec.ValidationError:
        pass
    else:
        lengths = np.fromiter(map(len, parts), np.int64, len(parts))
        if not ((lengths < 6) | (lengths % 2 == 1)).any():
            return owners, segs, sizes
    keep = [i for i, seg in enumerate(segs) if _numeric(seg)]
    return [owners[i] for i in keep], [segs[i] for i in keep], [sizes[i] for i in keep]


def _outside_if_painted(
    coords: np.ndarray, points: np.ndarray, segs: list[list[Any]], sizes: list[tuple[int, int]]
) -> np.ndarray:
    """Per candidate (``points`` per part, parts in ``segs`` order): its points outside the
    image when none is far outside and it paints a pixel, else -1."""
    per_ann = np.fromiter(map(len, segs), np.int64, len(segs))  # >= 1 part each
    size = np.repeat(np.asarray(sizes, np.float64).reshape(-1, 2), per_ann, axis=0)
    outside, far = _part_outside(coords, points, size)
    first = np.concatenate([[0], np.cumsum(per_ann)[:-1]])
    near = np.logical_and.reduceat(far == 0, first)
    painted = np.logical_or.reduceat(part_covers(coords, points, size), first)
    unsure = np.flatnonzero(near & ~painted).tolist()
    if unsure:
        painted[unsure] = _rasterised([segs[i] for i in unsure], [sizes[i] for i in unsure])
    return np.where(near & painted, np.add.reduceat(outside, first), -1)


def _rasterised(segs: list[list[list[Any]]], sizes: list[tuple[int, int]]) -> list[bool]:
    """Per annotation: pycocotools paints a pixel of one of its parts (what
    :func:`_covers_nothing` decides: a union of parts is empty when each part is), with one
    call per image size."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(size, []).append(index)
    painted = [False] * len(segs)
    for (width, height), members in groups.items():
        parts = [part for i in members for part in segs[i]]
        areas = iter(mask_utils.area(mask_utils.frPyObjects(parts, height, width)).tolist())
        for i in members:
            painted[i] = any([next(areas) > 0 for _ in segs[i]])
    return painted


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
