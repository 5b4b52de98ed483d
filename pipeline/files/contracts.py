"""Every file the stages exchange: where it lives, what is in it, how to read it back.

Stages meet only through these files, so their paths, columns and readers live here once.
Paths are relative to the repository root (stages join them under their ``root``). Readers
check what they read and raise :class:`~pipeline.files.errors.DatasetError` naming the file, and a
missing file names the stage that makes it. This module is light on purpose (standard library,
numpy, Pillow): the trainer API reads folds, masks and the class table through it without
OpenCV, pycocotools or scikit-learn.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from pipeline.files.errors import DatasetError
from pipeline.files.fsio import check_relative

__all__ = [
    "AUGMENTED_COLUMNS",
    "BACKGROUND",
    "CLASS_MEASURES",
    "CLASS_STATS_COLUMNS",
    "ClassTable",
    "Classes",
    "EXPORTS_CLASSES_NAME",
    "EXPORTS_META_NAME",
    "FIGURES_DIR",
    "FOLD_COLUMNS",
    "RANDOM_FOLDS_PATH",
    "FoldRow",
    "FoldTable",
    "IGNORE",
    "IMAGE_STATS_COLUMNS",
    "INSTANCE_COLUMNS",
    "ISSUE_COLUMNS",
    "ImageStats",
    "Instances",
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "MMSEG_AUGMENTED",
    "ManifestRow",
    "PAIR_COLUMNS",
    "PIXEL_SHARE_COLUMNS",
    "PLOTS_DIR",
    "REPORT_README_PATH",
    "GALLERY_DIR",
    "PINNED_PATH",
    "VARIANT_NAME",
    "SIZE_BUCKETS",
    "SKIPPED_COLUMNS",
    "SKIPPED_NAME",
    "TEST_FOLD",
    "VALIDATION_KINDS",
    "VECTOR_ID_COLUMNS",
    "Vectors",
    "augmented_path",
    "augmented_stem",
    "csv_rows",
    "fold_label",
    "folds_from_bytes",
    "image_path",
    "int_cell",
    "iter_validation_issues",
    "mask_path",
    "mask_relpath",
    "mmseg_stem",
    "not_found",
    "parse_folds",
    "plain_folds",
    "parse_json",
    "read_bytes",
    "read_classes",
    "read_exports_meta",
    "read_folds",
    "read_image_stats",
    "read_instances",
    "read_json",
    "read_json_object",
    "read_manifest",
    "read_variants_index",
    "output_paths",
    "read_mask",
    "read_rows",
    "read_vectors",
    "strip_suffix",
    "variant_output_names",
]

# ---------------------------------------------------------------- where each artefact lives

# Which stage writes each path, for the "run it first" hint of a missing input.
_MAKER: dict[str, str] = {}


def _made_by(stage: str, *paths: str) -> tuple[str, ...]:
    """Record which stage writes ``paths`` and give them back, in order."""
    _MAKER.update(dict.fromkeys(paths, stage))
    return paths


CANONICAL_PATH, VALIDATION_REPORT_PATH, VALIDATION_ISSUES_PATH = _made_by(
    "validate",
    "data/interim/annotations.json",
    "reports/validation.json",
    "reports/validation_issues.csv",
)
MASKS_DIR, MASK_DIGESTS_PATH, CLASSES_PATH, IMAGE_STATS_PATH, CLASS_STATS_PATH, INSTANCES_PATH = (
    _made_by(
        "masks",
        "data/masks",
        # ``sha256sum -c`` in data/masks checks them; later stages depend on this file, not on
        # the folder: DVC hashes a folder dependency one file at a time, at every check
        "data/masks.sha256",
        "data/classes.json",
        "data/stats/image_stats.csv",
        "data/stats/class_stats.csv",
        "data/stats/instances.csv",
    )
)
(VECTORS_PATH,) = _made_by("vectors", "data/vectors/vectors.csv")
FOLDS_PATH, RANDOM_FOLDS_PATH, SPLIT_QUALITY_PATH, SPLIT_PIXEL_SHARE_PATH, SPLIT_WARNINGS_PATH = (
    _made_by(
        "split",
        "data/splits/folds.csv",
        "data/splits/random_group_folds.csv",  # the report's baseline: a random group split
        "reports/split_quality.json",
        "reports/split_pixel_share.csv",
        "reports/split_warnings.json",
    )
)
AUGMENTED_DIR, VARIANTS_INDEX_PATH = _made_by(
    "augment", "data/augmented", "data/augmented/variants.json"
)
MANIFEST_NAME = "manifest.csv"  # in each variant folder
SKIPPED_NAME = "skipped.csv"  # in each variant folder
(EXPORTS_DIR,) = _made_by("export", "data/exports")
EXPORTS_META_NAME = "exports.json"  # in EXPORTS_DIR
EXPORTS_CLASSES_NAME = "classes.json"  # in EXPORTS_DIR: a byte copy of CLASSES_PATH
PIXEL_SHARE_COLUMNS = ("fold", "class", "pixel_share", "overall_share")  # SPLIT_PIXEL_SHARE_PATH
FIGURES_DIR = "reports/figures"
GALLERY_DIR = "reports/gallery"
PINNED_PATH = "splits/pinned.csv"  # split.stable_from's default: the committed, pinned split
# An augmented variant's name: a folder name and a DVC stage key (``augment@<name>``), so no
# separators and no dots (temp folders are ``.<name>.tmp-*``: one variant's name never matches
# another's temp folders).
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
PLOTS_DIR = "reports/plots"
REPORT_README_PATH = "reports/README.md"

BACKGROUND = 0  # mask value of background
IGNORE = 255  # mask value of pixels no loss should see
TEST_FOLD = "test"  # fold label of the held-out part


# ---------------------------------------------------------------- reading files


def not_found(path: str | os.PathLike, what: str = "") -> DatasetError:
    """The error for a missing input: which stage makes it, or that `dvc repro` does."""
    text = PurePosixPath(path).as_posix()
    maker = next(
        (stage for known, stage in _MAKER.items() if text.endswith(known) or f"{known}/" in text),
        None,
    )
    hint = f"run `dvc repro {maker}`" if maker else "run `dvc repro`"
    return DatasetError(f"{what or 'not found'}; {hint}", file=str(path))


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise not_found(path) from None
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror}", file=str(path)) from None


def parse_json(text: bytes, file: str) -> Any:
    """Parse json text with a message naming the file, line and column on failure.

    ``NaN`` and ``Infinity`` are accepted (as Python's json does) so validate can name the item
    that holds them.
    """
    try:
        return json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"malformed json at line {exc.lineno} column {exc.colno}: {exc.msg}", file=file
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text: {exc.reason}", file=file) from None
    except RecursionError:
        raise DatasetError("json nested too deeply", file=file) from None


def _constant(name: str) -> float:
    return float(name.lower().replace("infinity", "inf"))


def read_json(path: str | os.PathLike) -> Any:
    return parse_json(read_bytes(path), str(path))


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetError("top level must be a json object", file=str(path))
    return data


def read_rows(path: str | os.PathLike, columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """CSV rows as dicts; ``columns`` must all be present."""
    return csv_rows(read_bytes(path), str(path), columns)


def csv_rows(data: bytes, file: str, columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """A CSV that people may edit (``splits/pinned.csv``): a UTF-8 byte-order mark, as Excel
    writes, is not part of the first column's name."""
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"not a readable CSV table: {exc}", file=file) from None
    missing = [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise DatasetError(f"missing columns {missing}", file=file)
    return rows


def int_cell(value: str, file: str, item: str, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(
            f"not an integer: {value!r}", file=file, item=item, field=field
        ) from None


# ---------------------------------------------------------------- validation

ISSUE_COLUMNS = ("kind", "action", "image_id", "annotation_id", "category_id", "field", "message")
# Problem kinds, each with what happens to the item. The report counts every kind, even at 0,
# so a metrics diff shows when a new kind of problem appears.
VALIDATION_KINDS: dict[str, str] = {
    "annotation_missing_field": "dropped",
    "annotation_unknown_image": "dropped",
    "annotation_unknown_category": "dropped",
    "annotation_bad_iscrowd": "kept",
    "annotation_duplicate_id": "renumbered",
    "polygon_odd_coordinates": "dropped",
    "polygon_too_few_points": "dropped",
    "polygon_not_finite": "dropped",
    "polygon_not_numeric": "dropped",
    "polygon_far_outside": "dropped",
    "coordinates_outside_image": "kept",
    "segmentation_bad_type": "dropped",
    "segmentation_empty": "dropped",
    "segmentation_zero_area": "dropped",
    "rle_bad_counts": "dropped",
    "rle_size_mismatch": "dropped",
    "value_not_finite": "repaired",
    "string_not_unicode": "repaired",
    "file_name_normalised": "repaired",
    "image_missing": "dropped",
    "image_unreadable": "dropped",
    "image_size_mismatch": "dropped",
    "image_exif_orientation": "kept",
    "image_exif_orientation_ambiguous": "kept",
    "image_without_annotations": "kept",
    "category_without_annotations": "kept",
}


def iter_validation_issues(
    path: str | os.PathLike = VALIDATION_ISSUES_PATH,
) -> Iterator[dict[str, str]]:
    """``validation_issues.csv`` one row at a time: at scale it can list millions of problems,
    and a reader that wants a few of them should not hold them all."""
    file = str(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ISSUE_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise DatasetError(f"missing columns {missing}", file=file)
            yield from reader
    except (FileNotFoundError, NotADirectoryError):
        raise not_found(path) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"not a readable CSV table: {exc}", file=file) from None


# ---------------------------------------------------------------- masks


def strip_suffix(file_name: str) -> str:
    """``file_name`` without the suffix of its last component, as pathlib's
    ``with_suffix("")`` (a leading or trailing dot is no suffix), with string operations."""
    head, slash, tail = file_name.rpartition("/")
    dot = tail.rfind(".")
    return head + slash + (tail[:dot] if 0 < dot < len(tail) - 1 else tail)


def mask_relpath(file_name: str) -> str:
    """Mask path for an image, relative to the masks folder: same subfolders, ``.png``."""
    return strip_suffix(file_name) + ".png"


def mask_path(file_name: str) -> str:
    """Mask path relative to the repository root."""
    return str(PurePosixPath(MASKS_DIR) / mask_relpath(file_name))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Class index per pixel (0 background, 255 ignore) of a mask PNG, as a 2-D uint8 array.

    Masks are indexed PNGs (mode P) whose pixel values are the class indices; Pillow returns
    those indices, where OpenCV's ``imread`` would expand the palette into colours. Pillow is
    imported here, not with the module: the contracts' paths and constants cost no image
    library (the transforms import IGNORE).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"expected an 8-bit indexed or gray PNG mask, got mode {im.mode}")
            mask = np.asarray(im)
    except FileNotFoundError:
        raise not_found(path, "mask not found") from None
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise DatasetError(f"not a readable mask: {exc}", file=str(path)) from None
    return np.ascontiguousarray(mask, dtype=np.uint8)


# ---------------------------------------------------------------- the class table


@dataclass(frozen=True)
class ClassTable:
    """Category id -> class index: index 0 background, 1..N classes, IGNORE for ignored ids."""

    names: list[str]  # index -> name, names[0] is background
    index_of_category: dict[int, int]  # category id -> class index (IGNORE allowed)
    dropped_categories: list[int]

    @property
    def n_classes(self) -> int:
        """Number of foreground classes."""
        return len(self.names) - 1

    def category_ids(self, index: int) -> list[int]:
        return sorted(cid for cid, k in self.index_of_category.items() if k == index)

    def to_json(self, palette: np.ndarray) -> dict[str, Any]:
        """The ``classes.json`` document (also copied into the exports for trainers)."""
        return {
            "background": BACKGROUND,
            "ignore": IGNORE,
            "classes": [
                {
                    "index": i,
                    "name": n,
                    "color": [int(c) for c in palette[i]],
                    "category_ids": self.category_ids(i),
                }
                for i, n in enumerate(self.names)
            ],
            "ignored_category_ids": self.category_ids(IGNORE),
            "dropped_category_ids": sorted(self.dropped_categories),
            # The PNG palette, index -> [r, g, b], for tools that want it without the PNGs.
            "palette": palette.tolist(),
        }


@dataclass(frozen=True)
class Classes:
    """``classes.json`` read back: what a trainer needs to build a model and a loss."""

    names: list[str]  # index -> name, names[0] is background
    colors: list[tuple[int, int, int]]  # index -> RGB
    category_ids: list[list[int]]  # index -> COCO category ids painted with it
    palette: np.ndarray  # 256 x 3 uint8
    ignore_index: int = IGNORE

    @property
    def num_classes(self) -> int:
        """Outputs a segmentation model needs: background plus every class."""
        return len(self.names)


def read_classes(path: str | os.PathLike = CLASSES_PATH) -> Classes:
    doc = read_json_object(path)
    try:
        entries = sorted(doc["classes"], key=lambda c: int(c["index"]))
        palette = np.array(doc["palette"], dtype=np.uint8)
        names = [str(c["name"]) for c in entries]
        colors = [tuple(int(v) for v in c["color"]) for c in entries]
        cats = [[int(v) for v in c["category_ids"]] for c in entries]
        ignore = int(doc.get("ignore", IGNORE))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"not a class table written by the masks stage ({exc!r})", file=str(path)
        ) from None
    if palette.shape != (256, 3) or [int(c["index"]) for c in entries] != list(range(len(names))):
        raise DatasetError("class indices or palette are malformed", file=str(path))
    return Classes(names, colors, cats, palette, ignore)  # type: ignore[arg-type]


