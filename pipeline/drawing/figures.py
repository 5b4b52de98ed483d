"""The report's figures: tables in, PNG bytes out, nothing read or written.

Classes, loss weights and folds are decided by looking, so each figure answers one question
(how imbalanced, how small, how fair the folds, how big the groups, what validation found).
Figures are byte-identical for the same tables: Agg canvas (no pyplot, no interactive backend),
fixed dpi, matplotlib's default style whatever the user's rc, no software/date metadata.
:func:`figure_args` names the exact data each figure draws (the report stage keys a stored PNG
by it); matplotlib is imported only when a figure is drawn. Drawing is kept cheap: the rows are
named on the left panel only (a tick is matplotlib's costliest artist) and :func:`fit_panels`
places the panels once from a few measured texts instead of a layout engine (constrained layout
measured every artist again and made savefig draw twice: a third of the cost).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.drawing.report_tables import SPLITS, ReportTables, Rows, by_pixel_share, pct
from pipeline.files.contracts import PLOTS_DIR, TEST_FOLD

if TYPE_CHECKING:
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

__all__ = [
    "ACTION_COLORS",
    "BUCKET_COLORS",
    "EDGE",
    "GAP_IN",
    "GRID",
    "LOG_RATIO",
    "PAD_IN",
    "PLOTTERS",
    "RIGHT_IN",
    "ROW_INCHES",
    "SPLIT_COLORS",
    "SPLIT_NAMES",
    "absent_note",
    "draw_figure",
    "draw_figures",
    "figure_args",
    "fit_panels",
    "fmt_pct",
    "hbar_panel",
    "limit",
    "new_figure",
    "plot_class_balance",
    "plot_fold_balance",
    "plot_fold_sizes",
    "plot_object_sizes",
    "plot_validation",
    "png_bytes",
    "rows_height",
    "use_log",
]

# A positive range wider than this (max / smallest non-zero) gets a log axis.
LOG_RATIO = 100.0
ROW_INCHES = 0.24  # height per class row: 60 classes stay readable at 7 pt
BUCKET_COLORS = {"small": "#d62728", "medium": "#ff7f0e", "large": "#2ca02c", "hidden": "#7f7f7f"}
SPLIT_COLORS = {"ours": "#1f77b4", "random": "#bbbbbb"}
ACTION_COLORS = {"dropped": "#d62728", "kept": "#1f77b4"}
SPLIT_NAMES = {"ours": "our split", "random": "random group split"}
EDGE = {"edgecolor": "#333333", "linewidth": 0.4}
PAD_IN = 0.08  # inches of margin at the figure's edges
RIGHT_IN = 0.3  # the right margin: room for the last x tick label
GAP_IN = 0.35  # inches between panels, besides the right panel's own y labels
GRID = {"color": "#dddddd", "linewidth": 0.5}


# ---------------------------------------------------------------- all figures


def figure_args(t: ReportTables, max_classes: int, dpi: int) -> dict[str, tuple[Any, ...]]:
    """The exact data each figure draws (the arguments of its plot function), by name: the
    figure's bytes follow from these, this module's code and matplotlib's version, so the
    report stage keys a stored PNG by them."""
    order = [r["class"] for r in by_pixel_share(t.class_balance)]
    return {
        "class_balance": (
            t.class_balance,
            t.colors,
            t.n_images,
            t.background_share_pct,
            max_classes,
            dpi,
            t.absent,
        ),
        "object_sizes": (t.size_buckets, t.areas, t.thresholds, max_classes, dpi, t.absent),
        "fold_balance": (t.fold_balance, order, t.n_splits, max_classes, dpi, t.absent),
        "fold_sizes": (t.fold_sizes, t.group_sizes, dpi),
        "validation": (t.validation_counts, t.validation, dpi),
    }


def draw_figure(name: str, args: Sequence[Any]) -> bytes:
    """One figure (a name of :func:`figure_args`) as PNG bytes, in matplotlib's default
    style. matplotlib is imported here, on the first figure drawn: a report whose figures all
    come from the item store never loads it."""
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # a user's matplotlibrc must not change the bytes
        return png_bytes(PLOTTERS[name](*args))


def draw_figures(t: ReportTables, max_classes: int, dpi: int) -> dict[str, bytes]:
    """Every figure as PNG bytes, drawn in matplotlib's default style."""
    return {name: draw_figure(name, a) for name, a in figure_args(t, max_classes, dpi).items()}


