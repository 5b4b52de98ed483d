"""Stage ``masks``: where a pixel gets its class.

For each image the annotations are decoded by pycocotools (its masks are the reference) and
painted into one uint8 mask under an overlap policy:

- ``area`` (default): larger objects first, so small objects painted later stay visible;
- ``order``: json order, the last annotation wins;
- ``max``: the higher class index wins (what ``np.maximum`` loops do).

Crowd regions (``iscrowd: 1``) are painted as 255 (``ignore``), as their class (``class``) or not
at all (``skip``). Ignore is a value like any other in the painting order; under ``max`` it wins
because 255 is the highest value.

Speed: polygons are rasterised by pycocotools on a crop around their bounding box (an integer
shift of the coordinates, which rasterises to exactly the same pixels) instead of on the full
image, and painted into that crop only. The stats are measured from what is visible in the final
mask, never from the json ``area``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.classes import IGNORE, ClassTable, build_class_table, make_palette
from pipeline.errors import DatasetError
from pipeline.fsio import atomic_write_csv, atomic_write_json, inside, mask_relpath
from pipeline.parallel import pmap
from pipeline.params import load_params, stage_workers
from pipeline.pngio import write_indexed_png
from pipeline.validate import CANONICAL_PATH, load_coco_json

MASKS_DIR = "data/masks"
CLASSES_PATH = "data/classes.json"
IMAGE_STATS_PATH = "data/stats/image_stats.csv"
INSTANCES_PATH = "data/stats/instances.csv"

OVERLAP_POLICIES = ("area", "order", "max")
CROWD_MODES = ("ignore", "class", "skip")
SIZE_BUCKETS = ("small", "medium", "large")
# Columns per class in the image stats table, after ``<class>__``.
CLASS_MEASURES = ("pixels", "instances", *SIZE_BUCKETS, "hidden")


def decode_rle_strings(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed COCO RLE strings at once (pycocotools' ``rleFrString``).

    Returns ``(counts, owner)``: every run length, and the index of the string it came from.
    Vectorised over all strings of an image, because decoding them one by one in Python (or
    decoding full-size masks with pycocotools) is what made mask loops slow.
    """
    if not strings:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lengths = np.fromiter((len(s) for s in strings), np.int64, len(strings))
    chars = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    char_owner = np.repeat(np.arange(len(strings)), lengths)
    ends = (chars & 0x20) == 0  # a value ends at a character without the "more" bit
    starts = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
    group = np.cumsum(np.concatenate([[0], ends[:-1]]))
    digit = np.arange(chars.size) - starts[group]
    values = np.add.reduceat((chars & 0x1F) << (5 * digit), starts)
    last = np.flatnonzero(ends)
    negative = (chars[last] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (digit[last][negative] + 1))
    owner = char_owner[last]
    # Within a string, value j > 2 is stored as a difference to value j - 2.
    first = np.searchsorted(owner, np.arange(len(strings)))
    j = np.arange(owner.size) - first[owner]
    for parity, base in ((1, 1), (0, 2)):
        sel = np.flatnonzero((j % 2 == parity) & (j >= base))
        if sel.size:
            picked = values[sel]
            csum = np.cumsum(picked)
            head = np.concatenate([[True], owner[sel][1:] != owner[sel][:-1]])
            head_at = np.maximum.accumulate(np.where(head, np.arange(sel.size), 0))
            values[sel] = csum - (csum - picked)[head_at]
    return values, owner


