"""Stage ``report``: figures people read instead of tables.

Classes, loss weights and folds are decided by looking, so this stage turns the stats tables,
the folds and the validation counts into PNG figures (``reports/figures/``), the numbers behind
them as DVC plot data (``reports/plots/``, rendered by ``dvc plots show``) and a short
``reports/README.md`` that embeds the figures with one line on how to read each.

The tables are computed by pure functions (data in, rows out) so tests can recompute them from
the CSVs; figures are drawn only from those rows. Every share is a percentage; a class's pixel
share is over *labelled* pixels (background + classes, ignore excluded), as in ``vectors``.

Fold balance compares our folds with a seeded random group-aware split of the same images
(groups shuffled, then GroupKFold's largest-first assignment to the lightest fold), so the
figure shows what stratification buys over merely keeping groups together.

Figures are byte-identical for the same inputs: Agg canvas, fixed dpi, matplotlib's default
style (no user rc), no software/date metadata.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pipeline.errors import DatasetError
from pipeline.fsio import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_text,
    read_csv,
)
from pipeline.masks import CLASSES_PATH, IMAGE_STATS_PATH, INSTANCES_PATH
from pipeline.params import load_params
from pipeline.split import FOLDS_PATH, QUALITY_PATH, TEST_FOLD, FoldTable, parse_folds
from pipeline.validate import KINDS, REPORT_PATH
from pipeline.vectors import stats_classes

FIGURES_DIR = "reports/figures"
PLOTS_DIR = "reports/plots"
README_PATH = "reports/README.md"

# A positive range wider than this (max / smallest non-zero) gets a log axis.
LOG_RATIO = 100.0
ROW_INCHES = 0.24  # height per class row: 60 classes stay readable at 7 pt
SPLITS = ("ours", "random")
BUCKET_COLORS = {"small": "#d62728", "medium": "#ff7f0e", "large": "#2ca02c", "hidden": "#7f7f7f"}
# Salt of the random baseline's seed: randomness comes from (seed, stage), never a global rng.
_STAGE_SALT = zlib.crc32(b"report")


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Stats:
    """The per-image stats table as matrices (images x classes), classes in index order."""

    image_ids: list[str]
    file_names: list[str]
    classes: list[str]
    labelled: np.ndarray  # width * height - ignore, per image
    background: np.ndarray
    ignore: np.ndarray
    pixels: np.ndarray
    instances: np.ndarray
    small: np.ndarray
    medium: np.ndarray
    large: np.ndarray
    hidden: np.ndarray


def parse_stats(rows: list[dict[str, str]]) -> Stats:
    """Read ``image_stats.csv`` rows; columns follow the masks stage contract."""
    if not rows:
        raise DatasetError("no image in the stats table", file=IMAGE_STATS_PATH)
    columns = list(rows[0])
    classes = stats_classes(columns)
    background = columns[4][: -len("__pixels")] if len(columns) > 4 else "background"

    def col(name: str) -> np.ndarray:
        try:
            return np.array([int(r[name]) for r in rows], dtype=np.int64)
        except (KeyError, ValueError) as exc:
            raise DatasetError(
                f"column {name!r} missing or not an integer ({exc})",
                file=IMAGE_STATS_PATH,
                field=name,
            ) from None

    def mat(measure: str) -> np.ndarray:
        out = np.zeros((len(rows), len(classes)), dtype=np.int64)
        for j, cls in enumerate(classes):
            out[:, j] = col(f"{cls}__{measure}")
        return out

    ignore = col("ignore__pixels")
    return Stats(
        image_ids=[r["image_id"] for r in rows],
        file_names=[r["file_name"] for r in rows],
        classes=classes,
        labelled=col("width") * col("height") - ignore,
        background=col(f"{background}__pixels"),
        ignore=ignore,
        pixels=mat("pixels"),
        instances=mat("instances"),
        small=mat("small"),
        medium=mat("medium"),
        large=mat("large"),
        hidden=mat("hidden"),
    )


def class_colors(classes_json: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Hex colour per class from ``classes.json`` (the mask palette), grey when unknown."""
    by_name = {c["name"]: c.get("color") for c in classes_json.get("classes", [])}
    out = []
    for name in names:
        rgb = by_name.get(name)
        out.append("#{:02x}{:02x}{:02x}".format(*rgb) if rgb else "#888888")
    return out


