"""Stage ``masks``: where a pixel gets its class.

For each image the annotations are decoded by pycocotools (its masks are the reference) and
painted into one uint8 mask under an overlap policy:

- ``area`` (default): larger objects first, so small objects painted later stay visible;
- ``order``: json order, the last annotation wins;
- ``max``: the higher class index wins (what ``np.maximum`` loops do).

Crowd regions (``iscrowd: 1``) are painted as 255 (``ignore``), as their class (``class``) or not
at all (``skip``). Ignore is a value like any other in the painting order; under ``max`` it wins
because 255 is the highest value.

All polygons of an image are rasterised by one pycocotools call (exactly as ``annToRLE`` does),
compressed counts are decoded vectorised (:mod:`pipeline.files.rle`), and every foreground run is
painted in policy order. The stats are measured from what is visible in the final mask, never
from the json ``area``. Each image is one pure :func:`build_mask` call on the executor; the
stage writes the PNGs and streams the tables in image order.

Cost: linear in images and annotation pixels. The stage holds the canonical json once, as bytes
(annotations are raw slices until sent); each worker gets only its image's annotations.

Stats (measured from visible pixels, long layout so many classes stay cheap):
``data/stats/image_stats.csv`` (one row per image) and ``data/stats/class_stats.csv`` (one row
per image and class that has pixels or instances); read them with
:func:`pipeline.files.contracts.read_image_stats`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.execution.cli import command, stage_main
from pipeline.execution.executor import make_executor
from pipeline.execution.itemcache import (
    ItemCache,
    Memo,
    cached_map,
    item_key,
    open_cache,
    pack,
    unpack,
)
from pipeline.execution.itemcache import code_version as itemcache_version
from pipeline.files import classes, cocojson, contracts, fsio, pngio, rle
from pipeline.files.classes import build_class_table, make_palette
from pipeline.files.cocojson import decode, load_lazy
from pipeline.files.contracts import (
    CANONICAL_PATH,
    CLASS_MEASURES,
    CLASS_STATS_COLUMNS,
    CLASS_STATS_PATH,
    CLASSES_PATH,
    IGNORE,
    IMAGE_STATS_COLUMNS,
    IMAGE_STATS_PATH,
    INSTANCE_COLUMNS,
    INSTANCES_PATH,
    MASK_DIGESTS_PATH,
    MASKS_DIR,
    ClassTable,
    mask_relpath,
    read_bytes,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import (
    OutputFolder,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
    csv_body,
    csv_text,
)
from pipeline.files.params import Params
from pipeline.files.pngio import encode_indexed_png

__all__ = [
    "CROWD_MODES",
    "Canonical",
    "Known",
    "MaskResult",
    "MaskSettings",
    "MaskTask",
    "OVERLAP_POLICIES",
    "annotation_rle",
    "annotation_value",
    "build_mask",
    "code_version",
    "group_annotations",
    "image_stats",
    "instance_row",
    "main",
    "mask_key",
    "paint_order",
    "png_digest",
    "render_mask",
    "rows_version",
    "RunIndex",
    "run",
    "settings_key",
    "table_rows",
]

OVERLAP_POLICIES = ("area", "order", "max")
CROWD_MODES = ("ignore", "class", "skip")


@dataclass(frozen=True)
class MaskSettings:
    """What every image's mask depends on besides its own annotations."""

    table: ClassTable
    palette: np.ndarray
    overlap: str = "area"
    crowd: str = "ignore"
    thresholds: tuple[int, int] = (1024, 9216)


@dataclass(frozen=True)
class MaskResult:
    png: bytes  # the indexed PNG
    background: int  # pixels of background
    ignore: int  # pixels painted 255
    classes: list[list[int]]  # [class index, *CLASS_MEASURES] per class the image has
    records: list[dict[str, Any]]  # one per annotation, for instances.csv


# ---------------------------------------------------------------- one annotation


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


# ---------------------------------------------------------------- one image


@dataclass
class _Painted:
    """The painted annotations of one image, in json order, as run-length sources."""

    positions: list[int]  # index into the image's annotations
    values: list[int]  # class value painted
    strings: list[bytes | None]  # compressed counts (None until polygons are rasterised)
    lists: dict[int, np.ndarray]  # painted position -> uncompressed counts
    polygons: list[list[float]]  # every polygon part, for one pycocotools call
    parts: list[tuple[int, int]]  # (first part, parts) per polygon annotation


