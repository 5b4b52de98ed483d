"""COCO json held as its bytes: small parts decoded, the big lists as raw slices.

At COCO scale (118k images, 860k annotations, a 460 MB file) a fully parsed copy takes about
six times the file in Python objects and ``json.load`` needs 16 s. msgspec finds every
annotation's byte range in under a second without building it (``msgspec.Raw`` slices point
into the one copy of the file), so a stage decodes annotations one at a time, or only the
fields it needs (a typed :class:`AnnotationRef`), and sends workers only their own items.

msgspec reads strict JSON only; a file with ``NaN``/``Infinity`` or integers beyond 64 bits
(TACO has ``Infinity``), or nested deeper than the recursion limit, makes :func:`load_lazy`
return None and the caller falls back to Python's json (:func:`loads_python`), which accepts
the first and names the last.

What no json reader says (validate refuses both): msgspec skips a raw value without checking
that its strings are UTF-8 (:func:`utf8_problem` checks the whole file), and every json reader
keeps the last of two members with one key (``"annotations"`` twice: the first list is
silently ignored; :meth:`LazyCoco.duplicate_keys`, :func:`loads_python`).

Writing: :func:`write_document` streams a json document whose big lists are produced piece by
piece, byte-identical to ``json.dumps(doc, ensure_ascii=False, allow_nan=False)``, the canonical
format of every json the stages write. Cost: linear in the file size.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec
import numpy as np

__all__ = [
    "AnnotationRef",
    "DUMPS",
    "LazyCoco",
    "MISSING",
    "Pieces",
    "decode",
    "decode_checked",
    "decode_items",
    "dumps_items",
    "encode_items",
    "load_lazy",
    "loads_python",
    "no_gc",
    "utf8_problem",
    "write_document",
]

# The canonical json text of one value (what json.dumps writes inside a document).
DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_RAW_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


# An annotation without an "id" key (``"id": null`` is None): the error says which of the two.
MISSING = msgspec.UNSET


class AnnotationRef(msgspec.Struct, gc=False):
    """The fields a stage needs to route an annotation, decoded without the segmentation."""

    id: Any = MISSING
    image_id: Any = None


_REF_LIST = msgspec.json.Decoder(list[AnnotationRef])


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Decoding builds millions of acyclic objects: the cycle collector only slows it down."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class LazyCoco:
    """The top level of a COCO json: each key's raw slice, in file order."""

    data: bytes
    top: dict[str, msgspec.Raw]

    def value(self, key: str) -> Any:
        with no_gc():
            return decode(self.top[key])

    def items(self, key: str) -> list[msgspec.Raw]:
        """A top-level list as raw slices, one per item (ValueError if it is not a list)."""
        try:
            return _RAW_LIST.decode(self.top[key])
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None

    def refs(self, key: str = "annotations") -> list[AnnotationRef]:
        """Every item's id and image id (ValueError when an item is not an object)."""
        try:
            with no_gc():
                return _REF_LIST.decode(self.top[key])
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None

    def duplicate_keys(self) -> list[str]:
        """Top-level keys written more than once, in file order (empty when none).

        The decoder keeps the last member of a key, so the earlier one's bytes lie between two
        kept values: each gap between the kept values (zero-copy slices of :attr:`data`) must be
        one ``, "key":`` only. Cost: a regex on each gap's first bytes.
        """
        base, size = _address(self.data), len(self.data)
        spans = sorted((_address(raw) - base, len(raw)) for raw in self.top.values())
        if any(start < 0 or start + length > size for start, length in spans):
            return []  # not slices of data (another msgspec): nothing to compare
        found: list[str] = []
        end = 0
        for start, length in spans:
            if not _MEMBER_GAP.fullmatch(self.data, end, start):
                key = _MEMBER_KEY.match(self.data, end, start)
                found.append(json.loads(key.group(1)) if key else "?")
            end = start + length
        return list(dict.fromkeys(found))


