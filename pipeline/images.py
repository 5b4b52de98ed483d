"""Reading photos so their pixels line up with the json sizes (and so with the masks).

Phones store many photos unrotated with an EXIF orientation tag. Annotation tools disagree on
whether they label the raw pixels or the rotated view, so the json ``width``/``height`` is the
arbiter: the raw pixels are used when they have the json size; when they do not, but the
EXIF-oriented pixels do, the oriented ones are used (validate lists those images under
``image_exif_orientation``). Every stage and the trainer API read images through this module, so
they all make the same choice.

The size is read from the file header first (Pillow's lazy ``Image.open`` parses the header
only), so a file whose header promises far more pixels than the json (a decompression bomb) is
refused before a single pixel is decoded, and a good file is decoded exactly once.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# Keeps 16-bit depth and alpha; OpenCV then ignores EXIF orientation.
_RAW = cv2.IMREAD_UNCHANGED
# Keeps depth and colour but applies EXIF orientation (alpha is dropped: JPEG has none).
_ORIENTED = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Decoded:
    """An image read against an expected size.

    ``status``: ``ok`` (raw pixels have the size), ``exif`` (only the EXIF-oriented pixels
    have it), ``mismatch`` (neither; nothing decoded when the header already says so) or
    ``unreadable``. ``size`` is the (height, width) found, when known.
    """

    image: np.ndarray | None
    status: str
    size: tuple[int, int] | None = None


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Pillow's bomb check off while parsing a header: callers compare sizes themselves."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_header(data: bytes) -> tuple[tuple[int, int], int] | None:
    """((height, width) of the raw pixels, EXIF orientation 1..8), without decoding pixels."""
    with _own_pixel_limit():
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                orientation = _orientation(im)
        except Exception:  # noqa: BLE001 - any parser failure means "not a header we know"
            return None
    return (int(height), int(width)), orientation


def _orientation(im: Image.Image) -> int:
    """EXIF orientation from the header. PNG's ``getexif()`` would decode every pixel to look
    for an eXIf chunk after the image data, so for PNG only a chunk before it counts."""
    try:
        if im.format == "PNG":
            exif = Image.Exif()
            raw = im.info.get("exif")
            if raw:
                exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is no orientation
        return 1
    return value if 1 <= value <= 8 else 1


def decode_image(data: bytes, shape: tuple[int, int] | None = None) -> Decoded:
    """Decode ``data`` once, oriented so it has ``shape`` (height, width) when it can.

    Without ``shape`` the raw pixels are returned. Files Pillow cannot parse (formats only
    OpenCV reads) are decoded raw, within OpenCV's own pixel limit.
    """
    if not data:
        return Decoded(None, "unreadable")
    header = read_header(data)
    if header is None or shape is None:
        return _decode(data, _RAW, shape)
    raw, orientation = header
    if raw == tuple(shape):
        return _decode(data, _RAW, shape)
    if orientation in _SWAPPING and (raw[1], raw[0]) == tuple(shape):
        decoded = _decode(data, _ORIENTED, shape)
        return Decoded(decoded.image, "exif", decoded.size) if decoded.status == "ok" else decoded
    return Decoded(None, "mismatch", raw)


def _decode(data: bytes, flags: int, shape: tuple[int, int] | None) -> Decoded:
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        return Decoded(None, "unreadable")
    size = (int(image.shape[0]), int(image.shape[1]))
    if shape is not None and size != tuple(shape):
        return Decoded(None, "mismatch", size)
    return Decoded(image, "ok", size)


def read_image(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` as OpenCV reads it (BGR), oriented to match ``shape`` if given."""
    with open(path, "rb") as fh:
        decoded = decode_image(fh.read(), shape)
    if decoded.status == "mismatch":
        found = decoded.size or (0, 0)
        want = shape or (0, 0)
        raise ValueError(f"{path}: image is {found[1]}x{found[0]}, expected {want[1]}x{want[0]}")
    if decoded.image is None:
        raise ValueError(f"{path}: not a decodable image")
    return decoded.image