def _record(ann: dict[str, Any], value: int | None) -> dict[str, Any]:
    return {
        "annotation_id": ann["id"],
        "category_id": ann["category_id"],
        "class_index": -1 if value is None else value,
        "iscrowd": int(bool(ann.get("iscrowd", 0))),
        "mask_pixels": 0,
        "visible_pixels": 0,
        "json_area": ann.get("area", ""),
    }


def _collect(
    anns: list[dict[str, Any]], settings: MaskSettings, height: int, width: int
) -> tuple[list[dict[str, Any]], _Painted]:
    """Records of every annotation and the run-length sources of the painted ones."""
    records: list[dict[str, Any]] = []
    p = _Painted([], [], [], {}, [], [])
    for index, ann in enumerate(anns):
        value = annotation_value(ann, settings.table, settings.crowd)
        records.append(_record(ann, value))
        if value is None:
            continue
        seg = ann["segmentation"]
        if isinstance(seg, list):
            p.parts.append((len(p.polygons), len(seg)))
            p.polygons.extend(seg)
            p.strings.append(None)  # filled by _rasterise_polygons, keeps painted order
        else:
            counts = annotation_rle(seg, height, width)
            if isinstance(counts, np.ndarray):
                p.lists[len(p.positions)] = counts
            else:
                p.strings.append(counts)
        p.positions.append(index)
        p.values.append(value)
    return records, p


def _rasterise_polygons(p: _Painted, height: int, width: int) -> None:
    """All polygon parts of the image in one pycocotools call; parts merged as annToRLE does."""
    if not p.polygons:
        return
    rles = mask_utils.frPyObjects(p.polygons, height, width)
    filled = iter(p.parts)
    for pos, item in enumerate(p.strings):
        if item is None:
            first, n = next(filled)
            group = rles[first : first + n]
            # annToRLE merges the parts; merging one part returns it unchanged.
            p.strings[pos] = (group[0] if n == 1 else mask_utils.merge(group))["counts"]


def _all_counts(p: _Painted) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of all painted annotations, grouped by painted position."""
    counts, owner = rle.decode_strings([s for s in p.strings if s is not None])
    if not p.lists:
        return counts, owner
    n = len(p.positions)
    string_positions = np.array([i for i in range(n) if i not in p.lists], dtype=np.int64)
    owner = string_positions[owner] if owner.size else owner
    listed = sorted(p.lists)
    counts = np.concatenate([counts] + [p.lists[i] for i in listed])
    owner = np.concatenate([owner] + [np.full(p.lists[i].size, i, np.int64) for i in listed])
    order = np.argsort(owner, kind="stable")
    return counts[order], owner[order]


def _paint(
    starts: np.ndarray,
    lengths: np.ndarray,
    run_owner: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, visible pixels per painted annotation) from runs already in painting order.

    Every run is expanded to column-major pixel positions; later runs overwrite earlier ones.
    An annotation's own runs never overlap, so a pixel survives iff its owner still owns it.
    """
    height, width = shape
    n = values.size
    total = int(lengths.sum())
    pixels = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    pixel_owner = np.repeat(run_owner + 1, lengths)  # 1 + painted position
    lut = np.zeros(max(256, n + 1), dtype=np.uint8)
    lut[1 : n + 1] = values
    # Common case: the owner fits a byte, so OpenCV's LUT and transpose do the full-image
    # passes at memory speed.
    small = n < 255
    flat_owner = np.zeros(height * width, dtype=np.uint8 if small else np.int32)
    flat_owner[pixels] = pixel_owner  # painting order; NumPy keeps the last value
    visible = np.bincount(pixel_owner[flat_owner[pixels] == pixel_owner], minlength=n + 1)
    owner_t = flat_owner.reshape(width, height)
    if small and min(height, width) > 1:
        mask = cv2.transpose(cv2.LUT(owner_t, lut[:256]))
    else:
        mask = np.ascontiguousarray(lut[owner_t].T)
    return mask, visible


