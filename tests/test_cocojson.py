"""COCO json held as bytes: raw slices decode to what json.loads builds, malformed text says
where, and streamed documents are byte-identical to json.dumps."""

from __future__ import annotations

import gc
import io
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.files import cocojson
from pipeline.files.cocojson import (
    DUMPS,
    MISSING,
    Pieces,
    decode,
    decode_checked,
    decode_items,
    dumps_items,
    encode_items,
    load_lazy,
    loads_python,
    no_gc,
    utf8_problem,
    write_document,
)

COCO = (
    b'{"info": {"v": 1}, "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}],\n'
    b' "annotations": [{"id": 7, "image_id": 1, "segmentation": [[1, 2, 3, 4, 5, 6]]},'
    b' {"image_id": 2}, {"id": null, "image_id": 2, "x": "\\u00e9"}],\n'
    b' "categories": [], "licenses": {"not": "a list"}}'
)

text = st.text(max_size=8)
numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=20,
)


def test_lazy_coco_keeps_each_top_level_slice_in_file_order() -> None:
    """Top-level keys in file order; a list's raw items decode to json.loads' items."""
    lazy = load_lazy(COCO)
    assert lazy is not None
    assert list(lazy.top) == ["info", "images", "annotations", "categories", "licenses"]
    assert lazy.value("info") == {"v": 1}
    assert [decode(raw) for raw in lazy.items("images")] == json.loads(COCO)["images"]


def test_refs_decode_ids_without_the_segmentation() -> None:
    """A missing ``id`` is MISSING, ``"id": null`` is None: the error can say which."""
    refs = load_lazy(COCO).refs()
    assert [(r.id, r.image_id) for r in refs] == [(7, 1), (MISSING, 2), (None, 2)]


def test_items_and_refs_refuse_what_is_not_a_list_of_objects() -> None:
    """A non-list, or a non-object item, is a ValueError saying what was expected."""
    lazy = load_lazy(COCO)
    with pytest.raises(ValueError, match="Expected `array`"):
        lazy.items("licenses")
    bad = load_lazy(b'{"annotations": [{"id": 1}, 5]}')
    with pytest.raises(ValueError, match="Expected `object`"):
        bad.refs()


@pytest.mark.parametrize(
    "data",
    [
        b'{"annotations": [{"area": NaN}]}',
        b'{"x": Infinity}',
        b"[1, 2]",
        b'{"a": 1,}',
        b"",
    ],
    ids=["nan", "infinity", "top-list", "trailing-comma", "empty"],
)
def test_what_msgspec_cannot_read_falls_back(data: bytes) -> None:
    """Non-strict json (TACO's Infinity) or no object: None, the caller uses Python's json
    (and names the problem)."""
    assert load_lazy(data) is None


def test_integers_beyond_64_bits_are_read_exactly() -> None:
    """Whichever decoder reads them, ids beyond int64 come back as the exact integer."""
    big = 123456789012345678901234567890
    raw = f'{{"annotations": [{{"id": {big}, "image_id": -{big}}}]}}'.encode()
    lazy = load_lazy(raw)
    if lazy is not None:
        assert [(r.id, r.image_id) for r in lazy.refs()] == [(big, -big)]
    assert decode(raw) == json.loads(raw)


@settings(max_examples=200, deadline=None)
@given(values)
def test_decode_is_json_loads(value: Any) -> None:
    """Any json value decodes (from bytes or a Raw slice) to what json.loads builds."""
    raw = json.dumps(value).encode()
    assert decode(raw) == json.loads(raw)
    assert decode(msgspec.Raw(raw)) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        (b"[NaN]", lambda v: math.isnan(v[0])),
        (b"[Infinity, -Infinity]", lambda v: v == [math.inf, -math.inf]),
        (b"[1e400]", lambda v: v == [math.inf]),
    ],
)
def test_numbers_msgspec_refuses_are_read_like_python_and_flagged(raw: bytes, check) -> None:
    """NaN, Infinity and out-of-range floats are read as Python reads them, and flagged."""
    value, exotic = decode_checked(raw)
    assert exotic and check(value)
    assert decode_checked(b"[1.5, 2]") == ([1.5, 2], False)


