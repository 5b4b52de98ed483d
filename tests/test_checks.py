"""The checks of one annotation: the batch's vectorised fast path gives exactly what checking
each annotation alone gives, and each problem kind is found, named and acted on."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pipeline.checking.checks import (
    FAR_OUTSIDE,
    KINDS,
    AnnotationContext,
    Issue,
    RawBatch,
    check_annotation,
    check_batch,
    check_raw_batch,
    check_segmentation,
    is_int,
    plain_polygons,
    repair_values,
)
from pipeline.checking.coverage import surely_painted
from pipeline.files.cocojson import decode_checked, dumps_items
from pipeline.files.contracts import VALIDATION_KINDS

SIZES = {1: (40, 30), 2: (64, 48)}  # image id -> (width, height)
CTX = AnnotationContext(SIZES, frozenset({1, 2}), scan=False)
SQUARE = [[5, 5, 20, 5, 20, 20, 5, 20]]


def ann(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQUARE, **fields}


def kinds(issues: list[Issue]) -> list[str]:
    return [i.kind for i in issues]


def one(annotation: dict[str, Any], ctx: AnnotationContext = CTX) -> tuple[Any, list[str]]:
    checked = check_annotation(ctx, (annotation, 1, None, annotation.get("image_id")))
    return checked.annotation, kinds(checked.issues)


# ---------------------------------------------------------------- the fast path is the slow one


@st.composite
def star(draw: st.DrawFn) -> list[float]:
    """A star-shaped part around a centre near the frame: mostly vouched for, sometimes tiny,
    thin or a little (or far) outside."""
    cx, cy = draw(st.floats(-4, 44)), draw(st.floats(-4, 34))
    radius = draw(st.sampled_from([0.3, 1.5, 3.0, 6.0, 6.0, 12.0, 12.0, 60.0]))
    n = draw(st.integers(3, 8))
    jitter = np.asarray(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    angles = 2 * np.pi * (np.arange(n) + 0.8 * jitter) / n
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
    if draw(st.booleans()):
        return [int(v) for v in np.rint(points).ravel()]
    return [round(float(v), 2) for v in points.ravel()]


polygon_part = st.one_of(
    star(),
    st.lists(st.integers(-45, 90), min_size=6, max_size=10).map(lambda p: p[: len(p) // 2 * 2]),
    st.lists(st.integers(0, 40), min_size=0, max_size=7),  # too few or odd
    star().map(lambda p: [*p[:-1], math.nan]),
    star().map(lambda p: [*p[:-1], 1e300]),
    star().map(lambda p: [*p[:-1], "3"]),
    star().map(lambda p: [*p[:-1], True]),
    st.just("not a list"),
)


@st.composite
def rle_segmentation(draw: st.DrawFn) -> dict[str, Any]:
    image = draw(st.sampled_from(sorted(SIZES)))
    width, height = SIZES[image]
    mask = np.zeros((height, width), np.uint8)
    x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
    mask[y : y + draw(st.integers(0, 9)), x : x + draw(st.integers(0, 9))] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    form = draw(st.sampled_from(["compressed", "runs", "short", "corrupt", "size"]))
    if form == "compressed":
        return {"size": [height, width], "counts": rle["counts"].decode()}
    if form == "corrupt":
        return {"size": [height, width], "counts": rle["counts"].decode() + "P"}
    if form == "size":
        return {"size": [height + 1, width], "counts": rle["counts"].decode()}
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    runs = [0, *runs] if flat[0] else runs
    return {"size": [height, width], "counts": runs[:-1] if form == "short" else runs}


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly plain polygon annotations (the fast path's), the rest anything validate meets."""
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["id"] = draw(st.integers(0, 50))
    if draw(st.integers(0, 9)) < 6:
        out["image_id"] = draw(st.sampled_from([1, 2]))
        out["category_id"] = draw(st.sampled_from([1, 2]))
        if draw(st.booleans()):
            out["iscrowd"] = draw(st.sampled_from([0, 1]))
        out["segmentation"] = draw(st.lists(star(), min_size=1, max_size=3))
        if draw(st.booleans()):
            out["area"] = draw(st.floats(0, 1e6))
        return out
    choices = {
        "image_id": st.sampled_from([1, 2, 3, "1", 1.0, None]),
        "category_id": st.sampled_from([1, 2, 9, True, 2.0]),
        "iscrowd": st.sampled_from([0, 1, 2, "1", 0.0, True, None]),
        "area": st.floats(allow_nan=True),
        "segmentation": st.one_of(
            st.lists(polygon_part, max_size=3),
            rle_segmentation(),
            st.sampled_from([None, 5, "poly"]),
        ),
    }
    for key, strategy in choices.items():
        if key in ("image_id", "category_id", "segmentation"):
            if draw(st.integers(0, 9)) > 0:  # usually present
                out[key] = draw(strategy)
        elif draw(st.booleans()):
            out[key] = draw(strategy)
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    anns=st.lists(annotations(), max_size=8),
    originals=st.lists(
        st.one_of(st.none(), st.none(), st.none(), st.integers(0, 9)), min_size=8, max_size=8
    ),
    scan=st.booleans(),
)
def test_batch_equals_each_annotation_checked_alone(
    anns: list[dict[str, Any]], originals: list[int | None], scan: bool
) -> None:
    """The vectorised plain-polygon path is an optimisation only: same json text, same issues,
    same ids as ``check_annotation`` one by one, and every kind is a known one."""
    ctx = AnnotationContext(SIZES, frozenset({1, 2}), scan)
    items = [
        (json.dumps(a).encode(), 100 + i, originals[i], a.get("image_id"))
        for i, a in enumerate(anns)
    ]
    batch = check_batch(ctx, items)
    alone = [
        check_annotation(ctx, (raw, *rest), False, decode_checked(raw)[1]) for raw, *rest in items
    ]
    kept = [c.annotation for c in alone if c.annotation is not None]
    assert batch.text == dumps_items(kept)
    assert batch.kept == len(kept)
    assert batch.issues == [i for c in alone for i in c.issues]
    assert batch.image_ids == {a["image_id"] for a in kept}
    assert batch.category_ids == {a["category_id"] for a in kept}
    assert {i.kind for i in batch.issues} <= set(KINDS)
    json.loads(f"[{batch.text}]")  # strict json: every kept value is writable


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    anns=st.lists(annotations(), min_size=1, max_size=8),
    originals=st.lists(st.one_of(st.none(), st.none(), st.integers(0, 9)), min_size=8, max_size=8),
    dropped=st.sets(st.integers(0, 7), max_size=3),
)
def test_raw_batch_equals_the_batch_of_items(
    anns: list[dict[str, Any]], originals: list[int | None], dropped: set[int]
) -> None:
    """What the stage sends (one buffer, ids, duplicates, dropped positions) is checked as the
    same annotations sent one item each: same bytes (as UTF-8), issues and ids."""
    raws = [json.dumps(a).encode() for a in anns]
    image_ids = [a.get("image_id", "") for a in anns]
    dupes = {i: (o, image_ids[i]) for i, o in enumerate(originals[: len(anns)]) if o is not None}
    gone = frozenset(i for i in dropped if i < len(anns))
    ids = np.arange(100, 100 + len(anns))
    batch = check_raw_batch(CTX, RawBatch(b",".join(raws), ids, dupes, gone))
    items = [
        (None if i in gone else raw, 100 + i, *dupes.get(i, (None, image_ids[i])))
        for i, raw in enumerate(raws)
    ]
    expected = check_batch(CTX, items)
    assert isinstance(batch.text, bytes) and batch.text.decode() == expected.text
    assert (batch.kept, batch.issues) == (expected.kept, expected.issues)
    assert (batch.image_ids, batch.category_ids) == (expected.image_ids, expected.category_ids)


