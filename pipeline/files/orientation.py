"""Which pixels of a photo line up with its json size, decided from the file header alone.

Phones store many photos unrotated with an EXIF orientation tag. Annotation tools disagree on
whether they label the raw pixels or the rotated view, so the json ``width``/``height`` is the
arbiter: the raw pixels are used when they have the json size; when they do not, but the
EXIF-oriented pixels do, the oriented ones are used (validate lists those images under
``image_exif_orientation``). When both have the json size (orientations 2-4, or a square photo
turned by 5-8) or only the raw ones do, the raw pixels are used, yet a viewer shows the photo
turned: if the annotator saw it turned, its masks are misaligned, so validate lists every image
whose tag is not 1 and whose raw pixels are used (``image_exif_orientation_ambiguous``).
Stages decode with OpenCV (:mod:`pipeline.files.images`, every depth and channel layout),
trainers with Pillow (:func:`read_rgb`, no OpenCV needed); both ask :func:`choose` first, so
they make the same choice.

The header is read without decoding pixels (Pillow's lazy ``Image.open``), so a file whose header
promises far more pixels than the json (a decompression bomb) is refused before a single pixel
is decoded, and a good file is decoded exactly once.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps

__all__ = ["TURNS", "choose", "read_header", "read_rgb"]

# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

RAW, EXIF, MISMATCH = "raw", "exif", "mismatch"
# How a viewer shows the stored pixels for each EXIF orientation (1: as stored).
TURNS = {
    2: "mirrored left-right",
    3: "turned 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored and turned 90 degrees counter-clockwise",
    6: "turned 90 degrees clockwise",
    7: "mirrored and turned 90 degrees clockwise",
    8: "turned 90 degrees counter-clockwise",
}


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
    """((height, width) of the raw pixels, EXIF orientation 1..8), or None if not parsable."""
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


def choose(raw: tuple[int, int], orientation: int, shape: tuple[int, int]) -> str:
    """``raw``, ``exif`` or ``mismatch``: which pixels have the json ``shape`` (h, w)."""
    if tuple(raw) == tuple(shape):
        return RAW
    if orientation in _SWAPPING and (raw[1], raw[0]) == tuple(shape):
        return EXIF
    return MISMATCH


def read_rgb(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB for a trainer, oriented like its mask (``shape``), with Pillow.

    16-bit photos keep their top 8 bits; alpha is dropped. ValueError when unreadable or when
    neither the raw nor the EXIF-oriented pixels have ``shape``.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    header = read_header(data)
    if header is None:
        raise ValueError(f"{path}: not a readable image")
    choice = RAW if shape is None else choose(header[0], header[1], shape)
    if choice == MISMATCH:
        (h, w), want = header[0], shape or (0, 0)
        raise ValueError(f"{path}: image is {w}x{h}, its mask is {want[1]}x{want[0]}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im) if choice == EXIF else im
            return np.asarray(_to_rgb8(im))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def _to_rgb8(im: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit keeps its top 8 bits, float in [0, 1] is scaled, alpha is dropped."""
    if im.mode.startswith("I"):  # I;16, I;16B, I;16L and I hold 16-bit samples
        im = Image.fromarray((np.asarray(im, dtype=np.uint32) >> 8).astype(np.uint8))
    elif im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32))
        im = Image.fromarray(np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return im.convert("RGB")