@pytest.mark.parametrize(
    ("raw", "line", "column"),
    [(b'{"id": 1,\n "image_id": }', 2, 14), (b'{"a": [1, 2\n\n]]', 3, 2), (b"{'a': 1}", 1, 2)],
)
def test_malformed_json_names_line_and_column(raw: bytes, line: int, column: int) -> None:
    """A corrupt item fails with Python's error, which says where: line and column."""
    with pytest.raises(json.JSONDecodeError) as caught:
        decode(raw)
    assert (caught.value.lineno, caught.value.colno) == (line, column)
    assert f"line {line} column {column}" in str(caught.value)


@settings(max_examples=150, deadline=None)
@given(
    head=st.dictionaries(text, values, max_size=3),
    items=st.lists(values, max_size=6),
    tail=values,
)
def test_write_document_is_json_dumps(head: dict[str, Any], items: list[Any], tail: Any) -> None:
    """Plain values and a streamed list (Pieces) give json.dumps' bytes plus a newline."""
    doc = {**head, "annotations": items, "zz_tail": tail}
    out = io.StringIO()
    fields = [(k, v) for k, v in head.items()]
    fields += [("annotations", Pieces(DUMPS(i) for i in items)), ("zz_tail", tail)]
    write_document(out, fields)
    assert out.getvalue() == json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n"


def test_pieces_are_consumed_lazily() -> None:
    """A list is written piece by piece: the whole list is never held."""
    produced: list[int] = []

    def texts():
        for i in range(3):
            produced.append(i)
            yield DUMPS({"id": i})

    out = io.StringIO()
    pieces = Pieces(texts())
    assert produced == []
    write_document(out, [("annotations", pieces), ("empty", Pieces(iter([])))])
    assert out.getvalue() == '{"annotations": [{"id": 0}, {"id": 1}, {"id": 2}], "empty": []}\n'


# Text and numbers that decide how encode_items spaces and writes: separators and quotes inside
# strings, escapes, numbers msgspec writes otherwise than Python (exponents, below 1e-4).
tricky_text = st.text(alphabet=st.sampled_from(list(',:"\\ e0.5é\n\x01{}[]')), max_size=6)
tricky_numbers = st.sampled_from([1e-05, 1.5e-07, 1e16, 1e22, 0.0001, 0.00012, 12.3, -0.0, 5.0])
tricky = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, tricky_numbers, tricky_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(tricky_text, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(tricky, max_size=5))
def test_encode_items_is_json_dumps_whatever_the_strings_and_numbers(items: list[Any]) -> None:
    """The fast spacing (two replaces) only where no string holds a separator; json.dumps
    where a number could be written otherwise: always json.dumps' bytes."""
    expected = ", ".join(DUMPS(item) for item in items)
    assert encode_items(items) == expected.encode("utf-8")
    assert dumps_items(items) == expected


@pytest.mark.parametrize(
    "value",
    [{"a,b": 1}, {"k": "x:y"}, ['q"u,o:te'], ["back\\slash, and: more"], {"e": [1e-05]}],
)
def test_separators_inside_strings_are_not_spaced(value: Any) -> None:
    assert encode_items([value, 1.5]) == (DUMPS(value) + ", 1.5").encode()


def test_decode_items_reads_joined_items_like_decode_checked() -> None:
    """Items joined by "," decode in one call; one that needs Python's json makes each item
    decode on its own, flagged as decode_checked flags it."""
    raws = [b'{"a": [1.5, 2]}', b"[1e400]", b'"x"', b"null"]
    assert decode_items(b",".join(raws)) == [decode_checked(r) for r in raws]
    plain = [raws[0], raws[2], raws[3]]
    assert decode_items(b",".join(plain)) == [(json.loads(r), False) for r in plain]