# Between two top-level values: the next member's ``, "key": `` (``{"key": `` before the first).
_MEMBER_GAP = re.compile(rb'\s*[{,]\s*"(?:[^"\\]|\\.)*"\s*:\s*')
_MEMBER_KEY = re.compile(rb'\s*[{,]\s*("(?:[^"\\]|\\.)*")\s*:')


def _address(buffer: Any) -> int:
    """Where a bytes-like object's first byte is in memory."""
    return int(np.frombuffer(buffer, np.uint8).ctypes.data)


def load_lazy(data: bytes) -> LazyCoco | None:
    """``data`` as a :class:`LazyCoco`, or None when msgspec cannot read it (see module doc)."""
    try:
        return LazyCoco(data, _RAW_TOP.decode(data))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def loads_python(data: bytes) -> tuple[Any, list[str]]:
    """(value, top-level keys written more than once) by Python's json, which reads what
    msgspec refuses (``NaN``, ``Infinity``, integers beyond 64 bits). Raises as ``json.loads``.

    The pairs hook sees every object; the top level's closes last, so the last call's pairs
    are the top level's.
    """
    last: list[Any] = [None, ()]

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        last[0], last[1] = obj, pairs
        return obj

    value = json.loads(data, parse_constant=_constant, object_pairs_hook=pairs_hook)
    if last[0] is not value or len(value) == len(last[1]):
        return value, []
    counts = Counter(key for key, _ in last[1])
    return value, [key for key in value if counts[key] > 1]


def _constant(name: str) -> float:
    return float(name.lower())


_UTF8_CHUNK = 1 << 24


