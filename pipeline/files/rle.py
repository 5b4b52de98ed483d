"""COCO run-length encoding, decoded in numpy: the one decoder validate and masks share.

COCO's compressed RLE string (pycocotools' ``rleFrString``) stores each run length as a
little-endian sequence of 5-bit groups, one character (``chr(48 + c)``) per group; bit 0x20
means "more groups follow", bit 0x10 of the last group is the sign. Every value after the
second is stored as the difference to the value two places before it. Decoding is vectorised
over all strings of an image, because decoding them one by one in Python (or decoding
full-size masks with pycocotools) is what makes mask loops slow; and it checks the text, so a
corrupt string is a listed problem instead of undefined behaviour in the C decoder.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_strings", "foreground_runs", "string_counts"]


def decode_strings(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed RLE strings: ``(counts, owner)``, owner = string index.

    Raises ValueError for a character outside the alphabet or a truncated value.
    """
    if not strings:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lengths = np.fromiter((len(s) for s in strings), np.int64, len(strings))
    chars = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    if chars.size and ((chars < 0) | (chars > 63)).any():
        bad = int(chars[(chars < 0) | (chars > 63)][0]) + 48
        raise ValueError(f"invalid character {chr(bad)!r} in counts")
    ends = (chars & 0x20) == 0  # a value ends at a character without the "more" bit
    string_end = np.cumsum(lengths)[lengths > 0] - 1
    if not ends[string_end].all():
        raise ValueError("truncated counts string")
    values, owner = _values(chars, ends, lengths)
    _undo_differences(values, owner, len(strings))
    return values, owner


# 12 groups of 5 bits hold any int64; a longer value is corrupt, not a run length.
_MAX_GROUPS = 12


def _values(
    chars: np.ndarray, ends: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed values of the 5-bit groups and the string each value belongs to."""
    char_owner = np.repeat(np.arange(lengths.size), lengths)
    starts = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
    group = np.cumsum(np.concatenate([[0], ends[:-1]]))
    digit = np.arange(chars.size) - starts[group]
    if digit.size and digit.max() >= _MAX_GROUPS:
        raise ValueError("a run length in counts is longer than 64 bits")
    values = np.add.reduceat((chars & 0x1F) << (5 * digit), starts) if chars.size else chars
    last = np.flatnonzero(ends)
    negative = (chars[last] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (digit[last][negative] + 1))
    return values, char_owner[last]


def _undo_differences(values: np.ndarray, owner: np.ndarray, n_strings: int) -> None:
    """Within a string, value j > 2 is stored as a difference to value j - 2: add them up."""
    first = np.searchsorted(owner, np.arange(n_strings))
    j = np.arange(owner.size) - first[owner]
    for parity, base in ((1, 1), (0, 2)):
        sel = np.flatnonzero((j % 2 == parity) & (j >= base))
        if sel.size:
            picked = values[sel]
            csum = np.cumsum(picked)
            head = np.concatenate([[True], owner[sel][1:] != owner[sel][:-1]])
            head_at = np.maximum.accumulate(np.where(head, np.arange(sel.size), 0))
            values[sel] = csum - (csum - picked)[head_at]


def string_counts(counts: str) -> np.ndarray:
    """Run lengths of one compressed RLE string; ValueError when it is corrupt."""
    try:
        data = counts.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("counts contain a non-ASCII character") from None
    return decode_strings([data])[0]


def foreground_runs(
    counts: np.ndarray, owner: np.ndarray, n_rles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, rle index) of every foreground run, in column-major pixel order."""
    first = np.searchsorted(owner, np.arange(n_rles))
    j = np.arange(owner.size) - first[owner]
    ends = np.cumsum(counts)
    base = np.concatenate([[0], ends])[first]  # total of all earlier strings
    begin = ends - counts - base[owner]
    fg = (j % 2 == 1) & (counts > 0)
    return begin[fg], counts[fg], owner[fg]
