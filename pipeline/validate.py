"""Stage ``validate``: check a COCO json and its images, write a canonical annotations json.

Anything that makes the file unusable (malformed json, missing top-level keys, duplicate ids,
a ``file_name`` that escapes the image folder, an image too large) stops the stage with one
:class:`~pipeline.errors.DatasetError` naming the file, the id and the field. Anything that
spoils a single annotation or image is dropped or repaired and listed with its reason in the
validation issues, and counted per kind in ``reports/validation.json``: nothing is lost
silently.

The canonical json keeps every original field and id; it only removes dropped items, clips
polygon coordinates into the image, normalises ``file_name`` and sorts images and categories
by id (annotations keep their json order, which the ``order`` overlap policy uses).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.errors import DatasetError
from pipeline.fsio import atomic_write_csv, atomic_write_json, check_relative, mask_relpath
from pipeline.images import decode_image
from pipeline.params import load_params, stage_workers

CANONICAL_PATH = "data/interim/annotations.json"
REPORT_PATH = "reports/validation.json"
ISSUES_PATH = "reports/validation_issues.csv"

# Problem kinds, each with what happens to the item. The report counts every kind, even at 0,
# so a metrics diff shows when a new kind of problem appears.
KINDS: dict[str, str] = {
    "annotation_missing_field": "dropped",
    "annotation_unknown_image": "dropped",
    "annotation_unknown_category": "dropped",
    "annotation_bad_iscrowd": "kept",
    "annotation_duplicate_id": "renumbered",
    "polygon_odd_coordinates": "dropped",
    "polygon_too_few_points": "dropped",
    "polygon_not_finite": "dropped",
    "polygon_not_numeric": "dropped",
    "coordinates_clipped": "kept",
    "segmentation_bad_type": "dropped",
    "segmentation_empty": "dropped",
    "segmentation_zero_area": "dropped",
    "rle_bad_counts": "dropped",
    "rle_size_mismatch": "dropped",
    "image_missing": "dropped",
    "image_unreadable": "dropped",
    "image_size_mismatch": "dropped",
    "image_exif_orientation": "kept",
    "image_without_annotations": "kept",
    "category_without_annotations": "kept",
}


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


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Parse the json with a message that names the file, line and column on failure."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError("annotations file not found", file=str(path)) from None
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"malformed json at line {exc.lineno} column {exc.colno}: {exc.msg}", file=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text: {exc.reason}", file=str(path)) from None
    except RecursionError:
        raise DatasetError("json nested too deeply", file=str(path)) from None
    return data


def _reject_constant(name: str) -> float:
    # NaN / Infinity in the file: keep them as floats so the culprit annotation is named later.
    return float(name.lower().replace("infinity", "inf"))


# ---------------------------------------------------------------- structure checks (errors)


def _require_list(coco: dict[str, Any], key: str, file: str) -> list[Any]:
    if key not in coco:
        raise DatasetError(f"missing top-level key {key!r}", file=file, field=key)
    value = coco[key]
    if not isinstance(value, list):
        raise DatasetError(f"must be a list, got {type(value).__name__}", file=file, field=key)
    return value


def _int_id(value: Any, *, file: str, item: str, field: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and (not math.isfinite(value) or value != int(value)))
    ):
        raise DatasetError(f"must be an integer, got {value!r}", file=file, item=item, field=field)
    return int(value)


def _positive_int(value: Any, *, file: str, item: str, field: str) -> int:
    number = _int_id(value, file=file, item=item, field=field)
    if number <= 0:
        raise DatasetError(f"must be positive, got {value!r}", file=file, item=item, field=field)
    return number


def check_structure(coco: Any, file: str, max_pixels: int) -> dict[int, str]:
    """Raise on what makes the file unusable as a whole; the rest is per item.

    Returns the clean ``file_name`` of every image id.
    """
    if not isinstance(coco, dict):
        raise DatasetError(f"top level must be a json object, got {type(coco).__name__}", file=file)
    images = _require_list(coco, "images", file)
    _require_list(coco, "annotations", file)
    categories = _require_list(coco, "categories", file)

    seen: dict[int, int] = {}
    for index, cat in enumerate(categories):
        item = f"categories[{index}]"
        if not isinstance(cat, dict):
            raise DatasetError("must be an object", file=file, item=item)
        for key in ("id", "name"):
            if key not in cat:
                raise DatasetError(f"missing key {key!r}", file=file, item=item, field=key)
        cid = _int_id(cat["id"], file=file, item=item, field="id")
        if not isinstance(cat["name"], str) or not cat["name"].strip():
            raise DatasetError(
                "must be a non-empty string", file=file, item=f"category id {cid}", field="name"
            )
        if cid in seen:
            raise DatasetError(
                f"duplicate category id (also categories[{seen[cid]}])",
                file=file,
                item=f"category id {cid}",
                field="id",
            )
        seen[cid] = index

    seen = {}
    names: dict[int, str] = {}
    # Keyed by mask path: x.jpg and x.png (or x.jpg twice) would write one data/masks/x.png,
    # and every later output (augmented variants, mmseg lists) is named after it too.
    by_mask: dict[str, int] = {}
    for index, img in enumerate(images):
        item = f"images[{index}]"
        if not isinstance(img, dict):
            raise DatasetError("must be an object", file=file, item=item)
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise DatasetError(f"missing key {key!r}", file=file, item=item, field=key)
        iid = _int_id(img["id"], file=file, item=item, field="id")
        item = f"image id {iid}"
        if iid in seen:
            raise DatasetError(
                f"duplicate image id (also images[{seen[iid]}])", file=file, item=item, field="id"
            )
        seen[iid] = index
        width = _positive_int(img["width"], file=file, item=item, field="width")
        height = _positive_int(img["height"], file=file, item=item, field="height")
        if width * height > max_pixels:
            raise DatasetError(
                f"{width}x{height} = {width * height} pixels exceeds dataset.max_pixels "
                f"({max_pixels})",
                file=file,
                item=item,
                field="width*height",
            )
        name = check_relative(img["file_name"], file=file, item=item)
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

    for index, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError("must be an object", file=file, item=f"annotations[{index}]")
        if "id" not in ann:
            raise DatasetError(
                "missing key 'id'", file=file, item=f"annotations[{index}]", field="id"
            )
        _int_id(ann["id"], file=file, item=f"annotations[{index}]", field="id")
    return names


# ---------------------------------------------------------------- segmentation checks


def rle_string_counts(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (the LEB128-like scheme of ``rleFrString``).

    Done in Python so a corrupt string becomes a listed problem instead of undefined
    behaviour inside the C decoder.
    """
    out: list[int] = []
    pos = 0
    data = counts.encode("ascii", errors="strict")
    while pos < len(data):
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= len(data):
                raise ValueError("truncated counts string")
            c = data[pos] - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid character {chr(data[pos])!r} in counts")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def check_segmentation(
    seg: Any, width: int, height: int, ids: dict[str, Any], issues: list[Issue]
) -> Any | None:
    """Return the (possibly clipped) segmentation, or None when it must be dropped."""
    if isinstance(seg, list):
        return _check_polygons(seg, width, height, ids, issues)
    if isinstance(seg, dict):
        return _check_rle(seg, width, height, ids, issues)
    issues.append(
        Issue(
            "segmentation_bad_type",
            f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}",
            field="segmentation",
            **ids,
        )
    )
    return None