# ---------------------------------------------------------------- tables (pure)


def _pct(part: float, whole: float) -> float:
    """Percentage rounded to 6 significant digits, so CSVs are short and byte-stable."""
    return float(f"{100.0 * part / whole:.6g}") if whole else 0.0


def class_balance(stats: Stats) -> list[dict[str, Any]]:
    """Per class: pixels, images and instances, each as a count and a share (%)."""
    labelled = int(stats.labelled.sum())
    n_images = len(stats.image_ids)
    total_instances = int(stats.instances.sum())
    rows = []
    for j, cls in enumerate(stats.classes):
        pixels = int(stats.pixels[:, j].sum())
        images = int((stats.pixels[:, j] > 0).sum())
        instances = int(stats.instances[:, j].sum())
        rows.append(
            {
                "class": cls,
                "index": j + 1,
                "pixels": pixels,
                "pixel_share_pct": _pct(pixels, labelled),
                "images": images,
                "image_share_pct": _pct(images, n_images),
                "instances": instances,
                "instance_share_pct": _pct(instances, total_instances),
            }
        )
    return rows


def size_buckets(stats: Stats) -> list[dict[str, Any]]:
    """Per class: instances per size bucket, as counts and as % of the class's instances."""
    rows = []
    for j, cls in enumerate(stats.classes):
        counts = {
            b: int(getattr(stats, b)[:, j].sum()) for b in ("small", "medium", "large", "hidden")
        }
        total = sum(counts.values())
        rows.append(
            {
                "class": cls,
                "objects": total,
                **counts,
                **{f"{b}_pct": _pct(n, total) for b, n in counts.items()},
            }
        )
    return rows


