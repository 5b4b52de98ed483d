"""Reading photos so their pixels line up with the json sizes (and so with the masks).

Phones store many photos unrotated with an EXIF orientation tag. Annotation tools disagree on
whether they label the raw pixels or the rotated view, so the json ``width``/``height`` is the
arbiter: the raw pixels are used when they have the json size; when they do not, but the
EXIF-oriented pixels do, the oriented ones are used (validate lists those images under
``image_exif_orientation``). Every stage and the trainer API read images through this module, so
they all make the same choice.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

# Keeps 16-bit depth and alpha; OpenCV then ignores EXIF orientation.
_RAW = cv2.IMREAD_UNCHANGED
# Keeps depth and colour but applies EXIF orientation (alpha is dropped: JPEG has none).
_ORIENTED = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def decode_image(
    data: bytes | np.ndarray, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, bool]:
    """(image or None if undecodable, whether EXIF orientation was applied).

    ``shape`` is the expected (height, width); without it the raw pixels are returned.
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    if buf.size == 0:
        return None, False
    image = cv2.imdecode(buf, _RAW)
    if image is None or shape is None or tuple(image.shape[:2]) == tuple(shape):
        return image, False
    oriented = cv2.imdecode(buf, _ORIENTED)
    if oriented is not None and tuple(oriented.shape[:2]) == tuple(shape):
        return oriented, True
    return image, False


def read_image(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` as OpenCV reads it (BGR), oriented to match ``shape`` if given."""
    with open(path, "rb") as fh:
        image, _ = decode_image(fh.read(), shape)
    if image is None:
        raise ValueError(f"{path}: not a decodable image")
    return image