def _check_polygons(
    seg: list[Any], width: int, height: int, ids: dict[str, Any], issues: list[Issue]
) -> list[list[float]] | None:
    if not seg:
        issues.append(
            Issue("segmentation_empty", "empty polygon list", field="segmentation", **ids)
        )
        return None
    kept: list[list[float]] = []
    clipped = 0
    for index, poly in enumerate(seg):
        where = f"segmentation[{index}]"
        if not isinstance(poly, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in poly
        ):
            issues.append(
                Issue(
                    "polygon_not_numeric",
                    "polygon must be a flat list of numbers; part dropped",
                    field=where,
                    **ids,
                )
            )
            continue
        if len(poly) % 2:
            issues.append(
                Issue(
                    "polygon_odd_coordinates",
                    f"{len(poly)} coordinates (odd); part dropped",
                    field=where,
                    **ids,
                )
            )
            continue
        if len(poly) < 6:
            issues.append(
                Issue(
                    "polygon_too_few_points",
                    f"{len(poly) // 2} points (< 3); part dropped",
                    field=where,
                    **ids,
                )
            )
            continue
        arr = np.asarray(poly, dtype=np.float64)
        if not np.isfinite(arr).all():
            issues.append(
                Issue(
                    "polygon_not_finite",
                    "NaN or infinite coordinate; part dropped",
                    field=where,
                    **ids,
                )
            )
            continue
        xs, ys = arr[0::2], arr[1::2]
        outside = (xs < 0) | (xs > width) | (ys < 0) | (ys > height)
        if outside.any():
            clipped += int(outside.sum())
            arr[0::2] = np.clip(xs, 0, width)
            arr[1::2] = np.clip(ys, 0, height)
            kept.append(arr.tolist())
        else:
            kept.append(poly)
    if clipped:
        issues.append(
            Issue(
                "coordinates_clipped",
                f"{clipped} polygon points outside the {width}x{height} image "
                f"clipped to its border",
                field="segmentation",
                **ids,
            )
        )
    if not kept:
        issues.append(
            Issue(
                "segmentation_empty",
                "no valid polygon part left; dropped",
                field="segmentation",
                **ids,
            )
        )
        return None
    area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(kept, height, width))))
    if area <= 0:
        issues.append(
            Issue(
                "segmentation_zero_area",
                "polygon covers no pixel; dropped",
                field="segmentation",
                **ids,
            )
        )
        return None
    return kept