# ---------------------------------------------------------------- shared pieces


def new_figure(width: float, height: float, dpi: int) -> Figure:
    """A figure on its own Agg canvas: no pyplot state shared between figures, and no layout
    engine (:func:`fit_panels` places the panels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _overhangs(ax: Any, renderer: Any) -> tuple[float, float, float]:
    """How far (px) the texts of a panel reach out of it: left (y tick labels and label),
    below (x tick labels and label), above (its title)."""
    box = ax.get_window_extent(renderer)
    y_box = ax.yaxis.get_tightbbox(renderer)
    x_box = ax.xaxis.get_tightbbox(renderer)
    title = ax.title.get_window_extent(renderer) if ax.get_title() else None
    return (
        box.x0 - y_box.x0 if y_box is not None else 0.0,
        box.y0 - x_box.y0 if x_box is not None else 0.0,
        title.y1 - box.y1 if title is not None else 0.0,
    )


def fit_panels(fig: Figure, axes: Sequence[Any], title: Any, below: float = 0.0) -> float:
    """Margins that fit the texts around a row of panels, measured once: y tick labels and
    labels left of each panel, x tick labels and labels below, titles and the figure's
    ``title`` (its suptitle) above; ``below`` inches more at the bottom for a legend or a
    colour bar. Returns the panels' left edge (figure fraction)."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.get_size_inches()
    px = fig.dpi
    title.set_y(1 - PAD_IN / height)
    found = [_overhangs(ax, renderer) for ax in axes]
    top = PAD_IN + title.get_window_extent(renderer).height / px + max(f[2] for f in found) / px
    left = PAD_IN + found[0][0] / px
    gap = max([GAP_IN + f[0] / px for f in found[1:]], default=0.0)
    inner = width - left - RIGHT_IN
    fig.subplots_adjust(
        left=left / width,
        right=1 - RIGHT_IN / width,
        bottom=(PAD_IN + below + max(f[1] for f in found) / px) / height,
        top=1 - (top + PAD_IN) / height,
        wspace=gap / max((inner - gap * (len(axes) - 1)) / len(axes), 1e-3),
    )
    return left / width


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG, without the software tag (it names the matplotlib version)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def rows_height(n_rows: int, extra: float = 1.6) -> float:
    """Figure height that gives each class row room for its label."""
    return max(3.2, extra + ROW_INCHES * n_rows)


def use_log(values: Sequence[float]) -> bool:
    """Whether the positive values span too much for a linear axis."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_RATIO


def fmt_pct(v: float) -> str:
    """A share for a bar end: 3 digits, tiny shares in scientific notation."""
    if v == 0:
        return "0"
    return f"{v:.3g}%" if v >= 0.001 else f"{v:.1e}%"


def hbar_panel(
    ax: Any,
    labels: list[str],
    values: list[float],
    colors: list[str],
    xlabel: str,
    title: str,
    fmt: Callable[[float], str] = fmt_pct,
    upper: float | None = None,
    labelled: bool = True,
) -> None:
    """Horizontal bars, first label on top, value written at the bar end, log if needed.

    ``upper`` caps the axis (100 for shares: a share axis running to 120 % reads as if some
    class were in more than every image); a bar reaching the cap gets its value inside.
    ``labelled=False``: no y ticks, for a panel right of one that names the rows.
    """
    y = np.arange(len(labels))
    log = use_log(values)
    ax.barh(y, values, color=colors, **EDGE)
    ax.set_yticks(y if labelled else [], labels if labelled else None)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    positive = [v for v in values if v > 0]
    top = max(positive) if positive else 1.0
    cap = upper if upper is not None else math.inf
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 3, min(top * 12, cap))
        xlabel = f"{xlabel}, log scale"
    else:
        ax.set_xlim(0, min(top * 1.25, cap))
    _bar_values(ax, y, values, fmt)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", **GRID)
    ax.set_axisbelow(True)


def _bar_values(ax: Any, y: np.ndarray, values: list[float], fmt: Callable[[float], str]) -> None:
    """Each value after its bar, or inside the bar's end when the bar nearly fills the axis."""
    left = ax.get_xlim()[0]
    to_axes = ax.transScale + ax.transLimits  # data -> axes fraction, log scale included
    for yi, v in zip(y, values, strict=True):
        at = max(v, left)
        inside = to_axes.transform((at, yi))[0] > 0.8
        ax.text(
            at,
            yi,
            f" {fmt(v)} " if inside else f" {fmt(v)}",
            va="center",
            ha="right" if inside else "left",
            fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.75, "pad": 0.3, "edgecolor": "none"}
            if inside
            else None,
        )