def object_areas(
    instance_rows: list[dict[str, str]], classes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Visible area (px) of every counted object per class: painted, not crowd, not ignore."""
    by_class: dict[str, list[int]] = {c: [] for c in classes}
    n = len(classes)
    for r in instance_rows:
        index = int(r["class_index"])
        if 1 <= index <= n and not int(r["iscrowd"]):
            by_class[classes[index - 1]].append(int(r["visible_pixels"]))
    return {c: np.array(v, dtype=np.int64) for c, v in by_class.items()}


def area_quantiles(areas: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per class: quartiles of visible area over visible (non-hidden) objects."""
    rows = []
    for cls, a in areas.items():
        vis = a[a > 0]
        q = np.percentile(vis, [10, 25, 50, 75, 90]) if vis.size else [0.0] * 5
        rows.append(
            {
                "class": cls,
                "visible_objects": int(vis.size),
                **{
                    f"p{p}_px": float(f"{v:.6g}")
                    for p, v in zip((10, 25, 50, 75, 90), q, strict=True)
                },
            }
        )
    return rows


def area_histogram(areas: dict[str, np.ndarray]) -> list[dict[str, Any]]:
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


def random_group_folds(groups: Sequence[str], n_splits: int, seed: int) -> np.ndarray:
    """A seeded random group-aware split: the baseline our folds are compared with.

    Groups are shuffled, then assigned largest first to the fold with the fewest images
    (ties between equal-size groups fall in the shuffled order): GroupKFold on shuffled groups.
    """
    names, inverse, sizes = np.unique(
        np.asarray(groups, dtype=str), return_inverse=True, return_counts=True
    )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STAGE_SALT]))
    order = rng.permutation(names.size)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(n_splits, dtype=np.int64)
    fold_of_group = np.empty(names.size, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return fold_of_group[inverse.ravel()]


def fold_balance(stats: Stats, fold: np.ndarray, n_splits: int) -> list[dict[str, Any]]:
    """Per fold and class: share of images and of pixels next to the whole (non-test) set.

    ``fold`` is the fold per stats row (-1 = held out, not counted). ``*_rel_dev_pct`` is
    ``100 * (fold share / whole-set share - 1)``: 0 is perfect, -100 means absent from the fold.
    """
    rest = fold >= 0
    present = stats.pixels > 0
    all_images = int(rest.sum())
    all_labelled = int(stats.labelled[rest].sum())
    rows = []
    for f in range(n_splits):
        sel = fold == f
        n_images, labelled = int(sel.sum()), int(stats.labelled[sel].sum())
        for j, cls in enumerate(stats.classes):
            images, overall_images = int(present[sel, j].sum()), int(present[rest, j].sum())
            pixels, overall_pixels = (
                int(stats.pixels[sel, j].sum()),
                int(stats.pixels[rest, j].sum()),
            )
            img_share, img_all = _pct(images, n_images), _pct(overall_images, all_images)
            px_share, px_all = _pct(pixels, labelled), _pct(overall_pixels, all_labelled)
            rows.append(
                {
                    "fold": f,
                    "class": cls,
                    "fold_images": n_images,
                    "images": images,
                    "image_share_pct": img_share,
                    "overall_image_share_pct": img_all,
                    "image_share_rel_dev_pct": _rel_dev(img_share, img_all),
                    "pixels": pixels,
                    "pixel_share_pct": px_share,
                    "overall_pixel_share_pct": px_all,
                    "pixel_share_rel_dev_pct": _rel_dev(px_share, px_all),
                }
            )
    return rows


def _rel_dev(share: float, overall: float) -> float:
    return float(f"{100.0 * (share / overall - 1.0):.6g}") if overall else 0.0


def fold_sizes(
    fold: np.ndarray, groups: Sequence[str], n_splits: int, split: str
) -> list[dict[str, Any]]:
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


def group_sizes(
    groups: Sequence[str], fold: np.ndarray, random_fold: np.ndarray
) -> list[dict[str, Any]]:
    """Images per group (largest first) and the fold each split put the group in."""
    groups_arr = np.asarray(groups, dtype=str)
    names, first, counts = np.unique(groups_arr, return_index=True, return_counts=True)
    order = np.lexsort((names, -counts))
    return [
        {
            "group": str(names[i]),
            "images": int(counts[i]),
            "fold": _fold_label(fold[first[i]]),
            "random_fold": _fold_label(random_fold[first[i]]),
        }
        for i in order
    ]


def _fold_label(f: int) -> str:
    return TEST_FOLD if f < 0 else str(int(f))


def validation_counts(validation: dict[str, Any]) -> list[dict[str, Any]]:
    """Problem counts per kind with what happened to the item (dropped / kept)."""
    problems = validation.get("problems") or {}
    return [
        {"kind": kind, "action": KINDS.get(kind, "listed"), "count": int(n)}
        for kind, n in problems.items()
    ]


def folds_by_stats_row(
    table: FoldTable, stats: Stats, n_splits: int
) -> tuple[np.ndarray, list[str]]:
    """Fold (-1 = test) and group per stats row, checked against the stats table and params."""
    by_id = {str(r[0]): r for r in table.rows}
    missing = [i for i in stats.image_ids if i not in by_id]
    if missing or len(by_id) != len(stats.image_ids):
        raise DatasetError(
            f"folds and stats list different images (first missing: "
            f"{missing[:1] or 'extra rows'}); re-run the split stage",
            file=FOLDS_PATH,
            field="image_id",
        )
    if table.n_folds != n_splits:
        raise DatasetError(
            f"folds.csv has {table.n_folds} folds but split.n_splits is {n_splits}; "
            "re-run the split stage",
            file=FOLDS_PATH,
            field="fold",
        )
    rows = [by_id[i] for i in stats.image_ids]
    fold = np.array([-1 if r[3] == TEST_FOLD else int(r[3]) for r in rows], dtype=np.int64)
    return fold, [r[2] for r in rows]


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float, dpi: int) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def _rows_height(n_rows: int, extra: float = 1.6) -> float:
    return max(3.2, extra + ROW_INCHES * n_rows)


