"""params.yaml, merged over documented defaults, so a user's file may name only what changes."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import DatasetError

DEFAULTS: dict[str, Any] = {
    "workers": 0,  # processes for per-image work; a stage section may override it
    "dataset": {
        "annotations": "data/sample/annotations.json",
        "images": "data/sample/images",
        "check_images": True,  # read each image file: exists, decodable, size matches json
        "max_pixels": 200_000_000,  # width*height above this is an error (decompression bombs)
        "missing_images": "drop",  # drop | error | keep  (keep: masks from json sizes alone)
        "max_dropped_fraction": 0.05,  # stop when more images or annotations would be dropped
    },
    "classes": {
        "background": "background",
        "map": None,  # {category_id: class name}; null = every category, sorted by id
        "drop": [],  # category ids whose annotations are not painted (left background)
        "ignore": [],  # category ids painted as ignore (255)
    },
    "masks": {
        "overlap": "area",
        "crowd": "ignore",
        "size_thresholds": [1024, 9216],
    },
    "vectors": {
        "presence": True,
        "small_presence": True,
        "pixel_share_bins": [],
    },
    "split": {
        "n_splits": 5,
        "seed": 42,
        "group_regex": None,
        "group_field": None,
        "test_fraction": 0.0,
    },
    "augment": {
        "on_error": "fail",
        "variants": {},
    },
    "report": {
        "max_classes": 60,
        "dpi": 100,
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key != "variants":
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        return copy.deepcopy(DEFAULTS)
    try:
        user = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"not valid YAML: {exc}", file=str(path)) from None
    if not isinstance(user, dict):
        raise DatasetError("top level must be a mapping", file=str(path))
    return _merge(DEFAULTS, user, "")


def stage_workers(params: dict[str, Any], stage: str) -> int:
    """Worker processes for a stage: ``<stage>.workers`` if set, else top-level ``workers``."""
    section = params.get(stage) or {}
    value = section.get("workers") if isinstance(section, dict) else None
    return resolve_workers(params.get("workers") if value is None else value)


def resolve_workers(value: Any) -> int:
    """0 or null means every core; negative means all but that many."""
    cores = os.cpu_count() or 1
    if value in (None, 0):
        return cores
    n = int(value)
    return max(1, cores + n) if n < 0 else n