def foreground_runs(
    counts: np.ndarray, owner: np.ndarray, n_rles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, rle index) of every foreground run, in column-major pixel order."""
    first = np.searchsorted(owner, np.arange(n_rles))
    j = np.arange(owner.size) - first[owner]
    ends = np.cumsum(counts)
    base = np.concatenate([[0], ends])[first]  # total of all earlier strings
    begin = ends - counts - base[owner]
    fg = (j % 2 == 1) & (counts > 0)
    return begin[fg], counts[fg], owner[fg]


def annotation_rle(seg: Any, height: int, width: int) -> bytes | np.ndarray:
    """The annotation as pycocotools sees it in ``annToRLE``: compressed counts, or the
    uncompressed run lengths when the json gives them as a list."""
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))["counts"]
    counts = seg["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    return counts.encode("ascii") if isinstance(counts, str) else bytes(counts)


def annotation_value(ann: dict[str, Any], table: ClassTable, crowd: str) -> int | None:
    """Class index to paint for one annotation, or None when it is not painted."""
    value = table.index_of_category.get(int(ann["category_id"]))
    if value is None:
        return None
    if ann.get("iscrowd", 0):
        if crowd == "skip":
            return None
        if crowd == "ignore":
            return IGNORE
    return value


def paint_order(values: np.ndarray, areas: np.ndarray, overlap: str) -> np.ndarray:
    """Positions of the painted annotations in the order they are painted; last one wins.

    ``max`` becomes "paint in increasing class order", which gives exactly the pixels of a
    ``np.maximum`` loop. All sorts are stable, so ties keep json order.
    """
    if overlap == "area":
        return np.argsort(-areas, kind="stable")
    if overlap == "max":
        return np.argsort(values, kind="stable")
    return np.arange(values.size)


def render_mask(
    image: dict[str, Any],
    anns: list[dict[str, Any]],
    table: ClassTable,
    overlap: str = "area",
    crowd: str = "ignore",
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The class mask of one image, and one record per annotation with its visible pixels.

    Works on run lengths in COCO's column-major order: every foreground run of every painted
    annotation is expanded to pixel positions and assigned in painting order (later wins).
    """
    height, width = int(image["height"]), int(image["width"])
    records: list[dict[str, Any]] = []
    painted: list[int] = []
    values: list[int] = []
    strings: list[bytes | None] = []
    lists: dict[int, np.ndarray] = {}
    polygons: list[list[float]] = []  # every polygon part of the image, one pycocotools call
    parts: list[tuple[int, int]] = []  # (first part, number of parts) per polygon annotation
    for index, ann in enumerate(anns):
        value = annotation_value(ann, table, crowd)
        records.append(
            {
                "annotation_id": ann["id"],
                "category_id": ann["category_id"],
                "class_index": -1 if value is None else value,
                "iscrowd": int(bool(ann.get("iscrowd", 0))),
                "mask_pixels": 0,
                "visible_pixels": 0,
                "json_area": ann.get("area", ""),
            }
        )
        if value is None:
            continue
        seg = ann["segmentation"]
        if isinstance(seg, list):
            parts.append((len(polygons), len(seg)))
            polygons.extend(seg)
            strings.append(None)  # filled below, keeps painted order
        else:
            rle = annotation_rle(seg, height, width)
            if isinstance(rle, np.ndarray):
                lists[len(painted)] = rle
            else:
                strings.append(rle)
        painted.append(index)
        values.append(value)
    if polygons:
        rles = mask_utils.frPyObjects(polygons, height, width)
        filled = iter(parts)
        for pos, item in enumerate(strings):
            if item is None:
                first, n = next(filled)
                group = rles[first : first + n]
                # annToRLE merges the parts; merging one part returns it unchanged.
                strings[pos] = (group[0] if n == 1 else mask_utils.merge(group))["counts"]
    counts, owner = _all_counts(strings, lists, len(painted))
    starts, lengths, run_owner = foreground_runs(counts, owner, len(painted))
    areas = np.bincount(run_owner, weights=lengths, minlength=len(painted)).astype(np.int64)
    value_arr = np.asarray(values, dtype=np.int64)
    order = paint_order(value_arr, areas, overlap)
    rank = np.empty(len(painted), dtype=np.int64)
    rank[order] = np.arange(len(painted))
    # Runs sorted by painting rank; within one annotation runs never overlap.
    run_order = np.argsort(rank[run_owner], kind="stable")
    starts, lengths, run_owner = starts[run_order], lengths[run_order], run_owner[run_order]
    total = int(lengths.sum())
    pixels = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    pixel_owner = np.repeat(run_owner + 1, lengths)  # 1 + painted position
    values = np.asarray(values, dtype=np.uint8)
    if len(painted) < 255:
        lut = np.zeros(256, dtype=np.uint8)
        lut[1 : len(painted) + 1] = values
        # Common case: owner fits a byte, so OpenCV's LUT, histogram and transpose do the
        # full-image passes at memory speed.
        flat_owner = np.zeros(height * width, dtype=np.uint8)
        flat_owner[pixels] = pixel_owner  # painting order; NumPy keeps the last value
        owner_t = flat_owner.reshape(width, height)
        visible = np.bincount(
            pixel_owner[flat_owner[pixels] == pixel_owner], minlength=len(painted) + 1
        )
        mask = (
            cv2.transpose(cv2.LUT(owner_t, lut))
            if min(height, width) > 1
            else np.ascontiguousarray(lut[owner_t].T)
        )
    else:
        flat_owner = np.zeros(height * width, dtype=np.int32)
        flat_owner[pixels] = pixel_owner
        # An annotation's own runs never overlap, so a pixel survives iff it still owns it.
        survived = flat_owner[pixels] == pixel_owner
        visible = np.bincount(pixel_owner[survived], minlength=len(painted) + 1)
        full_lut = np.zeros(len(painted) + 1, dtype=np.uint8)
        full_lut[1:] = values
        mask = np.ascontiguousarray(full_lut[flat_owner].reshape(width, height).T)
    for pos, index in enumerate(painted):
        records[index]["mask_pixels"] = int(areas[pos])
        records[index]["visible_pixels"] = int(visible[pos + 1])
    return mask, records