def utf8_problem(data: bytes) -> str | None:
    """Where ``data`` stops being UTF-8 (byte, line, column), or None.

    ASCII is checked at memory speed; other text is decoded in chunks of 16 MB, each dropped
    at once (about a second for 460 MB).
    """
    if data.isascii():
        return None
    view, decoder = memoryview(data), codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(data), _UTF8_CHUNK):
        carried = len(decoder.getstate()[0])  # a sequence split by the previous chunk's end
        try:
            decoder.decode(view[start : start + _UTF8_CHUNK], start + _UTF8_CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            return _not_utf8(data, start - carried + exc.start)
    return None


# What a file that is no text at all holds, by its first bytes.
_ARCHIVES = {
    b"\x1f\x8b": "gzip-compressed: gunzip it first",
    b"PK\x03\x04": "a zip archive: unzip it first",
}


def _not_utf8(data: bytes, at: int) -> str:
    line = data.count(b"\n", 0, at) + 1
    column = at - (data.rfind(b"\n", 0, at) + 1) + 1
    hint = next(
        (text for magic, text in _ARCHIVES.items() if data.startswith(magic)),
        "a Latin-1 or Windows-1252 file? save it as UTF-8",
    )
    return f"not UTF-8 text: byte 0x{data[at]:02x} at line {line} column {column}; {hint}"


def decode(raw: bytes | msgspec.Raw) -> Any:
    """One item (an annotation) decoded into Python objects, exactly as json.loads builds it."""
    return decode_checked(raw)[0]


def decode_items(joined: bytes) -> list[tuple[Any, bool]]:
    """Items joined by ``,`` (raw json), each as :func:`decode_checked` gives it: one msgspec
    call for them all, or one each when one of them needs Python's json."""
    listed = b"[" + joined + b"]"
    with no_gc():
        try:
            return [(value, False) for value in _DECODER.decode(listed)]
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        try:
            return [decode_checked(raw) for raw in _RAW_LIST.decode(listed)]
        except (msgspec.DecodeError, msgspec.ValidationError):  # NaN: msgspec cannot split it
            return [decode_checked(raw) for raw in _python_items(joined)]


def _python_items(joined: bytes) -> Iterator[bytes]:
    """The raw json of each item of ``joined``, split by Python's json (which reads NaN)."""
    text, scan = joined.decode("utf-8"), json.JSONDecoder(parse_constant=_constant)
    start = 0
    while start < len(text):
        end = scan.raw_decode(text, start)[1]
        yield text[start:end].encode("utf-8")
        start = end + 1  # the "," between two items


def decode_checked(raw: bytes | msgspec.Raw) -> tuple[Any, bool]:
    """(value, whether it needed Python's json): msgspec refuses numbers beyond the float
    range, which json reads as inf, a value the canonical json must repair."""
    try:
        return _DECODER.decode(raw), False
    except (msgspec.DecodeError, msgspec.ValidationError):
        return json.loads(bytes(raw), parse_constant=_constant), True


def dumps_items(items: list[Any]) -> str:
    """``", ".join(DUMPS(item) for item in items)``, about twice as fast."""
    return encode_items(items).decode("utf-8")


def encode_items(items: list[Any]) -> bytes:
    """:func:`dumps_items` as UTF-8 bytes (what a worker sends and the writer writes).

    msgspec writes compact json, its formatter adds json.dumps' spaces. Where msgspec's number
    text could differ from Python's repr (an exponent, or a decimal below 1e-4), json.dumps
    writes the batch instead, so the bytes are always the same.
    """
    if not items:
        return b""
    spaced = _spaced(_ENCODER.encode(items))
    return DUMPS(items)[1:-1].encode("utf-8") if spaced is None else spaced[1:-1]


# Numbers msgspec may write otherwise than Python's repr: an exponent (msgspec writes 1e16 and
# 1.5e-7: an e, then a digit or a sign) or a decimal below 1e-4 (0.00001). Looked for in the
# whole text, strings included: a string that looks like one only costs the slower json.dumps.
# (One pattern per letter: a pattern that starts with one literal byte is searched at memchr
# speed, one that starts with a class is tried at every byte.)
_EXPONENTS = (re.compile(rb"e[-+0-9]"), re.compile(rb"E[-+0-9]"))


def _spaced(compact: bytes) -> bytes | None:
    """Compact json with json.dumps' separators (msgspec's formatter: a space after each
    "," and ":" outside strings), or None if its numbers may differ."""
    if b"0.0000" in compact or any(pattern.search(compact) for pattern in _EXPONENTS):
        return None
    return msgspec.json.format(compact, indent=0)


def write_document(out: TextIO, fields: Iterable[tuple[str, Any]]) -> None:
    """Write ``{key: value, ...}`` to ``out`` as ``json.dumps`` would, plus a newline.

    A value is written with :data:`DUMPS`, unless it is a :class:`Pieces` (the json texts of a
    list's items, produced lazily and joined as json.dumps joins them). Callers open ``out``
    with :func:`pipeline.files.fsio.atomic_writer`.
    """
    out.write("{")
    for index, (key, value) in enumerate(fields):
        out.write((", " if index else "") + DUMPS(key) + ": ")
        if isinstance(value, Pieces):
            _write_list(out, value)
        else:
            out.write(DUMPS(value))
    out.write("}\n")


class Pieces:
    """The json texts of a list's items, written one after the other (never all held).

    A text is a str, or UTF-8 bytes (one or more items joined by ``", "``, as
    :func:`encode_items` gives them): bytes go to a UTF-8 file's binary buffer as they are.
    Empty texts are skipped.
    """

    def __init__(self, texts: Iterable[str | bytes]) -> None:
        self.texts = texts


def _write_list(out: TextIO, pieces: Pieces) -> None:
    out.write("[")
    raw = _binary(out)
    first = True
    for text in pieces.texts:
        if not text:
            continue
        if not first:
            out.write(", ")
        if isinstance(text, str):
            out.write(text)
        elif raw is not None:
            out.flush()
            raw.write(text)
        else:
            out.write(text.decode("utf-8"))
        first = False
    out.write("]")


def _binary(out: TextIO) -> Any:
    """The binary buffer under a UTF-8 text file, or None (a StringIO)."""
    buffer = getattr(out, "buffer", None)
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
    return buffer if buffer is not None and encoding == "utf8" else None
