"""pipeline.folds.weights: each fold's class distribution as the exports hold it, and the class
weights from it, equal to counts made from the masks themselves."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from pipeline.files.errors import DatasetError
from pipeline.folds.read import classes, fold, num_classes, read_mask
from pipeline.folds.read import test as held_out
from pipeline.folds.weights import class_distribution, class_weights, missing_in_val
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("weights_project"))


def mask_counts(masks: list[Path], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, images, labelled pixels of those images) per class, counted from the PNGs."""
    pixels, images, image_pixels = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    for path in masks:
        mask = read_mask(path)
        counts = np.bincount(mask.ravel(), minlength=256)[:n]
        pixels += counts
        images += counts > 0
        image_pixels += (counts > 0) * int((mask != 255).sum())
    return pixels, images, image_pixels


def expected_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> dict[str, list[float]]:
    present = pixels > 0
    inverse = [pixels.sum() / (present.sum() * p) if p else 0.0 for p in pixels]
    freq = {c: pixels[c] / image_pixels[c] for c in range(len(pixels)) if present[c]}
    middle = statistics.median(freq.values())
    median = [middle / freq[c] if c in freq else 0.0 for c in range(len(pixels))]
    return {"inverse": inverse, "median": median}


def test_the_distribution_is_a_count_of_the_masks(project: Path) -> None:
    n = num_classes(project)
    rows = {(r.fold, r.part, r.class_index): r for r in class_distribution(project)}
    for k in range(3):
        f = fold(k, root=project)
        for part, pairs in (("train", f.train), ("val", f.val)):
            pixels, images, image_pixels = mask_counts([p.mask for p in pairs], n)
            got = [rows[(str(k), part, c)] for c in range(n)]
            assert [r.pixels for r in got] == pixels.tolist()
            assert [r.images for r in got] == images.tolist()
            assert [r.image_pixels for r in got] == image_pixels.astype(int).tolist()
    pixels, _, _ = mask_counts([p.mask for p in held_out(project)], n)
    assert [rows[("test", "test", c)].pixels for c in range(n)] == pixels.tolist()


@pytest.mark.parametrize("kind", ["inverse", "median"])
def test_class_weights_equal_a_count_from_the_masks(project: Path, kind: str) -> None:
    n = num_classes(project)
    for k in range(3):
        pixels, _, image_pixels = mask_counts([p.mask for p in fold(k, root=project).train], n)
        got = class_weights(fold=k, kind=kind, root=project)
        assert len(got) == n and all(isinstance(w, float) for w in got)
        assert got == pytest.approx(expected_weights(pixels, image_pixels)[kind], rel=1e-12)
        assert all(w == 0.0 for w, p in zip(got, pixels, strict=True) if p == 0)


def test_missing_in_val_names_the_folds(project: Path) -> None:
    n = num_classes(project)
    names = classes(project).names
    expected: dict[str, list[int]] = {}
    for k in range(3):
        pixels, _, _ = mask_counts([p.mask for p in fold(k, root=project).val], n)
        for c in np.flatnonzero(pixels == 0):
            expected.setdefault(names[c], []).append(k)
    got = missing_in_val(project)
    assert got == {name: expected[name] for name in names if name in expected}


def test_bad_requests_say_what_exists(project: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        class_weights(0, "sqrt", project)
    with pytest.raises(DatasetError, match="fold 3 does not exist: the exports have folds 0..2"):
        class_weights(3, root=project)
    with pytest.raises(DatasetError, match="fold True does not exist"):
        class_weights(True, root=project)
    old = shutil.copytree(project, tmp_path / "old")
    (old / "data" / "exports" / "class_distribution.csv").unlink()
    with pytest.raises(DatasetError, match="the exports hold no class_distribution.csv"):
        class_weights(0, root=old)