def _check_rle(
    seg: dict[str, Any], width: int, height: int, ids: dict[str, Any], issues: list[Issue]
) -> dict[str, Any] | None:
    size, counts = seg.get("size"), seg.get("counts")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        issues.append(
            Issue(
                "rle_bad_counts",
                f"RLE size must be [height, width], got {size!r}",
                field="segmentation.size",
                **ids,
            )
        )
        return None
    if list(size) != [height, width]:
        issues.append(
            Issue(
                "rle_size_mismatch",
                f"RLE size {size} differs from image [height, width] [{height}, {width}]",
                field="segmentation.size",
                **ids,
            )
        )
        return None
    if isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except (ValueError, UnicodeEncodeError) as exc:
            issues.append(
                Issue(
                    "rle_bad_counts",
                    f"corrupt compressed counts: {exc}",
                    field="segmentation.counts",
                    **ids,
                )
            )
            return None
    elif isinstance(counts, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in counts
    ):
        runs = counts
    else:
        issues.append(
            Issue(
                "rle_bad_counts",
                "counts must be a string or a list of integers",
                field="segmentation.counts",
                **ids,
            )
        )
        return None
    if any(v < 0 for v in runs) or sum(runs) != height * width:
        issues.append(
            Issue(
                "rle_bad_counts",
                f"counts sum to {sum(runs)}, not height*width = {height * width}"
                + (" (negative run)" if any(v < 0 for v in runs) else ""),
                field="segmentation.counts",
                **ids,
            )
        )
        return None
    if not any(runs[1::2]):
        issues.append(
            Issue(
                "segmentation_zero_area",
                "RLE has no foreground pixel; dropped",
                field="segmentation.counts",
                **ids,
            )
        )
        return None
    return seg


# ---------------------------------------------------------------- images on disk


def probe_image(
    path: Path, shape: tuple[int, int] | None = None
) -> tuple[str, tuple[int, int] | None]:
    """('ok' | 'exif' | 'missing' | 'unreadable', (height, width)) for one image file.

    'exif': the raw pixels do not have the json ``shape`` but the EXIF-oriented ones do.
    """
    if not path.is_file():
        return "missing", None
    image, oriented = decode_image(np.fromfile(str(path), dtype=np.uint8), shape)
    if image is None:
        return "unreadable", None
    return ("exif" if oriented else "ok"), (int(image.shape[0]), int(image.shape[1]))


def _probe_task(task: tuple[str, str, int, int]) -> tuple[str, tuple[int, int] | None]:
    root, file_name, height, width = task
    return probe_image(Path(root) / file_name, (height, width))


# ---------------------------------------------------------------- the whole check