def _use_log(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_RATIO


def _fmt_pct(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}%" if v >= 0.001 else f"{v:.1e}%"


def _hbar_panel(
    ax: Any,
    labels: list[str],
    values: list[float],
    colors: list[str],
    xlabel: str,
    title: str,
    fmt: Any = _fmt_pct,
) -> None:
    """Horizontal bars, first label on top, value written at the bar end, log if needed."""
    y = np.arange(len(labels))
    log = _use_log(values)
    ax.barh(y, values, color=colors, edgecolor="#333333", linewidth=0.4)
    ax.set_yticks(y, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    positive = [v for v in values if v > 0]
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 3, max(positive) * 12)
        xlabel = f"{xlabel}, log scale"
    else:
        ax.set_xlim(0, (max(positive) if positive else 1) * 1.25)
    left = ax.get_xlim()[0]
    for yi, v in zip(y, values, strict=True):
        ax.text(max(v, left), yi, f" {fmt(v)}", va="center", ha="left", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)


def _limit(rows: list[dict[str, Any]], max_classes: int) -> tuple[list[dict[str, Any]], str]:
    """At most ``max_classes`` rows in a figure; the note says what was left out."""
    if len(rows) <= max_classes:
        return rows, ""
    return rows[:max_classes], (
        f" ({len(rows) - max_classes} more classes not shown; see {PLOTS_DIR}/)"
    )


def plot_class_balance(
    balance: list[dict[str, Any]],
    colors: dict[str, str],
    n_images: int,
    background_share: float,
    max_classes: int,
    dpi: int,
) -> Figure:
    rows = sorted(balance, key=lambda r: (-r["pixel_share_pct"], r["index"]))
    rows, note = _limit(rows, max_classes)
    labels = [r["class"] for r in rows]
    cols = [colors[r["class"]] for r in rows]
    fig = _figure(13, _rows_height(len(rows)), dpi)
    axes = fig.subplots(1, 3, sharey=True)
    _hbar_panel(
        axes[0],
        labels,
        [r["pixel_share_pct"] for r in rows],
        cols,
        "share of labelled pixels (%)",
        "Pixels",
    )
    _hbar_panel(
        axes[1],
        labels,
        [r["image_share_pct"] for r in rows],
        cols,
        "share of images containing the class (%)",
        "Images",
    )
    _hbar_panel(
        axes[2],
        labels,
        [r["instance_share_pct"] for r in rows],
        cols,
        "share of all objects (%)",
        "Instances",
    )
    total_inst = sum(r["instances"] for r in balance)
    fig.suptitle(
        f"Class imbalance: {n_images} images, {total_inst} objects, "
        f"{len(balance)} classes; background is {background_share:.3g}% of "
        f"labelled pixels{note}",
        fontsize=11,
    )
    return fig


def plot_object_sizes(
    buckets: list[dict[str, Any]],
    areas: dict[str, np.ndarray],
    thresholds: tuple[int, int],
    max_classes: int,
    dpi: int,
) -> Figure:
    rows = sorted(buckets, key=lambda r: (-r["small_pct"], -r["objects"], r["class"]))
    rows, note = _limit(rows, max_classes)
    n = len(rows)
    labels = [f"{r['class']} (n={r['objects']})" for r in rows]
    fig = _figure(13, _rows_height(n, extra=2.0), dpi)
    ax_box, ax_bar = fig.subplots(1, 2, sharey=True, width_ratios=[1.3, 1])
    y = np.arange(n)
    data = [areas[r["class"]][areas[r["class"]] > 0] for r in rows]
    filled = [i for i, d in enumerate(data) if d.size]
    if filled:
        ax_box.boxplot(
            [data[i] for i in filled],
            positions=y[filled],
            orientation="horizontal",
            widths=0.6,
            whis=(5, 95),
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": "#c6dbef", "linewidth": 0.6},
            medianprops={"color": "#08306b", "linewidth": 1.2},
            whiskerprops={"linewidth": 0.6},
            capprops={"linewidth": 0.6},
        )
        ax_box.set_xscale("log")
    t0, t1 = thresholds
    handles: list[Any] = [
        ax_box.axvline(
            t0, color="#d62728", linestyle="--", linewidth=1, label=f"small / medium limit {t0} px"
        ),
        ax_box.axvline(
            t1, color="#9467bd", linestyle="--", linewidth=1, label=f"medium / large limit {t1} px"
        ),
    ]
    ax_box.set_yticks(y, labels)
    ax_box.set_ylim(n - 0.5, -0.5)
    ax_box.set_xlabel("visible area per object (px, log scale); box 25-75 %, whiskers 5-95 %")
    ax_box.set_title("Visible object area", fontsize=10)
    ax_box.grid(axis="x", color="#dddddd", linewidth=0.5)
    bucket_labels = {
        "small": f"small (<= {t0} px)",
        "medium": f"medium (<= {t1} px)",
        "large": f"large (> {t1} px)",
        "hidden": "hidden (0 px visible)",
    }
    left = np.zeros(n)
    for bucket, color in BUCKET_COLORS.items():
        values = np.array([r[f"{bucket}_pct"] for r in rows])
        handles.append(
            ax_bar.barh(
                y,
                values,
                left=left,
                color=color,
                edgecolor="white",
                linewidth=0.3,
                label=bucket_labels[bucket],
            )
        )
        left += values
    for yi, r in zip(y, rows, strict=True):
        if r["small"]:  # white inside a wide red bar, black just after a narrow one
            inside_bar = r["small_pct"] >= 10
            ax_bar.text(
                1 if inside_bar else r["small_pct"] + 0.5,
                yi,
                f"{r['small_pct']:.0f}%",
                va="center",
                ha="left",
                fontsize=7,
                color="white" if inside_bar else "black",
            )
    ax_bar.set_xlim(0, 100)
    ax_bar.set_xlabel("share of the class's objects (%)")
    ax_bar.set_title("Size buckets (sorted by share of small objects)", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8, frameon=False)
    total = sum(r["objects"] for r in buckets)
    small = sum(r["small"] for r in buckets)
    fig.suptitle(
        f"Object sizes: {_pct(small, total):.3g}% of {total} objects are small "
        f"(<= {t0} px visible, about {round(math.sqrt(t0))}x{round(math.sqrt(t0))} px)"
        f"{note}",
        fontsize=11,
    )
    return fig


def plot_fold_balance(
    balance: dict[str, list[dict[str, Any]]],
    order: list[str],
    n_splits: int,
    max_classes: int,
    dpi: int,
) -> Figure:
    classes, note = _limit(order, max_classes)  # type: ignore[arg-type]
    n = len(classes)
    annotate = n <= 25
    fig = _figure(14, _rows_height(n, extra=2.2), dpi)
    axes = fig.subplots(1, 4, sharey=True)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-100.0, vmax=100.0)
    image = None
    for ax, (measure, split) in zip(
        axes, [(m, s) for m in ("image", "pixel") for s in SPLITS], strict=True
    ):
        cell = {(r["class"], r["fold"]): r for r in balance[split]}
        grid = np.array(
            [
                [cell[(c, f)][f"{measure}_share_rel_dev_pct"] for f in range(n_splits)]
                for c in classes
            ],
            dtype=np.float64,
        ).reshape(n, n_splits)
        image = ax.imshow(
            np.clip(grid, -100, 100),
            cmap="RdBu_r",
            norm=norm,
            aspect="auto",
            interpolation="nearest",
        )
        if annotate:
            for (i, f), v in np.ndenumerate(grid):
                ax.text(
                    f,
                    i,
                    f"{round(v):+d}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 60 else "black",
                )
        ax.set_xticks(range(n_splits), [str(f) for f in range(n_splits)])
        ax.set_xlabel("fold")
        mean_abs = float(np.mean(np.abs(grid))) if grid.size else 0.0
        what = "images" if measure == "image" else "pixels"
        name = "our split" if split == "ours" else "random group split"
        ax.set_title(f"{name}: share of {what}\nmean |deviation| {mean_abs:.1f}%", fontsize=10)
    axes[0].set_yticks(range(n), classes)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes), location="bottom", shrink=0.5, aspect=40, pad=0.02)
        bar.set_label(
            "class share in the fold relative to the whole set (%; 0 = same share, "
            "-100 = absent, clipped at +100)"
        )
    fig.suptitle(
        f"Fold balance: each class's share per fold against the whole set, ours vs a "
        f"random group-aware split{note}",
        fontsize=11,
    )
    return fig


