"""The report's tables: the numbers behind every figure, computed from what the stages wrote.

Pure functions (data in, rows out, no file access), so tests can recompute each table from the
CSVs and the figures are drawn only from these rows. Every share is a percentage; a class's
pixel share is over *labelled* pixels (background + classes, ignore excluded), as in
``vectors``. Numbers are rounded to 6 significant digits so the plot CSVs are short and
byte-stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.files.contracts import (
    FOLDS_PATH,
    RANDOM_FOLDS_PATH,
    SIZE_BUCKETS,
    TEST_FOLD,
    VALIDATION_KINDS,
    Classes,
    FoldTable,
    ImageStats,
    Instances,
    fold_label,
)
from pipeline.files.errors import DatasetError

__all__ = [
    "BUCKETS",
    "QUANTILES",
    "ReportInputs",
    "ReportTables",
    "Rows",
    "SPLITS",
    "UNKNOWN_COLOR",
    "absent_classes",
    "area_histogram",
    "area_quantiles",
    "build_tables",
    "by_pixel_share",
    "class_balance",
    "class_colors",
    "fold_balance",
    "fold_sizes",
    "folds_by_stats_row",
    "group_sizes",
    "object_areas",
    "object_sizes",
    "pct",
    "plot_tables",
    "size_buckets",
    "validation_counts",
]

Rows = list[dict[str, Any]]
SPLITS = ("ours", "random")  # our folds, and the random group-aware baseline
BUCKETS = (*SIZE_BUCKETS, "hidden")  # size buckets of the stats table, hidden last
QUANTILES = (10, 25, 50, 75, 90)
UNKNOWN_COLOR = "#888888"


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads, as the contracts' readers return it."""

    stats: ImageStats
    instances: Instances
    classes: Classes
    folds: FoldTable
    random_folds: FoldTable  # the split stage's random group split, on the same images
    validation: dict[str, Any]  # reports/validation.json
    quality: dict[str, Any]  # reports/split_quality.json


@dataclass(frozen=True)
class ReportTables:
    """Every table behind the figures, plus the few totals their titles quote."""

    classes: list[str]
    absent: list[str]  # classes no image has (no pixel, no object): left out of the figures
    colors: dict[str, str]  # class -> hex colour of its mask palette entry
    n_images: int
    n_splits: int
    thresholds: tuple[int, int]
    background_share_pct: float
    class_balance: Rows
    size_buckets: Rows
    areas: dict[str, np.ndarray]  # class -> visible area of each counted object
    area_quantiles: Rows
    area_histogram: Rows
    fold_balance: dict[str, Rows]  # split -> rows
    fold_sizes: dict[str, Rows]  # split -> rows
    group_sizes: Rows
    validation_counts: Rows
    validation: dict[str, Any]  # the validation summary, for the figure's title


def pct(part: float, whole: float) -> float:
    """Percentage rounded to 6 significant digits, so CSVs are short and byte-stable."""
    return float(f"{100.0 * part / whole:.6g}") if whole else 0.0


def _rel_dev(share: float, overall: float) -> float:
    """How far a share is from the whole set's, in % of the latter (0 = same share)."""
    return float(f"{100.0 * (share / overall - 1.0):.6g}") if overall else 0.0


# ---------------------------------------------------------------- classes


def class_colors(classes: Classes, names: Sequence[str]) -> dict[str, str]:
    """Hex colour per class from the mask palette, so figures match the masks; grey if unknown."""
    by_name = dict(zip(classes.names, classes.colors, strict=True))
    out = {}
    for name in names:
        rgb = by_name.get(name)
        out[name] = "#{:02x}{:02x}{:02x}".format(*rgb) if rgb else UNKNOWN_COLOR
    return out


def absent_classes(stats: ImageStats) -> list[str]:
    """Classes no image has: no pixel and no object (facade's unused category id 0)."""
    has = (stats.measure("pixels").sum(axis=0) > 0) | (stats.measure("instances").sum(axis=0) > 0)
    return [cls for cls, h in zip(stats.classes, has, strict=True) if not h]


def class_balance(stats: ImageStats) -> Rows:
    """Per class: pixels, images and instances, each as a count and a share (%)."""
    pixels, instances = stats.measure("pixels"), stats.measure("instances")
    labelled = int(stats.labelled.sum())
    n_images = len(stats.image_ids)
    total_instances = int(instances.sum())
    pixel_sums = pixels.sum(axis=0).tolist()  # per class at once: column sums are slow
    image_counts = (pixels > 0).sum(axis=0).tolist()
    instance_sums = instances.sum(axis=0).tolist()
    rows = []
    for j, cls in enumerate(stats.classes):
        n_pixels, images, n_instances = pixel_sums[j], image_counts[j], instance_sums[j]
        rows.append(
            {
                "class": cls,
                "index": j + 1,
                "pixels": n_pixels,
                "pixel_share_pct": pct(n_pixels, labelled),
                "images": images,
                "image_share_pct": pct(images, n_images),
                "instances": n_instances,
                "instance_share_pct": pct(n_instances, total_instances),
            }
        )
    return rows


