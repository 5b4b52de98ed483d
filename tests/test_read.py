"""pipeline.folds.read: the image and mask paths of a fold and of the held-out test part."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.files.contracts import parse_folds
from pipeline.files.errors import DatasetError
from pipeline.folds import read
from pipeline.folds.exported import load_folds, n_folds, variants
from pipeline.stages.export import build_exports, write_tree
from tests.test_export import build_project, crafted


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("read_project"))


def test_fold_pairs_match_exports(project: Path) -> None:
    assert n_folds(project) == 3
    rows = load_folds(project)
    assert {r.fold for r in rows} == {"0", "1", "2", "test"}
    test_ids = {r.image_id for r in rows if r.fold == "test"}
    for k in range(3):
        f = read.fold(k, root=project)
        assert f.k == k and f.variants == ()
        assert set(f.val_ids) == {r.image_id for r in rows if r.fold == str(k)}
        assert set(f.train_ids) == {r.image_id for r in rows if r.fold not in (str(k), "test")}
        assert not set(f.train_ids) & test_ids
        assert len(f.train) == len(f.train_ids) and len(f.val) == len(f.val_ids)
        for image, mask in f.train + f.val:
            assert isinstance(image, Path) and image.is_file()
            assert mask.is_file() and mask.suffix == ".png"
        mask = read.read_mask(f.val[0].mask)
        assert mask.dtype == np.uint8 and mask.ndim == 2
    assert len(read.test(project)) == len(test_ids)
    assert [f.k for f in read.folds(project)] == [0, 1, 2]


def test_fold_accepts_numpy_ints_and_reads_as_pairs(project: Path) -> None:
    f = read.fold(np.int64(2), root=project)
    assert f.k == 2 and type(f.k) is int
    assert repr(f) == f"Fold(k=2, train={len(f.train)} pairs, val={len(f.val)} pairs, variants=[])"
    image, mask = f.val[0]
    assert (image, mask) == (f.val[0].image, f.val[0].mask) and isinstance(f.val[0], read.Pair)


def test_variants_are_optional_and_train_only(project: Path) -> None:
    assert variants(project) == ["flip"]
    plain = read.fold(1, root=project)
    every = read.fold(1, root=project, variants="all")
    named = read.fold(1, root=project, variants=["flip"])
    assert every.train == named.train
    assert read.fold(1, root=project, variants="flip").train == every.train  # one name
    assert every.train[: len(plain.train)] == plain.train
    extra = every.train[len(plain.train) :]
    assert len(extra) == 2 * len(plain.train)  # two copies per training image
    assert all("data/augmented/flip/" in p.image.as_posix() for p in extra)
    assert all(p.image.is_file() and p.mask.is_file() for p in extra)
    assert every.val == plain.val  # never augmented
    with pytest.raises(DatasetError, match="unknown augment variants"):
        read.fold(0, root=project, variants=["nope"])


@pytest.mark.parametrize("k", [3, -1, "0", True])
def test_missing_fold_is_a_clear_error(project: Path, k: object) -> None:
    with pytest.raises(DatasetError, match=r"does not exist: the exports have folds 0\.\.2"):
        read.fold(k, root=project)  # type: ignore[arg-type]


def test_images_and_masks_overrides(project: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(project / "data" / "sample" / "images", photos)
    masks = shutil.copytree(project / "data" / "masks", tmp_path / "masks")
    # Exports from one repo, photos from a trainer's own folder.
    g = read.fold(0, root=project, images=photos, masks=masks)
    assert all(p.image.is_relative_to(photos) and p.image.is_file() for p in g.train + g.val)
    assert all(p.mask.is_relative_to(masks) and p.mask.is_file() for p in g.train + g.val)
    assert len(read.test(project, images=photos, masks=masks)) > 0


def test_no_holdout_means_test_is_an_error(tmp_path: Path) -> None:
    coco, table, manifests = crafted()
    rows = [
        {
            "image_id": str(r[0]),
            "file_name": r[1],
            "group": r[2],
            "fold": "1" if r[3] == "test" else r[3],
        }
        for r in table.rows
    ]
    table = parse_folds(rows)
    files = build_exports(
        [im["id"] for im in coco["images"]], table, "data/sample/images", manifests
    )
    write_tree(tmp_path / "data" / "exports", files)
    assert n_folds(tmp_path) == 2
    with pytest.raises(DatasetError, match="no held-out test part"):
        read.test(tmp_path)
