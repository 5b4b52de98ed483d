"""The report's tables, each recomputed by hand on a tiny dataset: shares in %, rounded to 6
significant digits, classes no image has found, folds compared with the whole set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drawing.report_tables import (
    BUCKETS,
    QUANTILES,
    UNKNOWN_COLOR,
    absent_classes,
    area_histogram,
    area_quantiles,
    by_pixel_share,
    class_balance,
    class_colors,
    fold_balance,
    fold_sizes,
    group_sizes,
    object_areas,
    object_sizes,
    pct,
    size_buckets,
    validation_counts,
)
from pipeline.files.contracts import VALIDATION_KINDS, Classes, ImageStats, Instances

CLASSES = ["paper", "glass", "unused"]


def stats() -> ImageStats:
    """Four 10x10 images; ``unused`` has no pixel and no object; image 3 is 20 px ignore."""
    pixels = np.array([[10, 0, 0], [30, 5, 0], [0, 20, 0], [0, 0, 0]], np.int64)
    instances = np.array([[1, 0, 0], [2, 1, 0], [0, 3, 0], [0, 0, 0]], np.int64)
    small = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], np.int64)
    medium = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], np.int64)
    hidden = instances - small - medium
    ignore = np.array([0, 0, 20, 0], np.int64)
    return ImageStats(
        image_ids=[1, 2, 3, 4],
        file_names=["a/1.jpg", "a/2.jpg", "b/3.jpg", "c/4.jpg"],
        classes=CLASSES,
        width=np.full(4, 10),
        height=np.full(4, 10),
        background=100 - pixels.sum(1) - ignore,
        ignore=ignore,
        measures={
            "pixels": pixels,
            "instances": instances,
            "small": small,
            "medium": medium,
            "large": np.zeros_like(pixels),
            "hidden": hidden,
        },
    )


def by_class(rows: list[dict]) -> dict[str, dict]:
    return {r["class"]: r for r in rows}


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (1, 3, 33.3333),
        (2, 3, 66.6667),
        (0, 5, 0.0),
        (5, 0, 0.0),
        (1, 7e6, 1.42857e-05),
        (3, 3, 100.0),
    ],
)
def test_pct_rounds_to_six_significant_digits(part: float, whole: float, expected: float) -> None:
    """Percentages are rounded to 6 significant digits; a zero whole gives 0."""
    assert pct(part, whole) == expected


@given(st.integers(1, 10**9), st.floats(0, 1))
def test_pct_is_a_stable_short_float(whole: int, fraction: float) -> None:
    """Any share holds at most 6 significant digits, within 5e-6 relative of the exact one."""
    part = round(whole * fraction)
    value = pct(part, whole)
    assert float(f"{value:.6g}") == value and 0 <= value <= 100
    assert abs(value - 100 * part / whole) <= 100 * part / whole * 5e-6


def test_class_balance_counts_and_shares() -> None:
    """Pixel shares over labelled pixels (ignore excluded), images with the class, objects."""
    rows = by_class(class_balance(stats()))
    labelled = 400 - 20
    assert rows["paper"] == {
        "class": "paper",
        "index": 1,
        "pixels": 40,
        "pixel_share_pct": pct(40, labelled),
        "images": 2,
        "image_share_pct": 50.0,
        "instances": 3,
        "instance_share_pct": pct(3, 7),
    }
    assert rows["glass"]["images"] == 2 and rows["glass"]["pixels"] == 25
    assert rows["unused"]["pixel_share_pct"] == 0.0


def test_by_pixel_share_orders_largest_first_index_breaks_ties() -> None:
    """Largest pixel share first; equal shares keep class index order."""
    rows = [
        {"class": "a", "index": 1, "pixel_share_pct": 1.0},
        {"class": "b", "index": 2, "pixel_share_pct": 5.0},
        {"class": "c", "index": 3, "pixel_share_pct": 1.0},
    ]
    assert [r["class"] for r in by_pixel_share(rows)] == ["b", "a", "c"]


def test_absent_classes_have_neither_pixels_nor_objects() -> None:
    """Only classes with no pixel and no object are absent."""
    assert absent_classes(stats()) == ["unused"]


def test_class_colors_from_the_palette_grey_when_unknown() -> None:
    """Colours come from classes.json as hex; an unknown class is grey."""
    classes = Classes(
        names=["background", "paper", "glass"],
        colors=[(0, 0, 0), (128, 0, 0), (0, 128, 255)],
        category_ids=[[], [1], [2]],
        palette=np.zeros((256, 3), np.uint8),
    )
    assert class_colors(classes, ["glass", "paper", "other"]) == {
        "glass": "#0080ff",
        "paper": "#800000",
        "other": UNKNOWN_COLOR,
    }


def test_size_buckets_count_and_share_per_class() -> None:
    """Per class: objects per bucket and their shares, which sum to 100 (or are all 0)."""
    rows = by_class(size_buckets(stats()))
    glass = rows["glass"]
    assert (glass["objects"], glass["small"], glass["medium"], glass["hidden"]) == (4, 2, 1, 1)
    assert glass["small_pct"] == 50.0 and glass["hidden_pct"] == 25.0
    assert sum(glass[f"{b}_pct"] for b in BUCKETS) == pytest.approx(100.0)
    assert all(rows["unused"][f"{b}_pct"] == 0.0 for b in BUCKETS)


INSTANCES = Instances(
    class_index=np.array([1, 1, 2, 2, 2, 1, 2]),
    iscrowd=np.array([0, 0, 0, 0, 1, 0, 0]),
    visible_pixels=np.array([4, 5, 16, 0, 900, 17, 1000]),
)


def test_object_areas_leave_out_crowds_and_keep_hidden() -> None:
    """Crowd regions are no objects; hidden (0 px) objects are kept."""
    areas = object_areas(INSTANCES, CLASSES)
    assert areas["paper"].tolist() == [4, 5, 17]
    assert areas["glass"].tolist() == [16, 0, 1000]  # the crowd region (900) is no object
    assert areas["unused"].tolist() == []


def test_area_quantiles_over_visible_objects() -> None:
    """Quantiles use visible objects only; a class without any gets zeros."""
    rows = by_class(area_quantiles(object_areas(INSTANCES, CLASSES)))
    assert rows["paper"]["visible_objects"] == 3 and rows["paper"]["p50_px"] == 5.0
    assert rows["glass"]["visible_objects"] == 2  # the hidden one (0 px) is not counted
    assert rows["glass"]["p50_px"] == 508.0
    assert [rows["unused"][f"p{q}_px"] for q in QUANTILES] == [0.0] * len(QUANTILES)


def test_area_histogram_bins_are_powers_of_four() -> None:
    """Bin k holds areas in (4^(k-1), 4^k]: 4 is in the first bin, 5 and 16 in the second."""
    rows = area_histogram(object_areas(INSTANCES, CLASSES))
    assert [r["area_up_to_px"] for r in rows] == [4, 16, 64, 256, 1024]
    assert [r["objects"] for r in rows] == [1, 2, 1, 0, 1]
    assert rows[0]["bin"] == "01: <= 4 px (~2x2)" and rows[4]["bin"] == "05: <= 1024 px (~32x32)"


@given(st.lists(st.integers(0, 10**7), max_size=50))
def test_area_histogram_counts_every_visible_object_once(areas: list[int]) -> None:
    """Every visible area falls in exactly one bin and the last bin reaches the largest."""
    rows = area_histogram({"a": np.array(areas, np.int64)})
    assert sum(r["objects"] for r in rows) == sum(1 for a in areas if a > 0)
    assert rows[-1]["area_up_to_px"] >= max(areas, default=0)
    assert len(rows) == 1 or rows[-2]["area_up_to_px"] < max(areas)


def test_object_sizes_joins_buckets_and_quantiles_per_class() -> None:
    """Each class's bucket row carries its quantiles, in class order."""
    buckets = size_buckets(stats())
    quantiles = area_quantiles(object_areas(INSTANCES, CLASSES))
    joined = by_class(object_sizes(buckets, quantiles))
    assert joined["paper"]["small"] == 2 and joined["paper"]["p50_px"] == 5.0
    assert list(joined) == CLASSES