def validate_coco(
    coco: Any,
    *,
    file: str = "annotations.json",
    images_root: str | None = None,
    check_images: bool = True,
    missing_images: str = "drop",
    max_pixels: int = 200_000_000,
    workers: int = 1,
) -> ValidationResult:
    """Check ``coco`` (a parsed COCO dict) and return the canonical dict plus issues."""
    if missing_images not in ("drop", "error", "keep"):
        raise DatasetError(
            "must be drop, error or keep", file="params.yaml", field="dataset.missing_images"
        )
    file_names = check_structure(coco, file, max_pixels)
    issues: list[Issue] = []
    images = sorted(coco["images"], key=lambda im: int(im["id"]))
    categories = sorted(coco["categories"], key=lambda c: int(c["id"]))
    cat_ids = {int(c["id"]) for c in categories}

    kept_images: dict[int, dict[str, Any]] = {}
    for img in images:
        clean = dict(img)
        clean["id"] = int(img["id"])
        clean["width"], clean["height"] = int(img["width"]), int(img["height"])
        clean["file_name"] = file_names[clean["id"]]
        kept_images[clean["id"]] = clean

    if check_images and images_root is not None:
        _check_image_files(kept_images, images_root, missing_images, workers, file, issues)

    kept_anns: list[dict[str, Any]] = []
    used_images: set[int] = set()
    used_cats: set[int] = set()
    with_image = 0
    # Duplicate annotation ids (TACO has two) are real, distinct objects: keep them under a
    # fresh id after the largest one, remember the original, and list the change.
    seen_ids: set[int] = set()
    next_id = max((int(a["id"]) for a in coco["annotations"]), default=0) + 1
    for ann in coco["annotations"]:
        aid = int(ann["id"])
        renumbered_from = None
        if aid in seen_ids:
            renumbered_from, aid = aid, next_id
            next_id += 1
            issues.append(
                Issue(
                    "annotation_duplicate_id",
                    f"id {renumbered_from} used twice; this one is now id {aid} (original_id kept)",
                    annotation_id=renumbered_from,
                    image_id=ann.get("image_id", ""),
                    field="id",
                )
            )
        seen_ids.add(aid)
        ids: dict[str, Any] = {
            "annotation_id": aid,
            "image_id": ann.get("image_id", ""),
            "category_id": ann.get("category_id", ""),
        }
        missing = [k for k in ("image_id", "category_id", "segmentation") if k not in ann]
        if missing:
            issues.append(
                Issue(
                    "annotation_missing_field",
                    f"missing {', '.join(missing)}",
                    field=missing[0],
                    **ids,
                )
            )
            continue
        image_id, cat_id = ann["image_id"], ann["category_id"]
        if not _is_int(image_id) or int(image_id) not in kept_images:
            if _is_int(image_id) and int(image_id) in file_names:
                with_image += 1  # its image was dropped; that drop is listed with the image
                continue
            issues.append(
                Issue(
                    "annotation_unknown_image",
                    f"no image with id {image_id!r}",
                    field="image_id",
                    **ids,
                )
            )
            continue
        if not _is_int(cat_id) or int(cat_id) not in cat_ids:
            issues.append(
                Issue(
                    "annotation_unknown_category",
                    f"no category with id {cat_id!r}",
                    field="category_id",
                    **ids,
                )
            )
            continue
        img = kept_images[int(image_id)]
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float | str):
            issues.append(
                Issue(
                    "annotation_bad_iscrowd",
                    f"iscrowd must be 0 or 1, got {crowd!r}; read as {int(bool(crowd))}",
                    field="iscrowd",
                    **ids,
                )
            )
        seg = check_segmentation(ann["segmentation"], img["width"], img["height"], ids, issues)
        if seg is None:
            continue
        clean = dict(ann)
        clean["id"], clean["image_id"], clean["category_id"] = aid, int(image_id), int(cat_id)
        if renumbered_from is not None:
            clean["original_id"] = renumbered_from
        clean["iscrowd"] = int(bool(crowd)) if not isinstance(crowd, str) else 0
        clean["segmentation"] = seg
        kept_anns.append(clean)
        used_images.add(clean["image_id"])
        used_cats.add(clean["category_id"])

    for iid in sorted(set(kept_images) - used_images):
        issues.append(
            Issue(
                "image_without_annotations",
                "no annotation: the mask is all background",
                image_id=iid,
            )
        )
    for cid in sorted(cat_ids - used_cats):
        issues.append(
            Issue(
                "category_without_annotations", "no annotation uses this category", category_id=cid
            )
        )

    canonical = {k: v for k, v in coco.items() if k not in ("images", "annotations", "categories")}
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


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value) and value == int(value)
    )