def render_mask(
    image: dict[str, Any], anns: list[dict[str, Any]], settings: MaskSettings
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The class mask of one image, and one record per annotation with its visible pixels.

    Works on run lengths in COCO's column-major order: every foreground run of every painted
    annotation is expanded to pixel positions and assigned in painting order (later wins).
    """
    height, width = int(image["height"]), int(image["width"])
    records, painted = _collect(anns, settings, height, width)
    _rasterise_polygons(painted, height, width)
    n = len(painted.positions)
    starts, lengths, run_owner = rle.foreground_runs(*_all_counts(painted), n)
    areas = np.bincount(run_owner, weights=lengths, minlength=n).astype(np.int64)
    values = np.asarray(painted.values, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[paint_order(values, areas, settings.overlap)] = np.arange(n)
    # Runs sorted by painting rank; within one annotation runs never overlap.
    order = np.argsort(rank[run_owner], kind="stable")
    mask, visible = _paint(
        starts[order], lengths[order], run_owner[order], values.astype(np.uint8), (height, width)
    )
    for pos, index in enumerate(painted.positions):
        records[index]["mask_pixels"] = int(areas[pos])
        records[index]["visible_pixels"] = int(visible[pos + 1])
    return mask, records


def image_stats(
    shape: tuple[int, int],
    records: list[dict[str, Any]],
    n_classes: int,
    thresholds: tuple[int, int],
) -> tuple[int, int, list[list[int]]]:
    """(background pixels, ignore pixels, [class index, *measures] per class present).

    Every visible pixel has exactly one owning annotation, so class pixels are sums of the
    records' visible pixels and background is the rest: no second pass over the mask. A class
    is listed when it has pixels or instances (an instance may be hidden: 0 pixels visible).
    """
    counts = np.zeros((n_classes + 1, len(CLASS_MEASURES)), dtype=np.int64)
    ignore_pixels = 0
    for rec in records:
        cls, area = rec["class_index"], rec["visible_pixels"]
        if cls == IGNORE:
            ignore_pixels += area
        elif cls > 0:
            counts[cls, 0] += area
            if not rec["iscrowd"]:  # a crowd region is pixels, not an instance
                counts[cls, 1] += 1
                counts[cls, _size_bucket(area, thresholds)] += 1
    background = shape[0] * shape[1] - int(counts[:, 0].sum()) - ignore_pixels
    present = np.flatnonzero(counts[:, :2].any(axis=1))
    return background, ignore_pixels, [[int(c), *counts[c].tolist()] for c in present]


def _size_bucket(area: int, thresholds: tuple[int, int]) -> int:
    """Column of the size bucket in CLASS_MEASURES: small, medium, large, or hidden (0 px)."""
    if area == 0:
        return 5
    if area <= thresholds[0]:
        return 2
    return 3 if area <= thresholds[1] else 4


def build_mask(settings: MaskSettings, item: tuple[dict[str, Any], list[Any]]) -> MaskResult:
    """Everything the stage writes for one image: pure, so any worker can make it.

    Annotations come as dicts or as their raw json (what the stage sends workers).
    """
    image, anns = item
    anns = [a if isinstance(a, dict) else decode(a) for a in anns]
    mask, records = render_mask(image, anns, settings)
    background, ignore, classes = image_stats(
        mask.shape, records, settings.table.n_classes, settings.thresholds
    )
    png = encode_indexed_png(mask, settings.palette)
    return MaskResult(png, background, ignore, classes, records)


# ---------------------------------------------------------------- stage


def group_annotations(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in coco["images"]}
    for ann in coco["annotations"]:
        by_image[int(ann["image_id"])].append(ann)
    return by_image


class MaskTask(NamedTuple):
    """One image's work: the image entry and its annotations as raw json."""

    image: dict[str, Any]
    annotations: list[bytes]

    def describe(self) -> str:
        """Names the image in an error the executor raises (a worker crash)."""
        return f"image id {self.image['id']} ({self.image['file_name']})"


class Canonical:
    """The canonical json held once, as bytes: images and categories decoded, annotations as
    raw json slices until a task is sent (each worker gets only its image's annotations)."""

    def __init__(self, data: bytes) -> None:
        coco = load_lazy(data)
        if coco is None:
            raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
        self.images, self.categories = coco.value("images"), coco.value("categories")
        self.raw = coco.items("annotations")
        self.by_image: dict[int, list[int]] = {int(im["id"]): [] for im in self.images}
        for index, ref in enumerate(coco.refs()):
            self.by_image[ref.image_id].append(index)

    def task(self, index: int) -> MaskTask:
        image = self.images[index]
        return MaskTask(image, [bytes(self.raw[i]) for i in self.by_image[image["id"]]])


def settings_key(version: str, settings: MaskSettings) -> str:
    """What decides every image's mask alike: code, class map, policies, thresholds, palette."""
    table = settings.table
    config = json.dumps(
        [sorted(table.index_of_category.items()), settings.overlap, settings.crowd],
        separators=(",", ":"),
    )
    return item_key(version, config, repr(settings.thresholds), settings.palette.tobytes())


def mask_key(common: str, task: MaskTask) -> str:
    """One image's key: the shared settings key, its size and its annotations."""
    image, anns = task
    return item_key(common, f"{image['width']}x{image['height']}", *anns)


def _pack(result: MaskResult) -> bytes:
    return pack([result.png, result.background, result.ignore, result.classes, result.records])


def _unpack(data: bytes) -> MaskResult:
    return MaskResult(*unpack(data))  # type: ignore[misc]


def instance_row(image_id: int, record: dict[str, Any], table: ClassTable) -> list[Any]:
    index = record["class_index"]
    name = "ignore" if index == IGNORE else (table.names[index] if index >= 0 else "")
    return [
        image_id,
        record["annotation_id"],
        record["category_id"],
        index,
        name,
        record["iscrowd"],
        record["mask_pixels"],
        record["visible_pixels"],
        record["json_area"],
    ]


def png_digest(png: bytes) -> str:
    """sha256 of a mask file, as ``sha256sum`` prints it (the digests file lists them)."""
    return hashlib.sha256(png).hexdigest()


def code_version() -> str:
    """The source of the modules that decide mask bytes, and the libraries' versions."""
    return itemcache_version([sys.modules[__name__], classes, cocojson, contracts, pngio, rle])


def run(params: Params, root: Path = Path(".")) -> str:
    """Paint every image's mask, write PNGs and the stats tables.

    ``data/masks`` is persistent (DVC keeps it between runs) and written like a fresh folder:
    files of images no longer in the json are removed, so it is byte-identical to a clean
    build. An image whose key and mask file are unchanged since the last run costs one
    ``stat`` and its rows from the run index (:class:`RunIndex`); the others come from the
    item store or the executor, and only files whose bytes differ are rewritten.
    """
    canon = Canonical(read_bytes(root / CANONICAL_PATH))
    table = build_class_table(canon.categories, params.classes)
    m = params.masks
    settings = MaskSettings(table, make_palette(), m.overlap, m.crowd, m.size_thresholds)
    common = settings_key(code_version(), settings)
    keys = [mask_key(common, canon.task(i)) for i in range(len(canon.images))]
    cache = open_cache(params.cache.dir, params.cache.max_size_gb, root)
    folder = OutputFolder(root / MASKS_DIR)
    index = RunIndex(cache, folder, rows_version(table))
    plan = index.plan(canon.images, keys)
    executor = make_executor(params)
    needed = [i for i, known in enumerate(plan) if known is None]

    def compute(positions: list[int]) -> Iterator[MaskResult]:
        tasks = (canon.task(needed[p]) for p in positions)
        return executor.map(build_mask, tasks, settings, "masks", total=len(positions))

    results = cached_map(cache, [keys[i] for i in needed], compute, (_pack, _unpack))
    with (
        atomic_writer(root / IMAGE_STATS_PATH) as image_rows,
        atomic_writer(root / CLASS_STATS_PATH) as class_rows,
        atomic_writer(root / INSTANCES_PATH) as instances,
    ):
        tables = (image_rows, class_rows, instances)
        for out, columns in zip(tables, _TABLE_COLUMNS, strict=True):
            out.write(csv_text(columns, []))
        digests = []
        for position, (image, known) in enumerate(zip(canon.images, plan, strict=True)):
            if known is None:
                known = index.record(position, image, next(results), table)
            for out, text in zip(tables, known.rows, strict=True):
                out.write(text)
            digests.append(f"{known.digest}  {mask_relpath(image['file_name'])}\n")
    atomic_write_text(root / MASK_DIGESTS_PATH, "".join(digests))
    folder.remove_others()
    index.save()
    atomic_write_json(root / CLASSES_PATH, table.to_json(settings.palette))
    cache.settle()
    return _summary(len(canon.images), len(needed), cache.hits, params, table)


def _summary(n: int, needed: int, hits: int, params: Params, table: ClassTable) -> str:
    unchanged = f", {n - needed} unchanged" if needed < n else ""
    reused = f", {hits} reused from {params.cache.dir}" if hits else ""
    return f"{n} masks in {MASKS_DIR}/{unchanged}{reused}, {table.n_classes} classes"


_TABLE_COLUMNS = (IMAGE_STATS_COLUMNS, CLASS_STATS_COLUMNS, INSTANCE_COLUMNS)


def rows_version(table: ClassTable) -> str:
    """What decides an image's table rows besides its mask key: the class names and the code
    that formats CSV cells."""
    return item_key(itemcache_version([fsio]), json.dumps(table.names))


def table_rows(image: dict[str, Any], result: MaskResult, table: ClassTable) -> tuple[str, ...]:
    """One image's rows of image_stats.csv, class_stats.csv and instances.csv, as CSV text."""
    iid, name = image["id"], image["file_name"]
    image_row = [[iid, name, image["width"], image["height"], result.background, result.ignore]]
    class_rows = [[iid, index, table.names[index], *m] for index, *m in result.classes]
    instances = [instance_row(iid, record, table) for record in result.records]
    return tuple(csv_body(rows) for rows in (image_row, class_rows, instances))


class Known(NamedTuple):
    """What the run index holds of an image: its table rows and its PNG's digest."""

    rows: tuple[str, str, str]
    digest: str


class RunIndex:
    """The previous runs' results in two small store files, so an unchanged image is neither
    read from the store nor painted, and its mask file is not opened.

    ``masks-rows`` maps an image's rows key (mask key, id, file name, size, class names) to its
    table rows and PNG digest; ``masks-files-<folder>`` maps each mask file of this output
    folder to its (size, mtime_ns, inode) and digest when it was last written or verified. An
    image is unchanged when both hold and agree, the test DVC's state database makes. Both are
    sealed store files (a damaged one is dropped: everything is recomputed, never passed on).
    """

    def __init__(self, cache: ItemCache, folder: OutputFolder, version: str) -> None:
        self.folder, self.version = folder, version
        self.rows = Memo(cache, "masks-rows")
        where = item_key(os.path.abspath(folder.root))[:16]
        self.files = Memo(cache, f"masks-files-{where}")
        self._keys: list[str] = []

    def plan(self, images: list[dict[str, Any]], keys: list[str]) -> list[Known | None]:
        """Per image: what the index knows of it when its mask file is untouched, else None."""
        plan: list[Known | None] = []
        for image, key in zip(images, keys, strict=True):
            rows_key = item_key(key, self.version, str(image["id"]), image["file_name"])
            self._keys.append(rows_key)
            plan.append(self._unchanged(image, rows_key))
        return plan

    def _unchanged(self, image: dict[str, Any], rows_key: str) -> Known | None:
        known = self.rows.get(rows_key)
        if known is None:
            return None
        relative = mask_relpath(image["file_name"])
        seen = self.files.get(relative)
        digest = known[3]
        if seen is None or seen[3] != digest or tuple(seen[:3]) != self.folder.signature(relative):
            return None
        self.folder.keep(relative)
        return Known(tuple(known[:3]), digest)  # type: ignore[arg-type]

    def record(
        self, position: int, image: dict[str, Any], result: MaskResult, table: ClassTable
    ) -> Known:
        """Write a computed (or stored) image's mask file and remember it for the next run."""
        relative = mask_relpath(image["file_name"])
        self.folder.write(relative, result.png)
        known = Known(table_rows(image, result, table), png_digest(result.png))
        self.rows.put(self._keys[position], [*known.rows, known.digest])
        signature = self.folder.signature(relative)
        if signature is not None:
            self.files.put(relative, [*signature, known.digest])
        return known

    def save(self) -> None:
        self.rows.save()
        self.files.save()


def main(argv: list[str] | None = None) -> None:
    stage_main("masks", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import masks

    command(masks.main)
