"""Stage ``vectors``: the per-image class vectors the splitter stratifies on.

Built from the masks' stats table (measured pixels, never json areas). Which measures go in is
chosen in ``params.yaml: vectors``:

- ``presence``: ``<class>__present``, the class has visible pixels in the image;
- ``small_presence``: ``<class>__small_present``, the image holds at least one small object of
  the class (visible area <= ``masks.size_thresholds[0]``), so tiny objects are spread evenly;
- ``pixel_share_bins``: ``<class>__share_ge<edge>``, the class covers at least ``edge`` of the
  image's labelled area. Cumulative (ordinal) indicators rather than one-hot bins, so a fold
  that gets "share >= 0.1" also counts towards "share >= 0.01".

Columns that are zero for every image are kept (they document the class) but carry no weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import DatasetError
from pipeline.fsio import atomic_write_csv, read_csv
from pipeline.masks import IMAGE_STATS_PATH
from pipeline.params import load_params

VECTORS_PATH = "data/vectors/vectors.csv"
ID_COLUMNS = ("image_id", "file_name")


def stats_classes(columns: list[str]) -> list[str]:
    """Foreground class names in the stats table, in class-index order."""
    return [c[: -len("__instances")] for c in columns if c.endswith("__instances")]


def build_vectors(
    rows: list[dict[str, str]], config: dict[str, Any]
) -> tuple[list[str], np.ndarray]:
    """(column names, uint8 matrix n_images x n_columns) from stats rows."""
    if not rows:
        raise DatasetError("no image to build vectors for", file=IMAGE_STATS_PATH)
    classes = stats_classes(list(rows[0]))
    bins = config.get("pixel_share_bins") or []
    if not all(isinstance(b, int | float) and 0 < b <= 1 for b in bins) or list(bins) != sorted(
        set(bins)
    ):
        raise DatasetError(
            f"must be increasing shares in (0, 1], got {bins!r}",
            file="params.yaml",
            field="vectors.pixel_share_bins",
        )
    if not (config.get("presence", True) or config.get("small_presence") or bins):
        raise DatasetError(
            "choose at least one of presence, small_presence, pixel_share_bins",
            file="params.yaml",
            field="vectors",
        )

    def column(name: str) -> np.ndarray:
        return np.array([int(r[name]) for r in rows], dtype=np.int64)

    names: list[str] = []
    parts: list[np.ndarray] = []
    ignore = column("ignore__pixels")
    labelled = column("width") * column("height") - ignore
    for cls in classes:
        pixels = column(f"{cls}__pixels")
        if config.get("presence", True):
            names.append(f"{cls}__present")
            parts.append(pixels > 0)
        if config.get("small_presence", True):
            names.append(f"{cls}__small_present")
            parts.append(column(f"{cls}__small") > 0)
        share = pixels / np.maximum(labelled, 1)
        for edge in bins:
            names.append(f"{cls}__share_ge{edge:g}")
            parts.append(share >= edge)
    matrix = np.stack(parts, axis=1).astype(np.uint8) if parts else np.zeros((len(rows), 0))
    return names, matrix


def run(params: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    rows = read_csv(IMAGE_STATS_PATH)
    names, matrix = build_vectors(rows, params.get("vectors") or {})
    atomic_write_csv(
        VECTORS_PATH,
        [*ID_COLUMNS, *names],
        ([r["image_id"], r["file_name"], *m] for r, m in zip(rows, matrix.tolist(), strict=True)),
    )
    return names, matrix


def main(argv: list[str] | None = None) -> None:
    names, matrix = run(load_params())
    print(f"vectors: {matrix.shape[0]} images x {len(names)} columns in {VECTORS_PATH}")