def _check_image_files(
    images: dict[int, dict[str, Any]],
    root: str,
    policy: str,
    workers: int,
    file: str,
    issues: list[Issue],
) -> None:
    from pipeline.parallel import pmap

    # file_name is already a clean relative path (no '..', not absolute). Symlinks inside the
    # image folder are followed: they are the user's own (e.g. a DVC symlink cache), and this
    # stage only reads them; outputs are always written under our own folders.
    ids = list(images)
    results = pmap(
        _probe_task,
        [(root, images[i]["file_name"], images[i]["height"], images[i]["width"]) for i in ids],
        workers=workers,
        desc="validate images",
    )
    for iid, (status, shape) in zip(ids, results, strict=True):
        img = images[iid]
        path = os.path.join(root, img["file_name"])
        if status == "exif":
            issues.append(
                Issue(
                    "image_exif_orientation",
                    f"{path}: raw pixels are {img['height']}x{img['width']} only after EXIF "
                    "orientation; stages read it oriented to match the json",
                    image_id=iid,
                    field="width/height",
                )
            )
            continue
        if status == "ok" and shape == (img["height"], img["width"]):
            continue
        if status == "ok":
            hint = (
                " (width and height swapped: EXIF rotation?)"
                if shape == (img["width"], img["height"])
                else ""
            )
            kind = "image_size_mismatch"
            message = (
                f"{path} is {shape[1]}x{shape[0]}, json says {img['width']}x{img['height']}{hint}"
            )
            fld = "width/height"
        else:
            kind = f"image_{status}"
            message = f"{path} is {status}" + (
                _missing_hint(root, img["file_name"]) if status == "missing" else ""
            )
            fld = "file_name"
        if policy == "error":
            raise DatasetError(message, file=file, item=f"image id {iid}", field=fld)
        if policy == "keep" and kind != "image_size_mismatch":
            continue
        issues.append(
            Issue(kind, message + "; image and its annotations dropped", image_id=iid, field=fld)
        )
        del images[iid]


def _missing_hint(root: str, file_name: str) -> str:
    """Point at a same-named file one folder down (Roboflow exports put some in images/)."""
    name = os.path.basename(file_name)
    try:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir() and os.path.isfile(os.path.join(entry.path, name)):
                rel = os.path.relpath(os.path.join(entry.path, name), root)
                return f" (a file {rel!r} exists: fix file_name or the image folder)"
    except OSError:
        pass
    return ""


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


def run(params: dict[str, Any]) -> ValidationResult:
    ds = params["dataset"]
    file = str(ds["annotations"])
    coco = load_coco_json(file)
    images_root = ds.get("images")
    check = bool(ds.get("check_images", True)) and images_root is not None
    if check and not Path(images_root).is_dir() and ds.get("missing_images") != "keep":
        raise DatasetError(
            "image folder not found (set dataset.missing_images: keep to build "
            "masks from the json sizes alone)",
            file="params.yaml",
            field="dataset.images",
        )
    result = validate_coco(
        coco,
        file=file,
        images_root=images_root if check else None,
        check_images=check,
        missing_images=ds.get("missing_images", "drop"),
        max_pixels=int(ds.get("max_pixels", 200_000_000)),
        workers=stage_workers(params, "validate"),
    )
    atomic_write_json(CANONICAL_PATH, result.coco, indent=None)
    atomic_write_json(REPORT_PATH, build_report(result))
    atomic_write_csv(
        ISSUES_PATH,
        ["kind", "action", "image_id", "annotation_id", "category_id", "field", "message"],
        [
            [i.kind, i.action, i.image_id, i.annotation_id, i.category_id, i.field, i.message]
            for i in result.issues
        ],
    )
    return result


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    result = run(params)
    report = build_report(result)
    print(
        f"validate: {report['images_kept']}/{report['images_in']} images, "
        f"{report['annotations_kept']}/{report['annotations_in']} annotations kept; "
        f"{report['problems_total']} problems listed in {ISSUES_PATH}"
    )