def plot_fold_sizes(
    sizes: dict[str, list[dict[str, Any]]], groups: list[dict[str, Any]], dpi: int
) -> Figure:
    fig = _figure(13, 4.6, dpi)
    ax_f, ax_g = fig.subplots(1, 2)
    k = len(sizes["ours"])
    x = np.arange(k)
    width = 0.38
    for offset, split, color in ((-width / 2, "ours", "#1f77b4"), (width / 2, "random", "#bbbbbb")):
        rows = sizes[split]
        bars = ax_f.bar(
            x + offset,
            [r["images"] for r in rows],
            width,
            color=color,
            edgecolor="#333333",
            linewidth=0.4,
            label="our split" if split == "ours" else "random group split",
        )
        ax_f.bar_label(
            bars, [f"{r['images']}\n({r['groups']} gr.)" for r in rows], fontsize=7, padding=2
        )
    ax_f.set_xticks(x, [str(f) for f in range(k)])
    ax_f.set_xlabel("fold")
    ax_f.set_ylabel("images per fold")
    ax_f.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_f.set_ylim(0, max(r["images"] for s in sizes.values() for r in s) * 1.3 + 1)
    ax_f.legend(fontsize=8, loc="upper right", ncols=2)
    ax_f.set_title("Fold sizes (images; groups in brackets)", fontsize=10)
    counts = np.array([g["images"] for g in groups], dtype=np.int64)
    values, n_groups = np.unique(counts, return_counts=True)
    if values.size <= 30:
        ax_g.bar(
            [str(v) for v in values],
            n_groups,
            width=0.6,
            color="#1f77b4",
            edgecolor="#333333",
            linewidth=0.4,
        )
        ax_g.set_xlabel("images per group")
        if values.size > 15:
            ax_g.tick_params(axis="x", labelrotation=90, labelsize=7)
    else:
        ax_g.hist(counts, bins=30, color="#1f77b4", edgecolor="#333333", linewidth=0.4)
        ax_g.set_xlabel("images per group (30 bins)")
    ax_g.set_ylabel("number of groups")
    ax_g.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_g.set_title(
        f"Group sizes: {len(groups)} groups, largest {counts.max()} images, "
        f"median {np.median(counts):g}",
        fontsize=10,
    )
    n_test = sum(g["images"] for g in groups if g["fold"] == TEST_FOLD)
    held_out = f" ({n_test} held-out test images are in no fold)" if n_test else ""
    fig.suptitle(f"Fold and group sizes{held_out}", fontsize=11)
    return fig


