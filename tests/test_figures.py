"""The report's figures: PNG bytes that are reproducible and carry no version, axes that fit
their numbers (log when the range is wide, shares capped at 100 %), and notes saying what a
figure leaves out."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from pipeline.drawing.figures import (
    ROW_INCHES,
    absent_note,
    fmt_pct,
    hbar_panel,
    limit,
    new_figure,
    plot_class_balance,
    plot_fold_balance,
    plot_fold_sizes,
    plot_validation,
    png_bytes,
    rows_height,
    use_log,
)
from pipeline.files.contracts import PLOTS_DIR


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (12.345, "12.3%"), (100.0, "100%"), (0.00123, "0.00123%"), (0.0005, "5.0e-04%")],
)
def test_fmt_pct(value: float, text: str) -> None:
    """Bar-end shares: 3 significant digits, tiny ones in scientific notation, 0 bare."""
    assert fmt_pct(value) == text


@pytest.mark.parametrize(
    ("values", "log"),
    [([1, 100], False), ([1, 100.1], True), ([0, 0.5, 60], True), ([0, 0], False), ([], False)],
)
def test_use_log_when_positive_values_span_over_100x(values: list[float], log: bool) -> None:
    """Log axis only when max/min of the positive values exceeds 100."""
    assert use_log(values) is log


def test_limit_keeps_the_first_rows_and_says_where_the_rest_is() -> None:
    """Over the limit, the first rows are shown and the note points to the plot tables."""
    assert limit([1, 2, 3], 3) == ([1, 2, 3], "")
    assert limit([1, 2, 3, 4, 5], 2) == ([1, 2], f" (3 more classes not shown; see {PLOTS_DIR}/)")


def test_absent_note_names_the_left_out_classes() -> None:
    """The note names every class left out, or is empty."""
    assert absent_note([]) == ""
    assert absent_note(["a", "b c"]) == "\nleft out, no image has them: a, b c"


def test_rows_height_grows_with_the_rows() -> None:
    """Height is at least 3.2 in and grows by ROW_INCHES per row."""
    assert rows_height(0) == rows_height(5) == 3.2
    assert rows_height(60) == pytest.approx(1.6 + 60 * ROW_INCHES)
    assert rows_height(60, extra=2.0) > rows_height(60)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_png_bytes_size_follows_dpi_and_names_no_software() -> None:
    """Width x height = inches x dpi; no Software chunk (it would name matplotlib's version)."""
    fig = new_figure(2, 1, 50)
    fig.subplots().plot([0, 1], [1, 0])
    data = png_bytes(fig)
    assert png_size(data) == (100, 50)
    assert b"Software" not in data and b"matplotlib" not in data.lower()
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (100, 50) and "Software" not in im.info


def test_same_figure_same_bytes() -> None:
    """Drawing the same figure twice gives the same PNG bytes."""

    def draw() -> bytes:
        fig = new_figure(3, 2, 40)
        hbar_panel(fig.subplots(), ["a", "b"], [3.0, 40.0], ["#ff0000", "#00ff00"], "x", "t")
        return png_bytes(fig)

    assert draw() == draw()


def test_hbar_panel_linear_axis_first_label_on_top_values_written() -> None:
    """Narrow ranges: linear axis with 25 % headroom, first label on top, each value written."""
    ax = new_figure(4, 3, 40).subplots()
    hbar_panel(ax, ["a", "b", "c"], [10.0, 50.0, 0.0], ["#000000"] * 3, "share (%)", "Title")
    assert ax.get_xscale() == "linear" and ax.get_xlim() == (0, 62.5)
    assert ax.get_ylim() == (2.5, -0.5)  # the first label at the top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text().strip() for t in ax.texts] == ["10%", "50%", "0"]
    assert ax.get_xlabel() == "share (%)" and ax.get_title() == "Title"


def test_hbar_panel_log_axis_for_wide_ranges() -> None:
    """Wide ranges: log axis starting below the smallest bar, said in the label."""
    ax = new_figure(4, 3, 40).subplots()
    hbar_panel(ax, ["a", "b"], [0.01, 90.0], ["#000000"] * 2, "share (%)", "")
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "share (%), log scale"
    assert ax.get_xlim()[0] == pytest.approx(0.01 / 3)


def test_share_axis_stops_at_the_cap_and_the_value_goes_inside() -> None:
    """A share axis never runs past 100 %; a bar reaching it gets its value inside its end."""
    ax = new_figure(4, 3, 40).subplots()
    hbar_panel(ax, ["a", "b"], [100.0, 30.0], ["#000000"] * 2, "x", "", upper=100.0)
    assert ax.get_xlim() == (0, 100.0)
    inside, after = ax.texts
    assert inside.get_ha() == "right" and after.get_ha() == "left"


def balance_rows(n: int) -> list[dict]:
    return [
        {
            "class": f"class {i}",
            "index": i + 1,
            "pixels": 100 - i,
            "pixel_share_pct": float(100 - i),
            "images": 3,
            "image_share_pct": 30.0,
            "instances": 5,
            "instance_share_pct": 100.0 / n,
        }
        for i in range(n)
    ]


def test_class_balance_limits_rows_and_leaves_out_absent_classes() -> None:
    """Absent classes are left out and named; the rest is limited to max_classes."""
    rows = balance_rows(6)
    colors = {r["class"]: "#336699" for r in rows}
    fig = plot_class_balance(rows, colors, 12, 40.0, 3, 40, absent=["class 0"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["class 1", "class 2", "class 3"]
    title = fig._suptitle.get_text()
    assert "12 images, 30 objects, 6 classes" in title and "background is 40%" in title
    assert "(2 more classes not shown" in title and "no image has them: class 0" in title
    assert len(fig.axes) == 3


def fold_rows(classes: list[str], n_splits: int, dev: float) -> list[dict]:
    return [
        {"fold": f, "class": c, "image_share_rel_dev_pct": dev, "pixel_share_rel_dev_pct": -dev}
        for f in range(n_splits)
        for c in classes
    ]


@pytest.mark.parametrize(("n_classes", "annotated"), [(3, True), (26, False)])
def test_fold_balance_heatmaps_write_values_only_when_few(n_classes: int, annotated: bool) -> None:
    """Four heatmaps (images/pixels x ours/random), values written for 25 classes or fewer."""
    classes = [f"c{i}" for i in range(n_classes)]
    balance = {"ours": fold_rows(classes, 2, 5.4), "random": fold_rows(classes, 2, 150.0)}
    fig = plot_fold_balance(balance, classes, 2, 60, 30)
    heatmaps = fig.axes[:4]
    assert [ax.get_title().split(":")[0] for ax in heatmaps] == [
        "our split",
        "random group split",
        "our split",
        "random group split",
    ]
    assert "mean |deviation| 5.4%" in heatmaps[0].get_title()
    assert "mean |deviation| 150.0%" in heatmaps[1].get_title()
    texts = [t.get_text() for t in heatmaps[0].texts]
    assert texts == (["+5"] * (2 * n_classes) if annotated else [])
    image = heatmaps[1].images[0]
    assert np.asarray(image.get_array()).max() == 100  # clipped at +100


def test_fold_sizes_says_how_many_images_are_held_out() -> None:
    """The title counts held-out test images; the group panel gives count, largest, median."""
    sizes = {
        split: [
            {"split": split, "fold": f, "label": "", "images": 4, "groups": 2} for f in range(2)
        ]
        for split in ("ours", "random")
    }
    groups = [{"group": "g", "images": 2, "fold": "0", "random_fold": "1"}] * 4
    groups += [{"group": "t", "images": 3, "fold": "test", "random_fold": "test"}]
    fig = plot_fold_sizes(sizes, groups, 30)
    assert (
        fig._suptitle.get_text() == "Fold and group sizes (3 held-out test images are in no fold)"
    )
    assert "5 groups, largest 3 images, median 2" in fig.axes[1].get_title()


def test_many_group_sizes_become_a_histogram() -> None:
    """More than 30 distinct group sizes are binned into a 30-bin histogram."""
    sizes = {s: [{"fold": 0, "images": 1, "groups": 1}] for s in ("ours", "random")}
    groups = [{"images": n, "fold": "0"} for n in range(1, 41)]
    fig = plot_fold_sizes(sizes, groups, 30)
    assert fig.axes[1].get_xlabel() == "images per group (30 bins)"
    assert "held-out" not in fig._suptitle.get_text()


def test_validation_figure_without_problems_says_so() -> None:
    """No problem found: the figure says so and the title counts the kinds checked."""
    counts = [{"kind": "image_missing", "action": "dropped", "count": 0}] * 3
    fig = plot_validation(counts, {"images_in": 5, "images_kept": 5}, 30)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["no problem found"]
    title = fig._suptitle.get_text()
    assert "5/5 images" in title and "?/? annotations" in title
    assert "0 kinds found; 3 of the 3 kinds checked found nothing" in title


def test_validation_figure_sorts_kinds_by_count() -> None:
    """Only kinds found are drawn, most frequent first; the title sums them."""
    counts = [
        {"kind": "image_missing", "action": "dropped", "count": 2},
        {"kind": "coordinates_outside_image", "action": "kept", "count": 9},
        {"kind": "segmentation_empty", "action": "dropped", "count": 0},
    ]
    fig = plot_validation(counts, {}, 30)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["coordinates outside image", "image missing"]
    assert "; 11 problems" in fig._suptitle.get_text()


def test_figures_have_no_layout_engine_and_stay_inside() -> None:
    """fit_panels places the panels once (savefig then draws once): every panel inside the
    figure, side by side without overlap, the suptitle above them."""
    rows = balance_rows(8)
    colors = {r["class"]: "#336699" for r in rows}
    fig = plot_class_balance(rows, colors, 100, 50.0, 60, 60)
    assert fig.get_layout_engine() is None
    boxes = [ax.get_position() for ax in fig.axes]
    assert all(0 < b.x0 < b.x1 < 1 and 0 < b.y0 < b.y1 < 1 for b in boxes)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    assert title.y0 > max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes)
    assert title.y1 <= fig.bbox.y1
