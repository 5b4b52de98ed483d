"""Where a COCO category becomes a mask class: the category-id -> class-index table.

Classes are mapped by category **id**, never by name or position: sparse ids, id 0 (TACO,
Roboflow) and duplicate names (Roboflow's supercategory echo) are all handled. Index 0 is
background and 255 is ignore; classes get 1..N in order of their smallest category id, or in
the order the user lists them in ``classes.map``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from pipeline.files.contracts import IGNORE, ClassTable
from pipeline.files.params import ClassesParams, fail

__all__ = ["MAX_CLASSES", "build_class_table", "column_safe", "make_palette"]

MAX_CLASSES = 254


def column_safe(name: str) -> str:
    """Class names become CSV column prefixes ``<class>__<measure>``: no ``__``, no commas."""
    clean = re.sub(r"\s+", " ", str(name)).strip().replace(",", ";")
    return re.sub(r"_{2,}", "_", clean)


def build_class_table(categories: list[dict[str, Any]], config: ClassesParams) -> ClassTable:
    """Build the table from the json categories and ``params.yaml: classes``."""
    by_id = {int(c["id"]): str(c["name"]) for c in categories}
    background = column_safe(config.background)
    drop = _known_ids(config.drop, by_id, "classes.drop")
    ignore = _known_ids(config.ignore, by_id, "classes.ignore")
    if drop & ignore:
        raise fail("classes", f"category ids {sorted(drop & ignore)} are both dropped and ignored")
    names: list[str] = [background]
    index_of: dict[int, int] = {cid: IGNORE for cid in ignore}
    if config.map:
        _mapped_classes(config.map, by_id, drop | ignore, names, index_of)
    else:
        _classes_by_id(by_id, drop | ignore, names, index_of)
    if len(names) - 1 > MAX_CLASSES:
        raise fail(
            "classes",
            f"{len(names) - 1} classes do not fit uint8 masks (max {MAX_CLASSES}); merge or "
            "drop some in classes.map",
        )
    return ClassTable(names, index_of, sorted(drop))


def _known_ids(values: tuple[Any, ...], by_id: dict[int, str], where: str) -> set[int]:
    ids = {_cat_id(v, where) for v in values}
    for cid in sorted(ids - set(by_id)):
        raise fail(
            "classes.drop/ignore", f"category id {cid} is not in the annotations' categories"
        )
    return ids


def _mapped_classes(
    mapping: dict[Any, Any],
    by_id: dict[int, str],
    excluded: set[int],
    names: list[str],
    index_of: dict[int, int],
) -> None:
    """Classes in the order ``classes.map`` names them; one name for two ids merges them."""
    for raw_id, raw_name in mapping.items():
        cid = _cat_id(raw_id, "classes.map")
        if cid not in by_id:
            raise fail("classes.map", f"category id {cid} is not in the annotations' categories")
        if cid in excluded:
            raise fail("classes.map", f"category id {cid} is mapped and also dropped/ignored")
        name = column_safe(raw_name)
        if name == names[0]:
            raise fail("classes.map", f"class name {name!r} is the background's")
        if name not in names:
            names.append(name)
        index_of[cid] = names.index(name)
    unmapped = sorted(set(by_id) - set(index_of) - excluded)
    if unmapped:
        raise fail(
            "classes.map",
            f"category ids {unmapped} are neither mapped, dropped nor ignored: list them under "
            "classes.map, classes.drop or classes.ignore",
        )


def _classes_by_id(
    by_id: dict[int, str], excluded: set[int], names: list[str], index_of: dict[int, int]
) -> None:
    """One class per category, by increasing id; a repeated name gets ``_id<id>``."""
    used: set[str] = set()
    for cid in sorted(set(by_id) - excluded):
        name = column_safe(by_id[cid])
        if name in used or name == names[0]:
            name = f"{name}_id{cid}"  # same name, different id: keep them apart
        used.add(name)
        names.append(name)
        index_of[cid] = len(names) - 1


def _cat_id(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise fail(where, f"{value!r} is not a category id") from None
    if str(number) != str(value).strip() and number != value:
        raise fail(where, f"{value!r} is not a category id")
    return number


def make_palette() -> np.ndarray:
    """256x3 RGB palette: PASCAL VOC's bit-spread colours, background black, ignore white."""
    index = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for shift in range(7, -1, -1):
        bits = index >> (3 * (7 - shift))
        for channel in range(3):
            palette[:, channel] |= (((bits >> channel) & 1) << shift).astype(np.uint8)
    palette[IGNORE] = (255, 255, 255)
    return palette
