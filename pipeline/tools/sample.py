"""Deterministic generator of trash-like COCO segmentation datasets.

It makes the embedded sample (``data/sample``) and the larger sets the benchmarks use. The data
imitate what hurts in real litter datasets: a power-law class frequency, a large share of objects
of 20 px or less, multi-part polygons, a few compressed and uncompressed RLE annotations, a few
``iscrowd: 1`` regions, photos in batch folders, and sparse category ids.

Every random choice comes from one ``np.random.Generator`` seeded from ``seed`` and the image
index, so the same arguments always give the same files.
"""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, atomic_write_json

__all__ = [
    "CATEGORY_IDS",
    "CATEGORY_NAMES",
    "class_probabilities",
    "generate",
    "main",
    "make_image",
    "uncompressed_rle",
]

# Sparse, non-contiguous ids on purpose: masks must map by id, never by position.
CATEGORY_IDS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
CATEGORY_NAMES = [
    "general trash",
    "paper",
    "paper pack",
    "metal",
    "glass",
    "plastic",
    "styrofoam",
    "plastic bag",
    "battery",
    "clothing",
]
# BGR colours used to draw each class into the synthetic photo, so images carry the objects.
_DRAW_COLOURS = [
    (60, 60, 60),
    (200, 200, 190),
    (90, 160, 200),
    (150, 150, 160),
    (90, 200, 90),
    (40, 120, 240),
    (245, 245, 245),
    (200, 60, 160),
    (30, 30, 200),
    (140, 80, 40),
]