def plot_validation(counts: list[dict[str, Any]], validation: dict[str, Any], dpi: int) -> Figure:
    rows = sorted(counts, key=lambda r: -r["count"])
    colors = {"dropped": "#d62728", "kept": "#1f77b4"}
    fig = _figure(10, _rows_height(len(rows), extra=1.8), dpi)
    ax = fig.subplots()
    values = [float(r["count"]) for r in rows]
    _hbar_panel(
        ax,
        [r["kind"].replace("_", " ") for r in rows],
        values,
        [colors.get(r["action"], "#7f7f7f") for r in rows],
        "problems found (count)",
        "",
        fmt=lambda v: f"{int(v)}",
    )
    if not _use_log(values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(
        handles=[Patch(color=c, label=f"item {a}") for a, c in colors.items()],
        loc="lower right",
        fontsize=8,
    )
    v = validation
    fig.suptitle(
        f"Validation: {v.get('images_kept', '?')}/{v.get('images_in', '?')} images and "
        f"{v.get('annotations_kept', '?')}/{v.get('annotations_in', '?')} annotations "
        f"kept; {v.get('problems_total', sum(int(r['count']) for r in rows))} problems",
        fontsize=11,
    )
    return fig


# ---------------------------------------------------------------- README

FIGURES: dict[str, tuple[str, str]] = {
    "class_balance": (
        "Class imbalance",
        "Classes sorted by pixel share; compare the three panels: a class with "
        "few pixels but many images is small, not rare (log axes where noted).",
    ),
    "object_sizes": (
        "Object sizes",
        "Left, visible area per object (box = middle half) against the size "
        "thresholds; right, how much of each class is small, medium, large or "
        "hidden.",
    ),
    "fold_balance": (
        "Fold balance",
        "Each cell is a class's share in one fold relative to the whole set: "
        "white is fair, blue under-represented, red over; our split should be "
        "paler than the random one.",
    ),
    "fold_sizes": (
        "Fold and group sizes",
        "Images (and groups) per fold for both splits, and how many images the "
        "groups hold: one huge group limits how even folds can be.",
    ),
    "validation": (
        "Validation summary",
        "Problems per kind found by the validate stage; red kinds dropped items, "
        "blue kinds were repaired or only listed (details in validation_issues.csv).",
    ),
}

QUALITY_KEYS = (
    ("LD", "label distribution (lower is better)"),
    ("LPD", "label-pair distribution (lower is better)"),
    ("FLZ", "(fold, label) pairs without a positive"),
    ("group_leakage", "groups split across folds"),
)


def render_readme(quality: dict[str, Any]) -> str:
    """Markdown embedding every figure, one line each on how to read it."""
    lines = [
        "# Dataset and fold-balance report",
        "",
        "Written by `dvc repro report` (pipeline/report.py); the numbers behind the "
        f"figures are in `{Path(PLOTS_DIR).name}/` and `dvc plots show` renders them as "
        "an HTML page. Pixel shares are of labelled pixels (ignore excluded).",
        "",
    ]
    for name, (title, how) in FIGURES.items():
        lines += [f"## {title}", "", how, "", f"![{title}](figures/{name}.png)", ""]
    splitters = [s for s in ("ours", "multilabel_stratified_kfold", "kfold") if s in quality]
    if splitters:
        lines += [
            "## Split quality (`reports/split_quality.json`)",
            "",
            "| metric | " + " | ".join(splitters) + " |",
            "|---|" + "---|" * len(splitters),
        ]
        for key, label in QUALITY_KEYS:
            cells = [str(quality[s].get(key, "")) for s in splitters]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        pix = [
            str((quality[s].get("pixel_share_deviation") or {}).get("mean", "")) for s in splitters
        ]
        lines.append("| mean pixel-share deviation | " + " | ".join(pix) + " |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- stage


def _check_report_params(params: dict[str, Any]) -> tuple[int, int, tuple[int, int], int, int]:
    from pipeline.masks import check_mask_params
    from pipeline.split import check_split_params

    n_splits, seed, _ = check_split_params(params.get("split") or {})
    _, _, thresholds = check_mask_params(params.get("masks") or {})
    cfg = params.get("report") or {}
    max_classes, dpi = cfg.get("max_classes", 60), cfg.get("dpi", 100)
    for name, value in (("max_classes", max_classes), ("dpi", dpi)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DatasetError(
                f"must be a positive integer, got {value!r}",
                file="params.yaml",
                field=f"report.{name}",
            )
    return n_splits, seed, thresholds, max_classes, dpi


def _read_json(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError("not found; run the earlier stages first", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"not valid json: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise DatasetError("top level must be an object", file=path)
    return data


def build_tables(params: dict[str, Any]) -> dict[str, Any]:
    """Every table behind the figures, computed from the stage inputs in the working dir."""
    n_splits, seed, thresholds, _, _ = _check_report_params(params)
    stats = parse_stats(read_csv(IMAGE_STATS_PATH))
    fold, groups = folds_by_stats_row(parse_folds(read_csv(FOLDS_PATH)), stats, n_splits)
    rest = fold >= 0
    random_fold = np.full(fold.shape, -1, dtype=np.int64)
    random_fold[rest] = random_group_folds(
        [g for g, r in zip(groups, rest, strict=True) if r], n_splits, seed
    )
    areas = object_areas(read_csv(INSTANCES_PATH), stats.classes)
    rest_groups = [g for g, r in zip(groups, rest, strict=True) if r]
    return {
        "stats": stats,
        "thresholds": thresholds,
        "n_splits": n_splits,
        "class_balance": class_balance(stats),
        "size_buckets": size_buckets(stats),
        "areas": areas,
        "area_quantiles": area_quantiles(areas),
        "area_histogram": area_histogram(areas),
        "fold_balance": {
            "ours": fold_balance(stats, fold, n_splits),
            "random": fold_balance(stats, random_fold, n_splits),
        },
        "fold_sizes": {
            "ours": fold_sizes(fold[rest], rest_groups, n_splits, "ours"),
            "random": fold_sizes(random_fold[rest], rest_groups, n_splits, "random"),
        },
        "group_sizes": group_sizes(groups, fold, random_fold),
        "validation": _read_json(REPORT_PATH),
        "quality": _read_json(QUALITY_PATH),
    }


def _write_rows(name: str, rows: list[dict[str, Any]]) -> None:
    header = list(rows[0]) if rows else ["empty"]
    atomic_write_csv(f"{PLOTS_DIR}/{name}.csv", header, [list(r.values()) for r in rows])


def run(params: dict[str, Any]) -> dict[str, Any]:
    _, _, _, max_classes, dpi = _check_report_params(params)
    t = build_tables(params)
    stats: Stats = t["stats"]
    validation_rows = validation_counts(t["validation"])
    quantiles = {r["class"]: r for r in t["area_quantiles"]}
    sizes = [
        r | {k: v for k, v in quantiles[r["class"]].items() if k != "class"}
        for r in t["size_buckets"]
    ]
    plots = {
        "class_balance": t["class_balance"],
        "object_sizes": sizes,
        "object_area_histogram": t["area_histogram"],
        "fold_balance_ours": t["fold_balance"]["ours"],
        "fold_balance_random": t["fold_balance"]["random"],
        "fold_sizes": t["fold_sizes"]["ours"] + t["fold_sizes"]["random"],
        "group_sizes": t["group_sizes"],
        "validation": validation_rows,
    }
    for name, rows in plots.items():
        _write_rows(name, rows)

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # a user's matplotlibrc must not change the bytes
        figures = _draw(t, stats, validation_rows, max_classes, dpi)
    for name, data in figures.items():
        atomic_write_bytes(f"{FIGURES_DIR}/{name}.png", data)
    atomic_write_text(README_PATH, render_readme(t["quality"]))
    return {"figures": sorted(figures), "plots": sorted(plots)}


def _draw(
    t: dict[str, Any],
    stats: Stats,
    validation_rows: list[dict[str, Any]],
    max_classes: int,
    dpi: int,
) -> dict[str, bytes]:
    """Every figure as PNG bytes (FigureCanvasAgg: no pyplot, no interactive backend)."""
    colors = dict(
        zip(stats.classes, class_colors(_read_json(CLASSES_PATH), stats.classes), strict=True)
    )
    labelled = int(stats.labelled.sum())
    order = [
        r["class"]
        for r in sorted(t["class_balance"], key=lambda r: (-r["pixel_share_pct"], r["index"]))
    ]
    figures = {
        "class_balance": plot_class_balance(
            t["class_balance"],
            colors,
            len(stats.image_ids),
            _pct(int(stats.background.sum()), labelled),
            max_classes,
            dpi,
        ),
        "object_sizes": plot_object_sizes(
            t["size_buckets"], t["areas"], t["thresholds"], max_classes, dpi
        ),
        "fold_balance": plot_fold_balance(
            t["fold_balance"], order, t["n_splits"], max_classes, dpi
        ),
        "fold_sizes": plot_fold_sizes(t["fold_sizes"], t["group_sizes"], dpi),
        "validation": plot_validation(validation_rows, t["validation"], dpi),
    }
    return {name: _png(fig) for name, fig in figures.items()}


def main(argv: list[str] | None = None) -> None:
    out = run(load_params())
    print(
        f"report: {len(out['figures'])} figures in {FIGURES_DIR}/, "
        f"{len(out['plots'])} plot tables in {PLOTS_DIR}/, summary in {README_PATH}"
    )