def test_small_polygons_coverage_cannot_vouch_for_are_rasterised_in_the_batch() -> None:
    """A polygon too small for coverage.py is plain when pycocotools paints it (the batch asks
    pycocotools, per image size) and not when it paints nothing: then the slow path drops it."""
    tiny = [4.2, 4.2, 5.8, 4.2, 5.8, 5.8, 4.2, 5.8]  # 1.6 px wide: within MARGIN of an edge
    empty = [5.1, 5.1, 5.4, 5.1, 5.4, 5.4]
    assert not surely_painted([tiny], [0], np.array([SIZES[1]]), 1)[0]
    assert painted_by_pycocotools(tiny, 1) and not painted_by_pycocotools(empty, 1)
    anns = [
        ann(segmentation=[tiny]),
        ann(segmentation=[empty]),
        ann(segmentation=[empty, tiny]),
        ann(image_id=2, segmentation=[tiny]),
    ]
    assert plain_polygons(anns, CTX).tolist() == [0, -1, 0, 0]
    items = [(json.dumps(a).encode(), 5 + i, None, a["image_id"]) for i, a in enumerate(anns)]
    batch = check_batch(CTX, items)
    alone = [check_annotation(CTX, (json.loads(r), *rest)) for r, *rest in items]
    assert batch.text == dumps_items([c.annotation for c in alone if c.annotation is not None])
    assert kinds(batch.issues) == ["segmentation_zero_area"]


