"""pipeline.folds.torch_dataset: the optional PyTorch Dataset (torch installed by the trainer,
for its platform: docs/trainers.md). Without torch, what can be told without it is."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.folds.read import fold, num_classes, read_mask
from pipeline.folds.read import test as held_out
from tests.conftest import ROOT
from tests.test_export import build_project

HAS_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "torch not installed (install a build for your platform first: docs/trainers.md)"
SOURCE = ROOT / "pipeline" / "folds" / "torch_dataset.py"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("torch_project"))


def test_torch_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch the core imports fine and the Dataset module says how to get it."""
    import pipeline.folds

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "pipeline.folds.torch_dataset", raising=False)
    assert importlib.reload(pipeline.folds).fold is fold
    with pytest.raises(ImportError, match=r"index-url https://download\.pytorch\.org/whl/cpu"):
        importlib.import_module("pipeline.folds.torch_dataset")


def test_the_dataset_reads_through_the_folds_modules() -> None:
    """It imports the read API's modules, not the package (no import cycle through it)."""
    tree = ast.parse(SOURCE.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    ours = {m for m in imported if m and m.startswith("pipeline")}
    assert ours == {
        "pipeline.files.contracts",
        "pipeline.files.orientation",
        "pipeline.folds.read",
    }


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_dataset_training_step(project: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from pipeline.folds.torch_dataset import SegmentationFolds

    train = SegmentationFolds(fold=0, part="train", root=project, variants="all")
    val = SegmentationFolds(fold=0, part="val", root=project)
    assert len(train) == len(fold(0, root=project, variants="all").train)
    assert len(val) == len(fold(0, root=project).val)
    assert len(SegmentationFolds(part="test", root=project)) == len(held_out(project))
    image, mask = val[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() <= 1
    assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
    assert torch.equal(mask, torch.from_numpy(read_mask(val.paths(0)[1]).astype(np.int64)))
    assert train.num_classes == num_classes(project) and train.ignore_index == 255
    model = torch.nn.Conv2d(3, train.num_classes, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=train.ignore_index)
    for step, (x, y) in enumerate(DataLoader(train, batch_size=1, shuffle=True)):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        if step == 2:
            break
    with pytest.raises(ValueError, match="part must be"):
        SegmentationFolds(part="holdout", root=project)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_size_and_crop_make_batches(project: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from pipeline.folds.torch_dataset import SegmentationFolds

    sized = SegmentationFolds(fold=0, part="val", root=project, size=(48, 64))
    for i in range(len(sized)):
        image, mask = sized[i]
        assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
        original = set(np.unique(read_mask(sized.paths(i)[1])).tolist())
        assert set(torch.unique(mask).tolist()) <= original  # nearest: no new value
    image, mask = next(iter(DataLoader(sized, batch_size=4)))
    assert image.shape == (4, 3, 48, 64) and mask.shape == (4, 48, 64)
    torch.manual_seed(0)
    cropped = SegmentationFolds(fold=0, part="train", root=project, variants="all", crop=32)
    image, mask = next(iter(DataLoader(cropped, batch_size=6, shuffle=True)))
    assert image.shape == (6, 3, 32, 32) and mask.dtype == torch.int64


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_crop_pads_with_ignore_and_resize_keeps_255() -> None:
    from pipeline.folds.torch_dataset import crop_pair, resize_pair

    image = np.full((4, 6, 3), 200, np.uint8)
    mask = np.array([[1, 1, 255, 255, 2, 2]] * 4, np.uint8)
    big_image, big_mask = crop_pair(image, mask, (8, 6))  # taller than the photo: padded
    assert big_mask.shape == (8, 6) and (big_mask[4:] == 255).all() and (big_image[4:] == 0).all()
    assert (big_mask[:4] == mask).all()
    small_image, small_mask = resize_pair(image, mask, (2, 3))
    assert small_image.shape == (2, 3, 3) and set(np.unique(small_mask)) <= {1, 2, 255}
    up = resize_pair(image, mask, (8, 12))[1]
    assert (up[:, 4:8] == 255).all() and set(np.unique(up)) == {1, 2, 255}


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
@pytest.mark.parametrize(("size", "hw"), [(None, None), (32, (32, 32)), ((24, 40), (24, 40))])
def test_sizes_are_height_width(size: object, hw: object) -> None:
    from pipeline.folds.torch_dataset import _hw

    assert _hw(size, "size") == hw  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop must be positive"):
        _hw((0, 4), "crop")