def limit(rows: list[Any], max_classes: int) -> tuple[list[Any], str]:
    """At most ``max_classes`` rows in a figure; the note says what was left out."""
    if len(rows) <= max_classes:
        return rows, ""
    return rows[:max_classes], (
        f" ({len(rows) - max_classes} more classes not shown; see {PLOTS_DIR}/)"
    )


# ---------------------------------------------------------------- class balance


def absent_note(absent: Sequence[str]) -> str:
    """The note line naming the classes a figure leaves out because no image has them."""
    if not absent:
        return ""
    return f"\nleft out, no image has them: {', '.join(absent)}"


def plot_class_balance(
    balance: Rows,
    colors: dict[str, str],
    n_images: int,
    background_share: float,
    max_classes: int,
    dpi: int,
    absent: Sequence[str] = (),
) -> Figure:
    """Pixels, images and instances per class side by side: rare and small are not the same."""
    shown = [r for r in by_pixel_share(balance) if r["class"] not in set(absent)]
    rows, note = limit(shown, max_classes)
    labels = [r["class"] for r in rows]
    cols = [colors[r["class"]] for r in rows]
    fig = new_figure(13, rows_height(len(rows)), dpi)
    axes = fig.subplots(1, 3)  # one row of labels: ticks are matplotlib's costliest artists
    panels = (
        ("pixel_share_pct", "share of labelled pixels (%)", "Pixels"),
        ("image_share_pct", "share of images containing the class (%)", "Images"),
        ("instance_share_pct", "share of all objects (%)", "Instances"),
    )
    for i, (ax, (key, xlabel, title)) in enumerate(zip(axes, panels, strict=True)):
        values = [r[key] for r in rows]
        hbar_panel(ax, labels, values, cols, xlabel, title, upper=100.0, labelled=i == 0)
    total_inst = sum(r["instances"] for r in balance)
    title = fig.suptitle(
        f"Class imbalance: {n_images} images, {total_inst} objects, "
        f"{len(balance)} classes; background is {background_share:.3g}% of "
        f"labelled pixels{note}{absent_note(absent)}",
        fontsize=11,
    )
    fit_panels(fig, axes, title)
    return fig


# ---------------------------------------------------------------- object sizes


