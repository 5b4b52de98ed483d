"""EXIF orientation from the header: the json size chooses raw or oriented pixels, as Pillow
orients them, and a bomb header is sized without decoding a pixel."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from pipeline.files.orientation import EXIF, MISMATCH, RAW, choose, read_header, read_rgb
from tests.conftest import png_header_only

ORIENTATION = 0x0112
SWAPPING = (5, 6, 7, 8)
# 4 rows x 6 columns, every pixel different: any flip or rotation shows.
PIXELS = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)


def photo(orientation: int | None, fmt: str = "PNG", pixels: np.ndarray = PIXELS) -> bytes:
    """``pixels`` saved with an EXIF orientation tag (lossless formats: exact comparisons)."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(buf, fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


def pillow_raw(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def pillow_oriented(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_header_gives_raw_size_and_orientation(fmt: str, orientation: int) -> None:
    """Raw (height, width) and the tag, for every orientation and common photo format."""
    assert read_header(photo(orientation, fmt)) == ((4, 6), orientation)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_rgb_orients_like_pillows_exif_transpose(
    tmp_path: Path, fmt: str, orientation: int
) -> None:
    """Asked for the oriented size, a trainer gets exactly Pillow's ``exif_transpose``; asked
    for the raw size it gets the raw pixels. Without a swap both sizes are the same, and the
    raw pixels win (the json size is the arbiter, and it cannot tell them apart)."""
    data = photo(orientation, fmt)
    path = tmp_path / f"p.{fmt.lower()}"
    path.write_bytes(data)
    raw, oriented = pillow_raw(data), pillow_oriented(data)
    if fmt != "JPEG":
        assert np.array_equal(raw, PIXELS)
    assert np.array_equal(read_rgb(path, (4, 6)), raw)
    assert np.array_equal(read_rgb(path), raw)
    if orientation in SWAPPING:
        assert oriented.shape[:2] == (6, 4)
        assert np.array_equal(read_rgb(path, (6, 4)), oriented)
    else:
        with pytest.raises(ValueError, match=r"image is 6x4, its mask is 4x6"):
            read_rgb(path, (6, 4))


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_out_of_range_orientation_reads_as_1(value: int) -> None:
    """An orientation outside 1..8 is read as 1 (no rotation)."""
    assert read_header(photo(value)) == ((4, 6), 1)


def test_no_exif_reads_as_1() -> None:
    """Files without EXIF (PNG, BMP) have orientation 1."""
    assert read_header(photo(None)) == ((4, 6), 1)
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, "BMP")
    assert read_header(buf.getvalue()) == ((4, 6), 1)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_unparsable_data_has_no_header(data: bytes) -> None:
    """Data Pillow cannot parse gives None, never an exception."""
    assert read_header(data) is None


def test_bomb_header_is_sized_without_decoding() -> None:
    """A 10^10-pixel promise is read from the header; Pillow's own bomb limit is left as it was."""
    before = Image.MAX_IMAGE_PIXELS
    assert read_header(png_header_only(100_000, 100_000)) == ((100_000, 100_000), 1)
    assert before == Image.MAX_IMAGE_PIXELS


sizes = st.tuples(st.integers(1, 50), st.integers(1, 50))


@given(raw=sizes, orientation=st.integers(1, 8), shape=sizes)
def test_choose_prefers_raw_then_a_swap_only_when_exif_swaps(
    raw: tuple[int, int], orientation: int, shape: tuple[int, int]
) -> None:
    """The rule, for any sizes: raw when it has the json size, else EXIF only for an
    orientation that swaps width and height and when the swap has the size, else mismatch."""
    choice = choose(raw, orientation, shape)
    if raw == shape:
        assert choice == RAW
    elif orientation in SWAPPING and raw[::-1] == shape:
        assert choice == EXIF
    else:
        assert choice == MISMATCH


def test_choose_examples() -> None:
    """A few cases by hand: swap, 180 degrees, square, sizes given as lists."""
    assert choose((4, 6), 6, (6, 4)) == EXIF
    assert choose((4, 6), 3, (6, 4)) == MISMATCH  # a 180 degree turn does not swap
    assert choose((5, 5), 6, (5, 5)) == RAW  # square: the raw pixels have the size
    assert choose([4, 6], 1, (4, 6)) == RAW  # lists (from json) compare as tuples


def test_read_rgb_converts_depth_and_channels(tmp_path: Path) -> None:
    """16-bit keeps its top 8 bits, gray becomes RGB, alpha is dropped: always HxWx3 uint8."""
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    out = read_rgb(tmp_path / "g16.png", (3, 4))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], (gray16 >> 8).astype(np.uint8))
    rgba = np.dstack([PIXELS, np.full((4, 6), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "a.png", (4, 6)), PIXELS)
    gray = PIXELS[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    assert np.array_equal(read_rgb(tmp_path / "g.png"), np.dstack([gray] * 3))


def test_read_rgb_errors_name_the_file(tmp_path: Path) -> None:
    """Unreadable files and size mismatches are ValueErrors naming the file."""
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    with pytest.raises(ValueError, match=r"bad\.jpg: not a readable image"):
        read_rgb(tmp_path / "bad.jpg")
    (tmp_path / "p.png").write_bytes(photo(1))
    with pytest.raises(ValueError, match=r"p\.png: image is 6x4, its mask is 5x5"):
        read_rgb(tmp_path / "p.png", (5, 5))
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "absent.png")
