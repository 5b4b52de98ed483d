"""Where a COCO category becomes a mask class: the category-id -> class-index table.

Classes are mapped by category **id**, never by name or position: sparse ids, id 0 (TACO,
Roboflow) and duplicate names (Roboflow's supercategory echo) are all handled. Index 0 is
background and 255 is ignore; classes get 1..N in order of their smallest category id, or in
the order the user lists them in ``classes.map``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import DatasetError

BACKGROUND = 0
IGNORE = 255
MAX_CLASSES = 254


@dataclass(frozen=True)
class ClassTable:
    names: list[str]  # index -> name, names[0] is background
    index_of_category: dict[int, int]  # category id -> class index (IGNORE allowed)
    dropped_categories: list[int]

    @property
    def n_classes(self) -> int:
        """Number of foreground classes."""
        return len(self.names) - 1

    def to_json(self, palette: np.ndarray) -> dict[str, Any]:
        return {
            "background": BACKGROUND,
            "ignore": IGNORE,
            "classes": [
                {
                    "index": i,
                    "name": n,
                    "color": [int(c) for c in palette[i]],
                    "category_ids": sorted(
                        cid for cid, k in self.index_of_category.items() if k == i
                    ),
                }
                for i, n in enumerate(self.names)
            ],
            "ignored_category_ids": sorted(
                c for c, k in self.index_of_category.items() if k == IGNORE
            ),
            "dropped_category_ids": sorted(self.dropped_categories),
            # The PNG palette, index -> [r, g, b], for tools that want it without the PNGs.
            "palette": palette.tolist(),
        }


def column_safe(name: str) -> str:
    """Class names become CSV column prefixes ``<class>__<measure>``: no ``__``, no commas."""
    clean = re.sub(r"\s+", " ", str(name)).strip().replace(",", ";")
    return re.sub(r"_{2,}", "_", clean)


def build_class_table(categories: list[dict[str, Any]], config: dict[str, Any]) -> ClassTable:
    """Build the table from the json categories and ``params.yaml: classes``."""
    by_id = {int(c["id"]): str(c["name"]) for c in categories}
    background = column_safe(config.get("background") or "background")
    drop = {_cat_id(v, "classes.drop") for v in config.get("drop") or []}
    ignore = {_cat_id(v, "classes.ignore") for v in config.get("ignore") or []}
    for cid in sorted((drop | ignore) - set(by_id)):
        raise DatasetError(
            f"category id {cid} is not in the annotations' categories",
            file="params.yaml",
            field="classes.drop/ignore",
        )
    both = drop & ignore
    if both:
        raise DatasetError(
            f"category ids {sorted(both)} are both dropped and ignored",
            file="params.yaml",
            field="classes",
        )
    mapping = config.get("map")
    names: list[str] = [background]
    index_of: dict[int, int] = {cid: IGNORE for cid in ignore}
    if mapping:
        if not isinstance(mapping, dict):
            raise DatasetError(
                "must map category id -> class name", file="params.yaml", field="classes.map"
            )
        for raw_id, raw_name in mapping.items():
            cid = _cat_id(raw_id, "classes.map")
            if cid not in by_id:
                raise DatasetError(
                    f"category id {cid} is not in the annotations' categories",
                    file="params.yaml",
                    field="classes.map",
                )
            if cid in drop or cid in ignore:
                raise DatasetError(
                    f"category id {cid} is mapped and also dropped/ignored",
                    file="params.yaml",
                    field="classes.map",
                )
            name = column_safe(raw_name)
            if name == background:
                raise DatasetError(
                    f"class name {name!r} is the background's",
                    file="params.yaml",
                    field="classes.map",
                )
            if name not in names:
                names.append(name)
            index_of[cid] = names.index(name)
        unmapped = sorted(set(by_id) - set(index_of) - drop)
        if unmapped:
            raise DatasetError(
                f"category ids {unmapped} are neither mapped, dropped nor ignored: list them "
                f"under classes.map, classes.drop or classes.ignore",
                file="params.yaml",
                field="classes.map",
            )
    else:
        used: dict[str, int] = {}
        for cid in sorted(by_id):
            if cid in drop or cid in ignore:
                continue
            name = column_safe(by_id[cid])
            if name in used or name == background:
                name = f"{name}_id{cid}"  # same name, different id: keep them apart
            used[name] = cid
            names.append(name)
            index_of[cid] = len(names) - 1
    if len(names) - 1 > MAX_CLASSES:
        raise DatasetError(
            f"{len(names) - 1} classes do not fit uint8 masks (max "
            f"{MAX_CLASSES}); merge or drop some in classes.map",
            file="params.yaml",
            field="classes",
        )
    return ClassTable(names, index_of, sorted(drop))


def _cat_id(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DatasetError(
            f"{value!r} is not a category id", file="params.yaml", field=where
        ) from None
    if str(number) != str(value).strip() and number != value:
        raise DatasetError(f"{value!r} is not a category id", file="params.yaml", field=where)
    return number


def make_palette(n_classes: int) -> np.ndarray:
    """256x3 RGB palette: PASCAL VOC's bit-spread colours, background black, ignore white."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    palette[IGNORE] = (255, 255, 255)
    return palette