def plot_object_sizes(
    buckets: Rows,
    areas: dict[str, np.ndarray],
    thresholds: tuple[int, int],
    max_classes: int,
    dpi: int,
    absent: Sequence[str] = (),
) -> Figure:
    """Visible area per class against the size thresholds, and each class's size buckets."""
    shown = [r for r in buckets if r["class"] not in set(absent)]
    rows, note = limit(
        sorted(shown, key=lambda r: (-r["small_pct"], -r["objects"], r["class"])), max_classes
    )
    n = len(rows)
    fig = new_figure(13, rows_height(n, extra=2.0), dpi)
    ax_box, ax_bar = fig.subplots(1, 2, width_ratios=[1.3, 1])
    y = np.arange(n)
    _area_boxes(ax_box, [areas[r["class"]][areas[r["class"]] > 0] for r in rows], y)
    handles = _threshold_lines(ax_box, thresholds)
    ax_box.set_yticks(y, [f"{r['class']} (n={r['objects']})" for r in rows])
    for ax in (ax_box, ax_bar):
        ax.set_ylim(n - 0.5, -0.5)
    ax_bar.set_yticks([])  # the rows are named on the left panel only
    ax_box.set_xlabel("visible area per object (px, log scale); box 25-75 %, whiskers 5-95 %")
    ax_box.set_title("Visible object area", fontsize=10)
    ax_box.grid(axis="x", **GRID)
    handles += _bucket_bars(ax_bar, rows, y, thresholds)
    legend = fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, PAD_IN / fig.get_figheight()),
        ncols=6,
        fontsize=8,
        frameon=False,
    )
    total = sum(r["objects"] for r in buckets)
    small = sum(r["small"] for r in buckets)
    t0 = thresholds[0]
    title = fig.suptitle(
        f"Object sizes: {pct(small, total):.3g}% of {total} objects are small "
        f"(<= {t0} px visible, about {round(math.sqrt(t0))}x{round(math.sqrt(t0))} px)"
        f"{note}{absent_note(absent)}",
        fontsize=11,
    )
    legend_px = legend.get_window_extent(fig.canvas.get_renderer()).height
    fit_panels(fig, (ax_box, ax_bar), title, below=legend_px / fig.dpi + 0.1)
    return fig


def _area_boxes(ax: Any, data: list[np.ndarray], y: np.ndarray) -> None:
    """One box per class with visible objects (log axis); classes without any stay empty."""
    filled = [i for i, d in enumerate(data) if d.size]
    if not filled:
        return
    ax.boxplot(
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
    ax.set_xscale("log")


def _threshold_lines(ax: Any, thresholds: tuple[int, int]) -> list[Any]:
    """The small/medium and medium/large limits as dashed lines, for the legend too."""
    t0, t1 = thresholds
    return [
        ax.axvline(
            t0, color="#d62728", linestyle="--", linewidth=1, label=f"small / medium limit {t0} px"
        ),
        ax.axvline(
            t1, color="#9467bd", linestyle="--", linewidth=1, label=f"medium / large limit {t1} px"
        ),
    ]


def _bucket_bars(ax: Any, rows: Rows, y: np.ndarray, thresholds: tuple[int, int]) -> list[Any]:
    """Stacked shares of small, medium, large and hidden objects per class, small % written."""
    t0, t1 = thresholds
    bucket_labels = {
        "small": f"small (<= {t0} px)",
        "medium": f"medium (<= {t1} px)",
        "large": f"large (> {t1} px)",
        "hidden": "hidden (0 px visible)",
    }
    handles = []
    left = np.zeros(len(rows))
    for bucket, color in BUCKET_COLORS.items():
        values = np.array([r[f"{bucket}_pct"] for r in rows])
        bars = ax.barh(
            y,
            values,
            left=left,
            color=color,
            edgecolor="white",
            linewidth=0.3,
            label=bucket_labels[bucket],
        )
        handles.append(bars)
        left += values
    _small_labels(ax, rows, y)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the class's objects (%)")
    ax.set_title("Size buckets (sorted by share of small objects)", fontsize=10)
    return handles


def _small_labels(ax: Any, rows: Rows, y: np.ndarray) -> None:
    """The share of small objects written on each bar: white inside a wide red bar, black just
    after a narrow one."""
    for yi, r in zip(y, rows, strict=True):
        if r["small"]:
            inside_bar = r["small_pct"] >= 10
            ax.text(
                1 if inside_bar else r["small_pct"] + 0.5,
                yi,
                f"{r['small_pct']:.0f}%",
                va="center",
                ha="left",
                fontsize=7,
                color="white" if inside_bar else "black",
            )


# ---------------------------------------------------------------- fold balance


def plot_fold_balance(
    balance: dict[str, Rows],
    order: list[str],
    n_splits: int,
    max_classes: int,
    dpi: int,
    absent: Sequence[str] = (),
) -> Figure:
    """Each class's share per fold against the whole set, ours next to the random baseline.

    Classes no image has are left out: their -100 % everywhere would be noise, not balance.
    """
    classes, note = limit([c for c in order if c not in set(absent)], max_classes)
    n = len(classes)
    from matplotlib.colors import TwoSlopeNorm

    fig = new_figure(14, rows_height(n, extra=2.2), dpi)
    axes = fig.subplots(1, 4)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-100.0, vmax=100.0)
    image = None
    panels = [(m, s) for m in ("image", "pixel") for s in SPLITS]
    for ax, (measure, split) in zip(axes, panels, strict=True):
        grid = _deviation_grid(balance[split], classes, measure, n_splits)
        image = _heatmap(ax, grid, norm, annotate=n <= 25)
        ax.set_xticks(range(n_splits), [str(f) for f in range(n_splits)])
        ax.set_xlabel("fold")
        mean_abs = float(np.mean(np.abs(grid))) if grid.size else 0.0
        what = "images" if measure == "image" else "pixels"
        ax.set_title(
            f"{SPLIT_NAMES[split]}: share of {what}\nmean |deviation| {mean_abs:.1f}%", fontsize=10
        )
    axes[0].set_yticks(range(n), classes)
    for ax in axes[1:]:
        ax.set_yticks([])  # the rows are named on the left panel only
    title = fig.suptitle(
        f"Fold balance: each class's share per fold against the whole set, ours vs a "
        f"random group-aware split{note}{absent_note(absent)}",
        fontsize=11,
    )
    _colour_bar(fig, image, axes, title)
    return fig