def painted_by_pycocotools(part: list[float], image_id: int) -> bool:
    width, height = SIZES[image_id]
    return bool(mask_utils.area(mask_utils.frPyObjects([part], height, width))[0] > 0)


# ---------------------------------------------------------------- one annotation


def test_a_clean_polygon_is_kept_with_its_new_id_and_crowd_flag() -> None:
    """A clean annotation gets the id it is given and iscrowd 0; nothing is listed."""
    kept, found = one(ann(id="x", area=12.5))
    assert found == []
    assert kept == {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "segmentation": SQUARE,
        "area": 12.5,
        "iscrowd": 0,
    }


@pytest.mark.parametrize(
    ("fields", "kind", "field"),
    [
        ({"segmentation": None}, "segmentation_bad_type", "segmentation"),
        ({"segmentation": []}, "segmentation_empty", "segmentation"),
        ({"segmentation": [[1, 2, 3, 4, 5]]}, "polygon_odd_coordinates", "segmentation[0]"),
        ({"segmentation": [[1, 2, 3, 4]]}, "polygon_too_few_points", "segmentation[0]"),
        ({"segmentation": [[1, 2, 3, True, 5, 6]]}, "polygon_not_numeric", "segmentation[0]"),
        ({"segmentation": [[1, 2, 3, math.nan, 5, 6]]}, "polygon_not_finite", "segmentation[0]"),
        ({"segmentation": [[0, 0, 10, 10, 20, 20]]}, "segmentation_zero_area", "segmentation"),
        ({"segmentation": [[-41, 0, 10, 0, 10, 10]]}, "polygon_far_outside", "segmentation"),
        ({"image_id": 3}, "annotation_unknown_image", "image_id"),
        ({"image_id": "1"}, "annotation_unknown_image", "image_id"),
        ({"category_id": True}, "annotation_unknown_category", "category_id"),
        ({"category_id": 7}, "annotation_unknown_category", "category_id"),
    ],
)
def test_each_problem_drops_the_annotation_and_says_where(
    fields: dict[str, Any], kind: str, field: str
) -> None:
    """A bad part is listed where it is (``segmentation[0]``); with no part left the
    annotation is dropped as empty too."""
    checked = check_annotation(CTX, (ann(**fields), 1, None, 1))
    first = checked.issues[0]
    assert checked.annotation is None
    assert (first.kind, first.field, first.annotation_id) == (kind, field, 1)
    assert first.action == VALIDATION_KINDS[kind] == "dropped"
    tail = ["segmentation_empty"] if field.endswith("]") else []
    assert kinds(checked.issues) == [kind, *tail]


def test_missing_fields_are_named_together() -> None:
    """All missing required fields are named in one issue, the first as its field."""
    checked = check_annotation(CTX, ({"id": 3}, 3, None, None))
    [issue] = checked.issues
    assert checked.annotation is None
    assert (issue.kind, issue.field) == ("annotation_missing_field", "image_id")
    assert issue.message == "missing image_id, category_id, segmentation"


