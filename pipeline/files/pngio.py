"""Indexed (mode P) PNG masks, encoded with OpenCV's fast PNG codec.

OpenCV writes 8-bit grayscale PNGs but no palette. An 8-bit grayscale PNG and an 8-bit
indexed PNG carry the same pixel bytes, so we encode with OpenCV, switch the header's colour
type to 3 and add a PLTE chunk. Masks are read back by :func:`pipeline.files.contracts.read_mask`
(Pillow returns the indices of a mode P image; ``cv2.imread`` would expand the palette).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

__all__ = ["encode_indexed_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# OpenCV's defaults (level 1, Z_RLE) are fastest here; an explicit level changes the strategy.
_ENCODE_PARAMS: list[int] = []


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return struct.pack(">I", len(payload)) + kind + payload + crc


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = len(_SIGNATURE), []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def encode_indexed_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8 class-index mask with ``palette`` (256x3 RGB) embedded."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be 2-D uint8, got {mask.dtype} {mask.shape}")
    ok, buf = cv2.imencode(".png", mask, _ENCODE_PARAMS)
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8 array
        raise RuntimeError("PNG encoding failed")
    out = [_SIGNATURE]
    for kind, payload in _chunks(buf.tobytes()):
        if kind == b"IHDR":
            payload = payload[:9] + b"\x03" + payload[10:]  # colour type 0 -> 3 (indexed)
            out.append(_chunk(kind, payload))
            out.append(_chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).tobytes()))
        else:
            out.append(_chunk(kind, payload))
    return b"".join(out)
