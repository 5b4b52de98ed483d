"""Pixel identity of our masks against pycocotools on the user's own input json.

The reference never goes through our code: the input file is read with the standard ``json``
module and every annotation is rasterised by pycocotools' ``annToMask``, then painted in the
overlap policy's order. Annotations that validate dropped or changed are listed in its issues
with their ids; dropped ones are left out of the reference by id, and an image that still holds
a changed one is not compared (it is counted). Used by tests/test_masks.py and by
``benchmarks/bench_masks.py --identity-all``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from pipeline.files.classes import build_class_table, make_palette
from pipeline.files.contracts import read_json
from pipeline.files.params import ClassesParams
from pipeline.stages.masks import (
    CROWD_MODES,
    OVERLAP_POLICIES,
    MaskSettings,
    annotation_value,
    render_mask,
)
from pipeline.stages.validate import validate_coco

# Issue kinds that leave the annotation's pixels exactly as the user wrote it (a duplicate id is
# renumbered, its segmentation untouched).
UNTOUCHED_KINDS = {"coordinates_outside_image", "annotation_duplicate_id"}


@dataclass
class Identity:
    """What was compared: masks (image x policy x crowd mode) and their pixels."""

    masks: int = 0
    pixels: int = 0
    equal_pixels: int = 0
    skipped_images: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.equal_pixels / self.pixels if self.pixels else 1.0


def reference_api(path: Path) -> COCO:
    """pycocotools over the input json as the standard library parses it."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = raw
        api.createIndex()
    return api


def touched_ids(issues: list[Any]) -> set[Any]:
    """Ids of annotations validate dropped, renumbered or changed."""
    return {
        i.annotation_id for i in issues if i.annotation_id != "" and i.kind not in UNTOUCHED_KINDS
    }


def reference_paintings(
    api: COCO, image_id: int, touched: set[Any], table: Any
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(overlap, crowd, mask) painted from annToMask of the image's untouched annotations."""
    image = api.imgs[image_id]
    anns = [a for a in api.dataset["annotations"] if a.get("image_id") == image_id]
    anns = [a for a in anns if a.get("id") not in touched]
    binaries = [api.annToMask(a) for a in anns]
    has_crowd = any(a.get("iscrowd") for a in anns)
    for crowd in CROWD_MODES if has_crowd else ("ignore",):
        items = [
            (annotation_value(a, table, crowd), b) for a, b in zip(anns, binaries, strict=True)
        ]
        items = [(v, b) for v, b in items if v is not None]
        for overlap in OVERLAP_POLICIES:
            ordered = sorted(items, key=lambda t: -int(t[1].sum())) if overlap == "area" else items
            out = np.zeros((image["height"], image["width"]), np.uint8)
            for value, binary in ordered:
                if overlap == "max":  # the usual baseline loop
                    out = np.maximum(out, binary * np.uint8(value))
                else:
                    np.copyto(out, np.uint8(value), where=binary.view(bool))
            # Without crowd annotations every crowd mode must give this same mask.
            for mode in (crowd,) if has_crowd else CROWD_MODES:
                yield overlap, mode, out


def check_identity(path: Path, image_ids: list[int] | None = None) -> Identity:
    """Compare our masks of ``path`` (through validate and render) with the reference."""
    result = validate_coco(read_json(path), file=str(path))
    coco = result.coco
    touched = touched_ids(result.issues)
    table = build_class_table(coco["categories"], ClassesParams())
    by_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images = {int(im["id"]): im for im in coco["images"]}
    api = reference_api(path)
    out = Identity()
    for image_id in image_ids if image_ids is not None else list(images):
        ours_anns = by_image[image_id]
        if any(a["id"] in touched or a.get("original_id") in touched for a in ours_anns):
            out.skipped_images.append(image_id)
            continue
        for overlap, crowd, expected in reference_paintings(api, image_id, touched, table):
            settings = MaskSettings(table, make_palette(), overlap, crowd)
            got, _ = render_mask(images[image_id], ours_anns, settings)
            equal = int((got == expected).sum())
            out.masks += 1
            out.pixels += expected.size
            out.equal_pixels += equal
            if equal != expected.size:
                out.failures.append(
                    f"image {image_id} {overlap}/{crowd}: {expected.size - equal} pixels differ"
                )
    return out