def test_a_bad_part_is_removed_and_the_rest_kept() -> None:
    """One bad polygon part is dropped and listed; the usable parts stay."""
    kept, found = one(ann(segmentation=[[1, 2, 3], *SQUARE]))
    assert found == ["polygon_odd_coordinates"] and kept["segmentation"] == SQUARE


def test_points_outside_are_kept_up_to_one_image_size() -> None:
    """Within FAR_OUTSIDE image sizes, points stay as written (pycocotools clips them)."""
    assert FAR_OUTSIDE == 1.0
    edge = [[-40, -30, 80, -30, 80, 60, -40, 60]]  # exactly one image size out on every side
    kept, found = one(ann(segmentation=edge))
    assert found == ["coordinates_outside_image"] and kept["segmentation"] == edge
    assert (
        "4 polygon points outside the 40x30 image"
        in check_annotation(CTX, (ann(segmentation=edge), 1, None, 1)).issues[0].message
    )


def test_zero_area_agrees_with_pycocotools() -> None:
    """Dropped exactly when pycocotools paints no pixel at the image's size."""
    for part in (
        [0.1, 0.1, 0.4, 0.1, 0.4, 0.4],
        [10, 10, 10.2, 10, 10.2, 10.2],
        [2, 2, 9, 2, 5, 8],
    ):
        area = mask_utils.area(mask_utils.frPyObjects([part], 30, 40))[0]
        kept, found = one(ann(segmentation=[part]))
        assert (kept is None) == (area == 0), part
        assert ("segmentation_zero_area" in found) == (area == 0)


@pytest.mark.parametrize(
    ("segmentation", "kind", "field"),
    [
        ({"size": [30, 40], "counts": [5, 10]}, "rle_bad_counts", "segmentation.counts"),
        ({"size": [30, 40], "counts": [1300, -100]}, "rle_bad_counts", "segmentation.counts"),
        ({"size": [30, 40], "counts": [1200]}, "segmentation_zero_area", "segmentation.counts"),
        ({"size": [30, 40], "counts": "0!"}, "rle_bad_counts", "segmentation.counts"),
        ({"size": [30, 40], "counts": [1.5, 1198.5]}, "rle_bad_counts", "segmentation.counts"),
        ({"size": [40, 30], "counts": [1200]}, "rle_size_mismatch", "segmentation.size"),
        ({"size": [30], "counts": [1200]}, "rle_bad_counts", "segmentation.size"),
        ({"size": [30, True], "counts": [1200]}, "rle_bad_counts", "segmentation.size"),
    ],
)
def test_rle_problems(segmentation: dict[str, Any], kind: str, field: str) -> None:
    """Each corrupt RLE form is dropped with the kind and field that say why."""
    kept, found = one(ann(segmentation=segmentation))
    checked = check_annotation(CTX, (ann(segmentation=segmentation), 1, None, 1))
    assert kept is None and found == [kind] and checked.issues[0].field == field


def test_valid_rle_is_kept_unchanged() -> None:
    """Valid compressed counts are kept as written (same object), crowd flag too."""
    mask = np.zeros((30, 40), np.uint8)
    mask[3:9, 4:12] = 1
    counts = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
    segmentation = {"size": [30, 40], "counts": counts}
    kept, found = one(ann(segmentation=segmentation, iscrowd=1))
    assert found == [] and kept["segmentation"] is segmentation and kept["iscrowd"] == 1


def test_duplicate_id_is_renumbered_and_the_original_kept() -> None:
    """A repeated id is replaced, the old one kept as original_id and listed."""
    checked = check_annotation(CTX, (ann(id=4), 17, 4, 1))
    assert checked.annotation["id"] == 17 and checked.annotation["original_id"] == 4
    [issue] = checked.issues
    assert (issue.kind, issue.annotation_id, issue.field) == ("annotation_duplicate_id", 4, "id")
    assert issue.action == "renumbered"