def by_pixel_share(balance: Rows) -> Rows:
    """Class balance rows, largest pixel share first (class index breaks ties)."""
    return sorted(balance, key=lambda r: (-r["pixel_share_pct"], r["index"]))


# ---------------------------------------------------------------- object sizes


def size_buckets(stats: ImageStats) -> Rows:
    """Per class: instances per size bucket, as counts and as % of the class's instances."""
    sums = {b: stats.measure(b).sum(axis=0).tolist() for b in BUCKETS}
    rows = []
    for j, cls in enumerate(stats.classes):
        counts = {b: sums[b][j] for b in BUCKETS}
        total = sum(counts.values())
        rows.append(
            {
                "class": cls,
                "objects": total,
                **counts,
                **{f"{b}_pct": pct(n, total) for b, n in counts.items()},
            }
        )
    return rows


def object_areas(instances: Instances, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """Visible area (px) of every counted object per class: painted, not crowd, not ignore."""
    counted = instances.iscrowd == 0
    return {
        cls: instances.visible_pixels[counted & (instances.class_index == j + 1)].astype(np.int64)
        for j, cls in enumerate(classes)
    }


def area_quantiles(areas: dict[str, np.ndarray]) -> Rows:
    """Per class: quantiles of visible area over visible (non-hidden) objects."""
    rows = []
    for cls, a in areas.items():
        vis = a[a > 0]
        q = np.percentile(vis, list(QUANTILES)) if vis.size else [0.0] * len(QUANTILES)
        rows.append(
            {
                "class": cls,
                "visible_objects": int(vis.size),
                **{f"p{p}_px": float(f"{v:.6g}") for p, v in zip(QUANTILES, q, strict=True)},
            }
        )
    return rows


def area_histogram(areas: dict[str, np.ndarray]) -> Rows:
    """Visible objects per area bin, all classes: bin k holds areas in (4^(k-1), 4^k] px,
    i.e. objects about 2^k px across (the first bin starts at 1 px)."""
    values = np.concatenate([np.zeros(0, np.int64), *areas.values()])
    values = values[values > 0]
    top = int(values.max()) if values.size else 1
    edges = [4]
    while edges[-1] < top:
        edges.append(edges[-1] * 4)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges))
    return [
        {
            "bin": f"{k + 1:02d}: <= {hi} px (~{2 ** (k + 1)}x{2 ** (k + 1)})",
            "area_up_to_px": hi,
            "objects": int(n),
        }
        for k, (hi, n) in enumerate(zip(edges, counts, strict=True))
    ]


def object_sizes(buckets: Rows, quantiles: Rows) -> Rows:
    """The size buckets of each class next to its area quantiles: one plot table."""
    by_class = {r["class"]: r for r in quantiles}
    return [r | {k: v for k, v in by_class[r["class"]].items() if k != "class"} for r in buckets]


# ---------------------------------------------------------------- folds


def folds_by_stats_row(
    table: FoldTable, stats: ImageStats, file: str
) -> tuple[np.ndarray, list[str]]:
    """Fold (-1 = test) and group per stats row, checked against the stats table."""
    by_id = {r.image_id: r for r in table.rows}
    missing = [i for i in stats.image_ids if i not in by_id]
    if missing or len(by_id) != len(stats.image_ids):
        raise DatasetError(
            f"folds and stats list different images (first missing: "
            f"{missing[:1] or 'extra rows'}); re-run the split stage",
            file=file,
            field="image_id",
        )
    rows = [by_id[i] for i in stats.image_ids]
    fold = np.array([-1 if r.fold == TEST_FOLD else int(r.fold) for r in rows], np.int64)
    return fold, [r.group for r in rows]


def fold_balance(stats: ImageStats, fold: np.ndarray, n_splits: int) -> Rows:
    """Per fold and class: share of images and of pixels next to the whole (non-test) set.

    ``fold`` is the fold per stats row (-1 = held out, not counted). ``*_rel_dev_pct`` is
    ``100 * (fold share / whole-set share - 1)``: 0 is perfect, -100 means absent from the fold.
    """
    pixels = stats.measure("pixels")
    rest = fold >= 0
    present = pixels > 0
    all_images = int(rest.sum())
    all_labelled = int(stats.labelled[rest].sum())
    overall = present[rest].sum(axis=0).tolist(), pixels[rest].sum(axis=0).tolist()
    rows = []
    for f in range(n_splits):
        sel = fold == f
        n_images, labelled = int(sel.sum()), int(stats.labelled[sel].sum())
        in_fold = present[sel].sum(axis=0).tolist(), pixels[sel].sum(axis=0).tolist()
        for j, cls in enumerate(stats.classes):
            images, overall_images = in_fold[0][j], overall[0][j]
            n_pixels, overall_pixels = in_fold[1][j], overall[1][j]
            img_share, img_all = pct(images, n_images), pct(overall_images, all_images)
            px_share, px_all = pct(n_pixels, labelled), pct(overall_pixels, all_labelled)
            rows.append(
                {
                    "fold": f,
                    "class": cls,
                    "fold_images": n_images,
                    "images": images,
                    "image_share_pct": img_share,
                    "overall_image_share_pct": img_all,
                    "image_share_rel_dev_pct": _rel_dev(img_share, img_all),
                    "pixels": n_pixels,
                    "pixel_share_pct": px_share,
                    "overall_pixel_share_pct": px_all,
                    "pixel_share_rel_dev_pct": _rel_dev(px_share, px_all),
                }
            )
    return rows