def _colour_bar(fig: Figure, image: Any, axes: Sequence[Any], title: Any) -> None:
    """The panels placed, and the colour scale under them: half their width, centred, its
    label below it."""
    cax = fig.add_axes((0.25, 0.0, 0.5, 0.01))
    bar = fig.colorbar(image, cax=cax, orientation="horizontal")
    bar.set_label(
        "class share in the fold relative to the whole set (%; 0 = same share, "
        "-100 = absent, clipped at +100)"
    )
    renderer = fig.canvas.get_renderer()
    width, height = fig.get_size_inches()
    label = (cax.get_window_extent(renderer).y0 - cax.xaxis.get_tightbbox(renderer).y0) / fig.dpi
    thick = width / 100
    left = fit_panels(fig, axes, title, below=label + thick + 0.3)
    span = 1 - RIGHT_IN / width - left
    cax.set_position((left + span / 4, (PAD_IN + label) / height, span / 2, thick / height))


def _deviation_grid(rows: Rows, classes: list[str], measure: str, n_splits: int) -> np.ndarray:
    """Relative deviation of a class's share (classes x folds) for ``image`` or ``pixel``."""
    cell = {(r["class"], r["fold"]): r for r in rows}
    return np.array(
        [[cell[(c, f)][f"{measure}_share_rel_dev_pct"] for f in range(n_splits)] for c in classes],
        dtype=np.float64,
    ).reshape(len(classes), n_splits)


