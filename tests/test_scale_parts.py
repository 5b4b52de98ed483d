"""The parts that make the stages lean at scale keep their promises exactly."""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pipeline.checking.coverage import surely_painted
from pipeline.files.cocojson import DUMPS, dumps_items
from pipeline.files.contracts import strip_suffix
from pipeline.files.errors import DatasetError
from pipeline.stages.validate import (
    Settings,
    check_structure,
    issue_rows,
    prepare,
    read_source,
    stream_canonical,
    validate_coco,
)
from tests.test_validate import mutated_coco

text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from('",:\\\x00\n\u2028é')),
    max_size=8,
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1e-5, 1e-7, 0.0001, 1.5e300, -0.0, 5e-324, 12.3, 0.1]),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(text, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=6))
def test_dumps_items_is_json_dumps(items: list[Any]) -> None:
    assert dumps_items(items) == ", ".join(DUMPS(item) for item in items)


@given(st.text(alphabet="ab./_ ", min_size=1, max_size=12))
def test_strip_suffix_is_pathlib(name: str) -> None:
    clean = "/".join(p for p in name.split("/") if p not in ("", "."))
    if clean and ".." not in clean.split("/"):
        assert strip_suffix(clean) == str(PurePosixPath(clean).with_suffix(""))


polygons = st.lists(
    st.tuples(st.floats(-5, 45, allow_nan=False), st.floats(-5, 35, allow_nan=False)),
    min_size=3,
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(polygons, min_size=1, max_size=8))
def test_a_vouched_polygon_paints_a_pixel(parts: list[list[tuple[float, float]]]) -> None:
    """What coverage.py vouches for, pycocotools paints: the rasterisation it saves is exact."""
    flat = [[v for point in part for v in point] for part in parts]
    sizes = np.array([[40, 30]] * len(flat))
    vouched = surely_painted(flat, list(range(len(flat))), sizes, len(flat))
    for part, sure in zip(flat, vouched, strict=True):
        if sure:
            assert mask_utils.area(mask_utils.frPyObjects([part], 30, 40))[0] > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_coco())
def test_streamed_stage_equals_validate_coco(coco: Any) -> None:
    """The stage's batched, vectorised, streamed path gives what the plain one does."""
    raw = json.dumps(coco).encode()
    try:
        expected = validate_coco(json.loads(raw), file="ann.json")
    except DatasetError as exc:
        expected_error = str(exc)
    else:
        expected_error = None
    try:
        source = read_source(raw, "ann.json")
        names = check_structure(source, "ann.json", 200_000_000)
        prepared = prepare(source, names, None, Settings("ann.json"))
        out = io.StringIO()
        result = stream_canonical(out, source, prepared, 1)
    except DatasetError as exc:
        assert str(exc) == expected_error
        return
    assert expected_error is None
    assert out.getvalue() == json.dumps(expected.coco, ensure_ascii=False, allow_nan=False) + "\n"
    assert issue_rows(result.issues) == issue_rows(expected.issues)
    assert result.totals == expected.totals