# ---------------------------------------------------------------- per-image stats
#
# Long layout, so it stays sane with many classes (LVIS has 1,203): one row per image in
# image_stats.csv, and one row per (image, class) that has pixels or instances in
# class_stats.csv. ImageStats gives them back as matrices (images x classes) on demand.

IMAGE_STATS_COLUMNS = (
    "image_id",
    "file_name",
    "width",
    "height",
    "background_pixels",
    "ignore_pixels",
)
SIZE_BUCKETS = ("small", "medium", "large")
CLASS_MEASURES = ("pixels", "instances", *SIZE_BUCKETS, "hidden")
CLASS_STATS_COLUMNS = ("image_id", "class_index", "class", *CLASS_MEASURES)


class _Dense(dict):
    """measure -> (images x classes) int64 matrix, built from the long rows when first asked."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: dict, shape: tuple) -> None:
        super().__init__()
        self._parts = (rows, cols, values, shape)

    def __missing__(self, measure: str) -> np.ndarray:
        rows, cols, values, shape = self._parts
        if measure not in values:
            raise KeyError(measure)
        matrix = np.zeros(shape, dtype=np.int64)
        matrix[rows, cols] = values[measure]
        self[measure] = matrix
        return matrix


@dataclass(frozen=True)
class ImageStats:
    """The per-image stats as matrices (images x classes), classes in index order (1..N)."""

    image_ids: list[int]
    file_names: list[str]
    classes: list[str]
    width: np.ndarray
    height: np.ndarray
    background: np.ndarray
    ignore: np.ndarray
    measures: dict[str, np.ndarray]  # measure -> (images x classes), built on first use

    @property
    def labelled(self) -> np.ndarray:
        """Pixels that count for shares: the image minus ignore."""
        return self.width * self.height - self.ignore

    def measure(self, name: str) -> np.ndarray:
        return self.measures[name]


def _int_columns(rows: list[list[str]], file: str, header: Sequence[str]) -> np.ndarray:
    """The integer cells of CSV rows as an int64 matrix, or one clear error."""
    try:
        return np.array(rows, dtype=np.int64).reshape(len(rows), len(header))
    except ValueError:
        for line, row in enumerate(rows, start=2):
            for name, cell in zip(header, row, strict=True):
                int_cell(cell, file, f"line {line}", name)
        raise DatasetError("malformed rows", file=file) from None


def _csv_lines(path: str | os.PathLike, header: Sequence[str]) -> list[list[str]]:
    """Rows of a CSV written by a stage, checked against its header."""
    data = read_bytes(path).decode("utf-8")
    reader = csv.reader(io.StringIO(data, newline=""))
    found = next(reader, [])
    if tuple(found) != tuple(header):
        raise DatasetError(
            f"header must be {','.join(header)}, got {','.join(found)}", file=str(path)
        )
    return list(reader)


_COMMA, _NEWLINE, _MINUS, _ZERO = 44, 10, 45, 48


def _plain_table(
    data: bytes,
    header: Sequence[str],
    wanted: Sequence[int],
    texts: Sequence[int] = (),
) -> tuple[np.ndarray, list[list[str]]] | None:
    """Integer columns ``wanted`` (rows x len(wanted), int64) and text columns ``texts`` of a
    table as the stages write it, read with numpy from its bytes; None when a cell is quoted
    or a wanted cell is not a plain integer: the csv reader then reads the table and names
    what is wrong. Other columns are not looked at, as the csv path does not."""
    first = (",".join(header) + "\n").encode("utf-8")
    if not data.startswith(first) or len(data) == len(first) or not data.endswith(b"\n"):
        return None
    if b'"' in data or b"\r" in data or not _is_utf8(data):
        return None
    body = np.frombuffer(data, dtype=np.uint8)[len(first) :]
    bounds = _cell_bounds(body, len(header))
    if bounds is None:
        return None
    starts, ends = bounds
    columns = [_int_cells(body, starts[:, c], ends[:, c]) for c in wanted]
    if any(column is None for column in columns):
        return None
    rest = data[len(first) :]
    numbers = np.stack(columns, axis=1) if columns else np.zeros((starts.shape[0], 0), np.int64)
    return numbers, [_text_cells(rest, starts[:, c], ends[:, c]) for c in texts]  # type: ignore[arg-type]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _cell_bounds(body: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, end) byte offsets of every cell, rows x ``n_cols``; None unless every row has
    ``n_cols`` cells (a row ends at its newline)."""
    ends = np.flatnonzero((body == _COMMA) | (body == _NEWLINE))
    if ends.shape[0] % n_cols:
        return None
    ends = ends.reshape(-1, n_cols)
    if (body[ends[:, -1]] != _NEWLINE).any() or (body[ends[:, :-1]] != _COMMA).any():
        return None
    starts = np.empty_like(ends)
    starts[:, 1:] = ends[:, :-1] + 1
    starts[0, 0] = 0
    starts[1:, 0] = ends[:-1, -1] + 1
    return starts, ends