def _heatmap(ax: Any, grid: np.ndarray, norm: TwoSlopeNorm, annotate: bool) -> Any:
    """The grid clipped to +-100 in a diverging map, values written in the cells if few."""
    image = ax.imshow(
        np.clip(grid, -100, 100), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest"
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
    return image


# ---------------------------------------------------------------- fold and group sizes


def plot_fold_sizes(sizes: dict[str, Rows], groups: Rows, dpi: int) -> Figure:
    """Images and groups per fold for both splits, and how many images the groups hold."""
    fig = new_figure(13, 4.6, dpi)
    ax_f, ax_g = fig.subplots(1, 2)
    _fold_size_bars(ax_f, sizes)
    _group_size_bars(ax_g, np.array([g["images"] for g in groups], dtype=np.int64))
    n_test = sum(g["images"] for g in groups if g["fold"] == TEST_FOLD)
    held_out = f" ({n_test} held-out test images are in no fold)" if n_test else ""
    title = fig.suptitle(f"Fold and group sizes{held_out}", fontsize=11)
    fit_panels(fig, (ax_f, ax_g), title)
    return fig


def _fold_size_bars(ax: Any, sizes: dict[str, Rows]) -> None:
    """Images per fold, ours next to the random split, groups in brackets on the bars."""
    from matplotlib.ticker import MaxNLocator

    k = len(sizes["ours"])
    x = np.arange(k)
    width = 0.38
    for offset, split in ((-width / 2, "ours"), (width / 2, "random")):
        rows = sizes[split]
        bars = ax.bar(
            x + offset,
            [r["images"] for r in rows],
            width,
            color=SPLIT_COLORS[split],
            **EDGE,
            label=SPLIT_NAMES[split],
        )
        ax.bar_label(
            bars, [f"{r['images']}\n({r['groups']} gr.)" for r in rows], fontsize=7, padding=2
        )
    ax.set_xticks(x, [str(f) for f in range(k)])
    ax.set_xlabel("fold")
    ax.set_ylabel("images per fold")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(r["images"] for s in sizes.values() for r in s) * 1.3 + 1)
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    ax.set_title("Fold sizes (images; groups in brackets)", fontsize=10)


def _group_size_bars(ax: Any, counts: np.ndarray) -> None:
    """Groups per size: a bar per distinct size when few, else a 30-bin histogram."""
    from matplotlib.ticker import MaxNLocator

    values, n_groups = np.unique(counts, return_counts=True)
    if values.size <= 30:
        ax.bar([str(v) for v in values], n_groups, width=0.6, color=SPLIT_COLORS["ours"], **EDGE)
        ax.set_xlabel("images per group")
        if values.size > 15:
            ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    else:
        ax.hist(counts, bins=30, color=SPLIT_COLORS["ours"], **EDGE)
        ax.set_xlabel("images per group (30 bins)")
    ax.set_ylabel("number of groups")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(
        f"Group sizes: {counts.size} groups, largest {counts.max()} images, "
        f"median {np.median(counts):g}",
        fontsize=10,
    )


# ---------------------------------------------------------------- validation


def plot_validation(counts: Rows, validation: dict[str, Any], dpi: int) -> Figure:
    """Problems per kind found, red where the item was dropped; kinds with no problem are only
    counted in the title (every kind, 0 included, stays in the plot table and the metrics)."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = sorted((r for r in counts if r["count"]), key=lambda r: -r["count"])
    fig = new_figure(10, rows_height(max(len(rows), 3), extra=1.8), dpi)
    ax = fig.subplots()
    values = [float(r["count"]) for r in rows]
    if rows:
        hbar_panel(
            ax,
            [r["kind"].replace("_", " ") for r in rows],
            values,
            [ACTION_COLORS.get(r["action"], "#7f7f7f") for r in rows],
            "problems found (count)",
            "",
            fmt=lambda v: f"{int(v)}",
        )
    else:
        ax.set_yticks([])
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no problem found", ha="center", va="center", transform=ax.transAxes)
    if rows and not use_log(values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(
        handles=[Patch(color=c, label=f"item {a}") for a, c in ACTION_COLORS.items()],
        loc="lower right",
        fontsize=8,
    )
    v = validation
    zero = len(counts) - len(rows)
    title = fig.suptitle(
        f"Validation: {v.get('images_kept', '?')}/{v.get('images_in', '?')} images and "
        f"{v.get('annotations_kept', '?')}/{v.get('annotations_in', '?')} annotations "
        f"kept; {v.get('problems_total', sum(int(r['count']) for r in rows))} problems"
        f"\n{len(rows)} kinds found; {zero} of the {len(counts)} kinds checked found nothing",
        fontsize=11,
    )
    fit_panels(fig, (ax,), title)
    return fig


# The plot function of each figure, by the names of :func:`figure_args`.
PLOTTERS: dict[str, Callable[..., Figure]] = {
    "class_balance": plot_class_balance,
    "object_sizes": plot_object_sizes,
    "fold_balance": plot_fold_balance,
    "fold_sizes": plot_fold_sizes,
    "validation": plot_validation,
}