def test_bytes_pieces_go_to_the_file_as_they_are(tmp_path: Path) -> None:
    """Bytes pieces written through a UTF-8 text file's buffer (or decoded for a StringIO)
    give the same document as str pieces; empty pieces are skipped."""
    items = [{"n": "é"}, [1.5, "a,b"], 3]
    pieces = [encode_items(items[:2]), b"", encode_items(items[2:])]
    expected = json.dumps({"x": "ü", "annotations": items, "y": []}, ensure_ascii=False) + "\n"
    path = tmp_path / "doc.json"
    with open(path, "w", encoding="utf-8", newline="") as out:
        write_document(out, [("x", "ü"), ("annotations", Pieces(pieces)), ("y", Pieces([]))])
    assert path.read_text(encoding="utf-8") == expected
    buffer = io.StringIO()
    write_document(buffer, [("x", "ü"), ("annotations", Pieces(pieces)), ("y", Pieces([]))])
    assert buffer.getvalue() == expected


def test_canonical_text_refuses_nan_and_keeps_unicode() -> None:
    """Canonical json keeps non-ASCII text and refuses NaN; no items is empty text."""
    assert DUMPS({"name": "é"}) == '{"name": "é"}'
    with pytest.raises(ValueError):
        DUMPS([float("nan")])
    assert dumps_items([]) == ""


def test_no_gc_restores_the_collector() -> None:
    """Off inside, back as it was after, even when the block raises."""
    was = gc.isenabled()
    try:
        gc.enable()
        with pytest.raises(RuntimeError), no_gc():
            assert not gc.isenabled()
            raise RuntimeError()
        assert gc.isenabled()
        gc.disable()
        with no_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


# ---------------------------------------------------------------- what no json reader says


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (COCO, []),
        (b'{"annotations": [{"id": 1}], "images": [], "annotations": []}', ["annotations"]),
        (b'{"a": 1, "b": {"a": 2}, "c": [1, {"c": 3}]}', []),  # nested keys are not top-level
        (b' {\n"a" : 1 ,\t"a\\"b": 2 , "a": [] }', ["a"]),
        (b'{"images": [], "x": {"y": 1}, "x": 2, "images": [1]}', ["images"]),
    ],
)
def test_duplicate_top_level_keys_are_found(data: bytes, expected: list[str]) -> None:
    """json readers keep the last member of a key; the ignored earlier one is found (the
    first, in file order) from the gaps between the kept raw slices."""
    lazy = load_lazy(data)
    assert lazy is not None and lazy.duplicate_keys() == expected
    value, found = loads_python(data)
    assert value == json.loads(data) and found == sorted(set(found), key=found.index)
    assert set(expected) <= set(found)


def test_python_json_finds_duplicates_only_at_the_top() -> None:
    value, found = loads_python(b'{"a": NaN, "b": {"c": 1, "c": 2}, "a": 1}')
    assert value == {"a": 1, "b": {"c": 2}} and found == ["a"]
    assert loads_python(b'[{"a": 1, "a": 2}]') == ([{"a": 2}], [])


def test_nesting_beyond_the_recursion_limit_falls_back() -> None:
    """msgspec's RecursionError is a file it cannot read (Python's json then names it)."""
    assert load_lazy(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") is None


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 1 << 24])
def test_utf8_problem_names_the_first_bad_byte_whatever_the_chunks(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Checked in chunks (a character may straddle two): the first bad byte, line, column."""
    monkeypatch.setattr(cocojson, "_UTF8_CHUNK", chunk)
    good = '{"a": "é€😀",\n "b": "ok"}'.encode()
    assert utf8_problem(good) is None and utf8_problem(b'{"a": 1}') is None
    bad = good[:-3] + b"\xe9" + good[-3:]
    at = bad.index(b"\xe9")
    column = at - bad.index(b"\n")
    assert utf8_problem(bad) == (
        f"not UTF-8 text: byte 0xe9 at line 2 column {column}; a Latin-1 or Windows-1252 "
        "file? save it as UTF-8"
    )
    assert "0xf0 at line 1 column 13;" in (utf8_problem(good[:14]) or "")  # cut inside 😀
