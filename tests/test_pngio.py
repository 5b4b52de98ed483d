"""Indexed PNG masks: OpenCV's bytes with a palette, read back as the same indices and colours."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from pipeline.files.classes import make_palette
from pipeline.files.contracts import read_mask
from pipeline.files.pngio import encode_indexed_png

masks = arrays(
    np.uint8,
    st.tuples(st.integers(1, 48), st.integers(1, 48)),
    elements=st.integers(0, 255),
)
palettes = arrays(np.uint8, (256, 3), elements=st.integers(0, 255))


def chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, payload, stored CRC) of every chunk, read independently of the module."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        out.append((kind, payload, crc))
        pos += 12 + length
    return out


@settings(max_examples=60, deadline=None)
@given(mask=masks, palette=palettes)
def test_pillow_reads_back_the_indices_and_the_palette(
    mask: np.ndarray, palette: np.ndarray
) -> None:
    """Round trip through PIL: mode P, the same indices, the same 256 colours."""
    with Image.open(io.BytesIO(encode_indexed_png(mask, palette))) as im:
        im.load()
        assert im.mode == "P" and im.size == (mask.shape[1], mask.shape[0])
        assert np.array_equal(np.asarray(im), mask)
        assert im.getpalette() == palette.ravel().tolist()


@settings(max_examples=30, deadline=None)
@given(mask=masks, palette=palettes)
def test_libpng_expands_the_palette_to_its_colours(mask: np.ndarray, palette: np.ndarray) -> None:
    """OpenCV (libpng) sees colour ``palette[index]`` at each pixel: the PLTE is the palette."""
    colours = cv2.imdecode(
        np.frombuffer(encode_indexed_png(mask, palette), np.uint8), cv2.IMREAD_COLOR
    )
    assert np.array_equal(colours[:, :, ::-1], palette[mask])


def test_chunks_are_well_formed() -> None:
    """IHDR says 8-bit indexed, PLTE (768 bytes) sits before the data, every CRC is right."""
    mask = np.arange(35, dtype=np.uint8).reshape(5, 7)
    found = chunks(encode_indexed_png(mask, make_palette()))
    kinds = [kind for kind, _, _ in found]
    assert kinds[:2] == [b"IHDR", b"PLTE"] and kinds[-1] == b"IEND"
    assert kinds.index(b"PLTE") < kinds.index(b"IDAT")
    width, height, depth, colour = struct.unpack(">IIBB", found[0][1][:10])
    assert (width, height, depth, colour) == (7, 5, 8, 3)
    assert found[1][1] == make_palette().tobytes()
    for kind, payload, crc in found:
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc, kind


def test_contract_reader_gives_the_class_indices(tmp_path) -> None:
    """``read_mask`` (the trainers' and the report's reader) returns the indices, 255 included."""
    mask = np.array([[0, 1, 2], [255, 254, 0]], np.uint8)
    (tmp_path / "m.png").write_bytes(encode_indexed_png(mask, make_palette()))
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.uint8 and np.array_equal(out, mask)


def test_same_mask_same_bytes() -> None:
    """Encoding is deterministic: DVC sees an unchanged mask as unchanged."""
    mask = np.random.default_rng(0).integers(0, 5, (64, 80)).astype(np.uint8)
    assert encode_indexed_png(mask, make_palette()) == encode_indexed_png(
        mask.copy(), make_palette()
    )


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((4, 4), np.uint16),
        np.zeros((4, 4), np.int32),
        np.zeros((4, 4, 1), np.uint8),
        np.zeros((4, 4, 3), np.uint8),
        np.zeros(4, np.uint8),
        np.zeros((4, 4), bool),
    ],
    ids=["uint16", "int32", "hw1", "hw3", "1d", "bool"],
)
def test_only_2d_uint8_masks(mask: np.ndarray) -> None:
    """Class masks are 2-D uint8; anything else is refused, naming dtype and shape."""
    with pytest.raises(ValueError, match="mask must be 2-D uint8"):
        encode_indexed_png(mask, make_palette())