def test_annotation_of_a_dropped_image_is_not_checked_again() -> None:
    """Source None: its image's drop is listed with the image; only a duplicate id is."""
    assert check_annotation(CTX, (None, 5, None, 1)).issues == []
    assert kinds(check_annotation(CTX, (None, 5, 2, 1)).issues) == ["annotation_duplicate_id"]


def test_bad_crowd_flag_is_kept_and_read_as_a_truth_value() -> None:
    """A crowd flag other than 0/1 is listed and read as its truth value."""
    for crowd, read in ((2, 1), (0.0, 0), (1.0, 1), (None, 0)):
        kept, found = one(ann(iscrowd=crowd))
        assert found == ["annotation_bad_iscrowd"] and kept["iscrowd"] == read, crowd


@pytest.mark.xfail(
    strict=True,
    reason="bug: for a string iscrowd the issue says 'read as int(bool(value))' (1 for '1') "
    "but the kept annotation gets iscrowd 0",
)
def test_string_crowd_flag_is_read_as_the_message_says() -> None:
    """The kept iscrowd agrees with the 'read as' of its issue."""
    checked = check_annotation(CTX, (ann(iscrowd="1"), 1, None, 1))
    assert checked.issues[0].message.endswith("read as 1")
    assert checked.annotation["iscrowd"] == 1


def test_values_json_cannot_write_are_repaired_when_scanning() -> None:
    """With ``scan``, NaN becomes null and lone surrogates U+FFFD, each listed with its path."""
    ctx = AnnotationContext(SIZES, frozenset({1, 2}), scan=True)
    kept, found = one(ann(area=math.nan, attributes={"note": "a\ud800b", "n": [1, math.inf]}), ctx)
    assert kept["area"] is None and kept["attributes"] == {"note": "a\ufffdb", "n": [1, None]}
    assert found == ["value_not_finite", "string_not_unicode", "value_not_finite"]
    json.dumps(kept, allow_nan=False).encode("utf-8")


def test_repair_values_names_each_path() -> None:
    """Every repaired value is listed with its path (keys, list indices, bad keys)."""
    found: list[tuple[str, str]] = []
    value = {"a": [1.0, math.nan], "b\ud800": {"c": -math.inf}, "d": "ok"}
    fixed = repair_values(value, "", found)
    assert fixed == {"a": [1.0, None], "b\ufffd": {"c": None}, "d": "ok"}
    assert found == [
        ("value_not_finite", "a[1]"),
        ("string_not_unicode", ".<key>"),
        ("value_not_finite", "b\ud800.c"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, True),
        (-(2**70), True),
        (3.0, True),
        (3.5, False),
        (True, False),
        (math.inf, False),
        (math.nan, False),
        ("3", False),
        (None, False),
    ],
)
def test_is_int(value: Any, expected: bool) -> None:
    """Integers and integral finite floats count as ids; bools, text and inf do not."""
    assert is_int(value) is expected


def test_segmentation_check_alone() -> None:
    """The segmentation check keeps usable parts or says None, listing with the given ids."""
    issues: list[Issue] = []
    ids = {"annotation_id": 9, "image_id": 1, "category_id": 2}
    assert check_segmentation([[1, 2], *SQUARE], 40, 30, ids, issues) == SQUARE
    assert check_segmentation("x", 40, 30, ids, issues) is None
    assert [(i.kind, i.annotation_id, i.category_id) for i in issues] == [
        ("polygon_too_few_points", 9, 2),
        ("segmentation_bad_type", 9, 2),
    ]


def test_plain_polygons_counts_outside_points_or_minus_one() -> None:
    """Plain annotations give their outside-point count, all others -1."""
    anns = [
        ann(),
        ann(segmentation=[[-5, 5, 20, 5, 20, 20, -5, 20]]),
        ann(image_id=3),
        ann(segmentation=[[5, 5, 5.5, 5, 5.5, 5.5]]),  # too small to vouch for
        ann(iscrowd=2),
        "not a dict",
    ]
    assert plain_polygons(anns, CTX).tolist() == [0, 2, -1, -1, -1, -1]