def _all_counts(
    strings: list[bytes], lists: dict[int, np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of all painted annotations, grouped by painted position."""
    counts, owner = decode_rle_strings(strings)
    if not lists:
        return counts, owner
    string_positions = np.array([i for i in range(n) if i not in lists], dtype=np.int64)
    owner = string_positions[owner] if owner.size else owner
    parts_counts = [counts] + [lists[i] for i in sorted(lists)]
    parts_owner = [owner] + [np.full(lists[i].size, i, np.int64) for i in sorted(lists)]
    counts, owner = np.concatenate(parts_counts), np.concatenate(parts_owner)
    order = np.argsort(owner, kind="stable")
    return counts[order], owner[order]


def image_stats(
    height: int,
    width: int,
    records: list[dict[str, Any]],
    table: ClassTable,
    thresholds: tuple[int, int],
) -> dict[str, int]:
    """One row of the stats table: per class visible pixels, instances and size buckets.

    Every visible pixel has exactly one owning annotation, so class pixels are sums of the
    records' visible pixels and background is the rest: no second pass over the mask.
    """
    n = len(table.names)
    counts = np.zeros((n, len(CLASS_MEASURES)), dtype=np.int64)
    ignore_pixels = 0
    small_max, medium_max = thresholds
    for rec in records:
        cls, area = rec["class_index"], rec["visible_pixels"]
        if cls == IGNORE:
            ignore_pixels += area
            continue
        if cls <= 0:
            continue
        counts[cls, 0] += area
        if rec["iscrowd"]:
            continue  # a crowd region is pixels, not an instance
        counts[cls, 1] += 1
        if area == 0:
            counts[cls, 5] += 1
        elif area <= small_max:
            counts[cls, 2] += 1
        elif area <= medium_max:
            counts[cls, 3] += 1
        else:
            counts[cls, 4] += 1
    background = height * width - int(counts[:, 0].sum()) - ignore_pixels
    row: dict[str, int] = {f"{table.names[0]}__pixels": background}
    for cls in range(1, n):
        for m, measure in enumerate(CLASS_MEASURES):
            row[f"{table.names[cls]}__{measure}"] = int(counts[cls, m])
    row["ignore__pixels"] = ignore_pixels
    return row


def check_mask_params(cfg: dict[str, Any]) -> tuple[str, str, tuple[int, int]]:
    overlap, crowd = cfg.get("overlap", "area"), cfg.get("crowd", "ignore")
    if overlap not in OVERLAP_POLICIES:
        raise DatasetError(
            f"{overlap!r} is not one of {OVERLAP_POLICIES}",
            file="params.yaml",
            field="masks.overlap",
        )
    if crowd not in CROWD_MODES:
        raise DatasetError(
            f"{crowd!r} is not one of {CROWD_MODES}", file="params.yaml", field="masks.crowd"
        )
    thresholds = cfg.get("size_thresholds", [1024, 9216])
    if (
        not isinstance(thresholds, list | tuple)
        or len(thresholds) != 2
        or not all(isinstance(t, int | float) for t in thresholds)
        or not 0 < thresholds[0] < thresholds[1]
    ):
        raise DatasetError(
            f"must be two increasing positive areas in px, got {thresholds!r}",
            file="params.yaml",
            field="masks.size_thresholds",
        )
    return overlap, crowd, (int(thresholds[0]), int(thresholds[1]))


# ---------------------------------------------------------------- stage

_WORKER: dict[str, Any] = {}


def _init_worker(
    table: ClassTable,
    palette: np.ndarray,
    overlap: str,
    crowd: str,
    thresholds: tuple[int, int],
    out_dir: str,
) -> None:
    _WORKER.update(
        table=table,
        palette=palette,
        overlap=overlap,
        crowd=crowd,
        thresholds=thresholds,
        out_dir=out_dir,
    )


def _mask_task(task: tuple[dict[str, Any], list[dict[str, Any]]]) -> tuple[dict, list[dict]]:
    image, anns = task
    w = _WORKER
    mask, records = render_mask(image, anns, w["table"], w["overlap"], w["crowd"])
    write_indexed_png(inside(w["out_dir"], mask_relpath(image["file_name"])), mask, w["palette"])
    return image_stats(mask.shape[0], mask.shape[1], records, w["table"], w["thresholds"]), records


def group_annotations(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in coco["images"]}
    for ann in coco["annotations"]:
        by_image[int(ann["image_id"])].append(ann)
    return by_image


def run(
    params: dict[str, Any], annotations: str = CANONICAL_PATH, out_dir: str = MASKS_DIR
) -> None:
    overlap, crowd, thresholds = check_mask_params(params["masks"])
    coco = load_coco_json(annotations)
    table = build_class_table(coco["categories"], params.get("classes") or {})
    palette = make_palette(table.n_classes)
    by_image = group_annotations(coco)
    tasks = [(im, by_image[int(im["id"])]) for im in coco["images"]]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    results = pmap(
        _mask_task,
        tasks,
        workers=stage_workers(params, "masks"),
        desc="masks",
        initializer=_init_worker,
        initargs=(table, palette, overlap, crowd, thresholds, out_dir),
    )
    atomic_write_json(CLASSES_PATH, table.to_json(palette))
    stat_columns = list(results[0][0]) if results else [f"{table.names[0]}__pixels"]
    atomic_write_csv(
        IMAGE_STATS_PATH,
        ["image_id", "file_name", "width", "height", *stat_columns],
        [
            [im["id"], im["file_name"], im["width"], im["height"], *(row[c] for c in stat_columns)]
            for (im, _), (row, _) in zip(tasks, results, strict=True)
        ],
    )
    instance_columns = [
        "image_id",
        "annotation_id",
        "category_id",
        "class_index",
        "class",
        "iscrowd",
        "mask_pixels",
        "visible_pixels",
        "json_area",
    ]
    atomic_write_csv(
        INSTANCES_PATH,
        instance_columns,
        [
            [
                im["id"],
                r["annotation_id"],
                r["category_id"],
                r["class_index"],
                _class_name(table, r["class_index"]),
                r["iscrowd"],
                r["mask_pixels"],
                r["visible_pixels"],
                r["json_area"],
            ]
            for (im, _), (_, records) in zip(tasks, results, strict=True)
            for r in records
        ],
    )


def _class_name(table: ClassTable, index: int) -> str:
    if index == IGNORE:
        return "ignore"
    return table.names[index] if index >= 0 else ""


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    run(params)
    print(f"masks: written under {MASKS_DIR}/, stats in {IMAGE_STATS_PATH}")
