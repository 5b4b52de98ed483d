"""Stages read photos here: decoded once by OpenCV, oriented like the json says.

Every depth and channel layout is kept (8/16-bit, gray, BGR, BGRA): augmentation must not lose
what the photo holds. Which pixels to decode (raw or EXIF-oriented) is decided from the header
by :func:`pipeline.files.orientation.choose`, the rule the trainer side uses too.

dtype rule (what augmentation gets, :func:`normalise_image`): ``uint8`` and ``uint16`` stay as
they are; ``bool`` becomes ``uint8`` 0/255; other integer types are clipped to [0, 65535] as
``uint16``; floats become ``float32`` clipped to [0, 1] (NaN -> 0). Gray+alpha becomes BGRA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.files.orientation import EXIF, MISMATCH, choose, read_header

__all__ = ["Decoded", "decode_image", "normalise_image", "read_image"]

# Keeps 16-bit depth and alpha; OpenCV then ignores EXIF orientation.
_RAW = cv2.IMREAD_UNCHANGED
# Keeps depth and colour but applies EXIF orientation (alpha is dropped: JPEG has none).
_ORIENTED = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


@dataclass(frozen=True)
class Decoded:
    """An image read against an expected size.

    ``status``: ``ok`` (raw pixels have the size), ``exif`` (only the EXIF-oriented pixels
    have it), ``mismatch`` (neither; nothing decoded when the header already says so) or
    ``unreadable``. ``size`` is the (height, width) found, when known. ``orientation``: the
    file's EXIF orientation (1 = none, or not known), whichever pixels were used.
    """

    image: np.ndarray | None
    status: str
    size: tuple[int, int] | None = None
    orientation: int = 1


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
    choice = choose(header[0], header[1], shape)
    if choice == MISMATCH:
        return Decoded(None, "mismatch", header[0], header[1])
    if choice == EXIF:
        decoded = _decode(data, _ORIENTED, shape)
        status = "exif" if decoded.status == "ok" else decoded.status
        return replace(decoded, status=status, orientation=header[1])
    return replace(_decode(data, _RAW, shape), orientation=header[1])


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
    """The image at ``path`` as OpenCV reads it (BGR), oriented to match ``shape`` if given.

    ValueError names the file when it is unreadable or has neither orientation's size.
    """
    with open(path, "rb") as fh:
        decoded = decode_image(fh.read(), shape)
    if decoded.status == "mismatch":
        found, want = decoded.size or (0, 0), shape or (0, 0)
        raise ValueError(f"image is {found[1]}x{found[0]} but its mask is {want[1]}x{want[0]}")
    if decoded.image is None:
        raise ValueError("unreadable: not a decodable image")
    return decoded.image


def normalise_image(image: np.ndarray) -> np.ndarray:
    """Bring a decoded image to a dtype and layout the transforms take (rule in module doc)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        gray, alpha = image[:, :, 0], image[:, :, 1]
        image = np.dstack([gray, gray, gray, alpha])
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"unsupported image layout {image.shape} (expected gray, gray+alpha, BGR or BGRA)"
        )
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 65535).astype(np.uint16)
    if np.issubdtype(image.dtype, np.floating):
        values = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {image.dtype}")
