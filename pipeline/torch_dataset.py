"""Optional PyTorch ``Dataset`` over the exported folds (``pip install -e .[torch]``).

The core package never imports this module, so torch stays optional. A training loop::

    import torch
    from torch.utils.data import DataLoader
    from pipeline.torch_dataset import SegmentationFolds

    train = SegmentationFolds(fold=0, part="train", root=".", variants="all")
    val = SegmentationFolds(fold=0, part="val", root=".")
    model = torch.nn.Conv2d(3, 11, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    for image, mask in DataLoader(train, batch_size=1, shuffle=True):
        opt.zero_grad()
        loss = loss_fn(model(image), mask)
        loss.backward()
        opt.step()

Images come as float32 CHW RGB in [0, 1], masks as int64 HW class indices (255 = ignore).
Images of different sizes need ``batch_size=1`` or a ``transform`` that resizes/crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pipeline.torch_dataset needs PyTorch, an optional extra: "
        "pip install -e .[torch]  (or install a torch build for your platform)"
    ) from exc

import numpy as np

from pipeline import folds as folds_api
from pipeline.orientation import read_rgb

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class SegmentationFolds(Dataset):
    """Image/mask pairs of one part (``train``, ``val`` or ``test``) of fold ``fold``.

    ``transform(image, mask) -> (image, mask)`` runs on the numpy arrays (HxWx3 uint8 RGB,
    HxW uint8) before conversion, so albumentations-style callables plug in directly.
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
    ) -> None:
        if part == "test":
            self.pairs = folds_api.test(root, images=images, masks=masks)
        elif part in ("train", "val"):
            chosen = folds_api.fold(fold, root, variants=variants, images=images, masks=masks)
            self.pairs = chosen.train if part == "train" else chosen.val
        else:
            raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def paths(self, index: int) -> tuple[Path, Path]:
        return self.pairs[index]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image_path, mask_path = self.pairs[index]
        mask = folds_api.read_mask(mask_path)
        image = read_rgb(image_path, mask.shape)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        return tensor, torch.from_numpy(np.ascontiguousarray(mask)).long()
