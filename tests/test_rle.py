"""COCO compressed RLE decoded in numpy: the same runs as pycocotools, corrupt text refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from pipeline.files.rle import decode_strings, foreground_runs, string_counts

binary_masks = arrays(
    np.uint8,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.integers(0, 1),
)
# Any run lengths: zero runs, long runs, values that need several 5-bit groups.
runs = st.lists(
    st.one_of(st.integers(0, 40), st.integers(0, 3_000_000)), min_size=1, max_size=40
).filter(lambda r: sum(r) > 0)


def runs_of(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO runs (column-major, background first), computed without pycocotools."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    out = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *out] if flat[0] else out


def compressed(counts: list[int]) -> bytes:
    """pycocotools' compressed string for an uncompressed ``counts`` list (one row image)."""
    size = [1, sum(counts)]
    return mask_utils.frPyObjects({"size": size, "counts": counts}, *size)["counts"]


@settings(max_examples=150, deadline=None)
@given(mask=binary_masks)
def test_pycocotools_encoding_decodes_to_the_masks_runs(mask: np.ndarray) -> None:
    """mask -> pycocotools encode -> our decode gives the mask's runs."""
    rle = mask_utils.encode(np.asfortranarray(mask))
    assert string_counts(rle["counts"].decode("ascii")).tolist() == runs_of(mask)


@settings(max_examples=150, deadline=None)
@given(counts=runs)
def test_any_run_lengths_round_trip(counts: list[int]) -> None:
    """Run lengths -> pycocotools' string -> our decode: the same lengths, zeros included."""
    assert string_counts(compressed(counts).decode("ascii")).tolist() == counts


@settings(max_examples=60, deadline=None)
@given(many=st.lists(runs, max_size=8))
def test_many_strings_decode_like_each_one(many: list[list[int]]) -> None:
    """Decoding a batch gives each string's runs in order, ``owner`` naming the string."""
    strings = [compressed(c) for c in many]
    counts, owner = decode_strings(strings)
    assert counts.tolist() == [v for c in many for v in c]
    assert owner.tolist() == [i for i, c in enumerate(many) for _ in c]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6),
)
def test_foreground_runs_paint_what_pycocotools_decodes(
    shape: tuple[int, int], seeds: list[int]
) -> None:
    """(start, length, owner) of every foreground run repaint each mask exactly."""
    masks = [(np.random.default_rng(s).random(shape) < 0.4).astype(np.uint8) for s in seeds]
    rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
    counts, owner = decode_strings([r["counts"] for r in rles])
    start, length, which = foreground_runs(counts, owner, len(rles))
    assert (length > 0).all()
    painted = np.zeros((len(rles), shape[0] * shape[1]), np.uint8)
    for s, n, k in zip(start, length, which, strict=True):
        painted[k, s : s + n] += 1
    for k, rle in enumerate(rles):
        expected = mask_utils.decode(rle).ravel(order="F")
        assert np.array_equal(painted[k], expected)


def test_empty_inputs() -> None:
    """No string, or empty strings among others, decode to nothing for those strings."""
    counts, owner = decode_strings([])
    assert counts.size == 0 and owner.size == 0
    counts, owner = decode_strings([b"", compressed([2, 3]), b""])
    assert counts.tolist() == [2, 3] and owner.tolist() == [1, 1]
    assert string_counts("").tolist() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12!4", "invalid character '!'"),
        ("12p", "invalid character 'p'"),
        ("1P", "truncated"),  # 'P' = 48 + 32: "more groups follow", and nothing does
        ("1" + "P" * 12 + "1", "longer than 64 bits"),
        ("1é", "non-ASCII"),
    ],
)
def test_corrupt_strings_are_value_errors(text: str, message: str) -> None:
    """Corrupt counts are a ValueError saying what is wrong (validate lists it)."""
    with pytest.raises(ValueError, match=message):
        string_counts(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=127), max_size=30))
def test_any_ascii_text_decodes_or_is_refused(text: str) -> None:
    """Hostile text never crashes the decoder: it gives int64 runs or a ValueError."""
    try:
        counts = string_counts(text)
    except ValueError:
        return
    assert counts.dtype == np.int64


def test_negative_values_are_decoded_not_hidden() -> None:
    """A sign bit in the text gives a negative run, so validate can refuse the annotation."""
    counts = string_counts("1" + chr(48 + 0x10 + 0x0F))  # 1, then -1
    assert counts.tolist() == [1, -1]