def fold_sizes(fold: np.ndarray, groups: Sequence[str], n_splits: int, split: str) -> Rows:
    """Images and groups per fold."""
    groups_arr = np.asarray(groups, dtype=str)
    return [
        {
            "split": split,
            "fold": f,
            "label": f"{split} / fold {f}",
            "images": int((fold == f).sum()),
            "groups": int(np.unique(groups_arr[fold == f]).size),
        }
        for f in range(n_splits)
    ]


def group_sizes(groups: Sequence[str], fold: np.ndarray, random_fold: np.ndarray) -> Rows:
    """Images per group (largest first) and the fold each split put the group in."""
    groups_arr = np.asarray(groups, dtype=str)
    names, first, counts = np.unique(groups_arr, return_index=True, return_counts=True)
    order = np.lexsort((names, -counts))
    return [
        {
            "group": str(names[i]),
            "images": int(counts[i]),
            "fold": fold_label(fold[first[i]]),
            "random_fold": fold_label(random_fold[first[i]]),
        }
        for i in order
    ]


def validation_counts(validation: dict[str, Any]) -> Rows:
    """Problem counts per kind with what happened to the item (dropped / kept)."""
    problems = validation.get("problems") or {}
    return [
        {"kind": kind, "action": VALIDATION_KINDS.get(kind, "listed"), "count": int(n)}
        for kind, n in problems.items()
    ]


# ---------------------------------------------------------------- all of them


def build_tables(inputs: ReportInputs, thresholds: tuple[int, int]) -> ReportTables:
    """Every table behind the figures, from the stage inputs (the split stage's folds and
    its random group split) and the size thresholds."""
    stats = inputs.stats
    fold, groups = folds_by_stats_row(inputs.folds, stats, FOLDS_PATH)
    random_fold, _ = folds_by_stats_row(inputs.random_folds, stats, RANDOM_FOLDS_PATH)
    n_splits = inputs.folds.n_folds
    if inputs.random_folds.n_folds != n_splits or not np.array_equal(random_fold < 0, fold < 0):
        raise DatasetError(
            "not the random split of the same folds; re-run the split stage",
            file=RANDOM_FOLDS_PATH,
        )
    rest = fold >= 0
    rest_groups = [g for g, r in zip(groups, rest, strict=True) if r]
    splits = dict(zip(SPLITS, (fold, random_fold), strict=True))
    areas = object_areas(inputs.instances, stats.classes)
    return ReportTables(
        classes=stats.classes,
        absent=absent_classes(stats),
        colors=class_colors(inputs.classes, stats.classes),
        n_images=len(stats.image_ids),
        n_splits=n_splits,
        thresholds=thresholds,
        background_share_pct=pct(int(stats.background.sum()), int(stats.labelled.sum())),
        class_balance=class_balance(stats),
        size_buckets=size_buckets(stats),
        areas=areas,
        area_quantiles=area_quantiles(areas),
        area_histogram=area_histogram(areas),
        fold_balance={s: fold_balance(stats, f, n_splits) for s, f in splits.items()},
        fold_sizes={s: fold_sizes(f[rest], rest_groups, n_splits, s) for s, f in splits.items()},
        group_sizes=group_sizes(groups, fold, random_fold),
        validation_counts=validation_counts(inputs.validation),
        validation=inputs.validation,
    )


def plot_tables(t: ReportTables) -> dict[str, Rows]:
    """The DVC plot tables (``reports/plots/<name>.csv``), by name. Classes no image has are
    left out, as the figures leave them out (an empty bar says nothing; the figures name them)."""
    tables = {
        "class_balance": t.class_balance,
        "object_sizes": object_sizes(t.size_buckets, t.area_quantiles),
        "object_area_histogram": t.area_histogram,
        "fold_balance_ours": t.fold_balance["ours"],
        "fold_balance_random": t.fold_balance["random"],
        "fold_sizes": t.fold_sizes["ours"] + t.fold_sizes["random"],
        "group_sizes": t.group_sizes,
        "validation": t.validation_counts,
    }
    absent = set(t.absent)
    return {
        name: [r for r in rows if r.get("class") not in absent] for name, rows in tables.items()
    }