def _int_cells(body: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The cells [starts, ends) as int64 when each is an optional '-' then 1 to 18 ASCII
    digits (what ``int`` reads alike); None otherwise."""
    if starts.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    negative = body[starts] == _MINUS  # a cell's start is always inside the body
    first = starts + negative
    n_digits = ends - first
    if n_digits.min() < 1 or n_digits.max() > 18:
        return None
    width = int(n_digits.max())
    at = ends[:, None] - width + np.arange(width)  # every cell right-aligned in one window
    inside = at >= first[:, None]
    digits = body[np.maximum(at, 0)] - np.uint8(_ZERO)  # a non-digit wraps to above 9
    if (inside & (digits > 9)).any():
        return None
    values = np.where(inside, digits, 0).astype(np.int64) @ (
        10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    )  # integer products: exact, no BLAS
    return np.where(negative, -values, values)


def _text_cells(body: bytes, starts: np.ndarray, ends: np.ndarray) -> list[str]:
    return [body[a:b].decode("utf-8") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def read_image_stats(
    root: str | os.PathLike = ".", classes: Sequence[str] | None = None
) -> ImageStats:
    """The masks stage's stats under ``root`` as :class:`ImageStats`: ``IMAGE_STATS_PATH``,
    ``CLASS_STATS_PATH`` and, unless ``classes`` (index order, background first) are given,
    the class table ``CLASSES_PATH`` written with them."""
    image_file = Path(root) / IMAGE_STATS_PATH
    plain = _plain_table(read_bytes(image_file), IMAGE_STATS_COLUMNS, (0, 2, 3, 4, 5), (1,))
    if plain is not None:
        numbers, (file_names,) = plain
    else:
        rows = _csv_lines(image_file, IMAGE_STATS_COLUMNS)
        if not rows:
            raise DatasetError("no image in the stats table", file=str(image_file))
        columns = (IMAGE_STATS_COLUMNS[0], *IMAGE_STATS_COLUMNS[2:])
        numbers = _int_columns([[r[0], *r[2:]] for r in rows], str(image_file), columns)
        file_names = [r[1] for r in rows]
    if classes is None:
        classes = read_classes(Path(root) / CLASSES_PATH).names
    class_file = Path(root) / CLASS_STATS_PATH
    measures = _class_measures(class_file, numbers[:, 0], len(classes) - 1)
    return ImageStats(
        image_ids=numbers[:, 0].tolist(),
        file_names=file_names,
        classes=list(classes[1:]),
        width=numbers[:, 1],
        height=numbers[:, 2],
        background=numbers[:, 3],
        ignore=numbers[:, 4],
        measures=measures,
    )


def _class_measures(file: Path, image_ids: np.ndarray, n_classes: int) -> _Dense:
    measures = range(3, len(CLASS_STATS_COLUMNS))
    plain = _plain_table(read_bytes(file), CLASS_STATS_COLUMNS, (0, 1, *measures))
    if plain is not None:
        numbers = plain[0]
    else:
        rows = _csv_lines(file, CLASS_STATS_COLUMNS)
        numbers = _int_columns(
            [[r[0], r[1], *r[3:]] for r in rows],
            str(file),
            ("image_id", "class_index", *CLASS_MEASURES),
        )
    order = np.argsort(image_ids, kind="stable")
    position = np.searchsorted(image_ids[order], numbers[:, 0])
    position = np.clip(position, 0, max(len(order) - 1, 0))
    if numbers.size and (
        (image_ids[order][position] != numbers[:, 0]).any()
        or (numbers[:, 1] < 1).any()
        or (numbers[:, 1] > n_classes).any()
    ):
        raise DatasetError("rows name images or classes the stats table lacks", file=str(file))
    values = {m: numbers[:, 2 + i] for i, m in enumerate(CLASS_MEASURES)}
    return _Dense(order[position], numbers[:, 1] - 1, values, (len(image_ids), n_classes))


INSTANCE_COLUMNS = (
    "image_id",
    "annotation_id",
    "category_id",
    "class_index",
    "class",
    "iscrowd",
    "mask_pixels",
    "visible_pixels",
    "json_area",
)


@dataclass(frozen=True)
class Instances:
    """``instances.csv`` as columns: one entry per annotation the masks stage saw.

    ``image_id`` and ``annotation_id`` are read too (the report's gallery finds the smallest
    objects by them); tables built in memory may leave them out.
    """

    class_index: np.ndarray
    iscrowd: np.ndarray
    visible_pixels: np.ndarray
    image_id: np.ndarray | None = None
    annotation_id: np.ndarray | None = None


def read_instances(path: str | os.PathLike = INSTANCES_PATH) -> Instances:
    # class_index, iscrowd, visible_pixels, image_id, annotation_id
    plain = _plain_table(read_bytes(path), INSTANCE_COLUMNS, (3, 5, 7, 0, 1))
    if plain is not None:
        numbers = plain[0]
    else:
        rows = _csv_lines(path, INSTANCE_COLUMNS)
        wanted = [[r[3], r[5], r[7], r[0], r[1]] for r in rows]
        names = ("class_index", "iscrowd", "visible_pixels", "image_id", "annotation_id")
        numbers = _int_columns(wanted, str(path), names)
    return Instances(*(numbers[:, i] for i in range(5)))


# ---------------------------------------------------------------- class vectors

VECTOR_ID_COLUMNS = ("image_id", "file_name")


@dataclass(frozen=True)
class Vectors:
    image_ids: list[int]
    file_names: list[str]
    columns: list[str]
    matrix: np.ndarray  # uint8, images x columns


def read_vectors(path: str | os.PathLike = VECTORS_PATH) -> Vectors:
    raw = read_bytes(path)
    fast = _plain_vectors(raw)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
    header = next(reader, [])
    if tuple(header[:2]) != VECTOR_ID_COLUMNS:
        raise DatasetError(f"missing columns {list(VECTOR_ID_COLUMNS)}", file=str(path))
    rows = list(reader)
    if not rows:
        raise DatasetError("no image to split", file=str(path))
    numbers = _int_columns([[r[0], *r[2:]] for r in rows], str(path), ["image_id", *header[2:]])
    ids = numbers[:, 0].tolist()
    return Vectors(ids, [r[1] for r in rows], header[2:], numbers[:, 1:].astype(np.uint8))


def _plain_vectors(raw: bytes) -> Vectors | None:
    """The vectors table as the vectors stage writes it (plain ids and names, one-digit cells)
    read with numpy from its bytes; None for anything else (the csv reader then reads it,
    errors included)."""
    if b'"' in raw or b"\r" in raw or not raw.endswith(b"\n") or not _is_utf8(raw):
        return None
    cut = raw.index(b"\n") + 1
    header = raw[: cut - 1].decode("utf-8").split(",")
    width = len(header) - 2
    if tuple(header[:2]) != VECTOR_ID_COLUMNS or width == 0:
        return None
    body = np.frombuffer(raw, dtype=np.uint8)[cut:]
    ends = np.flatnonzero(body == _NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    grid_at = ends - 2 * width  # each row ends in width ",<digit>" pairs
    if ends.shape[0] == 0 or (grid_at < starts + 2).any():
        return None
    heads = _spans(starts, grid_at)  # the bytes of every row's "id,name"
    kept = np.ones(body.shape[0], dtype=bool)
    kept[heads] = False
    kept[ends] = False
    grid = body[kept].reshape(ends.shape[0], width, 2)
    if not ((grid[:, :, 0] == _COMMA).all() and (grid[:, :, 1] - np.uint8(_ZERO) <= 9).all()):
        return None
    commas = heads[body[heads] == _COMMA]  # one per row, between id and name
    if commas.shape[0] != ends.shape[0] or (commas < starts).any() or (commas >= grid_at).any():
        return None
    ids = _int_cells(body, starts, commas)
    if ids is None:
        return None
    names = _text_cells(raw[cut:], commas + 1, grid_at)
    matrix = np.ascontiguousarray(grid[:, :, 1] - np.uint8(_ZERO))
    return Vectors(ids.tolist(), names, header[2:], matrix)


def _spans(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Every position of the spans [starts, ends), in order."""
    lengths = ends - starts
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets


# ---------------------------------------------------------------- folds

FOLD_COLUMNS = ("image_id", "file_name", "group", "fold")


class FoldRow(NamedTuple):
    image_id: int
    file_name: str
    group: str
    fold: str  # "0".."k-1" or "test"


@dataclass(frozen=True)
class FoldTable:
    """``folds.csv`` parsed and checked: one row per image, in file order."""

    rows: tuple[FoldRow, ...]
    n_folds: int

    def ids(self, label: str) -> list[int]:
        return [r.image_id for r in self.rows if r.fold == label]

    def train_ids(self, k: int) -> list[int]:
        """Fold k's training images: every other fold, never the held-out test part."""
        return [r.image_id for r in self.rows if r.fold not in (str(k), TEST_FOLD)]


def parse_folds(rows: Sequence[Mapping[str, str]], file: str = FOLDS_PATH) -> FoldTable:
    """Check the folds table; fold labels must be 0..k-1 (and ``test``)."""
    if not rows:
        raise DatasetError("no image in the folds table", file=file)
    missing = [c for c in FOLD_COLUMNS if c not in rows[0]]
    if missing:
        raise DatasetError(f"missing columns {missing}", file=file)
    parsed = [_fold_row(row, line, file) for line, row in enumerate(rows, start=2)]
    return _fold_table(parsed, file)


def _fold_table(parsed: list[FoldRow], file: str) -> FoldTable:
    ids = [r.image_id for r in parsed]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError("image listed twice", file=file, item=f"image {twice}", field="image_id")
    labels = {r.fold for r in parsed} - {TEST_FOLD}
    n_folds = len(labels)
    if labels != {str(k) for k in range(n_folds)}:
        raise DatasetError(
            f"fold labels must be 0..k-1, got {sorted(labels, key=int)}", file=file, field="fold"
        )
    if n_folds < 2:
        raise DatasetError(f"need at least 2 folds, got {n_folds}", file=file, field="fold")
    return FoldTable(tuple(parsed), n_folds)


def _fold_row(row: Mapping[str, str], line: int, file: str) -> FoldRow:
    image_id = int_cell(row["image_id"], file, f"line {line}", "image_id")
    label = row["fold"].strip()
    if not _is_fold_label(label):
        raise DatasetError(
            f"fold must be an integer or {TEST_FOLD!r}, got {label!r}",
            file=file,
            item=f"image {image_id}",
            field="fold",
        )
    name = check_relative(row["file_name"], file=file, item=f"image {image_id}")
    return FoldRow(image_id, name, row["group"], label)


def _is_fold_label(label: str) -> bool:
    """``test`` or a fold number as ``str(int)`` writes it (isdecimal: int() reads it)."""
    return label == TEST_FOLD or (label.isdecimal() and str(int(label)) == label)


def plain_folds(data: bytes, file: str) -> FoldTable | None:
    """The folds table as the split stage writes it, read from its bytes; None for anything
    else (the csv path then reads it, and names the first bad row as it always did)."""
    plain = _plain_table(data, FOLD_COLUMNS, (0,), (1, 2, 3))
    if plain is None:
        return None
    numbers, (names, groups, labels) = plain
    if not all(_is_fold_label(label) for label in set(labels)):
        return None
    ids = numbers[:, 0].tolist()
    names = [
        check_relative(name, file=file, item=f"image {i}")
        for i, name in zip(ids, names, strict=True)
    ]
    return _fold_table(list(map(FoldRow, ids, names, groups, labels)), file)


def read_folds(path: str | os.PathLike = FOLDS_PATH) -> FoldTable:
    return folds_from_bytes(read_bytes(path), str(path))


def folds_from_bytes(data: bytes, file: str = FOLDS_PATH) -> FoldTable:
    fast = plain_folds(data, file)
    return fast if fast is not None else parse_folds(csv_rows(data, file), file)


def fold_label(fold: int) -> str:
    """The label of a fold index; negative means the held-out test part."""
    return TEST_FOLD if fold < 0 else str(int(fold))


# ---------------------------------------------------------------- augmented variants

MANIFEST_COLUMNS = ("source_image_id", "image", "mask", "variant", "seed", "copy")
SKIPPED_COLUMNS = ("file", "image_id", "reason")


class ManifestRow(NamedTuple):
    """One augmented pair; ``image``/``mask`` are relative to the variant folder."""

    source_image_id: int
    image: str
    mask: str
    variant: str
    seed: int
    copy: int


def variant_output_names(file_name: str, copy: int, fmt: str = "png") -> tuple[str, str]:
    """(image, mask) paths of one augmented copy, relative to the variant folder."""
    name = f"{strip_suffix(file_name)}__c{copy}"
    return f"images/{name}.{fmt}", f"masks/{name}.png"


def read_variants_index(path: str | os.PathLike = VARIANTS_INDEX_PATH) -> list[str]:
    """The configured variants as augment-index wrote them (checked there against params):
    what export and the report read, never params.yaml again."""
    data = read_json_object(path)
    names = data.get("variants")
    if not isinstance(names, list) or not all(
        isinstance(n, str) and VARIANT_NAME.fullmatch(n) for n in names
    ):
        raise DatasetError(
            "not the variant list augment-index writes; run `dvc repro augment-index`",
            file=str(path),
        )
    return names


def read_manifest(path: str | os.PathLike, variant: str) -> list[ManifestRow]:
    """A variant's manifest, checked: integer ids and paths inside the variant folder.

    The join key for trainers and export: a row belongs to exactly one source image, so keeping
    the rows whose ``source_image_id`` is in a fold's train ids cannot leak a validation image.
    """
    file = str(path)
    rows = read_rows(path, ("source_image_id", "image", "mask"))
    out = []
    for line, row in enumerate(rows, start=2):
        item = f"line {line}"
        out.append(
            ManifestRow(
                int_cell(row["source_image_id"], file, item, "source_image_id"),
                check_relative(row["image"], file=file, item=item, field="image"),
                check_relative(row["mask"], file=file, item=item, field="mask"),
                row.get("variant") or variant,
                int_cell(row.get("seed", "0") or "0", file, item, "seed"),
                int_cell(row.get("copy", "0") or "0", file, item, "copy"),
            )
        )
    return out


# ---------------------------------------------------------------- exports

PAIR_COLUMNS = ("image_id", "file_name", "image", "mask")
AUGMENTED_COLUMNS = ("source_image_id", "variant", "seed", "copy", "image", "mask")
# Augmented images sit under this prefix in the mmseg layout; no dataset folder may use it.
MMSEG_AUGMENTED = "_augmented"


def image_path(images_root: str, file_name: str) -> str:
    """Where trainers find the image, as a POSIX path (relative to the repo root unless the
    configured image folder is absolute)."""
    root = str(images_root).replace("\\", "/").rstrip("/") or "."
    return str(PurePosixPath(root) / file_name)


def augmented_path(variant: str, relative: str) -> str:
    """Path of an augmented file relative to the repo root, from its manifest entry."""
    return str(PurePosixPath(AUGMENTED_DIR) / variant / relative)


def mmseg_stem(file_name: str) -> str:
    """Name of an image in an mmseg split list: the path below ``img_dir`` minus the suffix."""
    return strip_suffix(file_name)


def augmented_stem(variant: str, image: str) -> str:
    """Name of an augmented image in an mmseg split list."""
    return f"{MMSEG_AUGMENTED}/{variant}/{mmseg_stem(image)}"


def read_exports_meta(exports: str | os.PathLike) -> dict[str, Any]:
    """``exports.json``: fold sizes, variants, image/mask roots, mmseg suffixes."""
    return read_json_object(Path(exports) / EXPORTS_META_NAME)


def output_paths() -> list[str]:
    """Every path a stage writes (files and folders), relative to the repository root."""
    return [*_MAKER, FIGURES_DIR, PLOTS_DIR, GALLERY_DIR, REPORT_README_PATH]


# ---------------------------------------------------------------- exports: class distribution

EXPORTS_DISTRIBUTION_NAME = "class_distribution.csv"  # in EXPORTS_DIR
# One row per (fold, part, class): ``fold`` 0..k-1 with ``part`` train or val, or ``test`` with
# ``part`` test. ``pixels``: the class's pixels in that part's masks (background is class 0,
# ignore 255 is not a class); ``images``: images holding at least one such pixel;
# ``image_pixels``: labelled pixels (not ignore) of those images, for median-frequency weights.
DISTRIBUTION_COLUMNS = ("fold", "part", "class_index", "class", "pixels", "images", "image_pixels")
COCO_CLASSES = ("mapped", "original")  # export.coco_classes: the COCO json's categories


class DistributionRow(NamedTuple):
    fold: str
    part: str
    class_index: int
    name: str
    pixels: int
    images: int
    image_pixels: int


def read_class_distribution(path: str | os.PathLike) -> list[DistributionRow]:
    """``class_distribution.csv`` of the exports, checked: integer counts, known parts."""
    file = str(path)
    out = []
    for line, row in enumerate(read_rows(path, DISTRIBUTION_COLUMNS), start=2):
        item = f"line {line}"
        if row["part"] not in ("train", "val", TEST_FOLD):
            raise DatasetError(f"unknown part {row['part']!r}", file=file, item=item, field="part")
        numbers = [
            int_cell(row[c], file, item, c)
            for c in ("class_index", "pixels", "images", "image_pixels")
        ]
        fold, part, name = row["fold"], row["part"], row["class"]
        out.append(DistributionRow(fold, part, numbers[0], name, *numbers[1:]))
    return out


__all__ += [  # appended: the exports' class distribution
    "COCO_CLASSES",
    "DISTRIBUTION_COLUMNS",
    "DistributionRow",
    "EXPORTS_DISTRIBUTION_NAME",
    "read_class_distribution",
]
