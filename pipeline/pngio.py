"""Indexed (mode P) PNG masks, written and read with OpenCV's fast PNG codec.

OpenCV writes 8-bit grayscale PNGs but no palette. An 8-bit grayscale PNG and an 8-bit
indexed PNG carry the same pixel bytes, so we encode with OpenCV, switch the header's colour
type to 3 and add a PLTE chunk. Reading reverses the trick, because ``cv2.imread`` would
expand the palette to colours and lose the class indices. PIL's ``Image.open`` reads these
files as mode ``P`` with the indices intact.
"""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np

from pipeline.fsio import atomic_write_bytes

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# OpenCV's defaults (level 1, Z_RLE) are fastest here; an explicit level changes the strategy.
_ENCODE_PARAMS: list[int] = []


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, out = len(_SIGNATURE), []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def encode_indexed_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8 class-index mask with ``palette`` (256x3 RGB) embedded."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be 2-D uint8, got {mask.dtype} {mask.shape}")
    ok, buf = cv2.imencode(".png", mask, _ENCODE_PARAMS)
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8 array
        raise RuntimeError("PNG encoding failed")
    chunks = _chunks(buf.tobytes())
    out = [_SIGNATURE]
    for kind, payload in chunks:
        if kind == b"IHDR":
            payload = payload[:9] + b"\x03" + payload[10:]  # colour type 0 -> 3 (indexed)
            out.append(_chunk(kind, payload))
            out.append(_chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).tobytes()))
        else:
            out.append(_chunk(kind, payload))
    return b"".join(out)


def write_indexed_png(path: str | os.PathLike, mask: np.ndarray, palette: np.ndarray) -> None:
    atomic_write_bytes(path, encode_indexed_png(mask, palette))


def decode_indexed_png(data: bytes) -> np.ndarray:
    """Class indices of an 8-bit indexed (or grayscale) PNG, as a 2-D uint8 array."""
    chunks = _chunks(data)
    ihdr = chunks[0][1]
    if ihdr[8] != 8 or ihdr[9] not in (0, 3):
        raise ValueError("expected an 8-bit indexed or grayscale PNG mask")
    if ihdr[9] == 3:
        parts = [_SIGNATURE, _chunk(b"IHDR", ihdr[:9] + b"\x00" + ihdr[10:])]
        parts += [_chunk(k, p) for k, p in chunks[1:] if k not in (b"PLTE", b"tRNS")]
        data = b"".join(parts)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2:
        raise ValueError("could not decode PNG mask")
    return img


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask written by the masks stage: class index per pixel (0 bg, 255 ignore)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return decode_indexed_png(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
