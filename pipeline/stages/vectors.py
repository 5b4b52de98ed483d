"""Stage ``vectors``: the per-image class vectors the folds are stratified on.

Built from the masks' stats table (measured pixels, never json areas) and written to
``data/vectors/vectors.csv``; ``pipeline.stages.split`` reads them. Which measures go in is chosen
in
``params.yaml: vectors``:

- ``presence``: ``<class>__present``, the class has visible pixels in the image;
- ``small_presence``: ``<class>__small_present``, the image holds at least one small object of
  the class (visible area <= ``masks.size_thresholds[0]``), so tiny objects are spread evenly;
- ``pixel_share_bins``: ``<class>__share_ge<edge>``, the class covers at least ``edge`` of the
  image's labelled area. Cumulative (ordinal) indicators rather than one-hot bins, so a fold
  that gets "share >= 0.1" also counts towards "share >= 0.01".

Columns that are zero for every image are kept (they document the class) but carry no weight.

Cost: linear in images x classes (one dense uint8 matrix); no json is read.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pipeline.execution.cli import command, stage_main
from pipeline.files.contracts import (
    VECTOR_ID_COLUMNS,
    VECTORS_PATH,
    ImageStats,
    read_image_stats,
)
from pipeline.files.fsio import atomic_write_text, csv_text
from pipeline.files.params import Params, VectorsParams

__all__ = ["build_vectors", "main", "run", "vector_rows"]


def build_vectors(stats: ImageStats, config: VectorsParams) -> tuple[list[str], np.ndarray]:
    """(column names, uint8 matrix images x columns): per class, the chosen measures in order."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    labelled = np.maximum(stats.labelled, 1)
    for j, cls in enumerate(stats.classes):
        pixels = stats.measures["pixels"][:, j]
        if config.presence:
            names.append(f"{cls}__present")
            parts.append(pixels > 0)
        if config.small_presence:
            names.append(f"{cls}__small_present")
            parts.append(stats.measures["small"][:, j] > 0)
        share = pixels / labelled
        for edge in config.pixel_share_bins:
            names.append(f"{cls}__share_ge{edge:g}")
            parts.append(share >= edge)
    n_images = len(stats.image_ids)
    matrix = np.stack(parts, axis=1) if parts else np.zeros((n_images, 0))
    return names, matrix.astype(np.uint8)


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the stats table under ``root``, write the vectors; returns the summary line."""
    stats = read_image_stats(root)
    names, matrix = build_vectors(stats, params.vectors)
    atomic_write_text(
        root / VECTORS_PATH,
        csv_text([*VECTOR_ID_COLUMNS, *names], [])
        + vector_rows(stats.image_ids, stats.file_names, matrix),
    )
    return f"{matrix.shape[0]} images x {len(names)} columns in {VECTORS_PATH}"


def vector_rows(image_ids: list[int], file_names: list[str], matrix: np.ndarray) -> str:
    """The table's rows as :func:`pipeline.files.fsio.csv_text` writes them: the two id cells
    through the csv writer, the 0/1 cells as digits laid out by numpy (millions of cells)."""
    if matrix.size and int(matrix.max()) > 1:
        raise ValueError("vectors are 0/1 indicators")
    n, width = matrix.shape
    cells = np.full((n, 2 * width), ord(","), dtype=np.uint8)
    cells[:, 1::2] = matrix + ord("0")
    digits = cells.tobytes().decode("ascii")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    ends = []
    for row in zip(image_ids, file_names, strict=True):
        writer.writerow(row)
        ends.append(buf.tell())
    heads, step, start, out = buf.getvalue(), 2 * width, 0, []
    for i, end in enumerate(ends):
        out.append(heads[start : end - 1] + digits[i * step : (i + 1) * step] + "\n")
        start = end
    return "".join(out)


def main(argv: list[str] | None = None) -> None:
    stage_main("vectors", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import vectors

    command(vectors.main)
