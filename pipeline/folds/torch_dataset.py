"""Optional PyTorch ``Dataset`` over the exported folds (torch installed by you, for your
platform: docs/trainers.md). The core package never imports this module. A training loop::

    import torch
    from torch.utils.data import DataLoader
    from pipeline.folds.torch_dataset import SegmentationFolds

    train = SegmentationFolds(fold=0, part="train", variants="all", crop=256)
    model = torch.nn.Conv2d(3, train.num_classes, 1)  # your network
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=train.ignore_index)
    for image, mask in DataLoader(train, batch_size=8, shuffle=True):
        opt.zero_grad()
        loss_fn(model(image), mask).backward()
        opt.step()

Images come as float32 CHW RGB in [0, 1], masks as int64 HW class indices (255 = ignore).
Photos of different sizes stack into batches with ``size=`` (resize) or ``crop=`` (random
crop, padded with ignore where the photo is smaller), applied to image and mask together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pipeline.folds.torch_dataset needs PyTorch, which you install for your platform first, "
        "e.g. CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu "
        "(docs/trainers.md)"
    ) from exc

import numpy as np
from PIL import Image

from pipeline.files.contracts import IGNORE, Classes
from pipeline.files.orientation import read_rgb
from pipeline.folds.read import classes, read_mask
from pipeline.folds.read import fold as pick_fold
from pipeline.folds.read import test as held_out

__all__ = ["SegmentationFolds", "Size", "Transform", "crop_pair", "resize_pair"]

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Size = int | tuple[int, int]


def _hw(size: Size | None, name: str) -> tuple[int, int] | None:
    """``(height, width)`` from an int (square) or a pair; None stays None."""
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return int(h), int(w)


def resize_pair(image: np.ndarray, mask: np.ndarray, hw: tuple[int, int]) -> tuple[Any, Any]:
    """Image bilinear, mask nearest-neighbour: a mask value is always one it had (255 too)."""
    size = (hw[1], hw[0])  # Pillow wants (width, height)
    out = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return out, np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def crop_pair(
    image: np.ndarray, mask: np.ndarray, hw: tuple[int, int], generator: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``hw`` window of both, the same for each; a side shorter than the window is
    padded first (image 0, mask 255 = ignore, so padding never counts in the loss). Offsets
    come from torch's RNG, which DataLoader seeds per worker."""
    h, w = mask.shape
    ph, pw = max(hw[0] - h, 0), max(hw[1] - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE)
        h, w = mask.shape
    top = int(torch.randint(0, h - hw[0] + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - hw[1] + 1, (1,), generator=generator))
    window = (slice(top, top + hw[0]), slice(left, left + hw[1]))
    return image[window], mask[window]


class SegmentationFolds(Dataset):
    """Image/mask pairs of one part (``train``, ``val`` or ``test``) of fold ``fold``.

    ``transform(image, mask) -> (image, mask)`` runs first, on the numpy arrays (HxWx3 uint8
    RGB, HxW uint8), so albumentations-style callables plug in directly; then ``size``
    (resize to ``(h, w)`` or a square) and ``crop`` (random window), so batches stack.
    ``num_classes``, ``ignore_index`` and ``class_names`` come from the exported class table.
    """

    def __init__(
        self,
        fold: int = 0,
        part: str = "train",
        root: str | os.PathLike = ".",
        variants: None | str | Iterable[str] = None,
        transform: Transform | None = None,
        images: str | os.PathLike | None = None,
        masks: str | os.PathLike | None = None,
        size: Size | None = None,
        crop: Size | None = None,
    ) -> None:
        if part == "test":
            self.pairs = held_out(root, images=images, masks=masks)
        elif part in ("train", "val"):
            chosen = pick_fold(fold, root, variants=variants, images=images, masks=masks)
            self.pairs = chosen.train if part == "train" else chosen.val
        else:
            raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
        self.root = Path(root)
        self.transform = transform
        self.size, self.crop = _hw(size, "size"), _hw(crop, "crop")

    @cached_property
    def _classes(self) -> Classes:
        return classes(self.root)

    @property
    def num_classes(self) -> int:
        """Model outputs: background plus every class."""
        return self._classes.num_classes

    @property
    def ignore_index(self) -> int:
        """Mask value for the loss to ignore (``CrossEntropyLoss(ignore_index=...)``)."""
        return self._classes.ignore_index

    @property
    def class_names(self) -> list[str]:
        return list(self._classes.names)

    def __len__(self) -> int:
        return len(self.pairs)

    def paths(self, index: int) -> tuple[Path, Path]:
        return self.pairs[index]

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The pair as numpy arrays after ``transform``, ``size`` and ``crop``."""
        image_path, mask_path = self.pairs[index]
        mask = read_mask(mask_path)
        image = read_rgb(image_path, mask.shape)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        if self.size is not None:
            image, mask = resize_pair(image, mask, self.size)
        if self.crop is not None:
            image, mask = crop_pair(image, mask, self.crop)
        return image, mask

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask = self.arrays(index)
        chw = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)
        mask64 = np.array(mask, dtype=np.int64)  # a copy: torch wants writable memory
        return torch.from_numpy(chw) / 255.0, torch.from_numpy(mask64)