def test_fold_balance_compares_each_fold_with_the_rest() -> None:
    """Image 4 is held out (-1): not counted. 0 means the fold has the set's share, -100 that
    the class is absent from the fold."""
    fold = np.array([0, 1, 1, -1])
    rows = {(r["fold"], r["class"]): r for r in fold_balance(stats(), fold, 2)}
    paper0, glass0 = rows[(0, "paper")], rows[(0, "glass")]
    assert paper0["fold_images"] == 1 and paper0["images"] == 1
    assert paper0["image_share_pct"] == 100.0 and paper0["overall_image_share_pct"] == pct(2, 3)
    assert paper0["image_share_rel_dev_pct"] == pytest.approx(50.0, abs=1e-3)  # rounded shares
    assert glass0["images"] == 0 and glass0["image_share_rel_dev_pct"] == -100.0
    assert glass0["pixel_share_rel_dev_pct"] == -100.0
    glass1 = rows[(1, "glass")]
    assert glass1["pixel_share_pct"] == pct(25, 180)
    assert glass1["overall_pixel_share_pct"] == pct(25, 280)
    assert rows[(0, "unused")]["image_share_rel_dev_pct"] == 0.0  # no share anywhere: no deviation
    assert len(rows) == 2 * len(CLASSES)


def test_fold_sizes_count_images_and_groups() -> None:
    """Images and distinct groups per fold, empty folds included."""
    rows = fold_sizes(np.array([0, 0, 1, 1, 1]), ["a", "a", "b", "c", "c"], 3, "ours")
    assert [(r["fold"], r["images"], r["groups"]) for r in rows] == [
        (0, 2, 1),
        (1, 3, 2),
        (2, 0, 0),
    ]
    assert rows[1]["split"] == "ours" and rows[1]["label"] == "ours / fold 1"


def test_group_sizes_largest_first_with_each_splits_fold() -> None:
    """Groups largest first (name breaks ties) with their fold in both splits."""
    groups = ["b", "a", "b", "c", "a", "b"]
    fold = np.array([1, 0, 1, -1, 0, 1])
    random_fold = np.array([0, 1, 0, -1, 1, 0])
    assert group_sizes(groups, fold, random_fold) == [
        {"group": "b", "images": 3, "fold": "1", "random_fold": "0"},
        {"group": "a", "images": 2, "fold": "0", "random_fold": "1"},
        {"group": "c", "images": 1, "fold": "test", "random_fold": "test"},
    ]


def test_validation_counts_keep_every_kind_with_its_action() -> None:
    """Every counted kind is kept in order with its action; unknown kinds are 'listed'."""
    problems = {kind: 0 for kind in VALIDATION_KINDS} | {"image_missing": 4, "new_kind": 2}
    rows = validation_counts({"problems": problems})
    assert [r["kind"] for r in rows] == list(problems)
    actions = {r["kind"]: (r["action"], r["count"]) for r in rows}
    assert actions["image_missing"] == ("dropped", 4)
    assert actions["coordinates_outside_image"] == ("kept", 0)
    assert actions["new_kind"] == ("listed", 2)
    assert validation_counts({}) == [] and validation_counts({"problems": None}) == []
