"""Photos decoded once by OpenCV: every depth and layout kept, oriented like Pillow orients them,
and brought to the dtypes the transforms take."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import array_shapes, arrays, scalar_dtypes
from PIL import Image, ImageOps

from pipeline.files.images import Decoded, decode_image, normalise_image, read_image
from tests.conftest import png_header_only

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG")
    return buf.getvalue()


def cv_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_8_bit_colour_is_bgr() -> None:
    """8-bit colour decodes as OpenCV's BGR, with status ok and the size."""
    decoded = decode_image(png(RGB), (5, 7))
    assert decoded.status == "ok" and decoded.size == (5, 7)
    assert decoded.image.dtype == np.uint8 and np.array_equal(decoded.image, RGB[:, :, ::-1])


def test_gray_stays_one_channel() -> None:
    """Gray decodes to a 2-D array, not three equal channels."""
    gray = RGB[:, :, 0]
    decoded = decode_image(png(gray, "L"), (5, 7))
    assert decoded.image.shape == (5, 7) and np.array_equal(decoded.image, gray)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_keeps_every_bit(channels: int) -> None:
    """16-bit gray, BGR and BGRA come back as uint16 with the same values."""
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    deep = RNG.integers(0, 65536, shape).astype(np.uint16)
    decoded = decode_image(cv_png(deep), (5, 7))
    assert decoded.image.dtype == np.uint16 and np.array_equal(decoded.image, deep)


def test_alpha_is_kept_as_bgra() -> None:
    """RGBA keeps its alpha as BGRA."""
    rgba = RNG.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    decoded = decode_image(png(rgba, "RGBA"), (5, 7))
    assert np.array_equal(decoded.image, rgba[:, :, [2, 1, 0, 3]])


def test_gray_with_alpha_becomes_bgra() -> None:
    """Gray+alpha keeps its alpha, the gray copied to three channels."""
    gray, alpha = RGB[:, :, 0], RGB[:, :, 1]
    decoded = decode_image(png(np.dstack([gray, alpha]), "LA"), (5, 7))
    assert np.array_equal(decoded.image, np.dstack([gray, gray, gray, alpha]))


def test_palette_image_is_expanded_to_colours() -> None:
    """An indexed photo is decoded to its colours, not its indices."""
    im = Image.fromarray(RGB).convert("P")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    expected = np.asarray(im.convert("RGB"))[:, :, ::-1]
    assert np.array_equal(decode_image(buf.getvalue(), (5, 7)).image, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int) -> None:
    """A photo whose oriented view has the json size decodes to Pillow's ``exif_transpose``
    (status ``exif``); asked for the raw size it decodes raw (status ``ok``). Either way the
    file's orientation comes back (validate lists a tag ignored in favour of the raw pixels)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, "PNG", exif=exif.tobytes())
    data = buf.getvalue()
    raw = decode_image(data, (5, 7))
    assert raw.status == "ok" and np.array_equal(raw.image, RGB[:, :, ::-1])
    assert raw.orientation == orientation
    turned = decode_image(data, (7, 5))
    if orientation in (5, 6, 7, 8):
        with Image.open(io.BytesIO(data)) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))[:, :, ::-1]
        assert turned.status == "exif" and turned.size == (7, 5)
        assert np.array_equal(turned.image, expected)
    else:
        assert turned == Decoded(None, "mismatch", (5, 7), orientation)


def test_without_shape_the_raw_pixels_come_back() -> None:
    """Without an expected shape the raw pixels come back."""
    decoded = decode_image(png(RGB))
    assert decoded.status == "ok" and np.array_equal(decoded.image, RGB[:, :, ::-1])


def test_bomb_header_is_refused_before_decoding() -> None:
    """The header alone says the size differs: no pixel is decoded."""
    assert decode_image(png_header_only(60_000, 60_000), (10, 10)) == Decoded(
        None, "mismatch", (60_000, 60_000)
    )


@pytest.mark.parametrize("data", [b"", b"garbage", png(RGB)[:40]])
def test_unreadable_data(data: bytes) -> None:
    """Empty, garbage or truncated data gives no image."""
    assert decode_image(data, (5, 7)).status in ("unreadable", "mismatch")
    assert decode_image(data).image is None


def test_read_image_errors_say_why(tmp_path: Path) -> None:
    """Sizes are written width x height, the photo's first, then the mask's."""
    (tmp_path / "a.png").write_bytes(png(RGB))
    assert np.array_equal(read_image(tmp_path / "a.png", (5, 7)), RGB[:, :, ::-1])
    with pytest.raises(ValueError, match=r"image is 7x5 but its mask is 9x8"):
        read_image(tmp_path / "a.png", (8, 9))
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        read_image(tmp_path / "b.png")


# ---------------------------------------------------------------- normalise_image


def test_uint8_and_uint16_pass_through_untouched() -> None:
    """uint8 and uint16 images are returned as they are (no copy)."""
    for image in (RGB, RGB.astype(np.uint16) * 257, RGB[:, :, 0]):
        assert normalise_image(image) is image


def test_dtype_rules() -> None:
    """bool -> 0/255 uint8; other ints clipped to uint16; floats -> float32 in [0, 1]."""
    flags = np.array([[True, False]])
    assert normalise_image(flags).tolist() == [[255, 0]]
    assert normalise_image(flags).dtype == np.uint8
    ints = np.array([[-5, 70_000, 12]], np.int32)
    out = normalise_image(ints)
    assert out.dtype == np.uint16 and out.tolist() == [[0, 65535, 12]]
    floats = np.array([[np.nan, np.inf, -np.inf, 1.5, -0.5, 0.25]], np.float64)
    out = normalise_image(floats)
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0, 0.25]]


def test_layout_rules() -> None:
    """HxWx1 becomes HxW; gray+alpha becomes BGRA; other channel counts are refused."""
    assert normalise_image(RGB[:, :, :1]).shape == (5, 7)
    la = np.dstack([RGB[:, :, 0], RGB[:, :, 1]])
    assert np.array_equal(normalise_image(la), np.dstack([la[:, :, 0]] * 3 + [la[:, :, 1]]))
    for bad in (np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2, 2, 2), np.uint8), np.zeros(3)):
        with pytest.raises(ValueError, match="unsupported image layout"):
            normalise_image(bad)
    with pytest.raises(ValueError, match="unsupported image dtype"):
        normalise_image(np.zeros((2, 2), np.complex64))


images = arrays(
    scalar_dtypes().filter(lambda d: d.kind in "biuf"),
    array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5).filter(
        lambda s: len(s) == 2 or s[2] in (1, 2, 3, 4)
    ),
)


# float64 beyond float32's range overflows to inf in the cast (numpy warns), then becomes 1 or 0.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@settings(max_examples=200, deadline=None)
@given(images)
def test_any_supported_image_becomes_what_transforms_take(image: np.ndarray) -> None:
    """Whatever the dtype and values: uint8, uint16 or float32 in [0, 1]; gray, BGR or BGRA."""
    out = normalise_image(image)
    assert out.dtype in (np.uint8, np.uint16, np.float32)
    assert out.ndim == 2 or out.shape[2] in (3, 4)
    assert out.shape[:2] == image.shape[:2]
    if out.dtype == np.float32:
        assert np.isfinite(out).all() and out.min(initial=0) >= 0 and out.max(initial=0) <= 1