def class_probabilities(n_classes: int, exponent: float = 1.3) -> np.ndarray:
    """Power-law (Zipf-like) class frequencies: class 0 common, the last ones rare."""
    weights = 1.0 / np.arange(1, n_classes + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def _star_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    n = int(rng.integers(5, 12))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = radius * rng.uniform(0.55, 1.0, n)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(pts, 2)


def _object_radius(rng: np.random.Generator, size: int) -> float:
    """Log-uniform sizes: about half the objects end up 20 px or smaller."""
    lo, hi = math.log(1.5), math.log(size / 4)
    return float(math.exp(rng.uniform(lo, hi)))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(70, 170, size=3)
    small = rng.normal(0, 25, size=(max(2, height // 16), max(2, width // 16), 3))
    noise = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 6, size=(height, width, 3))
    img = base[None, None, :] + noise + grain
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image(
    rng: np.random.Generator,
    image_id: int,
    width: int,
    height: int,
    n_objects: int,
    probs: np.ndarray,
    next_ann_id: int,
    rle_rate: float,
    crowd_rate: float,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One synthetic photo and its annotations (polygons, some RLE, some crowd)."""
    img = _background(rng, height, width)
    anns: list[dict[str, Any]] = []
    for k in range(n_objects):
        cls = int(rng.choice(len(probs), p=probs))
        parts = _object_parts(rng, width, height)
        colour = np.array(_DRAW_COLOURS[cls]) + rng.integers(-20, 20, 3)
        colour = tuple(int(c) for c in np.clip(colour, 0, 255))
        for part in parts:
            cv2.fillPoly(img, [np.round(part).astype(np.int32)], colour, lineType=cv2.LINE_AA)
        # Coordinates may stray a little outside the frame, as real exporters' do.
        polygons = [[float(v) for v in part.ravel()] for part in parts]
        ann: dict[str, Any] = {
            "id": next_ann_id + k,
            "image_id": image_id,
            "category_id": CATEGORY_IDS[cls],
            "iscrowd": 0,
        }
        ann.update(_segmentation(rng, polygons, (height, width), rle_rate, crowd_rate))
        ann["bbox"] = _bbox(parts, width, height)
        # Like some exporters, fill `area` with the bbox area: the pipeline must not trust it.
        ann["area"] = round(ann["bbox"][2] * ann["bbox"][3], 2)
        anns.append(ann)
    return img, anns


def _object_parts(rng: np.random.Generator, width: int, height: int) -> list[np.ndarray]:
    """A star-shaped object near (or a little past) the frame, sometimes in two parts."""
    radius = _object_radius(rng, min(width, height))
    cx = float(rng.uniform(-radius * 0.3, width + radius * 0.3))
    cy = float(rng.uniform(-radius * 0.3, height + radius * 0.3))
    parts = [_star_polygon(rng, cx, cy, radius)]
    if radius > 6 and rng.random() < 0.15:  # an occluded object: a second disjoint part
        dx, dy = rng.uniform(1.2, 2.0, 2) * radius * rng.choice([-1, 1], 2)
        parts.append(_star_polygon(rng, cx + dx, cy + dy, radius * 0.5))
    return parts


def _segmentation(
    rng: np.random.Generator,
    polygons: list[list[float]],
    shape: tuple[int, int],
    rle_rate: float,
    crowd_rate: float,
) -> dict[str, Any]:
    """The object as polygons, or as compressed or uncompressed RLE, or as a crowd region."""
    height, width = shape
    roll = rng.random()
    if roll >= crowd_rate + rle_rate:
        return {"segmentation": polygons}
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if roll < crowd_rate:
        return {"iscrowd": 1, "segmentation": uncompressed_rle(mask_utils.decode(rle))}
    if rng.random() < 0.5:
        return {"segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")}}
    return {"segmentation": uncompressed_rle(mask_utils.decode(rle))}


def _bbox(parts: list[np.ndarray], width: int, height: int) -> list[float]:
    xs = np.concatenate([p[:, 0] for p in parts])
    ys = np.concatenate([p[:, 1] for p in parts])
    x0, y0 = max(0.0, float(xs.min())), max(0.0, float(ys.min()))
    x1, y1 = min(float(width), float(xs.max())), min(float(height), float(ys.max()))
    return [round(x0, 2), round(y0, 2), round(max(0.0, x1 - x0), 2), round(max(0.0, y1 - y0), 2)]


def uncompressed_rle(binary: np.ndarray) -> dict[str, Any]:
    flat = np.asarray(binary, dtype=np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(binary.shape[0]), int(binary.shape[1])], "counts": counts}


def generate(
    out_dir: str | Path,
    *,
    n_images: int = 60,
    n_batches: int = 15,
    sizes: tuple[tuple[int, int], ...] = ((320, 240), (240, 320), (288, 288)),
    objects_per_image: tuple[int, int] = (0, 14),
    seed: int = 0,
    rle_rate: float = 0.05,
    crowd_rate: float = 0.03,
    jpeg_quality: int = 85,
    empty_rate: float = 0.05,
) -> Path:
    """Write ``images/batch_XX/NNNN.jpg`` and ``annotations.json`` under ``out_dir``.

    ``sizes`` are (width, height) pairs; each batch uses one, like a camera session.
    """
    out = Path(out_dir)
    probs = class_probabilities(len(CATEGORY_IDS))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    next_ann = 1
    per_batch = math.ceil(n_images / n_batches)
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        batch = index // per_batch + 1
        width, height = sizes[(batch - 1) % len(sizes)]
        image_id = 1000 + index * 3  # not contiguous, not starting at 0 or 1
        n_objects = 0 if rng.random() < empty_rate else int(rng.integers(*objects_per_image))
        img, anns = make_image(
            rng, image_id, width, height, n_objects, probs, next_ann, rle_rate, crowd_rate
        )
        next_ann += n_objects
        file_name = f"batch_{batch:02d}/{index + 1:04d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR array
            raise RuntimeError(f"could not encode {file_name}")
        atomic_write_bytes(out / "images" / file_name, buf.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        annotations.extend(anns)
    categories = [
        {"id": cid, "name": name, "supercategory": "trash"}
        for cid, name in zip(CATEGORY_IDS, CATEGORY_NAMES, strict=True)
    ]
    coco = {
        "info": {
            "description": "synthetic trash-like sample made by pipeline.sample",
            "version": "1",
            "seed": seed,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    atomic_write_json(out / "annotations.json", coco, indent=None)
    return out


def _defaults() -> dict[str, Any]:
    """generate()'s keyword defaults: the command line repeats none of them."""
    return {
        name: p.default
        for name, p in inspect.signature(generate).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline sample --out DIR [...]``: write a generated dataset into a new or
    empty folder (never over the committed sample or any other data by accident)."""
    d = _defaults()
    parser = argparse.ArgumentParser(prog="python -m pipeline sample", description=__doc__)
    parser.add_argument("--out", required=True, help="a new or empty folder")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--images", type=int, default=d["n_images"])
    parser.add_argument("--batches", type=int, default=d["n_batches"])
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        default=None,
        help="one fixed size for every image (default: mixed small sizes)",
    )
    parser.add_argument("--max-objects", type=int, default=d["objects_per_image"][1] - 1)
    parser.add_argument("--seed", type=int, default=d["seed"])
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise DatasetError(f"{out} is not empty: choose a new folder, or --force to write into it")
    sizes = ((args.size[0], args.size[1]),) if args.size else d["sizes"]
    path = generate(
        out,
        n_images=args.images,
        n_batches=args.batches,
        sizes=sizes,
        objects_per_image=(0, args.max_objects + 1),
        seed=args.seed,
    )
    print(f"wrote {path}")
